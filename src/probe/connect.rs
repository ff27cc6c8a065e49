//! TCP connect with Happy Eyeballs (RFC 8305) over the addresses [`crate::dns`] found.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::net::{TcpSocket, TcpStream};

/// RFC 8305 §5 "Connection Attempt Delay": how long an attempt runs alone before the next
/// address is tried as well.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

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
