#!/usr/bin/env bash
# The Helm chart's tests (tests/helm/test_chart.py): render and lint it
# offline with the Helm SDK bundled in the PyPI package helm-python-sdk,
# check the manifests, the values schema, and the rendered livegate
# configuration with the real binary (`livegate check-config`).
#
#   tests/helm/run.sh                      # all tests
#   tests/helm/run.sh -k Broken            # unittest's -k filter
#
# LIVEGATE_BIN: the binary (default target/debug/livegate, built when missing).
# HELM_VENV: the venv (default target/helm-venv, made when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
venv=${HELM_VENV:-$repo/target/helm-venv}
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import helm_python, yaml, jsonschema' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'helm-python-sdk==0.2.2' 'pyyaml>=6,<7' 'jsonschema>=4.20,<5'
fi
export LIVEGATE_BIN=${LIVEGATE_BIN:-$repo/target/debug/livegate}
if [[ ! -x $LIVEGATE_BIN ]]; then
  cargo build -q --locked --bin livegate
fi
exec "$venv/bin/python" tests/helm/test_chart.py -v "$@"
