{{/* The chart name, or nameOverride. */}}
{{- define "oracle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object-name prefix: fullnameOverride, else RELEASE-NAME (RELEASE alone when it already holds NAME); at most 63 characters. */}}
{{- define "oracle.fullname" -}}
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

{{/* The name of one component's object, FULLNAME-SUFFIX, at most 63 characters; call with (list . "dashboard"). */}}
{{- define "oracle.componentName" -}}
{{- printf "%s-%s" (include "oracle.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The helm.sh/chart label value: NAME-VERSION. */}}
{{- define "oracle.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels of every object of one component; call with (list . "oracle"). */}}
{{- define "oracle.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ include "oracle.chart" $ctx }}
{{ include "oracle.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: oracle-sidecar
{{- end }}

{{/* The labels that select one component's pods; call with (list . "oracle"). */}}
{{- define "oracle.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "oracle.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The Oracle pods' selector labels as a label-selector string, for ORACLE_POD_SELECTOR. */}}
{{- define "oracle.podSelector" -}}
{{- $labels := include "oracle.selectorLabels" (list . "oracle") | fromYaml }}
{{- $pairs := list }}
{{- range $key := keys $labels | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $key (get $labels $key)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* The oracle-sidecar image reference; the tag defaults to the chart's appVersion. */}}
{{- define "oracle.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Oracle container's image reference: the user's image, or the oracle-sidecar image for the demo Oracle. */}}
{{- define "oracle.oracleImage" -}}
{{- if .Values.oracle.image.repository }}
{{- printf "%s:%s" .Values.oracle.image.repository (required "oracle.image.tag is required when oracle.image.repository is set" .Values.oracle.image.tag) }}
{{- else }}
{{- include "oracle.image" . }}
{{- end }}
{{- end }}

{{/* "true" when the sidecar runs as a native sidecar: sidecar.native true, or auto on Kubernetes 1.29 and newer; else empty. */}}
{{- define "oracle.nativeSidecar" -}}
{{- $mode := toString .Values.sidecar.native }}
{{- if or (eq $mode "true") (and (eq $mode "auto") (semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version)) }}
{{- true }}
{{- end }}
{{- end }}

{{/* The directory of the sidecar's socket, which is the shared emptyDir's mount path. */}}
{{- define "oracle.socketDir" -}}
{{- dir .Values.sidecar.socketPath }}
{{- end }}

{{/* The alerter CronJob's name: at most 52 characters, since a Job's name adds 11 to it and must stay within 63. */}}
{{- define "oracle.alerterCronJobName" -}}
{{- include "oracle.componentName" (list . "alerter") | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* The name of the alerter's state ConfigMap. */}}
{{- define "oracle.alerterStateName" -}}
{{- include "oracle.componentName" (list . "alerter-state") }}
{{- end }}

{{/* The name of the Secret holding the Telegram credentials, or empty when the alerter has none (log-only). */}}
{{- define "oracle.telegramSecretName" -}}
{{- $telegram := .Values.alerter.telegram }}
{{- if $telegram.existingSecret }}
{{- $telegram.existingSecret }}
{{- else if $telegram.botToken }}
{{- include "oracle.componentName" (list . "telegram") }}
{{- end }}
{{- end }}

{{/* The exact command that makes the dashboard reachable on http://127.0.0.1:PORT. */}}
{{- define "oracle.dashboardPortForward" -}}
{{- printf "kubectl port-forward --namespace %s svc/%s %d:%d" .Release.Namespace (include "oracle.componentName" (list . "dashboard")) (int .Values.dashboard.service.port) (int .Values.dashboard.service.port) }}
{{- end }}

{{/* The exact command that makes the Oracle pods' sidecar reachable on http://127.0.0.1:PORT. */}}
{{- define "oracle.sidecarPortForward" -}}
{{- printf "kubectl port-forward --namespace %s svc/%s %d:%d" .Release.Namespace (include "oracle.fullname" .) (int .Values.service.metricsPort) (int .Values.service.metricsPort) }}
{{- end }}

{{/* An HTTP probe on the named port; call with (dict "path" "/livez" "port" "metrics" "timing" .Values.sidecar.probes.liveness). */}}
{{- define "oracle.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
periodSeconds: {{ .timing.periodSeconds }}
timeoutSeconds: {{ .timing.timeoutSeconds }}
failureThreshold: {{ .timing.failureThreshold }}
{{- end }}

{{/* The volumes every pod of the chart has: an emptyDir for /tmp, since the root filesystem is read-only. */}}
{{- define "oracle.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end }}
