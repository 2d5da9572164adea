#!/usr/bin/env bash
# The Helm chart's tests (tests/helm/test_chart.py): render and lint it
# offline with the Helm SDK bundled in the PyPI package helm-python-sdk,
# check the manifests, the values schema, and the rendered livegate
# configuration with the real binary (`livegate check-config`); validate the
# manifests against the Kubernetes API schemas of two Kubernetes versions
# (kubernetes-validate, schemas bundled, offline) and scan them with
# checkov's Kubernetes checks. Values: the chart's defaults,
# values-production.yaml, tests/helm/values-all-on.yaml (every optional
# object on) and variants made in test_chart.py.
#
#   tests/helm/run.sh                      # all tests
#   tests/helm/run.sh -k Broken            # unittest's -k filter
#   tests/helm/run.sh --render [--release NAME] [--namespace NS] [VALUES.yaml ...]
#                                          # print the manifests (like `helm template`)
#
# LIVEGATE_BIN: the binary (default target/debug/livegate, built when missing).
# HELM_VENV: the venv (default target/helm-venv, made when missing).
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/../.."
repo=$PWD
venv=${HELM_VENV:-$repo/target/helm-venv}
# Pinned: a new checkov release adds checks, a new kubernetes-validate new schemas.
requirements=('helm-python-sdk==0.2.2' 'pyyaml>=6,<7' 'jsonschema>=4.20,<5'
  'kubernetes-validate==1.37.0' 'checkov==3.3.30')
if [[ ! -x $venv/bin/python ]] || [[ $(cat "$venv/.livegate-requirements" 2>/dev/null) != "${requirements[*]}" ]]; then
  [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
  echo "tests/helm/run.sh: installing ${requirements[*]} into $venv" >&2
  "$venv/bin/pip" install -q "${requirements[@]}"
  echo "${requirements[*]}" >"$venv/.livegate-requirements"
fi
if [[ ${1:-} == --render ]]; then
  shift
  # Values paths are relative to where the caller stood.
  cd "$caller"
  exec "$venv/bin/python" "$repo/tests/helm/render.py" "$@"
fi
export LIVEGATE_BIN=${LIVEGATE_BIN:-$repo/target/debug/livegate}
if [[ ! -x $LIVEGATE_BIN ]]; then
  cargo build -q --locked --bin livegate
fi
exec "$venv/bin/python" tests/helm/test_chart.py -v "$@"
