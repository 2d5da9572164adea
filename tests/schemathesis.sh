#!/usr/bin/env bash
# Property-based API tests: schemathesis (PyPI) generates requests from the
# checked-in OpenAPI document (crates/livegate-admin/openapi.json) and runs
# them against real gateways on the embedded default. Checks: no 5xx, every
# status, content type and body as the document says. .ci/run calls this.
#
# Two gateway processes, so that no run sees what another one did:
# - gateway "public": a tenant made through its admin API with limits that do
#   not bind (rate 100000/s, burst 100000, quota 10^12) and a fresh key of it;
#   the public API is run with that key. The document's request examples
#   (real JPEG and PNG drawings) make some liveness cases valid images, so
#   the route is exercised past authentication and image checks.
# - gateway "admin": the admin API with the admin token, then with a wrong
#   token (the admin-token run revokes keys and disables tenants).
# - gateway "scoped": configured with a `read` and a `keys` token
#   (`[[admin.tokens]]`); the admin API with each: its routes answered, the
#   documented 403 (40302) on the other scopes' routes, never a 2xx there.
# After each run a per-operation summary of the response statuses is
# printed. The script fails when, in the admin-token or the public run, an
# operation got only 401/403 answers (schemathesis' `missing_auth` warning,
# made fatal, and the summary's own check), when the public run is rate
# limited (`rate_limited`), when the liveness route answered no 2xx, or
# when the wrong-token run got any 2xx.
#
#   tests/schemathesis.sh            # EXAMPLES=25 per operation, seed 1
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
EXAMPLES=${EXAMPLES:-25}
venv=${SCHEMATHESIS_VENV:-$repo/target/schemathesis-venv}
if [[ ! -x $venv/bin/schemathesis ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi
cargo build -q --locked --bin livegate
bin=$repo/target/debug/livegate
doc=$repo/crates/livegate-admin/openapi.json

tmp=$(mktemp -d /tmp/livegate-schemathesis.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# start_gateway NAME: a gateway on the embedded default on ephemeral ports;
# sets public, ops, key (the development key) and token (the admin token).
start_gateway() {
  local out=$tmp/$1.out
  LIVEGATE_SERVER__LISTEN=127.0.0.1:0 LIVEGATE_OPS__LISTEN=127.0.0.1:0 LIVEGATE_SERVER__SHUTDOWN_DELAY_MS=0 \
    LIVEGATE_LOG__LEVEL=warn "$bin" serve >"$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do grep -q "^livegate ops listening on " "$out" && break; sleep 0.05; done
  public=$(sed -n 's/^livegate listening on //p' "$out" | head -1)
  ops=$(sed -n 's/^livegate ops listening on //p' "$out" | head -1)
  key=$(grep -o 'lvg_[a-z0-9]\{12\}_[A-Za-z0-9]\{43\}' "$out" | head -1)
  token=$(grep -o 'lvgadm_[0-9a-f]*' "$out" | head -1)
  [[ -n $public && -n $ops && -n $key && -n $token ]] || { echo "gateway $1 did not start:" >&2; cat "$out" >&2; exit 1; }
}

# Warnings made fatal where every operation must get past authentication.
cat >"$tmp/strict.toml" <<'TOML'
[warnings]
fail-on = ["missing_auth", "rate_limited"]
TOML
cat >"$tmp/lenient.toml" <<'TOML'
[warnings]
fail-on = false
TOML

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
# run LABEL CONFIG EXPECT [schemathesis arguments]; EXPECT: "auth" (no operation
# may get only 401/403; the liveness route must answer 2xx), "scoped:SCOPE" (a
# token of one scope: other scopes' operations never 2xx and some 403; a read
# token's some 2xx) or "denied" (no operation may answer 2xx).
runs=0
run() {
  local label=$1 config=$2 expect=$3 report
  shift 3
  runs=$((runs + 1))
  report=$tmp/report-$runs.ndjson
  echo "== schemathesis: $label"
  # From the scratch directory: schemathesis keeps a cache (.schemathesis/)
  # in the working directory, which would name this checkout's path.
  local rc=0
  (cd "$tmp" && "$venv/bin/schemathesis" --config-file "$tmp/$config" run "$doc" \
    --checks "$checks" -n "$EXAMPLES" --seed 1 --no-shrink --workers 1 \
    --phases examples,coverage,fuzzing --request-timeout 10 \
    --report ndjson --report-ndjson-path "$report" "$@") || rc=$?
  "$venv/bin/python" - "$report" "$expect" "$label" "$doc" <<'PY' || rc=1
import collections, json, sys

path, expect, label = sys.argv[1:4]
statuses = collections.defaultdict(collections.Counter)  # operation -> status -> count


def walk(node):
    """Yields every (operation label, response status) of a serialized scenario."""
    if isinstance(node, dict):
        recorder = node.get("recorder")
        if isinstance(recorder, dict) and "interactions" in recorder:
            for interaction in recorder["interactions"].values():
                response = interaction.get("response") or {}
                if "status_code" in response:
                    yield recorder["label"], response["status_code"]
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


with open(path) as report:
    for line in report:
        for operation, status in walk(json.loads(line)):
            statuses[operation][status] += 1

print(f"-- responses per operation ({label}):")
for operation in sorted(statuses):
    counts = statuses[operation]
    total = sum(counts.values())
    shown = ", ".join(f"{code}: {counts[code]}" for code in sorted(counts))
    print(f"   {operation:45} {total:4} requests  {shown}")

problems = []
if not statuses:
    problems.append("the report holds no responses")
if expect == "auth":
    for operation, counts in statuses.items():
        # 405: schemathesis' probes with methods the route does not have.
        if set(counts) - {405} <= {401, 403}:
            problems.append(f"{operation} got only 401/403 answers")
    liveness = [op for op in statuses if op.endswith(" /modules/liveness")]
    for operation in liveness:
        if not any(200 <= code < 300 for code in statuses[operation]):
            problems.append(f"{operation} answered no 2xx")
if expect.startswith("scoped:"):
    # A token of one scope: the operations the document gives another
    # scope never answer 2xx and do answer 403 (schemathesis also sends
    # cases without the token, hence 401s anywhere); its own answer 2xx.
    scope = expect.split(":", 1)[1]
    with open(sys.argv[4]) as f:
        doc = json.load(f)
    scopes = {f"{m.upper()} {p}": o.get("x-livegate-scope")
              for p, ops in doc["paths"].items() for m, o in ops.items() if isinstance(o, dict)}
    refused = allowed = 0
    for operation, counts in statuses.items():
        ok = any(200 <= code < 300 for code in counts)
        if scopes.get(operation) == scope:
            allowed += ok
        else:
            if ok:
                problems.append(f"{operation} (scope {scopes.get(operation)}) answered 2xx to a {scope} token")
            refused += 403 in counts
    # Every `keys` operation names a tenant or key the fuzzer cannot guess
    # (404); `read` has the tenant list and the document.
    if scope == "read" and not allowed:
        problems.append(f"no {scope} operation answered 2xx to the {scope} token")
    if not refused:
        problems.append(f"no operation outside {scope} answered 403")
if expect == "denied":
    for operation, counts in statuses.items():
        if any(200 <= code < 300 for code in counts):
            problems.append(f"{operation} answered 2xx to a wrong token")
for problem in problems:
    print(f"   FAILED: {problem}")
sys.exit(1 if problems else 0)
PY
  return $rc
}

start_gateway public
# A tenant whose limits do not bind and a fresh key of it, made through the
# admin API of this gateway (which no admin run touches).
tenant_key=$("$venv/bin/python" - "http://$ops" "$token" <<'PY'
import json, sys, urllib.request

base, token = sys.argv[1:]


def post(path, body):
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


post("/admin/v1/tenants", {"id": "schemathesis", "name": "schemathesis public-API run",
                           "ratePerSecond": 100000, "burst": 100000, "monthlyQuota": 10**12})
print(post("/admin/v1/tenants/schemathesis/keys", {})["key"])
PY
)
run "public API, key of an unlimited tenant" strict.toml auth --url "http://$public" \
  -H "x-api-key: $tenant_key" -H "Authorization: Bearer $tenant_key" --exclude-path-regex '^/admin/'

start_gateway admin
run "admin API, admin token" strict.toml auth --url "http://$ops" \
  -H "Authorization: Bearer $token" --include-path-regex '^/admin/'
run "admin API, wrong token" lenient.toml denied --url "http://$ops" \
  -H "Authorization: Bearer wrong-token-0123456789" --include-path-regex '^/admin/'

# Scoped admin tokens, on a third gateway configured with them.
cat >"$tmp/scoped.toml" <<'TOML'
[simulator]
enabled = true
[admin]
token = "schemathesis-admin-token-0123"
[[admin.tokens]]
name = "read"
token = "schemathesis-read-token-0123"
scopes = ["read"]
[[admin.tokens]]
name = "keys"
token = "schemathesis-keys-token-0123"
scopes = ["keys"]
TOML
LIVEGATE_SERVER__LISTEN=127.0.0.1:0 LIVEGATE_OPS__LISTEN=127.0.0.1:0 LIVEGATE_SERVER__SHUTDOWN_DELAY_MS=0 \
  LIVEGATE_LOG__LEVEL=warn "$bin" serve --config "$tmp/scoped.toml" >"$tmp/scoped.out" 2>&1 &
pids+=($!)
for _ in $(seq 300); do grep -q "^livegate ops listening on " "$tmp/scoped.out" && break; sleep 0.05; done
scoped_ops=$(sed -n 's/^livegate ops listening on //p' "$tmp/scoped.out" | head -1)
[[ -n $scoped_ops ]] || { echo "scoped gateway did not start:" >&2; cat "$tmp/scoped.out" >&2; exit 1; }
run "admin API, read token" lenient.toml scoped:read --url "http://$scoped_ops" \
  -H "Authorization: Bearer schemathesis-read-token-0123" --include-path-regex '^/admin/'
run "admin API, keys token" lenient.toml scoped:keys --url "http://$scoped_ops" \
  -H "Authorization: Bearer schemathesis-keys-token-0123" --include-path-regex '^/admin/'
echo "schemathesis: all runs passed"
