#!/usr/bin/env bash
# Cost of Redis rate limiting: gateway throughput and CPU per request with the
# Redis limiter on vs off, same binary, same run, as a ratio (target: on req/s
# >= 0.85 x off req/s). Needs wrk (apt-get install -y wrk), redis-server,
# redis-cli and python3; payloads come from bench/gateway.py.
#
#   bench/ratelimit.sh                          # DURATION=10s ROUNDS=2 CONNS=16
#   DURATION=5s ROUNDS=1 bench/ratelimit.sh     # quick look
#   ROUNDS=5 CONNS=32 SIZE_KB=150 bench/ratelimit.sh
#
# Settings (environment):
#   DURATION  wrk run per case and round (default 10s; CPU time is read in
#             clock ticks of 10 ms, so keep runs of several seconds).
#   ROUNDS    repetitions (default 2); the table shows the median per case.
#   CONNS     wrk connections (default 16; one wrk thread).
#   IMAGE     JPEG to send (default testdata/face-640x480.jpg), padded with
#   SIZE_KB   random COM segments to SIZE_KB KiB (default 150, i.e. ~200 KB of
#             canonical base64; 0 = the image as it is).
#
# Setup: the working tree built with `cargo build --release --bin livegate`;
# one simulator (`livegate stub`), one private redis-server (a free port, no
# persistence, 127.0.0.1 only; never the shared 6379) and one tenant key.
# Two gateway configs with the same vendor, pepper, tenant and key:
#   off  no [redis]; the tenant has no rate, so nothing is limited.
#   on   [redis] pointing at the private server; the tenant has
#        rate_per_second = burst = 100000 (the most the config accepts; far
#        above what one gateway serves at these sizes) and monthly_quota =
#        1e12, so every request is admitted but each one runs the Redis
#        GCRA+quota script
#        (one EVALSHA). Tenants and keys then live in Redis too (written at
#        start-up); key verification is served from the in-memory key cache.
# Each round starts both gateways afresh, warms each up with 1 s of unmeasured
# load, then runs off, on (interleaved, so drift on a busy machine hits both
# alike), with the canonical body.
#
# Columns: req/s, mean ms and p99 ms as measured by wrk; gw µs/req = the
#   gateway process's CPU time (utime+stime from /proc/<pid>/stat, all
#   threads) during the run / requests answered; sim µs/req and redis µs/req
#   = the same for the simulator and redis-server; evalsha/req = Redis
#   EVALSHA calls (INFO commandstats) / requests: ~1 for "on" (well below 1
#   means the limiter fell back to its local mode and the run is void: it
#   fails), 0 for "off"; requests, non200 and errors (wrk socket errors and
#   timeouts) are totals over the rounds; other% = CPU used meanwhile by
#   everything but wrk, the simulator, redis and the gateway (from
#   /proc/stat), in % of one core: well above ~10%, the figures are noisy.
#   Then the ratios on/off of req/s and gw µs/req (medians; per round too with
#   several rounds) and a PASS/BELOW line for req/s against 0.85 (BELOW does
#   not fail the script). Any non-200, error, empty case or missing Redis
#   call fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
ROUNDS=${ROUNDS:-2}
IMAGE=${IMAGE:-testdata/face-640x480.jpg}
SIZE_KB=${SIZE_KB:-150}
TARGET=0.85

die() { echo "bench/ratelimit.sh: $*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $SIZE_KB =~ ^[0-9]+$ ]] || die "SIZE_KB must be a whole number of KiB"
command -v wrk >/dev/null || die "needs wrk: apt-get install -y wrk"
command -v redis-server >/dev/null || die "needs redis-server: apt-get install -y redis-server"
command -v redis-cli >/dev/null || die "needs redis-cli: apt-get install -y redis-tools"
command -v python3 >/dev/null || die "needs python3"
tck=$(getconf CLK_TCK)

tmp=$(mktemp -d /tmp/livegate-ratelimit.XXXXXX)
pids=()    # the simulator and redis-server
gw_pids=() # the current gateways
wrk_pid=   # the wrk run in progress
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -z $wrk_pid ]] || stop "$wrk_pid"
  stop "${gw_pids[@]}" "${pids[@]}"
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "building the working tree ..." >&2
cargo build --release -q --bin livegate
bin=$tmp/livegate
cp target/release/livegate "$bin"
label="working tree (HEAD $(git rev-parse --short HEAD), $(git status --porcelain --untracked-files=no | wc -l) changed files)"

# --- servers ----------------------------------------------------------------

start_redis

start_stub "$bin"

new_key "$bin"
config() { # off|on
  printf '[vendor]\nbase_url = "http://%s"\napi_key = "%s"\n' "$stub" "$vendor_key"
  printf '[auth]\npepper = "%s"\n[log]\nlevel = "warn"\n' "$pepper"
  [[ $1 == off ]] || printf '[redis]\nurl = "redis://127.0.0.1:%s/0"\n' "$redis_port"
  printf '[[tenants]]\nid = "bench"\n'
  [[ $1 == off ]] || printf 'rate_per_second = 100000\nburst = 100000\nmonthly_quota = 1000000000000\n'
  sed -n '/^\[\[tenants.keys\]\]/,$p' "$tmp/key.out"
}
cases=(off on)
for c in "${cases[@]}"; do config "$c" >"$tmp/gateway-$c.toml"; done

declare -A gw_addr gw_pid
start_gateways() { # fresh processes every round, each with its own listeners
  local c
  stop "${gw_pids[@]}"
  gw_pids=()
  for c in "${cases[@]}"; do
    LIVEGATE_SERVER__LISTEN=127.0.0.1:0 LIVEGATE_OPS__LISTEN=127.0.0.1:0 \
      "$bin" serve --config "$tmp/gateway-$c.toml" >"$tmp/gw-$c.out" 2>&1 &
    gw_pid[$c]=$!
    gw_pids+=("${gw_pid[$c]}")
    gw_addr[$c]=$(wait_addr "$tmp/gw-$c.out" "livegate listening on ")
  done
  for c in "${cases[@]}"; do warm_up "$c"; done
}

# --- payloads and wrk -------------------------------------------------------
python3 bench/gateway.py payloads "$IMAGE" "$SIZE_KB" "$tmp"

write_post_lua "$tmp/post.lua"

per_req() { # ticks requests -> µs per request
  awk -v d="$1" -v t="$tck" -v n="$2" 'BEGIN { printf "%.1f", d * 1e6 / t / n }'
}

# run CASE ROUND: one wrk run; appends a line to $tmp/results.
run() {
  local c=$1 round=$2 gpid=${gw_pid[$1]} g0 g1 s0 s1 r0 r1 e0 e1 m0 m1 w0 w1 t0 t1
  local line rps mean p99 reqs bad errs gw_us sim_us redis_us evals other
  e0=$(evalsha_calls)
  g0=$(cpu_ticks "$gpid") s0=$(cpu_ticks "$stub_pid") r0=$(cpu_ticks "$redis_pid")
  w0=$(children_us) m0=$(machine_busy) t0=$(date +%s%N)
  measured_wrk "$c"
  t1=$(date +%s%N) m1=$(machine_busy) w1=$(children_us)
  g1=$(cpu_ticks "$gpid") s1=$(cpu_ticks "$stub_pid") r1=$(cpu_ticks "$redis_pid")
  e1=$(evalsha_calls)
  line=$(grep '^RESULT ' "$tmp/wrk.out") || { cat "$tmp/wrk.out" >&2; die "no result from wrk ($c)"; }
  read -r _ rps mean p99 reqs bad errs <<<"$line"
  evals=$(awk -v e=$((e1 - e0)) -v n="$reqs" 'BEGIN { printf "%.3f", n ? e / n : 0 }')
  if ((reqs == 0 || bad > 0 || errs > 0)) ||
    { [[ $c == on ]] && awk -v x="$evals" 'BEGIN { exit !(x < 0.99) }'; }; then
    cat "$tmp/wrk.out" >&2
    echo "--- gateway log ($c):" >&2; tail -20 "$tmp/gw-$c.out" >&2
    echo "--- simulator log:" >&2; tail -20 "$tmp/stub.out" >&2
    echo "--- redis log:" >&2; tail -5 "$tmp/redis.log" >&2
    die "$c: $reqs requests, $bad non-200, $errs socket errors/timeouts, $((e1 - e0)) EVALSHA calls"
  fi
  gw_us=$(per_req $((g1 - g0)) "$reqs")
  sim_us=$(per_req $((s1 - s0)) "$reqs")
  redis_us=$(per_req $((r1 - r0)) "$reqs")
  # CPU that neither wrk, the simulator, redis nor the gateway used, in % of one core
  other=$(awk -v m=$((m1 - m0)) -v ours=$((s1 - s0 + g1 - g0 + r1 - r0)) -v t="$tck" -v w=$((w1 - w0)) -v wall=$(((t1 - t0) / 1000)) \
    'BEGIN { o = ((m - ours) * 1e6 / t - w) / wall * 100; printf "%.0f", o < 0 ? 0 : o }')
  echo "$c $round $rps $mean $p99 $reqs $bad $errs $gw_us $sim_us $redis_us $evals $other" >>"$tmp/results"
  printf '  round %d/%d %-4s %8.0f req/s  gw %7s µs/req  redis %6s µs/req  evalsha/req %s  other %4s%%\n' \
    "$round" "$ROUNDS" "$c" "$rps" "$gw_us" "$redis_us" "$evals" "$other" >&2
}

# --- run ----------------------------------------------------------------------
echo "build: $label"
echo "image: $IMAGE padded to $(stat -c %s "$tmp/image.jpg") bytes; canonical body $(stat -c %s "$tmp/canonical.json") B; redis 127.0.0.1:$redis_port"
: >"$tmp/results"
for round in $(seq "$ROUNDS"); do
  start_gateways
  for c in "${cases[@]}"; do run "$c" "$round"; done
done

python3 - "$tmp/results" "$CONNS" "$DURATION" "$ROUNDS" "$TARGET" <<'PY'
import statistics, sys
path, conns, duration, rounds, target = sys.argv[1:]
target = float(target)
F = ["rps", "mean", "p99", "requests", "non200", "errors", "gw", "sim", "redis", "evals", "other"]
runs = {}
for line in open(path):
    c, _round, *vals = line.split()
    runs.setdefault(c, []).append(dict(zip(F, map(float, vals))))
def summ(rs):
    s = {k: statistics.median(r[k] for r in rs) for k in F}
    for k in ("requests", "non200", "errors"):
        s[k] = int(sum(r[k] for r in rs))
    return s
agg = f"median of {rounds} rounds" if int(rounds) > 1 else "1 round"
print(f"{conns} connections, {duration} per run, {agg}; requests/non200/errors are totals")
H = "{:<5} {:>8} {:>8} {:>8} {:>10} {:>10} {:>12} {:>11} {:>9} {:>6} {:>6} {:>6}"
R = "{:<5} {:>8.0f} {:>8.2f} {:>8.2f} {:>10.1f} {:>10.1f} {:>12.1f} {:>11.3f} {:>9d} {:>6d} {:>6d} {:>5.0f}%"
print(H.format("case", "req/s", "mean ms", "p99 ms", "gw µs/req", "sim µs/req", "redis µs/req", "evalsha/req", "requests", "non200", "errors", "other%"))
s = {c: summ(runs[c]) for c in ("off", "on")}
for c in ("off", "on"):
    x = s[c]
    print(R.format(c, x["rps"], x["mean"], x["p99"], x["gw"], x["sim"], x["redis"], x["evals"], x["requests"], x["non200"], x["errors"], x["other"]))
rps = s["on"]["rps"] / s["off"]["rps"]
cpu = s["on"]["gw"] / s["off"]["gw"]
print(f"on/off: req/s {rps:.3f}x; gw cpu/req {cpu:.3f}x")
if int(rounds) > 1:
    per = lambda k: " ".join(f"{b[k] / a[k]:.3f}" for a, b in zip(runs["off"], runs["on"]))
    print(f"  per round: req/s {per('rps')}; gw cpu/req {per('gw')}")
print(f"{'PASS' if rps >= target else 'BELOW'}: on/off req/s {rps:.3f} vs target >= {target}")
worst = max(x["other"] for x in s.values())
if worst > 25:
    print(f"WARNING: other processes used up to {worst:.0f}% of a core during the runs (other%): expect noise")
PY
