//! One scrape's fan-out: every target probed concurrently under a concurrency bound, a
//! per-host cap and the scrape's deadline; and the [`Prober`] that lets concurrent scrapes
//! share one round.
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
//! A round whose last waiting scrape goes away is ended: its probes are aborted and their
//! connections closed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::{Instant, timeout_at};

use crate::config::Config;
use crate::dns::Resolver;
use crate::metrics::ExporterMetrics;
use crate::probe::{self, FailureReason, ProbeResult};
use crate::target::Host;

/// Selections (groups, `/probe` targets) whose subset of the config and last round are kept
/// at once; beyond it the least recently used goes. A subset is rebuilt when asked for again.
pub const MAX_SELECTIONS: usize = 32;

/// A selection's subset not asked for in this long is dropped.
pub const SELECTION_IDLE: Duration = Duration::from_secs(600);

/// A scrape without `X-Prometheus-Scrape-Timeout-Seconds` (and without
/// `--scrape.default-timeout`) gets at least this budget, as Prometheus' default scrape
/// timeout; longer when a target's own timeout is longer (see [`default_budget`]).
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Lock a mutex whose data stays valid even if a holder panicked (every critical section
/// here leaves its data consistent at each step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

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

/// One host's connections, counted across every round in flight and across reloads.
#[derive(Debug, Default)]
struct Gate {
    /// Probes holding a slot of this host: each has at most one connection open to it.
    open: Mutex<usize>,
    /// Wakes the first waiting lane (FIFO) when a slot is freed.
    freed: Notify,
}

/// A slot of one host, freed when dropped (the probe ended, was aborted, or never started).
#[derive(Debug)]
struct HostPermit {
    /// The host's gate.
    gate: Arc<Gate>,
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        {
            let mut open = lock(&self.gate.open);
            *open = open.saturating_sub(1);
        }
        self.gate.freed.notify_one();
    }
}

/// Probe slots shared by every round of a prober, so that rounds of different selections
/// running at once, before and after a reload, stay under one concurrency bound and one cap
/// per host.
#[derive(Debug)]
pub struct Slots {
    /// The global bound.
    global: Arc<Semaphore>,
    /// One gate per host (by name or address, whatever the port); a gate no round holds is
    /// dropped at the end of each round.
    hosts: Mutex<HashMap<Host, Arc<Gate>>>,
    /// Connections per host at most: the cap of the config in force.
    cap: AtomicUsize,
}

impl Slots {
    /// Slots for `limits`, with `cap` connections per host.
    pub fn new(limits: Limits, cap: usize) -> Self {
        Slots {
            global: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            hosts: Mutex::new(HashMap::new()),
            cap: AtomicUsize::new(cap.max(1)),
        }
    }

    /// Change the cap per host (a reload): rounds in flight keep to the new one from their next
    /// probe on; the connections already open above it close as their probes end.
    pub fn set_cap(&self, cap: usize) {
        let old = self.cap.swap(cap.max(1), Ordering::Relaxed);
        if cap > old {
            // Waiters may go now: let each check again.
            for gate in lock(&self.hosts).values() {
                gate.freed.notify_waiters();
            }
        }
    }

    /// The gate of `host`.
    fn gate(&self, host: &Host) -> Arc<Gate> {
        lock(&self.hosts).entry(host.clone()).or_default().clone()
    }

    /// Drop the gates no round holds.
    fn sweep(&self) {
        lock(&self.hosts).retain(|_, g| Arc::strong_count(g) > 1);
    }

    /// Wait for a slot of `gate`'s host.
    async fn host_slot(&self, gate: &Arc<Gate>) -> HostPermit {
        loop {
            // Registered before the count is read, so that a slot freed in between wakes us.
            let freed = gate.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut open = lock(&gate.open);
                if *open < self.cap.load(Ordering::Relaxed) {
                    *open += 1;
                    return HostPermit { gate: gate.clone() };
                }
            }
            freed.await;
        }
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
            lanes.push((slots.gate(&t.url.host), Vec::new()));
            lanes.len() - 1
        });
        lanes[h].1.push(i);
    }
    lanes
}

/// Probes of a round still running, by target; aborted when the round is dropped (its last
/// client left) so that their connections close at once.
#[derive(Debug, Default)]
struct Running(Mutex<HashMap<usize, AbortHandle>>);

impl Drop for Running {
    fn drop(&mut self) {
        for task in lock(&self.0).values() {
            task.abort();
        }
    }
}

/// Probe every target of `config` once. `budget` is the scrape's time limit (already reduced
/// by the offset); each probe gets `min(its timeout, budget)`. `on_result` sees each result
/// the moment it arrives.
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
    let lanes = schedule(&config, slots);
    let resolver = Arc::new(resolver.round());
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, ProbeResult, Duration)>();

    // Probes still running, so that the scrape's deadline (or the last client leaving) can
    // end them.
    let running = Running::default();
    let running_ref = &running;
    let launch_config = config.clone();
    let launch = move |i: usize, permit: OwnedSemaphorePermit, host_permit: HostPermit| {
        let (config, resolver, tx) = (launch_config.clone(), resolver.clone(), tx.clone());
        let task = tokio::spawn(async move {
            // Every target is queued when the round starts.
            let waited = start.elapsed();
            // A busy runtime may start the task after the scrape's deadline: it opens nothing.
            if round_deadline.is_some_and(|d| Instant::now() >= d) {
                drop(host_permit);
                drop(permit);
                let _ = tx.send((i, ProbeResult::not_started(), waited));
                return;
            }
            let t = &config.targets[i];
            let own = Instant::now() + budget.map_or(t.timeout, |b| b.min(t.timeout));
            let deadline = round_deadline.map_or(own, |r| r.min(own));
            let mut result = probe::probe(t, deadline, &resolver).await;
            if deadline < own
                && matches!(
                    result.failure,
                    Some(
                        FailureReason::Timeout | FailureReason::ConnectTimeout | FailureReason::Dns
                    )
                )
                && Instant::now() >= deadline
            {
                result.failure = Some(FailureReason::ScrapeDeadline);
                result.detail =
                    Some("the scrape deadline ended the probe before its own timeout".into());
            }
            drop(host_permit);
            drop(permit);
            // The receiver outlives every sender, unless the round was abandoned.
            let _ = tx.send((i, result, waited));
        });
        lock(&running_ref.0).insert(i, task.abort_handle());
    };

    let global = &slots.global;
    let spawner = async move {
        {
            let launch = &launch;
            let mut lanes: FuturesUnordered<_> = lanes
                .into_iter()
                .map(|(gate, targets)| async move {
                    for i in targets {
                        // Out of time: whatever has not started never will.
                        let Some(host_permit) = until(round_deadline, slots.host_slot(&gate)).await
                        else {
                            return;
                        };
                        // The semaphore is never closed, so acquire only fails by timing out.
                        let Some(Ok(permit)) =
                            until(round_deadline, global.clone().acquire_owned()).await
                        else {
                            return;
                        };
                        launch(i, permit, host_permit);
                    }
                })
                .collect();
            while lanes.next().await.is_some() {}
        }
        // The last sender of results goes with `launch` once every lane is done: the
        // collector then ends.
        drop(launch);
    };

    let mut results: Vec<Option<ProbeResult>> = vec![None; n];
    let mut max_queue_wait = Duration::ZERO;
    // Results are taken until the scrape's deadline (and a little for the last ones in the
    // channel), however busy the runtime is: the answer never waits for a late probe.
    let collect_until = round_deadline.map(|d| d + COLLECT_GRACE);
    let collector = async {
        loop {
            let next = match collect_until {
                Some(d) => timeout_at(d, rx.recv()).await.ok().flatten(),
                None => rx.recv().await,
            };
            let Some((i, r, waited)) = next else { break };
            lock(&running.0).remove(&i);
            max_queue_wait = max_queue_wait.max(waited);
            on_result(i, &r);
            results[i] = Some(r);
        }
    };
    tokio::join!(spawner, collector);
    // Probes still running past the deadline are ended; their results say so.
    let cut: HashMap<usize, AbortHandle> = std::mem::take(&mut *lock(&running.0));
    for task in cut.values() {
        task.abort();
    }
    slots.sweep();

    let mut not_started = 0;
    let mut cut_results = 0;
    let results: Vec<ProbeResult> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let r = if cut.contains_key(&i) {
                    ProbeResult::cut_by_deadline()
                } else {
                    ProbeResult::not_started()
                };
                on_result(i, &r);
                r
            })
        })
        .inspect(|r| {
            not_started += usize::from(r.failure == Some(FailureReason::NotStarted));
            cut_results += usize::from(matches!(
                r.failure,
                Some(FailureReason::NotStarted | FailureReason::ScrapeDeadline)
            ));
        })
        .collect();
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

/// The budget of a scrape that announced no timeout: the longer of
/// [`DEFAULT_SCRAPE_TIMEOUT`] and the longest timeout of its targets plus one second, so that
/// every probe that starts at once gets its full timeout and the answer still comes by a
/// known time.
pub fn default_budget(config: &Config) -> Duration {
    let longest = config
        .targets
        .iter()
        .map(|t| t.timeout)
        .max()
        .unwrap_or_default();
    DEFAULT_SCRAPE_TIMEOUT.max(longest + Duration::from_secs(1))
}

/// Which targets a scrape asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selection {
    /// Every target.
    All,
    /// The targets of these groups (sorted, without repeats).
    Groups(Vec<String>),
    /// The one target with this URL (as written) or name: `/probe`.
    Target(String),
}

impl Selection {
    /// The groups named, sorted and without repeats; none is every target.
    pub fn groups(mut names: Vec<String>) -> Selection {
        if names.is_empty() {
            return Selection::All;
        }
        names.sort();
        names.dedup();
        Selection::Groups(names)
    }

    /// Whether `t` is selected.
    fn keeps(&self, t: &crate::target::Target) -> bool {
        match self {
            Selection::All => true,
            Selection::Groups(g) => g.iter().any(|g| **g == *t.group),
            Selection::Target(key) => t.url.raw == *key || t.name.as_deref() == Some(key),
        }
    }
}

/// Why a scrape got no round.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The task running the round ended without a result (it panicked).
    #[error("the probe round ended without a result")]
    Lost,
}

/// A round in flight, and what a scrape needs to know to join it.
#[derive(Debug)]
struct InFlight {
    /// Which round.
    id: u64,
    /// The targets it probes.
    selection: Selection,
    /// The config generation it probes: a scrape after a reload never joins a round of the
    /// old one.
    generation: u64,
    /// Its budget; `None` gives each probe its full timeout.
    budget: Option<Duration>,
    /// When its budget ends.
    deadline: Option<Instant>,
    /// Where its result appears.
    rx: watch::Receiver<Option<Arc<Round>>>,
    /// Scrapes waiting for it: when the last one goes, the round is ended.
    clients: usize,
    /// Ends the round's task (and with it, its probes).
    task: AbortHandle,
}

impl InFlight {
    /// Whether a scrape of `selection` with `budget`, arriving now, gets what it would get from
    /// a round of its own: the same targets of the same config, a budget at least as long (so
    /// no result is cut shorter), and an end by the scrape's own deadline.
    fn joinable(
        &self,
        selection: &Selection,
        generation: u64,
        budget: Option<Duration>,
        now: Instant,
    ) -> bool {
        let same_targets = self.generation == generation && self.selection == *selection;
        let long_enough = match (self.budget, budget) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(theirs), Some(mine)) => theirs >= mine,
        };
        let ends_in_time = match (self.deadline, budget) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(end), Some(mine)) => end <= now + mine,
        };
        same_targets && long_enough && ends_in_time && self.rx.has_changed().is_ok()
    }
}

/// The config in force and its generation (counted up at each reload).
#[derive(Debug)]
struct Current {
    /// The config.
    config: Arc<Config>,
    /// Which load it is.
    generation: u64,
}

/// Subsets of the config in force that selections asked for, with when each was last asked.
#[derive(Debug, Default)]
struct Subsets {
    /// The generation they were cut from.
    generation: u64,
    /// Selection → subset and when it was last asked for.
    map: HashMap<Selection, (Arc<Config>, Instant)>,
}

/// Owns the current config and runs rounds; scrapes that arrive while a round is in flight
/// wait for that round instead of starting another.
#[derive(Debug)]
pub struct Prober {
    /// The config rounds probe; replaced whole on reload.
    current: RwLock<Current>,
    /// Resolves host names; replaced whole on reload (its files are read again).
    resolver: RwLock<Arc<Resolver>>,
    /// Rounds in flight: their results appear in the channels.
    in_flight: Mutex<Vec<InFlight>>,
    /// Numbers rounds, so that a finished round removes its own entry.
    next_round: AtomicU64,
    /// The last completed round, for the status page.
    last: RwLock<Option<Arc<Round>>>,
    /// The last results of every target.
    history: crate::history::History,
    /// Probe slots shared by every round.
    slots: Slots,
    /// The subsets of the config in force that selections asked for: at most
    /// [`MAX_SELECTIONS`], none idle longer than [`SELECTION_IDLE`], emptied on reload.
    subsets: Mutex<Subsets>,
    /// The last round of each selection, for `--probe.min-interval`: at most
    /// [`MAX_SELECTIONS`], none older than the interval, emptied on reload.
    finished: Mutex<HashMap<Selection, Arc<Round>>>,
    /// A scrape that comes less than this after the last round of its selection ended gets
    /// that round (HA Prometheus pairs); zero turns it off.
    min_interval: Duration,
    /// The exporter's own metrics, updated after each round.
    metrics: ExporterMetrics,
}

/// A scrape waiting for a round: when the last one of a round goes (its client hung up), the
/// round is ended.
struct Client<'a> {
    /// The prober of the round.
    prober: &'a Prober,
    /// The round.
    id: u64,
}

impl Drop for Client<'_> {
    fn drop(&mut self) {
        let mut rounds = lock(&self.prober.in_flight);
        // A finished round has removed its entry already.
        if let Some(pos) = rounds.iter().position(|r| r.id == self.id) {
            rounds[pos].clients -= 1;
            if rounds[pos].clients == 0 {
                let abandoned = rounds.swap_remove(pos);
                abandoned.task.abort();
                drop(rounds);
                self.prober.metrics.rounds_abandoned.inc();
            }
        }
    }
}

impl Prober {
    /// A prober of `config`.
    pub fn new(
        config: Config,
        resolver: Resolver,
        limits: Limits,
        metrics: ExporterMetrics,
    ) -> Self {
        metrics
            .targets
            .set(i64::try_from(config.targets.len()).unwrap_or(i64::MAX));
        metrics
            .concurrency
            .set(i64::try_from(limits.concurrency).unwrap_or(i64::MAX));
        Prober {
            slots: Slots::new(limits, config.max_connections_per_host),
            current: RwLock::new(Current {
                config: Arc::new(config),
                generation: 0,
            }),
            resolver: RwLock::new(Arc::new(resolver)),
            in_flight: Mutex::new(Vec::new()),
            next_round: AtomicU64::new(0),
            subsets: Mutex::default(),
            finished: Mutex::new(HashMap::new()),
            min_interval: Duration::ZERO,
            last: RwLock::new(None),
            history: crate::history::History::new(crate::history::DEFAULT_DEPTH),
            metrics,
        }
    }

    /// Keep the last `depth` results of every target (`--status.history`; 0: none).
    pub fn with_history(mut self, depth: usize) -> Self {
        self.history = crate::history::History::new(depth);
        self
    }

    /// The last results of every target.
    pub fn history(&self) -> &crate::history::History {
        &self.history
    }

    /// Serve a scrape that comes less than `d` after the last round of its selection ended
    /// with that round's results (zero: every scrape probes).
    pub fn with_min_interval(mut self, d: Duration) -> Self {
        self.min_interval = d;
        self
    }

    /// The config in force and its generation.
    fn current(&self) -> (Arc<Config>, u64) {
        let c = self.current.read().unwrap_or_else(|p| p.into_inner());
        (c.config.clone(), c.generation)
    }

    /// The part of the config in force that `selection` asks for, and the config's generation.
    fn selected(&self, selection: &Selection) -> (Arc<Config>, u64) {
        let (full, generation) = self.current();
        if *selection == Selection::All {
            return (full, generation);
        }
        let mut subsets = lock(&self.subsets);
        // The cache belongs to one config: a subset of an old one is never served.
        if subsets.generation != generation {
            subsets.map.clear();
            subsets.generation = generation;
        }
        let now = Instant::now();
        subsets
            .map
            .retain(|_, (_, used)| now.duration_since(*used) < SELECTION_IDLE);
        if let Some((c, used)) = subsets.map.get_mut(selection) {
            *used = now;
            return (c.clone(), generation);
        }
        let subset = Arc::new(full.subset(|t| selection.keeps(t)));
        if subsets.map.len() >= MAX_SELECTIONS
            && let Some(oldest) = subsets
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(s, _)| s.clone())
        {
            subsets.map.remove(&oldest);
        }
        subsets.map.insert(selection.clone(), (subset.clone(), now));
        (subset, generation)
    }

    /// How many selections' subsets and last rounds are kept (for tests and the churn
    /// benchmark's checks).
    pub fn cached_selections(&self) -> (usize, usize) {
        (lock(&self.subsets).map.len(), lock(&self.finished).len())
    }

    /// The config in use.
    pub fn config(&self) -> Arc<Config> {
        self.current().0
    }

    /// Replace the config; the next round uses it. Everything kept for the old config
    /// (subsets, rounds for `--probe.min-interval`) goes; rounds in flight finish on the old
    /// config, under the new cap per host.
    pub fn set_config(&self, config: Config) {
        self.metrics
            .targets
            .set(i64::try_from(config.targets.len()).unwrap_or(i64::MAX));
        let keep: std::collections::HashSet<&str> = config
            .targets
            .iter()
            .map(|t| t.label_block.as_str())
            .collect();
        self.history.retain(&keep);
        drop(keep);
        self.slots.set_cap(config.max_connections_per_host);
        {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            current.generation += 1;
            current.config = Arc::new(config);
        }
        lock(&self.subsets).map.clear();
        lock(&self.finished).clear();
    }

    /// The resolver in use.
    pub fn resolver(&self) -> Arc<Resolver> {
        self.resolver
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replace the resolver; the next round uses it.
    pub fn set_resolver(&self, resolver: Resolver) {
        *self.resolver.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(resolver);
    }

    /// The last completed round.
    pub fn last_round(&self) -> Option<Arc<Round>> {
        self.last.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The exporter's metrics.
    pub fn metrics(&self) -> &ExporterMetrics {
        &self.metrics
    }

    /// Join a round in flight that gives this scrape what its own round would (the same
    /// config, a budget at least as long, an end by this scrape's deadline), or start one with
    /// `budget`.
    pub async fn scrape(
        self: &Arc<Self>,
        budget: Option<Duration>,
    ) -> Result<Arc<Round>, RoundError> {
        self.scrape_selection(Selection::All, budget).await
    }

    /// The last round of `selection` if `--probe.min-interval` lets a scrape with `budget`
    /// have it: recent enough, of the config in force, and not cut by a shorter budget.
    fn recent(
        &self,
        selection: &Selection,
        config: &Arc<Config>,
        budget: Option<Duration>,
    ) -> Option<Arc<Round>> {
        if self.min_interval.is_zero() {
            return None;
        }
        let finished = lock(&self.finished);
        let r = finished.get(selection)?;
        (Arc::ptr_eq(&r.config, config)
            && r.finished.elapsed() < self.min_interval
            && r.serves(budget))
        .then(|| r.clone())
    }

    /// Keep `round` as the last of `selection` for `--probe.min-interval`, dropping rounds too
    /// old to serve and, beyond [`MAX_SELECTIONS`], the oldest.
    fn keep_finished(&self, selection: Selection, round: &Arc<Round>, generation: u64) {
        if self.min_interval.is_zero() {
            return;
        }
        // A round of a config replaced while it ran is of no use.
        if self.current().1 != generation {
            return;
        }
        let mut finished = lock(&self.finished);
        let min_interval = self.min_interval;
        finished.retain(|_, r| r.finished.elapsed() < min_interval);
        if finished.len() >= MAX_SELECTIONS
            && !finished.contains_key(&selection)
            && let Some(oldest) = finished
                .iter()
                .min_by_key(|(_, r)| r.finished)
                .map(|(s, _)| s.clone())
        {
            finished.remove(&oldest);
        }
        finished.insert(selection, round.clone());
    }

    /// [`Prober::scrape`] for the targets `selection` asks for. Rounds of different
    /// selections run side by side on the same slots. Under `--probe.min-interval`, a scrape
    /// soon after the last round of its selection gets that round, unless that round's budget
    /// cut results that this scrape's longer budget would not. Without a budget the scrape
    /// gets [`default_budget`].
    ///
    /// When every scrape waiting for a round has gone (their clients hung up), the round is
    /// ended: its probes are aborted and their connections closed.
    pub async fn scrape_selection(
        self: &Arc<Self>,
        selection: Selection,
        budget: Option<Duration>,
    ) -> Result<Arc<Round>, RoundError> {
        self.metrics.scrapes.inc();
        let (config, generation) = self.selected(&selection);
        let budget = Some(budget.unwrap_or_else(|| default_budget(&config)));
        if let Some(r) = self.recent(&selection, &config, budget) {
            return Ok(r);
        }
        let (mut rx, id) = {
            let mut rounds = lock(&self.in_flight);
            let now = Instant::now();
            // A round whose task died (its sender is gone) is never joined.
            rounds.retain(|r| r.rx.has_changed().is_ok());
            match rounds
                .iter_mut()
                .find(|r| r.joinable(&selection, generation, budget, now))
            {
                Some(r) => {
                    r.clients += 1;
                    (r.rx.clone(), r.id)
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    let id = self.next_round.fetch_add(1, Ordering::Relaxed);
                    let me = self.clone();
                    let round_selection = selection.clone();
                    let task = tokio::spawn(async move {
                        let selection = round_selection;
                        let log_config = config.clone();
                        let resolver = me.resolver();
                        let round = Arc::new(
                            run_round_on(config, &resolver, budget, &me.slots, |i, r| {
                                if let Some(reason) = r.failure {
                                    tracing::debug!(
                                        url = %log_config.targets[i].url.raw,
                                        %reason,
                                        detail = r.detail.as_deref().unwrap_or(""),
                                        duration = r.duration.as_secs_f64(),
                                        "probe failed"
                                    );
                                }
                            })
                            .await,
                        );
                        me.metrics.rounds.inc();
                        me.metrics.round_duration.set(round.duration.as_secs_f64());
                        me.metrics
                            .round_queue
                            .set(round.max_queue_wait.as_secs_f64());
                        me.metrics
                            .round_not_started
                            .set(i64::try_from(round.not_started).unwrap_or(i64::MAX));
                        // The status page shows rounds of every target; with no such round
                        // yet, the latest of any selection.
                        {
                            let mut last = me.last.write().unwrap_or_else(|p| p.into_inner());
                            let full = last.as_ref().is_some_and(|l| {
                                l.config.targets.len() > round.config.targets.len()
                            });
                            if selection == Selection::All || !full {
                                *last = Some(round.clone());
                            }
                        }
                        me.history.record(&round);
                        me.keep_finished(selection, &round, generation);
                        lock(&me.in_flight).retain(|r| r.id != id);
                        let _ = tx.send(Some(round));
                    });
                    rounds.push(InFlight {
                        id,
                        selection: selection.clone(),
                        generation,
                        budget,
                        deadline: budget.map(|b| now + b),
                        rx: rx.clone(),
                        clients: 1,
                        task: task.abort_handle(),
                    });
                    (rx, id)
                }
            }
        };
        let _client = Client { prober: self, id };
        let round = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RoundError::Lost)?;
        round.clone().ok_or(RoundError::Lost)
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
        assert!(lock(&slots.hosts).is_empty(), "gates no round holds go");
    }

    #[tokio::test]
    async fn a_host_slot_freed_by_any_holder_wakes_a_waiter_and_the_cap_follows_reloads() {
        let config = config("targets:\n  - http://a/1\n");
        let slots = Arc::new(Slots::new(Limits { concurrency: 8 }, 2));
        let gate = schedule(&config, &slots).remove(0).0;
        let a = slots.host_slot(&gate).await;
        let b = slots.host_slot(&gate).await;
        let waiter = {
            let (slots, gate) = (slots.clone(), gate.clone());
            tokio::spawn(async move { slots.host_slot(&gate).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a third slot waits at a cap of 2");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken by the freed slot")
            .unwrap();
        assert_eq!(*lock(&gate.open), 2);
        // A lower cap holds new slots back until enough are freed.
        slots.set_cap(1);
        drop(b);
        let late = {
            let (slots, gate) = (slots.clone(), gate.clone());
            tokio::spawn(async move { slots.host_slot(&gate).await })
        };
        tokio::task::yield_now().await;
        assert!(!late.is_finished(), "one open, cap 1: wait");
        drop(c);
        let d = tokio::time::timeout(Duration::from_secs(1), late)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(*lock(&gate.open), 1);
        drop(d);
        assert_eq!(*lock(&gate.open), 0);
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

    #[test]
    fn the_default_budget_covers_the_longest_timeout() {
        let short = config("targets:\n  - http://a/1\n");
        assert_eq!(default_budget(&short), DEFAULT_SCRAPE_TIMEOUT);
        let long = config("defaults:\n  timeout: 30s\ntargets:\n  - http://a/1\n");
        assert_eq!(default_budget(&long), Duration::from_secs(31));
    }
}
