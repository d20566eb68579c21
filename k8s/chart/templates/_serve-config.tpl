{{/* serveConfigV2: serving/config.yaml (files/serve-config.yaml links to it) with the
cluster's paths, the values' extra args and the model version; the rest is the file's.
recsys.deploy.serve_config applies the same overrides (the chart test compares them). */}}
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
  "prediction_log_dir" (printf "%s/serving/predictions" (include "recsys.home" .)) -}}
{{- $_ := set $app "args" (mergeOverwrite (deepCopy (default (dict) $app.args)) $paths (deepCopy .Values.serve.args)) -}}
{{- if eq (toString $app.args.topology) "fused" -}}
{{- $ingress := list -}}
{{- range $app.deployments -}}
{{- if eq .name "Ingress" -}}{{- $ingress = append $ingress . -}}{{- end -}}
{{- end -}}
{{- $_ := set $app "deployments" $ingress -}}
{{- end -}}
{{- if .Values.serve.modelVersion -}}
{{- range $app.deployments -}}
{{- $_ := set . "user_config" (dict "model_version" $.Values.serve.modelVersion) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config.http_options "port" .Values.serve.port -}}
{{- toYaml $config -}}
{{- end -}}
