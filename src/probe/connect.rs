//! The first two phases of a request: resolve the host a route connects to, then open a
//! TCP connection to it with Happy Eyeballs (RFC 8305) over the addresses [`crate::dns`] found.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};

use super::route::Route;
use super::socket::Socket;
use super::{Failure, Timed};
use crate::dns::{DnsFailure, RoundResolver};
use crate::gate::{Gates, Permit};
use crate::outcome::FailureReason;
use crate::probe_url::IpProtocol;

/// RFC 8305 §5 "Connection Attempt Delay": how long an attempt runs alone before the next
/// address is tried as well.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Where an attempt's place at its address's gate comes from.
enum Place<'a> {
    /// No gate: the connection counts against nothing.
    Free,
    /// Taken already.
    Held(Permit),
    /// To be taken from these gates before connecting.
    Take(&'a Gates<IpAddr>),
}

/// An attempt that connected: the connection, its address, its place at the address's gate,
/// and when its `connect` call was made.
type Won = (TcpStream, SocketAddr, Option<Permit>, Instant);

/// Connect to one address, from `source` if given, holding a place at its gate.
async fn attempt(addr: SocketAddr, source: Option<IpAddr>, place: Place<'_>) -> io::Result<Won> {
    let permit = match place {
        Place::Free => None,
        Place::Held(p) => Some(p),
        // The wait is boxed: uncontended, a place is taken at once, and the futures of
        // every probe need not carry the wait's state.
        Place::Take(gates) => Some(match gates.try_slot(&addr.ip()) {
            Some(p) => p,
            None => Box::pin(gates.slot(&addr.ip())).await,
        }),
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let started = Instant::now();
    Ok((socket.connect(addr).await?, addr, permit, started))
}

/// Connect to the first address that answers: start with the first, add the next one after
/// [`ATTEMPT_DELAY`] or as soon as an attempt fails; the first established connection wins
/// and the others are dropped. The error of the last failure is returned if all fail.
pub async fn connect(addrs: &[IpAddr], port: u16, source: Option<IpAddr>) -> io::Result<TcpStream> {
    connect_gated(addrs, port, source, None, None)
        .await
        .map(|(s, ..)| s)
}

/// [`connect`], each attempt holding a place at its address's gate of `gates` (the first
/// attempt's is `first`, when given): the winner's place is returned with its connection.
async fn connect_gated(
    addrs: &[IpAddr],
    port: u16,
    source: Option<IpAddr>,
    gates: Option<&Gates<IpAddr>>,
    mut first: Option<Permit>,
) -> io::Result<Won> {
    let mut place = || match (first.take(), gates) {
        (Some(p), _) => Place::Held(p),
        (None, Some(g)) => Place::Take(g),
        (None, None) => Place::Free,
    };
    if let [only] = addrs {
        return attempt(SocketAddr::new(*only, port), source, place()).await;
    }
    let mut pending = FuturesUnordered::new();
    let mut last_err = None;
    for addr in addrs {
        pending.push(attempt(SocketAddr::new(*addr, port), source, place()));
        tokio::select! {
            // An attempt finished: a connection wins, a failure starts the next attempt now.
            Some(r) = pending.next() => match r {
                Ok(won) => return Ok(won),
                Err(e) => last_err = Some(e),
            },
            // The running attempts had their head start: add the next address.
            () = tokio::time::sleep(ATTEMPT_DELAY) => {}
        }
    }
    // Every address has been tried; wait for the attempts still running.
    while let Some(r) = pending.next().await {
        match r {
            Ok(won) => return Ok(won),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no address to connect to")))
}

/// Resolve the host `route` connects to (the proxy's, when there is one), with the families
/// `proto` allows, before `deadline`. The time is the lookup's own, never the wait for a
/// lookup slot; a lookup shared by several targets of the host reports it to each.
pub(super) async fn resolve(
    route: &Route<'_>,
    proto: IpProtocol,
    deadline: Instant,
    resolver: &RoundResolver,
) -> Timed<Arc<[IpAddr]>> {
    let t = Instant::now();
    match timeout_at(deadline, resolver.resolve(route.host, proto)).await {
        Ok(answer) => Timed {
            took: answer.took,
            late: Duration::ZERO,
            result: answer.result.map_err(|e| {
                let detail = match route.proxy() {
                    Some(_) => format!("{}: {e}", route.to_proxy("resolving")),
                    None => e.to_string(),
                };
                Failure::new(FailureReason::Dns, detail)
            }),
        },
        Err(_) => Timed {
            took: t.elapsed(),
            late: Duration::ZERO,
            result: Err(Failure::new(
                FailureReason::Dns,
                DnsFailure::Deadline(route.host.to_string()).to_string(),
            )),
        },
    }
}

/// An established TCP connection.
#[derive(Debug)]
pub(super) struct Connected {
    /// The socket, set up for a probe: reset on close, receive stamps on (`TCP_NODELAY` is
    /// the request's to set, when it writes more than once).
    pub tcp: Socket,
    /// The address that answered.
    pub ip: Option<IpAddr>,
    /// The connection's place at its address's gate, held until the request ends.
    pub permit: Option<Permit>,
}

/// Connect to `route`'s port on one of `addrs` (from `source` if given) before `deadline`,
/// each attempt taking a place at its address's gate of `gates` first. The wait for the first
/// address's place is no part of the connect time. The addresses are taken, so that they are
/// let go of once connected.
///
/// The time is the kernel's where it has one: from the first attempt to the winning attempt's
/// `connect` call, plus that handshake's round-trip time as the kernel measured it
/// (`TCP_INFO`, when no SYN was retransmitted). When this task is woken late to learn that
/// the connection is up, the delay is not the target's, and is not counted. Otherwise it is
/// the time until the connection was seen established.
pub(super) async fn open(
    route: &Route<'_>,
    addrs: Arc<[IpAddr]>,
    source: Option<IpAddr>,
    deadline: Instant,
    gates: &Gates<IpAddr>,
) -> Timed<Connected> {
    // A deadline already past opens no socket (a timeout polls its future once first).
    if Instant::now() >= deadline {
        return Timed {
            took: Duration::ZERO,
            late: Duration::ZERO,
            result: Err(Failure::new(
                FailureReason::ConnectTimeout,
                "deadline passed before connecting",
            )),
        };
    }
    let proxy = route.proxy();
    let Some(&head) = addrs.first() else {
        return Timed {
            took: Duration::ZERO,
            late: Duration::ZERO,
            result: Err(Failure::new(
                FailureReason::ConnectError,
                "no address to connect to",
            )),
        };
    };
    let first = match gates.try_slot(&head) {
        Some(p) => Ok(p),
        None => Box::pin(timeout_at(deadline, gates.slot(&head))).await,
    };
    let Ok(first) = first else {
        return Timed {
            took: Duration::ZERO,
            late: Duration::ZERO,
            result: Err(Failure::new(
                FailureReason::ConnectTimeout,
                format!(
                    "deadline passed while waiting for a connection slot of {head} \
                     (max_connections_per_host)"
                ),
            )),
        };
    };
    let t = Instant::now();
    let connected = timeout_at(
        deadline,
        connect_gated(&addrs, route.port, source, Some(gates), Some(first)),
    )
    .await;
    let seen = t.elapsed();
    let mut took = seen;
    let result = match connected {
        Ok(Ok((tcp, addr, permit, started))) => {
            if let Some(rtt) = crate::stamp::handshake_rtt(tcp.as_raw_fd()) {
                took = took.min(started.saturating_duration_since(t) + rtt);
            }
            let ip = Some(addr.ip());
            // From here on a close resets unless the server closed first (see `Socket`).
            Ok(Connected {
                tcp: Socket::new(tcp),
                ip,
                permit,
            })
        }
        Ok(Err(e)) => {
            let reason = match (e.kind() == io::ErrorKind::ConnectionRefused, proxy) {
                (true, Some(_)) => FailureReason::ProxyConnectRefused,
                (true, None) => FailureReason::ConnectRefused,
                (false, _) => FailureReason::ConnectError,
            };
            let detail = match proxy {
                Some(_) => format!("{}: {e}", route.to_proxy("connecting to")),
                None => e.to_string(),
            };
            Err(Failure::new(reason, detail))
        }
        Err(_) => Err(Failure::new(
            FailureReason::ConnectTimeout,
            match proxy {
                Some(_) => format!("deadline passed while {}", route.to_proxy("connecting to")),
                None => "deadline passed while connecting".into(),
            },
        )),
    };
    Timed {
        took,
        late: seen - took,
        result,
    }
}

/// Turn the reset-on-close of a probe's socket on or off.
// `set_linger` is deprecated in tokio because a linger *time* blocks the closing thread;
// zero does not block (it resets), and off is the default close.
#[allow(deprecated)]
pub(super) fn set_linger_zero(tcp: &TcpStream, on: bool) {
    let _ = tcp.set_linger(on.then_some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn a_dead_address_does_not_fail_the_connection() {
        // A closed port on ::1 first, a listener on 127.0.0.1 second.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let addrs = ips(&["::1", "127.0.0.1"]);
        let stream = connect(&addrs, port, None).await.unwrap();
        assert!(stream.peer_addr().unwrap().is_ipv4());
    }
}
