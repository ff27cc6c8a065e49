//! A real forward HTTP proxy from Debian on a free loopback port, with a temporary config, for
//! the exporter's proxy support: plain `http` targets sent in absolute form
//! (`GET http://127.0.0.1:PORT/ok HTTP/1.1`), `https` targets through `CONNECT host:port`.
//!
//! ```ignore
//! let p = Proxy::start(ProxyOpts { deny_ports: vec![nginx_tls_port], ..Default::default() });
//! // ... probe through p.url() (http://127.0.0.1:PORT) ...
//! p.wait_request(&format!("CONNECT 127.0.0.1:{nginx_tls_port}"), Duration::from_secs(5));
//! ```
//!
//! Both proxies do every option ([`ProxyOpts`]), so a test of how the exporter meets a proxy
//! can run over [`ProxyKind::ALL`]: real proxies differ in their answers and in when they log.
//! Both listen on 127.0.0.1 only, run in the foreground, keep every file in their temporary
//! folder, reach any destination (tests use 127.0.0.1 and ::1; names come from `/etc/hosts`),
//! and with both `basic_auth` and `deny_ports` answer a request without credentials 407,
//! whatever its port. Each starts in 10 to 30 ms and is killed by pid on drop.
//!
//! - [`ProxyKind::Tinyproxy`], the default (Debian package `tinyproxy`, 1.11 on bookworm): one
//!   process that logs each request line as it arrives, so [`Proxy::requests`] is up to date
//!   as soon as an answer comes. No `ConnectPort` line, which allows CONNECT to every port
//!   (with one, only the listed ports). Basic authentication is its `BasicAuth` line; refused
//!   ports are a `Filter` of regexes on the URL (`FilterURLs On`), which for CONNECT is
//!   `host:port`. No `User`: as root it warns and stays root. Answers:
//!   - no credentials: `HTTP/1.0 407 Proxy Authentication Required`,
//!     `Proxy-Authenticate: Basic realm="Tinyproxy"`;
//!   - a wrong password: `HTTP/1.0 401 Unauthorized` with `WWW-Authenticate` (a quirk; see
//!     [`ProxyKind::wrong_credentials_status`]);
//!   - a refused port, GET or CONNECT: `HTTP/1.1 403 Filtered`;
//!   - CONNECT: `HTTP/1.0 200 Connection established`;
//!   - nothing listening, or a name it cannot resolve: `HTTP/1.1 500 Unable to connect`.
//!
//!   Its own answers say `Connection: close`.
//! - [`ProxyKind::Squid`] (Debian package `squid`, 5.7 on bookworm): the proxy most sites run.
//!   Its config is written from scratch, so none of the stock `Safe_ports`, `SSL_ports` or
//!   `to_localhost` rules apply: `http_access` asks for credentials, then refuses the listed
//!   ports (`acl ... port`, the destination port of CONNECT and GET alike), then allows all.
//!   Basic authentication goes through `basic_ncsa_auth` and a bcrypt password file (libxcrypt's
//!   `crypt` checks it: no `htpasswd` or `openssl` needed). Started as root it runs as the user
//!   `proxy`, so its folder is handed to that user. Its DNS server is 127.0.0.1:53, where
//!   nothing answers, with a 1 s timeout; IP destinations need none. Answers:
//!   - no or wrong credentials: `HTTP/1.1 407 Proxy Authentication Required`,
//!     `Proxy-Authenticate: Basic realm="test-proxy"`, `X-Squid-Error: ERR_CACHE_ACCESS_DENIED`;
//!   - a refused port, GET or CONNECT: `HTTP/1.1 403 Forbidden`,
//!     `X-Squid-Error: ERR_ACCESS_DENIED`;
//!   - CONNECT: `HTTP/1.1 200 Connection established`;
//!   - nothing listening: `HTTP/1.1 503 Service Unavailable`; a name not in `/etc/hosts`:
//!     `HTTP/1.1 502 Bad Gateway` after 1 s.
//!
//!   It keeps the client connection open after a refusal unless the request said
//!   `Connection: close`. It logs a request when the transaction ends (a CONNECT when its
//!   tunnel closes), so wait for one with [`Proxy::wait_request`]. Killed, it leaves its auth
//!   helpers to exit on their own (they read end of file) and to be reaped by init.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Proc, find_program, free_port};

/// How long a proxy may take to listen before the start fails.
const START_WITHIN: Duration = Duration::from_secs(10);

/// Which proxy program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyKind {
    /// tinyproxy: small, logs requests as they arrive.
    #[default]
    Tinyproxy,
    /// squid: the common one, logs requests when they end.
    Squid,
}

impl ProxyKind {
    /// Every kind, for tests that run against each.
    pub const ALL: [ProxyKind; 2] = [ProxyKind::Tinyproxy, ProxyKind::Squid];

    /// The program's name.
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Tinyproxy => "tinyproxy",
            ProxyKind::Squid => "squid",
        }
    }

    /// The status it answers a request whose `Proxy-Authorization` has a wrong password:
    /// squid asks again with 407; tinyproxy 1.11 answers `401 Unauthorized` with a
    /// `WWW-Authenticate` header (407 only when the header is missing).
    pub fn wrong_credentials_status(self) -> u16 {
        match self {
            ProxyKind::Tinyproxy => 401,
            ProxyKind::Squid => 407,
        }
    }
}

/// What the proxy demands and refuses.
#[derive(Debug, Clone, Default)]
pub struct ProxyOpts {
    /// Which proxy runs.
    pub kind: ProxyKind,
    /// Demand Basic authentication with this user and password (no whitespace, no `:` in the
    /// user, no `"` for tinyproxy); without it the proxy asks for none.
    pub basic_auth: Option<(String, String)>,
    /// Destination ports refused with 403, for CONNECT and plain requests alike.
    pub deny_ports: Vec<u16>,
}

/// A running proxy; stopped when dropped.
pub struct Proxy {
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    /// The process (with the temporary folder of its config and logs).
    pub proc: Proc,
    /// Which proxy this is.
    pub kind: ProxyKind,
    /// The log [`Proxy::requests`] reads: tinyproxy's log, squid's access log.
    request_log: PathBuf,
    /// What tells why it failed: tinyproxy's log, squid's cache log, and the captured output.
    diagnostics: Vec<PathBuf>,
}

/// The header a client sends to authenticate to the proxy, as one `Name: value` line.
pub fn proxy_authorization(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Proxy-Authorization: Basic {token}")
}

impl Proxy {
    /// Start a proxy as `opts` says and wait until it listens; fails naming the Debian
    /// package if the program is missing, and with the proxy's own log if it does not start.
    pub fn start(opts: ProxyOpts) -> Proxy {
        if let Some((user, password)) = &opts.basic_auth {
            assert!(
                !user.is_empty()
                    && !user.contains([':', '"'])
                    && !format!("{user}{password}").contains(char::is_whitespace)
                    && !password.contains('"'),
                "proxy credentials {user:?} cannot be written to a {} config",
                opts.kind.name()
            );
        }
        let program = match opts.kind {
            ProxyKind::Tinyproxy => find_program("tinyproxy", "tinyproxy"),
            ProxyKind::Squid => find_program("squid", "squid"),
        };
        // The port was free a moment ago; if something took it meanwhile, the proxy exits and
        // another port is tried.
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Proxy::try_start(&program, &opts) {
                Ok(p) => return p,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "{} did not start:\n{}",
            opts.kind.name(),
            failures.join("\n---\n")
        );
    }

    /// One attempt on a fresh port: the proxy listening, or why it did not.
    fn try_start(program: &Path, opts: &ProxyOpts) -> Result<Proxy, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (args, request_log, diagnostics) = match opts.kind {
            ProxyKind::Tinyproxy => tinyproxy_config(dir.path(), port, opts),
            ProxyKind::Squid => squid_config(dir.path(), port, opts),
        };
        let out = dir.path().join("output.txt");
        let out_file = std::fs::File::create(&out).unwrap();
        let child = Command::new(program)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().unwrap())
            .stderr(out_file)
            .spawn()
            .unwrap();
        let mut proxy = Proxy {
            port,
            proc: Proc {
                child,
                dir: Some(dir),
            },
            kind: opts.kind,
            request_log,
            diagnostics: diagnostics.into_iter().chain([out]).collect(),
        };
        let end = Instant::now() + START_WITHIN;
        loop {
            if let Some(status) = proxy.proc.child.try_wait().unwrap() {
                return Err(format!("exited ({status}):\n{}", proxy.log()));
            }
            if std::net::TcpStream::connect_timeout(&proxy.addr(), Duration::from_millis(200))
                .is_ok()
            {
                return Ok(proxy);
            }
            if Instant::now() > end {
                return Err(format!(
                    "not listening on {} after {START_WITHIN:?}:\n{}",
                    proxy.addr(),
                    proxy.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Its URL, as a proxy setting takes it: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The requests it has seen so far, refused ones included, as `METHOD TARGET`:
    /// `GET http://127.0.0.1:8080/ok`, `CONNECT 127.0.0.1:8443`, `CONNECT [::1]:8443`.
    /// tinyproxy logs a request when it arrives; squid when it ends (a CONNECT when its tunnel
    /// closes). Connections that sent no request are left out.
    pub fn requests(&self) -> Vec<String> {
        let mut text = std::fs::read_to_string(&self.request_log).unwrap_or_default();
        // A line still being written is left for the next call.
        text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
        match self.kind {
            ProxyKind::Tinyproxy => text
                .lines()
                .filter_map(|l| {
                    l.split_once("]: Request (file descriptor ")?
                        .1
                        .split_once("): ")
                })
                .map(|(_, line)| {
                    let line = line.trim_end();
                    line.rsplit_once(" HTTP/")
                        .map_or(line, |(request, _)| request)
                        .to_owned()
                })
                .collect(),
            // Lines of the `requests` logformat: time, status, method, URL.
            ProxyKind::Squid => text
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace().skip(2);
                    let (method, url) = (f.next()?, f.next()?);
                    (method != "-" && method != "NONE").then(|| format!("{method} {url}"))
                })
                .collect(),
        }
    }

    /// Wait until a request containing `needle` is in [`Proxy::requests`] and return them all;
    /// fail listing those seen if none comes `within`.
    pub fn wait_request(&self, needle: &str, within: Duration) -> Vec<String> {
        let end = Instant::now() + within;
        loop {
            let seen = self.requests();
            if seen.iter().any(|r| r.contains(needle)) {
                return seen;
            }
            assert!(
                Instant::now() < end,
                "{} saw no request with {needle:?} within {within:?}; it saw {seen:#?}",
                self.kind.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The proxy's own logs and output, for a failure message.
    pub fn log(&self) -> String {
        self.diagnostics
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                format!("== {}\n{}", p.display(), text.trim_end())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Write tinyproxy's config into `dir`: the arguments, the log that lists requests, and the
/// logs that explain a failure.
fn tinyproxy_config(
    dir: &Path,
    port: u16,
    opts: &ProxyOpts,
) -> (Vec<String>, PathBuf, Vec<PathBuf>) {
    let d = dir.display();
    let log = dir.join("tinyproxy.log");
    // No `User`: as root it warns and stays root, which can read this folder.
    // No `ConnectPort`: CONNECT to any port.
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 256\nLogFile \"{d}/tinyproxy.log\"\n\
         LogLevel Connect\nPidFile \"{d}/tinyproxy.pid\"\n"
    );
    if let Some((user, password)) = &opts.basic_auth {
        conf.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    if !opts.deny_ports.is_empty() {
        // Matches `http://host:PORT/...` (a plain request) and `host:PORT` (CONNECT).
        let rules: String = opts
            .deny_ports
            .iter()
            .map(|p| format!("^(http://)?[^/]*:{p}(/|$)\n"))
            .collect();
        std::fs::write(dir.join("filter"), rules).unwrap();
        conf.push_str(&format!(
            "Filter \"{d}/filter\"\nFilterURLs On\nFilterType ere\nFilterDefaultDeny No\n"
        ));
    }
    let conf_path = dir.join("tinyproxy.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let args = vec!["-d".into(), "-c".into(), conf_path.display().to_string()];
    (args, log.clone(), vec![log])
}

/// Write squid's config (and password file) into `dir` and hand the folder to the user squid
/// runs as: the arguments, the log that lists requests, and the logs that explain a failure.
fn squid_config(dir: &Path, port: u16, opts: &ProxyOpts) -> (Vec<String>, PathBuf, Vec<PathBuf>) {
    let d = dir.display();
    let mut conf = format!(
        "http_port 127.0.0.1:{port}\n\
         visible_hostname test-proxy\n\
         cache_effective_user proxy\n\
         pid_filename {d}/squid.pid\n\
         cache_log {d}/cache.log\n\
         logformat requests %ts.%03tu %>Hs %rm %ru\n\
         access_log stdio:{d}/access.log requests\n\
         strip_query_terms off\n\
         cache_store_log none\n\
         coredump_dir {d}\n\
         cache deny all\n\
         cache_mem 0 MB\n\
         digest_generation off\n\
         netdb_filename none\n\
         pinger_enable off\n\
         logfile_rotate 0\n\
         shutdown_lifetime 0 seconds\n\
         dns_nameservers 127.0.0.1\n\
         dns_retransmit_interval 1 seconds\n\
         dns_timeout 1 seconds\n"
    );
    if let Some((user, password)) = &opts.basic_auth {
        // Cost 4, the lowest: the check runs for every request.
        let hash = bcrypt::hash(password, 4).unwrap();
        std::fs::write(dir.join("passwd"), format!("{user}:{hash}\n")).unwrap();
        conf.push_str(&format!(
            "auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/passwd\n\
             auth_param basic children 2 startup=1 idle=1\n\
             auth_param basic realm test-proxy\n\
             acl authenticated proxy_auth REQUIRED\n\
             http_access deny !authenticated\n"
        ));
    }
    if !opts.deny_ports.is_empty() {
        // `port` is the destination port: CONNECT's and a plain request's URL's alike.
        let ports: Vec<String> = opts.deny_ports.iter().map(u16::to_string).collect();
        conf.push_str(&format!(
            "acl denied_ports port {}\nhttp_access deny denied_ports\n",
            ports.join(" ")
        ));
    }
    conf.push_str("http_access allow all\n");
    let conf_path = dir.join("squid.conf");
    std::fs::write(&conf_path, conf).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Started as root, squid drops to `cache_effective_user` before it opens its logs.
        let (uid, gid) = user_ids("proxy");
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    }
    let args = vec!["-N".into(), "-f".into(), conf_path.display().to_string()];
    (args, dir.join("access.log"), vec![dir.join("cache.log")])
}

/// The uid and gid of the user `name` (Debian always has `proxy`, from base-passwd).
fn user_ids(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name) && f.len() > 3)
                .then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
        .and_then(|(u, g)| Some((u?, g?)))
        .unwrap_or_else(|| panic!("no user `{name}` in /etc/passwd for squid to run as"))
}
