//! One scrape's fan-out: every target probed concurrently under a concurrency bound, a
//! per-host cap and the scrape's deadline; and the [`Prober`] that lets concurrent scrapes
//! share one round.
//!
//! A probe's clock and deadline start when it leaves the queue, never when the round starts.
//! Probes still queued when the scrape's deadline passes are reported as `not_started`;
//! probes that started so late that the scrape's deadline cut them before their own timeout
//! are reported as `scrape_deadline`. Neither is reported as a target `timeout`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, timeout_at};

use crate::config::Config;
use crate::dns::Resolver;
use crate::metrics::ExporterMetrics;
use crate::probe::{self, FailureReason, ProbeResult};
use crate::target::Host;

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
    /// When the round ended: the age of its results.
    pub finished: Instant,
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
/// running at once stay under one concurrency bound and one cap per host.
#[derive(Debug)]
pub struct Slots {
    /// The global bound.
    global: Arc<Semaphore>,
    /// One semaphore per host and cap (a reload may change the cap).
    hosts: Mutex<HashMap<(Host, usize), Arc<Semaphore>>>,
}

impl Slots {
    /// Slots for `limits`.
    pub fn new(limits: Limits) -> Self {
        Slots {
            global: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The semaphore of `host` with `cap` slots.
    fn host(&self, host: &Host, cap: usize) -> Arc<Semaphore> {
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((host.clone(), cap))
            .or_insert_with(|| Arc::new(Semaphore::new(cap)))
            .clone()
    }

    /// Forget the hosts (after a reload): those no round holds are dropped.
    fn forget_hosts(&self) {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Acquire a permit, giving up at `deadline` if there is one.
async fn slot(sem: &Arc<Semaphore>, deadline: Option<Instant>) -> Option<OwnedSemaphorePermit> {
    let acquire = sem.clone().acquire_owned();
    match deadline {
        // The semaphores are never closed, so acquire only fails by timing out.
        Some(d) => timeout_at(d, acquire).await.ok()?.ok(),
        None => acquire.await.ok(),
    }
}

/// The order targets leave the queue in, and one per-host semaphore per distinct host.
///
/// Hosts take turns (the first target of every host, then the second of every host, ...), in
/// the order they first appear in the file, so that a host with thousands of paths and a
/// per-host cap does not keep every other host waiting behind it. Each entry is
/// `(target index, host index)`.
fn schedule(config: &Config, slots: &Slots) -> (Vec<(usize, usize)>, Vec<Arc<Semaphore>>) {
    let mut host_of: HashMap<&Host, usize> = HashMap::new();
    let mut queues: Vec<Vec<usize>> = Vec::new();
    let mut host_slots = Vec::new();
    for (i, t) in config.targets.iter().enumerate() {
        let h = *host_of.entry(&t.url.host).or_insert_with(|| {
            queues.push(Vec::new());
            host_slots.push(slots.host(&t.url.host, config.max_connections_per_host));
            queues.len() - 1
        });
        queues[h].push(i);
    }
    // Hosts still holding targets, each with how many of its targets are already ordered.
    let mut turns: std::collections::VecDeque<(usize, usize)> =
        (0..queues.len()).map(|h| (h, 0)).collect();
    let mut order = Vec::with_capacity(config.targets.len());
    while let Some((h, taken)) = turns.pop_front() {
        order.push((queues[h][taken], h));
        if taken + 1 < queues[h].len() {
            turns.push_back((h, taken + 1));
        }
    }
    (order, host_slots)
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
    run_round_on(config, resolver, budget, &Slots::new(limits), on_result).await
}

/// [`run_round`] on slots shared with other rounds.
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
    let global = slots.global.clone();
    let (order, host_slots) = schedule(&config, slots);
    let resolver = Arc::new(resolver.round());
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, ProbeResult, Duration)>();

    // Probe tasks say which host they freed, so that targets deferred for that host can go.
    let (freed_tx, mut freed_rx) = mpsc::unbounded_channel::<usize>();
    // Probes still running, so that the scrape's deadline can end them.
    let running: Mutex<HashMap<usize, tokio::task::AbortHandle>> = Mutex::new(HashMap::new());
    let running_ref = &running;
    let launch_config = config.clone();
    let launch = move |i: usize,
                       h: usize,
                       permit: OwnedSemaphorePermit,
                       host_permit: OwnedSemaphorePermit| {
        let (config, resolver, tx, freed_tx) = (
            launch_config.clone(),
            resolver.clone(),
            tx.clone(),
            freed_tx.clone(),
        );
        let task = tokio::spawn(async move {
            // Every target is queued when the round starts.
            let waited = start.elapsed();
            // A busy runtime may start the task after the scrape's deadline: it opens nothing.
            if round_deadline.is_some_and(|d| Instant::now() >= d) {
                drop(host_permit);
                drop(permit);
                let _ = freed_tx.send(h);
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
            // The receivers outlive every sender.
            let _ = freed_tx.send(h);
            let _ = tx.send((i, result, waited));
        });
        running_ref
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(i, task.abort_handle());
    };

    // Hands out slots: a target goes when both a global slot and a slot of its host are free.
    // A target whose host is full waits aside, holding no global slot, so that a crowded host
    // never keeps the other hosts waiting; it goes as soon as its host frees a slot.
    let spawner = async {
        let mut order = order.into_iter();
        let mut deferred: Vec<std::collections::VecDeque<usize>> =
            vec![Default::default(); host_slots.len()];
        let mut waiting_aside = 0usize;
        'slots: loop {
            let Some(permit) = slot(&global, round_deadline).await else {
                // Out of time: whatever has not started never will.
                break;
            };
            loop {
                // A host that freed a slot goes first, then the next target in order; when
                // only targets of full hosts are left, wait for a host to free a slot.
                let (freed, new) = if let Ok(h) = freed_rx.try_recv() {
                    (Some(h), None)
                } else if let Some(next) = order.next() {
                    (None, Some(next))
                } else if waiting_aside == 0 {
                    break 'slots;
                } else {
                    let freed = match round_deadline {
                        Some(d) => timeout_at(d, freed_rx.recv()).await.ok().flatten(),
                        None => freed_rx.recv().await,
                    };
                    let Some(h) = freed else { break 'slots };
                    (Some(h), None)
                };
                if let Some(h) = freed
                    && let Some(&i) = deferred[h].front()
                    && let Ok(host_permit) = host_slots[h].clone().try_acquire_owned()
                {
                    deferred[h].pop_front();
                    waiting_aside -= 1;
                    launch(i, h, permit, host_permit);
                    continue 'slots;
                }
                if let Some((i, h)) = new {
                    match host_slots[h].clone().try_acquire_owned() {
                        Ok(host_permit) => {
                            launch(i, h, permit, host_permit);
                            continue 'slots;
                        }
                        Err(_) => {
                            deferred[h].push_back(i);
                            waiting_aside += 1;
                        }
                    }
                }
                // Still holding the global slot: look for another target.
            }
        }
        // The last sender of results goes with `launch`: the collector then ends.
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
            running.lock().unwrap_or_else(|p| p.into_inner()).remove(&i);
            max_queue_wait = max_queue_wait.max(waited);
            on_result(i, &r);
            results[i] = Some(r);
        }
    };
    tokio::join!(spawner, collector);
    // Probes still running past the deadline are ended; their results say so.
    let cut: HashMap<usize, tokio::task::AbortHandle> =
        std::mem::take(&mut *running.lock().unwrap_or_else(|p| p.into_inner()));
    for task in cut.values() {
        task.abort();
    }

    let mut not_started = 0;
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
        .inspect(|r| not_started += usize::from(r.failure == Some(FailureReason::NotStarted)))
        .collect();
    Round {
        duration: start.elapsed(),
        config,
        results,
        started_at,
        max_queue_wait,
        not_started,
        finished: Instant::now(),
    }
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
    /// The config it probes: a scrape after a reload never joins a round of the old one.
    config: Arc<Config>,
    /// Its budget; `None` gives each probe its full timeout.
    budget: Option<Duration>,
    /// When its budget ends.
    deadline: Option<Instant>,
    /// Where its result appears.
    rx: watch::Receiver<Option<Arc<Round>>>,
}

impl InFlight {
    /// Whether a scrape with `budget`, arriving now, gets what it would get from a round of its
    /// own: the same config, a budget at least as long (so no result is cut shorter), and an
    /// end by the scrape's own deadline.
    fn joinable(&self, config: &Arc<Config>, budget: Option<Duration>, now: Instant) -> bool {
        let same_config = Arc::ptr_eq(&self.config, config);
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
        same_config && long_enough && ends_in_time && self.rx.has_changed().is_ok()
    }
}

/// Owns the current config and runs rounds; scrapes that arrive while a round is in flight
/// wait for that round instead of starting another.
#[derive(Debug)]
pub struct Prober {
    /// The config rounds probe; replaced whole on reload.
    config: RwLock<Arc<Config>>,
    /// Resolves host names; replaced whole on reload (its files are read again).
    resolver: RwLock<Arc<Resolver>>,
    /// Rounds in flight: their results appear in the channels.
    in_flight: Mutex<Vec<InFlight>>,
    /// Numbers rounds, so that a finished round removes its own entry.
    next_round: std::sync::atomic::AtomicU64,
    /// The last completed round, for the status page.
    last: RwLock<Option<Arc<Round>>>,
    /// The last results of every target.
    history: crate::history::History,
    /// Probe slots shared by every round.
    slots: Slots,
    /// The subsets of the config in force that selections asked for, built once per config.
    subsets: Mutex<HashMap<Selection, Arc<Config>>>,
    /// The last round of each selection, for `--probe.min-interval`.
    finished: Mutex<HashMap<Selection, Arc<Round>>>,
    /// A scrape that comes less than this after the last round of its selection ended gets
    /// that round (HA Prometheus pairs); zero turns it off.
    min_interval: Duration,
    /// The exporter's own metrics, updated after each round.
    metrics: ExporterMetrics,
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
            config: RwLock::new(Arc::new(config)),
            resolver: RwLock::new(Arc::new(resolver)),
            in_flight: Mutex::new(Vec::new()),
            next_round: std::sync::atomic::AtomicU64::new(0),
            slots: Slots::new(limits),
            subsets: Mutex::new(HashMap::new()),
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

    /// The part of the config in force that `selection` asks for, built once per config.
    fn selected(&self, selection: &Selection) -> Arc<Config> {
        let full = self.config();
        if *selection == Selection::All {
            return full;
        }
        let mut subsets = self.subsets.lock().unwrap_or_else(|p| p.into_inner());
        // The cache belongs to one config: after a reload it starts again, so that a subset of
        // the old config is never served.
        if !subsets
            .get(&Selection::All)
            .is_some_and(|all| Arc::ptr_eq(all, &full))
        {
            subsets.clear();
            subsets.insert(Selection::All, full.clone());
        }
        if let Some(c) = subsets.get(selection) {
            return c.clone();
        }
        let subset = Arc::new(full.subset(|t| selection.keeps(t)));
        subsets.insert(selection.clone(), subset.clone());
        subset
    }

    /// The config in use.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replace the config; the next round uses it.
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
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        self.slots.forget_hosts();
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

    /// [`Prober::scrape`] for the targets `selection` asks for. Rounds of different
    /// selections run side by side on the same slots. Under `--probe.min-interval`, a scrape
    /// soon after the last round of its selection gets that round.
    pub async fn scrape_selection(
        self: &Arc<Self>,
        selection: Selection,
        budget: Option<Duration>,
    ) -> Result<Arc<Round>, RoundError> {
        self.metrics.scrapes.inc();
        let config = self.selected(&selection);
        if !self.min_interval.is_zero() {
            let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = finished.get(&selection)
                && Arc::ptr_eq(&r.config, &config)
                && r.finished.elapsed() < self.min_interval
            {
                return Ok(r.clone());
            }
        }
        let mut rx = {
            // A poisoned lock only means a scrape panicked while holding it; the list inside
            // is always valid.
            let mut rounds = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            // A round whose task died (its sender is gone) is never joined.
            rounds.retain(|r| r.rx.has_changed().is_ok());
            match rounds.iter().find(|r| r.joinable(&config, budget, now)) {
                Some(r) => r.rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    let id = self
                        .next_round
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    rounds.push(InFlight {
                        id,
                        config: config.clone(),
                        budget,
                        deadline: budget.map(|b| now + b),
                        rx: rx.clone(),
                    });
                    let me = self.clone();
                    tokio::spawn(async move {
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
                        me.finished
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(selection, round.clone());
                        me.in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .retain(|r| r.id != id);
                        let _ = tx.send(Some(round));
                    });
                    rx
                }
            }
        };
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

    #[test]
    fn hosts_take_turns_in_order_of_first_appearance() {
        let text = "targets:\n  - http://a/1\n  - http://a/2\n  - http://a/3\n  - http://b/1\n  - http://c/1\n  - http://b/2\n";
        let config = crate::config::parse(std::path::Path::new("t.yml"), text).unwrap();
        let (order, slots) = schedule(&config, &Slots::new(Limits { concurrency: 1 }));
        let urls: Vec<&str> = order
            .iter()
            .map(|&(i, _)| config.targets[i].url.raw.as_str())
            .collect();
        assert_eq!(
            urls,
            [
                "http://a/1",
                "http://b/1",
                "http://c/1",
                "http://a/2",
                "http://b/2",
                "http://a/3"
            ]
        );
        assert_eq!(slots.len(), 3);
        assert_eq!(
            order.iter().map(|&(_, h)| h).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 0]
        );
    }
}
