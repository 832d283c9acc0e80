#!/usr/bin/env python3
"""Offline checks for the operations files (deploy/ and k8s/).

Driven by scripts/check-deploy.sh, which installs the tools and renders the
Kustomize overlays; each subcommand can also be run on its own:

  check_deploy.py gen-prometheusrule [--check]   write (or compare) k8s/base/prometheusrule.yaml
  check_deploy.py rules-match RENDERED...        PrometheusRule in each render == alerts.yml
  check_deploy.py k8s [--forbid-latest] [--require-auth open|token] [--kube-version V]... RENDERED...
  check_deploy.py dashboard --promtool PATH      dashboard JSON structure + PromQL parse
  check_deploy.py compose                        compose/nginx/prometheus consistency
  check_deploy.py dockerfile                     Dockerfile conventions
  check_deploy.py exports                        every metric used by dashboard/alerts is one src/ declares
  check_deploy.py metrics SCRAPE                 every metric and label used by dashboard/alerts is in a /metrics scrape
  check_deploy.py metrics --binary PATH [--save FILE]
                                                 the same against a scrape of PATH (the built switchboard),
                                                 started on loopback and driven through every metric's path

Needs PyYAML; the `k8s` subcommand also needs kubernetes-validate (both in
the .venv virtualenv created by scripts/install-deps.sh). Exit status 1 on any
failure, with one line per problem.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
PROM_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
PROMRULE = ROOT / "k8s/base/prometheusrule.yaml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/switchboard.json"
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
COMPOSE = ROOT / "deploy/compose.yaml"
NGINX = ROOT / "deploy/nginx/nginx.conf"
DOCKERFILE = ROOT / "deploy/Dockerfile"

APP = "switchboard"
# The binary's defaults (README.md, Configuration) for settings a manifest may leave out.
DEFAULTS = {"PORT": "3000", "OPS_PORT": "0", "DRAIN_PERIOD": "0", "SHUTDOWN_GRACE": "10",
            "HEADER_TIMEOUT": "20", "MAX_CONNECTIONS": "20000", "AUTH": "open",
            "AUTH_TOKEN_TTL": "86400", "EVENT_HISTORY": "1000", "EVENT_HISTORY_TTL": "86400"}
AUTH_MODES = ("open", "token")
# The binary refuses an AUTH_SECRET shorter than this, whatever AUTH is.
AUTH_SECRET_MIN_BYTES = 32
# After DRAIN_PERIOD and SHUTDOWN_GRACE, a replica still closes its sockets, gives the ops
# port 1 s and closes Redis: the orchestrator's grace must leave this much on top.
SHUTDOWN_MARGIN = 5
# Memory a replica needs per connection: an idle websocket measures ~18 KiB and an idle
# polling session ~23 KiB (loadtest/README.md, L4 and L4b); 29 KiB leaves room for
# connections that are not idle. On top of ~30 MiB at rest, rounded up for requests in flight.
BYTES_PER_CONNECTION = 29 * 1024
BYTES_AT_REST = 64 * 1024 * 1024
# Values a committed Secret may hold; anything else looks like a real credential.
PLACEHOLDER_SECRET_VALUES = {"change-me"}
# Series Prometheus makes itself rather than scraping them from the target.
SYNTHETIC_METRICS = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}
# Labels Prometheus attaches to every scraped series (target labels: the scrape config,
# the ServiceMonitor) rather than the service exporting them.
TARGET_LABELS = {"job", "instance", "pod", "namespace", "service", "endpoint", "container", "node"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Where the service declares what it exports: every metric name is a string literal.
SRC = ROOT / "src"
# LiveKit (outside the cluster, or the compose `livekit` service) POSTs its webhooks here,
# on the public port, through the ingress controller.
WEBHOOK_PATH = "/livekit/webhook"
INGRESS_CONTROLLER_NAMESPACE = "ingress-nginx"


class Problems:
    """Collects failures so one run reports all of them."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.items.append(f"{where}: {msg}")

    def check(self, cond: bool, where: str, msg: str) -> bool:
        if not cond:
            self.add(where, msg)
        return cond

    def finish(self, ok_msg: str) -> int:
        if self.items:
            for item in self.items:
                print(f"  FAIL {item}")
            print(f"  {len(self.items)} problem(s)")
            return 1
        print(f"  ok: {ok_msg}")
        return 0


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def load_yaml_docs(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


# --------------------------------------------------------------------------
# PrometheusRule generated from deploy/prometheus/alerts.yml
# --------------------------------------------------------------------------

PROMRULE_HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml: do not edit by hand.
# Regenerate with `python3 scripts/check_deploy.py gen-prometheusrule`;
# scripts/check-deploy.sh fails when this file and alerts.yml differ.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: switchboard
  labels:
    app.kubernetes.io/name: switchboard
    # kube-prometheus-stack only loads rules with its release label by
    # default; adjust to your Prometheus' ruleSelector.
    release: kube-prometheus-stack
spec:
"""


def render_prometheusrule() -> str:
    """alerts.yml from its `groups:` line on, indented under `spec:` (comments kept)."""
    lines = ALERTS.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("groups:"):
            body = lines[i:]
            break
    else:
        raise SystemExit(f"{rel(ALERTS)}: no top-level 'groups:' line")
    indented = "\n".join(("  " + line) if line.strip() else "" for line in body)
    return PROMRULE_HEADER + indented.rstrip() + "\n"


def cmd_gen_prometheusrule(args: argparse.Namespace) -> int:
    text = render_prometheusrule()
    problems = Problems()
    if args.check:
        current = PROMRULE.read_text(encoding="utf-8") if PROMRULE.exists() else ""
        problems.check(current == text, rel(PROMRULE),
                       "out of date with deploy/prometheus/alerts.yml; run "
                       "`python3 scripts/check_deploy.py gen-prometheusrule`")
        return problems.finish(f"{rel(PROMRULE)} is up to date with {rel(ALERTS)}")
    PROMRULE.write_text(text, encoding="utf-8")
    print(f"wrote {rel(PROMRULE)}")
    return 0


def cmd_rules_match(args: argparse.Namespace) -> int:
    problems = Problems()
    expected = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    for name in args.rendered:
        docs = load_yaml_docs(Path(name))
        rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
        if not problems.check(len(rules) == 1, name, f"expected 1 PrometheusRule, found {len(rules)}"):
            continue
        got = rules[0].get("spec", {}).get("groups")
        problems.check(got == expected, name,
                       f"PrometheusRule spec.groups differ from {rel(ALERTS)}")
    return problems.finish(f"PrometheusRule groups identical to {rel(ALERTS)} in {len(args.rendered)} render(s)")


# --------------------------------------------------------------------------
# Kubernetes objects
# --------------------------------------------------------------------------

DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
NAMESPACED_EXEMPT = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                     "PriorityClass", "StorageClass", "IngressClass"}
QUANTITY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                  "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(q) -> int | None:
    """A Kubernetes memory quantity (`256Mi`, `1G`, `1048576`) in bytes; None if unparsed."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(q or ""))
    return int(m.group(1)) * QUANTITY_UNITS[m.group(2) or ""] if m else None


def setting(env: dict, key: str) -> str:
    """A switchboard setting as the replica sees it: `env`, else the binary's default."""
    return str(env.get(key, DEFAULTS[key]))


def obj_id(doc: dict) -> str:
    meta = doc.get("metadata", {})
    ns = meta.get("namespace")
    return f"{doc.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


def selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """matchLabels and matchExpressions semantics of a LabelSelector."""
    if not selector:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def check_service_monitor(doc: dict, where: str, p: Problems) -> None:
    spec = doc.get("spec") or {}
    sel = spec.get("selector")
    p.check(isinstance(sel, dict) and (sel.get("matchLabels") or sel.get("matchExpressions")),
            where, "spec.selector needs matchLabels or matchExpressions")
    eps = spec.get("endpoints")
    if not p.check(isinstance(eps, list) and eps, where, "spec.endpoints must be a non-empty list"):
        return
    known = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
             "honorTimestamps", "relabelings", "metricRelabelings", "tlsConfig", "bearerTokenSecret",
             "authorization", "basicAuth", "oauth2", "params", "followRedirects", "enableHttp2",
             "proxyUrl", "filterRunning", "trackTimestampsStaleness"}
    for i, ep in enumerate(eps):
        w = f"{where} endpoints[{i}]"
        if not p.check(isinstance(ep, dict), w, "must be a mapping"):
            continue
        unknown = set(ep) - known
        p.check(not unknown, w, f"unknown field(s) {sorted(unknown)}")
        p.check(("port" in ep) != ("targetPort" in ep), w, "needs exactly one of port / targetPort")
        p.check(str(ep.get("path", "/metrics")).startswith("/"), w, "path must start with /")
        for key in ("interval", "scrapeTimeout"):
            if key in ep:
                p.check(bool(DURATION.match(str(ep[key]))), w, f"{key} {ep[key]!r} is not a duration")


def check_prometheus_rule(doc: dict, where: str, p: Problems) -> None:
    groups = (doc.get("spec") or {}).get("groups")
    if not p.check(isinstance(groups, list) and groups, where, "spec.groups must be a non-empty list"):
        return
    for g in groups:
        gw = f"{where} group {g.get('name')!r}"
        p.check(isinstance(g.get("name"), str) and g["name"], gw, "group needs a name")
        rules = g.get("rules")
        if not p.check(isinstance(rules, list) and rules, gw, "rules must be a non-empty list"):
            continue
        for r in rules:
            rw = f"{gw} rule {r.get('alert') or r.get('record')!r}"
            p.check(("alert" in r) != ("record" in r), rw, "needs exactly one of alert / record")
            p.check(isinstance(r.get("expr"), str) and r["expr"].strip(), rw, "expr must be a string")
            if "for" in r:
                p.check(bool(DURATION.match(str(r["for"]))), rw, f"for {r['for']!r} is not a duration")
            for key in ("labels", "annotations"):
                val = r.get(key, {})
                p.check(isinstance(val, dict) and all(isinstance(v, str) for v in val.values()),
                        rw, f"{key} must map to strings")
            unknown = set(r) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            p.check(not unknown, rw, f"unknown field(s) {sorted(unknown)}")


def pod_spec_of(doc: dict) -> dict | None:
    if doc.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return (doc.get("spec") or {}).get("template", {}).get("spec")
    return None


def check_pod_security(doc: dict, where: str, p: Problems) -> None:
    spec = pod_spec_of(doc)
    if spec is None:
        return
    pod_sc = spec.get("securityContext") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        cw = f"{where} container {c.get('name')}"
        sc = c.get("securityContext") or {}
        p.check(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, cw, "runAsNonRoot must be true")
        p.check(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation must be false")
        p.check(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem must be true")
        p.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), cw, "capabilities.drop must include ALL")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        p.check(seccomp == "RuntimeDefault", cw, "seccompProfile must be RuntimeDefault")
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            got = res.get(kind) or {}
            p.check("cpu" in got and "memory" in got, cw, f"resources.{kind} needs cpu and memory")


def ingress_route(ingresses: list[dict], request_path: str) -> tuple[dict, dict] | None:
    """(Ingress, path) that serves `request_path`, as ingress-nginx picks it on one host:
    an Exact path first, else the longest Prefix path that matches whole segments."""
    best = None
    for ing in ingresses:
        for rule in ing["spec"].get("rules", []):
            for path in (rule.get("http") or {}).get("paths", []):
                p_ = path.get("path", "/")
                if path.get("pathType") == "Exact":
                    score = (1, len(p_)) if p_ == request_path else None
                else:  # Prefix and ImplementationSpecific: element-wise prefix
                    base = p_.rstrip("/")
                    hit = request_path == base or request_path.startswith(base + "/")
                    score = (0, len(base)) if hit else None
                if score and (best is None or score > best[0]):
                    best = (score, ing, path)
    return (best[1], best[2]) if best else None


def admits_ingress_controller(netpol: dict, port: int, name: str) -> bool:
    """Some ingress rule of `netpol` lets pods of the ingress controller's namespace reach `port`."""
    for rule in netpol["spec"].get("ingress") or []:
        if rule.get("ports") and not any(pt.get("port") in (port, name) for pt in rule["ports"]):
            continue
        if not rule.get("from"):
            return True  # from anywhere
        for peer in rule["from"]:
            ns = peer.get("namespaceSelector")
            if ns is not None and (ns == {} or selector_matches(
                    ns, {"kubernetes.io/metadata.name": INGRESS_CONTROLLER_NAMESPACE})):
                return True
    return False


def configmap_data(docs: list[dict], name: str) -> dict:
    for d in docs:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == name:
            return d.get("data") or {}
    return {}


def check_auth(c: dict, docs: list[dict], env_cms: list[str], env_secrets: list[str], config: dict,
               require: str | None, w: str, p: Problems) -> None:
    """AUTH and its signing key: with AUTH=token, AUTH_SECRET must come from a Secret the pod
    cannot start without; in no mode may it be written into a manifest."""
    auth = setting(config, "AUTH")
    if not p.check(auth in AUTH_MODES, w, f"AUTH {auth!r} is not one of {'/'.join(AUTH_MODES)}"):
        return
    if require:
        p.check(auth == require, w, f"AUTH must be {require} in this render, not {auth}")
    for cm in env_cms:
        p.check("AUTH_SECRET" not in configmap_data(docs, cm), w,
                f"ConfigMap {cm} holds AUTH_SECRET: a signing key belongs in a Secret (secretKeyRef)")
    secrets = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Secret"}

    def secret_value(name: str, key: str) -> str | None:
        s = secrets.get(name) or {}
        if key in (s.get("stringData") or {}):
            return str(s["stringData"][key])
        if key in (s.get("data") or {}):
            return base64.b64decode(s["data"][key]).decode("utf-8", "replace")
        return None

    source = None  # where the container's AUTH_SECRET comes from, for the messages below
    entries = [e for e in c.get("env") or [] if e.get("name") == "AUTH_SECRET"]
    if entries:
        e = entries[-1]
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if "value" in e:
            p.add(w, "AUTH_SECRET is a literal value in the Deployment: take it from a Secret "
                     "(valueFrom.secretKeyRef), created out of band")
            return
        if not p.check(ref is not None, w, "AUTH_SECRET must come from valueFrom.secretKeyRef (a Secret), "
                                           f"not {sorted(e.get('valueFrom') or {})}"):
            return
        name, key = ref.get("name"), ref.get("key")
        source = f"key {key} of Secret {name}"
        if auth == "token":
            p.check(ref.get("optional") is not True, w,
                    f"AUTH_SECRET's secretKeyRef ({source}) must not be optional: with AUTH=token a pod "
                    "without it only crash-loops (AUTH_SECRET is required); it should not start at all")
        if name in secrets:
            value = secret_value(name, key)
            if p.check(value is not None, w, f"AUTH_SECRET refers to key {key} of Secret {name}, which the "
                                             "rendered Secret lacks"):
                p.check(len(value.encode()) >= AUTH_SECRET_MIN_BYTES, w,
                        f"AUTH_SECRET ({source}) is {len(value.encode())} bytes, a placeholder: the binary "
                        f"refuses any under {AUTH_SECRET_MIN_BYTES}, even with AUTH=open; create the Secret "
                        "out of band instead of rendering one")
        else:
            print(f"    note: Secret {name} (AUTH_SECRET, secretKeyRef) is not rendered: it must exist in the "
                  "cluster (created out of band)")
    else:
        # envFrom: only a rendered Secret can be seen to carry the key.
        for name in env_secrets:
            value = secret_value(name, "AUTH_SECRET")
            if value is not None:
                source = f"key AUTH_SECRET of Secret {name} (envFrom)"
                p.check(len(value.encode()) >= AUTH_SECRET_MIN_BYTES, w,
                        f"AUTH_SECRET ({source}) is {len(value.encode())} bytes: the binary refuses any under "
                        f"{AUTH_SECRET_MIN_BYTES}, even with AUTH=open")
    if auth != "token":
        return
    p.check(source is not None, w,
            "AUTH=token but AUTH_SECRET has no source: add an env entry AUTH_SECRET with "
            "valueFrom.secretKeyRef to a Secret created out of band (k8s/README.md, \"Authentication\"); "
            "without it the replicas refuse to start")
    for key in ("AUTH_TOKEN_TTL", "EVENT_HISTORY", "EVENT_HISTORY_TTL"):
        value = setting(config, key)
        p.check(value.isdigit() and int(value) >= 1, w, f"{key} {value!r} must be a whole number >= 1")
    if require == "token":
        for key in ("EVENT_HISTORY", "EVENT_HISTORY_TTL"):
            p.check(key in config, w, f"{key} should be set explicitly: it sizes the per-user event history "
                                      "kept in Redis (API contract, section 9)")


def cmd_k8s(args: argparse.Namespace) -> int:
    try:
        import kubernetes_validate
    except ImportError:
        print("kubernetes-validate is not installed (scripts/install-deps.sh installs it into .venv)")
        return 1
    rc = 0
    for name in args.rendered:
        p = Problems()
        docs = load_yaml_docs(Path(name))
        print(f"  {Path(name).name}: {len(docs)} objects")
        by_kind: dict[str, list[dict]] = {}
        seen: set[str] = set()
        namespaces = set()
        for d in docs:
            where = f"{Path(name).name} {obj_id(d)}"
            p.check(obj_id(d) not in seen, where, "duplicate object")
            seen.add(obj_id(d))
            by_kind.setdefault(d.get("kind", "?"), []).append(d)
            if d.get("kind") not in NAMESPACED_EXEMPT:
                namespaces.add(d.get("metadata", {}).get("namespace"))
            api = str(d.get("apiVersion", ""))
            if api.startswith("monitoring.coreos.com/"):
                # CRDs: kubernetes-validate ships only built-in schemas, so the
                # prometheus-operator objects get a structural check instead.
                if d.get("kind") == "ServiceMonitor":
                    check_service_monitor(d, where, p)
                elif d.get("kind") == "PrometheusRule":
                    check_prometheus_rule(d, where, p)
                else:
                    p.add(where, "no check for this custom resource kind")
                continue
            for version in args.kube_version:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = "/".join(str(x) for x in e.path) or "(root)"
                    p.add(where, f"invalid for Kubernetes {version} at {path}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    p.add(where, f"no schema for Kubernetes {version}: {e}")
                except kubernetes_validate.InvalidSchemaError as e:
                    p.add(where, f"invalid schema for Kubernetes {version}: {e}")
            check_pod_security(d, where, p)
            if args.forbid_latest and pod_spec_of(d):
                for c in pod_spec_of(d).get("containers") or []:
                    image = str(c.get("image", ""))
                    p.check(":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"),
                            where, f"image {image!r} must be pinned (no :latest / untagged)")
        p.check(len(namespaces) == 1, Path(name).name,
                f"objects should share one namespace, found {sorted(map(str, namespaces))}")

        # Cross-object consistency for the switchboard workload.
        w = Path(name).name
        deps = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == APP]
        if p.check(len(deps) == 1, w, f"expected one Deployment {APP}"):
            dep = deps[0]
            tmpl_labels = dep["spec"]["template"]["metadata"].get("labels", {})
            p.check(selector_matches(dep["spec"]["selector"], tmpl_labels), w,
                    "Deployment selector does not match its pod template labels")
            pod = dep["spec"]["template"]["spec"]
            c = next((c for c in pod["containers"] if c["name"] == APP), None)
            ops_port = 0
            if p.check(c is not None, w, f"Deployment has no container {APP}"):
                port_names = {pt.get("name"): pt.get("containerPort") for pt in c.get("ports", [])}
                p.check(port_names.get("http") == 3000, w, "container port 'http' must be 3000")
                env_cms = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
                env_secrets = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
                cm_names = {d["metadata"]["name"] for d in by_kind.get("ConfigMap", [])}
                for cm in env_cms:
                    p.check(cm in cm_names, w, f"envFrom ConfigMap {cm} is not in the render")
                secret_names = {d["metadata"]["name"] for d in by_kind.get("Secret", [])}
                for s in env_secrets:
                    if s not in secret_names:
                        print(f"    note: Secret {s} is not rendered: it must exist in the cluster (created out of band)")
                config = {}
                for cm in env_cms:
                    config.update(configmap_data(docs, cm))
                # `env` wins over envFrom (only literal values can be read here).
                config.update({e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e})

                # The ops port: probes and scrapes must not queue behind a flood on the public port.
                ops_port = int(setting(config, "OPS_PORT"))
                if p.check(ops_port != 0, w, "OPS_PORT must be set, so that probes and scrapes answer "
                                             "while the public port is at MAX_CONNECTIONS"):
                    p.check(ops_port != int(setting(config, "PORT")), w, "OPS_PORT must differ from PORT")
                    p.check(port_names.get("ops") == ops_port, w, f"container port 'ops' must be OPS_PORT ({ops_port})")
                for probe, path, required in (("startupProbe", "/healthz", False),
                                              ("livenessProbe", "/healthz", True),
                                              ("readinessProbe", "/readyz", True)):
                    http_get = (c.get(probe) or {}).get("httpGet")
                    if http_get is None and not required:
                        continue
                    http_get = http_get or {}
                    p.check(http_get.get("path") == path, w, f"{probe} must GET {path}")
                    if ops_port:
                        p.check(http_get.get("port") in ("ops", ops_port), w,
                                f"{probe} must use the ops port ('ops' or {ops_port}), not {http_get.get('port')!r}: "
                                "on the public port a flood at MAX_CONNECTIONS fails the probes")

                drain = int(setting(config, "DRAIN_PERIOD"))
                shutdown_grace = int(setting(config, "SHUTDOWN_GRACE"))
                grace = int(pod.get("terminationGracePeriodSeconds", 30))
                p.check(drain >= 1, w, "DRAIN_PERIOD should be set (ConfigMap) so endpoint removal can propagate")
                p.check(grace >= drain + shutdown_grace + SHUTDOWN_MARGIN, w,
                        f"terminationGracePeriodSeconds {grace} < DRAIN_PERIOD {drain} + SHUTDOWN_GRACE "
                        f"{shutdown_grace} + {SHUTDOWN_MARGIN} s to close sockets, the ops port and Redis")
                p.check("HEADER_TIMEOUT" in config, w, "HEADER_TIMEOUT should be set explicitly: it closes idle "
                        "keep-alive connections, so ingress-nginx's upstream-keepalive-timeout must stay below it")
                max_connections = int(setting(config, "MAX_CONNECTIONS"))
                memory = ((c.get("resources") or {}).get("limits") or {}).get("memory")
                limit_bytes = quantity_bytes(memory)
                if limit_bytes:
                    need = max_connections * BYTES_PER_CONNECTION + BYTES_AT_REST
                    p.check(need <= limit_bytes, w,
                            f"MAX_CONNECTIONS {max_connections} does not fit the memory limit {memory}: "
                            f"~{need >> 20} MiB at ~{BYTES_PER_CONNECTION >> 10} KiB per websocket; "
                            "lower MAX_CONNECTIONS or raise the limit")
                p.check(config.get("LOG_FORMAT") == "json", w, "LOG_FORMAT must be json")
                p.check(bool(config.get("REDIS_URL")), w, "REDIS_URL must be set for several replicas")
                check_auth(c, docs, env_cms, env_secrets, config, args.require_auth, w, p)

            for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
                objs = [d for d in by_kind.get(kind, []) if d["metadata"]["name"] == APP]
                if not p.check(len(objs) == 1, w, f"expected one {kind} {APP}"):
                    continue
                spec = objs[0]["spec"]
                sel = spec.get("selector") if kind != "NetworkPolicy" else spec.get("podSelector")
                if kind == "Service":
                    sel = {"matchLabels": sel}
                p.check(selector_matches(sel, tmpl_labels), w, f"{kind} selector does not match the pods")

            svc = next((d for d in by_kind.get("Service", []) if d["metadata"]["name"] == APP), None)
            if svc:
                svc_ports = {pt.get("name") for pt in svc["spec"].get("ports", [])}
                # Service ports that lead to the container's ops port.
                ops_svc_ports = {pt.get("name") for pt in svc["spec"].get("ports", [])
                                 if ops_port and pt.get("targetPort") in ("ops", ops_port)}
                p.check(not ops_port or bool(ops_svc_ports), w,
                        f"Service {APP} has no port targeting the ops port ('ops' or {ops_port})")
                for sm in by_kind.get("ServiceMonitor", []):
                    p.check(selector_matches(sm["spec"].get("selector"), svc["metadata"].get("labels")), w,
                            f"ServiceMonitor {sm['metadata']['name']} does not select Service {APP}")
                    for ep in sm["spec"].get("endpoints", []):
                        if "port" in ep:
                            p.check(ep["port"] in svc_ports, w, f"ServiceMonitor port {ep['port']!r} not on the Service")
                        if ops_port:
                            p.check(ep.get("port") in ops_svc_ports or ep.get("targetPort") in ("ops", ops_port), w,
                                    f"ServiceMonitor endpoint {ep.get('port') or ep.get('targetPort')!r} must scrape "
                                    "the ops port: on the public port scrapes fail during a flood")
                for ing in by_kind.get("Ingress", []):
                    for r in ing["spec"].get("rules", []):
                        for path in (r.get("http") or {}).get("paths", []):
                            be = path["backend"]["service"]
                            p.check(be["name"] == APP and be["port"].get("name") in svc_ports, w,
                                    f"Ingress path {path['path']} targets {be} which is not the {APP} Service port")
                            p.check(be["port"].get("name") not in ops_svc_ports, w,
                                    f"Ingress path {path['path']} routes to the ops port")
                # Socket.IO: sticky long-polling sessions and timeouts above the ping cycle, on
                # the Ingress that routes /socket.io/ (LiveKit's webhooks need neither).
                socketio = ingress_route(by_kind.get("Ingress", []), "/socket.io/")
                if p.check(socketio is not None, w, "no Ingress routes /socket.io/"):
                    ing = socketio[0]
                    ann = ing["metadata"].get("annotations", {})
                    p.check(ann.get("nginx.ingress.kubernetes.io/affinity") == "cookie", w,
                            f"Ingress {ing['metadata']['name']} routes /socket.io/ and needs cookie affinity "
                            "for Socket.IO long-polling")
                    for key in ("proxy-read-timeout", "proxy-send-timeout"):
                        val = int(ann.get(f"nginx.ingress.kubernetes.io/{key}", "60"))
                        p.check(val > 45, w, f"Ingress {ing['metadata']['name']} {key} {val}s must exceed "
                                "25 s ping interval + 20 s timeout")
                # LiveKit's webhooks: POSTed from outside the cluster to the public host.
                webhook = ingress_route(by_kind.get("Ingress", []), WEBHOOK_PATH)
                if p.check(webhook is not None, w, f"no Ingress routes {WEBHOOK_PATH}: LiveKit's webhooks "
                                                   "cannot reach the replicas"):
                    ing, path = webhook
                    port = path["backend"]["service"]["port"]
                    port = port.get("name") or port.get("number")
                    p.check(port in ("http", 3000), w, f"{WEBHOOK_PATH} is routed by Ingress "
                            f"{ing['metadata']['name']} to port {port!r}, not 'http' (3000), where the replicas "
                            "serve it")

            # NetworkPolicy: the public port for the ingress controller, the ops port for Prometheus
            # (kubelet probes are not subject to NetworkPolicy).
            netpol = next((d for d in by_kind.get("NetworkPolicy", []) if d["metadata"]["name"] == APP), None)
            if netpol and "Ingress" in (netpol["spec"].get("policyTypes") or ["Ingress"]):
                def allowed(port: int, name: str) -> bool:
                    return any(not rule.get("ports") or any(pt.get("port") in (port, name) for pt in rule["ports"])
                               for rule in netpol["spec"].get("ingress") or [])
                p.check(allowed(3000, "http"), w, f"NetworkPolicy {APP} lets nothing reach the public port 3000")
                # LiveKit's webhooks come through the ingress controller, like every client.
                p.check(admits_ingress_controller(netpol, 3000, "http"), w,
                        f"NetworkPolicy {APP} does not let the ingress controller (namespace "
                        f"{INGRESS_CONTROLLER_NAMESPACE}) reach port 3000: clients and LiveKit's webhooks "
                        f"({WEBHOOK_PATH}) come in through it")
                if ops_port:
                    p.check(allowed(ops_port, "ops"), w,
                            f"NetworkPolicy {APP} lets nothing reach the ops port {ops_port}: Prometheus cannot scrape")

            for hpa in by_kind.get("HorizontalPodAutoscaler", []):
                spec = hpa["spec"]
                ref = spec["scaleTargetRef"]
                p.check(ref["kind"] == "Deployment" and ref["name"] == APP, w, "HPA must target the Deployment")
                p.check(spec.get("minReplicas", 1) <= spec["maxReplicas"], w, "HPA minReplicas > maxReplicas")
                p.check(dep["spec"].get("replicas", 1) >= spec.get("minReplicas", 1), w,
                        "Deployment replicas below HPA minReplicas")

        # No real credentials in anything that is rendered from the repository.
        for s in by_kind.get("Secret", []):
            values = dict(s.get("stringData") or {})
            for k, v in (s.get("data") or {}).items():
                values[k] = base64.b64decode(v).decode("utf-8", "replace")
            for k, v in values.items():
                p.check(v in PLACEHOLDER_SECRET_VALUES, w,
                        f"Secret {s['metadata']['name']} key {k} is not a placeholder "
                        f"({'/'.join(sorted(PLACEHOLDER_SECRET_VALUES))}); real secrets are created out of band")

        rc |= p.finish(f"{Path(name).name}: every object valid for Kubernetes {', '.join(args.kube_version)}")
    return rc


# --------------------------------------------------------------------------
# PromQL helpers (dashboard + alerts)
# --------------------------------------------------------------------------

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
    "unless", "atan2", "inf", "nan", "start", "end", "le",
}


def grafana_to_promql(expr: str) -> str:
    """Substitute Grafana variables so an expression is plain PromQL."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "5m", expr)
    expr = re.sub(r"\$\{[A-Za-z0-9_]+(:[a-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*", ".+", expr)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (heuristic tokenizer)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)          # label matchers
    s = re.sub(r"\[[^\[\]]*\]", " ", s)        # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", s):
        tok, call = m.group(1), m.group(2)
        if call or tok in PROMQL_KEYWORDS:
            continue
        names.add(tok)
    return names


def dashboard_queries(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable."""
    out = []

    def walk(panels):
        for panel in panels:
            for t in panel.get("targets", []) or []:
                if t.get("expr"):
                    out.append((f"panel {panel.get('id')} {panel.get('title')!r} ref {t.get('refId')}", t["expr"]))
            walk(panel.get("panels", []) or [])

    walk(dash.get("panels", []))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.match(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", q or "")
        if m:
            out.append((f"variable {var['name']}", m.group(1)))
        elif q and not q.strip().startswith(("label_names", "metrics(")):
            out.append((f"variable {var['name']}", re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", q)))
    return out


def alert_queries() -> list[tuple[str, str]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [(f"rule {r.get('alert') or r.get('record')}", r["expr"])
            for g in doc["groups"] for r in g["rules"]]


def promtool_parse(promtool: str, queries: list[tuple[str, str]], p: Problems, source: str) -> None:
    """Parse every expression with promtool by wrapping them as recording rules."""

    def run(batch: list[tuple[str, str]]) -> subprocess.CompletedProcess:
        rules = [{"record": f"check:q{i}", "expr": grafana_to_promql(q)} for i, (_, q) in enumerate(batch)]
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
            yaml.safe_dump({"groups": [{"name": "parse-check", "rules": rules}]}, fh)
            tmp = fh.name
        try:
            return subprocess.run([promtool, "check", "rules", tmp], capture_output=True, text=True)
        finally:
            os.unlink(tmp)

    if run(queries).returncode == 0:
        return
    # Something failed: re-check one by one to name the culprits.
    for where, q in queries:
        res = run([(where, q)])
        if res.returncode != 0:
            detail = " ".join((res.stdout + res.stderr).split())
            p.add(source, f"{where}: PromQL does not parse: {q!r} ({detail[-300:]})")


# --------------------------------------------------------------------------
# Grafana dashboard
# --------------------------------------------------------------------------

def cmd_dashboard(args: argparse.Namespace) -> int:
    p = Problems()
    where = rel(DASHBOARD)
    try:
        dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        p.add(where, f"invalid JSON: {e}")
        return p.finish("")
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        p.check(key in dash, where, f"missing top-level {key!r}")

    ds_uids = {d.get("uid") for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    builtin_vars = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}

    ids: set[int] = set()
    cells: dict[tuple[int, int], str] = {}
    n_targets = 0

    def check_ds(ds, w):
        if isinstance(ds, dict):
            uid = ds.get("uid", "")
            ok = uid in ds_uids or uid.strip("${}") in variables or ds.get("type") in {"grafana", "datasource"}
            p.check(ok, w, f"datasource uid {uid!r} is neither provisioned ({sorted(ds_uids)}) nor a variable")

    def walk(panels):
        nonlocal n_targets
        for panel in panels:
            w = f"{where} panel {panel.get('id')} {panel.get('title')!r}"
            pid = panel.get("id")
            p.check(isinstance(pid, int) and pid not in ids, w, "panel id missing or duplicated")
            ids.add(pid)
            p.check(bool(panel.get("title")), w, "panel needs a title")
            gp = panel.get("gridPos") or {}
            if p.check(all(isinstance(gp.get(k), int) for k in "xywh"), w, "gridPos needs integer x, y, w, h"):
                p.check(gp["w"] > 0 and gp["h"] > 0 and gp["x"] >= 0 and gp["x"] + gp["w"] <= 24, w,
                        f"gridPos {gp} outside the 24-column grid")
                for x in range(gp["x"], gp["x"] + gp["w"]):
                    for y in range(gp["y"], gp["y"] + gp["h"]):
                        other = cells.get((x, y))
                        if other:
                            p.add(w, f"overlaps panel {other}")
                            break
                        cells[(x, y)] = str(pid)
                    else:
                        continue
                    break
            check_ds(panel.get("datasource"), w)
            if panel.get("type") != "row":
                targets = panel.get("targets") or []
                p.check(bool(targets), w, "panel has no queries")
                for t in targets:
                    n_targets += 1
                    check_ds(t.get("datasource"), w)
                    expr = t.get("expr", "")
                    p.check(bool(expr.strip()), w, f"target {t.get('refId')} has no expr")
                    for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expr):
                        p.check(var in variables or var in builtin_vars, w, f"undefined variable ${var}")
            walk(panel.get("panels", []) or [])

    walk(dash.get("panels", []))
    queries = dashboard_queries(dash)
    promtool_parse(args.promtool, queries, p, where)
    return p.finish(f"{where}: {len(ids)} panels, {n_targets} queries, all PromQL parses")


# --------------------------------------------------------------------------
# Compose stack consistency (nginx upstreams, Prometheus targets, mounts)
# --------------------------------------------------------------------------

def compose_seconds(value) -> float:
    """A Compose duration (`30s`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|us|h|m|s)", str(value)))


def compose_env(service: dict) -> dict:
    """A Compose service's `environment`, in either of its two spellings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(str(e).split("=", 1) if "=" in str(e) else (str(e), None) for e in env)
    return env


def nginx_location(conf: str, uri: str) -> tuple[str, str] | None:
    """(the `location` line's argument, its body) of the location nginx picks for `uri`:
    an exact match (=), else the longest prefix (regex locations are not considered)."""
    best, best_len = None, -1
    for m in re.finditer(r"^\s*location\s+(=|\^~)?\s*([^\s{]+)\s*\{", conf, re.M):
        depth, i = 1, m.end()
        while depth and i < len(conf):
            depth += {"{": 1, "}": -1}.get(conf[i], 0)
            i += 1
        modifier, path, body = m.group(1), m.group(2), conf[m.end():i - 1]
        if modifier == "=":
            if path == uri:
                return (f"= {path}", body)
        elif not path.startswith("@") and uri.startswith(path) and len(path) > best_len:
            best, best_len = (path, body), len(path)
    return best


def cmd_compose(args: argparse.Namespace) -> int:
    p = Problems()
    where = rel(COMPOSE)
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose.get("services", {})
    replicas = sorted(s for s in services if re.fullmatch(rf"{APP}-\d+", s))
    p.check(len(replicas) >= 3, where, f"expected at least three {APP}-N replicas, found {replicas}")
    ports: dict[str, tuple[int, int]] = {}   # replica -> (PORT, OPS_PORT)
    header_timeouts = []
    for s in replicas:
        svc = services[s]
        env = svc.get("environment", {})
        w = f"{where} {s}"
        ports[s] = (int(setting(env, "PORT")), int(setting(env, "OPS_PORT")))
        if p.check(ports[s][1] != 0, w, "OPS_PORT must be set: Prometheus scrapes it, so that scrapes answer "
                                        "while the public port is at MAX_CONNECTIONS"):
            p.check(ports[s][1] != ports[s][0], w, "OPS_PORT must differ from PORT")
        header_timeouts.append(int(setting(env, "HEADER_TIMEOUT")))
        drain, shutdown_grace = int(setting(env, "DRAIN_PERIOD")), int(setting(env, "SHUTDOWN_GRACE"))
        stop = compose_seconds(svc.get("stop_grace_period", "10s"))
        p.check(stop >= drain + shutdown_grace + SHUTDOWN_MARGIN, w,
                f"stop_grace_period {stop:g}s < DRAIN_PERIOD {drain} + SHUTDOWN_GRACE {shutdown_grace} "
                f"+ {SHUTDOWN_MARGIN} s to close sockets, the ops port and Redis")
        p.check(str(env.get("REDIS_URL", "")).startswith("redis://redis:"), w, "REDIS_URL must point at the redis service")
        p.check(env.get("LOG_FORMAT") == "json", w, "LOG_FORMAT must be json")
        p.check(svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile", w, "must build deploy/Dockerfile")
        ctx = (COMPOSE.parent / svc.get("build", {}).get("context", ".")).resolve()
        p.check((ctx / "Cargo.toml").exists() or not (ROOT / "Cargo.toml").exists(), w,
                f"build context {ctx} has no Cargo.toml")
        for k in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
            p.check(k in env, w, f"{k} must be set")
        # AUTH: open unless the caller's environment says token; the signing key only ever
        # from that environment (deploy/README.md, "Authentication").
        auth = str(env.get("AUTH", "open"))
        m = re.fullmatch(r"\$\{AUTH(?::?-([^}]*))?\}", auth)
        auth_default = (m.group(1) or "") if m else auth
        p.check(auth_default == "open", w, f"AUTH must default to open (AUTH: ${{AUTH:-open}}), not {auth!r}")
        if "AUTH_SECRET" in env:
            p.check(env["AUTH_SECRET"] is None, w,
                    "AUTH_SECRET must be passed through from the environment (`AUTH_SECRET:` with no value): "
                    "a literal is a committed credential, and ${AUTH_SECRET} or ${AUTH_SECRET:-} become an "
                    f"empty string when unset, which the binary refuses (under {AUTH_SECRET_MIN_BYTES} bytes) "
                    "even with AUTH=open")
    for name in ("redis", "nginx", "prometheus", "grafana", "livekit"):
        p.check(name in services, where, f"missing service {name}")
    p.check("--appendonly" in " ".join(services.get("redis", {}).get("command", [])), where,
            "redis must run with --appendonly yes")
    p.check(any(str(x).startswith("8080:") for x in services.get("nginx", {}).get("ports", [])), where,
            "nginx must publish host port 8080")
    for name, svc in services.items():
        for dep in svc.get("depends_on", []) or []:
            p.check(dep in services, where, f"{name} depends on unknown service {dep}")
        for vol in svc.get("volumes", []) or []:
            src = str(vol).split(":")[0]
            if src.startswith("."):
                p.check((COMPOSE.parent / src).exists(), where, f"{name} mounts missing path {src}")

    # nginx: sticky upstream listing exactly the replicas, websocket headers.
    conf = NGINX.read_text(encoding="utf-8")
    upstream = re.search(r"upstream\s+\w+\s*\{(.*?)\}", conf, re.S)
    if p.check(upstream is not None, rel(NGINX), "no upstream block"):
        body = upstream.group(1)
        p.check(re.search(r"^\s*(hash\s+\$remote_addr\s+consistent|ip_hash)\s*;", body, re.M) is not None,
                rel(NGINX), "upstream needs sticky balancing (hash $remote_addr consistent or ip_hash)")
        found = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", body, re.M)
        servers = sorted(h for h, _ in found)
        p.check(servers == replicas, rel(NGINX), f"upstream servers {servers} != compose replicas {replicas}")
        for host, port in found:
            if host in ports:
                p.check(int(port) == ports[host][0], rel(NGINX),
                        f"upstream server {host}:{port} is not that replica's PORT {ports[host][0]}")
        # HEADER_TIMEOUT also closes idle keep-alive connections: nginx must drop its own first.
        if header_timeouts and re.search(r"^\s*keepalive\s+\d+\s*;", body, re.M):
            m = re.search(r"^\s*keepalive_timeout\s+(\d+)s?\s*;", body, re.M)
            keepalive = int(m.group(1)) if m else 60  # nginx's default
            p.check(keepalive < min(header_timeouts), rel(NGINX),
                    f"upstream keepalive_timeout {keepalive}s must be below the replicas' HEADER_TIMEOUT "
                    f"{min(header_timeouts)}s, or nginx reuses connections they are closing")
    for needle in ("proxy_set_header Upgrade", "proxy_set_header Connection", "proxy_http_version 1.1",
                   "proxy_buffering off"):
        p.check(needle in conf, rel(NGINX), f"missing `{needle}`")
    timeouts = [int(t) for t in re.findall(r"proxy_read_timeout\s+(\d+)s?;", conf)]
    p.check(bool(timeouts) and max(timeouts) > 45, rel(NGINX), "Socket.IO proxy_read_timeout must exceed 45 s")

    # LiveKit's webhooks: the livekit service POSTs them to nginx, which passes them on.
    upstream_name = re.search(r"upstream\s+(\w+)\s*\{", conf)
    location = nginx_location(conf, WEBHOOK_PATH)
    if p.check(location is not None, rel(NGINX), f"no location serves {WEBHOOK_PATH}"):
        p.check(upstream_name is not None and re.search(
            rf"^\s*proxy_pass\s+http://{upstream_name.group(1)}\s*;", location[1], re.M) is not None,
            rel(NGINX), f"location {location[0]} (which serves {WEBHOOK_PATH}) must proxy_pass to the replicas' "
            "upstream")
    listen = re.search(r"^\s*listen\s+(?:[\d.]+:)?(\d+)", conf, re.M)
    livekit = services.get("livekit", {})
    lk_env = compose_env(livekit)
    try:
        lk_conf = yaml.safe_load(lk_env.get("LIVEKIT_CONFIG") or "") or {}
    except yaml.YAMLError as e:
        lk_conf = {}
        p.add(where, f"livekit LIVEKIT_CONFIG is not YAML: {e}")
    hook = lk_conf.get("webhook") or {}
    urls = [str(u) for u in hook.get("urls") or []]
    expected_url = f"http://nginx:{listen.group(1) if listen else 80}{WEBHOOK_PATH}"
    p.check(expected_url in urls, where, f"livekit must send its webhooks to nginx: LIVEKIT_CONFIG "
            f"webhook.urls {urls} lacks {expected_url}")
    command = " ".join(str(c) for c in livekit.get("command") or [])
    lk_keys = lk_conf.get("keys") or ({"devkey": "secret"} if "--dev" in command else {})
    credentials: dict[tuple, list[str]] = {}
    for s in replicas:
        env = compose_env(services[s])
        credentials.setdefault((env.get("LIVEKIT_API_KEY"), env.get("LIVEKIT_API_SECRET")), []).append(s)
    for (key, secret), names in sorted(credentials.items(), key=str):
        p.check(hook.get("api_key") == key and key in lk_keys and str(lk_keys[key]) == str(secret), where,
                f"livekit signs its webhooks with key {hook.get('api_key')!r} and that key's secret: they "
                f"must be the LIVEKIT_API_KEY {key!r} and LIVEKIT_API_SECRET of {', '.join(names)}, or every "
                "webhook is refused (invalid_signature)")

    # Prometheus scrapes every replica, on its ops port.
    prom = yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in prom.get("scrape_configs", [])}
    if p.check(APP in jobs, rel(PROM_CONFIG), f"no scrape job {APP!r} (alerts use job=\"{APP}\")"):
        targets = sorted(t for sc in jobs[APP].get("static_configs", []) for t in sc["targets"])
        if all(ports[s][1] for s in replicas):
            expected = sorted(f"{s}:{ports[s][1]}" for s in replicas)
            p.check(targets == expected, rel(PROM_CONFIG),
                    f"targets {targets} != the compose replicas' ops ports {expected} (OPS_PORT)")
        else:  # a missing OPS_PORT is reported above; the hosts must still match
            hosts = sorted(t.split(":")[0] for t in targets)
            p.check(hosts == replicas, rel(PROM_CONFIG), f"targets {hosts} != compose replicas {replicas}")
        for sc in jobs[APP].get("static_configs", []):
            p.check("pod" in (sc.get("labels") or {}), rel(PROM_CONFIG),
                    f"target {sc['targets']} needs a pod label (dashboard and alerts group by pod)")
    # Grafana: the dashboard provider reads the directory compose mounts the JSON into.
    provider_file = ROOT / "deploy/grafana/provisioning/dashboards/switchboard.yml"
    provider = yaml.safe_load(provider_file.read_text(encoding="utf-8"))
    paths = {pr.get("options", {}).get("path") for pr in provider.get("providers", [])}
    mounts = {str(v).split(":")[1] for v in services.get("grafana", {}).get("volumes", [])
              if str(v).startswith("./grafana/dashboards")}
    p.check(bool(paths & mounts), rel(provider_file),
            f"provider path {sorted(map(str, paths))} is not where compose mounts the dashboards {sorted(mounts)}")
    ds = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    p.check(any(d.get("url", "").startswith("http://prometheus:9090") for d in ds), rel(DATASOURCES),
            "datasource must point at the compose prometheus service")
    return p.finish(f"{where}: {len(replicas)} replicas behind nginx and scraped by Prometheus on their ops port")


# --------------------------------------------------------------------------
# Dockerfile conventions (no hadolint offline)
# --------------------------------------------------------------------------

def cmd_dockerfile(args: argparse.Namespace) -> int:
    p = Problems()
    where = rel(DOCKERFILE)
    text = DOCKERFILE.read_text(encoding="utf-8")
    # Join continuation lines, drop comments.
    logical = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    instrs = [l.strip() for l in logical.splitlines() if l.strip()]
    froms = [l for l in instrs if l.upper().startswith("FROM ")]
    p.check(len(froms) >= 2, where, "must be a multi-stage build")
    final = froms[-1] if froms else ""
    p.check("distroless" in final or "slim" in final, where, f"runtime image should be small: {final}")
    last_stage = logical[logical.rfind(final):] if final else ""
    users = re.findall(r"^USER\s+(\S+)", last_stage, re.M)
    p.check(bool(users) and users[-1].split(":")[0] not in {"root", "0"}, where, "runtime stage must set a non-root USER")
    p.check(re.search(r"^EXPOSE\s+3000\b", last_stage, re.M) is not None, where, "runtime stage must EXPOSE 3000")
    ep = re.findall(r"^ENTRYPOINT\s+(.*)$", last_stage, re.M)
    if p.check(bool(ep), where, "runtime stage needs an ENTRYPOINT"):
        try:
            argv = json.loads(ep[-1])
            p.check(isinstance(argv, list) and argv[0].endswith("/switchboard"), where,
                    "ENTRYPOINT must exec the switchboard binary")
        except json.JSONDecodeError:
            p.add(where, "ENTRYPOINT must use the exec (JSON array) form: no shell in the image")
    p.check("LOG_FORMAT=json" in last_stage, where, "runtime stage must set LOG_FORMAT=json")
    p.check(logical.count("cargo build --release --locked --bin switchboard") >= 2, where,
            "needs a dependency-only build and the real build, both --release --locked --bin switchboard")
    copies = [l for l in instrs if l.upper().startswith("COPY ") and "--from" not in l]
    p.check(bool(copies) and "Cargo.lock" in copies[0] and "src" not in copies[0].split()[1:-1], where,
            "first COPY should bring only the manifests (dependency cache layer)")
    # Workspace members: cargo loads every member's manifest even to build one
    # binary, so the dependency stage must copy each manifest and stub it.
    cargo_toml = ROOT / "Cargo.toml"
    if cargo_toml.exists():
        import glob
        import tomllib
        manifest = tomllib.loads(cargo_toml.read_text(encoding="utf-8"))
        members = set()
        for pattern in manifest.get("workspace", {}).get("members", []):
            for path in glob.glob(str(ROOT / pattern)) or [str(ROOT / pattern)]:
                member = Path(path).resolve().relative_to(ROOT).as_posix()
                if member != ".":
                    members.add(member)
        for member in sorted(members):
            p.check(re.search(rf"^COPY\s+{re.escape(member)}/Cargo\.toml\s", logical, re.M) is not None, where,
                    f"workspace member {member}: its Cargo.toml must be copied before the dependency build")
            p.check(f"{member}/src/" in logical, where,
                    f"workspace member {member}: needs a stub src/main.rs or src/lib.rs in the dependency build")
    ignore = (ROOT / ".dockerignore")
    p.check(ignore.exists() and "target" in ignore.read_text(), ".dockerignore", "must exclude target/")
    return p.finish(f"{where}: multi-stage, cached dependencies, non-root, exec ENTRYPOINT")


# --------------------------------------------------------------------------
# Metric names and labels: declared by the service, present in a real scrape
# --------------------------------------------------------------------------

def used_metrics() -> dict[str, set[str]]:
    """Every metric name the dashboard and the alert rules query -> where."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used: dict[str, set[str]] = {}
    for source, queries in ((rel(DASHBOARD), dashboard_queries(dash)), (rel(ALERTS), alert_queries())):
        for where, q in queries:
            for name in metric_names(grafana_to_promql(q)):
                used.setdefault(name, set()).add(f"{source} {where}")
    return used


def first_use(uses: set[str]) -> str:
    more = f" and {len(uses) - 1} more" if len(uses) > 1 else ""
    return f"{sorted(uses)[0]}{more}"


def histogram_base(name: str, histograms: set[str]) -> str | None:
    """The histogram a `_bucket` / `_sum` / `_count` series belongs to, if any."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return name[: -len(suffix)]
    return None


def declared_metrics() -> tuple[set[str], set[str], set[str]]:
    """What src/ exports: (every `switchboard_*` string literal, the names bound to a
    `const`, the names recorded or described as histograms). The service spells every
    metric name out as a literal (src/telemetry/metrics.rs), usually as a const."""
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in sorted(SRC.rglob("*.rs"))]
    literal = re.compile(rf'"({APP}_[A-Za-z0-9_:]+)"')
    consts: dict[str, str] = {}
    names: set[str] = set()
    for text in texts:
        names.update(literal.findall(text))
        for m in re.finditer(rf"\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:'static\s+)?str\s*=\s*{literal.pattern}", text):
            consts[m.group(1)] = m.group(2)
    histograms: set[str] = set()
    for text in texts:
        for m in re.finditer(r'\b(?:describe_)?histogram!\s*\(\s*(?:(?:\w+::)*([A-Z][A-Z0-9_]*)\b|"([^"]+)")', text):
            name = consts.get(m.group(1)) if m.group(1) else m.group(2)
            if name:
                histograms.add(name)
    return names, set(consts.values()), histograms


def cmd_exports(args: argparse.Namespace) -> int:
    """Static: every metric the dashboard and the alerts query is one the service declares.
    Needs no build, so it catches a renamed or not-yet-written metric on every run; the
    scrape check (`metrics`) then confirms the names, types and labels in real output."""
    p = Problems()
    if not SRC.is_dir():
        print(f"  skipped: no {rel(SRC)} here")
        return 0
    names, const_names, histograms = declared_metrics()
    if not p.check(bool(names), rel(SRC), f"no {APP}_* metric name found in the sources"):
        return p.finish("")
    used = used_metrics()
    checked = 0
    for name in sorted(used):
        if name in SYNTHETIC_METRICS:
            continue
        checked += 1
        if histogram_base(name, histograms):
            continue
        if name in histograms:
            p.add(rel(SRC), f"{name} is a histogram: a query must use {name}_bucket, _sum or _count "
                  f"(used by {first_use(used[name])})")
        elif name not in names:
            hint = ""
            base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
            if base in names:
                hint = f" [{base} is declared, but not recorded as a histogram]"
            p.add(rel(SRC), f"metric {name} is not exported: no such name in {rel(SRC)} "
                  f"(used by {first_use(used[name])}){hint}")
    unused = sorted(n for n in const_names if n not in used and not any(histogram_base(u, {n}) for u in used))
    if unused:
        print(f"    note: declared but not used by the dashboard or alerts: {', '.join(unused)}")
    return p.finish(f"all {checked} metric names used by the dashboard and alerts are declared in {rel(SRC)} "
                    f"({len(histograms)} histograms queried by their series)")


def parse_scrape(path: Path) -> tuple[dict[str, list[dict[str, str]]], dict[str, str]]:
    """(sample name -> the label sets of its series, metric family name -> its TYPE or "")
    of a Prometheus/OpenMetrics text scrape."""
    series: dict[str, list[dict[str, str]]] = {}
    families: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 3 and parts[1] in {"TYPE", "HELP", "UNIT"}:
                families.setdefault(parts[2], "")
                if parts[1] == "TYPE" and len(parts) >= 4:
                    families[parts[2]] = parts[3]
            continue
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s", line)
        if m:
            labels = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:\\.|[^"\\])*)"', m.group(2) or ""))
            series.setdefault(m.group(1), []).append(labels)
    return series, families


SELECTOR = re.compile(r'([A-Za-z_:][A-Za-z0-9_:]*)\s*\{((?:[^{}"]|"(?:\\.|[^"\\])*")*)\}')
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"')
LITERAL_ALTERNATION = re.compile(r"[A-Za-z0-9_/:-]+(\|[A-Za-z0-9_/:-]+)*")


def paren_group(s: str, i: int, step: int) -> str | None:
    """The text inside the parenthesis at s[i] and its match (step 1: '(' forward; -1: ')' back)."""
    depth, j = 0, i
    while 0 <= j < len(s):
        depth += {"(": 1, ")": -1}.get(s[j], 0) * step
        if depth == 0:
            return s[i + 1:j] if step == 1 else s[j + 1:i]
        j += step
    return None


def label_uses(expr: str) -> list[tuple[list[str], str, str, str | None]]:
    """(metrics, label, operator, value) for every label a query relies on: each label
    matcher of a selector, and each label of a `by (...)` with the metrics it aggregates
    (operator "by", no value)."""
    out: list[tuple[list[str], str, str, str | None]] = []
    for m in SELECTOR.finditer(expr):
        if m.group(1) in PROMQL_KEYWORDS:
            continue
        for label, op, value in MATCHER.findall(m.group(2)):
            out.append(([m.group(1)], label, op, value))
    for m in re.finditer(r"\bby\s*\(([^()]*)\)", expr):
        j = m.end()
        while j < len(expr) and expr[j].isspace():
            j += 1
        inner = None
        if j < len(expr) and expr[j] == "(":        # sum by (x) (expr)
            inner = paren_group(expr, j, 1)
        else:                                       # sum (expr) by (x)
            i = m.start() - 1
            while i >= 0 and expr[i].isspace():
                i -= 1
            if i >= 0 and expr[i] == ")":
                inner = paren_group(expr, i, -1)
        metrics = sorted(metric_names(grafana_to_promql(inner))) if inner else []
        for label in (x.strip() for x in m.group(1).split(",")):
            if label:
                out.append((metrics, label, "by", None))
    return out


def check_scrape(scrape: Path, p: Problems) -> int:
    """Every metric name, label and literal label value the dashboard and the alerts use
    is in `scrape`. Returns how many metric names were checked."""
    series, families = parse_scrape(scrape)
    if not series:
        p.add(str(scrape), "no samples found: is this a /metrics scrape?")
        return 0
    used = used_metrics()

    def present(name: str) -> bool:
        if name in series or name in families:
            return True
        for suffix in HISTOGRAM_SUFFIXES + ("_total", "_created"):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                if base in families or f"{base}_bucket" in series or f"{base}_count" in series:
                    return True
        return False

    checked = 0
    for name in sorted(used):
        if name in SYNTHETIC_METRICS:
            continue
        checked += 1
        if families.get(name) in ("histogram", "summary") and name not in series:
            p.add(str(scrape), f"{name} is a {families[name]}: a query must use its _bucket, _sum or _count "
                  f"series (used by {first_use(used[name])})")
        elif not present(name):
            hint = (" [a counter or labelled series appears only once first incremented: exercise that"
                    " code path before scraping, or initialise it at 0 on startup]"
                    if name.endswith(("_total", "_bucket", "_count", "_sum")) else "")
            p.add(str(scrape), f"metric {name} is not exported (used by {first_use(used[name])}){hint}")

    # Labels: a misspelt label or value selects nothing, and an alert on nothing never fires.
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    seen_problems: set[tuple] = set()
    for source, queries in ((rel(DASHBOARD), dashboard_queries(dash)), (rel(ALERTS), alert_queries())):
        for where, q in queries:
            for metrics, label, op, value in label_uses(q):
                have = [m for m in metrics if m in series]
                if not have or label in TARGET_LABELS or label == "__name__":
                    continue
                if label == "le" and any(m.endswith("_bucket") for m in have):
                    continue
                names = {k for m in have for s in series[m] for k in s}
                key = (tuple(have), label, op, value)
                if key in seen_problems:
                    continue
                if label not in names:
                    seen_problems.add(key)
                    p.add(str(scrape), f"{source} {where}: {'/'.join(have)} has no label {label!r} "
                          f"(its labels: {', '.join(sorted(names)) or 'none'})")
                    continue
                if op == "=" and "$" not in value:
                    wanted = [value]
                elif op == "=~" and LITERAL_ALTERNATION.fullmatch(value):
                    wanted = value.split("|")
                else:
                    continue
                values = {s.get(label) for m in have for s in series[m]}
                missing = [v for v in wanted if v not in values]
                if missing:
                    seen_problems.add(key)
                    p.add(str(scrape), f"{source} {where}: no {'/'.join(have)} series with {label}="
                          f"{', '.join(repr(v) for v in missing)} (the scrape has {', '.join(sorted(values))})"
                          " [a misspelt value selects nothing; a correct one must be exercised before "
                          "scraping, or initialised at 0 on startup]")

    unused = sorted(f for f in families if f.startswith(f"{APP}_")
                    and not any(u == f or u.startswith(f + "_") for u in used))
    if unused:
        print(f"    note: exported but not used by the dashboard or alerts: {', '.join(unused)}")
    return checked


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def livekit_webhook_token(body: bytes, key: str, secret: str) -> str:
    """The `Authorization` LiveKit sends with a webhook: a bare HS256 JWT, issuer the API
    key, whose `sha256` claim is the base64 SHA-256 of the exact body."""
    import hashlib
    import hmac
    import time

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": key, "nbf": now - 5, "exp": now + 300,
              "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()}
    signing = f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64url(signature)}"


def scrape_binary(binary: Path, out: Path) -> bool:
    """Start `binary` on loopback with a throwaway redis-server (1 s ring timeout, 2 s call
    limit), drive every path that records a metric the dashboard or the alerts use (calls
    completed, declined, cancelled by a webhook, missed and expired; signed, repeated,
    unsigned and malformed LiveKit webhooks; rooms, tokens, a 404), then save its ops
    port's /metrics to `out`."""
    import secrets
    import signal
    import time
    import urllib.error
    import urllib.request

    # The Redis store: its metrics (command latency, connection state) exist only there.
    redis_server = shutil.which("redis-server")
    if not redis_server:
        print("  FAIL redis-server not found (Debian's redis-server; scripts/install-deps.sh installs it): "
              "the replicas' Redis metrics exist only with a Redis store")
        return False
    port, ops, redis_port = free_port(), free_port(), free_port()
    redis = subprocess.Popen([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    key, secret = "check-deploy", secrets.token_urlsafe(32)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOST": "127.0.0.1", "PORT": str(port),
           "OPS_PORT": str(ops), "REDIS_URL": f"redis://127.0.0.1:{redis_port}",
           "LIVEKIT_API_KEY": key, "LIVEKIT_API_SECRET": secret,
           "CALL_RING_TIMEOUT": "1", "CALL_MAX_DURATION": "2", "LOG_FORMAT": "json"}
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT)

    def request(method: str, path: str, body=None, headers=None, base=f"http://127.0.0.1:{port}"):
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"content-type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                status, text = res.status, res.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    steps: list[str] = []

    def step(what: str, status: int, want: int) -> bool:
        steps.append(f"{what} -> {status}{'' if status == want else f' (expected {want})'}")
        return status == want

    def webhook(event: dict, sign: bool = True):
        body = json.dumps(event).encode()
        headers = {"content-type": "application/webhook+json"}
        headers["authorization"] = livekit_webhook_token(body, key, secret if sign else "not-" + secret)
        return request("POST", WEBHOOK_PATH, body, headers)

    try:
        deadline = time.monotonic() + 20
        while request("GET", "/readyz", base=f"http://127.0.0.1:{ops}")[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = "\n      ".join(log.read().splitlines()[-15:])
                print(f"  FAIL {binary} did not become ready on 127.0.0.1:{ops}/readyz (exit "
                      f"{proc.poll()}):\n      {tail}")
                return False
            time.sleep(0.1)
        s, ana = request("POST", "/users", {"name": "Ana"})
        step("POST /users", s, 201)
        s, ben = request("POST", "/users", {"name": "Ben"})
        step("POST /users", s, 201)
        ana, ben = (ana or {}).get("id") if isinstance(ana, dict) else None, \
            (ben or {}).get("id") if isinstance(ben, dict) else None

        def call() -> dict:
            s, c = request("POST", "/calls", {"fromUserId": ana, "toUserId": ben})
            step("POST /calls", s, 201)
            return c if isinstance(c, dict) else {}

        completed, missed, expired, declined, finished = call(), call(), call(), call(), call()
        s, _ = request("POST", f"/calls/{completed.get('id')}/accept", {"userId": ben})
        step("POST /calls/:id/accept", s, 200)
        time.sleep(0.3)
        s, _ = request("POST", f"/calls/{completed.get('id')}/end", {"userId": ana})
        step("POST /calls/:id/end (completed)", s, 200)
        s, _ = request("POST", f"/calls/{expired.get('id')}/accept", {"userId": ben})
        step("POST /calls/:id/accept (to expire)", s, 200)
        s, _ = request("POST", f"/calls/{declined.get('id')}/decline", {"userId": ben, "reason": "busy"})
        step("POST /calls/:id/decline", s, 200)
        s, _ = request("POST", "/livekit/token", {"roomName": finished.get("roomName"), "userId": ana})
        step("POST /livekit/token", s, 200)
        room_finished = {"event": "room_finished", "id": f"EV_{secrets.token_hex(6)}",
                         "createdAt": str(int(time.time())),
                         "room": {"sid": "RM_check", "name": finished.get("roomName")}}
        s, _ = webhook(room_finished)
        step(f"POST {WEBHOOK_PATH} room_finished (applied)", s, 200)
        s, _ = webhook(room_finished)
        step(f"POST {WEBHOOK_PATH} the same event again (no second effect)", s, 200)
        s, _ = webhook({**room_finished, "id": f"EV_{secrets.token_hex(6)}"}, sign=False)
        step(f"POST {WEBHOOK_PATH} signed with another secret (invalid_signature)", s, 401)
        garbage = b"not a LiveKit event"
        s, _ = request("POST", WEBHOOK_PATH, garbage, {"content-type": "application/webhook+json",
                                                        "authorization": livekit_webhook_token(garbage, key, secret)})
        step(f"POST {WEBHOOK_PATH} signed, but no event (failed)", s, 400)
        s, _ = webhook({"event": "track_published", "id": f"EV_{secrets.token_hex(6)}",
                        "createdAt": str(int(time.time())), "room": {"sid": "RM_x", "name": "not-a-call"}})
        step(f"POST {WEBHOOK_PATH} track_published (ignored)", s, 200)
        s, room = request("POST", "/rooms", {"name": "Check"})
        step("POST /rooms", s, 201)
        s, _ = request("POST", f"/rooms/{(room or {}).get('id') if isinstance(room, dict) else None}/join",
                       {"userId": ana})
        step("POST /rooms/:id/join", s, 200)
        s, _ = request("GET", "/users/nobody")
        step("GET /users/nobody", s, 404)
        # The missed call's ring timeout (1 s) and the expired call's limit (2 s after its answer).
        deadline = time.monotonic() + 8
        pending = {"missed": missed.get("id"), "expired": expired.get("id")}
        while pending and time.monotonic() < deadline:
            for kind, cid in list(pending.items()):
                s, c = request("GET", f"/calls/{cid}")
                if isinstance(c, dict) and c.get("status") == "ended":
                    steps.append(f"call ended by its timer ({c.get('endReason')})")
                    del pending[kind]
            time.sleep(0.2)
        for kind in pending:
            steps.append(f"the {kind} call was not ended by its timer within 8 s")
        time.sleep(0.5)
        s, text = request("GET", "/metrics", base=f"http://127.0.0.1:{ops}")
        if not step("GET /metrics (ops port)", s, 200) or not isinstance(text, str):
            print(f"  FAIL could not scrape 127.0.0.1:{ops}/metrics")
            return False
        out.write_text(text, encoding="utf-8")
        return True
    finally:
        print(f"  {binary} on 127.0.0.1:{port} (ops {ops}):")
        for line in steps:
            print(f"    {line}")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        os.unlink(log.name)
        redis.terminate()
        redis.wait()


def cmd_metrics(args: argparse.Namespace) -> int:
    p = Problems()
    if args.binary:
        scrape = Path(args.save) if args.save else Path(tempfile.mkstemp(suffix=".txt")[1])
        try:
            if not scrape_binary(Path(args.binary), scrape):
                return 1
            checked = check_scrape(scrape, p)
        finally:
            if not args.save:
                scrape.unlink(missing_ok=True)
        where = f"a scrape of {args.binary}" + (f" (saved in {args.save})" if args.save else "")
    else:
        if not args.scrape:
            print("  a scrape file or --binary PATH is required")
            return 2
        scrape = Path(args.scrape)
        checked = check_scrape(scrape, p)
        where = str(scrape)
    return p.finish(f"all {checked} metric names used by the dashboard and alerts, with their labels and "
                    f"label values, are in {where}")


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen-prometheusrule")
    g.add_argument("--check", action="store_true", help="compare instead of writing")
    r = sub.add_parser("rules-match")
    r.add_argument("rendered", nargs="+")
    k = sub.add_parser("k8s")
    k.add_argument("--kube-version", action="append", default=None)
    k.add_argument("--forbid-latest", action="store_true")
    k.add_argument("--require-auth", choices=AUTH_MODES,
                   help="the render must run this AUTH mode (prod: token)")
    k.add_argument("rendered", nargs="+")
    d = sub.add_parser("dashboard")
    d.add_argument("--promtool", default=shutil.which("promtool")
                   or str(ROOT / ".venv/tools/prometheus/usr/bin/promtool"))
    sub.add_parser("compose")
    sub.add_parser("dockerfile")
    sub.add_parser("exports")
    m = sub.add_parser("metrics")
    m.add_argument("scrape", nargs="?", help="a saved `curl .../metrics` output")
    m.add_argument("--binary", help="start this switchboard binary, exercise it and scrape it instead")
    m.add_argument("--save", help="with --binary: keep the scrape in this file")
    args = ap.parse_args()
    if args.cmd == "k8s" and not args.kube_version:
        args.kube_version = ["1.37.0"]
    return {
        "gen-prometheusrule": cmd_gen_prometheusrule,
        "rules-match": cmd_rules_match,
        "k8s": cmd_k8s,
        "dashboard": cmd_dashboard,
        "compose": cmd_compose,
        "dockerfile": cmd_dockerfile,
        "exports": cmd_exports,
        "metrics": cmd_metrics,
    }[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
