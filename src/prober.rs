//! Which scrapes share a round: the [`Prober`] owns the config in force and the rounds in
//! flight. A scrape joins a round in flight that gives it what a round of its own would, is
//! served a recent round under `--probe.min-interval` where that round is true for it, or
//! starts a round. A round whose last waiting scrape goes away is ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::dns::Resolver;
use crate::metrics::ExporterMetrics;
use crate::round::{Limits, Round, Slots, lock, run_round_on};

/// Selections (groups, `/probe` targets) whose subset of the config and last round are kept
/// at once; beyond it the least recently used goes. A subset is rebuilt when asked for again.
pub const MAX_SELECTIONS: usize = 32;

/// A selection's subset not asked for in this long is dropped.
pub const SELECTION_IDLE: Duration = Duration::from_secs(600);

/// A scrape without `X-Prometheus-Scrape-Timeout-Seconds` (and without
/// `--scrape.default-timeout`) gets at least this budget, as Prometheus' default scrape
/// timeout; longer when a target's own timeout is longer (see [`default_budget`]).
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The target with this URL (as written) or name, in `group` when the scrape named one
    /// (`/probe?module=G`); without a group, every target that matches.
    Target {
        /// The URL as written, or the name.
        key: String,
        /// The group (`module`) the target must be in.
        group: Option<String>,
    },
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
    pub fn keeps(&self, t: &crate::target::Target) -> bool {
        match self {
            Selection::All => true,
            Selection::Groups(g) => g.iter().any(|g| **g == *t.group),
            Selection::Target { key, group } => {
                (t.url.raw == *key || t.name.as_deref() == Some(key))
                    && group.as_ref().is_none_or(|g| **g == *t.group)
            }
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
        let targets = config.targets.len();
        metrics
            .targets
            .set(i64::try_from(targets).unwrap_or(i64::MAX));
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
            history: crate::history::History::auto(targets),
            metrics,
        }
    }

    /// Keep the last `depth` results of every target (`--status.history`; 0: none); `None`
    /// keeps the default, which fits the number of targets (see
    /// [`crate::history::History::auto`]).
    pub fn with_history(mut self, depth: Option<usize>) -> Self {
        self.history = match depth {
            Some(d) => crate::history::History::new(d),
            None => crate::history::History::auto(self.config().targets.len()),
        };
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
        let keep: std::collections::HashSet<&str> =
            config.targets.iter().map(|t| &*t.label_block).collect();
        self.history.retain(&keep);
        drop(keep);
        self.history.fit(config.targets.len());
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

    /// Probe `targets` (made for one `/probe` request: an allowlisted URL, or a configured
    /// target with another `Host`) once, on the slots every round shares; no other scrape
    /// joins this round and it is not kept. Without a budget the scrape gets
    /// [`default_budget`].
    pub async fn probe_targets(
        &self,
        targets: Vec<Arc<crate::target::Target>>,
        budget: Option<Duration>,
    ) -> Arc<Round> {
        self.metrics.scrapes.inc();
        let mut config = self.config().subset(|_| false);
        config.targets = targets;
        let budget = Some(budget.unwrap_or_else(|| default_budget(&config)));
        let resolver = self.resolver();
        let round = run_round_on(Arc::new(config), &resolver, budget, &self.slots, |_, _| {}).await;
        Arc::new(round)
    }

    /// Probe `target` once, outside the rounds, with a trace of every step
    /// (`/probe?debug=true`): the result and the trace's lines. Like every probe it takes a
    /// global slot and a slot of its host first, and a place at the gate of each address it
    /// connects to.
    pub async fn trace_target(
        &self,
        target: &crate::target::Target,
        budget: Option<Duration>,
    ) -> (crate::outcome::ProbeResult, Vec<String>) {
        let budget = budget.unwrap_or(target.timeout).min(target.timeout);
        let deadline = Instant::now() + budget;
        let resolver = self.resolver().round();
        let Some(permits) = self.slots.one(&target.url.host, deadline).await else {
            self.slots.sweep();
            let line = format!(
                "not started: no probe slot of {} was free before the deadline",
                target.url.host
            );
            return (crate::outcome::ProbeResult::not_started(), vec![line]);
        };
        let env = crate::probe::Env {
            resolver: &resolver,
            gates: self.slots.addresses(),
        };
        let traced = crate::trace::collect(crate::probe::probe(target, deadline, &env)).await;
        drop(permits);
        self.slots.sweep();
        traced
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
    fn the_default_budget_covers_the_longest_timeout() {
        let short = config("targets:\n  - http://a/1\n");
        assert_eq!(default_budget(&short), DEFAULT_SCRAPE_TIMEOUT);
        let long = config("defaults:\n  timeout: 30s\ntargets:\n  - http://a/1\n");
        assert_eq!(default_budget(&long), Duration::from_secs(31));
    }
}
