//! Name resolution (each host once per round) and TCP connect with Happy Eyeballs (RFC 8305).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OnceCell, Semaphore};

use crate::target::{Host, IpProtocol};

/// RFC 8305 §5 "Connection Attempt Delay": how long an attempt runs alone before the next
/// address is tried as well.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Lookups running at once: the system resolver blocks a thread per lookup.
const MAX_PARALLEL_LOOKUPS: usize = 32;

/// The outcome of one lookup, shared by every probe of that host in a round.
type Lookup = Result<Arc<[IpAddr]>, String>;

/// Resolves each host name once per round; IP literals never reach the resolver.
#[derive(Debug)]
pub struct Resolver {
    /// One cell per host name; the first probe of a host fills it, the others wait on it.
    cache: Mutex<HashMap<String, Arc<OnceCell<Lookup>>>>,
    /// Bounds the blocking lookup threads.
    lookups: Semaphore,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    /// A resolver with an empty cache.
    pub fn new() -> Self {
        Resolver {
            cache: Mutex::new(HashMap::new()),
            lookups: Semaphore::new(MAX_PARALLEL_LOOKUPS),
        }
    }

    /// The addresses to try for `host`, filtered by `proto` and ordered for Happy Eyeballs.
    pub async fn resolve(&self, host: &Host, proto: IpProtocol) -> io::Result<Vec<IpAddr>> {
        let all: Arc<[IpAddr]> = match host {
            Host::Ip(ip) => Arc::from([*ip]),
            Host::Name(name) => {
                let cell = {
                    // A poisoned lock only means another probe panicked mid-insert; the map
                    // itself is still consistent.
                    let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    cache.entry(name.clone()).or_default().clone()
                };
                cell.get_or_init(|| self.lookup(name))
                    .await
                    .clone()
                    .map_err(io::Error::other)?
            }
        };
        let ordered = order(&all, proto);
        if ordered.is_empty() {
            return Err(io::Error::other(format!(
                "{host} has no {} address",
                match proto {
                    IpProtocol::Ip4 => "IPv4",
                    IpProtocol::Ip6 => "IPv6",
                    IpProtocol::Auto => "IP",
                }
            )));
        }
        Ok(ordered)
    }

    /// Ask the system resolver.
    async fn lookup(&self, name: &str) -> Lookup {
        // The semaphore is never closed, so acquire cannot fail.
        let _permit = self.lookups.acquire().await.map_err(|e| e.to_string())?;
        let addrs: Vec<IpAddr> = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|e| format!("cannot resolve {name}: {e}"))?
            .map(|sa| sa.ip())
            .collect();
        if addrs.is_empty() {
            return Err(format!("{name} resolved to no address"));
        }
        Ok(addrs.into())
    }
}

/// Keep the allowed families and interleave them, starting with the resolver's first choice.
pub fn order(addrs: &[IpAddr], proto: IpProtocol) -> Vec<IpAddr> {
    let allowed = |a: &&IpAddr| match proto {
        IpProtocol::Auto => true,
        IpProtocol::Ip4 => a.is_ipv4(),
        IpProtocol::Ip6 => a.is_ipv6(),
    };
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs.iter().filter(allowed) {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    let Some(first) = out.first().copied() else {
        return out;
    };
    let (mut same, mut other): (Vec<_>, Vec<_>) = out
        .into_iter()
        .partition(|a| a.is_ipv4() == first.is_ipv4());
    same.reverse();
    other.reverse();
    let mut interleaved = Vec::with_capacity(same.len() + other.len());
    while !same.is_empty() || !other.is_empty() {
        interleaved.extend(same.pop());
        interleaved.extend(other.pop());
    }
    interleaved
}

/// Connect to one address, from `source` if given.
async fn attempt(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// Connect to the first address that answers: start with the first, add the next one after
/// [`ATTEMPT_DELAY`] or as soon as an attempt fails; the first established connection wins
/// and the others are dropped. The error of the last failure is returned if all fail.
pub async fn connect(addrs: &[IpAddr], port: u16, source: Option<IpAddr>) -> io::Result<TcpStream> {
    if let [only] = addrs {
        return attempt(SocketAddr::new(*only, port), source).await;
    }
    let mut pending = FuturesUnordered::new();
    let mut last_err = None;
    for addr in addrs {
        pending.push(attempt(SocketAddr::new(*addr, port), source));
        tokio::select! {
            // An attempt finished: a connection wins, a failure starts the next attempt now.
            Some(r) = pending.next() => match r {
                Ok(stream) => return Ok(stream),
                Err(e) => last_err = Some(e),
            },
            // The running attempts had their head start: add the next address.
            () = tokio::time::sleep(ATTEMPT_DELAY) => {}
        }
    }
    // Every address has been tried; wait for the attempts still running.
    while let Some(r) = pending.next().await {
        match r {
            Ok(stream) => return Ok(stream),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no address to connect to")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn families_are_interleaved_and_filtered() {
        let all = ips(&["::1", "fe80::1", "127.0.0.1", "10.0.0.1"]);
        assert_eq!(
            order(&all, IpProtocol::Auto),
            ips(&["::1", "127.0.0.1", "fe80::1", "10.0.0.1"])
        );
        assert_eq!(
            order(&all, IpProtocol::Ip4),
            ips(&["127.0.0.1", "10.0.0.1"])
        );
        assert_eq!(order(&all, IpProtocol::Ip6), ips(&["::1", "fe80::1"]));
        let v4first = ips(&["127.0.0.1", "::1", "::1"]);
        assert_eq!(
            order(&v4first, IpProtocol::Auto),
            ips(&["127.0.0.1", "::1"])
        );
        assert!(order(&ips(&["127.0.0.1"]), IpProtocol::Ip6).is_empty());
    }

    #[tokio::test]
    async fn ip_literals_skip_the_resolver() {
        let r = Resolver::new();
        let got = r
            .resolve(&Host::Ip("127.0.0.1".parse().unwrap()), IpProtocol::Auto)
            .await
            .unwrap();
        assert_eq!(got, ips(&["127.0.0.1"]));
        assert!(r.cache.lock().unwrap().is_empty());
        let err = r
            .resolve(&Host::Ip("127.0.0.1".parse().unwrap()), IpProtocol::Ip6)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no IPv6 address"), "{err}");
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
