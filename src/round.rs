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
use crate::metrics::ExporterMetrics;
use crate::probe::connect::Resolver;
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
}

/// Limits of a round.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most probes running at once.
    pub concurrency: usize,
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

/// Probe every target of `config` once. `budget` is the scrape's time limit (already reduced
/// by the offset); each probe gets `min(its timeout, budget)`. `on_result` sees each result
/// the moment it arrives.
pub async fn run_round(
    config: Arc<Config>,
    budget: Option<Duration>,
    limits: Limits,
    mut on_result: impl FnMut(usize, &ProbeResult),
) -> Round {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let round_deadline = budget.map(|b| start + b);
    let n = config.targets.len();
    let global = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let mut per_host: HashMap<&Host, Arc<Semaphore>> = HashMap::new();
    let resolver = Arc::new(Resolver::new());
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, ProbeResult, Duration)>();

    let spawner = async {
        for i in 0..n {
            let t = &config.targets[i];
            let Some(permit) = slot(&global, round_deadline).await else {
                // Out of time: this target and every one after it never start.
                break;
            };
            let host_sem = per_host
                .entry(&t.url.host)
                .or_insert_with(|| Arc::new(Semaphore::new(config.max_connections_per_host)))
                .clone();
            let (config, resolver, tx) = (config.clone(), resolver.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let Some(_host_permit) = slot(&host_sem, round_deadline).await else {
                    let _ = tx.send((i, ProbeResult::not_started(), start.elapsed()));
                    return;
                };
                // Every target is queued when the round starts.
                let waited = start.elapsed();
                let t = &config.targets[i];
                let own = Instant::now() + budget.map_or(t.timeout, |b| b.min(t.timeout));
                let deadline = round_deadline.map_or(own, |r| r.min(own));
                let mut result = probe::probe(t, deadline, &resolver).await;
                if deadline < own
                    && matches!(
                        result.failure,
                        Some(
                            FailureReason::Timeout
                                | FailureReason::ConnectTimeout
                                | FailureReason::Dns
                        )
                    )
                    && Instant::now() >= deadline
                {
                    result.failure = Some(FailureReason::ScrapeDeadline);
                    result.detail =
                        Some("the scrape deadline ended the probe before its own timeout".into());
                }
                // The receiver outlives every sender.
                let _ = tx.send((i, result, waited));
            });
        }
        drop(tx);
    };

    let mut results: Vec<Option<ProbeResult>> = vec![None; n];
    let mut max_queue_wait = Duration::ZERO;
    let collector = async {
        while let Some((i, r, waited)) = rx.recv().await {
            max_queue_wait = max_queue_wait.max(waited);
            on_result(i, &r);
            results[i] = Some(r);
        }
    };
    tokio::join!(spawner, collector);

    let mut not_started = 0;
    let results: Vec<ProbeResult> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let r = ProbeResult::not_started();
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
    }
}

/// Why a scrape got no round.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The task running the round ended without a result (it panicked).
    #[error("the probe round ended without a result")]
    Lost,
}

/// Owns the current config and runs rounds; scrapes that arrive while a round is in flight
/// wait for that round instead of starting another.
#[derive(Debug)]
pub struct Prober {
    /// The config rounds probe; replaced whole on reload.
    config: RwLock<Arc<Config>>,
    /// The round in flight, if any: its result appears in the channel.
    in_flight: Mutex<Option<watch::Receiver<Option<Arc<Round>>>>>,
    /// The last completed round, for the status page.
    last: RwLock<Option<Arc<Round>>>,
    /// Limits of every round.
    limits: Limits,
    /// The exporter's own metrics, updated after each round.
    metrics: ExporterMetrics,
}

impl Prober {
    /// A prober of `config`.
    pub fn new(config: Config, limits: Limits, metrics: ExporterMetrics) -> Self {
        metrics
            .targets
            .set(i64::try_from(config.targets.len()).unwrap_or(i64::MAX));
        metrics
            .concurrency
            .set(i64::try_from(limits.concurrency).unwrap_or(i64::MAX));
        Prober {
            config: RwLock::new(Arc::new(config)),
            in_flight: Mutex::new(None),
            last: RwLock::new(None),
            limits,
            metrics,
        }
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
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    /// The last completed round.
    pub fn last_round(&self) -> Option<Arc<Round>> {
        self.last.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The exporter's metrics.
    pub fn metrics(&self) -> &ExporterMetrics {
        &self.metrics
    }

    /// Join the round in flight, or start one with `budget`.
    pub async fn scrape(
        self: &Arc<Self>,
        budget: Option<Duration>,
    ) -> Result<Arc<Round>, RoundError> {
        self.metrics.scrapes.inc();
        let mut rx = {
            // A poisoned lock only means a scrape panicked while holding it; the Option inside
            // is always valid.
            let mut slot = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                // A round whose task died (its sender is gone) is not joined: start anew.
                Some(rx) if rx.has_changed().is_ok() => rx.clone(),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    *slot = Some(rx.clone());
                    let me = self.clone();
                    tokio::spawn(async move {
                        let config = me.config();
                        let log_config = config.clone();
                        let round = Arc::new(
                            run_round(config, budget, me.limits, |i, r| {
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
                        *me.last.write().unwrap_or_else(|p| p.into_inner()) = Some(round.clone());
                        *me.in_flight.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
