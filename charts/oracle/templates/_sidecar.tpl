{{/* The sidecar container (`oracle-sidecar serve`); a native sidecar when oracle.nativeSidecar says so. */}}
{{- define "oracle.sidecarContainer" -}}
- name: sidecar
  image: {{ include "oracle.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if include "oracle.nativeSidecar" . }}
  # A native sidecar: starts before the Oracle (once its startup probe passes) and stops after it.
  restartPolicy: Always
  {{- end }}
  args:
    - serve
  envFrom:
    - configMapRef:
        name: {{ include "oracle.componentName" (list . "sidecar") }}
  {{- with .Values.sidecar.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: metrics
      containerPort: {{ .Values.sidecar.port }}
      protocol: TCP
  startupProbe:
    {{- include "oracle.httpProbe" (dict "path" "/livez" "port" "metrics" "timing" .Values.sidecar.probes.startup) | nindent 4 }}
  livenessProbe:
    {{- include "oracle.httpProbe" (dict "path" "/livez" "port" "metrics" "timing" .Values.sidecar.probes.liveness) | nindent 4 }}
  readinessProbe:
    {{- include "oracle.httpProbe" (dict "path" "/ready" "port" "metrics" "timing" .Values.sidecar.probes.readiness) | nindent 4 }}
  {{- with .Values.sidecar.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: socket
      mountPath: {{ include "oracle.socketDir" . }}
    - name: tmp
      mountPath: /tmp
{{- end }}
