#!/usr/bin/env bash
# Which release profile? Builds the working tree's gateway under several
# release-profile settings and measures, per build, what does not depend on
# how busy this shared machine is:
#   - instructions per request, counted by valgrind's callgrind (the same
#     count for the same binary and inputs, whatever else the machine does),
#     with liveness-aware protection on (the default: perceptual hash and
#     metadata removal) and off, ~200 KB canonical base64 bodies, sent one at
#     a time with curl after a warm-up;
#   - the binary's size, and the gateway's resident memory when idle (all of
#     it, and the part that is the binary's own pages);
#   - the wall time of the build (only when this run built it).
# Needs valgrind (callgrind_control), curl and python3.
#
#   bench/profile.sh                                  # the three default variants
#   VARIANTS="thin:LTO=thin fat:LTO=fat,CODEGEN_UNITS=1" REQUESTS=50 bench/profile.sh
#   VARIANTS="before:BIN=/tmp/old/livegate after:BIN=target/release/livegate" bench/profile.sh
#
# Settings (environment):
#   VARIANTS   space-separated NAME:KEY=VALUE[,KEY=VALUE...]; each KEY is a
#              [profile.release] key as Cargo's environment override spells it
#              (CARGO_PROFILE_RELEASE_<KEY>), e.g. LTO, CODEGEN_UNITS,
#              OPT_LEVEL. Default: "cgu4:LTO=false,CODEGEN_UNITS=4
#              thin:LTO=thin,CODEGEN_UNITS=4 fat:LTO=fat,CODEGEN_UNITS=1".
#              Each is built into target/profile-NAME/ (reused when a
#              binary built from the same HEAD, settings and clean tree is
#              there; a dirty tree is always rebuilt). NAME:BIN=PATH measures
#              an already built binary instead (a baseline build of another
#              commit, say: the ratio of two builds of the same settings).
#   REQUESTS   requests counted per case (default 100; ~10 s per case here).
#   IMAGE, SIZE_KB  the JPEG and its padded size (default
#              testdata/face-640x480.jpg, 150 KiB: ~200 KB of base64).
#
# Output: one line per variant and case, then a Markdown table with the
# ratios to the first variant. Under valgrind the SHA-256 runs without the
# CPU's SHA extensions, so its share of a count is larger than of real time.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
die() { echo "profile.sh: $*" >&2; exit 1; }
worktrees=()
tmp=$(mktemp -d "${TMPDIR:-/tmp}/livegate-profile.XXXXXX")
pids=()
# shellcheck source=bench/common.sh
source bench/common.sh
cleanup() {
  [[ ${#pids[@]} -eq 0 ]] || stop "${pids[@]}"
  rm -rf "$tmp"
}
trap cleanup EXIT
forget() { # PID: drop a stopped process from pids
  local p keep=()
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

VARIANTS=${VARIANTS:-cgu4:LTO=false,CODEGEN_UNITS=4 thin:LTO=thin,CODEGEN_UNITS=4 fat:LTO=fat,CODEGEN_UNITS=1}
REQUESTS=${REQUESTS:-100}
IMAGE=${IMAGE:-testdata/face-640x480.jpg}
SIZE_KB=${SIZE_KB:-150}
for t in valgrind callgrind_control curl python3; do
  command -v "$t" >/dev/null || die "$t not found (apt-get install -y valgrind curl python3)"
done
[[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || die "REQUESTS must be a positive number"

mkdir -p "$tmp/body"
python3 bench/gateway.py payloads "$IMAGE" "$SIZE_KB" "$tmp/body" >/dev/null
body=$tmp/body/canonical.json
head=$(git rev-parse HEAD)
dirty=$(git status --porcelain --untracked-files=no | wc -l)

# build_variant NAME SETTINGS: sets bin and built_s (build seconds, or "-").
build_variant() {
  local name=$1 settings=$2 dir stamp kv envs=()
  [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || die "bad variant name: $name"
  IFS=, read -r -a kvs <<<"$settings"
  for kv in "${kvs[@]}"; do
    [[ $kv =~ ^[A-Z0-9_]+=[A-Za-z0-9_-]+$ ]] || die "bad setting in $name: $kv"
    envs+=("CARGO_PROFILE_RELEASE_$kv")
  done
  dir=$repo/target/profile-$name
  stamp="$head $settings"
  if ((dirty == 0)) && [[ -x $dir/release/livegate && $(cat "$dir/release/.profile-stamp" 2>/dev/null) == "$stamp" ]]; then
    echo "reusing $dir/release/livegate ($settings)" >&2
    built_s=-
  else
    echo "building $name ($settings) into target/profile-$name ..." >&2
    local t0=$SECONDS
    env "${envs[@]}" CARGO_TARGET_DIR="$dir" cargo build --release -q --locked --bin livegate
    built_s=$((SECONDS - t0))
    echo "$stamp" >"$dir/release/.profile-stamp"
  fi
  bin=$dir/release/livegate
}

# count BIN MODE: instructions per request of the gateway (MODE protect|plain).
count() {
  local bin=$1 mode=$2 port lg out total f n
  rm -f "$tmp"/cg.out*
  {
    printf '[vendor]\nbase_url = "http://%s"\napi_key = "%s"\n' "$stub" "$vendor_key"
    printf '[auth]\npepper = "%s"\n[log]\nlevel = "warn"\n' "$pepper"
    printf '[audit]\nsink = "file"\npath = "%s/audit.jsonl"\n' "$tmp"
    [[ $mode == protect ]] || printf '[protection]\nreplay = "off"\nstrip_metadata = false\n'
    printf '[[tenants]]\nid = "bench"\n'
    sed -n '/^\[\[tenants.keys\]\]/,$p' "$tmp/key.out"
  } >"$tmp/gw.toml"
  port=$(free_port)
  LIVEGATE_SERVER__LISTEN=127.0.0.1:$port LIVEGATE_OPS__LISTEN=127.0.0.1:0 LIVEGATE_SERVER__SHUTDOWN_DELAY_MS=0 \
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$bin" serve --config "$tmp/gw.toml" >"$tmp/gw.out" 2>&1 &
  lg=$!
  pids+=("$lg")
  wait_port "$port" "$lg" "$tmp/gw.out" 60 # valgrind starts slowly
  post() { # N: POSTs, one at a time; dies on any answer but 200
    local codes
    codes=$(for _ in $(seq "$1"); do
      curl -s -o /dev/null -w '%{http_code}\n' -H "x-api-key: $key" -H 'content-type: application/json' \
        --data-binary "@$body" "http://127.0.0.1:$port/modules/liveness"
    done | sort | uniq -c | tr -s ' ')
    [[ $codes == " $1 200" ]] || die "expected $1 answers of 200, got:$codes"
  }
  post 10 # warm-up: vendor connection, key cache, lazily built state
  callgrind_control -z "$lg" >/dev/null 2>&1
  post "$REQUESTS"
  callgrind_control -d "$lg" >/dev/null 2>&1
  total=0 n=0
  for _ in $(seq 100); do compgen -G "$tmp/cg.out.*" >/dev/null && break; sleep 0.1; done
  for f in "$tmp"/cg.out.*; do
    out=$(sed -n 's/^summary: \([0-9]*\).*/\1/p;s/^totals: \([0-9]*\).*/\1/p' "$f" | head -1)
    total=$((total + ${out:-0}))
    n=$((n + 1))
  done
  ((n > 0 && total > 0)) || die "no callgrind dump"
  stop "$lg"
  forget "$lg"
  echo $((total / REQUESTS))
}

# idle_rss BIN: "total_kib binary_kib" of an idle gateway (same config, no valgrind).
idle_rss() {
  local bin=$1 port lg
  port=$(free_port)
  LIVEGATE_SERVER__LISTEN=127.0.0.1:$port LIVEGATE_OPS__LISTEN=127.0.0.1:0 LIVEGATE_SERVER__SHUTDOWN_DELAY_MS=0 \
    "$bin" serve --config "$tmp/gw.toml" >"$tmp/gw.out" 2>&1 &
  lg=$!
  pids+=("$lg")
  wait_port "$port" "$lg" "$tmp/gw.out"
  sleep 1
  local total own
  total=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$lg/status")
  own=$(awk -v b="$bin" '/^[0-9a-f]+-[0-9a-f]+ / { cur = ($6 == b) } cur && /^Rss:/ { s += $2 } END { print s + 0 }' "/proc/$lg/smaps")
  stop "$lg"
  forget "$lg"
  echo "$total $own"
}

results=()
first=1
for v in $VARIANTS; do
  name=${v%%:*}
  settings=${v#*:}
  [[ $name != "$v" ]] || die "a variant is NAME:KEY=VALUE[,...]: $v"
  if [[ $settings == BIN=* ]]; then
    bin=${settings#BIN=}
    [[ -x $bin ]] || die "$name: $bin is not an executable"
    built_s=-
    settings="prebuilt"
  else
    build_variant "$name" "$settings"
  fi
  if ((first)); then
    start_stub "$bin"
    new_key "$bin"
    first=0
  fi
  size=$(stat -c %s "$bin")
  protect=$(count "$bin" protect)
  plain=$(count "$bin" plain)
  read -r rss own < <(idle_rss "$bin")
  line="$name $settings $protect $plain $size $rss $own $built_s"
  echo "variant $line"
  results+=("$line")
done

echo
echo "HEAD $(git rev-parse --short HEAD) ($dirty changed files), $REQUESTS requests per case, $(basename "$IMAGE") padded to ${SIZE_KB} KiB, canonical"
echo
echo "| variant | settings | instr/req, protection on | instr/req, protection off | binary MB | idle RSS MiB (binary's pages) | build s |"
echo "|---|---|--:|--:|--:|--:|--:|"
read -r _ _ p0 q0 _ _ _ _ <<<"${results[0]}"
for line in "${results[@]}"; do
  read -r name settings p q size rss own built <<<"$line"
  awk -v n="$name" -v s="$settings" -v p="$p" -v q="$q" -v p0="$p0" -v q0="$q0" -v z="$size" -v r="$rss" -v o="$own" -v b="$built" \
    'BEGIN { printf "| %s | %s | %.2f M (%.3fx) | %.2f M (%.3fx) | %.1f | %.1f (%.1f) | %s |\n", n, s, p / 1e6, p / p0, q / 1e6, q / q0, z / 1e6, r / 1024, o / 1024, b }'
done
