"""Prints what the chart renders, without the helm binary: the manifests of
deploy/helm/livegate for the given values files, through the Helm SDK
bundled in the PyPI package helm-python-sdk (as `helm template` would).

    tests/helm/run.sh --render [--release NAME] [--namespace NS] [VALUES.yaml ...]

Values files are merged in order onto the chart's values.yaml like
`helm -f a.yaml -f b.yaml` (maps merged key by key, lists and scalars
replaced); the result is checked against values.schema.json, and a value
the chart refuses (the sizing check, a missing Secret reference) fails with
the chart's message. NOTES.txt goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import helm_python
import yaml

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "livegate"


def merge(base: dict, over: dict) -> dict:
    """Helm's merge of several -f files: nested maps merged key by key,
    anything else replaced by the later file."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="tests/helm/run.sh --render", description=__doc__.split("\n\n")[0])
    parser.add_argument("values", nargs="*", type=Path, help="values files, merged in order")
    parser.add_argument("--release", default="livegate", help="release name (default livegate)")
    parser.add_argument("--namespace", default="livegate", help="namespace (default livegate)")
    args = parser.parse_args()

    values: dict = {}
    for path in args.values:
        with open(path) as f:
            values = merge(values, yaml.safe_load(f) or {})
    try:
        with helm_python.Chart.load(str(CHART)) as chart:
            out = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)
    except helm_python.errors.HelmError as e:
        print(f"render: {e}", file=sys.stderr)
        return 1
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            print(text, file=sys.stderr)
        elif text.strip():
            print(f"---\n# Source: {path}\n{text.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
