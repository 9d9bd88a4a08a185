{{- define "sandbox-extproc.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sandbox-extproc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sandbox-extproc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sandbox-extproc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sandbox-extproc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sandbox-extproc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sandbox-extproc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sandbox-extproc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The project's one list of API rights (files/rbac-rules.yaml, shared with the tests): the rules of the enabled Sandbox families (config.sandboxKind) only. */}}
{{- define "sandbox-extproc.rules" -}}
{{- $all := .Files.Get "files/rbac-rules.yaml" | fromYaml -}}
{{- $rules := list -}}
{{- range $kind := splitList "," (toString (default "openkruise" .Values.config.sandboxKind)) -}}
{{- with trim $kind -}}
{{- $rules = concat $rules (required (printf "config.sandboxKind: no RBAC rules for the sandbox kind %q" .) (get $all .)) -}}
{{- end -}}
{{- end -}}
{{ toYaml $rules }}
{{- end -}}

{{/* envoy/envoy.yaml (files/envoy.yaml links to it) with its ${TOKENS} filled in. */}}
{{- define "sandbox-extproc.envoyConfig" -}}
{{- .Files.Get "files/envoy.yaml"
  | replace "${ADMIN_PORT}" (toString .Values.envoy.adminPort)
  | replace "${LISTEN_ADDRESS}" "0.0.0.0"
  | replace "${LISTEN_PORT}" (toString .Values.envoy.port)
  | replace "${EXTPROC_HOST}" "127.0.0.1"
  | replace "${EXTPROC_PORT}" (toString .Values.service.grpcPort)
  | replace "${MESSAGE_TIMEOUT}" .Values.envoy.messageTimeout
  | replace "${MAX_MESSAGE_TIMEOUT}" .Values.envoy.maxMessageTimeout -}}
{{- end -}}

{{/* An alert's runbook: a link when prometheusRule.runbookUrl is set, else where it lives in the repository. */}}
{{- define "sandbox-extproc.runbook" -}}
{{- $root := index . 0 -}}
{{- $anchor := index . 1 -}}
{{- with $root.Values.prometheusRule.runbookUrl -}}
runbook_url: {{ printf "%s#%s" . $anchor | quote }}
{{- else -}}
runbook: {{ printf "docs/operations.md#%s" $anchor | quote }}
{{- end -}}
{{- end -}}
