//! A DNS server for tests and the benchmark: UDP and TCP on one free loopback port, a zone given
//! as a table, a fixed answer delay, and misbehaviours per name (NXDOMAIN, SERVFAIL, REFUSED,
//! silence, truncation over UDP, answers to another question sent first). It counts every
//! query it gets, keeps the names asked in their order, and the source ports they came from.
//! It can serve inside a network namespace of the test's own ([`DnsServer::start_in`]).
//!
//! [`Unbound`] runs a real caching resolver (Debian package `unbound`) in front of it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One record of the zone.
#[derive(Debug, Clone)]
pub enum Rec {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// An alias: answered with the CNAME, then the target's records, as a recursive server does.
    Cname(&'static str),
}

/// How the server treats a name.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Answer with these records (NOERROR with no answer for a type it lacks).
    Records(Vec<Rec>),
    /// Over UDP, an empty answer with the TC bit; over TCP, these records.
    Truncated(Vec<Rec>),
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// REFUSED.
    Refused,
    /// Never answer.
    Silent,
    /// Over UDP, first (5 ms before the right answer) answers with the query's ID to another
    /// question: another name, then another type; then these records.
    Mismatched(Vec<Rec>),
}

/// The zone and how fast it is served.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// Names (lower case, no trailing dot) and how each is answered; others get NXDOMAIN.
    pub names: HashMap<String, Entry>,
    /// Every name under this suffix (`.bench.test`) gets these records.
    pub wildcard: Option<(String, Vec<Rec>)>,
    /// How long every answer waits before it is sent.
    pub delay: Duration,
    /// The TTL of every record; 60 when `None`.
    pub ttl: Option<u32>,
}

impl Zone {
    /// A zone with these names.
    pub fn new(names: &[(&str, Entry)]) -> Zone {
        Zone {
            names: names
                .iter()
                .map(|(n, e)| ((*n).to_owned(), e.clone()))
                .collect(),
            ..Zone::default()
        }
    }

    /// The entry for `name`.
    fn entry(&self, name: &str) -> Entry {
        if let Some(e) = self.names.get(name) {
            return e.clone();
        }
        match &self.wildcard {
            Some((suffix, recs)) if name.ends_with(suffix.as_str()) => Entry::Records(recs.clone()),
            _ => Entry::NxDomain,
        }
    }
}

/// Queries seen, by `(name, type)`, with the transport.
#[derive(Debug, Default)]
pub struct Seen {
    /// `(name, "A" | "AAAA" | ..., "udp" | "tcp")` → count.
    pub queries: HashMap<(String, String, &'static str), usize>,
    /// The source ports UDP queries came from.
    pub ports: HashSet<u16>,
    /// The names asked over UDP from each source port, in arrival order.
    pub by_port: HashMap<u16, Vec<String>>,
    /// The IDs of UDP queries, in arrival order.
    pub ids: Vec<u16>,
    /// The name of every query (any type and transport), in arrival order.
    pub asked: Vec<String>,
    /// UDP queries received and not yet answered.
    pub waiting: usize,
    /// The most UDP queries waiting for their answer at once.
    pub most_waiting: usize,
}

impl Seen {
    /// Queries for `name` of any type and transport.
    pub fn for_name(&self, name: &str) -> usize {
        self.queries
            .iter()
            .filter(|((n, _, _), _)| n == name)
            .map(|(_, c)| c)
            .sum()
    }

    /// Queries for `name` of `rtype` over `transport`.
    pub fn count(&self, name: &str, rtype: &str, transport: &str) -> usize {
        self.queries
            .get(&(name.to_owned(), rtype.to_owned(), transport_name(transport)))
            .copied()
            .unwrap_or(0)
    }

    /// Every query seen.
    pub fn total(&self) -> usize {
        self.queries.values().sum()
    }

    /// The names asked since the `from`-th query, each once, in the order they were first
    /// asked: the candidates a lookup went through (its A and AAAA questions may come in
    /// either order).
    pub fn names_since(&self, from: usize) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for name in self.asked.iter().skip(from) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

/// The static name of a transport.
fn transport_name(t: &str) -> &'static str {
    if t == "tcp" { "tcp" } else { "udp" }
}

/// A running DNS server; stops with the process (its thread owns a runtime).
pub struct DnsServer {
    /// UDP and TCP, same port.
    pub addr: SocketAddr,
    /// What it was asked.
    pub seen: Arc<Mutex<Seen>>,
}

impl DnsServer {
    /// Start serving `zone` on a free port of 127.0.0.1.
    pub fn start(zone: Zone) -> DnsServer {
        DnsServer::start_on("127.0.0.1:0", zone)
    }

    /// Start serving `zone` on `addr` (port 0: a free port, the same for UDP and TCP).
    pub fn start_on(addr: &str, zone: Zone) -> DnsServer {
        let addr = addr.parse().expect("an IP address with a port");
        DnsServer::start_at(None, addr, zone)
    }

    /// Start serving `zone` on `addr` inside the network namespace `netns` (a name under
    /// `/run/netns`, as `ip netns add` makes it): its sockets are that namespace's. A
    /// link-local `addr` carries its interface as the scope ID.
    pub fn start_in(netns: &str, addr: SocketAddr, zone: Zone) -> DnsServer {
        DnsServer::start_at(Some(format!("/run/netns/{netns}")), addr, zone)
    }

    /// Serve on a thread of its own, moved into the namespace at `netns` first when given.
    fn start_at(netns: Option<String>, addr: SocketAddr, zone: Zone) -> DnsServer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = seen.clone();
        std::thread::spawn(move || {
            if let Some(path) = netns {
                use std::os::fd::AsRawFd;
                let file = std::fs::File::open(&path).unwrap();
                // SAFETY: setns moves only this thread (and the runtime threads it starts) into
                // a namespace whose descriptor we hold.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(addr, Arc::new(zone), s, tx));
        });
        let addr = rx.recv().expect("DNS server started");
        DnsServer { addr, seen }
    }

    /// Write a resolv.conf naming this server (with its port) into `dir`, plus `extra` lines.
    pub fn resolv_conf(&self, dir: &Path, extra: &str) -> PathBuf {
        let p = dir.join("resolv.conf");
        std::fs::write(
            &p,
            format!(
                "nameserver {}#{}\n{extra}",
                self.addr.ip(),
                self.addr.port()
            ),
        )
        .unwrap();
        p
    }

    /// Queries seen so far.
    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

/// Bind UDP and TCP on `at` (the same free port for both when its port is 0), then answer
/// until the process ends.
async fn serve(
    at: SocketAddr,
    zone: Arc<Zone>,
    seen: Arc<Mutex<Seen>>,
    ready: std::sync::mpsc::Sender<SocketAddr>,
) {
    let (udp, tcp) = loop {
        let udp = tokio::net::UdpSocket::bind(at).await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            break (Arc::new(udp), tcp);
        }
    };
    // A burst of thousands of queries must not overflow the default receive buffer.
    {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 8 << 20;
        // SAFETY: a valid pointer to a c_int of the size given, on our own descriptor.
        unsafe {
            libc::setsockopt(
                udp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    ready.send(udp.local_addr().unwrap()).unwrap();
    let (z, s) = (zone.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = tcp.accept().await else {
                continue;
            };
            let (z, s) = (z.clone(), s.clone());
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let Some((reply, _)) = answer(&z, &s, &buf, "tcp") else {
                        continue;
                    };
                    tokio::time::sleep(z.delay).await;
                    let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                    out.extend(reply);
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
            continue;
        };
        {
            let mut seen = seen.lock().unwrap();
            seen.ports.insert(peer.port());
            let name = query_name(&buf[..n]);
            seen.by_port.entry(peer.port()).or_default().push(name);
            if n >= 2 {
                seen.ids.push(u16::from_be_bytes([buf[0], buf[1]]));
            }
        }
        let Some((reply, decoys)) = answer(&zone, &seen, &buf[..n], "udp") else {
            continue;
        };
        {
            let mut seen = seen.lock().unwrap();
            seen.waiting += 1;
            seen.most_waiting = seen.most_waiting.max(seen.waiting);
        }
        let (udp, delay, seen) = (udp.clone(), zone.delay, seen.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if !decoys.is_empty() {
                for decoy in decoys {
                    let _ = udp.send_to(&decoy, peer).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Counted as answered before it is sent: the client may ask again at once.
            seen.lock().unwrap().waiting -= 1;
            let _ = udp.send_to(&reply, peer).await;
        });
    }
}

/// The reply to one query and the answers to other questions to send before it, or `None` to
/// stay silent.
fn answer(
    zone: &Zone,
    seen: &Mutex<Seen>,
    query: &[u8],
    transport: &'static str,
) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let msg = Message::from_vec(query).ok()?;
    let q = msg.queries.first()?.clone();
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let rtype = q.query_type();
    {
        let mut seen = seen.lock().unwrap();
        *seen
            .queries
            .entry((name.clone(), rtype.to_string(), transport))
            .or_default() += 1;
        seen.asked.push(name.clone());
    }
    let mut reply = Message::response(msg.metadata.id, OpCode::Query);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = msg.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let bare = reply.clone();
    reply.add_query(q.clone());
    let only = |reply: Message| reply.to_vec().ok().map(|r| (r, Vec::new()));
    let ttl = zone.ttl.unwrap_or(60);
    let mut decoys = Vec::new();
    let mut records = match zone.entry(&name) {
        Entry::Silent => return None,
        Entry::NxDomain => {
            reply.metadata.response_code = ResponseCode::NXDomain;
            negative(&mut reply, q.name());
            return only(reply);
        }
        Entry::ServFail => {
            reply.metadata.response_code = ResponseCode::ServFail;
            return only(reply);
        }
        Entry::Refused => {
            reply.metadata.response_code = ResponseCode::Refused;
            return only(reply);
        }
        Entry::Truncated(_) if transport == "udp" => {
            reply.metadata.truncation = true;
            return only(reply);
        }
        Entry::Mismatched(r) => {
            if transport == "udp" {
                // Same ID, other name; same ID and name, other type: each with an address.
                let other_name = Name::from_ascii("decoy.test.").unwrap();
                let other_type = if rtype == RecordType::A {
                    RecordType::AAAA
                } else {
                    RecordType::A
                };
                for (qname, qtype) in [(other_name, rtype), (q.name().clone(), other_type)] {
                    let mut decoy = bare.clone();
                    let mut dq = q.clone();
                    dq.set_name(qname.clone()).set_query_type(qtype);
                    decoy.add_query(dq);
                    let data = if qtype == RecordType::A {
                        RData::A(A([192, 0, 2, 66].into()))
                    } else {
                        RData::AAAA(AAAA("2001:db8::66".parse().unwrap()))
                    };
                    decoy.add_answer(Record::from_rdata(qname, ttl, data));
                    decoys.extend(decoy.to_vec().ok());
                }
            }
            r
        }
        Entry::Records(r) | Entry::Truncated(r) => r,
    };
    let mut owner = q.name().clone();
    // Follow CNAMEs within the zone, at most 64 deep.
    for _ in 0..64 {
        let mut next = None;
        for rec in &records {
            let data = match (rec, rtype) {
                (Rec::A(ip), RecordType::A) => RData::A(A(*ip)),
                (Rec::Aaaa(ip), RecordType::AAAA) => RData::AAAA(AAAA(*ip)),
                (Rec::Cname(target), _) => {
                    let target = Name::from_ascii(format!("{target}.")).unwrap();
                    next = Some(target.clone());
                    RData::CNAME(CNAME(target))
                }
                _ => continue,
            };
            reply.add_answer(Record::from_rdata(owner.clone(), ttl, data));
        }
        let Some(target) = next else { break };
        let key = target.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        records = match zone.entry(&key) {
            Entry::Records(r) | Entry::Truncated(r) | Entry::Mismatched(r) => r,
            _ => break,
        };
        owner = target;
    }
    if reply.answers.is_empty() {
        negative(&mut reply, q.name());
    }
    reply.to_vec().ok().map(|r| (r, decoys))
}

/// The SOA record of the name's top-level zone in the authority section of a negative answer,
/// so that caching resolvers keep it (RFC 2308), for 60 s.
fn negative(reply: &mut Message, name: &Name) {
    let tld = name
        .to_ascii()
        .trim_end_matches('.')
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    let Ok(zone) = Name::from_ascii(format!("{tld}.")) else {
        return;
    };
    let soa = SOA::new(
        Name::from_ascii(format!("ns.{tld}.")).unwrap(),
        Name::from_ascii(format!("hostmaster.{tld}.")).unwrap(),
        1,
        3600,
        600,
        86400,
        60,
    );
    reply.add_authority(Record::from_rdata(zone, 60, RData::SOA(soa)));
}

/// Find a program on PATH or in the sbin folders; panic naming its Debian package if absent.
pub fn program(name: &str, package: &str) -> PathBuf {
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

/// A real caching resolver, unbound, on `addr` with a private config in a folder of its own,
/// forwarding every name to our servers (`test.` included, which unbound answers NXDOMAIN
/// itself by default, RFC 6761); stopped by its pid when dropped.
pub struct Unbound {
    /// Where it answers, UDP and TCP.
    pub addr: SocketAddr,
    /// The process.
    child: std::process::Child,
    /// Its config, pid file and working folder.
    _dir: tempfile::TempDir,
}

impl Unbound {
    /// Start unbound on `addr` (port 0: a free port), forwarding to `upstream` in order, with
    /// `extra` lines in its `server:` clause.
    pub fn start(addr: &str, upstream: &[SocketAddr], extra: &str) -> Unbound {
        let unbound = program("unbound", "unbound");
        let mut addr: SocketAddr = addr.parse().expect("an address with a port");
        // A port free for both UDP and TCP (a busy machine has many TCP ports taken).
        while addr.port() == 0 {
            let udp = std::net::UdpSocket::bind(addr).expect("a free UDP port");
            let port = udp.local_addr().unwrap().port();
            if std::net::TcpListener::bind((addr.ip(), port)).is_ok() {
                addr.set_port(port);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let forward: String = upstream
            .iter()
            .map(|u| format!("    forward-addr: {}@{}\n", u.ip(), u.port()))
            .collect();
        let conf = format!(
            "server:\n    interface: {ip}\n    port: {port}\n    do-daemonize: no\n    chroot: \"\"\n    \
             username: \"\"\n    directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    \
             use-syslog: no\n    logfile: \"{d}/unbound.log\"\n    verbosity: 0\n    num-threads: 1\n    \
             do-not-query-localhost: no\n    do-ip6: no\n    module-config: \"iterator\"\n    \
             access-control: 127.0.0.0/8 allow\n    qname-minimisation: no\n    \
             so-reuseport: no\n    local-zone: \"test.\" nodefault\n    rrset-roundrobin: no\n{extra}\n\
             remote-control:\n    control-enable: no\n\
             forward-zone:\n    name: \".\"\n{forward}",
            ip = addr.ip(),
            port = addr.port(),
        );
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new(unbound)
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("unbound starts");
        let mut child = child;
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            let log =
                || std::fs::read_to_string(dir.path().join("unbound.log")).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("unbound exited ({status}) on {addr}: {}", log());
            }
            assert!(
                std::time::Instant::now() < end,
                "unbound did not start on {addr}: {}",
                log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Unbound {
            addr,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill only sends a signal to our own child, by its pid.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The question's name of a query (empty when it cannot be read).
fn query_name(msg: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut at = 12;
    while let Some(&len) = msg.get(at) {
        if len == 0 || len & 0xC0 != 0 {
            break;
        }
        let end = at + 1 + usize::from(len);
        let Some(label) = msg.get(at + 1..end) else {
            break;
        };
        labels.push(String::from_utf8_lossy(label).to_lowercase());
        at = end;
    }
    labels.join(".")
}
