//! Queries on the wire: for each server in turn, a UDP socket connected to it (a random source
//! port of the kernel's choosing, and answers from any other address or port never reach us),
//! the questions of one lookup (A and AAAA) sent together on it with random IDs, and TCP when
//! an answer is truncated. Each server is tried in turn (`rotate` spreads the first choice),
//! `attempts` times, `timeout` each.
//!
//! A datagram is taken as the answer to a question only when its ID, its question (name, type,
//! class) and its QR bit match; anything else is ignored and the wait goes on. A lookup owns
//! its socket and its IDs from the first send to the last answer, so no other lookup can be
//! handed an answer meant for it, and an ID is never shared.
//!
//! Opening a socket costs a socket, a setsockopt, a connect, two epoll changes and a close:
//! more than the lookup's own sends and reads. So a socket whose lookup got every answer it
//! asked for goes back to a pool and serves up to [`SOCKET_USES`] lookups, one at a time, for
//! at most [`SOCKET_AGE`]; a socket whose lookup timed out or failed is closed, so that a late
//! answer or error never reaches another lookup. An off-path attacker must still guess the
//! ID (16 random bits) and the port (random among the kernel's ephemeral range) of each
//! question; one that learns a socket's port by a side channel has at most [`SOCKET_USES`]
//! lookups of it (README, Name resolution). The idle sockets are closed at the end of every
//! round. A failure to open one (an IPv6 server on a host without IPv6) fails that server
//! for that query only. The time of an answer is the kernel's stamp of its arrival
//! (`SO_TIMESTAMPNS`), so that a busy runtime does not lengthen the resolve phase it reports.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UdpSocket};
use tokio::runtime::Id;
use tokio::time::{Instant, timeout, timeout_at};

use super::conf::ResolvConf;
use super::wire::{self, Answer};

/// Largest UDP answer read (we announce 1232 bytes; a server may send more).
const MAX_UDP_ANSWER: usize = 4096;

/// Largest TCP answer read.
const MAX_TCP_ANSWER: usize = 65_535;

/// Lookups a socket serves, one after the other, before it is closed: its source port is
/// known to an attacker with a side channel for at most this many.
pub const SOCKET_USES: u32 = 16;

/// The longest a socket serves.
pub const SOCKET_AGE: Duration = Duration::from_secs(10);

/// A socket kept between lookups.
#[derive(Debug)]
struct Pooled {
    /// Connected to its server.
    socket: UdpSocket,
    /// Lookups it served.
    uses: u32,
    /// When it was opened.
    born: Instant,
}

/// Why a query got no usable answer from one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The server answered with this code (SERVFAIL, REFUSED, ...).
    Code(u8),
    /// No answer within the timeout.
    NoAnswer,
    /// The server could not be reached, or answered with garbage.
    Unreachable(String),
}

/// What one question got: the answer and the moment it arrived, or why there is none.
pub type Outcome = Result<(Answer, Instant), QueryError>;

/// Random bytes drawn from the kernel a block at a time, per thread.
struct Entropy {
    /// The block.
    bytes: [u8; 256],
    /// How much of it is used.
    used: usize,
}

thread_local! {
    static ENTROPY: RefCell<Entropy> = const {
        RefCell::new(Entropy { bytes: [0; 256], used: 256 })
    };
}

/// Fill `buf` from the kernel's random source; false if it failed.
fn getrandom(buf: &mut [u8]) -> bool {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into a valid, writable buffer.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => filled += n,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
    true
}

/// A random 16-bit query ID from the kernel's random source (getrandom(2)), which an
/// off-path attacker cannot predict. Should the kernel refuse (a seccomp filter), the
/// standard library's randomly keyed hasher stands in.
pub fn random_id() -> u16 {
    ENTROPY.with(|cell| {
        let mut e = cell.borrow_mut();
        if e.used + 2 > e.bytes.len() {
            if !getrandom(&mut e.bytes) {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_usize(e.used);
                return (h.finish() & 0xFFFF) as u16;
            }
            e.used = 0;
        }
        let at = e.used;
        e.used += 2;
        u16::from_be_bytes([e.bytes[at], e.bytes[at + 1]])
    })
}

/// A non-blocking UDP socket connected to `server`: the kernel binds it to a random free
/// port as it connects (as glibc's sockets are), and drops datagrams from anywhere else.
fn open_socket(server: SocketAddr) -> std::io::Result<UdpSocket> {
    use std::os::fd::FromRawFd;
    let family = if server.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the descriptor is owned by the UdpSocket made below or closed.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns; the UdpSocket closes it when dropped.
    let socket = unsafe { std::net::UdpSocket::from_raw_fd(fd) };
    // Ask the kernel to stamp each datagram as it arrives: the answer's time is then its
    // arrival, not the moment a busy runtime got round to reading it.
    crate::stamp::enable(fd);
    socket.connect(server)?;
    UdpSocket::from_std(socket)
}

/// Sends queries to the servers of one `resolv.conf`.
#[derive(Debug)]
pub struct Client {
    /// Servers, in order.
    servers: Vec<SocketAddr>,
    /// One server's time to answer.
    timeout: Duration,
    /// Rounds through the servers; 0 sends no query (glibc's reading of `attempts:0`).
    attempts: usize,
    /// Start each query at the next server.
    rotate: bool,
    /// Which server a rotating query starts with.
    next_server: AtomicUsize,
    /// Idle sockets, by the runtime whose reactor they are registered with and by server: a
    /// lookup takes only its own runtime's, so that its answers wake it without a hop
    /// through another thread.
    pool: std::sync::Mutex<std::collections::HashMap<PoolKey, Vec<Pooled>>>,
}

/// Which idle sockets a lookup may take: those of its runtime, to its server.
type PoolKey = (Option<Id>, SocketAddr);

/// The runtime the caller runs on, if any.
fn runtime() -> Option<Id> {
    tokio::runtime::Handle::try_current().ok().map(|h| h.id())
}

/// Whether an answer ends the asking: NOERROR or NXDOMAIN (any other code, or truncation,
/// asks again).
fn settled(outcome: &Outcome) -> bool {
    matches!(outcome, Ok((a, _)) if !a.truncated
        && (a.rcode == wire::rcode::NOERROR || a.rcode == wire::rcode::NXDOMAIN))
}

impl Client {
    /// A client of the servers `conf` names.
    pub fn new(conf: &ResolvConf) -> Self {
        Client {
            servers: conf.nameservers.clone(),
            timeout: conf.timeout,
            attempts: conf.attempts,
            rotate: conf.rotate,
            next_server: AtomicUsize::new(0),
            pool: std::sync::Mutex::default(),
        }
    }

    /// A socket to `server`: an idle one of the pool that may serve again, else a new one.
    fn take_socket(&self, server: SocketAddr) -> std::io::Result<Pooled> {
        let now = Instant::now();
        {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(idle) = pool.get_mut(&(runtime(), server)) {
                while let Some(p) = idle.pop() {
                    if now.duration_since(p.born) < SOCKET_AGE {
                        return Ok(p);
                    }
                }
            }
        }
        Ok(Pooled {
            socket: open_socket(server)?,
            uses: 0,
            born: now,
        })
    }

    /// Give back a socket whose lookup got every answer it asked for.
    fn put_socket(&self, server: SocketAddr, mut p: Pooled) {
        p.uses += 1;
        if p.uses >= SOCKET_USES || p.born.elapsed() >= SOCKET_AGE {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.entry((runtime(), server)).or_default().push(p);
    }

    /// Close the idle sockets (at the end of a round).
    pub fn close_idle(&self) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Ask for `name`'s records of each of `qtypes` (at once, on one socket per server):
    /// servers in turn, `attempts` times, a question asked again only while it has no answer
    /// that is NOERROR or NXDOMAIN. Returns, per type in order, that answer with its arrival
    /// time, or the last failure.
    pub async fn query(&self, name: &str, qtypes: &[u16]) -> Vec<Outcome> {
        let mut outcomes: Vec<Outcome> = vec![Err(QueryError::NoAnswer); qtypes.len()];
        let n = self.servers.len();
        if n == 0 {
            return outcomes;
        }
        if self.attempts == 0 {
            let why = "no query is sent: attempts is 0 in resolv.conf, as glibc reads it";
            return vec![Err(QueryError::Unreachable(why.into())); qtypes.len()];
        }
        let first = if self.rotate {
            self.next_server.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        for _ in 0..self.attempts {
            for k in 0..n {
                let todo: Vec<usize> = (0..qtypes.len())
                    .filter(|&i| !settled(&outcomes[i]))
                    .collect();
                if todo.is_empty() {
                    return outcomes;
                }
                let server = self.servers[(first + k) % n];
                let types: Vec<u16> = todo.iter().map(|&i| qtypes[i]).collect();
                let got = self.udp(server, name, &types).await;
                let types = &types;
                let tcp = got
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| matches!(o, Ok((a, _)) if a.truncated))
                    .map(|(j, _)| async move { (j, self.tcp(server, name, types[j]).await) });
                let again = futures_util::future::join_all(tcp).await;
                let mut got = got;
                for (j, outcome) in again {
                    got[j] = outcome;
                }
                for (j, outcome) in got.into_iter().enumerate() {
                    let outcome = match outcome {
                        Ok((a, _))
                            if a.rcode != wire::rcode::NOERROR
                                && a.rcode != wire::rcode::NXDOMAIN =>
                        {
                            Err(QueryError::Code(a.rcode))
                        }
                        other => other,
                    };
                    outcomes[todo[j]] = outcome;
                }
            }
        }
        outcomes
    }

    /// One exchange over UDP with `server`: the questions sent on one fresh socket, then their
    /// answers read until all came or the timeout passed. Datagrams that answer none of them
    /// are ignored.
    async fn udp(&self, server: SocketAddr, name: &str, qtypes: &[u16]) -> Vec<Outcome> {
        let all = |e: QueryError| vec![Err(e); qtypes.len()];
        let pooled = match self.take_socket(server) {
            Ok(s) => s,
            Err(e) => {
                return all(QueryError::Unreachable(format!(
                    "cannot open a socket to {server}: {e}"
                )));
            }
        };
        let socket = &pooled.socket;
        let mut ids: Vec<u16> = Vec::with_capacity(qtypes.len());
        for &qtype in qtypes {
            let mut id = random_id();
            while ids.contains(&id) {
                id = random_id();
            }
            ids.push(id);
            let query = match wire::encode_query(id, name, qtype) {
                Ok(q) => q,
                Err(e) => return all(QueryError::Unreachable(e.to_string())),
            };
            if let Err(e) = socket.send(&query).await {
                return all(QueryError::Unreachable(format!(
                    "cannot send to the DNS server {server}: {e}"
                )));
            }
        }
        let sent = Instant::now();
        let deadline = sent + self.timeout;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; qtypes.len()];
        let mut buf = vec![0u8; MAX_UDP_ANSWER];
        // No error was read from the socket.
        let mut clean = true;
        while outcomes.iter().any(Option::is_none) {
            let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
            // ERROR too: an ICMP "port unreachable" makes the socket neither readable nor
            // writable, only in error, and the read that reports it must run.
            let interest = Interest::READABLE.add(Interest::ERROR);
            let read = socket.async_io(interest, || {
                // SAFETY: `buf` is valid for writes of its length.
                let (n, at) = unsafe { crate::stamp::recv(fd, buf.as_mut_ptr(), buf.len()) }?;
                Ok((n, at.unwrap_or_else(Instant::now)))
            });
            let (n, at) = match timeout_at(deadline, read).await {
                Err(_) => break,
                // Never earlier than the query left (a wall clock that stepped back).
                Ok(Ok((n, at))) => (n, at.max(sent)),
                // An ICMP "port unreachable": nobody serves there.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    clean = false;
                    for o in outcomes.iter_mut().filter(|o| o.is_none()) {
                        *o = Some(Err(QueryError::Unreachable(format!(
                            "the DNS server {server} refused (port closed)"
                        ))));
                    }
                    break;
                }
                Ok(Err(e)) => {
                    clean = false;
                    for o in outcomes.iter_mut().filter(|o| o.is_none()) {
                        *o = Some(Err(QueryError::Unreachable(format!(
                            "reading from the DNS server {server}: {e}"
                        ))));
                    }
                    break;
                }
            };
            let msg = &buf[..n];
            for (j, slot) in outcomes.iter_mut().enumerate() {
                if slot.is_some() {
                    continue;
                }
                // Another ID, another question or a malformed message: not an answer to this
                // question (glibc and musl wait on too).
                if let Ok(a) = wire::parse_answer(msg, ids[j], name, qtypes[j]) {
                    *slot = Some(Ok((a, at)));
                    break;
                }
            }
        }
        // Every question answered: nothing more is due on this socket, which may serve again.
        if clean && outcomes.iter().all(Option::is_some) {
            self.put_socket(server, pooled);
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(QueryError::NoAnswer)))
            .collect()
    }

    /// One query over TCP (after a truncated UDP answer).
    async fn tcp(&self, server: SocketAddr, name: &str, qtype: u16) -> Outcome {
        let id = random_id();
        let query = wire::encode_query(id, name, qtype)
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        let exchange = async {
            let mut s = TcpStream::connect(server).await?;
            let mut framed = (query.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&query);
            s.write_all(&framed).await?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await?;
            let len = usize::from(u16::from_be_bytes(len)).min(MAX_TCP_ANSWER);
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>((buf, Instant::now()))
        };
        match timeout(self.timeout, exchange).await {
            Err(_) => Err(QueryError::NoAnswer),
            Ok(Err(e)) => Err(QueryError::Unreachable(format!(
                "DNS over TCP to {server}: {e}"
            ))),
            Ok(Ok((bytes, at))) => wire::parse_answer(&bytes, id, name, qtype)
                .map(|a| (a, at))
                .map_err(|e| QueryError::Unreachable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random() {
        let ids: std::collections::HashSet<u16> = (0..1000).map(|_| random_id()).collect();
        assert!(ids.len() > 950, "{}", ids.len());
        // Not a counter: consecutive IDs do not step by a constant.
        let seq: Vec<u16> = (0..64).map(|_| random_id()).collect();
        let steps: std::collections::HashSet<u16> =
            seq.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        assert!(steps.len() > 32, "{steps:?}");
    }

    #[tokio::test]
    async fn a_server_that_cannot_be_reached_fails_only_its_own_turn() {
        // A UDP socket cannot be connected to the broadcast address without SO_BROADCAST: the
        // first server fails at once, the second (closed port) is still asked.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let conf = ResolvConf {
            nameservers: vec![
                "255.255.255.255:53".parse().unwrap(),
                SocketAddr::from(([127, 0, 0, 1], port)),
            ],
            timeout: Duration::from_secs(1),
            attempts: 1,
            ..ResolvConf::default()
        };
        let client = Client::new(&conf);
        let started = std::time::Instant::now();
        let got = client.query("x.test", &[wire::TYPE_A]).await;
        assert!(
            matches!(&got[0], Err(QueryError::Unreachable(m)) if m.contains("refused")),
            "{got:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn an_idle_socket_serves_again_only_on_its_own_runtime() {
        let server = SocketAddr::from(([127, 0, 0, 1], 9));
        let client = std::sync::Arc::new(Client::new(&ResolvConf {
            nameservers: vec![server],
            ..ResolvConf::default()
        }));
        let port = |p: &Pooled| p.socket.local_addr().unwrap().port();
        let first = client.take_socket(server).unwrap();
        let mine = port(&first);
        client.put_socket(server, first);
        // A probe thread, another runtime, opens its own: the pooled one is registered with
        // this runtime's reactor.
        let other = {
            let client = client.clone();
            crate::probe_threads::ProbeThreads::get()
                .spawn(0, async move {
                    let p = client.take_socket(server).unwrap();
                    p.socket.local_addr().unwrap().port()
                })
                .await
                .unwrap()
        };
        assert_ne!(other, mine, "a new socket for the other runtime");
        // This runtime gets its own back.
        let again = client.take_socket(server).unwrap();
        assert_eq!(port(&again), mine);
        assert_eq!(again.uses, 1);
    }
}
