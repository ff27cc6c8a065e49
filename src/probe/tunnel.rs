//! The CONNECT exchange with a proxy, for an https request through it: ask for a tunnel to
//! the URL's host and port, read the proxy's whole answer head (bounded); a 2xx opens the
//! tunnel, through which the TLS handshake then runs.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout_at};

use super::exchange::{ReadError, Want, read_head};
use super::socket::Socket;
use super::{Failure, Timed, seconds};
use crate::outcome::{FailureReason, StatusLine};
use crate::probe_url::ProbeUrl;
use crate::proxy::Proxy;

/// Ask `proxy` for a tunnel to `url`'s host and port over `tcp`: write CONNECT, read the whole
/// answer head (bounded), before `deadline`. A 2xx with nothing after its head opens the
/// tunnel, and `tcp` is returned to go on through it; anything else is the failure. An open
/// tunnel's time ends at the arrival of the answer's last bytes (the kernel's stamp).
pub async fn open(
    mut tcp: Socket,
    proxy: &Proxy,
    url: &ProbeUrl,
    deadline: Instant,
) -> Timed<Socket> {
    let t = Instant::now();
    let result = exchange(&mut tcp, proxy, url, deadline, t).await;
    let seen = t.elapsed();
    let took = match result {
        Ok(()) => tcp.since(t).min(seen),
        Err(_) => seen,
    };
    Timed {
        took,
        late: seen - took,
        result: result.map(|()| tcp),
    }
}

/// The body of [`open`], started at `t`.
async fn exchange(
    tcp: &mut Socket,
    proxy: &Proxy,
    url: &ProbeUrl,
    deadline: Instant,
    t: Instant,
) -> Result<(), Failure> {
    let at = proxy.authority();
    let mut answer = None;
    let read = timeout_at(deadline, async {
        tcp.write_all(&proxy.connect_request(url)).await?;
        read_head(tcp, Want::Whole, &mut answer).await
    })
    .await;
    let refused = |status: &StatusLine| {
        Failure::new(
            FailureReason::ProxyConnectStatus,
            format!(
                "the proxy {at} answered CONNECT {}:{} with {status}",
                url.host, url.port
            ),
        )
    };
    // A refusal is one whatever follows its status line.
    if let Some(status) = answer.as_ref().filter(|s| !(200..300).contains(&s.code)) {
        return Err(refused(status));
    }
    let io_fail = |e: &io::Error| {
        let reason = match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => FailureReason::Reset,
            _ => FailureReason::Closed,
        };
        Failure::new(reason, format!("the proxy {at}: {e}"))
    };
    match read {
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            match answer {
                Some(status) => format!(
                    "proxy {at}: no end to its answer to CONNECT ({status}) within {}",
                    seconds(t.elapsed())
                ),
                None => format!(
                    "proxy {at}: no answer to CONNECT within {}",
                    seconds(t.elapsed())
                ),
            },
        )),
        Ok(Ok(head)) => {
            if head.extra {
                return Err(Failure::new(
                    FailureReason::InvalidResponse,
                    format!("the proxy {at} sent bytes after its answer to CONNECT"),
                ));
            }
            Ok(())
        }
        Ok(Err(ReadError::Io(e))) => Err(io_fail(&e)),
        Ok(Err(ReadError::Closed)) => Err(Failure::new(
            FailureReason::Closed,
            format!("the proxy {at} closed the connection before answering CONNECT"),
        )),
        Ok(Err(ReadError::Parse(e))) => Err(Failure::new(
            FailureReason::InvalidResponse,
            format!("the proxy {at} answered CONNECT with something else: {e}"),
        )),
    }
}
