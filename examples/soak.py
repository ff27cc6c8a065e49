#!/usr/bin/env python3
"""A soak under a real Prometheus: nginx (plain and TLS), misbehaving peers, the exporter with
10,000 targets and Prometheus scraping it every 5 s with a 4 s timeout, for --minutes (30 by
default). At the end it asks Prometheus itself: was `up` ever 0, did a scrape take longer than
its timeout, did the exporter's memory and open files stay flat (first against last window),
were rounds and scrapes counted as expected. It prints one table.

    cargo build --release && python3 examples/soak.py --minutes 30

Needs nginx, prometheus and openssl (Debian packages of the same names). Everything listens on
127.0.0.1 on free ports; it stops what it started.
"""

import argparse
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

TARGETS = 10_000
SLOW, FAILING, TLS, REFUSED = 200, 200, 500, 100  # the rest are healthy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(program: str, package: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if not path:
        sys.exit(f"`{program}` is missing: apt-get install -y {package}")
    return path


class Peer(http.server.BaseHTTPRequestHandler):
    """`/slow` answers after 1 s, `/fail` with 500, `/reset` resets; the rest 200."""

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path.startswith("/reset"):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            self.connection.close()
            return
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class ThreadedServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def query(prom: str, q: str) -> list:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)["data"]["result"]


def scalar(prom: str, q: str) -> float:
    res = query(prom, q)
    return float(res[0]["value"][1]) if res else float("nan")


def count(prom: str, q: str) -> float:
    """A count that Prometheus answers with no series when it is zero."""
    res = query(prom, q)
    return float(res[0]["value"][1]) if res else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--window", type=float, default=5.0, help="minutes compared at start and end")
    ap.add_argument("--exporter", default="target/release/http_status_exporter")
    args = ap.parse_args()
    nginx, prometheus, openssl = need("nginx", "nginx"), need("prometheus", "prometheus"), need("openssl", "openssl")
    exporter = os.path.abspath(args.exporter)
    if not os.path.exists(exporter):
        sys.exit(f"{exporter} is missing: cargo build --release")
    window = min(args.window, args.minutes / 3)
    tmp = tempfile.mkdtemp(prefix="http_status_exporter-soak-")
    procs = []
    try:
        # nginx, plain and TLS (a certificate made now), full handshakes.
        def ssl(*a):
            subprocess.run([openssl, *a], check=True, capture_output=True)
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=soak CA",
            "-keyout", f"{tmp}/ca.key", "-out", f"{tmp}/ca.pem")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/leaf.csr")
        with open(f"{tmp}/ext", "w") as f:
            f.write("subjectAltName=DNS:localhost\n")
        ssl("x509", "-req", "-in", f"{tmp}/leaf.csr", "-CA", f"{tmp}/ca.pem", "-CAkey", f"{tmp}/ca.key",
            "-CAcreateserial", "-days", "30", "-extfile", f"{tmp}/ext", "-out", f"{tmp}/cert.pem")
        port, tls_port = free_port(), free_port()
        with open(f"{tmp}/nginx.conf", "w") as f:
            f.write(f"""daemon off; worker_processes 2; pid {tmp}/nginx.pid; error_log {tmp}/error.log crit;
events {{ worker_connections 16384; }}
http {{ access_log off; client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
  uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s; ssl_session_cache off; ssl_session_tickets off;
  server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200; }} }}
  server {{ listen 127.0.0.1:{tls_port} ssl backlog=4096; ssl_certificate {tmp}/cert.pem;
    ssl_certificate_key {tmp}/key.pem; location / {{ return 200; }} }} }}
""")
        procs.append(subprocess.Popen([nginx, "-p", tmp, "-c", f"{tmp}/nginx.conf", "-e", f"{tmp}/error.log"]))
        peer = ThreadedServer(("127.0.0.1", 0), Peer)
        threading.Thread(target=peer.serve_forever, daemon=True).start()
        peer_port = peer.server_address[1]
        closed = free_port()
        with open(f"{tmp}/targets.yaml", "w") as f:
            f.write(f"defaults: {{timeout: 3s}}\nmax_connections_per_host: 256\ntargets:\n")
            healthy = TARGETS - SLOW - FAILING - TLS - REFUSED
            for i in range(healthy):
                f.write(f"  - http://127.0.0.1:{port}/h{i}\n")
            for i in range(SLOW):
                f.write(f"  - http://127.0.0.1:{peer_port}/slow{i}\n")
            for i in range(FAILING // 2):
                f.write(f"  - http://127.0.0.1:{peer_port}/fail{i}\n")
                f.write(f"  - http://127.0.0.1:{peer_port}/reset{i}\n")
            for i in range(TLS):
                f.write(f"  - {{url: 'https://localhost:{tls_port}/t{i}', tls_config: {{ca_file: {tmp}/ca.pem}}}}\n")
            for i in range(REFUSED):
                f.write(f"  - http://127.0.0.1:{closed}/r{i}\n")
        exp_port = free_port()
        exp_log = open(f"{tmp}/exporter.log", "w")
        exp = subprocess.Popen([exporter, "--config.file", f"{tmp}/targets.yaml",
                                "--web.listen-address", f"127.0.0.1:{exp_port}"], stderr=exp_log)
        procs.append(exp)
        prom_port = free_port()
        with open(f"{tmp}/prometheus.yml", "w") as f:
            f.write(f"""global: {{scrape_interval: 5s, scrape_timeout: 4s}}
scrape_configs:
  - job_name: http_status_exporter
    static_configs: [{{targets: ['127.0.0.1:{exp_port}']}}]
""")
        procs.append(subprocess.Popen([prometheus, f"--config.file={tmp}/prometheus.yml",
                                       f"--storage.tsdb.path={tmp}/data",
                                       f"--web.listen-address=127.0.0.1:{prom_port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        prom = f"http://127.0.0.1:{prom_port}"
        started = time.time()
        print(f"soaking for {args.minutes:g} minutes (files in {tmp})", flush=True)
        while time.time() - started < args.minutes * 60:
            time.sleep(min(30, args.minutes * 60 - (time.time() - started)))
            if exp.poll() is not None:
                sys.exit(f"the exporter exited with {exp.returncode}")
        time.sleep(6)  # the last scrape lands
        span = f"{int(args.minutes * 60)}s"
        w = f"{int(window * 60)}s"
        offset = f"{int((args.minutes - window) * 60)}s"
        job = 'job="http_status_exporter"'
        expected_scrapes = args.minutes * 60 / 5
        rows = [
            ("scrapes Prometheus made", f"{scalar(prom, f'count_over_time(up{{{job}}}[{span}])'):.0f}",
             f"about {expected_scrapes:.0f}"),
            ("scrapes with up == 0", f"{count(prom, f'count_over_time((up{{{job}}} == 0)[{span}:5s])'):.0f}", "0"),
            ("longest scrape (s)", f"{scalar(prom, f'max_over_time(scrape_duration_seconds{{{job}}}[{span}])'):.3f}", "< 4 (the timeout)"),
            ("median scrape (s)", f"{scalar(prom, f'quantile_over_time(0.5, scrape_duration_seconds{{{job}}}[{span}])'):.3f}", ""),
            ("rounds counted by the exporter", f"{scalar(prom, f'max_over_time(http_status_exporter_rounds_total{{{job}}}[{span}])'):.0f}", "= scrapes"),
            ("scrapes counted by the exporter", f"{scalar(prom, f'max_over_time(http_status_exporter_scrapes_total{{{job}}}[{span}])'):.0f}", "= scrapes"),
            ("probes not started (most in a round)", f"{scalar(prom, f'max_over_time(http_status_exporter_round_probes_not_started{{{job}}}[{span}])'):.0f}", "0"),
            ("successes in the last round", f"{scalar(prom, f'sum(probe_success{{{job}}})'):.0f}",
             f"{TARGETS - FAILING - REFUSED} (slow ones answer in 1 s)"),
            (f"RSS, first {window:g} min (MiB)", f"{scalar(prom, f'avg_over_time(process_resident_memory_bytes{{{job}}}[{w}] offset {offset})') / 2**20:.1f}", ""),
            (f"RSS, last {window:g} min (MiB)", f"{scalar(prom, f'avg_over_time(process_resident_memory_bytes{{{job}}}[{w}])') / 2**20:.1f}", "flat"),
            (f"open fds, first {window:g} min (max)", f"{scalar(prom, f'max_over_time(process_open_fds{{{job}}}[{w}] offset {offset})'):.0f}", ""),
            (f"open fds, last {window:g} min (max)", f"{scalar(prom, f'max_over_time(process_open_fds{{{job}}}[{w}])'):.0f}", "flat"),
        ]
        print(f"\n| {args.minutes:g} minutes, {TARGETS} targets, scraped every 5 s (4 s timeout) | value | expected |")
        print("|---|---:|---|")
        for name, value, want in rows:
            print(f"| {name} | {value} | {want} |")
        return 0
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
