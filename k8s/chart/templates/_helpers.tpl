{{/* Names: "recsys" for a release named recsys, else "<release>-recsys". */}}
{{- define "recsys.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "recsys.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "recsys.componentSelector" -}}
{{ include "recsys.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object; the component is passed as .component. */}}
{{- define "recsys.labels" -}}
{{ include "recsys.componentSelector" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: recsys-platform
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "recsys.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* For every pod that runs the platform image; nothing without pull secrets.
Args: root, indent. */}}
{{- define "recsys.imagePullSecrets" -}}
{{- $secrets := list -}}
{{- range .root.Values.image.pullSecrets -}}
{{- $secrets = append $secrets (dict "name" .) -}}
{{- end -}}
{{- with $secrets -}}
{{- dict "imagePullSecrets" . | toYaml | nindent $.indent -}}
{{- end -}}
{{- end -}}

{{- define "recsys.home" -}}/var/lib/recsys{{- end -}}
{{- define "recsys.featureRepo" -}}/var/lib/recsys/feature_repo{{- end -}}

{{/* Where the Serve app loads versions: a registry on an object store, or its versions/. */}}
{{- define "recsys.modelRoot" -}}
{{- if contains "://" .Values.registry.uri -}}
{{- .Values.registry.uri -}}
{{- else -}}
{{- printf "%s/versions" (trimSuffix "/" .Values.registry.uri) -}}
{{- end -}}
{{- end -}}

{{/* The Ray head of the RayService, for the Ray client (the deploy step's serve address). */}}
{{- define "recsys.serveAddress" -}}
{{- printf "ray://%s-head-svc.%s.svc:10001" (include "recsys.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "recsys.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Every container: no root, no privilege escalation, no capabilities, read-only root
(writable paths are emptyDir or the shared volume). */}}
{{- define "recsys.securityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The environment the recsys code reads; the secrets are referenced by name. */}}
{{- define "recsys.env" -}}
- name: RECSYS_HOME
  value: {{ include "recsys.home" . }}
- name: RECSYS_FEATURE_REPO
  value: {{ include "recsys.featureRepo" . }}
- name: RECSYS_FEAST_ONLINE
  value: redis
- name: RECSYS_REGISTRY
  value: {{ .Values.registry.uri | quote }}
- name: HOME
  value: /tmp
- name: REDIS_CONNECTION_STRING
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.redis }}
      key: REDIS_CONNECTION_STRING
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.objectStore }}, key: AWS_ACCESS_KEY_ID, optional: true}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.objectStore }}, key: AWS_SECRET_ACCESS_KEY, optional: true}
- name: AWS_ENDPOINT_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.objectStore }}, key: AWS_ENDPOINT_URL, optional: true}
{{- end -}}

{{- define "recsys.volumeMounts" -}}
- name: data
  mountPath: {{ include "recsys.home" . }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "recsys.volumes" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ .Values.storage.claimName }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{/* The Feast repository on the shared volume: the image's definitions plus the cluster's
store configuration (the ConfigMap); each file written atomically, data/ kept. */}}
{{- define "recsys.featureRepoInit" -}}
- name: feature-repo
  image: {{ include "recsys.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: [recsys, features, init, --from, /app/feature_repo, --store-yaml, /etc/recsys/feast/feature_store.yaml, --repo, {{ include "recsys.featureRepo" . }}]
  env:
    - name: HOME
      value: /tmp
  resources:
    requests: {cpu: 100m, memory: 256Mi}
    limits: {cpu: 500m, memory: 512Mi}
  securityContext:
    {{- include "recsys.securityContext" . | nindent 4 }}
  volumeMounts:
    {{- include "recsys.volumeMounts" . | nindent 4 }}
    - name: feast-config
      mountPath: /etc/recsys/feast
      readOnly: true
{{- end -}}

{{- define "recsys.feastConfigVolume" -}}
- name: feast-config
  configMap:
    name: {{ include "recsys.fullname" . }}-feast
{{- end -}}

{{/* A Ray pod template (head or worker). Args: root, component, resources, gpus,
nodeSelector, tolerations, head (bool), init (bool), serve (bool). */}}
{{- define "recsys.rayPod" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "recsys.labels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  {{- if .head }}
  serviceAccountName: {{ include "recsys.fullname" $root }}-ray-head
  {{- else }}
  serviceAccountName: {{ include "recsys.fullname" $root }}-workload
  automountServiceAccountToken: false
  {{- end }}
  securityContext:
    {{- include "recsys.podSecurityContext" $root | nindent 4 }}
  {{- include "recsys.imagePullSecrets" (dict "root" $root "indent" 2) }}
  {{- with .nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .init }}
  initContainers:
    {{- include "recsys.featureRepoInit" $root | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ if .head }}ray-head{{ else }}ray-worker{{ end }}
      image: {{ include "recsys.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- if .head }}
      ports:
        - {containerPort: 6379, name: gcs}
        - {containerPort: 8265, name: dashboard}
        - {containerPort: 10001, name: client}
        {{- if .serve }}
        - {containerPort: {{ $root.Values.serve.port }}, name: serve}
        {{- end }}
      {{- else if .serve }}
      ports:
        - {containerPort: {{ $root.Values.serve.port }}, name: serve}
      {{- end }}
      env:
        {{- include "recsys.env" $root | nindent 8 }}
        {{- if $root.Values.serve.fastProxy }}
        - name: RAY_SERVE_ENABLE_HA_PROXY
          value: "1"
        - name: RAY_SERVE_THROUGHPUT_OPTIMIZED
          value: "1"
        - name: RAY_SERVE_HAPROXY_RETRY_ON
          value: "conn-failure empty-response"
        - name: RAY_SERVE_HAPROXY_RETRIES
          value: "1"
        {{- end }}
        {{- with $root.Values.serve.writeTokenSecret }}
        - name: RECSYS_WRITE_TOKEN
          valueFrom:
            secretKeyRef: {name: {{ .name }}, key: {{ .key }}}
        {{- end }}
        {{- with $root.Values.serve.readTokenSecret }}
        - name: RECSYS_READ_TOKEN
          valueFrom:
            secretKeyRef: {name: {{ .name }}, key: {{ .key }}}
        {{- end }}
      resources:
        requests:
          cpu: {{ .resources.requests.cpu | quote }}
          memory: {{ .resources.requests.memory | quote }}
          {{- if .gpus }}
          nvidia.com/gpu: {{ .gpus | quote }}
          {{- end }}
        limits:
          cpu: {{ .resources.limits.cpu | quote }}
          memory: {{ .resources.limits.memory | quote }}
          {{- if .gpus }}
          nvidia.com/gpu: {{ .gpus | quote }}
          {{- end }}
      securityContext:
        {{- include "recsys.securityContext" $root | nindent 8 }}
      # Ray's own health endpoints: the raylet (every node), the GCS (the head), and the
      # Serve proxy on the serving workers (a pod joins the Service once it answers).
      livenessProbe:
        httpGet: {path: /api/local_raylet_healthz, port: 52365}
        initialDelaySeconds: 30
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 120
      readinessProbe:
        {{- if .head }}
        httpGet: {path: /api/gcs_healthz, port: 8265}
        {{- else if .serve }}
        httpGet: {path: /-/healthz, port: {{ $root.Values.serve.port }}}
        {{- else }}
        httpGet: {path: /api/local_raylet_healthz, port: 52365}
        {{- end }}
        initialDelaySeconds: 10
        periodSeconds: 5
        timeoutSeconds: 5
        failureThreshold: 10
      volumeMounts:
        {{- include "recsys.volumeMounts" $root | nindent 8 }}
        - name: shm
          mountPath: /dev/shm
  volumes:
    {{- include "recsys.volumes" $root | nindent 4 }}
    {{- if .init }}
    {{- include "recsys.feastConfigVolume" $root | nindent 4 }}
    {{- end }}
    # Ray's object store lives in shared memory; the default 64 MiB /dev/shm is too small.
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ .resources.limits.memory | quote }}
{{- end -}}

{{/* A RayCluster spec: a head that schedules no work, worker groups, in-tree autoscaling.
Args: root, component, group (the values' serve or training), serve (bool). */}}
{{- define "recsys.rayCluster" -}}
{{- $root := .root -}}
{{- $group := .group -}}
rayVersion: {{ $root.Values.rayVersion | quote }}
enableInTreeAutoscaling: true
autoscalerOptions:
  upscalingMode: {{ $root.Values.serve.autoscaler.upscalingMode }}
  idleTimeoutSeconds: {{ $root.Values.serve.autoscaler.idleTimeoutSeconds }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  resources:
    {{- toYaml $root.Values.serve.autoscaler.resources | nindent 4 }}
  securityContext:
    {{- include "recsys.securityContext" $root | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
headGroupSpec:
  rayStartParams:
    dashboard-host: "0.0.0.0"
    num-cpus: "0"
  template:
    {{- include "recsys.rayPod" (dict "root" $root "component" .component "resources" $group.head.resources "gpus" 0 "head" true "init" true "serve" .serve) | nindent 4 }}
workerGroupSpecs:
  {{- range $group.workerGroups }}
  - groupName: {{ .name }}
    replicas: {{ .replicas }}
    minReplicas: {{ .minReplicas }}
    maxReplicas: {{ .maxReplicas }}
    rayStartParams:
      {{- if .gpus }}
      num-gpus: {{ .gpus | quote }}
      {{- else }}
      {}
      {{- end }}
    template:
      {{- include "recsys.rayPod" (dict "root" $root "component" $.component "resources" .resources "gpus" .gpus "nodeSelector" .nodeSelector "tolerations" .tolerations "head" false "init" false "serve" $.serve) | nindent 6 }}
  {{- end }}
{{- end -}}

{{/* The Spark Connect server's Service (the offline store's spark_remote). */}}
{{- define "recsys.sparkConnectName" -}}
{{- printf "%s-spark-connect" (include "recsys.fullname" .) -}}
{{- end -}}

{{/* The cluster's Feast configuration: the repository's definitions on the shared volume, its
registry beside them, the offline store on the parquet there (its point-in-time join on the
Spark Connect server, else DuckDB in the process), the online store on Redis. */}}
{{- define "recsys.feastStoreYaml" -}}
project: recsys
provider: local
registry:
  path: {{ include "recsys.featureRepo" . }}/data/registry.redis.db
  cache_ttl_seconds: 60
offline_store:
  type: recsys.features.asof.AsofOfflineStore
  {{- if .Values.spark.enabled }}
  engine: spark
  spark_remote: {{ printf "sc://%s:%d" (include "recsys.sparkConnectName" .) (int .Values.spark.port) }}
  {{- else }}
  engine: duckdb
  {{- end }}
online_store:
  type: redis
  connection_string: ${REDIS_CONNECTION_STRING}
entity_key_serialization_version: 3
{{- end -}}
