{{/* Chart name, overridable. */}}
{{- define "kubetaskqueue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every object: the release name, plus the chart name unless the
release name already contains it. Truncated so suffixes like "-operator" still fit 63.
*/}}
{{- define "kubetaskqueue.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kubetaskqueue.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. Call with (dict "ctx" $ "component" "worker"). */}}
{{- define "kubetaskqueue.labels" -}}
helm.sh/chart: {{ include "kubetaskqueue.chart" .ctx }}
{{ include "kubetaskqueue.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: kubetaskqueue
{{- end }}

{{/* Selector labels: stable across upgrades (never add the version here). */}}
{{- define "kubetaskqueue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetaskqueue.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Object names. */}}
{{- define "kubetaskqueue.operatorName" -}}{{ include "kubetaskqueue.fullname" . }}-operator{{- end }}
{{- define "kubetaskqueue.workerName" -}}{{ include "kubetaskqueue.fullname" . }}-worker{{- end }}
{{- define "kubetaskqueue.exporterName" -}}{{ include "kubetaskqueue.fullname" . }}-exporter{{- end }}
{{- define "kubetaskqueue.redisName" -}}{{ include "kubetaskqueue.fullname" . }}-redis{{- end }}
{{- define "kubetaskqueue.uninstallName" -}}{{ include "kubetaskqueue.fullname" . }}-uninstall{{- end }}
{{- define "kubetaskqueue.dashboardName" -}}{{ include "kubetaskqueue.fullname" . }}-dashboard{{- end }}

{{/* The Secret holding the dashboard's bearer token: yours, or the one the chart creates. */}}
{{- define "kubetaskqueue.dashboardTokenSecretName" -}}
{{- default (include "kubetaskqueue.dashboardName" .) .Values.dashboard.token.existingSecret }}
{{- end }}

{{/* The kubetaskqueue image (operator, exporter, hooks, test). */}}
{{- define "kubetaskqueue.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kubetaskqueue.operatorImage" -}}
{{- $tag := .Values.operator.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- printf "%s:%s" (default .Values.image.repository .Values.operator.image.repository) $tag }}
{{- end }}

{{- define "kubetaskqueue.workerImage" -}}
{{- $tag := .Values.worker.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- printf "%s:%s" (default .Values.image.repository .Values.worker.image.repository) $tag }}
{{- end }}

{{/*
Where the Redis URL lives: the Secret name and key every component reads
(KUBETASKQUEUE_REDIS_URL, WorkerPool spec.redis.urlSecretRef, the operator's RBAC).
Fails with a clear message when no Redis or two are configured.
*/}}
{{- define "kubetaskqueue.validateRedis" -}}
{{- $external := or .Values.externalRedis.url .Values.externalRedis.existingSecret }}
{{- if and .Values.redis.enabled $external }}
{{- fail "redis.enabled=true and externalRedis.* are both set: choose one (set redis.enabled=false to use your own Redis)" }}
{{- end }}
{{- if and (not .Values.redis.enabled) (not $external) }}
{{- fail "no Redis: set redis.enabled=true, or externalRedis.url, or externalRedis.existingSecret" }}
{{- end }}
{{- if and .Values.externalRedis.url .Values.externalRedis.existingSecret }}
{{- fail "externalRedis.url and externalRedis.existingSecret are both set: give one" }}
{{- end }}
{{- end }}

{{- define "kubetaskqueue.redisUrlSecretName" -}}
{{- include "kubetaskqueue.validateRedis" . }}
{{- if .Values.redis.enabled }}
{{- default (include "kubetaskqueue.redisName" .) .Values.redis.auth.existingSecret }}
{{- else if .Values.externalRedis.existingSecret }}
{{- .Values.externalRedis.existingSecret }}
{{- else }}
{{- include "kubetaskqueue.redisName" . }}
{{- end }}
{{- end }}

{{- define "kubetaskqueue.redisUrlSecretKey" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret }}
{{- .Values.externalRedis.existingSecretKey }}
{{- else }}url{{- end }}
{{- end }}

{{/* Does the chart create the Secret holding the URL (and password)? */}}
{{- define "kubetaskqueue.createRedisSecret" -}}
{{- if .Values.redis.enabled }}{{ if not .Values.redis.auth.existingSecret }}true{{ end }}
{{- else if .Values.externalRedis.url }}true{{ end }}
{{- end }}

{{/*
Environment every kubetaskqueue container shares: where the Redis URL is, key prefix,
JSON logs. The URL holds the password: it comes from the mounted Secret (redisUrlVolume),
not the environment, so it is not in the container's env.
*/}}
{{- define "kubetaskqueue.commonEnv" -}}
- name: KUBETASKQUEUE_REDIS_URL_FILE
  value: /var/run/secrets/kubetaskqueue/redis/url
- name: KUBETASKQUEUE_NAMESPACE
  value: {{ .Values.keyPrefix | quote }}
- name: KUBETASKQUEUE_LOG_FORMAT
  value: json
{{- end }}

{{/* The Secret holding the Redis URL as a file, for KUBETASKQUEUE_REDIS_URL_FILE. */}}
{{- define "kubetaskqueue.redisUrlVolume" -}}
- name: redis-url
  secret:
    secretName: {{ include "kubetaskqueue.redisUrlSecretName" . }}
    items:
      - key: {{ include "kubetaskqueue.redisUrlSecretKey" . }}
        path: url
{{- end }}

{{- define "kubetaskqueue.redisUrlVolumeMount" -}}
- name: redis-url
  mountPath: /var/run/secrets/kubetaskqueue/redis
  readOnly: true
{{- end }}

{{- define "kubetaskqueue.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "kubetaskqueue.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* imagePullSecrets, or nothing when none are set. */}}
{{- define "kubetaskqueue.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The worker pod's terminationGracePeriodSeconds: shutdown grace + 10 s to release tasks. */}}
{{- define "kubetaskqueue.workerTerminationGrace" -}}
{{- add (int .Values.worker.shutdownGraceSeconds) 10 }}
{{- end }}
