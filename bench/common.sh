# Shell helpers shared by the bench/*.sh scripts (sourced, after `die`,
# `$repo`, `$tmp` and the `worktrees` array are defined).

stop() { # pid...: SIGTERM, then SIGKILL after 5 s; reaps them
  local p
  for p; do kill "$p" 2>/dev/null || true; done
  for p; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}

rand_hex() { od -An -tx1 -N "$1" /dev/urandom | tr -d ' \n'; }
wait_addr() { # file, marker
  for _ in $(seq 200); do
    if grep -q "$2" "$1" 2>/dev/null; then grep -o "$2.*" "$1" | head -1 | sed "s/$2//"; return; fi
    sleep 0.05
  done
  echo "did not start: $1" >&2; cat "$1" >&2; exit 1
}

# write_post_lua FILE: the wrk script both benchmarks run (POST of $BENCH_BODY
# with $BENCH_KEY; prints one RESULT line; non-200s counted across threads).
write_post_lua() {
cat >"$1" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = os.getenv("BENCH_KEY")
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
-- response() runs in each thread's own Lua state and done() in the main one,
-- so the counter is a global read back through the thread handles.
local threads = {}
function setup(thread) table.insert(threads, thread) end
bad = 0
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local nbad, e = 0, summary.errors
  for _, t in ipairs(threads) do nbad = nbad + t:get("bad") end
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d %d\n", summary.requests / (summary.duration / 1e6),
    latency.mean / 1000, latency:percentile(99) / 1000, summary.requests, nbad,
    e.connect + e.read + e.write + e.timeout))
end
LUA
}

cpu_ticks() { # pid -> utime+stime of the whole process, in clock ticks
  local stat f
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || die "process $1 is gone (see $tmp/*.out)"
  read -r -a f <<<"${stat##*) }" # fields from 3 on: utime is field 14, stime 15
  echo $((f[11] + f[12]))
}

machine_busy() { # busy clock ticks of all CPUs (user nice system irq softirq steal)
  local u n sy i w irq sirq st
  read -r _ u n sy i w irq sirq st _ </proc/stat
  echo $((u + n + sy + irq + sirq + st))
}
children_us() { # CPU time of this shell's reaped children, in µs
  times >"$tmp/times"
  awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1e6 }' "$tmp/times"
}

# build WHO REV: sets bin_<WHO> (a private copy of the binary) and label_<WHO>.
build() {
  local who=$1 rev=$2 sha dir wt label
  if [[ -z $rev ]]; then
    echo "building the working tree ..." >&2
    cargo build --release -q --bin livegate
    cp target/release/livegate "$tmp/livegate-$who"
    local changed
    changed=$(git status --porcelain --untracked-files=no | wc -l)
    label="working tree (HEAD $(git rev-parse --short HEAD), $changed changed files)"
  else
    sha=$(git rev-parse --verify --quiet "$rev^{commit}") || die "not a git revision: $rev"
    dir=$repo/target/bench-${sha:0:12}
    if [[ -x $dir/release/livegate && -f $dir/release/.bench-$sha ]]; then
      echo "reusing $dir/release/livegate for $rev" >&2
    else
      wt=$tmp/worktree-${sha:0:12}
      echo "building $rev (${sha:0:12}) into ${dir#"$repo"/} ..." >&2
      worktrees+=("$wt")
      git worktree add --quiet --detach "$wt" "$sha"
      (cd "$wt" && CARGO_TARGET_DIR=$dir cargo build --release -q --bin livegate)
      touch "$dir/release/.bench-$sha"
      git worktree remove --force "$wt"
    fi
    cp "$dir/release/livegate" "$tmp/livegate-$who"
    label="$rev = $(git rev-parse --short "$sha") $(git log -1 --format=%s "$sha" | cut -c1-60)"
  fi
  printf -v "bin_$who" %s "$tmp/livegate-$who"
  printf -v "label_$who" %s "$label"
}

# start_stub BIN: the simulator on an ephemeral port, with a random vendor
# key; sets vendor_key, stub_pid and stub (its address), adds it to pids.
start_stub() {
  vendor_key=$(rand_hex 16)
  LIVEGATE_SIMULATOR__API_KEY=$vendor_key LIVEGATE_LOG__LEVEL=warn \
    "$1" stub --listen 127.0.0.1:0 >"$tmp/stub.out" 2>&1 &
  stub_pid=$!
  pids+=("$stub_pid")
  stub=$(wait_addr "$tmp/stub.out" "livegate stub listening on ")
}

# new_key BIN: a random pepper and a key of tenant "bench" under it; sets
# pepper and key; $tmp/key.out keeps the [[tenants.keys]] block.
new_key() {
  pepper=$(rand_hex 24)
  LIVEGATE_AUTH__PEPPER=$pepper "$1" keys new --tenant bench >"$tmp/key.out"
  key=$(sed -n 's/^key = "\(.*\)"$/\1/p' "$tmp/key.out")
  [[ -n $key ]] || { cat "$tmp/key.out" >&2; die "no key from 'keys new'"; }
}

# warm_up CASE: 1 s of unmeasured load on gw_addr[CASE] with $key (vendor
# connections, key cache, Redis script).
warm_up() {
  BENCH_KEY=$key BENCH_BODY=$tmp/canonical.json \
    wrk -t1 -c"$CONNS" -d1s -s "$tmp/post.lua" "http://${gw_addr[$1]}/modules/liveness" >"$tmp/warm.out" 2>&1 &
  wrk_pid=$!
  wait "$wrk_pid" || { cat "$tmp/warm.out" >&2; die "wrk failed (warm-up $1)"; }
  wrk_pid=
  grep -q '^RESULT [0-9.]* [0-9.]* [0-9.]* [1-9][0-9]* 0 0$' "$tmp/warm.out" ||
    { cat "$tmp/warm.out" >&2; tail -20 "$tmp/gw-$1.out" >&2; die "warm-up $1: no requests, or non-200s or errors"; }
}

wait_port() { # PORT PID LOG [SECONDS, default 10]: until PORT accepts, or die if PID exits
  for _ in $(seq $((${4:-10} * 20))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return; fi
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2 || true; die "process $2 exited (see above)"; }
    sleep 0.05
  done
  cat "$3" >&2 || true
  die "nothing listens on 127.0.0.1:$1"
}

free_port() { # a loopback TCP port nobody listens on right now (never 6379)
  python3 -c 'import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p != 6379: print(p); break'
}

# start_redis: a private redis-server (loopback, a free port, no
# persistence, never the shared 6379); a few tries in case the port is taken
# between the probe and the bind. Sets redis_port and redis_pid, adds it to pids.
start_redis() {
  local port
  redis_port= redis_pid=
  for _ in 1 2 3; do
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$tmp" --logfile "$tmp/redis.log" --daemonize no >/dev/null 2>&1 &
    redis_pid=$!
    for _ in $(seq 100); do
      if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then redis_port=$port; break; fi
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.05
    done
    if [[ -n $redis_port ]]; then pids+=("$redis_pid"); return; fi
    stop "$redis_pid"
  done
  cat "$tmp/redis.log" >&2 || true
  die "redis-server did not start"
}

evalsha_calls() { # EVALSHA calls on the private redis-server so far
  redis-cli -h 127.0.0.1 -p "$redis_port" info commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p' | grep . || echo 0
}

# measured_wrk CASE: the measured run: wrk for $DURATION with $CONNS
# connections, the canonical body and $key against gw_addr[CASE]; its output
# in $tmp/wrk.out.
measured_wrk() {
  BENCH_KEY=$key BENCH_BODY=$tmp/canonical.json \
    wrk -t1 -c"$CONNS" -d"$DURATION" -s "$tmp/post.lua" "http://${gw_addr[$1]}/modules/liveness" >"$tmp/wrk.out" 2>&1 &
  wrk_pid=$!
  wait "$wrk_pid" || { cat "$tmp/wrk.out" >&2; die "wrk failed ($1)"; }
  wrk_pid=
}
