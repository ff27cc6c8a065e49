//! Name resolution: an asynchronous stub resolver of our own that reads `resolv.conf` and the
//! hosts file, or the system's getaddrinfo for sites that need NSS modules.
//!
//! - A [`Resolver`] lives as long as its config (it is read again on reload). A round takes a
//!   [`RoundResolver`] from it, which looks each `(name, ip_protocol)` up once, as a task of
//!   its own, and shares the answer with every target of that host: each target waits for it
//!   until its own deadline, and a target that gives up ends nobody else's wait. Every round
//!   resolves afresh unless `--dns.cache` keeps answers for their TTL (bounded, see
//!   [`cache`]).
//! - A name goes through the search list as glibc's getaddrinfo takes it: both families of one
//!   candidate name (A and AAAA at once for `ip_protocol: auto`), then the next candidate, so
//!   the addresses always come from one name.
//! - The time reported for a lookup runs from the moment its first query can be sent (a
//!   lookup slot is held) to the answer: never the wait for a slot. A lookup shared by several
//!   targets reports its own time to each.
//! - Names in the hosts file win over DNS (glibc's `hosts: files dns`). `localhost` needs no
//!   query and `.invalid` names fail without one (RFC 6761).
//! - Every failure is the probe reason `dns`; the [`DnsFailure`] detail tells NXDOMAIN, no
//!   address of the family, a server failure and no answer apart.

pub mod cache;
pub mod client;
pub mod conf;
pub mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::config_error::ConfigError;
use crate::probe_url::{Host, IpProtocol};
pub use conf::{Hosts, ResolvConf};

/// Default `--dns.resolv-conf`.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Default `--dns.hosts-file`.
pub const DEFAULT_HOSTS_FILE: &str = "/etc/hosts";

/// Most DNS queries in flight when `--dns.concurrency` is not given (fewer under a low
/// open-file limit, see [`default_concurrency`]). A lookup of both families asks A and AAAA at
/// once: two queries.
///
/// unbound drops, without an answer, a client's queries beyond `wait-limit` waiting for
/// upstream answers (1,000 per address by default since 1.20, and in Debian's 1.17 security
/// update): a round of cold names above that loses lookups to the 5 s timeout. 768 stays under
/// it and leaves a quarter to the machine's other clients of the same resolver.
pub const MAX_DEFAULT_CONCURRENCY: usize = 768;

/// Blocking getaddrinfo threads at once for `--dns.resolver=system`.
pub const SYSTEM_LOOKUP_THREADS: usize = 32;

/// Which resolver probes use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// The built-in asynchronous stub resolver.
    #[default]
    Builtin,
    /// getaddrinfo on blocking threads: honours nsswitch.conf (LDAP, mDNS, ...).
    System,
}

impl Backend {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Builtin => "builtin",
            Backend::System => "system",
        }
    }
}

/// The `--dns.*` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `--dns.resolver`.
    pub backend: Backend,
    /// `--dns.resolv-conf`; `None` is [`DEFAULT_RESOLV_CONF`], whose absence means glibc's
    /// defaults (a server on 127.0.0.1).
    pub resolv_conf: Option<PathBuf>,
    /// `--dns.hosts-file`; `None` is [`DEFAULT_HOSTS_FILE`], whose absence means no entries.
    pub hosts_file: Option<PathBuf>,
    /// `--dns.cache`: keep answers across rounds for their TTL (at most
    /// [`cache::MAX_ENTRIES`] names).
    pub cache: bool,
    /// `--dns.concurrency`: most lookups in flight; `None` derives it from the fd limit.
    pub concurrency: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backend: Backend::Builtin,
            resolv_conf: None,
            hosts_file: None,
            cache: false,
            concurrency: None,
        }
    }
}

/// Queries in flight by default for a soft open-file limit: each lookup holds a socket (two
/// while it asks again over TCP) for up to two queries, and probes hold one each, so a quarter
/// of what probes may use is left to DNS.
pub fn default_concurrency(fd_limit: u64) -> usize {
    let usable = fd_limit.saturating_sub(crate::sys::FD_RESERVE) / 4 * 2;
    usize::try_from(usable)
        .unwrap_or(usize::MAX)
        .clamp(2, MAX_DEFAULT_CONCURRENCY)
}

/// Why a name did not resolve: the detail of a `dns` failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsFailure {
    /// The name does not exist.
    #[error("{0}: NXDOMAIN (no such name)")]
    NxDomain(String),
    /// The name exists but has no address of the allowed family.
    #[error("{name}: no {family} record")]
    NoAddress {
        /// The name asked for.
        name: String,
        /// `A`, `AAAA` or `A or AAAA`.
        family: &'static str,
    },
    /// The server could not or would not answer (SERVFAIL, REFUSED, ...).
    #[error("{name}: the DNS server answered {code}")]
    ServerFailure {
        /// The name asked for.
        name: String,
        /// The response code, as DNS names it.
        code: String,
    },
    /// No server answered within `timeout` × `attempts`.
    #[error("{0}: no answer from the DNS server")]
    NoAnswer(String),
    /// The probe's deadline passed first.
    #[error("{0}: no answer before the probe's deadline")]
    Deadline(String),
    /// The servers could not be reached, or something else went wrong.
    #[error("{name}: {message}")]
    Other {
        /// The name asked for.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// A lookup's answer: addresses in the resolver's order, or why there are none; and how long
/// the lookup itself took.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The addresses, or the failure.
    pub result: Result<Arc<[IpAddr]>, DnsFailure>,
    /// From the first query sent to the answer (zero for IP literals and hosts entries).
    pub took: Duration,
}

/// The built-in resolver: what `resolv.conf` said, the client asking its servers, and the
/// answers kept across rounds when `--dns.cache` is on.
#[derive(Debug)]
struct Stub {
    /// Name servers, search list and options.
    conf: ResolvConf,
    /// Sends the queries.
    client: client::Client,
    /// `(name, ip_protocol)` → addresses until their TTL runs out; `None` when caching is off.
    cache: Option<Mutex<cache::Cache>>,
}

/// Resolves host names for probes; built from [`Settings`] and the files they name.
#[derive(Debug)]
pub struct Resolver {
    /// The built-in resolver; `None` for getaddrinfo.
    stub: Option<Stub>,
    /// Hosts-file entries (built-in resolver only: getaddrinfo reads the file itself).
    hosts: Hosts,
    /// Bounds queries in flight (getaddrinfo: lookups).
    slots: Arc<Semaphore>,
    /// How many: the size of `slots`.
    at_once: usize,
}

/// Read a resolver file, or `None` when it is the default path and does not exist.
fn read_optional(
    given: Option<&Path>,
    default: &str,
) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let path = given.map_or_else(|| PathBuf::from(default), Path::to_owned);
    if given.is_none() && !path.exists() {
        return Ok(None);
    }
    conf::read(&path).map(|text| Some((path, text)))
}

impl Resolver {
    /// getaddrinfo on at most `threads` blocking threads.
    pub fn system(threads: usize) -> Self {
        Resolver {
            stub: None,
            hosts: Hosts::default(),
            slots: Arc::new(Semaphore::new(threads.max(1))),
            at_once: threads.max(1),
        }
    }

    /// Build the resolver `settings` describe, reading its files; `fd_limit` sizes the default
    /// concurrency. An error is a file that cannot be read; what glibc reads otherwise than
    /// written in `resolv.conf` is logged as a warning that names the file, line and column.
    pub fn load(settings: &Settings, fd_limit: u64) -> Result<Self, ConfigError> {
        if settings.backend == Backend::System {
            return Ok(Resolver::system(
                settings.concurrency.unwrap_or(SYSTEM_LOOKUP_THREADS),
            ));
        }
        let resolv = match read_optional(settings.resolv_conf.as_deref(), DEFAULT_RESOLV_CONF)? {
            Some((path, text)) => {
                let (resolv, warnings) = conf::parse_resolv_conf(&path, &text);
                for warning in &warnings {
                    tracing::warn!(%warning, "resolv.conf is read as glibc reads it");
                }
                resolv
            }
            None => ResolvConf::default(),
        };
        let hosts = match read_optional(settings.hosts_file.as_deref(), DEFAULT_HOSTS_FILE)? {
            Some((_, text)) => conf::parse_hosts(&text),
            None => Hosts::default(),
        };
        let concurrency = settings
            .concurrency
            .unwrap_or_else(|| default_concurrency(fd_limit));
        Ok(Resolver::builtin(
            resolv,
            hosts,
            settings.cache,
            concurrency,
        ))
    }

    /// The built-in resolver with these settings.
    pub fn builtin(resolv: ResolvConf, hosts: Hosts, cache: bool, concurrency: usize) -> Self {
        Resolver {
            stub: Some(Stub {
                client: client::Client::new(&resolv),
                conf: resolv,
                cache: cache.then(Mutex::default),
            }),
            hosts,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            at_once: concurrency.max(1),
        }
    }

    /// A one-line description for the start-up log and `--config.check`.
    pub fn describe(&self) -> String {
        match &self.stub {
            None => format!(
                "system resolver, {} lookups at once",
                self.slots.available_permits()
            ),
            Some(Stub { conf: c, cache, .. }) => format!(
                "builtin resolver: servers {}, search [{}], ndots {}, timeout {}s, attempts {}{}, \
                 {} hosts entries, {} queries at once, cache {}",
                c.nameservers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                c.search.join(" "),
                c.ndots,
                c.timeout.as_secs(),
                c.attempts,
                if c.rotate { ", rotate" } else { "" },
                self.hosts.len(),
                self.slots.available_permits(),
                if cache.is_some() { "on" } else { "off" }
            ),
        }
    }

    /// A resolver for one round: each `(name, ip_protocol)` looked up once.
    pub fn round(self: &Arc<Self>) -> RoundResolver {
        RoundResolver {
            resolver: self.clone(),
            cells: Mutex::new(HashMap::new()),
            over: Arc::default(),
        }
    }

    /// The answer for a name that needs no query: one in the hosts file, `localhost` and
    /// `.invalid` names (RFC 6761).
    fn without_query(&self, name: &str, proto: IpProtocol) -> Option<Answer> {
        let bare = name.strip_suffix('.').unwrap_or(name);
        if let Some(addrs) = self.hosts.get(bare) {
            return Some(fixed(name, addrs, proto));
        }
        // RFC 6761 §6.3 and §6.4: answered without asking anyone.
        if bare == "localhost" || bare.ends_with(".localhost") {
            return Some(fixed(
                name,
                &[
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                ],
                proto,
            ));
        }
        if bare == "invalid" || bare.ends_with(".invalid") {
            return Some(Answer {
                result: Err(DnsFailure::NxDomain(name.to_owned())),
                took: Duration::ZERO,
            });
        }
        None
    }

    /// Look `name` up (a slot for each query it asks at once first).
    async fn lookup(&self, name: &str, proto: IpProtocol) -> Answer {
        let queries = match (&self.stub, proto) {
            (Some(_), IpProtocol::Auto) => 2,
            _ => 1,
        };
        let queries = u32::try_from(queries.min(self.at_once)).unwrap_or(1);
        // The semaphore is never closed, so acquire cannot fail.
        let Ok(permit) = self.slots.clone().acquire_many_owned(queries).await else {
            return Answer {
                result: Err(DnsFailure::Other {
                    name: name.to_owned(),
                    message: "resolver shut down".into(),
                }),
                took: Duration::ZERO,
            };
        };
        match &self.stub {
            // The permit goes with the thread: a hung getaddrinfo keeps its slot until it returns.
            None => system_lookup(name, proto, permit).await,
            Some(stub) => {
                let answer = stub.lookup(name, proto).await;
                drop(permit);
                answer
            }
        }
    }
}

/// A lookup of a round: its answer once it is in, for every probe of the name. (A `watch`
/// channel did the same in 450 bytes, most of them eight `Notify`s for many receivers that
/// change value; an answer is set once.)
#[derive(Debug, Default)]
struct Pending {
    /// The answer: set once, by the lookup's task.
    answer: OnceLock<Answer>,
    /// Wakes the probes waiting for it.
    ready: Notify,
}

impl Pending {
    /// The answer, once it is in.
    async fn wait(&self) -> Answer {
        loop {
            // Created before the answer is read, so that one set in between still wakes it.
            let ready = self.ready.notified();
            if let Some(answer) = self.answer.get() {
                return answer.clone();
            }
            ready.await;
        }
    }
}

/// Hands a lookup's answer to its probes when dropped: the answer found, or, when the task
/// ended without one (it panicked, or its round was dropped), a failure that says so.
struct Publish {
    /// Where the probes wait.
    pending: Arc<Pending>,
    /// The name looked up.
    name: String,
    /// The answer, once found.
    answer: Option<Answer>,
}

impl Publish {
    /// The answer to hand over.
    fn found(&mut self, answer: Answer) {
        self.answer = Some(answer);
    }
}

impl Drop for Publish {
    fn drop(&mut self) {
        let answer = self.answer.take().unwrap_or_else(|| lost(&self.name));
        // Only this task sets it.
        let _ = self.pending.answer.set(answer);
        self.pending.ready.notify_waiters();
    }
}

/// The end of a round, for its lookups' tasks: set once, when the round is dropped.
#[derive(Debug, Default)]
struct Over {
    /// The round is over.
    flag: AtomicBool,
    /// Wakes the lookups still running.
    notify: Notify,
}

/// Resolves for one round: the first probe of a `(name, ip_protocol)` starts its lookup as a
/// task of its own, and every probe of that host waits for that answer, each until its own
/// deadline. The lookups still running when the round ends are stopped.
///
/// The lookups' tasks run detached and hold nothing of the round but a place in one list of
/// waiters (`Over`), which each leaves as it ends: a handle to each task kept until the
/// round ends (tokio's `AbortHandle`, or a waker registered with an abort flag) would keep
/// every task's memory, its 1.3 KiB future, for every name of the round at once.
#[derive(Debug)]
pub struct RoundResolver {
    /// The long-lived resolver.
    resolver: Arc<Resolver>,
    /// One lookup per name and family, and its answer once it is in.
    cells: Mutex<HashMap<(String, IpProtocol), Arc<Pending>>>,
    /// Stops the lookups still running when the round is dropped.
    over: Arc<Over>,
}

impl Drop for RoundResolver {
    fn drop(&mut self) {
        self.over.flag.store(true, Ordering::Release);
        self.over.notify.notify_waiters();
        // Between rounds no socket stays open for lookups.
        if let Some(stub) = &self.resolver.stub {
            stub.client.close_idle();
        }
    }
}

/// Keep the allowed families and interleave them, starting with the resolver's first choice
/// (RFC 8305 §4).
pub fn order(addrs: &[IpAddr], proto: IpProtocol) -> Vec<IpAddr> {
    let allowed = |a: &&IpAddr| match proto {
        IpProtocol::Auto => true,
        IpProtocol::Ip4 => a.is_ipv4(),
        IpProtocol::Ip6 => a.is_ipv6(),
    };
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs.iter().filter(allowed) {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    let Some(first) = out.first().copied() else {
        return out;
    };
    let (mut same, mut other): (Vec<_>, Vec<_>) = out
        .into_iter()
        .partition(|a| a.is_ipv4() == first.is_ipv4());
    same.reverse();
    other.reverse();
    let mut interleaved = Vec::with_capacity(same.len() + other.len());
    while !same.is_empty() || !other.is_empty() {
        interleaved.extend(same.pop());
        interleaved.extend(other.pop());
    }
    interleaved
}

/// The record types a family asks for.
fn family_name(proto: IpProtocol) -> &'static str {
    match proto {
        IpProtocol::Auto => "A or AAAA",
        IpProtocol::Ip4 => "A",
        IpProtocol::Ip6 => "AAAA",
    }
}

/// Addresses from a fixed list (hosts file, RFC 6761), filtered and ordered.
fn fixed(name: &str, addrs: &[IpAddr], proto: IpProtocol) -> Answer {
    let ordered = order(addrs, proto);
    Answer {
        result: if ordered.is_empty() {
            Err(DnsFailure::NoAddress {
                name: name.to_owned(),
                family: family_name(proto),
            })
        } else {
            Ok(ordered.into())
        },
        took: Duration::ZERO,
    }
}

/// The answer for an IP literal: itself, when `proto` allows its family. The plain path of
/// every probe of a literal, so it makes one allocation (the answer's), not the general
/// ordering's four.
fn literal(ip: IpAddr, proto: IpProtocol) -> Answer {
    let allowed = match proto {
        IpProtocol::Auto => true,
        IpProtocol::Ip4 => ip.is_ipv4(),
        IpProtocol::Ip6 => ip.is_ipv6(),
    };
    if !allowed {
        return fixed(&ip.to_string(), &[ip], proto);
    }
    Answer {
        result: Ok(Arc::from([ip])),
        took: Duration::ZERO,
    }
}

impl RoundResolver {
    /// Look `hosts` up ahead of the probes that will need them, in order, with at most as
    /// many of these lookups started as the resolver has query slots (those of both families
    /// take two slots each, so half of them wait for a slot): a probe that comes to
    /// its host finds its lookup started, or done, so that lookups overlap with the connects
    /// of other probes. Returns once every name was asked and answered; dropping the future
    /// stops asking (the lookups started go on for their probes). A round whose targets are
    /// split over `parts` (one prefetch each) gives each part its share of the window.
    pub async fn prefetch<'h>(
        &self,
        hosts: impl Iterator<Item = (&'h Host, IpProtocol)>,
        parts: usize,
    ) {
        use futures_util::StreamExt;
        let window = self.resolver.at_once.div_ceil(parts.max(1));
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        // A name of several targets is asked once.
        let mut asked = std::collections::HashSet::new();
        for (host, proto) in hosts {
            if !asked.insert((host, proto)) {
                continue;
            }
            if in_flight.len() >= window {
                in_flight.next().await;
            }
            in_flight.push(self.resolve(host, proto));
        }
        while in_flight.next().await.is_some() {}
    }

    /// The addresses to try for `host`, filtered by `proto` and ordered for Happy Eyeballs,
    /// with the lookup's own time. A caller that stops waiting (its deadline) leaves the
    /// lookup running for the others.
    pub async fn resolve(&self, host: &Host, proto: IpProtocol) -> Answer {
        let name = match host {
            Host::Ip(ip) => return literal(*ip, proto),
            Host::Name(name) => name,
        };
        if let Some(answer) = self.resolver.without_query(name, proto) {
            return answer;
        }
        let pending = {
            // A poisoned lock only means another probe panicked mid-insert; the map itself is
            // still consistent.
            let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
            cells
                .entry((name.clone(), proto))
                .or_insert_with(|| {
                    let pending = Arc::new(Pending::default());
                    let mut publish = Publish {
                        pending: pending.clone(),
                        name: name.clone(),
                        answer: None,
                    };
                    let (resolver, over) = (self.resolver.clone(), self.over.clone());
                    // Detached: the task's memory goes when it ends.
                    drop(tokio::spawn(async move {
                        // Created before the flag is read, so the round's end cannot slip
                        // between the two (`notify_waiters` reaches it from here on).
                        let stopped = over.notify.notified();
                        if over.flag.load(Ordering::Acquire) {
                            return;
                        }
                        tokio::select! {
                            biased;
                            answer = resolver.lookup(&publish.name, proto) => {
                                publish.found(answer);
                            }
                            () = stopped => {}
                        }
                    }));
                    pending
                })
                .clone()
        };
        pending.wait().await
    }
}

/// The answer when a lookup's task ended without one.
fn lost(name: &str) -> Answer {
    Answer {
        result: Err(DnsFailure::Other {
            name: name.to_owned(),
            message: "the lookup failed".into(),
        }),
        took: Duration::ZERO,
    }
}

/// The names to ask for, in order (glibc's rules): a name with a final dot as it is; one with
/// at least `ndots` dots as written first, then with each search domain; one with fewer, with
/// each search domain first and as written last.
pub fn candidates(name: &str, search: &[String], ndots: usize) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_owned()];
    }
    let searched = search.iter().map(|d| format!("{name}.{d}"));
    if name.matches('.').count() >= ndots {
        std::iter::once(name.to_owned()).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(name.to_owned())).collect()
    }
}

/// The failure of one record type's lookup, named for `name`.
fn failure(name: &str, e: client::QueryError) -> DnsFailure {
    match e {
        client::QueryError::Code(code) => DnsFailure::ServerFailure {
            name: name.to_owned(),
            code: wire::rcode::name(code),
        },
        client::QueryError::NoAnswer => DnsFailure::NoAnswer(name.to_owned()),
        client::QueryError::Unreachable(message) => DnsFailure::Other {
            name: name.to_owned(),
            message,
        },
    }
}

/// The record types a family asks for, in the order their addresses are listed.
fn record_types(proto: IpProtocol) -> &'static [u16] {
    match proto {
        IpProtocol::Auto => &[wire::TYPE_AAAA, wire::TYPE_A],
        IpProtocol::Ip4 => &[wire::TYPE_A],
        IpProtocol::Ip6 => &[wire::TYPE_AAAA],
    }
}

/// What the answers for one candidate name say, as glibc's `res_search` reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A NOERROR answer with records: the search ends at this name, with these addresses
    /// (possibly none, when the records were only aliases) and their smallest TTL.
    Found(Vec<IpAddr>, u32),
    /// The name exists without records of the types asked for: next candidate.
    NoData,
    /// The name does not exist: next candidate.
    NxDomain,
    /// Every server answered SERVFAIL: next candidate (glibc moves on too).
    ServFail,
    /// No server answered usefully (silence, REFUSED, unreachable): the search ends.
    Stop(client::QueryError),
}

/// The verdict on one candidate from its answers, one per record type.
pub fn verdict(outcomes: &[client::Outcome]) -> Verdict {
    let mut found: Option<(Vec<IpAddr>, u32)> = None;
    let (mut nodata, mut servfail, mut stop) = (false, false, None);
    for outcome in outcomes {
        match outcome {
            Ok((a, _)) if a.rcode == wire::rcode::NOERROR && a.answer_count > 0 => {
                let (addrs, ttl) = found.get_or_insert((Vec::new(), u32::MAX));
                if !a.addrs.is_empty() {
                    addrs.extend_from_slice(&a.addrs);
                    *ttl = (*ttl).min(a.ttl);
                }
            }
            Ok((a, _)) if a.rcode == wire::rcode::NOERROR => nodata = true,
            Ok(_) => {}
            Err(client::QueryError::Code(wire::rcode::SERVFAIL)) => servfail = true,
            Err(e) => {
                stop.get_or_insert(e.clone());
            }
        }
    }
    match (found, stop) {
        (Some((addrs, ttl)), _) => Verdict::Found(addrs, if ttl == u32::MAX { 0 } else { ttl }),
        (None, Some(e)) => Verdict::Stop(e),
        (None, None) if nodata => Verdict::NoData,
        (None, None) if servfail => Verdict::ServFail,
        (None, None) => Verdict::NxDomain,
    }
}

impl Stub {
    /// Look `name` up: for each candidate of the search list, every record type of `proto` at
    /// once; the first candidate with records ends the search. The time runs from the first
    /// query sent to the arrival of the last answer used.
    async fn lookup(&self, name: &str, proto: IpProtocol) -> Answer {
        let start = Instant::now();
        let key = (name.to_owned(), proto);
        if let Some(cache) = &self.cache {
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(addrs) = cache.get(&key, start.into_std()) {
                return Answer {
                    result: Ok(addrs),
                    took: Duration::ZERO,
                };
            }
        }
        let (result, end) = self.search(name, proto, start).await;
        if let (Ok((addrs, ttl)), Some(cache)) = (&result, &self.cache) {
            cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
                key,
                addrs.clone(),
                Duration::from_secs(u64::from(*ttl)),
                end.into_std(),
            );
        }
        Answer {
            result: result.map(|(addrs, _)| addrs),
            took: end.saturating_duration_since(start),
        }
    }

    /// The search list, candidate by candidate: the ordered addresses and their TTL, or why
    /// there are none; and when the deciding answer arrived.
    async fn search(
        &self,
        name: &str,
        proto: IpProtocol,
        start: Instant,
    ) -> (Result<(Arc<[IpAddr]>, u32), DnsFailure>, Instant) {
        let types = record_types(proto);
        let mut end = start;
        let (mut nodata, mut servfail) = (false, false);
        for candidate in candidates(name, &self.conf.search, self.conf.ndots) {
            let outcomes = self.client.query(&candidate, types).await;
            for (_, at) in outcomes.iter().flatten() {
                end = end.max(*at);
            }
            match verdict(&outcomes) {
                Verdict::Found(addrs, ttl) => {
                    let ordered = order(&addrs, proto);
                    if ordered.is_empty() {
                        let e = DnsFailure::NoAddress {
                            name: name.to_owned(),
                            family: family_name(proto),
                        };
                        return (Err(e), end);
                    }
                    return (Ok((ordered.into(), ttl)), end);
                }
                Verdict::NoData => nodata = true,
                Verdict::ServFail => servfail = true,
                Verdict::NxDomain => {}
                Verdict::Stop(e) => return (Err(failure(name, e)), Instant::now()),
            }
        }
        let e = if nodata {
            DnsFailure::NoAddress {
                name: name.to_owned(),
                family: family_name(proto),
            }
        } else if servfail {
            DnsFailure::ServerFailure {
                name: name.to_owned(),
                code: wire::rcode::name(wire::rcode::SERVFAIL),
            }
        } else {
            DnsFailure::NxDomain(name.to_owned())
        };
        (Err(e), end)
    }
}

/// getaddrinfo on a blocking thread; the time counts from the moment the thread runs it.
async fn system_lookup(
    name: &str,
    proto: IpProtocol,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Answer {
    let owned = name.to_owned();
    let joined = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let start = Instant::now();
        let r = std::net::ToSocketAddrs::to_socket_addrs(&(owned.as_str(), 0))
            .map(|it| it.map(|sa| sa.ip()).collect::<Vec<_>>());
        (r, start.elapsed())
    })
    .await;
    let (found, took) = match joined {
        Ok(v) => v,
        Err(e) => {
            return Answer {
                result: Err(DnsFailure::Other {
                    name: name.to_owned(),
                    message: format!("lookup thread failed: {e}"),
                }),
                took: Duration::ZERO,
            };
        }
    };
    let result = match found {
        Ok(addrs) => {
            let ordered = order(&addrs, proto);
            if ordered.is_empty() {
                Err(DnsFailure::NoAddress {
                    name: name.to_owned(),
                    family: family_name(proto),
                })
            } else {
                Ok(ordered.into())
            }
        }
        Err(e) => Err(DnsFailure::Other {
            name: name.to_owned(),
            message: system_error(&e),
        }),
    };
    Answer { result, took }
}

/// getaddrinfo's message without the "failed to lookup address information: " prefix that std
/// puts before it.
fn system_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn families_are_interleaved_and_filtered() {
        let all = ips(&["::1", "fe80::1", "127.0.0.1", "10.0.0.1"]);
        assert_eq!(
            order(&all, IpProtocol::Auto),
            ips(&["::1", "127.0.0.1", "fe80::1", "10.0.0.1"])
        );
        assert_eq!(
            order(&all, IpProtocol::Ip4),
            ips(&["127.0.0.1", "10.0.0.1"])
        );
        assert_eq!(order(&all, IpProtocol::Ip6), ips(&["::1", "fe80::1"]));
        let v4first = ips(&["127.0.0.1", "::1", "::1"]);
        assert_eq!(
            order(&v4first, IpProtocol::Auto),
            ips(&["127.0.0.1", "::1"])
        );
        assert!(order(&ips(&["127.0.0.1"]), IpProtocol::Ip6).is_empty());
    }

    fn hosts_only() -> Arc<Resolver> {
        let hosts = conf::parse_hosts("10.9.9.9 Box.Example\n::2 v6only.example\n");
        // A server nobody listens on: any query would fail, so answers below come from the
        // hosts file, RFC 6761 or the literal itself.
        let resolv = ResolvConf {
            nameservers: vec!["127.0.0.1:9".parse().unwrap()],
            ..ResolvConf::default()
        };
        Arc::new(Resolver::builtin(resolv, hosts, false, 4))
    }

    #[tokio::test]
    async fn the_lookups_still_running_stop_when_their_round_is_dropped() {
        // A server that never answers: a lookup would wait its 5 s.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let resolv = ResolvConf {
            nameservers: vec![silent.local_addr().unwrap()],
            attempts: 1,
            ..ResolvConf::default()
        };
        let resolver = Arc::new(Resolver::builtin(resolv, conf::parse_hosts(""), false, 4));
        let round = resolver.round();
        let host = Host::Name("quiet.example".into());
        // The probe gives up; the lookup goes on for the round's other probes of the name,
        // holding a query slot for A and one for AAAA.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            round.resolve(&host, IpProtocol::Auto),
        )
        .await;
        assert!(gave_up.is_err());
        assert_eq!(
            resolver.slots.available_permits(),
            2,
            "two of four slots held"
        );
        drop(round);
        let freed = async {
            while resolver.slots.available_permits() < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(1), freed)
            .await
            .expect("the lookup stopped with its round and gave its slots back");
    }

    #[tokio::test]
    async fn literals_hosts_and_special_names_need_no_query() {
        let r = hosts_only().round();
        let a = r
            .resolve(&Host::Ip("127.0.0.1".parse().unwrap()), IpProtocol::Auto)
            .await;
        assert_eq!(&*a.result.unwrap(), ips(&["127.0.0.1"]));
        let a = r
            .resolve(&Host::Ip("127.0.0.1".parse().unwrap()), IpProtocol::Ip6)
            .await;
        assert!(matches!(
            a.result,
            Err(DnsFailure::NoAddress { family: "AAAA", .. })
        ));
        let a = r
            .resolve(&Host::Name("box.example".into()), IpProtocol::Auto)
            .await;
        assert_eq!(&*a.result.unwrap(), ips(&["10.9.9.9"]));
        let a = r
            .resolve(&Host::Name("v6only.example".into()), IpProtocol::Ip4)
            .await;
        assert_eq!(
            a.result.unwrap_err().to_string(),
            "v6only.example: no A record"
        );
        let a = r
            .resolve(&Host::Name("localhost".into()), IpProtocol::Auto)
            .await;
        assert_eq!(&*a.result.unwrap(), ips(&["::1", "127.0.0.1"]));
        let a = r
            .resolve(&Host::Name("web.localhost".into()), IpProtocol::Ip4)
            .await;
        assert_eq!(&*a.result.unwrap(), ips(&["127.0.0.1"]));
        let a = r
            .resolve(&Host::Name("nothing.invalid".into()), IpProtocol::Auto)
            .await;
        assert_eq!(
            a.result.unwrap_err(),
            DnsFailure::NxDomain("nothing.invalid".into())
        );
        assert_eq!(a.took, Duration::ZERO);
    }

    #[test]
    fn search_candidates_follow_ndots() {
        let search = ["corp.test".to_owned(), "lab.test".to_owned()];
        assert_eq!(
            candidates("svc", &search, 1),
            ["svc.corp.test", "svc.lab.test", "svc"]
        );
        assert_eq!(
            candidates("a.b", &search, 1),
            ["a.b", "a.b.corp.test", "a.b.lab.test"]
        );
        assert_eq!(
            candidates("a.b", &search, 2),
            ["a.b.corp.test", "a.b.lab.test", "a.b"]
        );
        assert_eq!(candidates("abs.", &search, 5), ["abs"]);
        assert_eq!(candidates("x", &[], 1), ["x"]);
    }

    /// An answer of `rcode` with `records` in the answer section and these addresses.
    fn answered(rcode: u8, records: u16, addrs: &[&str]) -> client::Outcome {
        Ok((
            wire::Answer {
                rcode,
                truncated: false,
                addrs: ips(addrs),
                ttl: 30,
                answer_count: records,
            },
            Instant::now(),
        ))
    }

    #[test]
    fn a_candidate_is_taken_as_glibc_takes_it() {
        use client::QueryError;
        use wire::rcode::{NOERROR, NXDOMAIN, REFUSED, SERVFAIL};
        let v6 = answered(NOERROR, 1, &["::1"]);
        let v4 = answered(NOERROR, 1, &["127.0.0.1"]);
        let nodata = answered(NOERROR, 0, &[]);
        let nx = answered(NXDOMAIN, 0, &[]);
        // Either family with records takes the name, with the addresses of both.
        assert_eq!(
            verdict(&[v6.clone(), v4.clone()]),
            Verdict::Found(ips(&["::1", "127.0.0.1"]), 30)
        );
        assert_eq!(
            verdict(&[v6.clone(), nodata.clone()]),
            Verdict::Found(ips(&["::1"]), 30)
        );
        assert_eq!(
            verdict(&[nx.clone(), v4.clone()]),
            Verdict::Found(ips(&["127.0.0.1"]), 30)
        );
        // One family answered, the other's server failed: the name is taken.
        assert_eq!(
            verdict(&[Err(QueryError::NoAnswer), v4]),
            Verdict::Found(ips(&["127.0.0.1"]), 30)
        );
        // Only an alias: the name is taken, without an address (glibc stops there too).
        assert_eq!(
            verdict(&[answered(NOERROR, 1, &[]), nodata.clone()]),
            Verdict::Found(vec![], 0)
        );
        // NODATA and NXDOMAIN go on to the next candidate; SERVFAIL too.
        assert_eq!(verdict(&[nodata.clone(), nodata.clone()]), Verdict::NoData);
        assert_eq!(verdict(&[nodata, nx.clone()]), Verdict::NoData);
        assert_eq!(verdict(&[nx.clone(), nx.clone()]), Verdict::NxDomain);
        assert_eq!(
            verdict(&[Err(QueryError::Code(SERVFAIL)), nx.clone()]),
            Verdict::ServFail
        );
        // Silence or a refusal ends the search.
        assert_eq!(
            verdict(&[nx.clone(), Err(QueryError::NoAnswer)]),
            Verdict::Stop(QueryError::NoAnswer)
        );
        assert_eq!(
            verdict(&[Err(QueryError::Code(REFUSED)), nx]),
            Verdict::Stop(QueryError::Code(REFUSED))
        );
    }

    #[test]
    fn default_concurrency_leaves_room_for_probes() {
        assert_eq!(default_concurrency(1024), 384);
        assert_eq!(default_concurrency(1 << 20), MAX_DEFAULT_CONCURRENCY);
        assert_eq!(default_concurrency(10), 2);
    }
}
