#!/usr/bin/env python3
"""End-to-end test of the deployment and dashboard files against real tools.

Usage: python3 tests/deploy/e2e.py --exporter PATH_TO_BINARY

Starts nginx (serving /ok 200, /missing 404, /broken 500 over HTTP, and
/ok 200 over HTTPS with a certificate for localhost that expires in 30 days,
signed by a CA generated for the run with the `openssl` command), the exporter
probing those and a refused port, and Prometheus running the shipped scrape
job (deploy/prometheus/prometheus.yml with shorter intervals) and the shipped
alerting rules. Then:

* promtool checks the shipped configs and rules and runs the rules' unit
  tests;
* every query of the Grafana dashboard, those over probe_ssl_* and
  probe_tls_* included, runs against Prometheus and must return data;
* every alert expression must be a valid query naming only metrics the
  exporter exposes, and TargetDown, WrongStatusCode,
  ExporterConfigReloadFailed and ExporterDown must select what they should;
  CertificateExpiringSoon must not select the 30-day certificate, while the
  same expression with its threshold raised to 60 days must.

Needs nginx (with the ssl module), prometheus (prometheus and promtool) and
openssl. Only the standard library is used and all traffic stays on
127.0.0.1 (and ::1 where localhost resolves to it). Prints `N passed, M
failed` last and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import Checks, Fatal  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROM_CONFIG = REPO / "deploy/prometheus/prometheus.yml"
RULES = REPO / "deploy/prometheus/rules/http_status_exporter.rules.yml"
RULES_TEST = REPO / "deploy/prometheus/rules/http_status_exporter.rules.test.yml"
DOCKER_PROM_CONFIG = REPO / "deploy/docker/prometheus.yml"
COMPOSE = REPO / "deploy/docker/compose.yaml"
DASHBOARD = REPO / "grafana/dashboards/http_status_exporter.json"
GRAFANA_DATASOURCES = REPO / "grafana/provisioning/datasources/prometheus.yml"
GRAFANA_DASHBOARDS = REPO / "grafana/provisioning/dashboards/dashboards.yml"

JOB = "http_status_exporter"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Series that Prometheus itself adds to every scrape or rule evaluation.
SYNTHETIC = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}
# Validity of the generated server certificate, in days: more than
# CertificateExpiringSoon's threshold, less than EXPIRY_RAISED.
CERT_DAYS = 30
EXPIRY_RAISED = 60
DEADLINE = time.monotonic() + 150


C = Checks()


# --------------------------------------------------------------------------
# Helpers


def free_port() -> int:
    """A port that was free a moment ago: bound to 127.0.0.1:0, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ipv6_port_free(port: int) -> bool:
    """Whether [::1]:port can be bound (there is a loopback IPv6 address)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", port))
        return True
    except OSError:
        return False


def make_certificates(openssl: str, d: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf certificate for localhost and 127.0.0.1 that it signed.

    Returns the CA certificate, the leaf certificate and the leaf's key. The
    leaf is valid for CERT_DAYS days, the CA for longer, so that the earliest
    expiry of the chain is the leaf's.
    """
    d.mkdir()
    (d / "ca.cnf").write_text("""[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = http_status_exporter e2e test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
""")
    (d / "leaf.cnf").write_text("""[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
""")
    ca, ca_key = d / "ca.pem", d / "ca.key"
    leaf, leaf_key, csr = d / "leaf.pem", d / "leaf.key", d / "leaf.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ("CA", [openssl, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca),
                "-days", str(EXPIRY_RAISED * 3), "-config", str(d / "ca.cnf")]),
        ("certificate request", [openssl, "req", "-new", *ec, "-keyout", str(leaf_key), "-out", str(csr),
                                 "-config", str(d / "leaf.cnf")]),
        ("signed certificate", [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                                "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
                                "-days", str(CERT_DAYS), "-sha256",
                                "-extfile", str(d / "leaf.cnf"), "-extensions", "leaf", "-out", str(leaf)]),
    ]
    for what, cmd in steps:
        code, out = run(cmd)
        if code != 0:
            C.fatal(f"openssl creates the {what}", out)
    code, out = run([openssl, "verify", "-CAfile", str(ca), "-purpose", "sslserver", str(leaf)])
    C.check(f"openssl generates a CA and a {CERT_DAYS}-day certificate for localhost that it signed",
            code == 0, out)
    return ca, leaf, leaf_key


def tls_handshake(port: int, ca: Path) -> str:
    """The protocol of a verified TLS handshake with localhost on 127.0.0.1:port."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.version() or ""


def find_tool(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        C.fatal(f"{name} is installed", f"{name} not found on PATH: install the Debian package `{package}`")
    return path


def http(url: str, data: bytes | None = None, method: str | None = None, timeout: float = 5,
         headers: dict[str, str] | None = None) -> tuple[int, str]:
    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_http(url: str, what: str, proc: subprocess.Popen, log: Path, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            C.fatal(f"{what} starts", f"exited with {proc.returncode}: {tail(log)}")
        try:
            if http(url, timeout=1)[0] == 200:
                C.check(f"{what} starts", True)
                return
        except OSError:
            pass
        time.sleep(0.2)
    C.fatal(f"{what} starts", f"{url} did not answer 200 within {seconds}s: {tail(log)}")


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n" + "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def run(cmd: list[str], cwd: Path | None = None) -> tuple[int, str]:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).strip()


def metric_names(expr: str) -> set[str]:
    """Metric names that a PromQL expression selects."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    named = set(re.findall(r'__name__\s*=\s*"([^"]*)"', expr))
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    keywords = {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
        "bool", "offset", "atan2", "inf", "nan", "Inf", "NaN",
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
    names = set(named)
    for m in re.finditer(r"(?P<num>\d[\w.]*)|(?P<id>[A-Za-z_:][\w:]*)", s):
        ident = m.group("id")
        if not ident or ident in keywords:
            continue
        if re.match(r"\s*\(", s[m.end():]):
            continue  # a function call
        names.add(ident)
    return names


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def api(self, path: str, **params: str) -> dict:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http(url, timeout=10)
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "error": f"HTTP {status}: {body[:200]}"}

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def result(self, expr: str) -> list[dict]:
        r = self.query(expr)
        if r.get("status") != "success":
            raise Fatal(f"query {expr!r}: {r.get('error')}")
        return r["data"]["result"]

    def wait_for(self, expr: str, cond, seconds: float) -> list[dict]:
        end = min(time.monotonic() + seconds, DEADLINE)
        res: list[dict] = []
        while time.monotonic() < end:
            r = self.query(expr)
            if r.get("status") == "success":
                res = r["data"]["result"]
                if cond(res):
                    return res
            time.sleep(0.5)
        return res


def targets_of(result: list[dict]) -> set[str]:
    return {s["metric"].get("target", "") for s in result}


# --------------------------------------------------------------------------
# Static checks of the shipped files


def check_static(promtool: str, tmp: Path) -> None:
    code, out = run([promtool, "check", "config", str(PROM_CONFIG)])
    C.check("promtool check config deploy/prometheus/prometheus.yml", code == 0, out)
    code, out = run([promtool, "check", "rules", str(RULES)])
    C.check("promtool check rules", code == 0, out)
    code, out = run([promtool, "test", "rules", RULES_TEST.name], cwd=RULES_TEST.parent)
    C.check("promtool test rules", code == 0, out)

    # The rules' unit tests cover every alert, both firing and not firing.
    alerts = re.findall(r"^\s*-\s*alert:\s*(\S+)", RULES.read_text(), re.M)
    test_text = RULES_TEST.read_text()
    for alert in alerts:
        blocks = re.findall(
            rf"alertname:\s*{re.escape(alert)}\s*\n(\s*)exp_alerts:(.*?)(?=\n\s*- eval_time:|\n  - interval:|\Z)",
            test_text, re.S)
        firing = any(body.strip() and body.strip() != "[]" for _, body in blocks)
        silent = any(body.strip() == "[]" for _, body in blocks)
        C.check(f"rules unit tests cover {alert} firing and not firing", firing and silent,
                f"firing={firing} not_firing={silent}")

    # The compose stack's Prometheus config, with its in-container rules path
    # pointed at the shipped rules.
    text = DOCKER_PROM_CONFIG.read_text()
    C.check("deploy/docker/prometheus.yml scrapes exporter:9723",
            "- exporter:9723" in text and f"job_name: {JOB}" in text)
    conf = tmp / "docker-prometheus.yml"
    conf.write_text(text.replace("/etc/prometheus/rules/", f"{RULES.parent}/"))
    code, out = run([promtool, "check", "config", str(conf)])
    C.check("promtool check config deploy/docker/prometheus.yml", code == 0, out)

    compose = COMPOSE.read_text()
    C.check("compose.yaml mounts the Prometheus config and rules",
            "./prometheus.yml:/etc/prometheus/prometheus.yml" in compose
            and "../prometheus/rules:/etc/prometheus/rules" in compose)
    provider = GRAFANA_DASHBOARDS.read_text()
    m = re.search(r"^\s*path:\s*(\S+)", provider, re.M)
    C.check("Grafana provisions the dashboards directory that compose.yaml mounts",
            m is not None and f"../../grafana/dashboards:{m.group(1)}:ro" in compose
            and "../../grafana/provisioning:/etc/grafana/provisioning" in compose,
            m.group(1) if m else "no path in dashboards.yml")
    C.check("Grafana datasource points at the compose Prometheus",
            re.search(r"^\s*type:\s*prometheus\s*$", GRAFANA_DATASOURCES.read_text(), re.M) is not None
            and "url: http://prometheus:9090" in GRAFANA_DATASOURCES.read_text())


def panels_of(panels: list[dict]):
    for p in panels:
        yield p
        yield from panels_of(p.get("panels", []))


def check_dashboard_static(dash: dict) -> list[tuple[str, str]]:
    C.check("dashboard has no __inputs", "__inputs" not in dash)
    C.check("dashboard uid is http-status-exporter", dash.get("uid") == "http-status-exporter", dash.get("uid"))
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}

    def var_query(v: dict) -> str:
        q = v.get("query")
        return q.get("query", "") if isinstance(q, dict) else (q or "")

    ds = variables.get("datasource", {})
    C.check("variable datasource: type datasource, query prometheus",
            ds.get("type") == "datasource" and ds.get("query") == "prometheus", str(ds))
    job = variables.get("job", {})
    C.check("variable job: label_values(probe_success, job)",
            job.get("type") == "query" and var_query(job) == "label_values(probe_success, job)", str(job))
    target = variables.get("target", {})
    C.check("variable target: label_values(probe_success{job=~\"$job\", group=~\"$group\"}, target), multi, includeAll",
            target.get("type") == "query"
            and var_query(target) == 'label_values(probe_success{job=~"$job", group=~"$group"}, target)'
            and target.get("multi") is True and target.get("includeAll") is True, str(target))
    group = variables.get("group", {})
    C.check("variable group: label_values(probe_success{job=~\"$job\"}, group), multi, All matches no group",
            group.get("type") == "query"
            and var_query(group) == 'label_values(probe_success{job=~"$job"}, group)'
            and group.get("multi") is True and group.get("includeAll") is True
            and group.get("allValue") == ".*", str(group))
    for name in ("job", "group", "target"):
        C.check(f"variable {name} uses the datasource variable", variables.get(name, {}).get("datasource") == DATASOURCE)

    exprs: list[tuple[str, str]] = []
    ids = []
    for p in panels_of(dash.get("panels", [])):
        ids.append(p.get("id"))
        title = p.get("title", "?")
        if p.get("type") == "row":
            continue
        C.check(f"panel {title!r}: datasource is ${{datasource}}", p.get("datasource") == DATASOURCE,
                str(p.get("datasource")))
        targets = p.get("targets", [])
        C.check(f"panel {title!r}: has queries", bool(targets))
        for t in targets:
            C.check(f"panel {title!r} query {t.get('refId')}: datasource is ${{datasource}}",
                    t.get("datasource") == DATASOURCE, str(t.get("datasource")))
            if t.get("expr"):
                exprs.append((f"{title} {t.get('refId')}", t["expr"]))
    C.check("dashboard panel ids are unique", len(ids) == len(set(ids)), str(ids))
    return exprs


def substitute(expr: str) -> str:
    """Replace the dashboard's variables by values that select everything."""
    in_matchers = [m.span(1) for m in re.finditer(r'=~\s*"([^"]*)"', expr)]
    for m in re.finditer(r"\$\{?(target|job|group)\b", expr):
        if not any(a <= m.start() < b for a, b in in_matchers):
            raise ValueError(f"${m.group(1)} outside a =~ matcher")

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name in ("target", "job"):
            return ".+"
        if name == "group":
            # All: targets of every group, and those of a file without groups.
            return ".*"
        if name in ("__rate_interval", "__interval", "__range"):
            return "1m"
        raise ValueError(f"unknown variable ${name}")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


# --------------------------------------------------------------------------
# The live test


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exporter", required=True, help="path to the http_status_exporter binary")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    exporter = Path(args.exporter).resolve()

    tmp = Path(tempfile.mkdtemp(prefix="http_status_exporter-e2e-"))
    procs: list[tuple[str, subprocess.Popen]] = []

    def start(name: str, cmd: list[str]) -> tuple[subprocess.Popen, Path]:
        log = tmp / f"{name}.log"
        with open(log, "wb") as f:
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        procs.append((name, p))
        return p, log

    try:
        if not (exporter.is_file() and os.access(exporter, os.X_OK)):
            C.fatal("exporter binary exists", f"{exporter} is not an executable file")
        nginx = find_tool("nginx", "nginx")
        promtool = find_tool("promtool", "prometheus")
        prometheus = find_tool("prometheus", "prometheus")
        openssl = find_tool("openssl", "openssl")

        check_static(promtool, tmp)
        dash = json.loads(DASHBOARD.read_text())
        exprs = check_dashboard_static(dash)

        # nginx with /ok, /missing and /broken, and /ok over HTTPS.
        ca, cert, key = make_certificates(openssl, tmp / "tls")
        nginx_port = free_port()
        tls_port = free_port()
        # Where localhost also resolves to ::1, the HTTPS server answers there too.
        tls_listen_v6 = f"listen [::1]:{tls_port} ssl;" if ipv6_port_free(tls_port) else ""
        ngx = tmp / "nginx"
        ngx.mkdir()
        (ngx / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {ngx}/nginx.pid;
error_log {ngx}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {ngx}/access.log;
    client_body_temp_path {ngx}/client_body;
    proxy_temp_path {ngx}/proxy;
    fastcgi_temp_path {ngx}/fastcgi;
    uwsgi_temp_path {ngx}/uwsgi;
    scgi_temp_path {ngx}/scgi;
    server {{
        listen 127.0.0.1:{nginx_port};
        location = /ok {{ return 200 "ok\\n"; }}
        location = /missing {{ return 404; }}
        location = /broken {{ return 500; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        {tls_listen_v6}
        server_name localhost;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location = /ok {{ return 200 "ok\n"; }}
    }}
}}
""")
        ngx_proc, ngx_log = start("nginx", [nginx, "-p", str(ngx), "-e", str(ngx / "error.log"),
                                            "-c", str(ngx / "nginx.conf")])
        wait_http(f"http://127.0.0.1:{nginx_port}/ok", "nginx", ngx_proc, ngx_log)
        try:
            version = tls_handshake(tls_port, ca)
            C.check("nginx serves HTTPS for localhost with the generated certificate",
                    version in ("TLSv1.2", "TLSv1.3"), version)
        except (OSError, ssl.SSLError) as e:
            C.fatal("nginx serves HTTPS for localhost with the generated certificate",
                    f"{type(e).__name__}: {e}{tail(ngx / 'error.log')}")

        site = f"http://127.0.0.1:{nginx_port}"
        refused = f"http://127.0.0.1:{free_port()}/refused"
        ok_url, missing_url, broken_url = f"{site}/ok", f"{site}/missing", f"{site}/broken"
        tls_url = f"https://localhost:{tls_port}/ok"
        targets = tmp / "targets.yaml"
        targets_text = f"""targets:
  - {ok_url}
  - url: {missing_url}
    name: missing
  - url: {broken_url}
    name: broken
  - url: {refused}
    name: refused
    timeout: 1s
  - url: {tls_url}
    name: tls
    tls_config: {{ca_file: {json.dumps(str(ca))}}}
"""
        targets.write_text(targets_text)

        exporter_port = free_port()
        exporter_addr = f"127.0.0.1:{exporter_port}"
        exp_proc, exp_log = start("exporter", [str(exporter), "--config.file", str(targets),
                                               "--web.listen-address", exporter_addr, "--web.enable-lifecycle"])
        wait_http(f"http://{exporter_addr}/-/healthy", "exporter", exp_proc, exp_log)
        status, metrics = http(f"http://{exporter_addr}/metrics",
                               headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"})
        C.check("exporter /metrics answers 200", status == 200, str(status))
        exposed = set(re.findall(r"^# (?:HELP|TYPE) ([A-Za-z_:][\w:]*)", metrics, re.M))
        exposed |= set(re.findall(r"^([A-Za-z_:][\w:]*)[{ ]", metrics, re.M))
        C.check("exporter exposes probe_success for every target",
                all(f'target="{u}"' in metrics for u in (ok_url, missing_url, broken_url, refused, tls_url)))
        C.check("exporter probes the HTTPS target successfully, verifying it against tls_config.ca_file",
                re.search(rf'^probe_success\{{[^}}]*target="{re.escape(tls_url)}"[^}}]*\}} 1$', metrics, re.M)
                is not None,
                "\n".join(line for line in metrics.splitlines()
                          if tls_url in line and line.startswith(("probe_success", "probe_failure_reason"))
                          and line.endswith(" 1")))
        for name in ("probe_ssl_earliest_cert_expiry", "probe_tls_version_info"):
            C.check(f"exporter exposes {name} for the HTTPS target",
                    re.search(rf'^{name}\{{[^}}]*target="{re.escape(tls_url)}"', metrics, re.M) is not None)
        mfile = tmp / "metrics.txt"
        mfile.write_text(metrics)
        with open(mfile) as f:
            p = subprocess.run([promtool, "check", "metrics"], stdin=f, capture_output=True, text=True, timeout=30)
        C.check("promtool check metrics on the exporter's /metrics", p.returncode == 0, p.stdout + p.stderr)

        # Prometheus with the shipped scrape job, made faster.
        text = PROM_CONFIG.read_text()
        replacements = [
            ("localhost:9723", exporter_addr),
            ("scrape_interval: 30s", "scrape_interval: 1s"),
            ("scrape_timeout: 25s", "scrape_timeout: 1s"),
            ("evaluation_interval: 30s", "evaluation_interval: 1s"),
            ("- rules/http_status_exporter.rules.yml", f"- {RULES}"),
        ]
        for old, new in replacements:
            C.check(f"shipped prometheus.yml contains {old!r}", text.count(old) == 1, f"found {text.count(old)} times")
            text = text.replace(old, new)
        C.check("shipped prometheus.yml has the job http_status_exporter with metrics_path /metrics",
                f"job_name: {JOB}" in text and "metrics_path: /metrics" in text)
        prom_conf = tmp / "prometheus.yml"
        prom_conf.write_text(text)
        code, out = run([promtool, "check", "config", str(prom_conf)])
        C.check("promtool check config on the generated prometheus.yml", code == 0, out)

        prom_port = free_port()
        prom_base = f"http://127.0.0.1:{prom_port}"
        prom_proc, prom_log = start("prometheus", [
            prometheus, "--config.file", str(prom_conf), "--storage.tsdb.path", str(tmp / "data"),
            "--web.listen-address", f"127.0.0.1:{prom_port}", "--web.enable-lifecycle",
            "--log.level", "warn"])
        wait_http(f"{prom_base}/-/ready", "prometheus", prom_proc, prom_log, seconds=40)
        prom = Prometheus(prom_base)

        up = prom.wait_for(f'up{{job="{JOB}"}} == 1', bool, 60)
        C.check("Prometheus scrapes the exporter (up == 1)", bool(up), tail(prom_log))
        if not up:
            raise Fatal("exporter is not up")
        scrapes = prom.wait_for(f'count_over_time(up{{job="{JOB}"}}[1m]) >= 6', bool, 30)
        C.check("Prometheus scraped the exporter several times", bool(scrapes))

        # Template variable queries, the way Grafana runs label_values().
        r = prom.api("label/job/values", **{"match[]": "probe_success"})
        C.check("label_values(probe_success, job) lists http_status_exporter", JOB in r.get("data", []), str(r))
        r = prom.api("label/target/values", **{"match[]": 'probe_success{job=~".+"}'})
        C.check("label_values(probe_success{job=~\"$job\"}, target) lists every target",
                {ok_url, missing_url, broken_url, refused, tls_url} <= set(r.get("data", [])), str(r))

        # What Prometheus stored for the HTTPS target.
        sel = f'{{job="{JOB}", target="{tls_url}"}}'
        res = prom.result(f"probe_success{sel}")
        C.check("Prometheus: probe_success of the HTTPS target is 1",
                [s["value"][1] for s in res] == ["1"], str(res))
        res = prom.result(f"(probe_ssl_earliest_cert_expiry{sel} - time()) / 86400")
        days = [float(s["value"][1]) for s in res]
        C.check(f"Prometheus: probe_ssl_earliest_cert_expiry of the HTTPS target is {CERT_DAYS} days ahead",
                len(days) == 1 and CERT_DAYS - 1 < days[0] <= CERT_DAYS + 0.01, str(days))
        res = prom.result(f"probe_tls_version_info{sel}")
        versions = {s["metric"].get("version"): s["value"][1] for s in res}
        C.check("Prometheus: probe_tls_version_info of the HTTPS target is 1 for TLS 1.2 or 1.3",
                len(versions) == 1 and list(versions.values()) == ["1"]
                and re.search(r"1\.[23]", next(iter(versions), "") or "") is not None, str(versions))

        # Every dashboard query.
        for title, expr in exprs:
            try:
                q = substitute(expr)
            except ValueError as e:
                C.check(f"dashboard {title}: variables", False, f"{e}: {expr}")
                continue
            names = metric_names(q)
            unknown = names - exposed - SYNTHETIC
            C.check(f"dashboard {title}: names only exposed metrics", not unknown, f"{sorted(unknown)} in {q}")
            r = prom.query(q)
            if r.get("status") != "success":
                C.check(f"dashboard {title}: valid query", False, f"{r.get('error')}: {q}")
                continue
            C.check(f"dashboard {title}: returns data", bool(r["data"]["result"]), q)

        # Every alerting rule, as Prometheus loaded it.
        shipped_alerts = re.findall(r"^\s*-\s*alert:\s*(\S+)", RULES.read_text(), re.M)
        loaded = {}
        for group in prom.api("rules", type="alert").get("data", {}).get("groups", []):
            for rule in group["rules"]:
                loaded[rule["name"]] = rule
        C.check("Prometheus loaded every alerting rule", sorted(loaded) == sorted(shipped_alerts),
                f"{sorted(loaded)} != {sorted(shipped_alerts)}")
        for name, rule in sorted(loaded.items()):
            expr = rule["query"]
            r = prom.query(expr)
            C.check(f"alert {name}: valid query", r.get("status") == "success", f"{r.get('error')}: {expr}")
            unknown = metric_names(expr) - exposed - SYNTHETIC
            C.check(f"alert {name}: names only exposed metrics", not unknown, f"{sorted(unknown)} in {expr}")
            C.check(f"alert {name}: evaluates without error", not rule.get("lastError"), rule.get("lastError", ""))

        def alert_expr(name: str) -> str:
            if name not in loaded:
                raise Fatal(f"alert {name} not loaded")
            return loaded[name]["query"]

        failing = {missing_url, broken_url, refused}
        res = prom.result(alert_expr("TargetDown"))
        C.check("TargetDown without `for` selects the 404, 500 and refused targets, not /ok",
                targets_of(res) == failing, str(sorted(targets_of(res))))
        res = prom.result(alert_expr("WrongStatusCode"))
        codes = {s["metric"].get("target"): s["value"][1] for s in res}
        C.check("WrongStatusCode without `for` selects 404 and 500 with the status code as value",
                codes == {missing_url: "404", broken_url: "500"}, str(codes))
        for name in ("SlowResponse", "CertificateExpiringSoon", "CertificateExpired",
                     "ExporterConfigReloadFailed", "ExporterDown", "ExporterAbsent", "ExporterRoundNearTimeout"):
            if name in loaded:
                res = prom.result(alert_expr(name))
                C.check(f"{name} selects nothing while all is well", not res, str(res))

        # CertificateExpiringSoon: the 30-day certificate is not selected, but
        # it is once the threshold is raised to 60 days.
        soon = alert_expr("CertificateExpiringSoon")
        m = re.search(r"/\s*86400\s*<\s*(\d+(?:\.\d+)?)", soon)
        C.check(f"CertificateExpiringSoon has a threshold in days below {CERT_DAYS}",
                m is not None and float(m.group(1)) < CERT_DAYS, soon)
        res = prom.result(soon)
        C.check(f"CertificateExpiringSoon without `for` does not select the {CERT_DAYS}-day certificate",
                tls_url not in targets_of(res), str(res))
        raised, n = re.subn(r"(/\s*86400\s*<\s*)\d+(?:\.\d+)?", rf"\g<1>{EXPIRY_RAISED}", soon)
        if n == 1:
            res = prom.result(raised)
            C.check(f"CertificateExpiringSoon with the threshold raised to {EXPIRY_RAISED} days selects "
                    f"the {CERT_DAYS}-day certificate and nothing else",
                    targets_of(res) == {tls_url}, f"{res} for {raised}")
        else:
            C.check(f"CertificateExpiringSoon's threshold can be raised to {EXPIRY_RAISED} days", False,
                    f"found {n} thresholds `/ 86400 < N` in {soon}")
        res = prom.result(alert_expr("CertificateExpired"))
        C.check(f"CertificateExpired does not select the {CERT_DAYS}-day certificate",
                tls_url not in targets_of(res), str(res))

        pending = prom.wait_for('ALERTS{alertname="TargetDown", alertstate="pending"}',
                                lambda r: targets_of(r) == failing, 15)
        C.check("TargetDown is pending for the failing targets", targets_of(pending) == failing,
                str(sorted(targets_of(pending))))

        # A broken targets file: the reload fails and the alert's expression
        # selects the exporter; a fixed file clears it.
        targets.write_text("targets: [1\n")
        status, body = http(f"http://{exporter_addr}/-/reload", data=b"", method="POST")
        C.check("a broken targets file is refused by POST /-/reload", status >= 400, f"{status} {body}")
        res = prom.wait_for(alert_expr("ExporterConfigReloadFailed"), bool, 15)
        C.check("ExporterConfigReloadFailed without `for` selects the exporter after a failed reload",
                len(res) == 1 and res[0]["metric"].get("instance") == exporter_addr, str(res))
        targets.write_text(targets_text)
        status, body = http(f"http://{exporter_addr}/-/reload", data=b"", method="POST")
        C.check("the fixed targets file reloads", status == 200, f"{status} {body}")
        res = prom.wait_for(alert_expr("ExporterConfigReloadFailed"), lambda r: not r, 15)
        C.check("ExporterConfigReloadFailed clears after a good reload", not res, str(res))

        # The exporter stops: ExporterDown's expression selects it.
        exp_proc.send_signal(signal.SIGTERM)
        exp_proc.wait(timeout=10)
        res = prom.wait_for(alert_expr("ExporterDown"), bool, 15)
        C.check("ExporterDown without `for` selects the stopped exporter",
                len(res) == 1 and res[0]["metric"].get("instance") == exporter_addr, str(res))
        res = prom.result(alert_expr("ExporterAbsent"))
        C.check("ExporterAbsent stays silent while the job has a target", not res, str(res))
    except Fatal as e:
        if not C.failed or C.failed[-1] != str(e):
            C.check("test run", False, str(e))
    except Exception as e:  # noqa: BLE001 - report any crash as a failed check
        C.check("test run", False, f"{type(e).__name__}: {e}")
    finally:
        # Each process leads its own process group (start_new_session), so
        # nginx's workers go with their master.
        for _name, p in reversed(procs):
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if args.keep or C.failed:
            print(f"logs and files: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    return C.summary()


if __name__ == "__main__":
    sys.exit(main())
