{{/* The release's name prefix: "<release>-paygate", or the release name when it already says paygate. */}}
{{- define "paygate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* One component's object name: include "paygate.name" (list . "redis") */}}
{{- define "paygate.name" -}}
{{- printf "%s-%s" (include "paygate.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* What selects one component's pods: include "paygate.selectorLabels" (list . "app") */}}
{{- define "paygate.selectorLabels" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every object's labels: the selector labels plus the chart's. */}}
{{- define "paygate.labels" -}}
{{ include "paygate.selectorLabels" . }}
app.kubernetes.io/part-of: paygate-chaos-kit
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{/* An image reference from {repository, tag}. */}}
{{- define "paygate.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/* A secret value from values, never a default: rendering stops with how to set it. */}}
{{- define "paygate.secret" -}}
{{- $root := index . 0 -}}{{- $key := index . 1 -}}
{{- $hint := printf "set secrets.%s (e.g. --set secrets.%s=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')): no working secret ships with the chart" $key $key -}}
{{- required $hint (get $root.Values.secrets $key) | b64enc -}}
{{- end -}}

{{/* The app's in-cluster address, for Prometheus, Locust and NOTES. */}}
{{- define "paygate.appUrl" -}}
{{- printf "http://%s:%v" (include "paygate.name" (list . "app")) .Values.app.service.port -}}
{{- end -}}

{{/* The containers' common hardening: no privilege escalation, no capabilities. */}}
{{- define "paygate.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The pod settings Locust's master and workers share: the loadtest/ package from its ConfigMap. */}}
{{- define "paygate.locustPod" -}}
securityContext:
  # The image's locust user.
  runAsNonRoot: true
  runAsUser: 1000
  runAsGroup: 1000
  seccompProfile:
    type: RuntimeDefault
volumes:
  - name: loadtest
    configMap:
      name: {{ include "paygate.name" (list . "loadtest") }}
{{- end -}}

{{/* The container settings Locust's master and workers share (image, the package, hardening). */}}
{{- define "paygate.locustContainer" -}}
image: {{ include "paygate.image" .Values.locust.image }}
imagePullPolicy: {{ .Values.locust.image.pullPolicy }}
workingDir: /home/locust
env:
  # The locustfile imports its siblings as the `loadtest` package.
  - {name: PYTHONPATH, value: /home/locust}
volumeMounts:
  - name: loadtest
    mountPath: /home/locust/loadtest
    readOnly: true
securityContext:
  {{- include "paygate.containerSecurity" . | nindent 2 }}
{{- end -}}
