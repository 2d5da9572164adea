#!/usr/bin/env bash
# Property-based API tests: schemathesis (PyPI) generates requests from the
# checked-in OpenAPI document (crates/livegate-admin/openapi.json) and runs
# them against a real gateway on the embedded default — the admin API on the
# operations listener (with the admin token, and with a wrong one) and the
# public API (with the development key); then the admin API with a `read`
# and a `keys` token (scoped tokens). Checks: no 5xx, every status,
# content type and body as the document says. .ci/run calls this.
#
#   tests/schemathesis.sh            # EXAMPLES=25 per operation, seed 1
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
EXAMPLES=${EXAMPLES:-25}
venv=${SCHEMATHESIS_VENV:-$repo/target/schemathesis-venv}
if [[ ! -x $venv/bin/schemathesis ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis>=4.32,<5'
fi
cargo build -q --locked --bin livegate
bin=$repo/target/debug/livegate

tmp=$(mktemp -d /tmp/livegate-schemathesis.XXXXXX)
gw_pid=
scoped_pid=
cleanup() {
  [[ -z $gw_pid ]] || kill "$gw_pid" 2>/dev/null || true
  [[ -z $scoped_pid ]] || kill "$scoped_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

LIVEGATE_SERVER__LISTEN=127.0.0.1:0 LIVEGATE_OPS__LISTEN=127.0.0.1:0 LIVEGATE_SERVER__SHUTDOWN_DELAY_MS=0 \
  LIVEGATE_LOG__LEVEL=warn "$bin" serve >"$tmp/gw.out" 2>&1 &
gw_pid=$!
for _ in $(seq 300); do grep -q "^livegate listening on " "$tmp/gw.out" && break; sleep 0.05; done
public=$(sed -n 's/^livegate listening on //p' "$tmp/gw.out" | head -1)
ops=$(sed -n 's/^livegate ops listening on //p' "$tmp/gw.out" | head -1)
key=$(grep -o 'lvg_[a-z0-9]\{12\}_[A-Za-z0-9]\{43\}' "$tmp/gw.out" | head -1)
token=$(grep -o 'lvgadm_[0-9a-f]*' "$tmp/gw.out" | head -1)
[[ -n $public && -n $ops && -n $key && -n $token ]] || { echo "gateway did not start:" >&2; cat "$tmp/gw.out" >&2; exit 1; }

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
run() { # label, then schemathesis arguments
  local label=$1
  shift
  echo "== schemathesis: $label"
  # From the scratch directory: schemathesis keeps a cache (.schemathesis/)
  # in the working directory, which would name this checkout's path.
  (cd "$tmp" && "$venv/bin/schemathesis" run "$repo/crates/livegate-admin/openapi.json" \
    --checks "$checks" -n "$EXAMPLES" --seed 1 --no-shrink --workers 1 \
    --phases examples,coverage,fuzzing --request-timeout 10 "$@")
}
run "admin API, admin token" --url "http://$ops" -H "Authorization: Bearer $token" --include-path-regex '^/admin/'
run "admin API, wrong token" --url "http://$ops" -H "Authorization: Bearer wrong-token-0123456789" --include-path-regex '^/admin/'
run "public API, development key" --url "http://$public" -H "x-api-key: $key" -H "Authorization: Bearer $key" --exclude-path-regex '^/admin/'

# Scoped admin tokens, on a second gateway configured with them: a `read`
# token and a `keys` token get their routes answered and the documented
# 403 (40302) on every other admin route.
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
scoped_pid=$!
for _ in $(seq 300); do grep -q "^livegate listening on " "$tmp/scoped.out" && break; sleep 0.05; done
scoped_ops=$(sed -n 's/^livegate ops listening on //p' "$tmp/scoped.out" | head -1)
[[ -n $scoped_ops ]] || { echo "scoped gateway did not start:" >&2; cat "$tmp/scoped.out" >&2; exit 1; }
run "admin API, read token" --url "http://$scoped_ops" -H "Authorization: Bearer schemathesis-read-token-0123" --include-path-regex '^/admin/'
run "admin API, keys token" --url "http://$scoped_ops" -H "Authorization: Bearer schemathesis-keys-token-0123" --include-path-regex '^/admin/'
echo "schemathesis: all runs passed"
