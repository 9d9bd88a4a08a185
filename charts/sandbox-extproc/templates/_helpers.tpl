{{- define "sandbox-extproc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sandbox-extproc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* An image reference: [global.imageRegistry/]repository, then @digest when given, else :tag. Args: (list image-values root default-tag). */}}
{{- define "sandbox-extproc.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- $registry := (($root.Values.global | default dict).imageRegistry | default "") -}}
{{- $repository := ternary (printf "%s/%s" (trimSuffix "/" $registry) $image.repository) $image.repository (ne $registry "") -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (toString (index . 2)) -}}
{{- end -}}
{{- end -}}

{{/* The Sandbox families of this install (config.sandboxKind), as a list. */}}
{{- define "sandbox-extproc.kinds" -}}
{{- $kinds := list -}}
{{- range splitList "," (toString (default "openkruise" .Values.config.sandboxKind)) -}}
{{- with trim . }}{{ $kinds = append $kinds . }}{{ end -}}
{{- end -}}
{{- toJson $kinds -}}
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

{{/* The helm test Pod's labels: the release's, but not the selector labels, so that no Service, PDB,
NetworkPolicy or spread constraint of the release takes it for a replica. */}}
{{- define "sandbox-extproc.testLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sandbox-extproc.testSelectorLabels" . }}
app.kubernetes.io/part-of: {{ include "sandbox-extproc.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* What the NetworkPolicy admits the helm test Pod by. */}}
{{- define "sandbox-extproc.testSelectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end -}}

{{- define "sandbox-extproc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sandbox-extproc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Whether this release suspends idle agent-sandbox Sandboxes: the family is on and config.idleSuspension is not false. */}}
{{- define "sandbox-extproc.idleSuspension" -}}
{{- $families := list -}}
{{- range splitList "," (toString (default "openkruise" .Values.config.sandboxKind)) }}{{ $families = append $families (trim .) }}{{ end -}}
{{- if and (has "agent-sandbox" $families) (ne (toString (default "true" .Values.config.idleSuspension)) "false") }}true{{ end -}}
{{- end -}}

{{/* The idle suspender's Lease: one per release, so two releases in a namespace never share one. */}}
{{- define "sandbox-extproc.leaseName" -}}
{{- default (printf "%s-idle" (include "sandbox-extproc.fullname" .)) .Values.config.leaseName -}}
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

{{/* envoy/envoy.yaml (files/envoy.yaml is a copy, checked by test/unit/chart-files.test.ts) with its
${TOKENS} filled in, and the sidecar's stats listener (files/envoy-stats.yaml) added: Envoy's own
/stats/prometheus on envoy.statsPort, while its admin interface stays on 127.0.0.1. */}}
{{- define "sandbox-extproc.envoyConfig" -}}
{{- $stats := .Files.Get "files/envoy-stats.yaml" | replace "${STATS_PORT}" (toString .Values.envoy.statsPort) | replace "${ADMIN_PORT}" (toString .Values.envoy.adminPort) -}}
{{- $listener := index (regexSplit "(?m)^# --- cluster\n" $stats -1) 0 -}}
{{- $cluster := index (regexSplit "(?m)^# --- cluster\n" $stats -1) 1 -}}
{{- .Files.Get "files/envoy.yaml"
  | replace "\n  clusters:\n" (printf "\n%s  clusters:\n%s" $listener $cluster)
  | replace "${ADMIN_PORT}" (toString .Values.envoy.adminPort)
  | replace "${LISTEN_ADDRESS}" "0.0.0.0"
  | replace "${LISTEN_PORT}" (toString .Values.envoy.port)
  | replace "${EXTPROC_HOST}" "127.0.0.1"
  | replace "${EXTPROC_PORT}" (toString .Values.service.grpcPort)
  | replace "${MESSAGE_TIMEOUT}" .Values.envoy.messageTimeout
  | replace "${MAX_MESSAGE_TIMEOUT}" .Values.envoy.maxMessageTimeout
  | replace "${REQUEST_HEADERS_TIMEOUT}" .Values.envoy.requestHeadersTimeout
  | replace "${STREAM_IDLE_TIMEOUT}" .Values.envoy.streamIdleTimeout
  | replace "${WEBSOCKET_IDLE_TIMEOUT}" .Values.envoy.websocketIdleTimeout
  | replace "${MAX_CONNECTIONS}" (toString .Values.envoy.maxConnections)
  | replace "${XFF_NUM_TRUSTED_HOPS}" (toString .Values.envoy.xffNumTrustedHops) -}}
{{- end -}}

{{/* A duration value ("500ms", "90s", "5m", "1h") in milliseconds; the schema admits only these forms. */}}
{{- define "sandbox-extproc.ms" -}}
{{- $m := regexFind "^[0-9]+" . | atoi -}}
{{- $unit := trimPrefix (regexFind "^[0-9]+" .) . -}}
{{- if eq $unit "ms" }}{{ $m }}{{ else if eq $unit "s" }}{{ mul $m 1000 }}{{ else if eq $unit "m" }}{{ mul $m 60000 }}{{ else }}{{ mul $m 3600000 }}{{ end -}}
{{- end -}}

{{/* Combinations of values that cannot work, refused at install time with the reason. */}}
{{- define "sandbox-extproc.validate" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- range $setting := list "metadataNamespace" "metadataKey" -}}
{{- if hasKey $.Values.config $setting -}}
{{- fail (printf "config.%s: the bundled Envoy (sidecar mode) reads the upstream from envoy.lb.original_dst/host only; set it in standalone mode, with your own Envoy reading the same key" $setting) -}}
{{- end -}}
{{- end -}}
{{- if .Values.grpcTls.secretName -}}
{{- fail "grpcTls.secretName: in sidecar mode Envoy reaches sandbox-extproc on localhost in clear text; TLS is for standalone mode" -}}
{{- end -}}
{{- if le (include "sandbox-extproc.ms" .Values.envoy.streamIdleTimeout | atoi) (include "sandbox-extproc.ms" .Values.envoy.maxMessageTimeout | atoi) -}}
{{- fail (printf "envoy.streamIdleTimeout (%s) must be longer than envoy.maxMessageTimeout (%s): a request held while its sandbox wakes sends nothing" .Values.envoy.streamIdleTimeout .Values.envoy.maxMessageTimeout) -}}
{{- end -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (add (int .Values.envoy.drainSeconds) 5) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed envoy.drainSeconds (%v) by more than 5" .Values.terminationGracePeriodSeconds .Values.envoy.drainSeconds) -}}
{{- end -}}
{{- end -}}
{{- if .Values.agentSandboxRouter.enabled -}}
{{- if not (has "agent-sandbox" (splitList "," (toString (default "openkruise" .Values.config.sandboxKind)))) -}}
{{- fail "agentSandboxRouter.enabled: the router serves agent-sandbox Sandboxes; set config.sandboxKind to include agent-sandbox" -}}
{{- end -}}
{{- if and (eq .Values.mode "sidecar") (ne (int .Values.envoy.port) 8080) -}}
{{- fail (printf "agentSandboxRouter.enabled: envoy.port must be 8080 (not %v): agent-sandbox's Go client port-forwards to port 8080 of a ready endpoint's pod" .Values.envoy.port) -}}
{{- end -}}
{{- if and (eq .Values.mode "standalone") (not .Values.agentSandboxRouter.edgeSelector) -}}
{{- fail "agentSandboxRouter.edgeSelector: in standalone mode the router Service selects your edge's pods (the Envoy running the ext_proc filter); name their labels" -}}
{{- end -}}
{{- end -}}
{{- if eq (toString .Values.config.agentSandboxAuthzMode) "scoped-token" -}}
{{- if not .Values.agentSandboxRouter.scopedTokenSecret.name -}}
{{- fail "config.agentSandboxAuthzMode scoped-token: set agentSandboxRouter.scopedTokenSecret.name, the Secret holding the shared HMAC secret" -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey .Values.config "defaultPort") (hasKey .Values.config "e2bDefaultPort") -}}
{{- fail "config.defaultPort is the old name of config.e2bDefaultPort: set one" -}}
{{- end -}}
{{- if and .Values.podCIDR (hasKey .Values.config "upstreamCidrs") -}}
{{- fail "podCIDR and config.upstreamCidrs both set the networks pod IPs must lie in: set one" -}}
{{- end -}}
{{- if and .Values.grpcTls.clientCa (not .Values.grpcTls.secretName) -}}
{{- fail "grpcTls.clientCa: needs grpcTls.secretName (the Secret's ca.crt)" -}}
{{- end -}}
{{- /* Kubernetes keeps the last of two variables of one name: an extraEnv entry would silently replace
what the chart sets (the gRPC address, podCIDR's networks, the metadata key the bundled Envoy reads). */ -}}
{{- $envOf := .Files.Get "files/settings-env.yaml" | fromYaml -}}
{{- range .Values.extraEnv -}}
{{- $name := toString .name -}}
{{- if hasPrefix "SANDBOX_EXTPROC_" $name -}}
{{- $key := "" -}}
{{- range $k, $v := $envOf }}{{ if eq $v $name }}{{ $key = $k }}{{ end }}{{ end -}}
{{- $chartValue := get (dict
  "SANDBOX_EXTPROC_GRPC_HOST" "from mode"
  "SANDBOX_EXTPROC_GRPC_PORT" "from service.grpcPort"
  "SANDBOX_EXTPROC_HTTP_HOST" "(0.0.0.0: probes and Prometheus reach it)"
  "SANDBOX_EXTPROC_HTTP_PORT" "from service.httpPort"
  "SANDBOX_EXTPROC_ROUTE_SOURCE" "(kubernetes)"
  "SANDBOX_EXTPROC_NAMESPACES" "from watchNamespaces"
  "SANDBOX_EXTPROC_LABEL_SELECTOR" "from labelSelector"
  "SANDBOX_EXTPROC_LOG_LEVEL" "from logLevel"
  "SANDBOX_EXTPROC_GRPC_TLS_CERT" "from grpcTls.secretName"
  "SANDBOX_EXTPROC_GRPC_TLS_KEY" "from grpcTls.secretName"
  "SANDBOX_EXTPROC_GRPC_TLS_CLIENT_CA" "from grpcTls.clientCa") $name -}}
{{- if $key -}}
{{- fail (printf "extraEnv: %s is a setting: set config.%s instead (the chart checks it, and may set that variable itself)" $name $key) -}}
{{- else if $chartValue -}}
{{- fail (printf "extraEnv: %s is set by the chart %s" $name $chartValue) -}}
{{- else -}}
{{- fail (printf "extraEnv: %s: SANDBOX_EXTPROC_* variables are the chart's to set; give the setting as config.<name> (the README's configuration table)" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
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
