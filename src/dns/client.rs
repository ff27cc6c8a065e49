//! Queries on the wire: many in flight over a few UDP sockets per server (answers matched by a
//! random ID and the question), TCP when an answer is truncated, each server tried in turn
//! (`rotate` spreads the first choice), `attempts` times, `timeout` each.
//!
//! A socket per query would cost a socket, a bind, two epoll changes and a close per query:
//! at thousands of lookups a round on two cores that is most of the round. The sockets here are
//! opened once and kept for the resolver's life.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use super::conf::ResolvConf;
use super::wire::{self, Answer};

/// UDP sockets per server: spreads the kernel's per-socket queue and our pending maps.
const SOCKETS_PER_SERVER: usize = 8;

/// Receive buffer asked for each socket: a round's burst of answers must not overflow it (the
/// kernel caps it at `net.core.rmem_max`).
const RECEIVE_BUFFER: libc::c_int = 1 << 20;

/// Ask for a larger receive buffer; the default (about 200 KiB) holds only a few hundred
/// datagrams. Failing leaves the default, which works at lower rates.
fn enlarge_receive_buffer(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size = RECEIVE_BUFFER;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid pointer to a c_int, on
    // a descriptor this socket owns.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Largest UDP answer read (we announce 1232 bytes; a server may send more).
const MAX_UDP_ANSWER: usize = 4096;

/// Largest TCP answer read.
const MAX_TCP_ANSWER: usize = 65_535;

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

/// An answer and the moment its datagram (or the TCP answer) arrived.
type Arrival = (Vec<u8>, Instant);

/// Answers waiting for their query, by ID.
type Pending = Mutex<HashMap<u16, oneshot::Sender<Arrival>>>;

/// One UDP socket connected to a server, with the task that reads it.
#[derive(Debug)]
struct Shard {
    /// The socket, shared with the reader.
    socket: Arc<UdpSocket>,
    /// Queries waiting for an answer on this socket.
    pending: Arc<Pending>,
    /// Reads answers and hands them out; aborted with the shard.
    reader: JoinHandle<()>,
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Read answers off `socket` and give each to the query with its ID; the arrival time is
/// taken as the datagram is read, before any waiting task runs.
async fn read_answers(socket: Arc<UdpSocket>, pending: Weak<Pending>) {
    let mut buf = vec![0u8; MAX_UDP_ANSWER];
    loop {
        let got = socket.recv(&mut buf).await;
        let at = Instant::now();
        let Some(pending) = pending.upgrade() else {
            return;
        };
        let mut map = pending.lock().unwrap_or_else(|p| p.into_inner());
        match got {
            Ok(n) => {
                let Some(id) = wire::message_id(&buf[..n]) else {
                    continue;
                };
                if let Some(tx) = map.remove(&id) {
                    let _ = tx.send((buf[..n].to_vec(), at));
                }
            }
            // An ICMP "port unreachable" for a connected socket: every query on it is lost.
            // An empty answer tells them so at once.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                for (_, tx) in map.drain() {
                    let _ = tx.send((Vec::new(), at));
                }
            }
            Err(_) => {
                drop(map);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A random 16-bit query ID (the hasher's keys are random per thread; the counter makes every
/// call differ).
fn random_id() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() & 0xFFFF) as u16
}

/// Removes a query's entry if it ends without its answer (timeout, cancellation).
struct Waiting<'a> {
    /// The map the entry is in.
    pending: &'a Pending,
    /// The entry's ID.
    id: u16,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Sends queries to the servers of one `resolv.conf`.
#[derive(Debug)]
pub struct Client {
    /// Servers, in order.
    servers: Vec<SocketAddr>,
    /// One server's time to answer.
    timeout: Duration,
    /// Rounds through the servers.
    attempts: usize,
    /// Start each query at the next server.
    rotate: bool,
    /// Which server a rotating query starts with.
    next_server: AtomicUsize,
    /// Which socket the next query uses.
    next_socket: AtomicUsize,
    /// Sockets per server, opened at the first query (it needs the runtime).
    shards: OnceLock<Result<Vec<Vec<Shard>>, String>>,
}

impl Client {
    /// A client of the servers `conf` names.
    pub fn new(conf: &ResolvConf) -> Self {
        Client {
            servers: conf.nameservers.clone(),
            timeout: conf.timeout,
            attempts: conf.attempts.max(1),
            rotate: conf.rotate,
            next_server: AtomicUsize::new(0),
            next_socket: AtomicUsize::new(0),
            shards: OnceLock::new(),
        }
    }

    /// Open the sockets: a few per server, each connected to it.
    fn open(&self) -> Result<Vec<Vec<Shard>>, String> {
        self.servers
            .iter()
            .map(|server| {
                (0..SOCKETS_PER_SERVER)
                    .map(|_| {
                        let local: SocketAddr = if server.is_ipv4() {
                            ([0, 0, 0, 0], 0).into()
                        } else {
                            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                        };
                        let std = std::net::UdpSocket::bind(local)
                            .and_then(|s| s.connect(server).map(|()| s))
                            .and_then(|s| s.set_nonblocking(true).map(|()| s))
                            .map_err(|e| format!("cannot open a socket to {server}: {e}"))?;
                        enlarge_receive_buffer(&std);
                        let socket = Arc::new(
                            UdpSocket::from_std(std)
                                .map_err(|e| format!("cannot open a socket to {server}: {e}"))?,
                        );
                        let pending = Arc::new(Pending::default());
                        let reader =
                            tokio::spawn(read_answers(socket.clone(), Arc::downgrade(&pending)));
                        Ok(Shard {
                            socket,
                            pending,
                            reader,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// Ask for `name`'s records of `qtype`: servers in turn, `attempts` times. Returns the
    /// first answer that is NOERROR or NXDOMAIN, with its arrival time, or the last failure.
    pub async fn query(&self, name: &str, qtype: u16) -> Result<(Answer, Instant), QueryError> {
        let shards = match self.shards.get_or_init(|| self.open()) {
            Ok(s) => s,
            Err(e) => return Err(QueryError::Unreachable(e.clone())),
        };
        let n = self.servers.len();
        let first = if self.rotate {
            self.next_server.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let mut last = QueryError::NoAnswer;
        for _ in 0..self.attempts {
            for k in 0..n {
                let s = (first + k) % n;
                let pick = self.next_socket.fetch_add(1, Ordering::Relaxed) % SOCKETS_PER_SERVER;
                let mut got = self.udp(&shards[s][pick], name, qtype).await;
                if matches!(&got, Ok((a, _)) if a.truncated) {
                    got = self.tcp(self.servers[s], name, qtype).await;
                }
                match got {
                    Ok((a, at))
                        if a.rcode == wire::rcode::NOERROR || a.rcode == wire::rcode::NXDOMAIN =>
                    {
                        return Ok((a, at));
                    }
                    Ok((a, _)) => last = QueryError::Code(a.rcode),
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }

    /// One query over UDP.
    async fn udp(
        &self,
        shard: &Shard,
        name: &str,
        qtype: u16,
    ) -> Result<(Answer, Instant), QueryError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut map = shard.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mut id = random_id();
            // 65,536 IDs a socket and far fewer in flight: a free one is found at once.
            while map.contains_key(&id) {
                id = random_id();
            }
            map.insert(id, tx);
            id
        };
        let _waiting = Waiting {
            pending: &shard.pending,
            id,
        };
        let query = wire::encode_query(id, name, qtype)
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        shard
            .socket
            .send(&query)
            .await
            .map_err(|e| QueryError::Unreachable(format!("cannot send to the DNS server: {e}")))?;
        match timeout(self.timeout, rx).await {
            Ok(Ok((bytes, _))) if bytes.is_empty() => Err(QueryError::Unreachable(
                "the DNS server's port is closed".into(),
            )),
            Ok(Ok((bytes, at))) => wire::parse_answer(&bytes, id, name, qtype)
                .map(|a| (a, at))
                .map_err(|e| QueryError::Unreachable(e.to_string())),
            Ok(Err(_)) | Err(_) => Err(QueryError::NoAnswer),
        }
    }

    /// One query over TCP (after a truncated UDP answer).
    async fn tcp(
        &self,
        server: SocketAddr,
        name: &str,
        qtype: u16,
    ) -> Result<(Answer, Instant), QueryError> {
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
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..1000).map(|_| random_id()).collect();
        assert!(ids.len() > 950, "{}", ids.len());
    }
}
