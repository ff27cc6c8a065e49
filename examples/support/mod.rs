//! What the example programs share.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

/// A child process stopped when dropped: SIGTERM, so that nginx stops its workers too (a
/// SIGKILL leaves them running and holding the ports), then SIGKILL after 5 s.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: kill only sends a signal to our own child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address an exporter started with `--log.format logfmt` and a piped stderr listens on,
/// from its start-up line; the rest of its log is read and dropped by a thread of its own, so
/// that a full pipe never stops it.
pub fn listening_address(child: &mut Child) -> SocketAddr {
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.contains("msg=listening")
                .then(|| {
                    l.split_whitespace()
                        .find_map(|kv| kv.strip_prefix("address=")?.parse().ok())
                })
                .flatten()
        })
        .expect("listening line");
    std::thread::spawn(move || for _ in lines {});
    addr
}
