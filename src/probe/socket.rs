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

/// A connected TCP socket of a probe, with receive stamps on.
#[derive(Debug)]
pub struct Socket {
    /// The connection.
    tcp: TcpStream,
    /// When the last bytes read arrived: the kernel's stamp, else the time of the read.
    arrived: Option<Instant>,
}

impl Socket {
    /// Wrap `tcp`, turning the kernel's receive stamps on (one `setsockopt`).
    pub fn new(tcp: TcpStream) -> Socket {
        crate::stamp::enable(tcp.as_raw_fd());
        Socket { tcp, arrived: None }
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
