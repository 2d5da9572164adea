"""Tests of the Helm chart deploy/helm/livegate, offline.

The chart is rendered and linted with the Helm SDK bundled in the PyPI
package helm-python-sdk (no helm binary, no cluster), its values checked
against values.schema.json (by Helm and by the jsonschema package), and the
livegate configuration it renders is given to the real binary
(`livegate check-config`). Each check is a function returning the problems
it found; `ChartTest` runs them on the shipped values, `BrokenChartTest`
shows each one failing on a deliberately broken values file or template (a
copy of the chart in a temporary directory).

Run with tests/helm/run.sh (it makes the venv). LIVEGATE_BIN names the
binary (default target/debug/livegate).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import unittest
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "livegate"
LIVEGATE_BIN = Path(os.environ.get("LIVEGATE_BIN", REPO / "target" / "debug" / "livegate"))
RELEASE, NAMESPACE = "livegate", "livegate"


# --------------------------------------------------------------------------
# Rendering


def load_yaml(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f) or {}


def production_values() -> dict:
    return load_yaml(CHART / "values-production.yaml")


def everything_values() -> dict:
    """Production, plus what it leaves off: an audit file on a claim, a
    bootstrap key, collector headers from a Secret, a gRPC collector."""
    v = production_values()
    v["config"]["audit"] = {"sink": "file", "path": "/var/log/livegate/audit.jsonl"}
    v["auditVolume"] = {"type": "persistentVolumeClaim", "claimName": "livegate-audit"}
    v["config"]["tenants"][0]["keys"] = [
        {"id": "k1a2b3c4d5e6", "hash": "0" * 64, "expires_at": "2027-01-31T00:00:00Z"},
        {"id": "q9w8e7r6t5y4", "hash": "a" * 64, "revoked": True},
    ]
    v["otel"]["headers"] = {"existingSecret": "livegate-otlp", "key": "headers"}
    v["otel"]["endpoint"] = "http://otel-collector.observability.svc:4317"
    v["otel"]["protocol"] = "grpc"
    v["otel"]["timeoutMs"] = 5000
    v["terminationGracePeriodSeconds"] = 60
    v["config"]["server"] = {"shutdown_delay_ms": 8000, "drain_timeout_ms": 20000}
    return v


def protection_values() -> dict:
    """Production with liveness-aware protection changed from livegate's
    defaults, and two tenants overriding it (one key; several)."""
    v = production_values()
    v["config"]["protection"].update({
        "replay": "reject", "replay_scope": "global", "replay_max_distance": 3, "strip_metadata": False,
        "score_threshold": 80, "review_band": 10, "idempotency_retention_hours": 48,
        "idempotency_wait_ms": 5000, "max_pixels": 20000000})
    v["config"]["tenants"][0]["protection"] = {"replay": "off"}
    v["config"]["tenants"].append({"id": "kiosk", "protection": {
        "replay": "flag", "replay_window_hours": 168, "replay_scope": "tenant", "replay_max_distance": 0,
        "strip_metadata": True, "score_threshold": 90, "review_band": 5}})
    return v


def audit_sinks_values() -> dict:
    """Production with a list of audit sinks: a file and OTLP log records
    (to otel.endpoint, which production sets)."""
    v = production_values()
    v["config"]["audit"] = {"sink": ["file", "otlp"], "path": "/var/log/livegate/audit.jsonl"}
    return v


def all_on_values() -> dict:
    """tests/helm/values-all-on.yaml: every optional object and setting on."""
    return load_yaml(REPO / "tests" / "helm" / "values-all-on.yaml")


VARIANTS = {
    "default": lambda: {},
    "production": production_values,
    "everything": everything_values,
    "protection": protection_values,
    "audit-sinks": audit_sinks_values,
    "all-on": all_on_values,
}


class Rendered:
    """A chart rendered with some values: its objects and merged values."""

    def __init__(self, chart_dir: Path, values: dict):
        with helm_python.Chart.load(str(chart_dir)) as ch:
            out = ch.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            self.values = ch.merge_values(values)
        self.objects: list[dict] = []
        self.notes = ""
        for path, text in sorted(out.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(doc)

    def kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def deployment(self) -> dict:
        (d,) = self.kind("Deployment")
        return d

    def pod(self) -> dict:
        return self.deployment()["spec"]["template"]

    def containers(self) -> list[dict]:
        spec = self.pod()["spec"]
        return spec.get("containers", []) + spec.get("initContainers", [])

    def config_text(self) -> str:
        for cm in self.kind("ConfigMap"):
            if "livegate.toml" in cm.get("data", {}):
                return cm["data"]["livegate.toml"]
        raise AssertionError("no ConfigMap with livegate.toml")

    def config(self) -> dict:
        return tomllib.loads(self.config_text())


def render(values: dict, chart_dir: Path = CHART) -> Rendered:
    return Rendered(chart_dir, values)


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --------------------------------------------------------------------------
# Checks: each returns a list of problems (empty: passed).

SECRETISH = re.compile(r"KEY|TOKEN|PASSW|SECRET|PEPPER|HEADERS|CREDENTIAL|AUTH|REDIS_URL|DSN", re.I)
INLINE_SECRET_KEYS = [("vendor", "api_key"), ("auth", "pepper"), ("admin", "token"),
                      ("redis", "url"), ("simulator", "api_key"), ("ops", "metrics_token")]
# Which livegate *_file key each `secrets` entry feeds.
SECRET_WIRING = {"vendorApiKey": ("vendor", "api_key_file"), "pepper": ("auth", "pepper_file"),
                 "adminToken": ("admin", "token_file"), "redisUrl": ("redis", "url_file")}


def check_security(r: Rendered) -> list[str]:
    p = []
    pod = r.pod()["spec"]
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        p.append("pod securityContext.runAsNonRoot is not true")
    if psc.get("runAsUser") != 65532:
        p.append(f"pod securityContext.runAsUser is {psc.get('runAsUser')!r}, not 65532")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        p.append("pod seccompProfile is not RuntimeDefault")
    for c in r.containers():
        sc = c.get("securityContext", {})
        name = c.get("name")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            p.append(f"container {name}: runAsNonRoot is not true")
        if sc.get("runAsUser", psc.get("runAsUser")) in (None, 0):
            p.append(f"container {name}: runs as root")
        if sc.get("readOnlyRootFilesystem") is not True:
            p.append(f"container {name}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            p.append(f"container {name}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            p.append(f"container {name}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or caps.get("add"):
            p.append(f"container {name}: capabilities do not drop ALL (or add some)")
    return p


def allowed_secret_names(values: dict) -> set[str]:
    names = {ref.get("existingSecret") for ref in values.get("secrets", {}).values()}
    names.add(values.get("otel", {}).get("headers", {}).get("existingSecret"))
    names.add(values.get("ops", {}).get("metricsToken", {}).get("existingSecret"))
    names |= {t.get("existingSecret") for t in values.get("admin", {}).get("tokens", [])}
    return {n for n in names if n}


def check_secrets(r: Rendered) -> list[str]:
    """Secrets only by reference: no Secret with data, no literal env value
    for a secret-looking name, secret volumes and env refs only name the
    values' existingSecrets, no inline secret in the TOML, and every
    referenced secret is mounted and wired to its *_file key."""
    p = []
    allowed = allowed_secret_names(r.values)
    for s in r.kind("Secret"):
        if s.get("data") or s.get("stringData"):
            p.append(f"Secret {s['metadata']['name']} rendered with data")
    for c in r.containers():
        for e in c.get("env", []):
            if "value" in e and SECRETISH.search(e["name"]):
                p.append(f"env {e['name']} has a literal value")
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref.get("name") not in allowed:
                p.append(f"env {e['name']} reads Secret {ref.get('name')!r}, not an existingSecret of the values")
        for src in c.get("envFrom", []):
            if "secretRef" in src and src["secretRef"].get("name") not in allowed:
                p.append(f"envFrom Secret {src['secretRef'].get('name')!r} is not an existingSecret")
    # Secret volumes: name -> [(key, path)]
    mounted: dict[str, list[tuple[str, str, str]]] = {}
    volumes = r.pod()["spec"].get("volumes", [])
    for v in volumes:
        sources = []
        if "secret" in v:
            sources.append((v["secret"].get("secretName"), v["secret"].get("items", [])))
        for src in v.get("projected", {}).get("sources", []):
            if "secret" in src:
                sources.append((src["secret"].get("name"), src["secret"].get("items", [])))
        for name, items in sources:
            if name not in allowed:
                p.append(f"volume {v['name']} mounts Secret {name!r}, not an existingSecret of the values")
            for it in items:
                mounted.setdefault(name, []).append((v["name"], it["key"], it["path"]))
    cfg = r.config()
    for section, key in INLINE_SECRET_KEYS:
        if key in cfg.get(section, {}):
            p.append(f"the rendered config holds {section}.{key} inline")
    mounts = {m["name"]: m["mountPath"] for c in r.containers() for m in c.get("volumeMounts", [])}
    for entry, (section, key) in SECRET_WIRING.items():
        ref = r.values["secrets"][entry]
        if not ref.get("existingSecret"):
            if key in cfg.get(section, {}):
                p.append(f"{section}.{key} is set although secrets.{entry} is not")
            continue
        want = cfg.get(section, {}).get(key)
        files = [f"{mounts.get(vol, '?')}/{path}" for vol, k, path in mounted.get(ref["existingSecret"], [])
                 if k == ref["key"]]
        if not want:
            p.append(f"secrets.{entry} is set but {section}.{key} is not in the config")
        elif want not in files:
            p.append(f"{section}.{key} = {want} is not where Secret {ref['existingSecret']}/{ref['key']} is mounted ({files})")

    def mounted_at(ref: dict) -> list[str]:
        return [f"{mounts.get(vol, '?')}/{path}" for vol, k, path in mounted.get(ref["existingSecret"], [])
                if k == ref["key"]]

    # ops.metricsToken -> [ops] metrics_token_file; admin.tokens[] -> [[admin.tokens]] token_file.
    metrics = r.values.get("ops", {}).get("metricsToken", {})
    want = cfg.get("ops", {}).get("metrics_token_file")
    if metrics.get("existingSecret"):
        if want not in mounted_at(metrics):
            p.append(f"ops.metrics_token_file = {want} is not where Secret {metrics['existingSecret']} is mounted")
    elif want:
        p.append("ops.metrics_token_file is set although ops.metricsToken is not")
    tokens = r.values.get("admin", {}).get("tokens", [])
    rendered = cfg.get("admin", {}).get("tokens", [])
    if len(rendered) != len(tokens):
        p.append(f"admin.tokens: {len(tokens)} in the values, {len(rendered)} rendered")
    for t, got in zip(tokens, rendered):
        if "token" in got:
            p.append(f"admin.tokens {t['name']} holds its token inline")
        want_t = {"name": t["name"], "scopes": t["scopes"], **({"tenants": t["tenants"]} if t.get("tenants") else {})}
        if {k: v for k, v in got.items() if k != "token_file"} != want_t:
            p.append(f"admin.tokens: values {want_t}, rendered {got}")
        if got.get("token_file") not in mounted_at(t):
            p.append(f"admin.tokens {t['name']}: token_file {got.get('token_file')} is not where Secret {t['existingSecret']} is mounted")
    return p


def check_probes(r: Rendered) -> list[str]:
    p = []
    (c,) = [c for c in r.pod()["spec"]["containers"] if c["name"] == "livegate"]
    ports = {pt.get("name"): pt.get("containerPort") for pt in c.get("ports", [])}
    if ports.get("http") != 8080:
        p.append(f"container port http is {ports.get('http')}, not 8080")
    if ports.get("ops") != 9090:
        p.append(f"container port ops is {ports.get('ops')}, not 9090")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet")
        if not get:
            p.append(f"no {probe} httpGet")
            continue
        if get.get("path") != path:
            p.append(f"{probe} path is {get.get('path')!r}, not {path}")
        if get.get("port") not in ("http", 8080):
            p.append(f"{probe} port is {get.get('port')!r}, not the public port http")
    listen = r.config().get("server", {}).get("listen")
    if listen != "0.0.0.0:8080":
        p.append(f"server.listen is {listen!r}: the probes and Service expect 0.0.0.0:8080")
    return p


def audit_flush_seconds() -> int:
    """AUDIT_FLUSH_TIMEOUT in the binary's main.rs, so the test follows it."""
    src = (REPO / "crates" / "livegate" / "src" / "main.rs").read_text()
    m = re.search(r"AUDIT_FLUSH_TIMEOUT[^=]*=\s*[\w:]*Duration::from_secs\((\d+)\)", src)
    return int(m.group(1)) if m else 10


def check_grace(r: Rendered) -> list[str]:
    """terminationGracePeriodSeconds covers what livegate does on SIGTERM,
    with the values in the rendered config (livegate's defaults if unset)."""
    server = r.config().get("server", {})
    delay = server.get("shutdown_delay_ms", 5000)
    drain = server.get("drain_timeout_ms", 10000)
    need = math.ceil((delay + drain) / 1000) + audit_flush_seconds()
    grace = r.pod()["spec"].get("terminationGracePeriodSeconds", 30)
    if grace <= need:
        return [f"terminationGracePeriodSeconds {grace} leaves no margin over {need} s "
                f"(shutdown_delay_ms {delay} + drain_timeout_ms {drain} + audit flush {audit_flush_seconds()} s)"]
    return []


def check_service_monitor(r: Rendered) -> list[str]:
    p = []
    sms = r.kind("ServiceMonitor")
    if not r.values["serviceMonitor"]["enabled"]:
        return [f"ServiceMonitor rendered although disabled"] if sms else []
    if len(sms) != 1:
        return [f"{len(sms)} ServiceMonitors rendered, expected 1"]
    sm = sms[0]
    eps = sm["spec"].get("endpoints", [])
    if not any(e.get("port") == "ops" and e.get("path") == "/metrics" for e in eps):
        p.append(f"ServiceMonitor endpoints {eps} do not scrape port ops path /metrics")
    sel = sm["spec"].get("selector", {}).get("matchLabels", {})
    services = [s for s in r.kind("Service") if selects(sel, s["metadata"].get("labels", {}))]
    if len(services) != 1:
        p.append(f"the ServiceMonitor selects {len(services)} Services, expected the ops one")
    for s in services:
        ports = [pt for pt in s["spec"]["ports"] if pt.get("name") == "ops"]
        if not ports or ports[0].get("targetPort") not in ("ops", 9090):
            p.append(f"Service {s['metadata']['name']} has no port ops to the container's ops port")
        if not selects(s["spec"].get("selector", {}), r.pod()["metadata"]["labels"]):
            p.append(f"Service {s['metadata']['name']} does not select the pods")
    return p


def expected_network_policy(values: dict) -> dict:
    np = values["networkPolicy"]
    ingress = [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    if np["ingress"]["http"].get("from"):
        ingress[0]["from"] = np["ingress"]["http"]["from"]
    if np["ingress"]["ops"].get("from"):
        ingress.append({"ports": [{"port": 9090, "protocol": "TCP"}], "from": np["ingress"]["ops"]["from"]})
    dns = np["egress"]["dns"]
    egress = [{"ports": [{"port": port, "protocol": proto} for port in dns["ports"] for proto in ("UDP", "TCP")]}]
    if dns.get("to"):
        egress[0]["to"] = dns["to"]
    for name in ("vendor", "redis", "otlp"):
        t = np["egress"][name]
        to = list(t.get("to") or []) + [{"ipBlock": {"cidr": c}} for c in t.get("cidrs") or []]
        if to:
            egress.append({"ports": [{"port": port, "protocol": "TCP"} for port in t["ports"]], "to": to})
    return {"ingress": ingress, "egress": egress}


def check_network_policy(r: Rendered) -> list[str]:
    """The NetworkPolicy allows exactly what the values list, nothing more;
    the ops port only from the listed peers."""
    p = []
    nps = r.kind("NetworkPolicy")
    if not r.values["networkPolicy"]["enabled"]:
        return ["NetworkPolicy rendered although disabled"] if nps else []
    if len(nps) != 1:
        return [f"{len(nps)} NetworkPolicies rendered, expected 1"]
    spec = nps[0]["spec"]
    if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
        p.append(f"policyTypes {spec.get('policyTypes')} is not Ingress and Egress")
    if not selects(spec.get("podSelector", {}).get("matchLabels", {}), r.pod()["metadata"]["labels"]):
        p.append("the NetworkPolicy does not select the pods")
    want = expected_network_policy(r.values)
    for direction in ("ingress", "egress"):
        got = spec.get(direction, [])
        if got != want[direction]:
            p.append(f"{direction} rules differ from the values:\n  got  {json.dumps(got)}\n  want {json.dumps(want[direction])}")
    for rule in spec.get("ingress", []):
        ports = [pt.get("port") for pt in rule.get("ports", [])]
        if (not ports or 9090 in ports or "ops" in ports) and not rule.get("from"):
            p.append("the ops port is open to everyone")
    return p


def check_lint(chart_dir: Path, values: dict) -> list[str]:
    report = helm_python.lint(str(chart_dir), values, strict=True)
    p = [f"lint {m['severity']} {m['path']}: {m['error']}" for m in report.get("messages", [])
         if m.get("severity", 0) >= 2]
    return p + [f"lint: {e}" for e in report.get("errors", [])]


def check_schema(chart_dir: Path, values: dict) -> list[str]:
    """The values against values.schema.json, by Helm and by jsonschema
    (the values file alone, before Helm merges the defaults in)."""
    p = []
    with helm_python.Chart.load(str(chart_dir)) as ch:
        try:
            ch.validate_schema(values)
        except helm_python.HelmError as e:
            p.append(f"helm: {e}".strip())
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    for err in validator.iter_errors(values):
        p.append(f"jsonschema: {'/'.join(map(str, err.absolute_path))}: {err.message}")
    return p


VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
ALIAS = re.compile(r"(\$[A-Za-z_][A-Za-z0-9_]*)\s*:=\s*\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*}}")


def template_values_paths(chart_dir: Path) -> set[tuple[str, ...]]:
    """Every `.Values.a.b` path in the templates, and `$x.c` where
    `$x := .Values.a` (a variable holding a part of the values)."""
    paths = set()
    for f in (chart_dir / "templates").iterdir():
        text = f.read_text()
        for m in VALUES_REF.finditer(text):
            paths.add(tuple(m.group(1).strip(".").split(".")))
        for m in ALIAS.finditer(text):
            var, base = m.group(1), tuple(x for x in m.group(2).split(".") if x)
            for use in re.finditer(re.escape(var) + r"((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
                paths.add(base + tuple(use.group(1).strip(".").split(".")))
    return paths


def schema_at(schema: dict, root: dict, path: tuple[str, ...]) -> dict | None:
    node = schema
    for part in path:
        while "$ref" in node:
            node = root["definitions"][node["$ref"].split("/")[-1]]
        props = node.get("properties", {})
        if part not in props:
            return None
        node = props[part]
    return node


def check_values_paths(chart_dir: Path) -> list[str]:
    values = load_yaml(chart_dir / "values.yaml")
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    p = []
    for path in sorted(template_values_paths(chart_dir)):
        node = values
        for part in path:
            if not isinstance(node, dict) or part not in node:
                p.append(f".Values.{'.'.join(path)} is used in a template but not in values.yaml")
                break
            node = node[part]
        if schema_at(schema, schema, path) is None:
            p.append(f".Values.{'.'.join(path)} is used in a template but not in values.schema.json")
    return p


# Dummy contents of the secret files for check-config: the shapes livegate
# checks (a Redis URL; keys, pepper and token of at least 16 bytes).
DUMMY_SECRETS = {"url_file": "redis://127.0.0.1:6379"}
DUMMY_SECRET = "dummy-secret-for-check-config-0123456789"


def check_config(r: Rendered, env: dict | None = None) -> list[str]:
    """`livegate check-config` accepts the rendered configuration. The
    *_file paths point at /run/secrets/livegate/..., where the pod has its
    Secrets mounted; here they are rewritten to temporary files holding
    dummy values of the right shape (check-config reads them, as serve does).
    The environment is empty but for PATH and the Deployment's literal
    LIVEGATE_* variables (none today), as in the pod."""
    text = r.config_text()
    with tempfile.TemporaryDirectory(prefix="livegate-helm-") as tmp:
        def to_temp(m: re.Match) -> str:
            key = m.group(1)
            n = len(os.listdir(tmp))
            f = Path(tmp) / f"{key}-{n}"
            # Each its own value: livegate refuses two admin tokens alike.
            f.write_text(DUMMY_SECRETS.get(key, f"{DUMMY_SECRET}-{n}") + "\n")
            return f'{key} = "{f}"'
        rewritten = re.sub(r'^(\w+_file) = "([^"]*)"', to_temp, text, flags=re.M)
        cfg = Path(tmp) / "livegate.toml"
        cfg.write_text(rewritten)
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for c in r.containers():
            for e in c.get("env", []):
                if e["name"].startswith("LIVEGATE_") and "value" in e:
                    run_env[e["name"]] = e["value"]
        run_env.update(env or {})
        res = subprocess.run([str(LIVEGATE_BIN), "check-config", "--config", str(cfg)],
                             env=run_env, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        return [f"livegate check-config exit {res.returncode}: {res.stderr.strip()}"]
    return []


def check_config_wired(r: Rendered) -> list[str]:
    """Every key under .Values.config reaches the rendered TOML unchanged
    (a key the template forgot would be silently ignored)."""
    p = []
    cfg = r.config()
    vc = r.values["config"]
    for section, table in vc.items():
        if section == "tenants":
            continue
        for key, want in table.items():
            got = cfg.get(section, {}).get(key, "<missing>")
            if section == "ratelimit" and key == "replicas":
                continue
            if want is None:
                continue
            if isinstance(want, float) or isinstance(got, float):
                ok = isinstance(got, (int, float)) and math.isclose(got, want)
            else:
                ok = got == want and type(got) is type(want)
            if not ok:
                p.append(f"config.{section}.{key}: values {want!r}, rendered {got!r}")
    want_t = [{k: v for k, v in t.items() if v not in (None, [], {})} for t in vc.get("tenants", [])]
    got_t = [{k: v for k, v in t.items() if v not in (None, [], {})} for t in cfg.get("tenants", [])]
    for t in got_t:
        for k in t.get("keys", []):
            if "expires_at" in k and not isinstance(k["expires_at"], str):
                k["expires_at"] = k["expires_at"].isoformat().replace("+00:00", "Z")
    if want_t != got_t:
        p.append(f"tenants: values {want_t}, rendered {got_t}")
    rl = cfg.get("ratelimit", {}).get("replicas")
    want_rl = vc["ratelimit"].get("replicas") or (
        r.values["autoscaling"]["minReplicas"] if r.values["autoscaling"]["enabled"] else r.values["replicaCount"])
    if rl != want_rl:
        p.append(f"ratelimit.replicas is {rl}, expected {want_rl}")
    return p


def audit_sinks(values: dict) -> list[str]:
    """config.audit.sink as a list, whether one name or a list."""
    sink = values["config"]["audit"]["sink"]
    return [sink] if isinstance(sink, str) else list(sink)


def check_audit_volume(r: Rendered) -> list[str]:
    """The audit volume is mounted, writable, at the directory of
    config.audit.path exactly when the sink is or lists "file" (the root
    filesystem is read-only); it is not there otherwise."""
    p = []
    mounts = [m for c in r.containers() for m in c.get("volumeMounts", []) if m["name"] == "audit"]
    volumes = [v for v in r.pod()["spec"].get("volumes", []) if v["name"] == "audit"]
    if "file" in audit_sinks(r.values):
        path = r.values["config"]["audit"]["path"]
        if len(mounts) != 1 or len(volumes) != 1:
            return [f"audit sink {audit_sinks(r.values)}: {len(mounts)} audit mounts, {len(volumes)} audit volumes"]
        if mounts[0]["mountPath"] != os.path.dirname(path):
            p.append(f"audit volume mounted at {mounts[0]['mountPath']}, not the directory of {path}")
        if mounts[0].get("readOnly", False):
            p.append("audit volume mounted read-only")
        if r.config()["audit"].get("path") != path:
            p.append(f"rendered audit.path {r.config()['audit'].get('path')!r}, values {path!r}")
    elif mounts or volumes:
        p.append(f"audit sink {audit_sinks(r.values)} has no file, but an audit volume is mounted")
    return p


# Sizing (values.yaml `sizing`): the chart's rule written again here, with
# the test's own exact reading of Kubernetes quantities, to check what the
# chart renders and refuses.

QUANTITY = re.compile(r"^([0-9]*)(?:\.([0-9]*))?(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][0-9]+)?$")
QUANTITY_SUFFIX = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
                   "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
                   "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
MIB = 2**20
# livegate's own default server.inflight_body_budget_bytes, and the most
# blocking threads it accepts (MAX_BLOCKING_THREADS).
DEFAULT_BODY_BUDGET = 256 * MIB
MAX_BLOCKING_THREADS = 512


def quantity(q) -> Fraction:
    """A Kubernetes quantity ("512Mi", "1.5", "500m", "4.7e8", 536870912), exactly."""
    if isinstance(q, int):
        return Fraction(q)
    s = str(q).strip()
    m = QUANTITY.match(s)
    if not m or not re.match(r"\.?[0-9]", s):
        raise ValueError(f"not a quantity: {q!r}")
    whole, frac, suffix = m.group(1) or "0", m.group(2) or "", m.group(3) or ""
    number = int(whole) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    if len(suffix) > 1 and suffix[0] in "eE" and suffix[1:].isdigit():
        return number * 10 ** int(suffix[1:])
    return number * QUANTITY_SUFFIX[suffix]


def mib(n: int) -> str:
    """Bytes as the chart writes them in its messages."""
    return f"{n // MIB} MiB" if n % MIB == 0 else f"{n / MIB:.1f} MiB"


def expected_sizing(values: dict, limits: dict) -> dict:
    """Decode slots and the memory livegate may use, from the merged values
    and the container's rendered resources.limits."""
    server, sizing = values["config"]["server"], values["sizing"]
    explicit = server.get("blocking_threads")
    if explicit is not None:
        slots, source = int(explicit), "config.server.blocking_threads"
    elif limits.get("cpu") is not None:
        millis = math.ceil(quantity(limits["cpu"]) * 1000)  # Kubernetes keeps millicores
        slots = min(MAX_BLOCKING_THREADS, max(2, math.ceil(Fraction(2 * millis, 1000))))
        source = "resources.limits.cpu"
    else:
        slots, source = int(sizing["defaultBlockingThreads"]), "sizing.defaultBlockingThreads"
    budget = int(server.get("inflight_body_budget_bytes") or DEFAULT_BODY_BUDGET)
    peak, baseline = int(sizing["fingerprintPeakBytes"]), int(sizing["baselineBytes"])
    need = budget + slots * peak + baseline
    memory = limits.get("memory")
    if isinstance(memory, float) and memory.is_integer():
        memory = int(memory)
    return {"slots": slots, "source": source, "need": need, "memory": memory,
            "limit": None if memory is None else math.ceil(quantity(memory)),
            "terms": f"inflight_body_budget_bytes {mib(budget)} + {slots} decode slots × {mib(peak)} + {mib(baseline)} baseline"}


def too_small_message(values: dict) -> str:
    """The start of the message a too-small memory limit fails rendering with."""
    merged = merge_values(values)
    want = expected_sizing(merged, merged["resources"].get("limits") or {})
    return f"resources.limits.memory {want['memory']} is below the {mib(want['need'])} livegate may use: {want['terms']}"


def merge_values(values: dict, chart_dir: Path = CHART) -> dict:
    with helm_python.Chart.load(str(chart_dir)) as ch:
        return ch.merge_values(values)


def check_sizing(r: Rendered) -> list[str]:
    """server.blocking_threads is a number, the one the rule gives; the
    container's memory limit (as rendered) holds what livegate may use;
    NOTES names the sum, and warns when there is no memory limit."""
    p = []
    (c,) = [c for c in r.pod()["spec"]["containers"] if c["name"] == "livegate"]
    want = expected_sizing(r.values, c.get("resources", {}).get("limits") or {})
    got = r.config().get("server", {}).get("blocking_threads")
    if type(got) is not int or got != want["slots"]:
        p.append(f"server.blocking_threads is {got!r}, expected {want['slots']} (from {want['source']})")
    if want["limit"] is not None and want["limit"] < want["need"]:
        p.append(f"resources.limits.memory {want['memory']} is below the {mib(want['need'])} livegate may use "
                 f"({want['terms']}), yet the chart rendered")
    if f"livegate may use {mib(want['need'])}: {want['terms']}" not in r.notes:
        p.append(f"NOTES does not name the {mib(want['need'])} livegate may use")
    warned = "WARNING: resources.limits.memory is not set" in r.notes
    if want["limit"] is None and not warned:
        p.append("no memory limit, and NOTES does not warn")
    if want["limit"] is not None and warned:
        p.append("NOTES warns of a missing memory limit, but there is one")
    return p


# The [protection] keys a tenant may override ([tenants.protection]).
TENANT_PROTECTION_KEYS = ("replay", "replay_window_hours", "replay_scope", "replay_max_distance",
                          "strip_metadata", "score_threshold", "review_band")


def check_dashboard(chart_dir: Path) -> list[str]:
    a = (REPO / "deploy" / "grafana" / "livegate-dashboard.json").read_bytes()
    b = (chart_dir / "dashboards" / "livegate.json").read_bytes()
    return [] if a == b else ["dashboards/livegate.json differs from deploy/grafana/livegate-dashboard.json"]


LITERAL_SECRET = [
    # (a placeholder such as redis://[user:password@]host is not a password)
    (re.compile(r"\b(rediss?|https?)://[^\s/@:\"'\[]*:[^\s/@\"'\]]+@"), "a URL with a password"),
    (re.compile(r"\bchangeme\b|\bhunter2\b", re.I), "a placeholder password"),
    (re.compile(r"\blvg_[a-z0-9]{12}_[A-Za-z0-9]{20,}"), "a tenant key"),
    (re.compile(r"\blvgadm_[0-9a-f]{8,}"), "an admin token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"^[ \t#]*(pepper|token|api_key|password)[ \t]*[:=][ \t]*['\"]?[^'\"\s{}]{6,}", re.M | re.I), "a secret value"),
]


def check_no_literal_secrets(root: Path) -> list[str]:
    p = []
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.suffix in (".png", ".tgz"):
            continue
        text = f.read_text(errors="replace")
        for pattern, what in LITERAL_SECRET:
            for m in pattern.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                p.append(f"{f.relative_to(root)}:{line}: {what}")
    return p


# --------------------------------------------------------------------------
# Kubernetes API schemas (kubernetes-validate) and checkov's Kubernetes checks

# The chart's kubeVersion floor (Chart.yaml) and the newest release whose
# schemas kubernetes-validate bundles. Strict: an unknown field fails too.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
# Custom resources are not in the Kubernetes API schemas; check_service_monitor
# checks the ServiceMonitor.
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def check_kubernetes_schemas(r: Rendered, version: str) -> list[str]:
    problems = []
    for o in r.objects:
        what = f"{o.get('kind')} {o.get('metadata', {}).get('name')}"
        if (o.get("apiVersion"), o.get("kind")) in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            at = "/".join(str(p) for p in e.path)
            problems.append(f"{what}: not valid for Kubernetes {version} at {at}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{what}: {o.get('apiVersion')} is not served by Kubernetes {version}")
    return problems


# Every checkov check the chart skips, each only while the values make it
# apply (checkov.io/skipN annotations on the Deployment, reason included).
CHECKOV_SKIPS = {
    "CKV_K8S_11",  # CPU limit: none by default (CFS throttling adds latency)
    "CKV_K8S_43",  # image by digest: only when image.digest is set
    "CKV_K8S_15",  # imagePullPolicy Always: IfNotPresent for tags that do not move
    "CKV_K8S_35",  # secret as env var: OTEL_EXPORTER_OTLP_HEADERS has no file form
}
CHECKOV = Path(os.environ.get("CHECKOV", Path(sys.executable).parent / "checkov"))


def checkov_scan(rendered: dict[str, Rendered]) -> dict[str, dict]:
    """One checkov run (Kubernetes framework, offline) over each rendering's
    manifests: {name: {"passed": n, "failed": [(id, resource)],
    "skipped": [(id, reason)], "parsing_errors": [file]}}."""
    with tempfile.TemporaryDirectory(prefix="livegate-checkov-") as d:
        for name, r in rendered.items():
            (Path(d) / name).mkdir()
            (Path(d) / name / "manifests.yaml").write_text(yaml.safe_dump_all(r.objects))
        run = subprocess.run([str(CHECKOV), "-d", d, "--framework", "kubernetes", "--skip-download",
                              "--output", "json", "--compact"],
                             cwd=d, capture_output=True, text=True, timeout=600)
    if run.returncode not in (0, 1) or not run.stdout.strip():
        raise AssertionError(f"checkov failed ({run.returncode}): {run.stderr[-2000:]}")
    reports = json.loads(run.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    out = {name: {"passed": 0, "failed": [], "skipped": [], "parsing_errors": []} for name in rendered}

    def variant(file_path: str) -> dict:
        return out[Path(file_path).parts[1]]

    for report in reports:
        if report.get("check_type") != "kubernetes":
            continue
        results = report["results"]
        for c in results.get("passed_checks", []):
            variant(c["file_path"])["passed"] += 1
        for c in results.get("failed_checks", []):
            variant(c["file_path"])["failed"].append((c["check_id"], c["resource"]))
        for c in results.get("skipped_checks", []):
            variant(c["file_path"])["skipped"].append((c["check_id"], c["check_result"].get("suppress_comment", "")))
        for f in results.get("parsing_errors", []):
            variant(f)["parsing_errors"].append(f)
    return out


def check_checkov(result: dict) -> list[str]:
    problems = [f"checkov {cid} fails for {res}" for cid, res in result["failed"]]
    problems += [f"checkov could not parse {f}" for f in result["parsing_errors"]]
    for cid, reason in result["skipped"]:
        if cid not in CHECKOV_SKIPS:
            problems.append(f"checkov {cid} skipped but not a listed skip (CHECKOV_SKIPS)")
        if len(reason.strip()) < 20:
            problems.append(f"checkov {cid} skipped without a reason")
    if result["passed"] < 50:
        problems.append(f"checkov ran only {result['passed']} passing checks")
    return problems


def merge_files(base: dict, over: dict) -> dict:
    """Two values files merged as `helm -f base -f over` does."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge_files(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def object_schemas(node, path="#"):
    """Every (path, schema) of type object in a schema."""
    if isinstance(node, dict):
        t = node.get("type")
        if t == "object" or (isinstance(t, list) and "object" in t):
            yield path, node
        for k, v in node.items():
            yield from object_schemas(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from object_schemas(v, f"{path}/{i}")


# --------------------------------------------------------------------------
# The shipped chart passes every check.


class ChartTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rendered = {name: render(make()) for name, make in VARIANTS.items()}

    def each(self, check):
        for name, r in self.rendered.items():
            with self.subTest(values=name):
                self.assertEqual(check(r), [])

    def test_image_and_benchmark_commit_arenas_lazily(self):
        # The measured memory setting (README, "The allocator") ships in the
        # image, and the benchmark measures what ships.
        self.assertRegex((REPO / "deploy/docker/Dockerfile").read_text(),
                         r"(?m)^ENV MIMALLOC_ARENA_EAGER_COMMIT=0$")
        self.assertIn("env MIMALLOC_ARENA_EAGER_COMMIT=0 ", (REPO / "bench/compare.sh").read_text())

    def test_lint_strict(self):
        # Helm's only remark is "icon is recommended" (severity 1, info): no icon ships.
        for name, make in VARIANTS.items():
            with self.subTest(values=name):
                self.assertEqual(check_lint(CHART, make()), [])

    def test_schema_accepts_values_files(self):
        self.assertEqual(check_schema(CHART, load_yaml(CHART / "values.yaml")), [])
        self.assertEqual(check_schema(CHART, production_values()), [])
        self.assertEqual(check_schema(CHART, everything_values()), [])

    def test_schema_closed_at_every_level(self):
        # Every object level rejects unknown keys; maps (labels, annotations,
        # selectors, resource attributes) take any key but string values only.
        schema = json.loads((CHART / "values.schema.json").read_text())
        for path, node in object_schemas(schema):
            ap = node.get("additionalProperties")
            with self.subTest(path=path):
                self.assertTrue(ap is False or ap == {"type": "string"}, f"{path}: additionalProperties {ap!r}")

    def test_values_paths_exist(self):
        self.assertEqual(check_values_paths(CHART), [])
        self.assertGreater(len(template_values_paths(CHART)), 50)

    def test_security(self):
        self.each(check_security)

    def test_secrets_by_reference_only(self):
        self.each(check_secrets)

    def test_probes(self):
        self.each(check_probes)

    def test_termination_grace(self):
        self.each(check_grace)
        self.assertEqual(self.rendered["default"].pod()["spec"]["terminationGracePeriodSeconds"],
                         math.ceil((5000 + 10000) / 1000) + 10 + 5)

    def test_service_monitor(self):
        self.each(check_service_monitor)
        self.assertEqual(len(self.rendered["production"].kind("ServiceMonitor")), 1)

    def test_network_policy(self):
        self.each(check_network_policy)

    def test_config_accepted_by_livegate(self):
        self.each(check_config)

    def test_config_wired(self):
        self.each(check_config_wired)

    def test_audit_volume(self):
        self.each(check_audit_volume)

    def test_dashboard_identical(self):
        self.assertEqual(check_dashboard(CHART), [])
        (cm,) = [c for c in self.rendered["production"].kind("ConfigMap")
                 if c["metadata"]["name"].endswith("-dashboard")]
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(json.loads(cm["data"]["livegate.json"]),
                         json.loads((REPO / "deploy/grafana/livegate-dashboard.json").read_text()))

    def test_kubernetes_api_schemas(self):
        for version in KUBERNETES_VERSIONS:
            for name, r in self.rendered.items():
                with self.subTest(values=name, kubernetes=version):
                    self.assertEqual(check_kubernetes_schemas(r, version), [])

    def test_kubernetes_versions_include_the_charts_floor(self):
        floor = re.fullmatch(r">=(\d+\.\d+)\.\d+(-0)?", load_yaml(CHART / "Chart.yaml")["kubeVersion"])
        self.assertIsNotNone(floor)
        self.assertTrue(KUBERNETES_VERSIONS[0].startswith(floor.group(1) + "."))
        self.assertEqual(len(set(v.rsplit(".", 1)[0] for v in KUBERNETES_VERSIONS)), 2)

    def test_all_on_values_turn_every_object_on(self):
        kinds = sorted(o["kind"] for o in self.rendered["all-on"].objects)
        self.assertEqual(kinds, ["ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy",
                                 "PodDisruptionBudget", "Service", "Service", "ServiceAccount", "ServiceMonitor"])

    def test_checkov(self):
        report = checkov_scan(self.rendered)
        for name in self.rendered:
            with self.subTest(values=name):
                self.assertEqual(check_checkov(report[name]), [])
        skipped = {name: {cid for cid, _ in report[name]["skipped"]} for name in report}
        # A skip is rendered only while it applies: the all-on values set a
        # CPU limit and a digest; only they and everything set OTLP headers.
        self.assertEqual(skipped["default"], {"CKV_K8S_11", "CKV_K8S_43", "CKV_K8S_15"})
        self.assertEqual(skipped["production"], {"CKV_K8S_11", "CKV_K8S_43", "CKV_K8S_15"})
        self.assertEqual(skipped["audit-sinks"], {"CKV_K8S_11", "CKV_K8S_43", "CKV_K8S_15"})
        self.assertEqual(skipped["everything"], {"CKV_K8S_11", "CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35"})
        self.assertEqual(skipped["all-on"], {"CKV_K8S_15", "CKV_K8S_35"})

    def test_checkov_skips_follow_values(self):
        r = render({"image": {"digest": "sha256:" + "1" * 64, "pullPolicy": "Always"},
                    "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}})
        self.assertNotIn("annotations", r.deployment()["metadata"])
        annotations = self.rendered["everything"].deployment()["metadata"]["annotations"]
        self.assertEqual(sorted(v.split("=", 1)[0] for v in annotations.values()), sorted(CHECKOV_SKIPS))

    def test_render_command(self):
        # tests/helm/run.sh --render: the manifests as test_chart renders them.
        run = subprocess.run([sys.executable, str(REPO / "tests/helm/render.py"),
                              str(CHART / "values-production.yaml"), str(REPO / "tests/helm/values-all-on.yaml")],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, run.stderr)
        objects = [o for o in yaml.safe_load_all(run.stdout) if o]
        expected = render(merge_files(production_values(), all_on_values()))
        self.assertEqual(objects, expected.objects)
        self.assertIn("# Source: livegate/templates/deployment.yaml", run.stdout)
        self.assertIn("livegate-ops:9090", run.stderr)  # NOTES
        bad = subprocess.run([sys.executable, str(REPO / "tests/helm/render.py"), "/dev/stdin"],
                             input="bogus: 1\n", capture_output=True, text=True, timeout=120)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("bogus", bad.stderr)

    def test_admin_tokens_and_metrics_token(self):
        # Scoped admin tokens and the /metrics token, from Secrets by
        # reference, mounted as files and wired to token_file and
        # metrics_token_file; livegate check-config accepts the result.
        values = merge_files(production_values(), {
            "admin": {"tokens": [
                {"name": "support", "scopes": ["read"], "existingSecret": "livegate-admin-support", "key": "token"},
                {"name": "onboarding-keys", "scopes": ["read", "keys"], "tenants": ["onboarding"],
                 "existingSecret": "livegate-admin-keys", "key": "t"}]},
            "ops": {"metricsToken": {"existingSecret": "livegate-metrics", "key": "token"}}})
        self.assertEqual(check_schema(CHART, values), [])
        r = render(values)
        self.assertEqual(check_secrets(r), [])
        self.assertEqual(check_config(r), [])
        for version in KUBERNETES_VERSIONS:
            self.assertEqual(check_kubernetes_schemas(r, version), [])
        cfg = r.config()
        self.assertEqual(cfg["ops"]["metrics_token_file"], "/run/secrets/livegate/metrics-token")
        self.assertEqual(cfg["admin"]["token_file"], "/run/secrets/livegate/admin-token")
        self.assertEqual(cfg["admin"]["tokens"], [
            {"name": "support", "scopes": ["read"], "token_file": "/run/secrets/livegate/admin-token-support"},
            {"name": "onboarding-keys", "scopes": ["read", "keys"], "tenants": ["onboarding"],
             "token_file": "/run/secrets/livegate/admin-token-onboarding-keys"}])
        (sm,) = r.kind("ServiceMonitor")
        self.assertEqual(sm["spec"]["endpoints"][0]["authorization"],
                         {"type": "Bearer", "credentials": {"name": "livegate-metrics", "key": "token"}})
        self.assertNotIn("authorization", self.rendered["production"].kind("ServiceMonitor")[0]["spec"]["endpoints"][0])
        # A change of the referenced Secrets rolls the pods.
        before = self.rendered["production"].pod()["metadata"]["annotations"]["checksum/secret-refs"]
        self.assertNotEqual(r.pod()["metadata"]["annotations"]["checksum/secret-refs"], before)
        # Without them: neither key rendered (the shipped variants).
        for name, rendered in self.rendered.items():
            with self.subTest(values=name):
                self.assertNotIn("tokens", rendered.config().get("admin", {}))
                self.assertNotIn("metrics_token_file", rendered.config()["ops"])

    def test_admin_tokens_refused(self):
        token = {"name": "support", "scopes": ["read"], "existingSecret": "livegate-admin-support", "key": "token"}
        for bad in [{**token, "scopes": ["write"]}, {**token, "scopes": []}, {**token, "name": "Support!"},
                    {k: v for k, v in token.items() if k != "existingSecret"}, {**token, "token": "inline-secret"}]:
            with self.subTest(token=bad):
                self.assertNotEqual(check_schema(CHART, {"admin": {"tokens": [bad]}}), [])
        self.assertNotEqual(check_schema(CHART, {"ops": {"metricsToken": {"existingSecret": "m", "key": "t", "value": "x"}}}), [])
        with self.assertRaisesRegex(Exception, 'admin.tokens: the name "support" is used twice'):
            render({"admin": {"tokens": [token, {**token, "scopes": ["keys"]}]}})

    def test_no_default_secret_under_deploy(self):
        self.assertEqual(check_no_literal_secrets(REPO / "deploy"), [])

    def test_production_shape(self):
        r = self.rendered["production"]
        self.assertEqual(len(r.kind("HorizontalPodAutoscaler")), 1)
        self.assertEqual(len(r.kind("PodDisruptionBudget")), 1)
        self.assertNotIn("replicas", r.deployment()["spec"])
        cfg = r.config()
        self.assertEqual(cfg["vendor"]["base_url"], "https://liveness.vendor.example")
        self.assertEqual(cfg["ops"]["listen"], "0.0.0.0:9090")
        env = {e["name"]: e for e in r.containers()[0]["env"]}
        self.assertEqual(env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"], "http://otel-collector.observability.svc:4318")
        self.assertEqual(env["OTEL_TRACES_SAMPLER"]["value"], "parentbased_traceidratio")
        self.assertIn("deployment.environment=production", env["OTEL_RESOURCE_ATTRIBUTES"]["value"])
        e = {e["name"]: e for e in self.rendered["everything"].containers()[0]["env"]}
        self.assertEqual(e["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"],
                         {"name": "livegate-otlp", "key": "headers"})
        # The audit file's volume: writable, one directory per pod on the claim.
        (c,) = self.rendered["everything"].containers()
        (m,) = [m for m in c["volumeMounts"] if m["name"] == "audit"]
        self.assertEqual((m["mountPath"], m.get("subPathExpr")), ("/var/log/livegate", "$(POD_NAME)"))
        self.assertFalse(m.get("readOnly", False))
        # Public Service: only http; ops on its own ClusterIP Service.
        svcs = {s["metadata"]["name"]: s for s in r.kind("Service")}
        self.assertEqual([p["name"] for p in svcs["livegate"]["spec"]["ports"]], ["http"])
        self.assertEqual(svcs["livegate-ops"]["spec"]["type"], "ClusterIP")

    def test_protection_default(self):
        """[protection] is rendered with livegate's defaults; the null
        score_threshold is left out (no decision), not written."""
        r = self.rendered["default"]
        self.assertIn("\n[protection]\n", r.config_text())
        self.assertNotIn("score_threshold", r.config_text())
        self.assertEqual(r.config()["protection"], {
            "replay": "flag", "replay_window_hours": 24, "replay_scope": "tenant", "replay_max_distance": 7,
            "strip_metadata": True, "review_band": 0, "idempotency_retention_hours": 24,
            "idempotency_wait_ms": 30000, "max_pixels": 50000000, "slot_wait_ms": 250,
            "fingerprint_deadline_ms": 1000})
        # A tenant without protection gets no [tenants.protection] table.
        self.assertNotIn("[tenants.protection]", self.rendered["production"].config_text())

    def test_protection_overrides(self):
        """Deployment and tenant values reach [protection] and
        [tenants.protection] (livegate accepting them: test_config_accepted_by_livegate)."""
        cfg = self.rendered["protection"].config()
        p = cfg["protection"]
        self.assertEqual((p["replay"], p["replay_scope"], p["score_threshold"], p["review_band"], p["strip_metadata"]),
                         ("reject", "global", 80, 10, False))
        self.assertEqual(cfg["tenants"][0]["id"], "onboarding")
        self.assertEqual(cfg["tenants"][0]["protection"], {"replay": "off"})
        self.assertEqual(cfg["tenants"][1]["protection"]["score_threshold"], 90)
        self.assertIn('\n[tenants.protection]\nreplay = "off"\n', self.rendered["protection"].config_text())
        # Only the override is rendered for a tenant: the rest is inherited at run time.
        r = render({"config": {"vendor": {"base_url": "https://v.example"}, "tenants": [
                        {"id": "acme", "protection": {"replay": "off"}}]},
                    "secrets": {"vendorApiKey": {"existingSecret": "v", "key": "k"},
                                "pepper": {"existingSecret": "p", "key": "k"}},
                    "networkPolicy": {"enabled": False}})
        self.assertEqual(r.config()["tenants"], [{"id": "acme", "protection": {"replay": "off"}}])
        self.assertEqual(check_config(r), [])

    def test_schema_protection_bounds(self):
        """The bounds livegate accepts (ProtectionPolicy::problems) are accepted."""
        for prot in ({"replay": "off", "replay_max_distance": 0, "score_threshold": 0, "review_band": 100},
                     {"replay_max_distance": 7, "score_threshold": 100, "replay_window_hours": 8760,
                      "idempotency_retention_hours": 8760, "idempotency_wait_ms": 0, "max_pixels": 1},
                     {"score_threshold": None, "replay_scope": "global"}):
            with self.subTest(protection=prot):
                v = {"config": {"protection": prot, "tenants": [{"id": "acme", "protection": {
                    k: x for k, x in prot.items() if k in TENANT_PROTECTION_KEYS and x is not None}}]}}
                self.assertEqual(check_schema(CHART, v), [])
        schema = json.loads((CHART / "values.schema.json").read_text())
        tenant = schema_at(schema, schema, ("config", "tenants"))["items"]["properties"]["protection"]
        tenant = schema["definitions"][tenant["$ref"].split("/")[-1]]
        self.assertEqual(sorted(tenant["properties"]), sorted(TENANT_PROTECTION_KEYS))

    def test_dashboard_protection_row(self):
        """The dashboard's "Liveness-aware protection" row graphs each
        protection counter; panel ids are unique and panels do not overlap."""
        d = json.loads((REPO / "deploy/grafana/livegate-dashboard.json").read_text())
        panels = d["panels"]
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)))
        cells = {}
        for p in panels:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, f"{p['title']} overlaps {cells.get((x, y))}")
                    cells[(x, y)] = p["title"]
        (row,) = [p for p in panels if p["type"] == "row" and p["title"] == "Liveness-aware protection"]
        below = [p for p in panels if p["gridPos"]["y"] > row["gridPos"]["y"]]
        exprs = " ".join(t["expr"] for p in below for t in p["targets"])
        for metric, by in (("livegate_replays_total", "kind, action"), ("livegate_decisions_total", "decision"),
                           ("livegate_metadata_removed_total", "tenant"),
                           ("livegate_idempotent_replays_total", "tenant"),
                           ("livegate_protection_store_errors_total", "tenant")):
            with self.subTest(metric=metric):
                self.assertIn(f'sum by ({by}) (rate({metric}{{tenant=~"$tenant"}}[$__rate_interval]))', exprs)
        for p in below:
            self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"})

    def test_sizing(self):
        """Every variant: blocking_threads is the rule's number and the
        memory limit holds what livegate may use (check_sizing)."""
        self.each(check_sizing)

    def test_sizing_defaults_fit(self):
        """values.yaml and values-production.yaml set no CPU limit: 4 decode
        slots, 256 + 4 x 32 + 64 = 448 MiB, under 512Mi and 768Mi."""
        defaults = load_yaml(CHART / "values.yaml")["sizing"]
        self.assertEqual(defaults, {"defaultBlockingThreads": 4, "fingerprintPeakBytes": 32 * MIB,
                                    "baselineBytes": 64 * MIB})
        for name, limit in (("default", "512Mi"), ("production", "768Mi")):
            with self.subTest(values=name):
                r = self.rendered[name]
                self.assertEqual(r.config()["server"]["blocking_threads"], 4)
                self.assertEqual(r.containers()[0]["resources"]["limits"], {"memory": limit})
                self.assertIn("Sizing: 4 decode slots (server.blocking_threads, from "
                              "sizing.defaultBlockingThreads, no CPU limit);\nlivegate may use 448 MiB: "
                              "inflight_body_budget_bytes 256 MiB + 4 decode slots × 32 MiB + 64 MiB baseline.",
                              r.notes)
                self.assertNotIn("WARNING: resources.limits.memory", r.notes)

    def test_sizing_blocking_threads_derived(self):
        """Two per CPU of the CPU limit, rounded up, at least 2, at most 512;
        an explicit value wins; no CPU limit: sizing.defaultBlockingThreads.
        Each rendered config is accepted by livegate."""
        big = {"memory": "32Gi"}
        cases = [
            ({"resources": {"limits": {"cpu": "1500m", **big}}}, 3),
            ({"resources": {"limits": {"cpu": "500m", **big}}}, 2),
            ({"resources": {"limits": {"cpu": "100m", **big}}}, 2),
            ({"resources": {"limits": {"cpu": "1", **big}}}, 2),
            ({"resources": {"limits": {"cpu": "1.5", **big}}}, 3),
            ({"resources": {"limits": {"cpu": "1.25", **big}}}, 3),
            ({"resources": {"limits": {"cpu": "2", **big}}}, 4),
            ({"resources": {"limits": {"cpu": 2, **big}}}, 4),
            ({"resources": {"limits": {"cpu": "3001m", **big}}}, 7),
            ({"resources": {"limits": {"cpu": "0.0001", **big}}}, 2),
            ({"resources": {"limits": {"cpu": "2e0", **big}}}, 4),
            ({"resources": {"limits": {"cpu": "300", **big}}}, 512),
            # explicit wins, above and below the CPU rule, and with no CPU limit
            ({"config": {"server": {"blocking_threads": 6}}, "resources": {"limits": {"cpu": "1", **big}}}, 6),
            ({"config": {"server": {"blocking_threads": 1}}, "resources": {"limits": {"cpu": "8", **big}}}, 1),
            ({"config": {"server": {"blocking_threads": 3}}}, 3),
            # no CPU limit
            ({}, 4),
            ({"resources": {"limits": {"memory": "1Gi"}}}, 4),
            ({"sizing": {"defaultBlockingThreads": 8}, "resources": {"limits": big}}, 8),
        ]
        for values, slots in cases:
            with self.subTest(values=values):
                self.assertEqual(check_schema(CHART, values), [])
                r = render(values)
                self.assertEqual(r.config()["server"]["blocking_threads"], slots)
                self.assertEqual(check_sizing(r), [])
                self.assertEqual(check_config(r), [])

    def test_sizing_memory_limit_too_small_fails(self):
        """A memory limit below body budget + slots x peak + baseline fails
        rendering with the sum and each term named."""
        cases = {
            "400Mi": {"resources": {"limits": {"memory": "400Mi"}}},
            "1 KiB short": {"resources": {"limits": {"memory": "458751Ki"}}},
            "megabytes": {"resources": {"limits": {"memory": "460M"}}},
            "millibytes, the classic typo": {"resources": {"limits": {"memory": "512m"}}},
            "plain bytes": {"resources": {"limits": {"memory": 400000000}}},
            "exponent": {"resources": {"limits": {"memory": "4.5e8"}}},
            "CPU limit 4: 8 slots": {"resources": {"limits": {"cpu": "4"}}},
            "explicit 16 slots": {"config": {"server": {"blocking_threads": 16}}},
            "bigger body budget": {"config": {"server": {"inflight_body_budget_bytes": 512 * MIB}}},
            "bigger peak": {"sizing": {"fingerprintPeakBytes": 64 * MIB}},
            "production, 8 CPUs": {**production_values(), "resources": {"limits": {"cpu": "8", "memory": "768Mi"}}},
        }
        for name, values in cases.items():
            with self.subTest(case=name):
                want = too_small_message(values)
                with self.assertRaises(helm_python.HelmError) as cm:
                    render(values)
                self.assertIn(want, str(cm.exception))
        self.assertIn("resources.limits.memory 400Mi is below the 448 MiB livegate may use: "
                      "inflight_body_budget_bytes 256 MiB + 4 decode slots × 32 MiB + 64 MiB baseline",
                      too_small_message(cases["400Mi"]))
        self.assertIn("576 MiB livegate may use: inflight_body_budget_bytes 256 MiB + 8 decode slots × 32 MiB",
                      too_small_message(cases["CPU limit 4: 8 slots"]))

    def test_sizing_memory_limit_forms(self):
        """Quantities in every form a limit is written in; exactly the sum
        is enough."""
        for memory in ("512Mi", "0.5Gi", "1Gi", "458752Ki", "0.4375Gi", "512M", "470000k", "4.7e8",
                       "536870912", 536870912, "1G", "1Ti", 2**40, "1099511627776"):
            with self.subTest(memory=memory):
                r = render({"resources": {"limits": {"memory": memory}}})
                self.assertEqual(check_sizing(r), [])

    def test_sizing_no_memory_limit(self):
        """No memory limit renders (nothing of its own to be OOM-killed by),
        and NOTES warns, naming what livegate may use."""
        r = render({"resources": {"limits": {"memory": None}}})
        self.assertNotIn("memory", r.containers()[0]["resources"].get("limits") or {})
        self.assertEqual(check_sizing(r), [])
        self.assertIn("WARNING: resources.limits.memory is not set, so the chart could not check it\n"
                      "against the 448 MiB above.", r.notes)
        r = render({"resources": {"limits": {"memory": None, "cpu": "3"}}})
        self.assertEqual(r.config()["server"]["blocking_threads"], 6)
        self.assertIn("against the 512 MiB above.", r.notes)

    def test_sizing_unreadable_quantity(self):
        """Strings the schema's pattern lets through but that are no quantity
        fail rendering by name, never size anything by guess."""
        for what, values in (("resources.limits.memory", {"resources": {"limits": {"memory": "1.2.3Mi"}}}),
                             ("resources.limits.cpu", {"resources": {"limits": {"cpu": "1..5"}}}),
                             ("resources.limits.cpu", {"resources": {"limits": {"cpu": "."}}})):
            with self.subTest(values=values):
                self.assertEqual(check_schema(CHART, values), [])
                with self.assertRaises(helm_python.HelmError) as cm:
                    render(values)
                self.assertIn(f"{what} ", str(cm.exception))
                self.assertIn("cannot be read as a Kubernetes quantity", str(cm.exception))

    def test_sizing_quantity_reader(self):
        """The test's own reader of quantities, on Kubernetes' examples."""
        for q, want in (("128974848", 128974848), ("129e6", 129000000), ("129M", 129000000),
                        ("123Mi", 123 * MIB), ("0.5Gi", 512 * MIB), ("500m", Fraction(1, 2)),
                        ("1.5", Fraction(3, 2)), (".5", Fraction(1, 2)), ("1E", 10**18), ("2Ei", 2**61)):
            with self.subTest(q=q):
                self.assertEqual(quantity(q), want)
        for q in ("", ".", "1.2.3", "1Mb", "-1"):
            with self.subTest(q=q), self.assertRaises(ValueError):
                quantity(q)

    def test_config_change_rolls_pods(self):
        a = render({})
        b = render({"config": {"log": {"level": "debug"}}})
        key = "checksum/config"
        self.assertNotEqual(a.pod()["metadata"]["annotations"][key], b.pod()["metadata"]["annotations"][key])

    def test_render_refuses_what_livegate_would(self):
        cases = {
            "grace below the minimum": {"terminationGracePeriodSeconds": 20},
            "vendor without its key": {"config": {"vendor": {"base_url": "https://v.example"}}},
            "tenants without a vendor": {"config": {"tenants": [{"id": "acme"}]},
                                         "secrets": {"pepper": {"existingSecret": "p", "key": "pepper"}}},
            "file sink without a path": {"config": {"audit": {"sink": "file"}}},
            "redis sink without redis": {"config": {"audit": {"sink": "redis"}}},
            "file in a sink list without a path": {"config": {"audit": {"sink": ["stdout", "file"]}}},
            "redis in a sink list without redis": {"config": {"audit": {"sink": ["redis", "stdout"]}}},
            "otlp sink without an endpoint": {"config": {"audit": {"sink": "otlp"}}},
            "vendor not in the NetworkPolicy": {
                "config": {"vendor": {"base_url": "https://v.example"}},
                "secrets": {"vendorApiKey": {"existingSecret": "v", "key": "k"},
                            "pepper": {"existingSecret": "p", "key": "k"}}},
            "ServiceMonitor Prometheus cannot reach": {"serviceMonitor": {"enabled": True}},
        }
        for name, values in cases.items():
            with self.subTest(case=name), self.assertRaises(helm_python.HelmError):
                render(values)

    def test_audit_sink_list(self):
        """A list of sinks renders as a TOML array of strings that livegate
        accepts; "file" in it mounts the audit volume, and "otlp" gets the
        collector's endpoint."""
        r = self.rendered["audit-sinks"]
        self.assertIn('\nsink = ["file","otlp"]\n', r.config_text())
        self.assertEqual(r.config()["audit"]["sink"], ["file", "otlp"])
        self.assertEqual(check_config(r), [])
        self.assertEqual(check_audit_volume(r), [])
        (m,) = [m for c in r.containers() for m in c.get("volumeMounts", []) if m["name"] == "audit"]
        self.assertEqual(m["mountPath"], "/var/log/livegate")
        (vol,) = [v for v in r.pod()["spec"]["volumes"] if v["name"] == "audit"]
        self.assertIn("emptyDir", vol)
        env = {e["name"]: e for e in r.containers()[0]["env"]}
        self.assertEqual(env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"], "http://otel-collector.observability.svc:4318")
        # Without "file", no audit volume; one name in a list is a list.
        v = production_values()
        v["config"]["audit"]["sink"] = ["redis", "otlp"]
        r = render(v)
        self.assertEqual(r.config()["audit"]["sink"], ["redis", "otlp"])
        self.assertEqual(check_config(r), [])
        self.assertEqual(check_audit_volume(r), [])
        self.assertFalse([m for c in r.containers() for m in c.get("volumeMounts", []) if m["name"] == "audit"])
        v["config"]["audit"] = {"sink": ["file"], "path": "/var/log/livegate/audit.jsonl"}
        r = render(v)
        self.assertEqual(r.config()["audit"]["sink"], ["file"])
        self.assertEqual(check_config(r), [])
        self.assertEqual(len([m for c in r.containers() for m in c.get("volumeMounts", []) if m["name"] == "audit"]), 1)

    def test_audit_otlp_needs_the_endpoint(self):
        for sink in ("otlp", ["stdout", "otlp"]):
            with self.subTest(sink=sink), \
                    self.assertRaisesRegex(helm_python.HelmError, r'config.audit.sink includes \\?"otlp\\?": set otel.endpoint'):
                render({"config": {"audit": {"sink": sink}}})
        r = render({"config": {"audit": {"sink": "otlp"}}, "otel": {"endpoint": "http://collector:4318"},
                    "networkPolicy": {"enabled": False}})
        self.assertEqual(r.config()["audit"]["sink"], "otlp")
        self.assertEqual(check_config(r), [])

    def test_schema_audit_sink(self):
        for sink in ("stdout", "file", "redis", "otlp", ["otlp"], ["file", "otlp"], ["stdout", "file", "redis", "otlp"]):
            with self.subTest(sink=sink):
                self.assertEqual(check_schema(CHART, {"config": {"audit": {"sink": sink}}}), [])
        for sink in ("syslog", "", "FILE", [], ["file", "file"], ["file", "syslog"], ["file", None], [["file"]]):
            with self.subTest(sink=sink):
                p = check_schema(CHART, {"config": {"audit": {"sink": sink}}})
                self.assertTrue(any(x.startswith("helm:") for x in p), p)
                self.assertTrue(any(x.startswith("jsonschema:") for x in p), p)

    def test_values_defaults_are_livegates(self):
        """values.yaml's config equals livegate's own defaults (what
        check-config prints for an empty file), but log.format."""
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
            res = subprocess.run([str(LIVEGATE_BIN), "check-config", "--config", f.name],
                                 env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True)
        self.assertEqual(res.returncode, 0, res.stderr)
        effective = tomllib.loads(res.stdout)
        deliberate = {("log", "format"): "json"}
        for section, table in load_yaml(CHART / "values.yaml")["config"].items():
            if section == "tenants":
                continue
            for key, value in table.items():
                with self.subTest(key=f"{section}.{key}"):
                    if (section, key) in deliberate:
                        self.assertEqual(value, deliberate[(section, key)])
                        continue
                    have = effective.get(section, {}).get(key)
                    if value is None or (section, key) == ("ratelimit", "replicas"):
                        continue
                    if isinstance(value, float):
                        self.assertAlmostEqual(have, value, places=6)
                    else:
                        self.assertEqual(have, value)

    def test_docker_default_config(self):
        r = subprocess.run([str(LIVEGATE_BIN), "check-config", "--config", str(REPO / "deploy/docker/livegate.toml")],
                           env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_probes_answer_on_the_rendered_config(self):
        """The default rendered config, served by the real binary (listeners
        moved to free loopback ports): /livez and /readyz answer 200 on the
        public port and /metrics on ops; after SIGTERM /readyz is 503 while
        /livez still answers, then the process exits 0."""
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "livegate.toml"
            cfg.write_text(self.rendered["default"].config_text())
            env = {"PATH": os.environ.get("PATH", ""), "LIVEGATE_SERVER__LISTEN": "127.0.0.1:0",
                   "LIVEGATE_OPS__LISTEN": "127.0.0.1:0", "LIVEGATE_SERVER__SHUTDOWN_DELAY_MS": "1500",
                   "LIVEGATE_LOG__LEVEL": "warn"}
            out = open(Path(tmp) / "out", "w+")
            proc = subprocess.Popen([str(LIVEGATE_BIN), "serve", "--config", str(cfg)], env=env,
                                    stdout=out, stderr=subprocess.DEVNULL)
            try:
                public = ops = None
                for _ in range(200):
                    text = Path(tmp, "out").read_text()
                    public = re.search(r"^livegate listening on (\S+)", text, re.M)
                    ops = re.search(r"^livegate ops listening on (\S+)", text, re.M)
                    if public and ops:
                        break
                    time.sleep(0.05)
                self.assertTrue(public and ops, "livegate did not start")
                base, opsb = f"http://{public.group(1)}", f"http://{ops.group(1)}"

                def status(url):
                    try:
                        with urllib.request.urlopen(url, timeout=5) as resp:
                            return resp.status
                    except urllib.error.HTTPError as e:
                        return e.code

                self.assertEqual(status(base + "/livez"), 200)
                self.assertEqual(status(base + "/readyz"), 200)
                self.assertEqual(status(opsb + "/metrics"), 200)
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                self.assertEqual(status(base + "/readyz"), 503)
                self.assertEqual(status(base + "/livez"), 200)
                self.assertEqual(proc.wait(timeout=30), 0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                out.close()


# --------------------------------------------------------------------------
# Each check fails on a deliberately broken chart or values file.


class BrokenChartTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="livegate-chart-")
        self.addCleanup(self._tmp.cleanup)

    def chart_copy(self, edits: dict[str, list[tuple[str, str]]] | None = None) -> Path:
        """A copy of the chart with each (old, new) replacement made in its
        file; a replacement that does not apply fails the test."""
        dst = Path(self._tmp.name) / f"livegate-{len(os.listdir(self._tmp.name))}"
        shutil.copytree(CHART, dst)
        for rel, changes in (edits or {}).items():
            f = dst / rel
            text = f.read_text() if f.exists() else ""
            for old, new in changes:
                if old:
                    self.assertIn(old, text, f"{rel}: nothing to break")
                    text = text.replace(old, new, 1)
                else:
                    text += new
            f.write_text(text)
        return dst

    def broken(self, edits, values=None) -> Rendered:
        return render(values if values is not None else production_values(), self.chart_copy(edits))

    def assertFails(self, problems: list[str], *expected: str):
        self.assertTrue(problems, "the check found nothing wrong")
        for e in expected:
            self.assertTrue(any(e in p for p in problems), f"{e!r} not in {problems}")

    def test_security_read_only_root(self):
        r = self.broken({"templates/deployment.yaml": [("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")]})
        self.assertFails(check_security(r), "readOnlyRootFilesystem")

    def test_security_privilege_escalation_and_root(self):
        r = self.broken({"templates/deployment.yaml": [
            ("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"),
            ("runAsNonRoot: true\n            runAsUser: 65532", "runAsNonRoot: false\n            runAsUser: 0")]})
        self.assertFails(check_security(r), "allowPrivilegeEscalation", "runAsNonRoot", "root")

    def test_secrets_literal_env(self):
        r = self.broken({"templates/deployment.yaml": [(
            "          env:\n",
            "          env:\n            - name: LIVEGATE_ADMIN__TOKEN\n              value: literal-admin-token-value\n")]})
        self.assertFails(check_secrets(r), "LIVEGATE_ADMIN__TOKEN has a literal value")

    def test_secrets_secret_manifest_with_data(self):
        r = self.broken({"templates/secret.yaml": [("", (
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: livegate-defaults\n"
            "stringData:\n  pepper: {{ randAlphaNum 32 | quote }}\n"))]})
        self.assertFails(check_secrets(r), "Secret livegate-defaults rendered with data")

    def test_secrets_volume_not_an_existing_secret(self):
        r = self.broken({"templates/deployment.yaml": [("name: {{ $ref.existingSecret }}", "name: livegate-shared")]})
        self.assertFails(check_secrets(r), "not an existingSecret")

    def test_secrets_inline_in_config_and_unwired(self):
        r = self.broken({"templates/_config.tpl": [
            ('pepper_file = {{ printf "%s/pepper" $dir | toJson }}', 'pepper = "inline-pepper-in-the-configmap"')]})
        self.assertFails(check_secrets(r), "auth.pepper inline", "secrets.pepper is set but auth.pepper_file is not")

    def test_secrets_file_key_points_elsewhere(self):
        r = self.broken({"templates/_config.tpl": [('"%s/redis-url"', '"%s/redis"')]})
        self.assertFails(check_secrets(r), "redis.url_file = /run/secrets/livegate/redis is not where")

    def test_probes_missing_readiness(self):
        r = self.broken({"templates/deployment.yaml": [(
            "          readinessProbe:\n            httpGet:\n              path: /readyz\n              port: http\n"
            "            {{- toYaml .Values.probes.readiness | nindent 12 }}\n", "")]})
        self.assertFails(check_probes(r), "no readinessProbe")

    def test_probes_wrong_path_and_port(self):
        r = self.broken({"templates/deployment.yaml": [("path: /livez\n              port: http",
                                                         "path: /healthz\n              port: ops")]})
        self.assertFails(check_probes(r), "livenessProbe path is '/healthz'", "livenessProbe port is 'ops'")

    def test_grace_hard_coded_too_short(self):
        r = self.broken({"templates/deployment.yaml": [(
            'terminationGracePeriodSeconds: {{ include "livegate.terminationGraceSeconds" . }}',
            "terminationGracePeriodSeconds: 15")]})
        self.assertFails(check_grace(r), "terminationGracePeriodSeconds 15")

    def test_grace_formula_ignores_the_audit_flush(self):
        r = self.broken({"templates/_helpers.tpl": [("(div (add $ms 999) 1000) 10 (int64", "(div (add $ms 999) 1000) 0 (int64")]},
                        values={"terminationGraceMarginSeconds": 1})
        self.assertFails(check_grace(r), "leaves no margin")

    def test_service_monitor_path_and_port(self):
        r = self.broken({"templates/servicemonitor.yaml": [("- port: ops\n      path: /metrics", "- port: http\n      path: /stats")]})
        self.assertFails(check_service_monitor(r), "do not scrape port ops path /metrics")

    def test_service_monitor_selects_the_public_service(self):
        r = self.broken({"templates/servicemonitor.yaml": [("app.kubernetes.io/component: ops", "app.kubernetes.io/component: gateway")]})
        self.assertFails(check_service_monitor(r), "has no port ops")

    def test_network_policy_extra_egress(self):
        r = self.broken({"templates/networkpolicy.yaml": [(
            "  egress:\n", "  egress:\n    - to:\n        - ipBlock:\n            cidr: 0.0.0.0/0\n")]})
        self.assertFails(check_network_policy(r), "egress rules differ")

    def test_network_policy_ops_open(self):
        r = self.broken({"templates/networkpolicy.yaml": [(
            "    - ports:\n        - port: 9090\n          protocol: TCP\n      from:\n        {{- toYaml . | nindent 8 }}",
            "    - ports:\n        - port: 9090\n          protocol: TCP")]})
        self.assertFails(check_network_policy(r), "the ops port is open to everyone", "ingress rules differ")

    def test_network_policy_values_not_followed(self):
        r = self.broken({"templates/networkpolicy.yaml": [("{{- range $t.cidrs }}", "{{- range list \"0.0.0.0/0\" }}")]})
        self.assertFails(check_network_policy(r), "egress rules differ")

    def test_schema_unknown_key(self):
        for values in ({"replicas": 3}, {"config": {"server": {"listen_addr": "0.0.0.0:1"}}},
                       {"secrets": {"pepper": {"existingSecret": "p", "key": "pepper", "value": "inline"}}},
                       {"networkPolicy": {"egress": {"vendor": {"cidr": ["10.0.0.0/8"]}}}}):
            with self.subTest(values=values):
                p = check_schema(CHART, values)
                self.assertTrue(any(x.startswith("helm:") for x in p), p)
                self.assertTrue(any(x.startswith("jsonschema:") for x in p), p)

    def test_schema_wrong_type(self):
        for values in ({"replicaCount": "three"}, {"config": {"redis": {"timeout_ms": "50"}}},
                       {"config": {"redis": {"fail_mode": "sometimes"}}}, {"networkPolicy": {"enabled": "yes"}},
                       {"podLabels": {"team": 7}}):
            with self.subTest(values=values):
                p = check_schema(CHART, values)
                self.assertTrue(any(x.startswith("helm:") for x in p), p)
                self.assertTrue(any(x.startswith("jsonschema:") for x in p), p)

    def test_schema_protection(self):
        bad = {"replay maybe": {"replay": "maybe"}, "distance 8": {"replay_max_distance": 8},
               "threshold 101": {"score_threshold": 101}, "threshold -1": {"score_threshold": -1},
               "window 0": {"replay_window_hours": 0}, "window over a year": {"replay_window_hours": 8761},
               "retention 0": {"idempotency_retention_hours": 0}, "max_pixels 0": {"max_pixels": 0},
               "band 101": {"review_band": 101}, "scope": {"replay_scope": "everyone"},
               "strip as a string": {"strip_metadata": "yes"}, "unknown key": {"replay_mode": "flag"}}
        tenant_bad = {"tenant replay maybe": {"replay": "maybe"}, "tenant threshold 101": {"score_threshold": 101},
                      "tenant unknown key": {"replay_mode": "off"},
                      # deployment-wide only: livegate refuses them for a tenant
                      "tenant max_pixels": {"max_pixels": 1000},
                      "tenant idempotency": {"idempotency_retention_hours": 1},
                      # null would silently inherit; leave the key out instead
                      "tenant null threshold": {"score_threshold": None}}
        cases = {name: {"config": {"protection": prot}} for name, prot in bad.items()}
        cases.update({name: {"config": {"tenants": [{"id": "acme", "protection": prot}]}}
                      for name, prot in tenant_bad.items()})
        for name, values in cases.items():
            with self.subTest(case=name):
                p = check_schema(CHART, values)
                self.assertTrue(any(x.startswith("helm:") for x in p), p)
                self.assertTrue(any(x.startswith("jsonschema:") for x in p), p)

    def test_config_protection_section_dropped(self):
        r = self.broken({"templates/_config.tpl": [(
            '{{- include "livegate.tomlKeys" (dict "table" $c.protection "skip" list) }}', "")]},
            values=protection_values())
        self.assertFails(check_config_wired(r), "config.protection.replay: values 'reject', rendered '<missing>'")

    def test_config_tenant_protection_dropped(self):
        r = self.broken({"templates/_config.tpl": [("[tenants.protection]", "# [tenants.protection]")]},
                        values=protection_values())
        self.assertFails(check_config_wired(r), "tenants: values")
        self.assertFails(check_config(r), "check-config exit 2")

    def test_config_tenant_protection_deployment_key(self):
        # The deployment's table rendered for a tenant: livegate refuses its
        # deployment-wide keys there.
        r = self.broken({"templates/_config.tpl": [(
            '(dict "table" $t.protection "skip" list)', '(dict "table" $.Values.config.protection "skip" list)')]},
            values=protection_values())
        # (The first deployment-wide key in the rendered order is named.)
        self.assertFails(check_config(r), "check-config exit 2", "fingerprint_deadline_ms")

    def test_audit_volume_missing_for_a_sink_list(self):
        # The Deployment looks for "file" as the one sink only: a list that
        # holds it gets no writable volume.
        r = self.broken({"templates/deployment.yaml": [(
            'has "file" (include "livegate.auditSinks" . | fromJsonArray)', 'has "file" (list $audit.sink)')]},
            values=audit_sinks_values())
        self.assertFails(check_audit_volume(r), "0 audit mounts, 0 audit volumes")
        # The helper wraps a list in another list: no volume, and a list
        # with "file" but no path is no longer refused.
        d = self.chart_copy({"templates/_helpers.tpl": [('{{- if kindIs "slice" $sink -}}', '{{- if kindIs "map" $sink -}}')]})
        self.assertFails(check_audit_volume(render(audit_sinks_values(), d)), "0 audit mounts")
        render({"config": {"audit": {"sink": ["stdout", "file"]}}}, d)
        self.assertRaises(helm_python.HelmError, render, {"config": {"audit": {"sink": ["stdout", "file"]}}})

    def test_audit_volume_for_no_file(self):
        r = self.broken({"templates/deployment.yaml": [(
            'has "file" (include "livegate.auditSinks" . | fromJsonArray)', 'true')]},
            values={"config": {"audit": {"sink": ["stdout", "otlp"], "path": "/var/log/livegate/audit.jsonl"}},
                    "otel": {"endpoint": "http://collector:4318"}, "networkPolicy": {"enabled": False}})
        self.assertFails(check_audit_volume(r), "has no file, but an audit volume is mounted")

    def test_config_sink_list_not_an_array(self):
        # A list rendered as one string: the wiring check and livegate refuse it.
        r = self.broken({"templates/_helpers.tpl": [(
            '{{- else if kindIs "slice" $v }}\n{{- toJson $v }}',
            '{{- else if kindIs "slice" $v }}\n{{- join "," $v | toJson }}')]},
            values=audit_sinks_values())
        self.assertIn('sink = "file,otlp"', r.config_text())
        self.assertFails(check_config_wired(r), "config.audit.sink: values ['file', 'otlp'], rendered 'file,otlp'")
        self.assertFails(check_config(r), "check-config exit 2")

    def test_schema_broken_values_file_refused_by_render(self):
        broken = production_values()
        broken["config"]["vendor"]["api_key"] = "inline-vendor-key"
        self.assertTrue(check_schema(CHART, broken))
        with self.assertRaises(helm_python.HelmValuesError):
            render(broken)

    def test_values_path_undefined(self):
        d = self.chart_copy({"templates/deployment.yaml": [(
            "revisionHistoryLimit: 5", "revisionHistoryLimit: {{ .Values.revisionHistoryLimit | default 5 }}")]})
        self.assertFails(check_values_paths(d), ".Values.revisionHistoryLimit is used in a template but not in values.yaml")

    def test_values_path_undefined_through_a_variable(self):
        d = self.chart_copy({"templates/networkpolicy.yaml": [("$np.ingress.http.from", "$np.ingress.public.from")]})
        self.assertFails(check_values_paths(d), ".Values.networkPolicy.ingress.public.from")

    def test_values_path_missing_from_schema(self):
        d = self.chart_copy({"values.yaml": [("", "\nrevisionHistoryLimit: 5\n")],
                             "templates/deployment.yaml": [("revisionHistoryLimit: 5", "revisionHistoryLimit: {{ .Values.revisionHistoryLimit }}")]})
        self.assertFails(check_values_paths(d), "not in values.schema.json")

    def test_config_unknown_key(self):
        r = self.broken({"templates/_config.tpl": [('listen = "0.0.0.0:9090"', 'address = "0.0.0.0:9090"')]})
        self.assertFails(check_config(r), "check-config exit 2", "ops.address")

    def test_config_values_livegate_refuses(self):
        # Valid for the schema, refused by livegate's cross-field checks.
        v = production_values()
        v["config"]["server"] = {"body_limit_bytes": 67108864, "inflight_body_budget_bytes": 1048576}
        self.assertEqual(check_schema(CHART, v), [])
        self.assertFails(check_config(render(v)), "inflight_body_budget_bytes")

    def test_config_integer_written_as_float(self):
        r = self.broken({"templates/_helpers.tpl": [("{{- int64 $v }}", "{{- toString (float64 $v) }}.0")]})
        self.assertFails(check_config(r), "check-config exit 2")

    def test_schema_sizing(self):
        for sizing in ({"defaultBlockingThreads": 0}, {"defaultBlockingThreads": 513},
                       {"defaultBlockingThreads": "4"}, {"fingerprintPeakBytes": 0},
                       {"fingerprintPeakBytes": "32Mi"}, {"baselineBytes": -1}, {"slots": 4}):
            with self.subTest(sizing=sizing):
                p = check_schema(CHART, {"sizing": sizing})
                self.assertTrue(any(x.startswith("helm:") for x in p), p)
                self.assertTrue(any(x.startswith("jsonschema:") for x in p), p)

    def test_sizing_one_thread_per_cpu(self):
        r = self.broken({"templates/_sizing.tpl": [("(mul 2 (atoi $millis))", "(mul 1 (atoi $millis))")]},
                        values={"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}})
        self.assertFails(check_sizing(r), "server.blocking_threads is 2, expected 4 (from resources.limits.cpu)")

    def test_sizing_left_to_livegate(self):
        # blocking_threads no longer rendered: livegate would use 2 x the node's CPUs.
        r = self.broken({"templates/_config.tpl": [(
            'blocking_threads = {{ include "livegate.blockingThreads" . }}', "")]})
        self.assertFails(check_sizing(r), "server.blocking_threads is None, expected 4")

    def test_sizing_explicit_value_ignored(self):
        r = self.broken({"templates/_sizing.tpl": [(
            '{{- if not (kindIs "invalid" $explicit) }}\n{{- int64 $explicit }}\n{{- else if $millis }}',
            '{{- if $millis }}')]}, values={"config": {"server": {"blocking_threads": 2}}})
        self.assertFails(check_sizing(r), "server.blocking_threads is 4, expected 2 (from config.server.blocking_threads)")

    def test_sizing_memory_check_disabled(self):
        r = self.broken({"templates/_sizing.tpl": [("{{- if lt $limit $need }}", "{{- if lt $limit 0 }}")]},
                        values={"resources": {"limits": {"memory": "400Mi"}}})
        self.assertFails(check_sizing(r), "resources.limits.memory 400Mi is below the 448 MiB livegate may use")

    def test_sizing_memory_check_ignores_decodes(self):
        r = self.broken({"templates/_sizing.tpl": [(
            "{{- add $budget (mul $slots (int64 .Values.sizing.fingerprintPeakBytes)) (int64 .Values.sizing.baselineBytes) }}",
            "{{- add $budget (int64 .Values.sizing.baselineBytes) }}")]},
            values={"resources": {"limits": {"memory": "400Mi"}}})
        self.assertFails(check_sizing(r), "is below the 448 MiB", "NOTES does not name the 448 MiB")

    def test_sizing_no_warning_without_a_memory_limit(self):
        r = self.broken({"templates/NOTES.txt": [("WARNING: resources.limits.memory is not set", "Note: no memory limit")]},
                        values={"resources": {"limits": {"memory": None}}})
        self.assertFails(check_sizing(r), "no memory limit, and NOTES does not warn")

    def test_config_key_dropped(self):
        r = self.broken({"templates/_config.tpl": [('{{- include "livegate.tomlKeys" (dict "table" $c.redis "skip" list) }}', "")]})
        self.assertFails(check_config_wired(r), "config.redis.fail_mode")

    def test_kubernetes_schema_wrong_type_and_unknown_field(self):
        r = self.broken({"templates/deployment.yaml": [("revisionHistoryLimit: 5", "revisionHistoryLimit: five")]})
        for version in KUBERNETES_VERSIONS:
            self.assertFails(check_kubernetes_schemas(r, version), f"Deployment livegate: not valid for Kubernetes {version} at spec/revisionHistoryLimit")
        r = self.broken({"templates/deployment.yaml": [("revisionHistoryLimit: 5", "revisionHistoryLimit: 5\n  replicaz: 3")]})
        self.assertFails(check_kubernetes_schemas(r, KUBERNETES_VERSIONS[0]), "replicaz")

    def test_kubernetes_schema_api_not_served(self):
        r = self.broken({"templates/pdb.yaml": [("apiVersion: policy/v1", "apiVersion: policy/v1beta1")]})
        self.assertFails(check_kubernetes_schemas(r, KUBERNETES_VERSIONS[1]), "policy/v1beta1 is not served")

    def test_checkov_finds_a_writable_root_and_an_unlisted_skip(self):
        r = self.broken({"templates/deployment.yaml": [
            ("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"),
            ("{{- with $skips }}", '{{- $skips = append $skips "CKV_K8S_8=no liveness probe needed" }}\n  {{- with $skips }}')]})
        problems = check_checkov(checkov_scan({"broken": r})["broken"])
        self.assertFails(problems, "checkov CKV_K8S_22 fails for Deployment.livegate.livegate",
                         "checkov CKV_K8S_8 skipped but not a listed skip")

    def test_secrets_admin_token_file_points_elsewhere(self):
        values = merge_files(production_values(), {
            "admin": {"tokens": [{"name": "support", "scopes": ["read"], "existingSecret": "livegate-admin-support",
                                  "key": "token"}]},
            "ops": {"metricsToken": {"existingSecret": "livegate-metrics", "key": "token"}}})
        r = self.broken({"templates/_config.tpl": [('"%s/admin-token-%s" $dir', '"%s/admin-tokens-%s" $dir'),
                                                   ('"%s/metrics-token" $dir', '"%s/metrics" $dir')]}, values)
        self.assertFails(check_secrets(r), "admin.tokens support: token_file /run/secrets/livegate/admin-tokens-support",
                         "ops.metrics_token_file = /run/secrets/livegate/metrics is not where")

    def test_lint_broken_template(self):
        d = self.chart_copy({"templates/pdb.yaml": [("spec:\n", "spec:\n  selector: [unclosed\n")]})
        self.assertFails(check_lint(d, {}), "lint")

    def test_lint_broken_chart_metadata(self):
        d = self.chart_copy({"Chart.yaml": [("version: 0.1.0", "version: not-semver")]})
        self.assertFails(check_lint(d, {}), "lint")

    def test_dashboard_drift(self):
        d = self.chart_copy({"dashboards/livegate.json": [('"title": "livegate"', '"title": "livegate (old)"')]})
        self.assertFails(check_dashboard(d), "differs")

    def test_literal_secret_in_deploy(self):
        d = self.chart_copy({"values-production.yaml": [("", "# url: redis://:s3cr3t-pw@redis:6379/0\n")],
                             "values.yaml": [("", "# token: changeme\n")],
                             "templates/extra.yaml": [("", "# pepper: 0123456789abcdef\n")]})
        self.assertFails(check_no_literal_secrets(d), "a URL with a password", "a placeholder password", "a secret value")


if __name__ == "__main__":
    unittest.main()
