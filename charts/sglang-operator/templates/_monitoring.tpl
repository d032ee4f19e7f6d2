{{/* "true" when the Prometheus Operator's API is there and monitoring is on (else empty). */}}
{{- define "sglang-operator.prometheusOperator" -}}
{{- if and .Values.monitoring.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}true{{- end -}}
{{- end -}}

{{- define "sglang-operator.monitoringLabels" -}}
{{ include "sglang-operator.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
