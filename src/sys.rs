//! The process: its file-descriptor limit and the probe concurrency derived from it, and how
//! the allocator gives memory back.

/// Descriptors kept free for the listener, scrapes, config and log files.
pub const FD_RESERVE: u64 = 256;

/// Upper bound of the default concurrency: beyond this, a 2-core machine gains nothing.
pub const MAX_DEFAULT_CONCURRENCY: usize = 4096;

/// Raise the soft open-files limit toward the hard one; returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        // Some kernels cap RLIMIT_NOFILE below RLIM_INFINITY; a modest target always works.
        let want = lim.rlim_max.min(1 << 20);
        if want > lim.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = want;
            }
        }
    }
    lim.rlim_cur
}

/// Ignore SIGHUP until the reload handler takes it over: the default action ends the process,
/// and a SIGHUP can arrive while a large targets file is still loading.
pub fn ignore_sighup() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory effects; it is called
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// The probe concurrency for a soft descriptor limit: the requested one, or
/// [`MAX_DEFAULT_CONCURRENCY`], never more than one probe per descriptor outside a reserve of
/// [`FD_RESERVE`], and at least 1.
pub fn concurrency(requested: Option<usize>, fd_limit: u64) -> usize {
    let usable = usize::try_from(fd_limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    requested
        .unwrap_or(MAX_DEFAULT_CONCURRENCY)
        .min(usable)
        .max(1)
}

/// malloc arenas at most (glibc). By default glibc opens up to 8 per core as threads contend,
/// and each keeps its own freed memory: under churn (reloads of 10,000 targets, hundreds of
/// selections; `examples/churn.rs`) the peak RSS was 131 MiB with the default and 98 MiB
/// with two.
pub const MALLOC_ARENAS: i32 = 2;

/// Cap glibc's malloc arenas at [`MALLOC_ARENAS`], unless `MALLOC_ARENA_MAX` says otherwise.
/// Call before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes the allocator's settings; no thread allocates yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

/// Allocations from this size on are mapped apart and unmapped when freed (glibc).
pub const MMAP_THRESHOLD: i32 = 256 << 10;

/// Fix glibc's mmap threshold at [`MMAP_THRESHOLD`], unless `MALLOC_MMAP_THRESHOLD_` says
/// otherwise. By default glibc raises the threshold to the size of each large block freed:
/// a round's results (17 MB at 100,000 targets) then come from the heap the round after, and
/// the heap does not shrink when they go, so that RSS over rounds of 100,000 targets went
/// from 112 MiB to 128 MiB on some runs and not others. Call before any thread starts.
pub fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes the allocator's settings; no thread allocates yet.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// Give freed memory back to the system (glibc): after a reload has dropped a whole config,
/// its pages would otherwise stay in the process's RSS.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The listening sockets systemd passed to this process (socket activation: `LISTEN_PID` is
/// this process and `LISTEN_FDS` counts descriptors from 3 on). An error says why there are
/// none usable.
pub fn systemd_listeners() -> Result<Vec<std::net::TcpListener>, String> {
    use std::os::fd::{FromRawFd, RawFd};
    let pid = std::env::var("LISTEN_PID").map_err(|_| "LISTEN_PID is not set".to_owned())?;
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Err(format!("LISTEN_PID {pid} is not this process"));
    }
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<RawFd>().ok())
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| "LISTEN_FDS is not a count from 1 to 64".to_owned())?;
    let mut listeners = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        let mut kind: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `kind`; a descriptor that is not
        // a socket makes it fail without side effects.
        let ok = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&raw mut kind).cast(),
                &mut len,
            )
        } == 0;
        if !ok || kind != libc::SOCK_STREAM {
            return Err(format!("descriptor {fd} is not a stream socket"));
        }
        // SAFETY: systemd hands these descriptors to this process (LISTEN_PID checked above),
        // they are open stream sockets (checked above), and nothing else in the process owns
        // them: each is wrapped exactly once.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("descriptor {fd}: {e}"))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Seconds since the epoch, as a float.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The addresses of this host's interfaces (`getifaddrs`): a connection to any of them
/// reaches the host itself, whatever the interface. Empty when they cannot be read.
pub fn own_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list that we only read, then free once with
    // freeifaddrs; each `ifa_addr` is null or points at a sockaddr of the family it names.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut at = head;
        while !at.is_null() {
            let addr = (*at).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(std::net::IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(std::net::IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            at = (*at).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_include_loopback() {
        let own = own_addresses();
        assert!(
            own.contains(&std::net::IpAddr::from([127, 0, 0, 1])),
            "{own:?}"
        );
    }

    #[test]
    fn concurrency_follows_the_limit() {
        assert_eq!(concurrency(None, 1024), 768);
        assert_eq!(concurrency(None, 100), 1);
        assert_eq!(concurrency(None, 1 << 20), MAX_DEFAULT_CONCURRENCY);
        assert_eq!(concurrency(Some(5000), 1024), 768);
        assert_eq!(concurrency(Some(10), 1024), 10);
    }
}
