//! A DNS server for tests and the benchmark: UDP and TCP on one free loopback port, a zone given
//! as a table, a fixed answer delay, and misbehaviours per name (NXDOMAIN, SERVFAIL, REFUSED,
//! silence, truncation over UDP). It counts every query it gets.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
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
    pub fn start_on(addr: &'static str, zone: Zone) -> DnsServer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = seen.clone();
        std::thread::spawn(move || {
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
    at: &str,
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
                    let Some(reply) = answer(&z, &s, &buf, "tcp") else {
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
        let Some(reply) = answer(&zone, &seen, &buf[..n], "udp") else {
            continue;
        };
        let (udp, delay) = (udp.clone(), zone.delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = udp.send_to(&reply, peer).await;
        });
    }
}

/// The reply to one query, or `None` to stay silent.
fn answer(
    zone: &Zone,
    seen: &Mutex<Seen>,
    query: &[u8],
    transport: &'static str,
) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    let q = msg.queries.first()?.clone();
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let rtype = q.query_type();
    *seen
        .lock()
        .unwrap()
        .queries
        .entry((name.clone(), rtype.to_string(), transport))
        .or_default() += 1;
    let mut reply = Message::response(msg.metadata.id, OpCode::Query);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = msg.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(q.clone());
    let mut records = match zone.entry(&name) {
        Entry::Silent => return None,
        Entry::NxDomain => {
            reply.metadata.response_code = ResponseCode::NXDomain;
            return reply.to_vec().ok();
        }
        Entry::ServFail => {
            reply.metadata.response_code = ResponseCode::ServFail;
            return reply.to_vec().ok();
        }
        Entry::Refused => {
            reply.metadata.response_code = ResponseCode::Refused;
            return reply.to_vec().ok();
        }
        Entry::Truncated(_) if transport == "udp" => {
            reply.metadata.truncation = true;
            return reply.to_vec().ok();
        }
        Entry::Records(r) | Entry::Truncated(r) => r,
    };
    let mut owner = q.name().clone();
    // Follow CNAMEs within the zone, at most 8 deep.
    for _ in 0..8 {
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
            reply.add_answer(Record::from_rdata(owner.clone(), 60, data));
        }
        let Some(target) = next else { break };
        let key = target.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        records = match zone.entry(&key) {
            Entry::Records(r) | Entry::Truncated(r) => r,
            _ => break,
        };
        owner = target;
    }
    reply.to_vec().ok()
}
