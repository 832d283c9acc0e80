#!/usr/bin/env python3
"""Offline checks for the operations files (deploy/ and k8s/).

Driven by scripts/check-deploy.sh, which installs the tools and renders the
Kustomize overlays; each subcommand can also be run on its own:

  check_deploy.py gen-prometheusrule [--check]   write (or compare) k8s/base/prometheusrule.yaml
  check_deploy.py rules-match RENDERED...        PrometheusRule in each render == alerts.yml
  check_deploy.py k8s [--forbid-latest] [--kube-version V]... RENDERED...
  check_deploy.py dashboard --promtool PATH      dashboard JSON structure + PromQL parse
  check_deploy.py compose                        compose/nginx/prometheus consistency
  check_deploy.py dockerfile                     Dockerfile conventions
  check_deploy.py metrics SCRAPE                 every metric used by dashboard/alerts is in a /metrics scrape

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
            "HEADER_TIMEOUT": "20", "MAX_CONNECTIONS": "20000"}
# After DRAIN_PERIOD and SHUTDOWN_GRACE, a replica still closes its sockets, gives the ops
# port 1 s and closes Redis: the orchestrator's grace must leave this much on top.
SHUTDOWN_MARGIN = 5
# Memory a replica needs: ~29 KiB per idle websocket (loadtest/README.md, L4) on top of
# ~30 MiB at rest, rounded up to leave room for requests in flight.
BYTES_PER_CONNECTION = 29 * 1024
BYTES_AT_REST = 64 * 1024 * 1024
# Values a committed Secret may hold; anything else looks like a real credential.
PLACEHOLDER_SECRET_VALUES = {"change-me"}
# Series Prometheus makes itself rather than scraping them from the target.
SYNTHETIC_METRICS = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}


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


def configmap_data(docs: list[dict], name: str) -> dict:
    for d in docs:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == name:
            return d.get("data") or {}
    return {}


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
                    ann = ing["metadata"].get("annotations", {})
                    p.check(ann.get("nginx.ingress.kubernetes.io/affinity") == "cookie", w,
                            "Ingress needs cookie affinity for Socket.IO long-polling")
                    for key in ("proxy-read-timeout", "proxy-send-timeout"):
                        val = int(ann.get(f"nginx.ingress.kubernetes.io/{key}", "60"))
                        p.check(val > 45, w, f"Ingress {key} {val}s must exceed 25 s ping interval + 20 s timeout")

            # NetworkPolicy: the public port for the ingress controller, the ops port for Prometheus
            # (kubelet probes are not subject to NetworkPolicy).
            netpol = next((d for d in by_kind.get("NetworkPolicy", []) if d["metadata"]["name"] == APP), None)
            if netpol and "Ingress" in (netpol["spec"].get("policyTypes") or ["Ingress"]):
                def allowed(port: int, name: str) -> bool:
                    return any(not rule.get("ports") or any(pt.get("port") in (port, name) for pt in rule["ports"])
                               for rule in netpol["spec"].get("ingress") or [])
                p.check(allowed(3000, "http"), w, f"NetworkPolicy {APP} lets nothing reach the public port 3000")
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
# Metric names vs. a real /metrics scrape
# --------------------------------------------------------------------------

def scrape_names(path: Path) -> tuple[set[str], set[str]]:
    """(sample names, metric family names) of a Prometheus/OpenMetrics text scrape."""
    samples, families = set(), set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 3 and parts[1] in {"TYPE", "HELP", "UNIT"}:
                families.add(parts[2])
            continue
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)", line)
        if m:
            samples.add(m.group(1))
    return samples, families


def cmd_metrics(args: argparse.Namespace) -> int:
    p = Problems()
    scrape = Path(args.scrape)
    samples, families = scrape_names(scrape)
    if not samples:
        p.add(str(scrape), "no samples found: is this a /metrics scrape?")
        return p.finish("")
    known = samples | families
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used: dict[str, set[str]] = {}
    for source, queries in ((rel(DASHBOARD), dashboard_queries(dash)), (rel(ALERTS), alert_queries())):
        for where, q in queries:
            for name in metric_names(grafana_to_promql(q)):
                used.setdefault(name, set()).add(f"{source} {where}")

    def present(name: str) -> bool:
        if name in known:
            return True
        for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                if base in families or f"{base}_bucket" in samples or f"{base}_count" in samples:
                    return True
        return False

    checked = 0
    for name in sorted(used):
        if name in SYNTHETIC_METRICS:
            continue
        checked += 1
        if not present(name):
            first = sorted(used[name])[0]
            hint = (" [a counter or labelled series appears only once first incremented: exercise that"
                    " code path before scraping, or initialise it at 0 on startup]"
                    if name.endswith(("_total", "_bucket", "_count", "_sum")) else "")
            p.add(str(scrape), f"metric {name} is not exported (used by {first}"
                  f"{' and %d more' % (len(used[name]) - 1) if len(used[name]) > 1 else ''}){hint}")
    unused = sorted(f for f in families if f.startswith(f"{APP}_")
                    and not any(u == f or u.startswith(f + "_") for u in used))
    if unused:
        print(f"    note: exported but not used by the dashboard or alerts: {', '.join(unused)}")
    return p.finish(f"all {checked} metric names used by the dashboard and alerts are in {scrape}")


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
    k.add_argument("rendered", nargs="+")
    d = sub.add_parser("dashboard")
    d.add_argument("--promtool", default=shutil.which("promtool")
                   or str(ROOT / ".venv/tools/prometheus/usr/bin/promtool"))
    sub.add_parser("compose")
    sub.add_parser("dockerfile")
    m = sub.add_parser("metrics")
    m.add_argument("scrape")
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
        "metrics": cmd_metrics,
    }[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
