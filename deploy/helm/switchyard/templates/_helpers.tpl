{{/*
Expand the name of the chart.
*/}}
{{- define "switchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "switchyard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "switchyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "switchyard.labels" -}}
helm.sh/chart: {{ include "switchyard.chart" . }}
{{ include "switchyard.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "switchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Switchyard image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "switchyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Where the ConfigMap is mounted. A directory mount (never subPath), so the kubelet updates the file in place
and the sidecar hot-reloads the traffic split.
*/}}
{{- define "switchyard.configDir" -}}
/etc/switchyard
{{- end }}

{{/*
Name of the data volume's claim when persistence is enabled.
*/}}
{{- define "switchyard.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "switchyard.fullname" .)) }}
{{- end }}

{{/*
Fails early, with the value to fix, on combinations that would deploy something broken.
*/}}
{{- define "switchyard.validateValues" -}}
{{- if not (has .Values.mode (list "standalone" "sidecar")) }}
{{- fail (printf "mode must be \"standalone\" or \"sidecar\", got %q" (toString .Values.mode)) }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (not .Values.app.image) }}
{{- fail "app.image is required when mode is \"sidecar\": the image of the application that uses Switchyard" }}
{{- end }}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "persistence.enabled needs replicaCount 1: every Switchyard process needs a data_dir of its own, and one claim would be shared by all replicas" }}
{{- end }}
{{- with .Values.config.collections }}
{{- if $.Values.config.migration }}
{{- fail "config.migration must be empty when config.collections is set: give each collection its own, as config.collections.<name>.migration" }}
{{- end }}
{{- range $name, $collection := . }}
{{- if not (and (kindIs "map" $collection) (get $collection "serving_index")) }}
{{- fail (printf "config.collections.%s.serving_index is required: the index that answers the collection's queries" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Switchyard config (proxy/app/config.py) as YAML: `config` from the values, plus the keys the chart owns
(data_dir, server.listen, and the state backend when redis.url is set). Empty sections are left out: the
migration, and with `collections` set the one-collection serving_index, each collection's empty migration
and query, and an empty default_collection.
*/}}
{{- define "switchyard.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if not $config.migration }}
{{- $_ := unset $config "migration" }}
{{- end }}
{{- if $config.collections }}
{{- /* Several collections: each names its own serving index, so the one-collection default goes */}}
{{- $_ := unset $config "serving_index" }}
{{- range $name, $collection := $config.collections }}
{{- if kindIs "map" $collection }}
{{- if not $collection.migration }}
{{- $_ := unset $collection "migration" }}
{{- end }}
{{- if not $collection.query }}
{{- $_ := unset $collection "query" }}
{{- end }}
{{- include "switchyard.numericSplit" $collection.query }}
{{- end }}
{{- end }}
{{- else }}
{{- $_ := unset $config "collections" }}
{{- end }}
{{- if not $config.default_collection }}
{{- $_ := unset $config "default_collection" }}
{{- end }}
{{- $_ := set $config "data_dir" .Values.persistence.mountPath }}
{{- $server := $config.server | default dict }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.grpc.port)) }}
{{- $_ := set $config "server" $server }}
{{- $telemetry := $config.telemetry | default dict }}
{{- $_ := set $telemetry "metrics_listen" (printf "0.0.0.0:%d" (int .Values.metrics.port)) }}
{{- with .Values.metrics.otlpEndpoint }}
{{- $_ := set $telemetry "otlp_endpoint" . }}
{{- end }}
{{- $_ := set $config "telemetry" $telemetry }}
{{- include "switchyard.numericSplit" $config.query }}
{{- if .Values.redis.url }}
{{- $state := $config.state | default dict }}
{{- $_ := set $state "backend" "redis" }}
{{- $_ := set $state "redis_url" .Values.redis.url }}
{{- $_ := set $config "state" $state }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
Checksum of the config without the settings the sidecar hot-reloads (proxy/app/reload.py, apply_reload), at
the top level and in every collection: a change to a traffic split must not roll the pods, a change to the
models, indexes or collections must.
*/}}
{{- define "switchyard.restartChecksum" -}}
{{- $config := include "switchyard.config" . | fromYaml }}
{{- include "switchyard.dropHotSettings" $config }}
{{- range $name, $collection := ($config.collections | default dict) }}
{{- include "switchyard.dropHotSettings" $collection }}
{{- end }}
{{- toYaml $config | sha256sum }}
{{- end }}

{{/*
Removes, in place, the hot-reloaded settings from a map holding `query` and `migration`: the config's top
level or one collection. Renders nothing.
*/}}
{{- define "switchyard.dropHotSettings" -}}
{{- with .query }}
{{- $_ := unset . "traffic_percent" }}
{{- $_ := unset . "merge" }}
{{- $_ := unset . "shadow_sample_rate" }}
{{- end }}
{{- with .migration }}
{{- with .backfill }}
{{- $_ := unset . "rate_limit" }}
{{- $_ := unset . "latency_budget_ms" }}
{{- $_ := unset . "batch_time_ms" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Makes, in place, a `query` map's traffic split a number: --set passes 12.5 as a string. Renders nothing.
*/}}
{{- define "switchyard.numericSplit" -}}
{{- if and . (hasKey . "traffic_percent") }}
{{- $_ := set . "traffic_percent" (float64 .traffic_percent) }}
{{- end }}
{{- end }}

{{/*
Native gRPC probe against the standard health service; the timing comes from probes.<kind>.
*/}}
{{- define "switchyard.probe" -}}
grpc:
  port: {{ .port }}
  service: ""
{{- toYaml (omit .probe "enabled") | nindent 0 }}
{{- end }}

{{/*
The Switchyard container, shared by both modes (a regular container, or a native sidecar init container).
*/}}
{{- define "switchyard.container" -}}
- name: switchyard
  image: {{ include "switchyard.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (eq .Values.mode "sidecar") .Values.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  args:
    - --log-level
    - {{ .Values.logLevel | quote }}
    - serve
    - --config
    - {{ printf "%s/switchyard.yaml" (include "switchyard.configDir" .) }}
  ports:
    - name: grpc
      containerPort: {{ .Values.grpc.port }}
      protocol: TCP
    - name: metrics
      containerPort: {{ .Values.metrics.port }}
      protocol: TCP
  {{- with .Values.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- range $kind := list "startup" "liveness" "readiness" }}
  {{- $probe := index $.Values.probes $kind }}
  {{- if $probe.enabled }}
  {{ $kind }}Probe:
    {{- include "switchyard.probe" (dict "port" $.Values.grpc.port "probe" $probe) | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.lifecycle }}
  lifecycle:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: config
      mountPath: {{ include "switchyard.configDir" . }}
      readOnly: true
    - name: data
      mountPath: {{ .Values.persistence.mountPath }}
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/*
The application container of the sidecar example, pointed at the proxy on localhost.
*/}}
{{- define "switchyard.appContainer" -}}
{{- with .Values.app }}
- name: {{ .name }}
  image: {{ .image | quote }}
  imagePullPolicy: {{ .imagePullPolicy }}
  {{- with .command }}
  command:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .args }}
  args:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  env:
    - name: {{ .addressEnvName }}
      value: {{ printf "127.0.0.1:%d" (int $.Values.grpc.port) | quote }}
    {{- with .env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .ports }}
  ports:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .volumeMounts }}
  volumeMounts:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
