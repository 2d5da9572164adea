{{/*
livegate's configuration file (TOML), from .Values.config. Keys and sections
are livegate's own (unknown keys are a start-up error); the chart adds the
listeners and the *_file paths of the referenced secrets. Secret values
never appear here.
*/}}
{{- define "livegate.config" -}}
{{- $c := .Values.config -}}
{{- $s := .Values.secrets -}}
{{- $dir := include "livegate.secretDir" . -}}
# livegate configuration, rendered by the Helm chart {{ include "livegate.chart" . }}.
# Check it: livegate check-config --config /etc/livegate/livegate.toml

[server]
# Fixed by the chart: the Service, probes and NetworkPolicy use port 8080.
listen = "0.0.0.0:8080"
{{- include "livegate.tomlKeys" (dict "table" $c.server "skip" (list "blocking_threads")) }}
# Decode slots, from {{ include "livegate.blockingThreadsSource" . }} (the chart's sizing).
blocking_threads = {{ include "livegate.blockingThreads" . }}

[vendor]
{{- include "livegate.tomlKeys" (dict "table" $c.vendor "skip" list) }}
{{- if $s.vendorApiKey.existingSecret }}
api_key_file = {{ printf "%s/vendor-api-key" $dir | toJson }}
{{- end }}

[auth]
{{- if $s.pepper.existingSecret }}
pepper_file = {{ printf "%s/pepper" $dir | toJson }}
{{- end }}

[redis]
{{- include "livegate.tomlKeys" (dict "table" $c.redis "skip" list) }}
{{- if $s.redisUrl.existingSecret }}
url_file = {{ printf "%s/redis-url" $dir | toJson }}
{{- end }}

[ratelimit]
{{- include "livegate.tomlKeys" (dict "table" $c.ratelimit "skip" (list "replicas")) }}
replicas = {{ include "livegate.ratelimitReplicas" . }}

[ops]
# Fixed by the chart: reachable on the pod IP for Prometheus and the admin
# API; who may connect is the NetworkPolicy's business (networkPolicy.ingress.ops).
listen = "0.0.0.0:9090"
{{- if .Values.ops.metricsToken.existingSecret }}
metrics_token_file = {{ printf "%s/metrics-token" $dir | toJson }}
{{- end }}

[admin]
{{- if $s.adminToken.existingSecret }}
token_file = {{ printf "%s/admin-token" $dir | toJson }}
{{- end }}
{{- $admin := .Values.admin }}
{{- range $token := $admin.tokens }}

[[admin.tokens]]
name = {{ $token.name | toJson }}
scopes = {{ $token.scopes | toJson }}
{{- with $token.tenants }}
tenants = {{ toJson . }}
{{- end }}
token_file = {{ printf "%s/admin-token-%s" $dir $token.name | toJson }}
{{- end }}

[images]
{{- include "livegate.tomlKeys" (dict "table" $c.images "skip" list) }}

[protection]
{{- include "livegate.tomlKeys" (dict "table" $c.protection "skip" list) }}

[audit]
{{- include "livegate.tomlKeys" (dict "table" $c.audit "skip" list) }}

[log]
{{- include "livegate.tomlKeys" (dict "table" $c.log "skip" list) }}
{{- range $t := $c.tenants }}

[[tenants]]
{{- include "livegate.tomlKeys" (dict "table" (omit $t "keys") "skip" list) }}
{{- if $t.images }}

[tenants.images]
{{- include "livegate.tomlKeys" (dict "table" $t.images "skip" list) }}
{{- end }}
{{- if $t.protection }}

[tenants.protection]
{{- include "livegate.tomlKeys" (dict "table" $t.protection "skip" list) }}
{{- end }}
{{- range $k := $t.keys }}

[[tenants.keys]]
{{- include "livegate.tomlKeys" (dict "table" $k "skip" list) }}
{{- end }}
{{- end }}
{{- end }}
