{{/* Names and labels. */}}
{{- define "livegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "livegate.fullname" -}}
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

{{- define "livegate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "livegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "livegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "livegate.labels" -}}
helm.sh/chart: {{ include "livegate.chart" . }}
{{ include "livegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: livegate
{{- end }}

{{- define "livegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "livegate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "livegate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The smallest termination grace period that lets livegate stop cleanly:
on SIGTERM it fails readiness and keeps serving for server.shutdown_delay_ms,
drains in-flight requests for up to server.drain_timeout_ms, then writes its
queued audit records for up to 10 s (AUDIT_FLUSH_TIMEOUT in
crates/livegate/src/main.rs); plus a margin for span export and exit.
*/}}
{{- define "livegate.minTerminationGraceSeconds" -}}
{{- $ms := add (int64 .Values.config.server.shutdown_delay_ms) (int64 .Values.config.server.drain_timeout_ms) }}
{{- add (div (add $ms 999) 1000) 10 (int64 .Values.terminationGraceMarginSeconds) }}
{{- end }}

{{- define "livegate.terminationGraceSeconds" -}}
{{- $min := include "livegate.minTerminationGraceSeconds" . | int64 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- $min }}
{{- else if lt (int64 .Values.terminationGracePeriodSeconds) $min }}
{{- fail (printf "terminationGracePeriodSeconds %d is below %d s: config.server.shutdown_delay_ms + config.server.drain_timeout_ms + 10 s audit flush + terminationGraceMarginSeconds (or leave it null to compute it)" (int64 .Values.terminationGracePeriodSeconds) $min) }}
{{- else }}
{{- int64 .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* ratelimit.replicas: the local share during a Redis outage is 1/replicas. */}}
{{- define "livegate.ratelimitReplicas" -}}
{{- if not (kindIs "invalid" .Values.config.ratelimit.replicas) }}
{{- int64 .Values.config.ratelimit.replicas }}
{{- else if .Values.autoscaling.enabled }}
{{- int64 .Values.autoscaling.minReplicas }}
{{- else }}
{{- int64 .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* Where each referenced secret is mounted (one projected volume). */}}
{{- define "livegate.secretDir" -}}/run/secrets/livegate{{- end }}

{{/*
The referenced Secrets as files under livegate.secretDir, as JSON:
{file name: {"existingSecret", "key"}}; only those set.
*/}}
{{- define "livegate.secretFiles" -}}
{{- $s := .Values.secrets -}}
{{- $files := dict -}}
{{- range $file, $ref := dict "vendor-api-key" $s.vendorApiKey "pepper" $s.pepper "admin-token" $s.adminToken "redis-url" $s.redisUrl "metrics-token" .Values.ops.metricsToken -}}
{{- if $ref.existingSecret -}}
{{- $_ := set $files $file (dict "existingSecret" $ref.existingSecret "key" $ref.key) -}}
{{- end -}}
{{- end -}}
{{- $admin := .Values.admin -}}
{{- range $token := $admin.tokens -}}
{{- $file := printf "admin-token-%s" $token.name -}}
{{- if hasKey $files $file -}}
{{- fail (printf "admin.tokens: the name %q is used twice" $token.name) -}}
{{- end -}}
{{- $_ := set $files $file (dict "existingSecret" $token.existingSecret "key" $token.key) -}}
{{- end -}}
{{- toJson $files -}}
{{- end }}

{{/*
One TOML value. Integers and floats are both float64 once Helm has read the
values, so the keys that are floats in livegate are named here; every other
number is written as an integer.
*/}}
{{- define "livegate.tomlValue" -}}
{{- $floats := list "breaker_failure_ratio" "retry_budget_ratio" "tenant_body_share" "default_rate_per_second" "global_rate_per_second" "rate_per_second" }}
{{- $v := .value }}
{{- if kindIs "bool" $v }}
{{- $v }}
{{- else if kindIs "string" $v }}
{{- toJson $v }}
{{- else if kindIs "slice" $v }}
{{- toJson $v }}
{{- else if has .key $floats }}
{{- $s := toString $v }}
{{- if regexMatch "^-?[0-9]+$" $s }}{{ $s }}.0{{ else }}{{ $s }}{{ end }}
{{- else }}
{{- int64 $v }}
{{- end }}
{{- end }}

{{/* The set keys of one table (nulls and sub-tables left out), sorted. */}}
{{- define "livegate.tomlKeys" -}}
{{- range $k, $v := .table }}
{{- if and (not (kindIs "invalid" $v)) (not (kindIs "map" $v)) (not (has $k $.skip)) }}
{{ $k }} = {{ include "livegate.tomlValue" (dict "key" $k "value" $v) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
config.audit.sink as a JSON list of sink names, whether it is one name
("file") or a list (["file", "otlp"]); read it back with fromJsonArray and
test for a sink with `has`.
*/}}
{{- define "livegate.auditSinks" -}}
{{- $sink := .Values.config.audit.sink -}}
{{- if kindIs "slice" $sink -}}
{{- toJson $sink -}}
{{- else -}}
{{- toJson (list $sink) -}}
{{- end -}}
{{- end }}

{{/*
Refuses, when rendering, what livegate would refuse at start-up or what
could not work in the cluster, with the values to change.
*/}}
{{- define "livegate.validate" -}}
{{- include "livegate.checkMemory" . }}
{{- $c := .Values.config }}
{{- $s := .Values.secrets }}
{{- $np := .Values.networkPolicy }}
{{- if $c.vendor.base_url }}
{{- if not $s.vendorApiKey.existingSecret }}
{{- fail "config.vendor.base_url is set: secrets.vendorApiKey.existingSecret must name the Secret holding the vendor key" }}
{{- end }}
{{- if not $s.pepper.existingSecret }}
{{- fail "config.vendor.base_url is set: secrets.pepper.existingSecret must name the Secret holding the HMAC pepper" }}
{{- end }}
{{- else if or $c.tenants $s.pepper.existingSecret $s.adminToken.existingSecret $s.redisUrl.existingSecret $s.vendorApiKey.existingSecret }}
{{- fail "config.vendor.base_url is not set, but tenants or secrets are: livegate refuses to serve real tenants with simulator scores. Set config.vendor.base_url" }}
{{- end }}
{{- if and $c.tenants (not $s.pepper.existingSecret) }}
{{- fail "config.tenants needs secrets.pepper: the key hashes depend on it" }}
{{- end }}
{{- $sinks := include "livegate.auditSinks" . | fromJsonArray }}
{{- if and (has "file" $sinks) (not $c.audit.path) }}
{{- fail "config.audit.sink includes \"file\": set config.audit.path (e.g. /var/log/livegate/audit.jsonl)" }}
{{- end }}
{{- if and (has "file" $sinks) (eq .Values.auditVolume.type "persistentVolumeClaim") (not .Values.auditVolume.claimName) }}
{{- fail "auditVolume.type is persistentVolumeClaim: set auditVolume.claimName" }}
{{- end }}
{{- if and (has "redis" $sinks) (not $s.redisUrl.existingSecret) }}
{{- fail "config.audit.sink includes \"redis\": set secrets.redisUrl" }}
{{- end }}
{{- if and (has "otlp" $sinks) (not .Values.otel.endpoint) }}
{{- fail "config.audit.sink includes \"otlp\": set otel.endpoint (the OTLP collector, rendered as OTEL_EXPORTER_OTLP_ENDPOINT; it then receives traces too)" }}
{{- end }}
{{- if and .Values.otel.endpoint (eq .Values.otel.protocol "grpc") (hasPrefix "https://" .Values.otel.endpoint) }}
{{- fail "otel.protocol grpc is plaintext only in livegate: use http:// or otel.protocol http/protobuf for an https:// collector" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int64 .Values.autoscaling.minReplicas) (int64 .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- if $np.enabled }}
{{- if and $c.vendor.base_url (not (or $np.egress.vendor.to $np.egress.vendor.cidrs)) }}
{{- fail "networkPolicy.enabled with a vendor: list the vendor's address ranges in networkPolicy.egress.vendor.cidrs (or an egress proxy in .to)" }}
{{- end }}
{{- if and $s.redisUrl.existingSecret (not (or $np.egress.redis.to $np.egress.redis.cidrs)) }}
{{- fail "networkPolicy.enabled with Redis: list Redis in networkPolicy.egress.redis.to (selectors) or .cidrs" }}
{{- end }}
{{- if and .Values.otel.endpoint (not (or $np.egress.otlp.to $np.egress.otlp.cidrs)) }}
{{- fail "networkPolicy.enabled with otel.endpoint: list the collector in networkPolicy.egress.otlp.to (selectors) or .cidrs" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not $np.ingress.ops.from) }}
{{- fail "serviceMonitor.enabled with networkPolicy.enabled: list Prometheus in networkPolicy.ingress.ops.from, or it cannot scrape /metrics" }}
{{- end }}
{{- end }}
{{- end }}
