#!/usr/bin/env bash
# Probe latency under a burst of large uploads: /livez p99 while 10 MiB
# line-wrapped uploads saturate the gateway, with the image work on the
# async workers ("inline": server.blocking_threshold_bytes above any body)
# and on the blocking pool ("blocking": the default threshold), same binary,
# same run. Needs wrk (apt-get install -y wrk) and python3.
#
#   bench/probes.sh                      # DURATION=10s UPLOADS=8
#
# Columns: uploads/s through the gateway; /livez requests/s, mean and p99 ms
# measured by a second wrk (1 connection) at the same time; non-200 counts.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
DURATION=${DURATION:-10s}
UPLOADS=${UPLOADS:-8}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q --bin livegate
bin=$repo/target/release/livegate
tmp=$(mktemp -d /tmp/livegate-probes.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

wait_addr() { # file marker
  for _ in $(seq 200); do
    if grep -q "$2" "$1" 2>/dev/null; then grep -o "$2.*" "$1" | head -1 | sed "s/$2//"; return; fi
    sleep 0.05
  done
  echo "did not start: $1" >&2; cat "$1" >&2; exit 1
}
rand_hex() { od -An -tx1 -N "$1" /dev/urandom | tr -d ' \n'; }

vendor_key=$(rand_hex 16)
pepper=$(rand_hex 24)
LIVEGATE_SIMULATOR__API_KEY=$vendor_key LIVEGATE_LOG__LEVEL=warn "$bin" stub --listen 127.0.0.1:0 >"$tmp/stub.out" 2>&1 &
pids+=($!)
stub=$(wait_addr "$tmp/stub.out" "livegate stub listening on ")
LIVEGATE_AUTH__PEPPER=$pepper "$bin" keys new --tenant bench >"$tmp/key.out"
key=$(sed -n 's/^key = "\(.*\)"$/\1/p' "$tmp/key.out")
{
  printf '[vendor]\nbase_url = "http://%s"\napi_key = "%s"\n' "$stub" "$vendor_key"
  printf '[auth]\npepper = "%s"\n[log]\nlevel = "warn"\n[[tenants]]\nid = "bench"\n' "$pepper"
  sed -n '/^\[\[tenants.keys\]\]/,$p' "$tmp/key.out"
} >"$tmp/gateway.toml"
# A ~7.3 MB image: its wrapped base64 is just under the 10 MiB body limit.
python3 bench/gateway.py payloads testdata/face-640x480.jpg 7100 "$tmp" >/dev/null

cat >"$tmp/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = "$key"
local f = assert(io.open("$tmp/wrapped.json", "rb"))
wrk.body = f:read("*a")
f:close()
LUA
cat >"$tmp/report.lua" <<'LUA'
local bad = 0
function response(status) if status ~= 200 then bad = bad + 1 end end
function done(summary, latency)
  io.write(string.format("RESULT %.1f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency.mean / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
LUA
cat "$tmp/report.lua" >>"$tmp/post.lua"

run_case() { # label threshold
  LIVEGATE_SERVER__LISTEN=127.0.0.1:0 LIVEGATE_SERVER__BLOCKING_THRESHOLD_BYTES=$2 \
    "$bin" serve --config "$tmp/gateway.toml" >"$tmp/gw-$1.out" 2>&1 &
  local gpid=$!
  pids+=($gpid)
  local gw
  gw=$(wait_addr "$tmp/gw-$1.out" "livegate listening on ")
  wrk -t1 -c"$UPLOADS" -d"$DURATION" -s "$tmp/post.lua" "http://$gw/modules/liveness" >"$tmp/up-$1.txt" &
  local up=$!
  sleep 1
  wrk -t1 -c1 -d"$(( ${DURATION%s} - 2 ))s" -s "$tmp/report.lua" "http://$gw/livez" >"$tmp/probe-$1.txt"
  wait "$up"
  kill "$gpid"; wait "$gpid" 2>/dev/null || true
  local u p
  u=$(grep '^RESULT' "$tmp/up-$1.txt" | cut -d' ' -f2-)
  p=$(grep '^RESULT' "$tmp/probe-$1.txt" | cut -d' ' -f2-)
  echo "$1 $u $p"
}

echo "uploads: $(stat -c %s "$tmp/wrapped.json") B wrapped JSON, $UPLOADS connections; probes: 1 connection; $DURATION"
{
  run_case inline 1000000000000
  run_case blocking 524288
} | awk '
  BEGIN { printf "%-9s %10s %10s %14s %10s %10s %9s %7s\n", "case", "uploads/s", "up non200", "livez req/s", "mean ms", "p99 ms", "non200", ""; }
  { printf "%-9s %10.1f %10d %14.0f %10.2f %10.2f %9d\n", $1, $2, $5, $6, $7, $8, $9; p99[NR]=$8 }
  END { if (p99[2] > 0) printf "livez p99 inline / blocking: %.2fx\n", p99[1] / p99[2] }'
