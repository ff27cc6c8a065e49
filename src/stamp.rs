//! Times from the kernel: the arrival of received bytes (`SO_TIMESTAMPNS`, read with
//! `recvmsg`, on UDP and TCP sockets alike) and the round-trip time of a TCP handshake
//! (`TCP_INFO`). A busy runtime reads a socket some time after its bytes arrived; the kernel's
//! stamp is the arrival itself, so the times reported are the wire's, not our queueing.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use tokio::time::Instant;

/// A kernel stamp older than this is not trusted (the wall clock stepped since): the time of
/// the read stands instead.
const MAX_STAMP_AGE: Duration = Duration::from_secs(30);

/// Keep the kernel's receive stamps on for as long as the process runs. The kernel stamps
/// arriving packets only while some socket asks for stamps, and turns that on (or off) in a
/// deferred work item when the first such socket opens (or the last one closes): packets that
/// arrive in between have no stamp. Rounds open and close every probe's socket, so without a
/// socket that stays, the first answers of each round after a pause would have none. One
/// UDP socket, never bound, holds it (an open descriptor, no port).
pub fn keep_on() {
    static KEEPER: std::sync::OnceLock<Option<std::net::UdpSocket>> = std::sync::OnceLock::new();
    KEEPER.get_or_init(|| {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the descriptor is owned by the UdpSocket made below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a fresh socket nobody else owns.
        let socket = unsafe { std::net::UdpSocket::from_raw_fd(fd) };
        set_stamps(fd);
        Some(socket)
    });
}

/// Ask the kernel to stamp every datagram or segment `fd` receives with its arrival time.
/// Failing (an old kernel) leaves the time of each read.
pub fn enable(fd: RawFd) {
    keep_on();
    set_stamps(fd);
}

/// `SO_TIMESTAMPNS` on `fd`.
fn set_stamps(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid pointer to a c_int, on
    // a descriptor the caller owns.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Read without waiting from `fd` into `buf` (at most `len` bytes): the count, and the
/// arrival of the last bytes read as the kernel stamped it (`None` without a stamp: the
/// socket does not have them on, or nothing was read).
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes (it may be uninitialised).
pub unsafe fn recv(fd: RawFd, buf: *mut u8, len: usize) -> io::Result<(usize, Option<Instant>)> {
    let mut iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: len,
    };
    // Room for a timestamp control message, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid empty one; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg writes at most `iov_len` bytes into `buf` (valid for them, by this
    // function's contract) and at most `msg_controllen` bytes into `control`.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
    let Ok(n) = usize::try_from(n) else {
        return Err(io::Error::last_os_error());
    };
    let mut at = None;
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled, within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies within the buffer.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
            // SAFETY: an SCM_TIMESTAMPNS message carries a timespec; read it unaligned.
            let ts: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            at = instant_of(ts);
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
    }
    Ok((n, at))
}

/// The monotonic instant of a wall-clock kernel stamp: now, less how long ago the stamp
/// was. `None` for a stamp in the future or older than [`MAX_STAMP_AGE`] (the wall clock
/// stepped between the stamp and now).
fn instant_of(ts: libc::timespec) -> Option<Instant> {
    let (secs, nanos) = (
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    );
    let stamp = std::time::UNIX_EPOCH + Duration::new(secs, nanos);
    let now = Instant::now();
    let ago = std::time::SystemTime::now().duration_since(stamp).ok()?;
    if ago >= MAX_STAMP_AGE {
        return None;
    }
    now.checked_sub(ago)
}

/// The round-trip time the kernel measured on `fd`'s handshake (the SYN to its SYN-ACK),
/// read from `TCP_INFO` right after connecting. `None` when a SYN was retransmitted (the
/// sample would then time the retransmission, and the wait before it is real connect time)
/// or the kernel has none.
pub fn handshake_rtt(fd: RawFd) -> Option<Duration> {
    // SAFETY: an all-zero tcp_info is a valid value of a plain C struct.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    let filled = usize::try_from(len).unwrap_or(0);
    // The fields read end with tcpi_total_retrans, in every kernel since 2.6.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_total_retrans) + 4;
    if rc != 0 || filled < needed || info.tcpi_total_retrans != 0 || info.tcpi_retransmits != 0 {
        return None;
    }
    // tcpi_rtt is the smoothed RTT in microseconds: after a handshake, its only sample.
    (info.tcpi_rtt > 0).then(|| Duration::from_micros(u64::from(info.tcpi_rtt)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_read_is_stamped_when_its_bytes_arrived_not_when_they_were_read() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        // The kernel turns its stamps on in a deferred work item: give it time to.
        keep_on();
        std::thread::sleep(Duration::from_millis(50));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        // Loopback: the handshake's round trip is there, and short.
        let rtt = handshake_rtt(client.as_raw_fd()).expect("TCP_INFO has the handshake's RTT");
        assert!(rtt < Duration::from_millis(50), "{rtt:?}");
        enable(client.as_raw_fd());
        server.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        let sent = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = [0u8; 64];
        // SAFETY: `buf` is valid for writes of its length.
        let (n, at) = unsafe { recv(client.as_raw_fd(), buf.as_mut_ptr(), buf.len()) }.unwrap();
        let read = Instant::now();
        assert_eq!(&buf[..n], b"HTTP/1.1 200 OK\r\n");
        let at = at.expect("the kernel stamped the segment");
        // The stamp is the arrival, about when it was sent, not the read 100 ms later.
        assert!(at < sent + Duration::from_millis(20), "{:?}", at - sent);
        assert!(read - at >= Duration::from_millis(80), "{:?}", read - at);
    }

    #[test]
    fn stamps_of_the_past_are_instants_of_the_past() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let ts = |d: Duration| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        };
        let before = Instant::now();
        let at = instant_of(ts(now - Duration::from_millis(50))).unwrap();
        assert!(
            at <= before - Duration::from_millis(49),
            "{at:?} {before:?}"
        );
        assert!(
            at >= before - Duration::from_millis(60),
            "{at:?} {before:?}"
        );
        // A stamp in the future or long ago: the clock stepped, no stamp.
        assert_eq!(instant_of(ts(now + Duration::from_secs(5))), None);
        assert_eq!(instant_of(ts(now - Duration::from_secs(60))), None);
    }
}
