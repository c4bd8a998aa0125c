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
{{- end }}

{{/*
The Switchyard config (proxy/config.py) as YAML: `config` from the values, plus the keys the chart owns
(data_dir, server.listen, and the state backend when redis.url is set).
*/}}
{{- define "switchyard.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if not $config.migration }}
{{- $_ := unset $config "migration" }}
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
{{- with $config.query }}
{{- if hasKey . "traffic_percent" }}
{{- /* --set passes 12.5 as a string; the split is a number */}}
{{- $_ := set . "traffic_percent" (float64 .traffic_percent) }}
{{- end }}
{{- end }}
{{- if .Values.redis.url }}
{{- $state := $config.state | default dict }}
{{- $_ := set $state "backend" "redis" }}
{{- $_ := set $state "redis_url" .Values.redis.url }}
{{- $_ := set $config "state" $state }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
Checksum of the config without the settings the sidecar hot-reloads (proxy/server.py, apply_reload): a change
to the traffic split must not roll the pods, a change to the models or indexes must.
*/}}
{{- define "switchyard.restartChecksum" -}}
{{- $config := include "switchyard.config" . | fromYaml }}
{{- with $config.query }}
{{- $_ := unset . "traffic_percent" }}
{{- $_ := unset . "merge" }}
{{- $_ := unset . "shadow_sample_rate" }}
{{- end }}
{{- with $config.migration }}
{{- with .backfill }}
{{- $_ := unset . "rate_limit" }}
{{- $_ := unset . "latency_budget_ms" }}
{{- $_ := unset . "batch_time_ms" }}
{{- end }}
{{- end }}
{{- toYaml $config | sha256sum }}
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
