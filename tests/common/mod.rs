//! Shared test fixtures: free ports, a real nginx with a temporary config, certificates made at
//! test time, the exporter binary on a free port, and a tiny HTTP client.
#![allow(dead_code)]

pub mod blackbox;
pub mod dns;
pub mod netns;
pub mod peer;
pub mod proxy;
pub mod recorder;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released), and never handed
/// out before in this process: the kernel may give a released port again at once, and two
/// servers of one fixture (nginx's plain and TLS ports) or of two tests running side by side
/// must not be told the same port.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A port nothing listens on: bound, then closed.
pub fn closed_port() -> u16 {
    free_port()
}

/// Find a program on PATH or in the sbin folders; fail naming the Debian package if absent.
pub fn find_program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/sbin", "/usr/bin"]) {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed: install the Debian package `{package}` (apt-get install -y {package})"
    );
}

/// Percent-encode a query value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Headless Chromium on `url` with `extra` flags (`--dump-dom`, `--screenshot=F`), in a
/// profile of its own, without the background traffic this closed network refuses.
pub fn chromium(url: &str, window: (u32, u32), extra: &[String]) -> std::process::Output {
    let chromium = find_program("chromium", "chromium");
    let profile = tempfile::tempdir().unwrap();
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--window-size={},{}", window.0, window.1))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap()
}

/// Wait until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, within: Duration) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr} after {within:?}");
}

/// A child process killed (by pid) when dropped.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Keeps temporary files alive as long as the process.
    pub dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by pid.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate authority made at test time.
pub struct Pki {
    /// The CA certificate and its signing key.
    pub ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// Parameters of a CA certificate named `name`.
fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Pki {
    /// A fresh self-signed CA.
    pub fn new(name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        Pki {
            ca: rcgen::CertifiedIssuer::self_signed(ca_params(name), key).unwrap(),
        }
    }

    /// An intermediate CA signed by this one, valid for `days` more days.
    pub fn intermediate(&self, name: &str, days: i64) -> Pki {
        let mut params = ca_params(name);
        params.not_before = time_now() - time::Duration::days(1);
        params.not_after = time_now() + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        Pki {
            ca: rcgen::CertifiedIssuer::signed_by(params, key, &self.ca).unwrap(),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A server certificate for `names`, valid from `not_before_days` to `not_after_days`
    /// relative to now, as (cert PEM, key PEM).
    pub fn leaf(
        &self,
        names: &[&str],
        not_before_days: i64,
        not_after_days: i64,
    ) -> (String, String) {
        self.issue(
            names,
            not_before_days,
            not_after_days,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate named `name`, valid for a year, as (cert PEM, key PEM).
    pub fn client(&self, name: &str) -> (String, String) {
        self.issue(&[name], -1, 365, rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// Issue a certificate.
    fn issue(
        &self,
        names: &[&str],
        not_before_days: i64,
        not_after_days: i64,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = time_now() + time::Duration::days(not_before_days);
        params.not_after = time_now() + time::Duration::days(not_after_days);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Now as the `time` crate's date-time (used by rcgen).
pub fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// A running nginx with a temporary config.
pub struct Nginx {
    /// The process.
    pub proc: Proc,
    /// Plain HTTP port (on 127.0.0.1 and ::1).
    pub port: u16,
    /// TLS port on 127.0.0.1, if TLS servers were configured.
    pub tls_ports: Vec<u16>,
}

/// The locations every test nginx serves.
pub const LOCATIONS: &str = r#"
        location = /ok { return 200 "ok\n"; }
        location = /nocontent { return 204; }
        location = /moved { return 301 /ok; }
        location = /found { return 302 /ok; }
        location = /missing { return 404; }
        location = /broken { return 500; }
        location / { return 200 "root\n"; }
"#;

/// One TLS server block: cert and key PEM, and extra nginx directives.
pub struct TlsServer {
    /// Certificate chain PEM (leaf first).
    pub cert_pem: String,
    /// Key PEM.
    pub key_pem: String,
    /// Extra directives, like `ssl_protocols TLSv1.2;`.
    pub extra: String,
}

impl Nginx {
    /// Start nginx with a plain server on 127.0.0.1 and [::1] and one TLS server per entry.
    pub fn start(tls: &[TlsServer]) -> Nginx {
        Nginx::start_with(tls, "")
    }

    /// [`Nginx::start`] with `extra` directives in every server before [`LOCATIONS`], where
    /// `{port}` stands for the plain port and `{tls0}`, `{tls1}`, ... for the TLS ports.
    pub fn start_with(tls: &[TlsServer], extra: &str) -> Nginx {
        let nginx = find_program("nginx", "nginx");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let port = free_port();
        let tls_ports: Vec<u16> = tls.iter().map(|_| free_port()).collect();
        let mut extra = extra.replace("{port}", &port.to_string());
        for (i, p) in tls_ports.iter().enumerate() {
            extra = extra.replace(&format!("{{tls{i}}}"), &p.to_string());
        }
        let locations = format!("{extra}{LOCATIONS}");
        let mut servers = format!(
            "    server {{\n        listen 127.0.0.1:{port};\n        listen [::1]:{port};\n{locations}    }}\n"
        );
        for (i, t) in tls.iter().enumerate() {
            let p = tls_ports[i];
            std::fs::write(dir.path().join(format!("tls{i}.crt")), &t.cert_pem).unwrap();
            std::fs::write(dir.path().join(format!("tls{i}.key")), &t.key_pem).unwrap();
            servers.push_str(&format!(
                "    server {{\n        listen 127.0.0.1:{p} ssl;\n        ssl_certificate {d}/tls{i}.crt;\n        ssl_certificate_key {d}/tls{i}.key;\n        {}\n{locations}    }}\n",
                t.extra
            ));
        }
        // A large response body, for tests that must not read it.
        std::fs::write(dir.path().join("big.bin"), vec![b'x'; 16 << 20]).unwrap();
        servers = servers.replace(
            "location / {",
            &format!("location = /big {{ alias {d}/big.bin; }}\n        location / {{"),
        );
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_rlimit_nofile 65536;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 16384; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{servers}}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let proc = Proc {
            child,
            dir: Some(dir),
        };
        wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
        for p in &tls_ports {
            wait_listening(([127, 0, 0, 1], *p).into(), Duration::from_secs(10));
        }
        Nginx {
            proc,
            port,
            tls_ports,
        }
    }
}

/// The exporter binary running on a free port.
pub struct Exporter {
    /// The process.
    pub proc: Proc,
    /// Where it listens (the first address).
    pub addr: SocketAddr,
    /// Every address it listens on.
    pub addresses: Vec<SocketAddr>,
    /// Log lines after the start-up line are read by a thread into this.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Path of the exporter binary built by cargo for these tests.
pub fn exporter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_http_status_exporter")
}

impl Exporter {
    /// Start the exporter on `config` (written to a temp file) with extra flags.
    pub fn start(config: &str, extra: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("targets.yaml");
        std::fs::write(&path, config).unwrap();
        let mut e = Exporter::start_file(&path, extra);
        e.proc.dir = Some(dir);
        e
    }

    /// Start the exporter on an existing targets file.
    pub fn start_file(path: &Path, extra: &[&str]) -> Exporter {
        Exporter::start_with(Path::new(exporter_bin()), path, extra)
    }

    /// Start `program` (the exporter or a wrapper that runs it) on a targets file.
    pub fn start_with(program: &Path, path: &Path, extra: &[&str]) -> Exporter {
        // A free loopback port, unless the flags say where to listen.
        let listens = extra.iter().any(|a| {
            a.starts_with("--web.listen-address") || a.starts_with("--web.systemd-socket")
        });
        let default_listen: &[&str] = if listens {
            &[]
        } else {
            &["--web.listen-address", "127.0.0.1:0"]
        };
        let mut child = Command::new(program)
            .arg("--config.file")
            .arg(path)
            .args(default_listen)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut addr = None;
        let mut addresses = Vec::new();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("msg=listening") {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(name))
                        .map(str::to_owned)
                };
                addr = Some(field("address=").unwrap().parse().unwrap());
                addresses = field("addresses=")
                    .unwrap()
                    .split(',')
                    .map(|a| a.parse().unwrap())
                    .collect();
                break;
            }
            seen.push(line);
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!("exporter did not start:\n{}", seen.join("\n"));
        };
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Exporter {
            proc: Proc { child, dir: None },
            addr,
            addresses,
            log,
        }
    }

    /// Scrape `/metrics`, announcing `timeout` seconds like Prometheus does.
    pub fn scrape(&self, timeout: Option<f64>) -> String {
        let mut headers = Vec::new();
        if let Some(t) = timeout {
            headers.push(format!("X-Prometheus-Scrape-Timeout-Seconds: {t}"));
        }
        let r = http(self.addr, "GET", "/metrics", &headers);
        assert_eq!(r.status, 200, "scrape failed: {}", r.body);
        r.body
    }
}

/// A response read by [`http`].
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Raw header block.
    pub head: String,
    /// Body as text.
    pub body: String,
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), read to the end.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[String]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).trim_end().to_owned();
    let mut body = raw[split..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    if head.to_ascii_lowercase().contains("content-encoding: gzip") {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .unwrap();
        body = plain;
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Response {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Decode an HTTP/1.1 chunked body.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The value of the first sample of `metric` whose labels contain every `label="value"` pair.
pub fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
                let end = r.rfind('}')?;
                (&r[..end], r[end + 1..].trim())
            } else if rest.starts_with(' ') {
                ("", rest.trim())
            } else {
                return None;
            };
            let all = labels
                .iter()
                .all(|(k, v)| label_part.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse().ok()).flatten()
        })
        .next()
}

/// `sample` for a target.
pub fn target_sample(text: &str, metric: &str, target: &str) -> Option<f64> {
    sample(text, metric, &[("target", target)])
}

/// The failure reason reported for `target`, if any.
pub fn reason(text: &str, target: &str) -> Option<String> {
    let needle = format!("target=\"{target}\"");
    text.lines()
        .filter(|l| l.starts_with("probe_failure_reason{") && l.contains(&needle))
        .find_map(|l| {
            let i = l.find("reason=\"")? + 8;
            let j = l[i..].find('"')?;
            Some(l[i..i + j].to_owned())
        })
}

/// The system resolver (getaddrinfo), as library users get it without configuring one.
#[allow(dead_code)]
pub fn system_resolver() -> http_status_exporter::dns::Resolver {
    use http_status_exporter::dns::{Backend, Resolver, Settings};
    let settings = Settings {
        backend: Backend::System,
        ..Settings::default()
    };
    Resolver::load(&settings, 4096).expect("the system resolver loads")
}

/// Start Prometheus with `conf` on a free port; it is stopped when the returned process drops.
pub fn prometheus(conf: &str) -> (Proc, SocketAddr) {
    let program = find_program("prometheus", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let conf_path = dir.path().join("prometheus.yml");
    std::fs::write(&conf_path, conf).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(program)
        .arg(format!("--config.file={}", conf_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc {
        child,
        dir: Some(dir),
    };
    wait_listening(addr, Duration::from_secs(20));
    (proc, addr)
}

/// The result of an instant query to Prometheus at `prom`; empty while it answers otherwise
/// than 200 (503 until its storage is open).
pub fn prometheus_query(prom: SocketAddr, q: &str) -> Vec<serde_json::Value> {
    let r = http(
        prom,
        "GET",
        &format!("/api/v1/query?query={}", url_encode(q)),
        &[],
    );
    if r.status != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// A rustls server configuration with `cert` and `key` (PEM) that asks for a client
/// certificate issued by `client_ca`: required, or only verified when one is given.
pub fn tls_server_config(
    cert: &str,
    key: &str,
    client_ca: &str,
    required: bool,
) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(client_ca.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    let verifier = if required {
        builder.build()
    } else {
        builder.allow_unauthenticated().build()
    }
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    Arc::new(config)
}
