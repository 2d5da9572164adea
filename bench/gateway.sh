#!/usr/bin/env bash
# Whole-gateway load benchmark: the same liveness POST sent straight to the
# simulator and through the gateway, in one run, with the gateway's cost
# reported as ratios against the direct calls (so the figures do not depend
# on how fast or busy the machine is). Needs wrk (apt-get install -y wrk).
#
#   bench/gateway.sh                 # 10 s per case, 16 connections
#   DURATION=30s CONNS=64 bench/gateway.sh
#
# Everything runs on loopback; the vendor is the built-in simulator with no
# added latency, so the figures are the gateway's own overhead.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
IMAGE=${IMAGE:-testdata/face-640x480.jpg}
command -v wrk >/dev/null || { echo "bench/gateway.sh needs wrk: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q --bin livegate
bin=target/release/livegate
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

rand_hex() { od -An -tx1 -N "$1" /dev/urandom | tr -d ' \n'; }
wait_addr() { # file, marker
  for _ in $(seq 200); do
    if grep -q "$2" "$1" 2>/dev/null; then grep -o "$2.*" "$1" | head -1 | sed "s/$2//"; return; fi
    sleep 0.05
  done
  echo "did not start: $1" >&2; cat "$1" >&2; exit 1
}

vendor_key=$(rand_hex 16)
pepper=$(rand_hex 24)

LIVEGATE_SIMULATOR__API_KEY=$vendor_key LIVEGATE_LOG__LEVEL=warn \
  "$bin" stub --listen 127.0.0.1:0 >"$tmp/stub.out" 2>&1 &
pids+=($!)
stub=$(wait_addr "$tmp/stub.out" "livegate stub listening on ")

LIVEGATE_AUTH__PEPPER=$pepper "$bin" keys new --tenant bench >"$tmp/key.out"
tenant_key=$(sed -n 's/^key = "\(.*\)"$/\1/p' "$tmp/key.out")
{
  printf '[vendor]\nbase_url = "http://%s"\napi_key = "%s"\n' "$stub" "$vendor_key"
  printf '[auth]\npepper = "%s"\n[log]\nlevel = "warn"\n' "$pepper"
  printf '[[tenants]]\nid = "bench"\n'
  sed -n '/^\[\[tenants.keys\]\]/,$p' "$tmp/key.out"
} >"$tmp/gateway.toml"
LIVEGATE_SERVER__LISTEN=127.0.0.1:0 "$bin" serve --config "$tmp/gateway.toml" >"$tmp/gw.out" 2>&1 &
pids+=($!)
gw=$(wait_addr "$tmp/gw.out" "livegate listening on ")

b64=$(base64 -w0 "$IMAGE")
printf '{"faceImage":"%s"}' "$b64" >"$tmp/canonical.json"
printf '{"faceImage":"data:image/jpeg;base64,%s"}' "$(base64 -w76 "$IMAGE" | sed 's/$/\\r\\n/' | tr -d '\n')" >"$tmp/wrapped.json"

cat >"$tmp/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = os.getenv("BENCH_KEY")
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
local bad = 0
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency.mean / 1000, latency:percentile(99) / 1000, summary.requests, bad))
end
LUA
# wrk's done() has no access to response()'s counter per thread; one thread keeps it exact.
run() { # label url key body
  local out
  out=$(BENCH_KEY=$3 BENCH_BODY=$4 wrk -t1 -c"$CONNS" -d"$DURATION" -s "$tmp/post.lua" "$2" | grep '^RESULT')
  echo "$1 ${out#RESULT }"
}

echo "image: $IMAGE ($(stat -c %s "$IMAGE") bytes), $CONNS connections, $DURATION per case"
results=$(
  run direct-canonical "http://$stub/modules/liveness" "$vendor_key" "$tmp/canonical.json"
  run gateway-canonical "http://$gw/modules/liveness" "$tenant_key" "$tmp/canonical.json"
  run gateway-wrapped "http://$gw/modules/liveness" "$tenant_key" "$tmp/wrapped.json"
)
echo "$results" | awk '
  BEGIN { printf "%-18s %10s %10s %10s %9s %6s %10s\n", "case", "req/s", "mean ms", "p99 ms", "requests", "non200", "vs direct" }
  { rps[NR]=$2; name[NR]=$1; line[NR]=$0 }
  END {
    for (i = 1; i <= NR; i++) {
      split(line[i], f, " ")
      ratio = (i == 1) ? "1.00x" : sprintf("%.2fx", rps[1] / f[2])
      printf "%-18s %10.0f %10.2f %10.2f %9d %6d %10s\n", f[1], f[2], f[3], f[4], f[5], f[6], ratio
    }
    print "vs direct = direct req/s / case req/s (time per request relative to calling the simulator directly)"
  }'
