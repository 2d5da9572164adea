#!/usr/bin/env bash
# Whole-gateway load benchmark: throughput, latency and CPU per request of the
# gateway at ~200 KB liveness POSTs, canonical and line-wrapped base64. Answers
# "did my change make the gateway slower or hungrier?" in one command.
# Needs wrk (apt-get install -y wrk) and python3; helper: bench/gateway.py.
#
#   bench/gateway.sh                         # working tree: direct vs gateway
#   BASELINE=HEAD~1 bench/gateway.sh         # HEAD~1 vs the working tree
#   BASELINE=main CANDIDATE=HEAD bench/gateway.sh
#   BASELINE=HEAD CANDIDATE=HEAD bench/gateway.sh   # A/A: how noisy is this machine?
#   DURATION=5s ROUNDS=3 CONNS=32 SIZE_KB=150 BASELINE=HEAD~1 bench/gateway.sh
#
# Settings (environment):
#   CANDIDATE  git rev to measure; unset = the working tree, built with
#              `cargo build --release --bin livegate` into target/release.
#   BASELINE   git rev to compare against; unset = no comparison (see below).
#              A rev is checked out with `git worktree add --detach` under /tmp
#              and built into target/bench-<12-char sha>/ (reused when that
#              binary already exists); the worktree is removed afterwards.
#   DURATION   wrk run per case and round (default 10s; CPU time is read in
#              clock ticks of 10 ms, so keep runs of several seconds).
#   ROUNDS     repetitions (default 2 with BASELINE, else 1); the tables show
#              the median per case.
#   CONNS      wrk connections (default 16; one wrk thread).
#   IMAGE      JPEG to send (default testdata/face-640x480.jpg), padded with
#   SIZE_KB    APP2 segments of random bytes to SIZE_KB KiB (default 150, i.e.
#              ~200 KB of base64; 0 = send the image as it is).
#   REPLAY     [protection] replay mode for builds that have replay detection
#              (default: the build's own default, i.e. flag); REPLAY=off
#              measures the request pipeline without the perceptual hash, to
#              compare with builds from before it existed.
#
# Modes:
#   without BASELINE: one simulator and one gateway; cases direct-canonical
#     (straight to the simulator), gateway-canonical and gateway-wrapped;
#     "vs direct" = direct req/s / case req/s.
#   with BASELINE: one simulator (the candidate's `livegate stub`) shared by a
#     baseline gateway and a candidate gateway, each with its own key; runs are
#     interleaved (baseline canonical, candidate canonical, baseline wrapped,
#     candidate wrapped) and the set is repeated ROUNDS times, so drift on a
#     busy machine hits both alike; the gateways are restarted every round.
#     One table per case plus the ratios candidate/baseline for req/s and for
#     gateway CPU per request, and, with several rounds, the same ratios per
#     round (their spread is the noise; an A/A run shows the machine's).
#
# Progress lines also show the gateway's peak RSS so far (VmHWM of the
#   round's process, which serves the canonical then the wrapped case).
# Columns: req/s, mean ms and p99 ms as measured by wrk; gw µs/req = the
#   gateway process's CPU time (utime+stime from /proc/<pid>/stat, all
#   threads) used during the run / requests answered; sim µs/req = the same
#   for the simulator (in gateway cases the simulator's share, so the
#   gateway's own cost is gw µs/req); requests, non200 (responses other than
#   200) and errors (wrk socket errors and timeouts) are totals over the
#   rounds. other% = CPU used meanwhile by everything but wrk, the simulator
#   and the gateways (from /proc/stat), in % of one core: well above ~10%,
#   something else shares the machine and the figures are noisy. Any
#   non-200, error or a case with no request fails the run.
#
# Everything runs on loopback (127.0.0.1); the vendor is the built-in
# simulator with no added latency, so the figures are the gateway's own cost.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
IMAGE=${IMAGE:-testdata/face-640x480.jpg}
SIZE_KB=${SIZE_KB:-150}
BASELINE=${BASELINE:-}
REPLAY=${REPLAY:-}
CANDIDATE=${CANDIDATE:-}
if [[ -n $BASELINE ]]; then ROUNDS=${ROUNDS:-2}; else ROUNDS=${ROUNDS:-1}; fi

die() { echo "bench/gateway.sh: $*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $SIZE_KB =~ ^[0-9]+$ ]] || die "SIZE_KB must be a whole number of KiB"
command -v wrk >/dev/null || die "needs wrk: apt-get install -y wrk"
command -v python3 >/dev/null || die "needs python3"
tck=$(getconf CLK_TCK)

tmp=$(mktemp -d /tmp/livegate-bench.XXXXXX)
pids=()      # servers: the simulator and the current gateways
wrk_pid=     # the wrk run in progress
worktrees=() # git worktrees to remove
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  [[ -z $wrk_pid ]] || stop "$wrk_pid"
  stop "${pids[@]}"
  for p in "${worktrees[@]}"; do git -C "$repo" worktree remove --force "$p" 2>/dev/null || true; done
  ((${#worktrees[@]} == 0)) || git -C "$repo" worktree prune || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- binaries ---------------------------------------------------------------

build candidate "$CANDIDATE"
whos=(gateway)
if [[ -n $BASELINE ]]; then
  build baseline "$BASELINE"
  whos=(baseline candidate)
fi

# --- servers ----------------------------------------------------------------

start_stub "$bin_candidate"

# Each gateway gets its own key and config once, and a fresh process every
# round, so that one process's luck (heap layout, thread placement) cannot
# bias a whole comparison: it becomes round-to-round spread instead.
declare -A gw_addr gw_pid gw_key
for who in "${whos[@]}"; do
  bin_var=bin_$who
  if [[ $who == gateway ]]; then bin_var=bin_candidate; fi
  pepper=$(rand_hex 24)
  LIVEGATE_AUTH__PEPPER=$pepper "${!bin_var}" keys new --tenant bench >"$tmp/key-$who.out"
  gw_key[$who]=$(sed -n 's/^key = "\(.*\)"$/\1/p' "$tmp/key-$who.out")
  [[ -n ${gw_key[$who]} ]] || { cat "$tmp/key-$who.out" >&2; die "no key from $who's 'keys new'"; }
  {
    printf '[vendor]\nbase_url = "http://%s"\napi_key = "%s"\n' "$stub" "$vendor_key"
    printf '[auth]\npepper = "%s"\n[log]\nlevel = "warn"\n' "$pepper"
    if [[ -n $REPLAY ]] && grep -aq "replay_window_hours" "${!bin_var}"; then
      printf '[protection]\nreplay = "%s"\n' "$REPLAY"
    fi
    printf '[[tenants]]\nid = "bench"\n'
    sed -n '/^\[\[tenants.keys\]\]/,$p' "$tmp/key-$who.out"
  } >"$tmp/gateway-$who.toml"
done
start_gateways() {
  local who bin_var old=()
  for who in "${whos[@]}"; do [[ -z ${gw_pid[$who]:-} ]] || old+=("${gw_pid[$who]}"); done
  if ((${#old[@]})); then
    stop "${old[@]}"
    pids=("$stub_pid")
  fi
  for who in "${whos[@]}"; do
    bin_var=bin_$who
    if [[ $who == gateway ]]; then bin_var=bin_candidate; fi
    # Builds with an operations listener get theirs on a free port too
    # (older ones would refuse the unknown variable).
    ops=()
    if grep -aq "ops listening on" "${!bin_var}"; then ops=(LIVEGATE_OPS__LISTEN=127.0.0.1:0); fi
    env "${ops[@]}" LIVEGATE_SERVER__LISTEN=127.0.0.1:0 "${!bin_var}" serve --config "$tmp/gateway-$who.toml" >"$tmp/gw-$who.out" 2>&1 &
    gw_pid[$who]=$!
    pids+=("${gw_pid[$who]}")
    gw_addr[$who]=$(wait_addr "$tmp/gw-$who.out" "livegate listening on ")
  done
}

# --- payloads and wrk -------------------------------------------------------
python3 bench/gateway.py payloads "$IMAGE" "$SIZE_KB" "$tmp"

write_post_lua "$tmp/post.lua"


# run CASE WHO ROUND: one wrk run; appends a line to $tmp/results.
run() {
  local case=$1 who=$2 round=$3 url key gpid g0=0 g1=0 s0 s1 line
  local rps mean p99 reqs bad errs gw_us sim_us m0 m1 w0 w1 t0 t1 other
  if [[ $who == direct ]]; then
    url=http://$stub/modules/liveness key=$vendor_key gpid=
  else
    url=http://${gw_addr[$who]}/modules/liveness key=${gw_key[$who]} gpid=${gw_pid[$who]}
  fi
  [[ -z $gpid ]] || g0=$(cpu_ticks "$gpid")
  s0=$(cpu_ticks "$stub_pid")
  w0=$(children_us) m0=$(machine_busy) t0=$(date +%s%N)
  BENCH_KEY=$key BENCH_BODY=$tmp/$case.json \
    wrk -t1 -c"$CONNS" -d"$DURATION" -s "$tmp/post.lua" "$url" >"$tmp/wrk.out" 2>&1 &
  wrk_pid=$!
  wait "$wrk_pid" || { cat "$tmp/wrk.out" >&2; die "wrk failed ($who $case)"; }
  wrk_pid=
  t1=$(date +%s%N) m1=$(machine_busy) w1=$(children_us)
  s1=$(cpu_ticks "$stub_pid")
  [[ -z $gpid ]] || g1=$(cpu_ticks "$gpid")
  line=$(grep '^RESULT ' "$tmp/wrk.out") || { cat "$tmp/wrk.out" >&2; die "no result from wrk ($who $case)"; }
  read -r _ rps mean p99 reqs bad errs <<<"$line"
  if ((reqs == 0 || bad > 0 || errs > 0)); then
    cat "$tmp/wrk.out" >&2
    [[ $who == direct ]] || { echo "--- gateway log ($who):" >&2; tail -20 "$tmp/gw-$who.out" >&2; }
    echo "--- simulator log:" >&2; tail -20 "$tmp/stub.out" >&2
    die "$who $case: $reqs requests, $bad non-200, $errs socket errors/timeouts"
  fi
  sim_us=$(awk -v d=$((s1 - s0)) -v t="$tck" -v n="$reqs" 'BEGIN { printf "%.1f", d * 1e6 / t / n }')
  if [[ -z $gpid ]]; then gw_us=-; else
    gw_us=$(awk -v d=$((g1 - g0)) -v t="$tck" -v n="$reqs" 'BEGIN { printf "%.1f", d * 1e6 / t / n }')
  fi
  # CPU that neither wrk, the simulator nor the gateway used, in % of one core
  other=$(awk -v m=$((m1 - m0)) -v ours=$((s1 - s0 + g1 - g0)) -v t="$tck" -v w=$((w1 - w0)) -v wall=$(((t1 - t0) / 1000)) \
    'BEGIN { o = ((m - ours) * 1e6 / t - w) / wall * 100; printf "%.0f", o < 0 ? 0 : o }')
  echo "$case $who $round $rps $mean $p99 $reqs $bad $errs $gw_us $sim_us $other" >>"$tmp/results"
  # The gateway's peak resident memory so far (this round's process).
  peak=-
  [[ -z $gpid ]] || peak=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$gpid/status")
  printf '  round %d/%d %-9s %-9s %8.0f req/s  gw %7s µs/req  sim %7s µs/req  gw peak %6s MiB  other %4s%%\n' \
    "$round" "$ROUNDS" "$who" "$case" "$rps" "$gw_us" "$sim_us" "$peak" "$other" >&2
}

# --- run ----------------------------------------------------------------------
echo "image: $IMAGE padded to $(stat -c %s "$tmp/image.jpg") bytes; bodies: canonical $(stat -c %s "$tmp/canonical.json") B, wrapped $(stat -c %s "$tmp/wrapped.json") B"
if [[ -n $BASELINE ]]; then
  echo "baseline:  $label_baseline"
  echo "candidate: $label_candidate"
else
  echo "build: $label_candidate"
fi
: >"$tmp/results"
for round in $(seq "$ROUNDS"); do
  start_gateways
  if [[ -n $BASELINE ]]; then
    for case in canonical wrapped; do
      run "$case" baseline "$round"
      run "$case" candidate "$round"
    done
  else
    run canonical direct "$round"
    run canonical gateway "$round"
    run wrapped gateway "$round"
  fi
done
python3 bench/gateway.py report "$tmp/results" "$CONNS" "$DURATION" "$ROUNDS"

