//! Probe threads: one single-threaded runtime per core, each on a thread of its own, that the
//! rounds split their targets over.
//!
//! A probe is a few system calls and a few wakeups. On the work-stealing runtime every wakeup
//! may move a probe to the other core and every spawn may wake a parked worker; on a probe
//! thread a probe's connect, read and close, its timers and its task all stay on one thread,
//! with one epoll set, and the threads share nothing but the slots (global, per host, per
//! address).
//! The endpoints, reloads and the rounds' collectors stay on the main runtime.
//!
//! Imports nothing of this crate.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The probe threads, one per core this process may use (its affinity and CPU quota), started on
/// first use (the exporter's start) and kept for the life of the process.
#[derive(Debug)]
pub struct ProbeThreads {
    /// One handle per probe thread.
    handles: Vec<Handle>,
}

impl ProbeThreads {
    /// The process's probe threads. When none could be started (a thread or epoll
    /// limit), there are none and work runs on the caller's runtime.
    pub fn get() -> &'static ProbeThreads {
        static THREADS: OnceLock<ProbeThreads> = OnceLock::new();
        THREADS.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            ProbeThreads::start(cores)
        })
    }

    /// `n` single-threaded runtimes, each on a thread of its own (fewer if some cannot start).
    fn start(n: usize) -> ProbeThreads {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a probe thread; fewer threads");
                    break;
                }
            };
            let handle = runtime.handle().clone();
            let started = std::thread::Builder::new()
                .name(format!("probe-thread-{i}"))
                // The thread runs its runtime for the life of the process: the future never
                // ends, and the tasks spawned on the handle run while it waits.
                .spawn(move || runtime.block_on(std::future::pending::<()>()));
            match started {
                Ok(_) => handles.push(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a probe thread; fewer threads");
                    break;
                }
            }
        }
        ProbeThreads { handles }
    }

    /// How many probe threads work is split over (at least 1: the caller's runtime when
    /// there are none).
    pub fn count(&self) -> usize {
        self.handles.len().max(1)
    }

    /// Run `task` on thread `i` (modulo their number), or on the caller's runtime when there
    /// are none.
    pub fn spawn<F>(&self, i: usize, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handles.get(i % self.count()) {
            Some(h) => h.spawn(task),
            None => tokio::spawn(task),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_their_probe_thread() {
        let threads = ProbeThreads::start(2);
        assert_eq!(threads.count(), 2);
        let name = |i| {
            threads.spawn(i, async {
                (
                    std::thread::current().name().map(str::to_owned),
                    Handle::current().id(),
                )
            })
        };
        let (a, b, c) = (
            name(0).await.unwrap(),
            name(1).await.unwrap(),
            name(2).await.unwrap(),
        );
        assert_eq!(a.0.as_deref(), Some("probe-thread-0"));
        assert_eq!(b.0.as_deref(), Some("probe-thread-1"));
        assert_eq!(c, a, "thread 2 of 2 is thread 0");
        assert_ne!(a.1, b.1, "each thread is a runtime of its own");
        assert_ne!(a.1, Handle::current().id());
    }

    #[tokio::test]
    async fn without_probe_threads_work_runs_on_the_callers_runtime() {
        let none = ProbeThreads { handles: vec![] };
        assert_eq!(none.count(), 1);
        let id = none
            .spawn(5, async { Handle::current().id() })
            .await
            .unwrap();
        assert_eq!(id, Handle::current().id());
    }
}
