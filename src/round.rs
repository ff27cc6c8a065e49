//! One scrape's fan-out: every target probed concurrently under a concurrency bound, a
//! per-host cap and the scrape's deadline. The prober (`prober.rs`) decides which scrapes share a
//! round.
//!
//! A probe's clock and deadline start when it leaves the queue, never when the round starts.
//! Probes still queued when the scrape's deadline passes are reported as `not_started`;
//! probes that started so late that the scrape's deadline cut them before their own timeout
//! are reported as `scrape_deadline`. Neither is reported as a target `timeout`.
//!
//! The slots are shared by every round in flight, of every selection and across reloads:
//! - the global bound ([`Limits::concurrency`]) is a FIFO semaphore;
//! - each host has one gate that counts the connections open to it, whichever round opened
//!   them, against the cap of the config in force. A round waits for a host's slot in one
//!   queue per host (a *lane*), holding no global slot while it waits, and is woken by any
//!   slot freed on that host, by any round.
//!
//! The probes run on the probe threads ([`crate::probe_threads`]), one single-threaded
//! runtime per core: each thread takes its turn of every lane's targets (its own lane of the
//! host, at the host's one gate) and sends its results to the round in batches.
//!
//! A round dropped before its end (its last waiting scrape went away) aborts its probes, so
//! that their connections close at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout_at};

use crate::config::Config;
use crate::dns::{Resolver, RoundResolver};
pub(crate) use crate::gate::lock;
use crate::gate::{Gate, Gates, Permit};
use crate::outcome::{FailureReason, ProbeResult};
use crate::probe;
use crate::probe_threads::ProbeThreads;
use crate::probe_url::Host;

/// The outcome of one round.
#[derive(Debug)]
pub struct Round {
    /// The config the round probed.
    pub config: Arc<Config>,
    /// `results[i]` belongs to `config.targets[i]`.
    pub results: Vec<ProbeResult>,
    /// Wall-clock start, for the status page.
    pub started_at: SystemTime,
    /// From the round's start to its last result.
    pub duration: Duration,
    /// Longest time a probe waited for a slot (global and per host).
    pub max_queue_wait: Duration,
    /// Probes that never started.
    pub not_started: usize,
    /// Results the round's budget decided (`not_started` and `scrape_deadline`): a scrape with
    /// a longer budget must not be given them.
    pub cut: usize,
    /// The budget the round ran with; `None` gave each probe its full timeout.
    pub budget: Option<Duration>,
    /// When the round ended: the age of its results.
    pub finished: Instant,
}

impl Round {
    /// A round of `config`'s targets that ended now with `results` (one per target), none of
    /// them cut: for results obtained outside [`run_round`], such as one traced probe.
    pub fn of(config: Arc<Config>, results: Vec<ProbeResult>, budget: Option<Duration>) -> Round {
        Round {
            config,
            results,
            started_at: SystemTime::now(),
            duration: Duration::ZERO,
            max_queue_wait: Duration::ZERO,
            not_started: 0,
            cut: 0,
            budget,
            finished: Instant::now(),
        }
    }

    /// Whether a scrape with `budget` may be given this round's results: it has no result cut
    /// by its budget, or the scrape's budget is no longer than the one that cut them (a round
    /// of its own would have been cut as much).
    pub fn serves(&self, budget: Option<Duration>) -> bool {
        if self.cut == 0 {
            return true;
        }
        match (self.budget, budget) {
            (Some(cut_by), Some(mine)) => mine <= cut_by,
            _ => false,
        }
    }
}

/// How long after the scrape's deadline results still waiting in the channel are taken.
const COLLECT_GRACE: Duration = Duration::from_millis(5);

/// Limits of a round.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most probes running at once.
    pub concurrency: usize,
}

/// Probe slots shared by every round of a prober, so that rounds of different selections
/// running at once, before and after a reload, stay under one concurrency bound and one cap
/// per host. A clone shares them (the probe threads each hold one).
#[derive(Debug, Clone)]
pub struct Slots {
    /// The global bound.
    global: Arc<Semaphore>,
    /// One gate per host of a target's URL (by name or address, whatever the port): a round's
    /// lanes wait here, holding no global slot.
    hosts: Arc<Gates<Host>>,
    /// One gate per address connected to (the proxy's for a proxied request), taken by every
    /// request of every probe just before it connects: two names of one address, a redirect
    /// hop to another host and the requests through one proxy count against the address the
    /// server sees.
    addresses: Arc<Gates<IpAddr>>,
    /// Connections per host at most: the cap of the config in force, shared by both sets of
    /// gates.
    cap: Arc<AtomicUsize>,
}

impl Slots {
    /// Slots for `limits`, with `cap` connections per host.
    pub fn new(limits: Limits, cap: usize) -> Self {
        let cap = Arc::new(AtomicUsize::new(cap.max(1)));
        Slots {
            global: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            hosts: Arc::new(Gates::new(cap.clone())),
            addresses: Arc::new(Gates::new(cap.clone())),
            cap,
        }
    }

    /// Change the cap per host (a reload): rounds in flight keep to the new one from their next
    /// probe on; the connections already open above it close as their probes end.
    pub fn set_cap(&self, cap: usize) {
        let old = self.cap.swap(cap.max(1), Ordering::Relaxed);
        if cap > old {
            // Waiters may go now: let each check again.
            self.hosts.wake_all();
            self.addresses.wake_all();
        }
    }

    /// The gates of the addresses connected to, for the probes.
    pub fn addresses(&self) -> &Arc<Gates<IpAddr>> {
        &self.addresses
    }

    /// A global slot and a slot of `host`, for one probe outside the rounds (a traced
    /// `/probe`), before `deadline`; `None` when the deadline came first.
    pub async fn one(
        &self,
        host: &Host,
        deadline: Instant,
    ) -> Option<(OwnedSemaphorePermit, Permit)> {
        let gate = self.hosts.gate(host);
        let host_permit = timeout_at(deadline, self.hosts.enter(&gate)).await.ok()?;
        // The semaphore is never closed, so acquire only fails by timing out.
        let global = timeout_at(deadline, self.global.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some((global, host_permit))
    }

    /// Drop the gates no probe holds.
    pub fn sweep(&self) {
        self.hosts.sweep();
        self.addresses.sweep();
    }
}

/// Run `f` until `deadline`, if there is one; `None` when the deadline came first.
async fn until<T>(deadline: Option<Instant>, f: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(d) => timeout_at(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// The targets of each host, hosts in the order they first appear in the file, with the
/// host's gate: one lane each.
fn schedule(config: &Config, slots: &Slots) -> Vec<(Arc<Gate>, Vec<usize>)> {
    let mut host_of: HashMap<&Host, usize> = HashMap::new();
    let mut lanes: Vec<(Arc<Gate>, Vec<usize>)> = Vec::new();
    for (i, t) in config.targets.iter().enumerate() {
        let h = *host_of.entry(&t.url.host).or_insert_with(|| {
            lanes.push((slots.hosts.gate(&t.url.host), Vec::new()));
            lanes.len() - 1
        });
        lanes[h].1.push(i);
    }
    lanes
}

/// Results a thread sends to its round at once, at most.
const BATCH: usize = 256;

/// The longest a result waits in its thread for the rest of its batch: well within
/// [`COLLECT_GRACE`], so that a result that came before the scrape's deadline is taken.
const BATCH_WAIT: Duration = Duration::from_millis(2);

/// A probe's result on its way to the round: the target, its result, how long it queued.
type Done = (usize, ProbeResult, Duration);

/// Split the lanes over `parts` threads: the targets, taken lane by lane, go to the threads in
/// turn, so that one crowded host and many hosts of one target each are split alike. A
/// host's targets on one thread form that thread's lane of the host, at the host's one gate.
fn split(lanes: Vec<(Arc<Gate>, Vec<usize>)>, parts: usize) -> Vec<Vec<(Arc<Gate>, Vec<usize>)>> {
    let parts = parts.max(1);
    let mut out: Vec<Vec<(Arc<Gate>, Vec<usize>)>> = (0..parts).map(|_| Vec::new()).collect();
    let mut next = 0;
    for (gate, targets) in lanes {
        let mut mine: Vec<Vec<usize>> = vec![Vec::new(); parts];
        for i in targets {
            mine[next % parts].push(i);
            next += 1;
        }
        for (k, targets) in mine.into_iter().enumerate() {
            if !targets.is_empty() {
                out[k].push((gate.clone(), targets));
            }
        }
    }
    out
}

/// Take every result `set` has into `batch`, whatever budget the caller has left this turn,
/// and be woken by the next one.
///
/// `try_join_next` is not held back by tokio's cooperative budget. A busy probe thread whose
/// lanes spent the budget on new probes would otherwise leave the results of the old ones
/// unread (and lose them at the deadline) for as long as the lanes had work. A probe that
/// panicked has no result: the round reports it cut.
fn reap(set: &mut JoinSet<Done>, cx: &mut std::task::Context<'_>, batch: &mut Vec<Done>) {
    while let Some(joined) = set.try_join_next() {
        if let Ok(done) = joined {
            batch.push(done);
        }
    }
    // Registers the wake-up (it may also take one more, or yield when the budget is spent).
    while let Poll::Ready(Some(joined)) = set.poll_join_next(cx) {
        if let Ok(done) = joined {
            batch.push(done);
        }
    }
}

/// The thread tasks of a round, aborted when the round is dropped (its last client left) or
/// ends: their probes are aborted with them, so that their connections close at once.
#[derive(Debug, Default)]
struct Parts(Vec<JoinHandle<()>>);

impl Drop for Parts {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// What one thread runs of a round: its lanes, its probes and its names' look-ahead.
struct Part {
    /// The round's config.
    config: Arc<Config>,
    /// The round's lookups, shared by every thread.
    resolver: Arc<RoundResolver>,
    /// The slots every round shares (a clone shares them).
    slots: Slots,
    /// This thread's lanes.
    lanes: Vec<(Arc<Gate>, Vec<usize>)>,
    /// Which targets started, by every thread.
    started: Arc<[AtomicBool]>,
    /// Batches of results, to the round.
    tx: mpsc::UnboundedSender<Vec<Done>>,
    /// How many threads the round is split over, for the look-ahead's share.
    parts: usize,
    /// The round's start.
    start: Instant,
    /// The scrape's budget.
    budget: Option<Duration>,
    /// The scrape's deadline.
    round_deadline: Option<Instant>,
}

impl Part {
    /// Run the lanes, each probe a task of this thread, and send the results to the round in
    /// batches ([`BATCH`] at most, or once the first has waited [`BATCH_WAIT`]; the last as
    /// soon as the thread is done), so that the round is woken once per batch, not once per
    /// probe.
    async fn run(self) {
        let probes: Mutex<JoinSet<Done>> = Mutex::new(JoinSet::new());
        let mut lanes: FuturesUnordered<_> = self
            .lanes
            .iter()
            .map(|(gate, targets)| self.lane(gate, targets, &probes))
            .collect();
        let mut lanes_done = false;
        let mut batch = Vec::new();
        // Armed when a batch starts: it goes when full, when this thread is done, or when it
        // has waited `BATCH_WAIT`.
        let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
        let mut armed = false;
        let drive = std::future::poll_fn(|cx| {
            while !lanes_done {
                match lanes.poll_next_unpin(cx) {
                    Poll::Ready(Some(())) => {}
                    Poll::Ready(None) => lanes_done = true,
                    Poll::Pending => break,
                }
            }
            let mut set = lock(&probes);
            reap(&mut set, cx, &mut batch);
            let idle = set.is_empty();
            drop(set);
            if !batch.is_empty() {
                let now = Instant::now();
                if !armed {
                    timer.as_mut().reset(now + BATCH_WAIT);
                    armed = true;
                }
                // The timer's own deadline, not its readiness: polling it spends budget.
                if batch.len() >= BATCH || (lanes_done && idle) || now >= timer.deadline() {
                    armed = false;
                    // The round may have stopped listening (its deadline): nothing to do then.
                    let _ = self.tx.send(std::mem::take(&mut batch));
                } else {
                    // Woken when the batch has waited long enough.
                    let _ = timer.as_mut().poll(cx);
                }
            }
            if lanes_done && idle {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        // This thread's names are looked up ahead of their probes, in the order the probes
        // start, so that the lookups overlap with the other probes' connects.
        let prefetch = async {
            let mut mine: Vec<usize> = self.lanes.iter().flat_map(|(_, t)| t.clone()).collect();
            mine.sort_unstable();
            let config = &self.config;
            let hosts = mine.into_iter().filter_map(|i| {
                let t = &config.targets[i];
                probe::first_lookup(t).map(|h| (h, t.ip_protocol))
            });
            self.resolver.prefetch(hosts, self.parts).await;
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = drive => {}
            () = prefetch => {}
        }
    }

    /// One host's lane: for each target in turn, a slot of the host (shared with every other
    /// round and thread), then a global slot, then the probe starts as a task of its own.
    async fn lane(&self, gate: &Arc<Gate>, targets: &[usize], probes: &Mutex<JoinSet<Done>>) {
        for &i in targets {
            // Out of time: whatever has not started never will.
            let Some(host_permit) = until(self.round_deadline, self.slots.hosts.enter(gate)).await
            else {
                return;
            };
            // The semaphore is never closed, so acquire only fails by timing out.
            let Some(Ok(permit)) = until(
                self.round_deadline,
                self.slots.global.clone().acquire_owned(),
            )
            .await
            else {
                return;
            };
            self.started[i].store(true, Ordering::Relaxed);
            lock(probes).spawn(self.probe(i, permit, host_permit));
        }
    }

    /// The probe of target `i`, holding its slots until it ends.
    fn probe(
        &self,
        i: usize,
        permit: OwnedSemaphorePermit,
        host_permit: Permit,
    ) -> impl Future<Output = Done> + Send + 'static {
        let (config, resolver, gates) = (
            self.config.clone(),
            self.resolver.clone(),
            self.slots.addresses.clone(),
        );
        let (start, budget, round_deadline) = (self.start, self.budget, self.round_deadline);
        async move {
            // Every target is queued when the round starts.
            let waited = start.elapsed();
            // A busy thread may start the task after the scrape's deadline: it opens nothing.
            if round_deadline.is_some_and(|d| Instant::now() >= d) {
                drop(host_permit);
                drop(permit);
                return (i, ProbeResult::not_started(), waited);
            }
            let t = &config.targets[i];
            let own = Instant::now() + budget.map_or(t.timeout, |b| b.min(t.timeout));
            let deadline = round_deadline.map_or(own, |r| r.min(own));
            let env = probe::Env {
                resolver: &resolver,
                gates: &gates,
            };
            let mut result = probe::probe(t, deadline, &env).await;
            if deadline < own
                && matches!(
                    result.failure,
                    Some(
                        FailureReason::Timeout | FailureReason::ConnectTimeout | FailureReason::Dns
                    )
                )
                && Instant::now() >= deadline
            {
                result.ended_by_scrape_deadline();
            }
            drop(host_permit);
            drop(permit);
            (i, result, waited)
        }
    }
}

/// Probe every target of `config` once. `budget` is the scrape's time limit (already reduced
/// by the offset); each probe gets `min(its timeout, budget)`. `on_result` sees each result
/// as it arrives (in its thread's batch, within 2 ms of the probe's end).
pub async fn run_round(
    config: Arc<Config>,
    resolver: &Arc<Resolver>,
    budget: Option<Duration>,
    limits: Limits,
    on_result: impl FnMut(usize, &ProbeResult),
) -> Round {
    let slots = Slots::new(limits, config.max_connections_per_host);
    run_round_on(config, resolver, budget, &slots, on_result).await
}

/// [`run_round`] on slots shared with other rounds.
///
/// Each host's targets form a lane: the lane takes a slot of its host (shared with every
/// other round), then a global slot, then starts the probe, then goes on with its next target.
/// Lanes queue for global slots in FIFO order, so hosts take turns, and a crowded host never
/// keeps the others waiting: its lane waits for its host holding no global slot.
///
/// The targets are split over the probe threads ([`ProbeThreads`]), one per core: each thread runs
/// its share of every lane, at the same gates and under the same global bound, and sends its
/// results back in batches. The round itself (its collector and deadline) stays with the
/// caller.
pub async fn run_round_on(
    config: Arc<Config>,
    resolver: &Arc<Resolver>,
    budget: Option<Duration>,
    slots: &Slots,
    mut on_result: impl FnMut(usize, &ProbeResult),
) -> Round {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let round_deadline = budget.map(|b| start + b);
    let n = config.targets.len();
    let threads = ProbeThreads::get();
    let parts = split(schedule(&config, slots), threads.count());
    let resolver = Arc::new(resolver.round());
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Done>>();
    let started: Arc<[AtomicBool]> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let count = parts.len();
    let mut tasks = Parts::default();
    for (k, lanes) in parts.into_iter().enumerate() {
        if lanes.is_empty() {
            continue;
        }
        let part = Part {
            config: config.clone(),
            resolver: resolver.clone(),
            slots: slots.clone(),
            lanes,
            started: started.clone(),
            tx: tx.clone(),
            parts: count,
            start,
            budget,
            round_deadline,
        };
        tasks.0.push(threads.spawn(k, part.run()));
    }
    // The collector ends when every thread is done with the round.
    drop(tx);

    // The results, in place from the start (a vector of options turned into results at the
    // end would hold two vectors of 100,000 results at once), and which of them came.
    let mut results: Vec<ProbeResult> = vec![ProbeResult::default(); n];
    let mut came = vec![false; n];
    let mut max_queue_wait = Duration::ZERO;
    // Results are taken until the scrape's deadline (and a little for the last ones in the
    // channel), however busy the runtime is: the answer never waits for a late probe.
    let collect_until = round_deadline.map(|d| d + COLLECT_GRACE);
    loop {
        let next = match collect_until {
            Some(d) => timeout_at(d, rx.recv()).await.ok().flatten(),
            None => rx.recv().await,
        };
        let Some(batch) = next else { break };
        for (i, r, waited) in batch {
            max_queue_wait = max_queue_wait.max(waited);
            on_result(i, &r);
            results[i] = r;
            came[i] = true;
        }
    }
    // Probes still running past the deadline are ended; their results say so.
    drop(tasks);
    slots.sweep();

    let mut not_started = 0;
    let mut cut_results = 0;
    for (i, r) in results.iter_mut().enumerate() {
        if !came[i] {
            *r = if started[i].load(Ordering::Relaxed) {
                ProbeResult::cut_by_deadline()
            } else {
                ProbeResult::not_started()
            };
            on_result(i, r);
        }
        not_started += usize::from(r.failure == Some(FailureReason::NotStarted));
        cut_results += usize::from(matches!(
            r.failure,
            Some(FailureReason::NotStarted | FailureReason::ScrapeDeadline)
        ));
    }
    Round {
        duration: start.elapsed(),
        config,
        results,
        started_at,
        max_queue_wait,
        not_started,
        cut: cut_results,
        budget,
        finished: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(std::path::Path::new("t.yml"), text).unwrap()
    }

    #[test]
    fn each_host_gets_a_lane_in_order_of_first_appearance() {
        let config = config(
            "targets:\n  - http://a/1\n  - http://a/2\n  - http://a/3\n  - http://b/1\n  - http://c/1\n  - http://b/2\n",
        );
        let slots = Slots::new(Limits { concurrency: 1 }, 4);
        let lanes = schedule(&config, &slots);
        let urls: Vec<Vec<&str>> = lanes
            .iter()
            .map(|(_, l)| {
                l.iter()
                    .map(|&i| config.targets[i].url.raw.as_str())
                    .collect()
            })
            .collect();
        assert_eq!(
            urls,
            [
                vec!["http://a/1", "http://a/2", "http://a/3"],
                vec!["http://b/1", "http://b/2"],
                vec!["http://c/1"],
            ]
        );
        // A second round gets the same gates: the cap is shared.
        let again = schedule(&config, &slots);
        assert!(Arc::ptr_eq(&lanes[0].0, &again[0].0));
        drop((lanes, again));
        slots.sweep();
        assert!(slots.hosts.is_empty(), "gates no round holds go");
    }

    #[test]
    fn the_probe_threads_take_the_targets_in_turn_at_each_hosts_one_gate() {
        let config = config(
            "targets:\n  - http://a/1\n  - http://a/2\n  - http://a/3\n  - http://b/1\n  - http://c/1\n  - http://b/2\n",
        );
        let slots = Slots::new(Limits { concurrency: 1 }, 4);
        let parts = split(schedule(&config, &slots), 2);
        let urls = |part: &Vec<(Arc<Gate>, Vec<usize>)>| -> Vec<Vec<&str>> {
            part.iter()
                .map(|(_, l)| {
                    l.iter()
                        .map(|&i| config.targets[i].url.raw.as_str())
                        .collect()
                })
                .collect()
        };
        // Lane by lane, target by target, the threads in turn: a crowded host is split, and
        // so are hosts of one target each.
        assert_eq!(
            urls(&parts[0]),
            [vec!["http://a/1", "http://a/3"], vec!["http://b/2"]]
        );
        assert_eq!(
            urls(&parts[1]),
            [vec!["http://a/2"], vec!["http://b/1"], vec!["http://c/1"]]
        );
        // Both threads' lanes of a host wait at its one gate: the cap stays the host's.
        assert!(Arc::ptr_eq(&parts[0][0].0, &parts[1][0].0));
        assert!(Arc::ptr_eq(&parts[0][1].0, &parts[1][1].0));
        // One thread: the lanes as scheduled.
        let one = split(schedule(&config, &slots), 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].iter().map(|(_, l)| l.len()).sum::<usize>(), 6);
    }

    #[tokio::test]
    async fn results_are_taken_even_when_the_lanes_spent_the_budget() {
        let mut set: JoinSet<Done> = JoinSet::new();
        for i in 0..5 {
            set.spawn(async move { (i, ProbeResult::not_started(), Duration::ZERO) });
        }
        // Let the five finish.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let mut batch = Vec::new();
        std::future::poll_fn(|cx| {
            // The lanes' turn spent the whole budget.
            while let Poll::Ready(restore) = tokio::task::coop::poll_proceed(cx) {
                restore.made_progress();
            }
            assert!(!tokio::task::coop::has_budget_remaining());
            reap(&mut set, cx, &mut batch);
            Poll::Ready(())
        })
        .await;
        let mut got: Vec<usize> = batch.iter().map(|d| d.0).collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [0, 1, 2, 3, 4],
            "every finished probe's result is taken"
        );
        assert!(set.is_empty());
    }

    #[tokio::test]
    async fn a_host_slot_freed_by_any_holder_wakes_a_waiter_and_the_cap_follows_reloads() {
        let config = config("targets:\n  - http://a/1\n");
        let slots = Arc::new(Slots::new(Limits { concurrency: 8 }, 2));
        let gate = schedule(&config, &slots).remove(0).0;
        let a = slots.hosts.enter(&gate).await;
        let b = slots.hosts.enter(&gate).await;
        let waiter = {
            let (slots, gate) = (slots.clone(), gate.clone());
            tokio::spawn(async move { slots.hosts.enter(&gate).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a third slot waits at a cap of 2");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken by the freed slot")
            .unwrap();
        assert_eq!(gate.open(), 2);
        // A lower cap holds new slots back until enough are freed.
        slots.set_cap(1);
        drop(b);
        let late = {
            let (slots, gate) = (slots.clone(), gate.clone());
            tokio::spawn(async move { slots.hosts.enter(&gate).await })
        };
        tokio::task::yield_now().await;
        assert!(!late.is_finished(), "one open, cap 1: wait");
        drop(c);
        let d = tokio::time::timeout(Duration::from_secs(1), late)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(gate.open(), 1);
        drop(d);
        assert_eq!(gate.open(), 0);
    }

    #[test]
    fn a_cut_round_serves_only_budgets_no_longer_than_its_own() {
        let c = Arc::new(config("targets:\n  - http://a/1\n"));
        let round = |cut, budget| Round {
            config: c.clone(),
            results: Vec::new(),
            started_at: SystemTime::now(),
            duration: Duration::ZERO,
            max_queue_wait: Duration::ZERO,
            not_started: 0,
            cut,
            budget,
            finished: Instant::now(),
        };
        let s = Duration::from_secs;
        assert!(round(0, Some(s(1))).serves(Some(s(10))), "nothing was cut");
        assert!(round(1, Some(s(5))).serves(Some(s(5))));
        assert!(round(1, Some(s(5))).serves(Some(s(2))));
        assert!(!round(1, Some(s(5))).serves(Some(s(10))));
        assert!(!round(1, Some(s(5))).serves(None));
    }
}

#[cfg(test)]
mod sizes {
    /// What a round holds per target, and what the config holds: a file of 100,000 targets
    /// multiplies these (README, Performance). Each bound is today's size; a field added to
    /// either is a choice to make here, not an accident.
    #[test]
    fn per_target_state_stays_small() {
        use crate::outcome::ProbeResult;
        use crate::target::Target;
        let (target, result) = (
            std::mem::size_of::<Target>(),
            std::mem::size_of::<ProbeResult>(),
        );
        eprintln!("Target {target} bytes, ProbeResult {result} bytes");
        // 224: the URL, labels and TLS name are the target's own; the settings are a shared
        // profile (one pointer), and the request's head is written by each probe.
        assert!(target <= 224, "Target is {target} bytes");
        // 168: times in nanoseconds (8 bytes each, not a `Duration`'s 16), the family derived
        // from the address instead of stored, the detail a boxed text, and the reason phrase
        // a mark when it is the code's usual one (so a plain answer owns no allocation).
        assert!(result <= 168, "ProbeResult is {result} bytes");
    }
}
