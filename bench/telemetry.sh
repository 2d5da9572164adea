#!/usr/bin/env bash
# Cost of audit, metrics and tracing: gateway throughput and CPU per request
# with them on vs a build without them, same run, as ratios. Needs wrk
# (apt-get install -y wrk) and python3; payloads come from bench/gateway.py.
#
#   bench/telemetry.sh                            # BASELINE=6b8695d, 10s x 2 rounds
#   DURATION=5s ROUNDS=1 bench/telemetry.sh       # quick look
#   BASELINE=HEAD~3 SIZE_KB=15 bench/telemetry.sh # 20 KB bodies
#
# Settings (environment):
#   BASELINE  git rev built without audit, metrics and tracing (default
#             6b8695d, the last commit before them); built once into
#             target/bench-<sha> through a temporary git worktree.
#   DURATION  wrk run per case and round (default 10s).
#   ROUNDS    repetitions (default 2); the table shows the median per case.
#   CONNS     wrk connections (default 16; one wrk thread).
#   IMAGE     JPEG to send (default testdata/face-640x480.jpg), padded to
#   SIZE_KB   SIZE_KB KiB (default 150: ~200 KB of canonical base64).
#   SAMPLER   OTEL_TRACES_SAMPLER of the traced case (default
#             parentbased_always_on: every request traced, the worst case),
#   SAMPLER_ARG and its argument (e.g. SAMPLER=parentbased_traceidratio
#             SAMPLER_ARG=0.1).
#
# Cases (each a fresh process per round, same simulator, pepper, tenant, key):
#   base    the BASELINE build: no audit trail, no /metrics, no OTLP.
#   audit   the working tree: audit records to a file (`[audit] sink =
#           "file"`, rotated at 100 MiB), metrics counted; no trace export.
#   traced  as audit, plus OTLP/gRPC trace export to a local receiver
#           (crates/livegate-telemetry's otlp_sink example) with SAMPLER.
# Columns as in bench/ratelimit.sh: req/s, mean and p99 ms (wrk); gw µs/req =
# the gateway's CPU time (utime+stime, all threads) / requests; other% = CPU
# used meanwhile by everything but wrk, the simulator and the gateway, in %
# of one core (the OTLP receiver lands here). Then audit/base and
# traced/base ratios of req/s and gw µs/req. Any non-200 or socket error
# fails the run, and so does an audit file holding fewer records than the
# requests answered.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

BASELINE=${BASELINE:-6b8695d}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
ROUNDS=${ROUNDS:-2}
IMAGE=${IMAGE:-testdata/face-640x480.jpg}
SIZE_KB=${SIZE_KB:-150}
SAMPLER=${SAMPLER:-parentbased_always_on}
SAMPLER_ARG=${SAMPLER_ARG:-}

die() { echo "bench/telemetry.sh: $*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
command -v wrk >/dev/null || die "needs wrk: apt-get install -y wrk"
command -v python3 >/dev/null || die "needs python3"
tck=$(getconf CLK_TCK)

tmp=$(mktemp -d /tmp/livegate-telemetry.XXXXXX)
pids=()     # the simulator and the OTLP receiver
gw_pids=()  # the current gateways
worktrees=()
wrk_pid=
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -z $wrk_pid ]] || stop "$wrk_pid"
  stop "${gw_pids[@]}" "${pids[@]}"
  for p in "${worktrees[@]}"; do git -C "$repo" worktree remove --force "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build candidate ""
build base "$BASELINE"
echo "building the OTLP receiver ..." >&2
cargo build --release -q -p livegate-telemetry --features testkit --example otlp_sink
cp target/release/examples/otlp_sink "$tmp/otlp_sink"

# --- servers ------------------------------------------------------------------
start_stub "$bin_candidate"
"$tmp/otlp_sink" >"$tmp/otlp.out" 2>&1 &
pids+=("$!")
otlp=$(wait_addr "$tmp/otlp.out" "otlp grpc ")

new_key "$bin_candidate"
config() { # base|audit|traced
  printf '[vendor]\nbase_url = "http://%s"\napi_key = "%s"\n' "$stub" "$vendor_key"
  printf '[auth]\npepper = "%s"\n[log]\nlevel = "warn"\n' "$pepper"
  [[ $1 == base ]] || printf '[audit]\nsink = "file"\npath = "%s/audit-%s.jsonl"\n' "$tmp" "$1"
  printf '[[tenants]]\nid = "bench"\n'
  sed -n '/^\[\[tenants.keys\]\]/,$p' "$tmp/key.out"
}
cases=(base audit traced)
for c in "${cases[@]}"; do config "$c" >"$tmp/gateway-$c.toml"; done

declare -A gw_addr gw_pid
start_gateways() {
  local c bin otel
  stop "${gw_pids[@]}"
  gw_pids=()
  rm -f "$tmp"/audit-*.jsonl*
  for c in "${cases[@]}"; do
    bin=$bin_candidate
    [[ $c != base ]] || bin=$bin_base
    otel=()
    if [[ $c == traced ]]; then
      otel=(OTEL_EXPORTER_OTLP_ENDPOINT="$otlp" OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_TRACES_SAMPLER="$SAMPLER")
      [[ -z $SAMPLER_ARG ]] || otel+=(OTEL_TRACES_SAMPLER_ARG="$SAMPLER_ARG")
    fi
    env LIVEGATE_SERVER__LISTEN=127.0.0.1:0 LIVEGATE_OPS__LISTEN=127.0.0.1:0 "${otel[@]}" \
      "$bin" serve --config "$tmp/gateway-$c.toml" >"$tmp/gw-$c.out" 2>&1 &
    gw_pid[$c]=$!
    gw_pids+=("${gw_pid[$c]}")
    gw_addr[$c]=$(wait_addr "$tmp/gw-$c.out" "livegate listening on ")
  done
  for c in "${cases[@]}"; do warm_up "$c"; done
}
audit_lines() { # CASE -> records written so far (0 for base)
  [[ $1 != base ]] || { echo 0; return; }
  cat "$tmp/audit-$1.jsonl"* 2>/dev/null | wc -l
}

python3 bench/gateway.py payloads "$IMAGE" "$SIZE_KB" "$tmp"
write_post_lua "$tmp/post.lua"
per_req() { awk -v d="$1" -v t="$tck" -v n="$2" 'BEGIN { printf "%.1f", d * 1e6 / t / n }'; }

run() { # CASE ROUND
  local c=$1 round=$2 gpid=${gw_pid[$1]} g0 g1 s0 s1 m0 m1 w0 w1 t0 t1 a0 a1
  local line rps mean p99 reqs bad errs gw_us other
  a0=$(audit_lines "$c")
  g0=$(cpu_ticks "$gpid") s0=$(cpu_ticks "$stub_pid")
  w0=$(children_us) m0=$(machine_busy) t0=$(date +%s%N)
  measured_wrk "$c"
  t1=$(date +%s%N) m1=$(machine_busy) w1=$(children_us)
  g1=$(cpu_ticks "$gpid") s1=$(cpu_ticks "$stub_pid")
  line=$(grep '^RESULT ' "$tmp/wrk.out") || { cat "$tmp/wrk.out" >&2; die "no result from wrk ($c)"; }
  read -r _ rps mean p99 reqs bad errs <<<"$line"
  ((reqs > 0 && bad == 0 && errs == 0)) ||
    { cat "$tmp/wrk.out" >&2; tail -20 "$tmp/gw-$c.out" >&2; die "$c: $reqs requests, $bad non-200, $errs errors"; }
  if [[ $c != base ]]; then # every answered request has its record (allow the writer a moment)
    for _ in $(seq 50); do a1=$(audit_lines "$c"); ((a1 - a0 >= reqs)) && break; sleep 0.1; done
    ((a1 - a0 >= reqs)) || die "$c: $reqs requests but $((a1 - a0)) audit records"
  fi
  gw_us=$(per_req $((g1 - g0)) "$reqs")
  other=$(awk -v m=$((m1 - m0)) -v ours=$((s1 - s0 + g1 - g0)) -v t="$tck" -v w=$((w1 - w0)) -v wall=$(((t1 - t0) / 1000)) \
    'BEGIN { o = ((m - ours) * 1e6 / t - w) / wall * 100; printf "%.0f", o < 0 ? 0 : o }')
  echo "$c $round $rps $mean $p99 $reqs $gw_us $other" >>"$tmp/results"
  printf '  round %d/%d %-6s %8.0f req/s  gw %7s µs/req  other %4s%%\n' "$round" "$ROUNDS" "$c" "$rps" "$gw_us" "$other" >&2
}

echo "base:   $label_base"
echo "others: $label_candidate"
echo "image: $IMAGE padded to $(stat -c %s "$tmp/image.jpg") bytes; canonical body $(stat -c %s "$tmp/canonical.json") B; sampler $SAMPLER${SAMPLER_ARG:+ $SAMPLER_ARG}"
: >"$tmp/results"
for round in $(seq "$ROUNDS"); do
  start_gateways
  for c in "${cases[@]}"; do run "$c" "$round"; done
done
stop "${pids[1]}"
echo "OTLP receiver: $(sed -n 's/^spans //p' "$tmp/otlp.out") spans received"

python3 - "$tmp/results" "$CONNS" "$DURATION" "$ROUNDS" <<'PY'
import statistics, sys
path, conns, duration, rounds = sys.argv[1:]
F = ["rps", "mean", "p99", "requests", "gw", "other"]
runs = {}
for line in open(path):
    c, _round, *vals = line.split()
    runs.setdefault(c, []).append(dict(zip(F, map(float, vals))))
s = {c: {k: statistics.median(r[k] for r in rs) for k in F} for c, rs in runs.items()}
for c, rs in runs.items():
    s[c]["requests"] = int(sum(r["requests"] for r in rs))
agg = f"median of {rounds} rounds" if int(rounds) > 1 else "1 round"
print(f"{conns} connections, {duration} per run, {agg}; requests are totals")
print("{:<7} {:>8} {:>8} {:>8} {:>10} {:>9} {:>6}".format("case", "req/s", "mean ms", "p99 ms", "gw µs/req", "requests", "other%"))
for c in ("base", "audit", "traced"):
    x = s[c]
    print("{:<7} {:>8.0f} {:>8.2f} {:>8.2f} {:>10.1f} {:>9d} {:>5.0f}%".format(c, x["rps"], x["mean"], x["p99"], x["gw"], x["requests"], x["other"]))
for c in ("audit", "traced"):
    print(f"{c}/base: req/s {s[c]['rps'] / s['base']['rps']:.3f}x; gw cpu/req {s[c]['gw'] / s['base']['gw']:.3f}x")
PY
