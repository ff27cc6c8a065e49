//! The TLS handshake of an https request, over a TCP connection (or a proxy's tunnel): the
//! negotiated version, and the expiry and facts of the certificates the server presented,
//! recorded even when they are refused.

use std::cell::Cell;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::client::TlsStream;

use super::socket::Socket;
use super::{Failure, Timed};
use crate::outcome::{FailureReason, TlsVersion};
use crate::tls::{PRESENTED, Presented};

/// A completed handshake.
#[derive(Debug)]
pub struct Secured {
    /// The stream the request is written to.
    pub stream: TlsStream<Socket>,
    /// The negotiated TLS version, when it is one we name.
    pub version: Option<TlsVersion>,
}

/// What a handshake established, whether it completed or not.
#[derive(Debug)]
pub struct Handshake {
    /// Expiry and facts of the certificates the server presented, even if they were
    /// refused; `None` when none arrived before the deadline.
    pub presented: Option<Presented>,
    /// The stream, or why the handshake failed; and how long it took.
    pub secured: Timed<Secured>,
}

/// Run the TLS handshake over `tcp` with `config`, sending and verifying `server_name`,
/// before `deadline`. A completed handshake's time ends at the arrival of the server's last
/// handshake record (the kernel's stamp): the client's own work after it (verifying the
/// chain, sending its `Finished`) and a late wake-up are not the server's.
pub async fn handshake(
    tcp: Socket,
    config: &Arc<ClientConfig>,
    server_name: ServerName<'static>,
    deadline: Instant,
) -> Handshake {
    let t = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let handshake = PRESENTED.scope(Cell::new(None), async {
        let r = connector.connect(server_name, tcp).await;
        (r, PRESENTED.with(Cell::take))
    });
    let outcome = timeout_at(deadline, handshake).await;
    let seen = t.elapsed();
    let mut took = seen;
    let (presented, result) = match outcome {
        Ok((Ok(stream), presented)) => {
            took = stream.get_ref().0.since(t).min(seen);
            let version = match stream.get_ref().1.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_2) => Some(TlsVersion::Tls12),
                Some(rustls::ProtocolVersion::TLSv1_3) => Some(TlsVersion::Tls13),
                _ => None,
            };
            (presented, Ok(Secured { stream, version }))
        }
        Ok((Err(e), presented)) => (presented, Err(Failure::io(&e, true))),
        Err(_) => (
            None,
            Err(Failure::new(
                FailureReason::Timeout,
                "deadline passed during the TLS handshake",
            )),
        ),
    };
    Handshake {
        presented,
        secured: Timed {
            took,
            late: seen - took,
            result,
        },
    }
}
