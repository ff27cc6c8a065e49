//! blackbox_exporter (Debian's `prometheus-blackbox-exporter`, 0.23) on a free loopback port,
//! for tests that compare our answers with its answers on the same targets.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Proc, find_program, free_port, http, url_encode, wait_listening};

/// A running blackbox_exporter.
pub struct Blackbox {
    /// The process (and its config directory).
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Blackbox {
    /// Start blackbox_exporter with `modules` (the YAML under `modules:`).
    pub fn start(modules: &str) -> Blackbox {
        let program = find_program(
            "prometheus-blackbox-exporter",
            "prometheus-blackbox-exporter",
        );
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("blackbox.yml");
        std::fs::write(&conf, format!("modules:\n{modules}")).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(program)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc {
            child,
            dir: Some(dir),
        };
        wait_listening(addr, Duration::from_secs(10));
        Blackbox { proc, addr }
    }

    /// `GET /probe?target=…&module=…` plus `extra` query pairs; the metrics text.
    pub fn probe(&self, target: &str, module: &str, extra: &[(&str, &str)]) -> String {
        let mut path = format!(
            "/probe?target={}&module={}",
            url_encode(target),
            url_encode(module)
        );
        for (k, v) in extra {
            path.push_str(&format!("&{k}={}", url_encode(v)));
        }
        let r = http(self.addr, "GET", &path, &[]);
        assert_eq!(r.status, 200, "blackbox {path}: {}", r.body);
        r.body
    }
}
