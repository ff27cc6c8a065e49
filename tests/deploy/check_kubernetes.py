#!/usr/bin/env python3
"""Checks of the Kubernetes manifests in deploy/kubernetes.

Usage: python3 tests/deploy/check_kubernetes.py [--exporter PATH] [--schemas]

Checks what a schema alone cannot: required fields, selectors that match the
pod template labels, Services whose selectors and target ports reach a
workload, probes on the exporter's port, the security context, the mounted
ConfigMap holding the file that --config.file names, the sharding flags, and
the ServiceMonitor's selector, port and timings.

With --exporter, the targets file of the ConfigMap is validated by the
exporter itself (`--config.check`), and the exporter is also run with the
StatefulSet's arguments, $(POD_NAME) replaced by the name of each of its pods
(http-status-exporter-0, -1, ...), the config file pointing at the
ConfigMap's targets file and a listen address on 127.0.0.1: each pod must
accept its flags, and the shards together must hold every target once. With --schemas, every built-in kind is
also validated against the Kubernetes OpenAPI schemas bundled with the
`kubernetes-validate` package (pip install kubernetes-validate), which works
offline.

Needs PyYAML (Debian package python3-yaml, or pip install pyyaml). Prints
`N passed, M failed` last and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import Checks  # noqa: E402

try:
    import yaml
except ImportError:
    print("PyYAML is missing: install the Debian package python3-yaml (or pip install pyyaml)")
    print("0 passed, 1 failed")
    sys.exit(1)

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy/kubernetes"
PORT = 9723
PORT_NAME = "http-metrics"
CONFIG_DIR = "/etc/http_status_exporter"
CONFIG_FILE = f"{CONFIG_DIR}/targets.yaml"
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")


C = Checks()


def seconds(d: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", d))


def load() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        try:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc is not None:
                    docs.append((path.name, doc))
        except yaml.YAMLError as e:
            C.check(f"{path.name} parses as YAML", False, str(e))
            continue
        C.check(f"{path.name} parses as YAML", True)
    return docs


def subset(small: dict, big: dict) -> bool:
    return bool(small) and all(big.get(k) == v for k, v in small.items())


def flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    for a, b in zip(args, args[1:]):
        if a == f"--{name}":
            return b
    return None


def check_common(where: str, doc: dict) -> None:
    C.check(f"{where}: apiVersion and kind", bool(doc.get("apiVersion")) and bool(doc.get("kind")))
    name = doc.get("metadata", {}).get("name", "")
    C.check(f"{where}: metadata.name is a DNS-1123 name", bool(DNS1123.match(name)) and len(name) <= 63, name)


def check_workload(where: str, doc: dict, configmaps: dict[str, dict]) -> tuple[dict, list[dict]]:
    spec = doc.get("spec", {})
    tmpl = spec.get("template", {})
    labels = tmpl.get("metadata", {}).get("labels", {})
    match = spec.get("selector", {}).get("matchLabels", {})
    C.check(f"{where}: selector.matchLabels match the pod template labels", subset(match, labels),
            f"{match} vs {labels}")
    pod = tmpl.get("spec", {})
    C.check(f"{where}: pod runs as non-root", pod.get("securityContext", {}).get("runAsNonRoot") is True)
    volumes = {v.get("name"): v for v in pod.get("volumes", [])}
    containers = pod.get("containers", [])
    C.check(f"{where}: has containers", bool(containers))
    for c in containers:
        cw = f"{where} container {c.get('name')}"
        C.check(f"{cw}: name and image", bool(c.get("name")) and bool(c.get("image")))
        ports = c.get("ports", [])
        C.check(f"{cw}: port {PORT} named {PORT_NAME}",
                any(p.get("containerPort") == PORT and p.get("name") == PORT_NAME for p in ports), str(ports))
        port_names = {p.get("name"): p.get("containerPort") for p in ports}
        for kind in ("livenessProbe", "readinessProbe"):
            probe = c.get(kind, {}).get("httpGet", {})
            port = probe.get("port")
            port = port_names.get(port, port)
            C.check(f"{cw}: {kind} GET /-/healthy on port {PORT}",
                    probe.get("path") == "/-/healthy" and port == PORT, str(c.get(kind)))
        sc = c.get("securityContext", {})
        C.check(f"{cw}: readOnlyRootFilesystem", sc.get("readOnlyRootFilesystem") is True)
        C.check(f"{cw}: allowPrivilegeEscalation false", sc.get("allowPrivilegeEscalation") is False)
        C.check(f"{cw}: drops ALL capabilities", "ALL" in sc.get("capabilities", {}).get("drop", []))
        C.check(f"{cw}: runAsNonRoot", sc.get("runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot"))
                is True)
        res = c.get("resources", {})
        C.check(f"{cw}: resource requests and limits for cpu and memory",
                all(k in res.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")), str(res))
        args = c.get("args", [])
        C.check(f"{cw}: --config.file={CONFIG_FILE}", flag(args, "config.file") == CONFIG_FILE, str(args))
        interval = flag(args, "config.auto-reload-interval")
        C.check(f"{cw}: --config.auto-reload-interval is a duration", bool(interval and DURATION.match(interval)),
                str(interval))
        mounts = {m.get("mountPath"): m for m in c.get("volumeMounts", [])}
        mount = mounts.get(CONFIG_DIR)
        C.check(f"{cw}: a volume is mounted at {CONFIG_DIR}", mount is not None, str(list(mounts)))
        for m in c.get("volumeMounts", []):
            C.check(f"{cw}: volumeMount {m.get('name')} names a volume", m.get("name") in volumes)
        if mount:
            C.check(f"{cw}: {CONFIG_DIR} is mounted without subPath (ConfigMap updates reach the pod)",
                    "subPath" not in mount)
            vol = volumes.get(mount.get("name"), {})
            cm_name = vol.get("configMap", {}).get("name")
            cm = configmaps.get(cm_name)
            C.check(f"{cw}: {CONFIG_DIR} is the ConfigMap {cm_name} of configmap.yaml", cm is not None)
            if cm is not None:
                C.check(f"{cw}: the ConfigMap has the key targets.yaml",
                        "targets.yaml" in cm.get("data", {}))
    return labels, containers


def check_statefulset(where: str, doc: dict, services: dict[str, dict], containers: list[dict]) -> None:
    spec = doc.get("spec", {})
    svc = services.get(spec.get("serviceName"))
    C.check(f"{where}: serviceName is a headless Service", svc is not None and svc["spec"].get("clusterIP") == "None",
            str(spec.get("serviceName")))
    replicas = spec.get("replicas")
    for c in containers:
        cw = f"{where} container {c.get('name')}"
        args = c.get("args", [])
        C.check(f"{cw}: --shard.count equals replicas ({replicas})", flag(args, "shard.count") == str(replicas),
                str(args))
        C.check(f"{cw}: --shard.index=$(POD_NAME)", flag(args, "shard.index") == "$(POD_NAME)", str(args))
        env = {e.get("name"): e for e in c.get("env", [])}
        ref = env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        C.check(f"{cw}: POD_NAME comes from metadata.name", ref == "metadata.name", str(env.get("POD_NAME")))


def check_shard_args(exporter: str, where: str, doc: dict, targets_text: str) -> None:
    """Runs `exporter --config.check` with the StatefulSet's arguments, as each pod would."""
    name = doc.get("metadata", {}).get("name", "")
    replicas = doc.get("spec", {}).get("replicas", 1)
    containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    with tempfile.TemporaryDirectory() as tmp:
        targets = Path(tmp) / "targets.yaml"
        targets.write_text(targets_text)
        p = subprocess.run([exporter, f"--config.file={targets}", "--config.check"],
                           capture_output=True, text=True, timeout=30)
        m = re.search(r"OK, (\d+) targets?", p.stdout + p.stderr)
        total = int(m.group(1)) if p.returncode == 0 and m else None
        for c in containers:
            cw = f"{where} container {c.get('name')}"
            counts = []
            for i in range(replicas if isinstance(replicas, int) else 1):
                pod = f"{name}-{i}"
                env = {"POD_NAME": pod}
                env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
                args = []
                for a in c.get("args", []):
                    a = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
                    if a.startswith("--config.file="):
                        a = f"--config.file={targets}"
                    elif a.startswith("--web.listen-address="):
                        a = "--web.listen-address=127.0.0.1:0"
                    args.append(a)
                cmd = [exporter, *args, "--config.check"]
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                out = (p.stdout + p.stderr).strip()
                shard = next((a for a in args if a.startswith("--shard.index")), "no --shard.index")
                C.check(f"{cw}: pod {pod}: --config.check with the container's args ({shard}) exits 0",
                        p.returncode == 0, f"exit {p.returncode} of {' '.join(cmd)}: {out}")
                m = re.search(r"OK, (\d+) targets?", out)
                counts.append(int(m.group(1)) if p.returncode == 0 and m else None)
            C.check(f"{cw}: the {len(counts)} shards together hold every target of targets.yaml once",
                    total is not None and None not in counts and sum(counts) == total,
                    f"shards {counts}, unsharded {total}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exporter", help="validate the ConfigMap's targets file with this binary")
    ap.add_argument("--schemas", action="store_true", help="also validate with kubernetes-validate")
    args = ap.parse_args()

    docs = load()
    for fname, doc in docs:
        check_common(f"{fname} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}", doc)
    by_kind: dict[str, list[tuple[str, dict]]] = {}
    for fname, doc in docs:
        by_kind.setdefault(doc.get("kind", ""), []).append((fname, doc))
    configmaps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    services = {d["metadata"]["name"]: d for _, d in by_kind.get("Service", [])}
    expected = {
        "configmap.yaml": {"ConfigMap"},
        "deployment.yaml": {"Deployment"},
        "service.yaml": {"Service"},
        "servicemonitor.yaml": {"ServiceMonitor"},
        "statefulset-sharded.yaml": {"StatefulSet", "Service"},
    }
    for fname, kinds in expected.items():
        got = {d.get("kind") for f, d in docs if f == fname}
        C.check(f"{fname} holds {sorted(kinds)}", got == kinds, str(sorted(got)))

    # The targets file in the ConfigMap.
    for fname, cm in by_kind.get("ConfigMap", []):
        text = cm.get("data", {}).get("targets.yaml")
        if text is None:
            continue
        parsed = yaml.safe_load(text)
        C.check(f"{fname}: targets.yaml has a non-empty targets list",
                isinstance(parsed, dict) and isinstance(parsed.get("targets"), list) and bool(parsed["targets"]))
        if args.exporter:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                f.write(text)
                f.flush()
                p = subprocess.run([args.exporter, f"--config.file={f.name}", "--config.check"],
                                   capture_output=True, text=True, timeout=30)
            C.check(f"{fname}: the exporter accepts targets.yaml (--config.check)", p.returncode == 0,
                    p.stdout + p.stderr)

    # Workloads and the Services that select them.
    pods: list[tuple[str, dict, list[dict]]] = []
    for kind in ("Deployment", "StatefulSet"):
        for fname, doc in by_kind.get(kind, []):
            where = f"{fname} {kind}/{doc['metadata']['name']}"
            labels, containers = check_workload(where, doc, configmaps)
            pods.append((where, labels, containers))
            if kind == "StatefulSet":
                check_statefulset(where, doc, services, containers)
                if args.exporter:
                    cm_texts = [cm.get("data", {}).get("targets.yaml") for _, cm in by_kind.get("ConfigMap", [])]
                    cm_texts = [t for t in cm_texts if t is not None]
                    if C.check(f"{where}: a ConfigMap holds targets.yaml for the shard check", len(cm_texts) == 1):
                        check_shard_args(args.exporter, where, doc, cm_texts[0])

    for fname, svc in by_kind.get("Service", []):
        where = f"{fname} Service/{svc['metadata']['name']}"
        sel = svc.get("spec", {}).get("selector", {})
        targets = [(w, cs) for w, labels, cs in pods if subset(sel, labels)]
        C.check(f"{where}: selector matches exactly one workload's pods", len(targets) == 1,
                f"{sel} matches {[w for w, _ in targets]}")
        ports = svc.get("spec", {}).get("ports", [])
        C.check(f"{where}: port {PORT} named {PORT_NAME}",
                any(p.get("port") == PORT and p.get("name") == PORT_NAME for p in ports), str(ports))
        for p in ports:
            tp = p.get("targetPort", p.get("port"))
            reach = any(cp.get("name") == tp or cp.get("containerPort") == tp
                        for _, cs in targets for c in cs for cp in c.get("ports", []))
            C.check(f"{where}: targetPort {tp} is a container port", reach)

    for fname, sm in by_kind.get("ServiceMonitor", []):
        where = f"{fname} ServiceMonitor/{sm['metadata']['name']}"
        C.check(f"{where}: apiVersion monitoring.coreos.com/v1", sm.get("apiVersion") == "monitoring.coreos.com/v1")
        spec = sm.get("spec", {})
        sel = spec.get("selector", {}).get("matchLabels", {})
        selected = [s for s in services.values() if subset(sel, s.get("metadata", {}).get("labels", {}))]
        C.check(f"{where}: selects the exporter's Services", bool(selected), str(sel))
        for ep in spec.get("endpoints", []):
            C.check(f"{where}: endpoint port {ep.get('port')} is a port name of every selected Service",
                    all(any(p.get("name") == ep.get("port") for p in s["spec"].get("ports", [])) for s in selected))
            C.check(f"{where}: path /metrics", ep.get("path", "/metrics") == "/metrics")
            iv, to = ep.get("interval", ""), ep.get("scrapeTimeout", "")
            C.check(f"{where}: interval 30s, scrapeTimeout 25s", (iv, to) == ("30s", "25s"), f"{iv} {to}")
            C.check(f"{where}: scrapeTimeout below interval", 0 < seconds(to) < seconds(iv))
            job = [r for r in ep.get("relabelings", []) if r.get("targetLabel") == "job"]
            C.check(f"{where}: sets job=http_status_exporter, as the rules and dashboard expect",
                    any(r.get("replacement") == "http_status_exporter" for r in job), str(job))

    if args.schemas:
        try:
            import kubernetes_validate
        except ImportError:
            C.check("kubernetes-validate is installed", False, "pip install kubernetes-validate")
        else:
            version = kubernetes_validate.latest_version()
            for fname, doc in docs:
                if doc.get("kind") == "ServiceMonitor":
                    continue  # a custom resource: no bundled schema
                where = f"{fname} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                    C.check(f"{where}: valid against the Kubernetes {version} schema", True)
                except Exception as e:  # noqa: BLE001 - any validation error is a failure
                    C.check(f"{where}: valid against the Kubernetes {version} schema", False, str(e)[:500])

    return C.summary()


if __name__ == "__main__":
    sys.exit(main())
