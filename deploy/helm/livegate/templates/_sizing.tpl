{{/*
The chart sizes livegate from the container's resources (values.yaml:
`sizing`, and the operations guide's "Sizing"):

- server.blocking_threads, the blocking pool and the number of images
  fingerprinted at once ("decode slots"): config.server.blocking_threads
  when set; else two per CPU of resources.limits.cpu, rounded up, at least
  2; else sizing.defaultBlockingThreads. Never livegate's own "two per CPU
  the process sees", which without a CPU limit is twice the node's CPUs.
- The memory livegate may use, config.server.inflight_body_budget_bytes +
  decode slots x sizing.fingerprintPeakBytes + sizing.baselineBytes, must
  fit in resources.limits.memory: rendering fails otherwise, naming the
  sum and each term. Without a memory limit the chart renders and NOTES
  warns.
*/}}

{{/*
A Kubernetes quantity as an integer, rounded up: .scale 1 gives bytes
(memory), .scale 1000 millicores (CPU). .q is a string ("512Mi", "1.5",
"500m", "129e6") or a number; .what names the value in errors. Suffixes:
Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or a decimal exponent eN / EN.
*/}}
{{- define "livegate.quantity" -}}
{{- $q := .q }}
{{- if or (kindIs "float64" $q) (kindIs "int" $q) (kindIs "int64" $q) }}
{{- $q = printf "%.3f" (float64 $q) | trimSuffix ".000" }}
{{- end }}
{{- $q = toString $q | trim }}
{{- $re := "^([0-9]*)(?:\\.([0-9]*))?(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][0-9]+)?$" }}
{{- if not (and (regexMatch $re $q) (regexMatch "^\\.?[0-9]" $q)) }}
{{- fail (printf "%s %q cannot be read as a Kubernetes quantity (e.g. 512Mi, 1Gi, 500M, 1.5, 500m)" .what $q) }}
{{- end }}
{{- $int := regexReplaceAll $re $q "${1}" }}
{{- $frac := regexReplaceAll $re $q "${2}" }}
{{- $suffix := regexReplaceAll $re $q "${3}" }}
{{- $digits := regexReplaceAll "^0+" (printf "%s%s" $int $frac) "" | default "0" }}
{{- if gt (len $digits) 15 }}
{{- fail (printf "%s %q has too many digits for the chart to size it" .what $q) }}
{{- end }}
{{- $mantissa := atoi $digits }}
{{- $num := int64 .scale }}
{{- $den := 1 }}
{{- range until (len $frac) }}{{ $den = mul $den 10 }}{{ end }}
{{- $binary := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 }}
{{- $decimal := dict "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 }}
{{- $fraction := dict "m" 1000 "u" 1000000 "n" 1000000000 }}
{{- if hasKey $binary $suffix }}
{{- $num = mul $num (get $binary $suffix) }}
{{- else if hasKey $decimal $suffix }}
{{- $num = mul $num (get $decimal $suffix) }}
{{- else if hasKey $fraction $suffix }}
{{- $den = mul $den (get $fraction $suffix) }}
{{- else if $suffix }}
{{- range until (atoi (substr 1 (len $suffix) $suffix)) }}{{ $num = mul $num 10 }}{{ end }}
{{- end }}
{{- if gt (divf (mulf $mantissa $num) $den) 4e18 }}
{{- fail (printf "%s %q is too large for the chart to size it" .what $q) }}
{{- end }}
{{- div (add (mul $mantissa $num) (sub $den 1)) $den }}
{{- end }}

{{/* Bytes as "N MiB", or "N.N MiB" when not a whole number of MiB. */}}
{{- define "livegate.mib" -}}
{{- $b := int64 . }}
{{- if eq (mod $b 1048576) 0 }}
{{- printf "%d MiB" (div $b 1048576) }}
{{- else }}
{{- printf "%.1f MiB" (divf $b 1048576) }}
{{- end }}
{{- end }}

{{/* resources.limits.cpu in millicores, or "" without a CPU limit. */}}
{{- define "livegate.cpuLimitMillis" -}}
{{- $limits := .Values.resources.limits | default dict }}
{{- $cpu := index $limits "cpu" }}
{{- if not (kindIs "invalid" $cpu) }}
{{- include "livegate.quantity" (dict "q" $cpu "scale" 1000 "what" "resources.limits.cpu") }}
{{- end }}
{{- end }}

{{/*
server.blocking_threads as rendered (always a number), and where it came
from. 512 is livegate's own maximum (MAX_BLOCKING_THREADS).
*/}}
{{- define "livegate.blockingThreadsSource" -}}
{{- $explicit := .Values.config.server.blocking_threads }}
{{- $millis := include "livegate.cpuLimitMillis" . }}
{{- if not (kindIs "invalid" $explicit) }}config.server.blocking_threads
{{- else if $millis }}resources.limits.cpu
{{- else }}sizing.defaultBlockingThreads, no CPU limit
{{- end }}
{{- end }}

{{- define "livegate.blockingThreads" -}}
{{- $explicit := .Values.config.server.blocking_threads }}
{{- $millis := include "livegate.cpuLimitMillis" . }}
{{- if not (kindIs "invalid" $explicit) }}
{{- int64 $explicit }}
{{- else if $millis }}
{{- /* two per CPU, rounded up: ceil(2 * millis / 1000) */}}
{{- $threads := div (add (mul 2 (atoi $millis)) 999) 1000 }}
{{- min 512 (max 2 $threads) }}
{{- else }}
{{- int64 .Values.sizing.defaultBlockingThreads }}
{{- end }}
{{- end }}

{{/*
The memory livegate may use, in bytes: the in-flight body budget, one
fingerprint's peak per decode slot, and the baseline.
*/}}
{{- define "livegate.memoryNeedBytes" -}}
{{- $budget := .Values.config.server.inflight_body_budget_bytes | default 268435456 | int64 }}
{{- $slots := include "livegate.blockingThreads" . | atoi }}
{{- add $budget (mul $slots (int64 .Values.sizing.fingerprintPeakBytes)) (int64 .Values.sizing.baselineBytes) }}
{{- end }}

{{/* "inflight_body_budget_bytes 256 MiB + 4 decode slots × 32 MiB + 64 MiB baseline" */}}
{{- define "livegate.memoryNeedTerms" -}}
{{- $budget := .Values.config.server.inflight_body_budget_bytes | default 268435456 | int64 }}
{{- $slots := include "livegate.blockingThreads" . | atoi }}
{{- printf "inflight_body_budget_bytes %s + %d decode slots × %s + %s baseline" (include "livegate.mib" $budget) $slots (include "livegate.mib" .Values.sizing.fingerprintPeakBytes) (include "livegate.mib" .Values.sizing.baselineBytes) }}
{{- end }}

{{/* Fails rendering when resources.limits.memory is below what livegate may use. */}}
{{- define "livegate.checkMemory" -}}
{{- $limits := .Values.resources.limits | default dict }}
{{- $mem := index $limits "memory" }}
{{- if not (kindIs "invalid" $mem) }}
{{- $limit := include "livegate.quantity" (dict "q" $mem "scale" 1 "what" "resources.limits.memory") | atoi }}
{{- $need := include "livegate.memoryNeedBytes" . | atoi }}
{{- if lt $limit $need }}
{{- $shown := $mem }}
{{- if not (kindIs "string" $mem) }}{{ $shown = int64 $mem }}{{ end }}
{{- fail (printf "resources.limits.memory %v is below the %s livegate may use: %s. Raise the limit, or lower config.server.inflight_body_budget_bytes or the decode slots (config.server.blocking_threads, or resources.limits.cpu: two per CPU)" $shown (include "livegate.mib" $need) (include "livegate.memoryNeedTerms" .)) }}
{{- end }}
{{- end }}
{{- end }}
