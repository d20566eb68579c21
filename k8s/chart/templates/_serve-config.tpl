{{/* serveConfigV2: serving/config.yaml (files/serve-config.yaml links to it) with the
cluster's paths, the values' extra args, the model version and the experiment against it; the
rest is the file's. recsys.serve_ops.serve_config applies the same overrides (the chart test
compares them). */}}
{{- define "recsys.serveConfig" -}}
{{- $config := .Files.Get "files/serve-config.yaml" | fromYaml -}}
{{- if not $config.applications -}}
{{- fail "files/serve-config.yaml (serving/config.yaml): no applications" -}}
{{- end -}}
{{- $app := first $config.applications -}}
{{- if ne $app.name "recsys" -}}
{{- fail (printf "serving/config.yaml: the first application is %q, expected recsys" $app.name) -}}
{{- end -}}
{{- $paths := dict
  "model_root" (include "recsys.modelRoot" .)
  "feature_repo" (include "recsys.featureRepo" .)
  "online_store" "redis"
  "events_dir" (printf "%s/serving/events" (include "recsys.home" .))
  "items_dir" (printf "%s/serving/items" (include "recsys.home" .))
  "prediction_log_dir" (printf "%s/serving/predictions" (include "recsys.home" .)) -}}
{{- $_ := set $app "args" (mergeOverwrite (deepCopy (default (dict) $app.args)) $paths (deepCopy .Values.serve.args)) -}}
{{- if eq (toString $app.args.topology) "fused" -}}
{{- $ingress := list -}}
{{- range $app.deployments -}}
{{- if has .name (list "Ingress" "Shadow") -}}{{- $ingress = append $ingress . -}}{{- end -}}
{{- end -}}
{{- $_ := set $app "deployments" $ingress -}}
{{- end -}}
{{- if .Values.serve.modelVersion -}}
{{- $selection := dict "model_version" .Values.serve.modelVersion -}}
{{- with .Values.serve.experiment -}}
{{- if eq .challenger $.Values.serve.modelVersion -}}
{{- fail (printf "serve.experiment.challenger %q is serve.modelVersion: an experiment compares two versions" .challenger) -}}
{{- end -}}
{{- $experiment := dict "name" .name "control" $.Values.serve.modelVersion "challenger" .challenger -}}
{{- range $key, $field := dict "mode" "mode" "share" "share" "metric" "metric" "minUsers" "min_users" "alpha" "alpha" -}}
{{- if hasKey $.Values.serve.experiment $key -}}
{{- $_ := set $experiment $field (get $.Values.serve.experiment $key) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $selection "experiment" $experiment -}}
{{- end -}}
{{- range $app.deployments -}}
{{- $_ := set . "user_config" (deepCopy $selection) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config.http_options "port" .Values.serve.port -}}
{{- toYaml $config -}}
{{- end -}}
