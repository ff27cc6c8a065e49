//! Test hosts of our own: two network namespaces joined by a veth pair, with addresses from
//! 198.18.0.0/15 (the benchmarking range) that exist only inside them; and a thread that runs
//! inside one. Nothing leaves the machine and the host's own interfaces are untouched.
//!
//! Needs root and iproute2 (`ip netns`), as CI has.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Two namespaces and a veth between them, removed when dropped.
pub struct Net {
    /// The exporter's side.
    pub client: String,
    /// The servers' side.
    pub server: String,
    /// The client's address.
    pub client_ip: String,
    /// The server's address.
    pub server_ip: String,
    /// Servers started in the server namespace.
    pub servers: Vec<Child>,
}

/// Run `ip` with these arguments; panic naming the package when it fails.
pub fn ip(args: &[&str]) {
    let ip = super::find_program("ip", "iproute2");
    let out = Command::new(ip).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {} (these tests need root and the iproute2 package)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    pub fn new() -> Net {
        static N: AtomicUsize = AtomicUsize::new(0);
        let k = N.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{k}", std::process::id());
        let (client, server) = (format!("hse-c-{id}"), format!("hse-s-{id}"));
        // One /24 per net of this process, inside 198.18.0.0/15.
        let subnet = 1 + (std::process::id() as usize * 7 + k) % 250;
        let (client_ip, server_ip) = (format!("198.18.{subnet}.1"), format!("198.18.{subnet}.2"));
        let net = Net {
            client: client.clone(),
            server: server.clone(),
            client_ip: client_ip.clone(),
            server_ip: server_ip.clone(),
            servers: Vec::new(),
        };
        ip(&["netns", "add", &client]);
        ip(&["netns", "add", &server]);
        let (c_if, s_if) = (format!("hc{k}"), format!("hs{k}"));
        ip(&[
            "-n", &client, "link", "add", &c_if, "type", "veth", "peer", "name", &s_if, "netns",
            &server,
        ]);
        ip(&[
            "-n",
            &client,
            "addr",
            "add",
            &format!("{client_ip}/24"),
            "dev",
            &c_if,
        ]);
        ip(&[
            "-n",
            &server,
            "addr",
            "add",
            &format!("{server_ip}/24"),
            "dev",
            &s_if,
        ]);
        for (ns, dev) in [(&client, &c_if), (&server, &s_if)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// The server side's interface.
    pub fn server_if(&self) -> String {
        let k = self.client.rsplit('-').next().unwrap_or("0");
        format!("hs{k}")
    }

    /// Start a Python TCP server in the server namespace on `port`: `mode` says what it does
    /// with each connection. Returns once it listens.
    pub fn serve(&mut self, port: u16, mode: &str) {
        let script = format!(
            r#"
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{ip}", {port})); s.listen(64)
print("listening", flush=True)
held = []
while True:
    c, _ = s.accept(); held.append(c)
    if "{mode}" == "partial":
        c.recv(65536); c.sendall(b"HTTP/1.1 2")
    elif "{mode}" == "ok":
        c.recv(65536); c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); c.close()
    # "deaf": accept and never read
"#,
            ip = self.server_ip
        );
        let mut child = Command::new(super::find_program("ip", "iproute2"))
            .args(["netns", "exec", &self.server, "python3", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "listening");
        self.servers.push(child);
    }

    /// Run the exporter's `check --output json` in the client namespace on a targets file;
    /// the JSON lines and the wall time.
    pub fn check(&self, yaml: &str) -> (Vec<serde_json::Value>, Duration) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("targets.yaml");
        std::fs::write(&path, yaml).unwrap();
        let t = Instant::now();
        let out = Command::new(super::find_program("ip", "iproute2"))
            .args([
                "netns",
                "exec",
                &self.client,
                super::exporter_bin(),
                "check",
                "--output",
                "json",
                "--config.file",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let took = t.elapsed();
        let text = String::from_utf8_lossy(&out.stdout);
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, took)
    }
}

impl Net {
    /// A script in `dir` that runs the exporter binary in the client namespace, for
    /// [`super::Exporter::start_with`].
    pub fn exporter_wrapper(&self, dir: &std::path::Path) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let wrapper = dir.join("in-client-ns");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} netns exec {} {} \"$@\"\n",
                super::find_program("ip", "iproute2").display(),
                self.client,
                super::exporter_bin()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        wrapper
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Run `f` on a thread of its own inside network namespace `ns`: its sockets are that
/// namespace's.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns moves only this thread, into a namespace whose descriptor we hold.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}
