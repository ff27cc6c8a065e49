//! A probe's TCP socket: reads through `recvmsg`, keeping the kernel's stamp of the arrival
//! of the last bytes read ([`crate::stamp`]), so that a phase that ends on received bytes (a
//! status line, a TLS record) ends when they arrived, not when a busy runtime read them.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A connected TCP socket of a probe, with receive stamps on. Dropping it closes the
/// connection with a reset, unless the peer closed its side first (a read found its end):
/// an active close would leave a TIME_WAIT socket on our side for a minute, and rounds of
/// thousands of targets on one address would run out of ports; when the server has closed
/// first, the TIME_WAIT is the server's and the close is the usual one.
#[derive(Debug)]
pub struct Socket {
    /// The connection.
    tcp: TcpStream,
    /// When the last bytes read arrived: the kernel's stamp, else the time of the read.
    arrived: Option<Instant>,
    /// Whether the peer closed its side: a read found the end of its stream (or of the TLS
    /// session over it).
    peer_closed: std::sync::atomic::AtomicBool,
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Set when the socket goes, not when it connects: a server that closes first (most
        // do after `Connection: close`) costs no `setsockopt` at all.
        if !*self.peer_closed.get_mut() {
            super::connect::set_linger_zero(&self.tcp, true);
        }
    }
}

impl Socket {
    /// Wrap `tcp`, turning the kernel's receive stamps on (one `setsockopt`).
    pub fn new(tcp: TcpStream) -> Socket {
        crate::stamp::enable(tcp.as_raw_fd());
        Socket {
            tcp,
            arrived: None,
            peer_closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Note that the peer closed its side (a TLS session's end read above this socket), so
    /// that the close is the usual one.
    pub fn closed_by_peer(&self) {
        self.peer_closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The connection.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The time from `t` to the arrival of the last bytes read, when they were read after
    /// `t`: the end of a phase that ended on them. Otherwise (nothing read since `t`) the
    /// time from `t` to now.
    pub fn since(&self, t: Instant) -> std::time::Duration {
        let now = Instant::now();
        match self.arrived {
            Some(at) if at >= t && at <= now => at - t,
            _ => now.saturating_duration_since(t),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        // No room: nothing to read (as tokio's own reads answer).
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let fd = me.tcp.as_raw_fd();
        loop {
            ready!(me.tcp.poll_read_ready(cx))?;
            // SAFETY: the bytes recvmsg writes are initialised before `assume_init` below;
            // nothing uninitialised is read.
            let unfilled = unsafe { buf.unfilled_mut() };
            let (ptr, len) = (unfilled.as_mut_ptr().cast::<u8>(), unfilled.len());
            // The count and stamp of the read, when one was made.
            let mut got = None;
            // A short read emptied the queue: like tokio's own reads, the readiness is
            // cleared (by answering WouldBlock to `try_io`, with the readiness seen before the
            // read), so that the next read waits for the next arrival instead of costing a
            // system call that finds nothing.
            let outcome = me.tcp.try_io(Interest::READABLE, || {
                // SAFETY: `ptr` is valid for writes of `len` bytes (the unfilled part of
                // `buf`).
                let (n, at) = unsafe { crate::stamp::recv(fd, ptr, len) }?;
                got = Some((n, at));
                if n > 0 && n < len {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            let Some((n, at)) = got else {
                match outcome {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                        return Poll::Ready(Err(e));
                    }
                    _ => continue,
                }
            };
            // SAFETY: recvmsg wrote `n` bytes at the start of the unfilled part.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            if n > 0 {
                me.arrived = Some(at.unwrap_or_else(Instant::now));
            } else {
                me.closed_by_peer();
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use tokio::io::AsyncReadExt as _;

    /// How the server saw the client's close: `Ok(0)` for a FIN, an error for a reset.
    fn close_seen_by_server(server_closes_first: bool) -> io::Result<usize> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
            if server_closes_first {
                s.shutdown(std::net::Shutdown::Write).unwrap();
            }
            let mut buf = [0u8; 16];
            s.read(&mut buf)
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut socket = Socket::new(TcpStream::connect(addr).await.unwrap());
            let mut buf = [0u8; 64];
            let mut read = 0;
            while read < 19 {
                read += socket.read(&mut buf[read..]).await.unwrap();
            }
            if server_closes_first {
                assert_eq!(socket.read(&mut buf).await.unwrap(), 0);
            }
            drop(socket);
        });
        server.join().unwrap()
    }

    #[test]
    fn a_socket_resets_unless_the_server_closed_first() {
        // The server closed first: the usual close, TIME_WAIT on the server's side.
        assert_eq!(close_seen_by_server(true).unwrap(), 0);
        // We close first: a reset, no TIME_WAIT on ours.
        let e = close_seen_by_server(false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    }
}
