//! One probe: one request to the target's URL, or one per hop of a redirect chain, then the
//! verdict on the final answer. Each request is a story told by `request`:
//!
//! 1. route: where it goes (direct, to a plain-HTTP proxy, or through a CONNECT tunnel), the
//!    request form and the TLS client, decided without IO (`route.rs`);
//! 2. resolve and connect: the addresses of the host connected to, then TCP with Happy
//!    Eyeballs ([`connect`]);
//! 3. tunnel: CONNECT through the proxy, for https through one (`tunnel.rs`);
//! 4. TLS: the handshake and the presented certificates' expiry (`handshake.rs`);
//! 5. exchange: write the request, read the final status line, and a redirect's `Location`
//!    (`exchange.rs`, with the parser in [`status`]);
//! 6. redirect: whether the chain goes on, and where (`redirect.rs`); with `cookies: true`
//!    the chain keeps the cookies its redirects set, and each later request sends those that
//!    match its URL (`cookies.rs`).
//!
//! Each phase returns its time and a `Result`: its facts, or the failure (a reason and its
//! detail) that ends the request. Every step runs under the probe's deadline. A target that is
//! down is a [`ProbeResult`] with a [`FailureReason`], never an `Err`.

mod body;
pub mod connect;
mod cookies;
mod exchange;
mod handshake;
mod redirect;
mod route;
mod socket;
pub mod status;
mod tunnel;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::allow::{Admission, Allow};
use crate::dns::RoundResolver;
use crate::gate::Gates;
use crate::outcome::{
    CertExpiry, ChainInfo, FailureReason, Nanos, Phases, ProbeResult, StatusLine, TlsVersion,
};
use crate::probe_url::{Host, ProbeUrl};
use crate::request::{Hop, request_body, write_head};
use crate::target::Target;
use crate::trace;
use exchange::{Answer, Want};
use route::{Security, Via};

impl ProbeResult {
    /// Record a failure.
    fn fail(&mut self, reason: FailureReason, detail: impl Into<String>) {
        self.failure = Some(reason);
        self.detail = Some(detail.into().into_boxed_str());
    }

    /// Take the facts of the last request of the probe: its answer, failure and TLS facts
    /// replace whatever is there, its phases add to those of the earlier hops. The detail of
    /// a failure after a redirect names the hop (`redirect hop 2: ...`, the first request
    /// being hop 1). Returns the request's late wake-ups (see [`Timed::late`]).
    fn settle(&mut self, facts: Facts) -> Duration {
        let Facts {
            status,
            failure,
            detail,
            phases,
            ip,
            content_length,
            tls_version,
            cert,
            chain,
            ssl,
            checked: _,
            late,
        } = facts;
        self.status = status;
        self.failure = failure;
        self.detail = match (failure, detail) {
            (Some(_), Some(d)) if self.redirects > 0 => Some(
                format!("redirect hop {}: {d}", u16::from(self.redirects) + 1).into_boxed_str(),
            ),
            (_, d) => d.map(String::into_boxed_str),
        };
        self.phases.add(&phases);
        self.ip = ip;
        self.content_length = content_length;
        self.tls_version = tls_version;
        self.cert = cert;
        self.chain = chain;
        self.ssl = ssl;
        late
    }
}

/// What one request of a probe established. Every request of a redirect chain starts from a
/// fresh one, and only the last request's are moved into the [`ProbeResult`]: nothing an
/// earlier hop found can be reported as the final answer's.
#[derive(Debug, Default)]
struct Facts {
    /// The request's final status line, once it was read.
    status: Option<StatusLine>,
    /// Why the request failed.
    failure: Option<FailureReason>,
    /// The failure's detail; without a failure, why a redirect was not followed.
    detail: Option<String>,
    /// The request's own phase times.
    phases: Phases,
    /// The address connected to, or before that the first one resolved.
    ip: Option<std::net::IpAddr>,
    /// The answer's `Content-Length`, when it came with the status line.
    content_length: Option<u64>,
    /// The negotiated TLS version, once the handshake completed.
    tls_version: Option<TlsVersion>,
    /// Expiry of the certificates the server presented, even if they were refused.
    cert: Option<CertExpiry>,
    /// The leaf's identity and the verified chain's expiry, even if the chain was refused.
    chain: Option<Arc<ChainInfo>>,
    /// Whether the request went over TLS (its handshake completed).
    ssl: bool,
    /// The late wake-ups of the request's phases (see [`Timed::late`]).
    late: Duration,
    /// For a target with checks: what was read of the answer for them.
    checked: Option<Box<body::Checked>>,
}

impl Facts {
    /// Record the request's failure.
    fn fail(&mut self, reason: FailureReason, detail: impl Into<String>) {
        self.failure = Some(reason);
        self.detail = Some(detail.into());
    }

    /// Record the address the request goes to (or is about to try) and its family.
    fn address(&mut self, ip: Option<std::net::IpAddr>) {
        if let Some(ip) = ip {
            self.ip = Some(ip);
        }
    }

    /// Record why the redirect answered was not followed (the 3xx is then the answer).
    fn not_followed(&mut self, why: impl std::fmt::Display) {
        let code = self.status.as_ref().map_or(0, |s| s.code);
        self.detail = Some(format!("{code} not followed: {why}"));
    }

    /// Add the time of a phase to the one of [`Phases`] that `time` picks, and take its facts
    /// (see [`Facts::check`]).
    fn record<T>(&mut self, time: fn(&mut Phases) -> &mut Nanos, phase: Timed<T>) -> Option<T> {
        *time(&mut self.phases) += phase.took;
        self.late += phase.late;
        self.check(phase.result)
    }

    /// The facts of a phase that succeeded; the failure of one that did not is recorded, and
    /// ends the request.
    fn check<T>(&mut self, result: Result<T, Failure>) -> Option<T> {
        match result {
            Ok(facts) => Some(facts),
            Err(Failure { reason, detail }) => {
                self.fail(reason, detail);
                None
            }
        }
    }
}

/// Why a phase failed, ending its request: the reason reported and its detail.
#[derive(Debug)]
struct Failure {
    /// The reason.
    reason: FailureReason,
    /// What happened, for people.
    detail: String,
}

impl Failure {
    /// A failure for `reason`.
    fn new(reason: FailureReason, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
        }
    }

    /// The failure of an IO error (plain or carrying a TLS error), during the TLS handshake
    /// or after it. A TLS error can quote the names of the server's certificate: its text is
    /// made printable here.
    fn io(e: &io::Error, handshake: bool) -> Failure {
        if let Some(tls_err) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Failure::new(
                crate::tls::classify(tls_err),
                crate::peer_text::printable(&tls_err.to_string()),
            );
        }
        let reason = match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => FailureReason::Reset,
            io::ErrorKind::UnexpectedEof if handshake => FailureReason::TlsHandshake,
            io::ErrorKind::UnexpectedEof => FailureReason::Closed,
            _ if handshake => FailureReason::TlsHandshake,
            _ => FailureReason::Closed,
        };
        Failure::new(reason, e.to_string())
    }
}

/// What a phase returns: its facts or its failure, and the time it took, counted either way.
#[derive(Debug)]
struct Timed<T> {
    /// The phase's time.
    took: Duration,
    /// How much later than its end (a kernel's stamp) the phase's task saw it end: a late
    /// wake-up of this process, which is no part of the target's time.
    late: Duration,
    /// Its facts, or why it failed.
    result: Result<T, Failure>,
}

impl<T> Timed<T> {
    /// Add this phase to the probe's trace, if it is traced: `what` with `ok`'s description of
    /// its facts, or its failure; and its time.
    fn note(&self, what: &str, ok: impl FnOnce(&T) -> String) {
        trace::note(|| {
            let ms = self.took.as_secs_f64() * 1000.0;
            match &self.result {
                Ok(facts) => format!("{what}: {} ({ms:.1} ms)", ok(facts)),
                Err(f) => format!("{what} failed: {}: {} ({ms:.1} ms)", f.reason, f.detail),
            }
        });
    }
}

/// What a trace shows of a request head: its request line, `Host` and `User-Agent`, and the
/// names of its other headers (their values may be secrets).
fn shown_head(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let mut out = lines.next().unwrap_or_default().to_owned();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("user-agent") {
            out.push_str(&format!("; {name}:{value}"));
        } else {
            out.push_str(&format!("; {name}: <not shown>"));
        }
    }
    crate::peer_text::printable(&out)
}

/// How the `/probe` allowlist admits `url`'s host (a target not in the file is probed only
/// when it admits the host of every request).
pub fn admission(allow: &Allow, url: &ProbeUrl) -> Admission {
    match &url.host {
        Host::Name(name) => allow.admits(name, None),
        Host::Ip(ip) => allow.admits(&ip.to_string(), Some(*ip)),
    }
}

/// The failure of a request the allowlist refuses, noted in the trace.
fn denied(why: String) -> Failure {
    trace::note(|| format!("refused: {why}"));
    Failure::new(FailureReason::AddressDenied, why)
}

/// The addresses of `url`'s host the allowlist permits a connection to (`by_name`: whether a
/// name pattern admitted the host); a failure when it permits none (or when a proxy would
/// make the connection, whose addresses it cannot check).
fn allowed(
    allow: &Allow,
    by_name: bool,
    url: &ProbeUrl,
    route: &route::Route<'_>,
    addrs: &[std::net::IpAddr],
) -> Result<Arc<[std::net::IpAddr]>, Failure> {
    if let Some(p) = route.proxy() {
        return Err(denied(format!(
            "the /probe allowlist cannot check the addresses the proxy {} connects to",
            p.authority()
        )));
    }
    let mut why = Vec::new();
    let own = crate::sys::own_addresses();
    let permitted: Arc<[std::net::IpAddr]> = addrs
        .iter()
        .copied()
        .filter(|ip| match allow.permits(as_seen(*ip, &own), by_name) {
            Ok(()) => true,
            Err(w) => {
                why.push(w);
                false
            }
        })
        .collect();
    if permitted.is_empty() {
        return Err(denied(format!(
            "{} resolves only to denied addresses: {}",
            url.host,
            why.join("; ")
        )));
    }
    Ok(permitted)
}

/// How the allowlist judges a connection to `ip`: one to an address of this host's own
/// interfaces (`own`) reaches the host itself, as a loopback address would.
fn as_seen(ip: std::net::IpAddr, own: &[std::net::IpAddr]) -> std::net::IpAddr {
    let lands = crate::allow::landing(ip);
    if lands.is_loopback() || !own.contains(&lands) {
        return ip;
    }
    match lands {
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    }
}

/// The allowlist's check on the connection itself, after connecting and before the first
/// byte is written: the address it reached (`getpeername`) must be permitted, and one whose
/// peer is its own local address reached this host. Whatever path led there (a spelling, a
/// resolver, a route), a connection that landed where the allowlist forbids is refused.
fn landed(allow: &Allow, by_name: bool, tcp: &tokio::net::TcpStream) -> Result<(), Failure> {
    let (Ok(peer), Ok(local)) = (tcp.peer_addr(), tcp.local_addr()) else {
        return Err(denied(
            "the connection's addresses could not be read: closed before sending".into(),
        ));
    };
    let (peer, local) = (peer.ip(), local.ip());
    let seen = if crate::allow::landing(peer) == crate::allow::landing(local) {
        as_seen(peer, &[crate::allow::landing(peer)])
    } else {
        peer
    };
    allow.permits(seen, by_name).map_err(|why| {
        denied(format!(
            "the connection reached {peer} (from {local}): {why}; closed before sending"
        ))
    })
}

/// `1.5 s`: a wait, for a failure's detail.
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// What a probe reaches the network through: the round's resolver, and the gates of the
/// addresses its requests connect to (shared with every other probe of the prober).
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The round's resolver.
    pub resolver: &'a RoundResolver,
    /// One gate per address connected to, under the cap per host.
    pub gates: &'a Gates<std::net::IpAddr>,
}

/// The name the first request of `target` looks up (its proxy's, when it goes through one),
/// so that a round can look it up ahead of the probe. `None` for an IP literal, and for a
/// target the `/probe` allowlist admitted: its names are looked up only once admitted.
pub fn first_lookup(target: &Target) -> Option<&Host> {
    if target.allowed.is_some() {
        return None;
    }
    let (_, host, _) = route::via(target, &target.url);
    matches!(host, Host::Name(_)).then_some(host)
}

/// Probe `target` once, giving up at `deadline`. The probe's clock starts now; its duration
/// runs to its end, less the late wake-ups of this process that the kernel's stamps show:
/// for each phase that ended on received bytes, how much later than their arrival this
/// process saw them.
pub async fn probe(target: &Target, deadline: Instant, env: &Env<'_>) -> ProbeResult {
    let start = Instant::now();
    let (mut result, late) = run(target, deadline, env).await;
    result.duration = Instant::now()
        .saturating_duration_since(start)
        .saturating_sub(late)
        .into();
    result
}

/// The body of [`probe`]: one request, or one per hop of a redirect chain; then the verdict
/// on the final answer. While a request runs, only its own facts are held: the result is made
/// from them once it is over. Returns the result and the late wake-ups of its requests.
async fn run(target: &Target, deadline: Instant, env: &Env<'_>) -> (ProbeResult, Duration) {
    if target.follow_redirects == 0 {
        let mut facts = Facts::default();
        request(
            target,
            &target.url,
            Hop::FIRST,
            deadline,
            env,
            &mut facts,
            None,
        )
        .await;
        let mut result = ProbeResult::default();
        let checked = facts.checked.take();
        let late = result.settle(facts);
        judge(target, &target.url, &mut result, checked.as_deref());
        (result, late)
    } else {
        // Boxed: the state of a chain is not carried by the probes that follow none.
        let (mut result, url, late, checked) = Box::pin(follow(target, deadline, env)).await;
        judge(target, &url, &mut result, checked.as_deref());
        (result, late)
    }
}

/// The verdict on the final answer, to `url`, when no request failed: its code, its header
/// and body checks (on what `checked` holds of it), and TLS as `fail_if_ssl` and
/// `fail_if_not_ssl` want it.
fn judge(
    target: &Target,
    url: &ProbeUrl,
    result: &mut ProbeResult,
    checked: Option<&body::Checked>,
) {
    verdict(target, url, result, checked);
    trace::note(|| match (result.failure, &result.detail) {
        (None, _) => "verdict: success".into(),
        (Some(reason), Some(detail)) => format!("verdict: failed, {reason}: {detail}"),
        (Some(reason), None) => format!("verdict: failed, {reason}"),
    });
}

/// The checks of [`judge`], in blackbox_exporter's order: the code, the header and body
/// checks, the HTTP version, TLS.
fn verdict(
    target: &Target,
    url: &ProbeUrl,
    result: &mut ProbeResult,
    checked: Option<&body::Checked>,
) {
    if let Some(checks) = &target.checks {
        result.failed_due_to_regex = Some(false);
        if checks.reads_body {
            result.body_length = checked
                .and_then(body::Checked::body_length)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
    if result.failure.is_some() {
        return;
    }
    let Some(status) = &result.status else { return };
    if !target.valid_codes.contains(status.code) {
        let mut detail = format!("status {} is not a valid status code", status.code);
        if let Some(why) = &result.detail {
            detail = format!("{detail} ({why})");
        }
        return result.fail(FailureReason::StatusCode, detail);
    }
    if let (Some(checks), Some(checked)) = (&target.checks, checked) {
        let (failure, due_to_regex) = checked.verdict(checks);
        result.failed_due_to_regex = Some(due_to_regex);
        if let Some(crate::checks::CheckFailure { reason, detail }) = failure {
            return result.fail(reason, detail);
        }
    }
    if let Some(versions) = &target.valid_http_versions
        && !versions.contains(&status.version)
    {
        let detail = format!("{} is not in valid_http_versions", status.version);
        return result.fail(FailureReason::HttpVersion, detail);
    }
    if target.fail_if_ssl && result.ssl {
        return result.fail(FailureReason::FailIfSsl, "the final request went over TLS");
    }
    if target.fail_if_not_ssl && !result.ssl {
        let detail = format!("the final request, to {}, did not go over TLS", url.raw);
        result.fail(FailureReason::FailIfNotSsl, detail);
    }
}

/// The requests of a redirect chain, up to `follow_redirects` hops: returns the result (a
/// failure, `redirect_limit` among them, is in it), the URL of the final request, the late
/// wake-ups of the requests and what the final request read for the target's checks. With
/// `cookies`, the chain's cookie jar lives here, for this probe only.
async fn follow(
    target: &Target,
    deadline: Instant,
    env: &Env<'_>,
) -> (ProbeResult, ProbeUrl, Duration, Option<Box<body::Checked>>) {
    let mut result = ProbeResult::default();
    let mut late = Duration::ZERO;
    let mut checked;
    let mut url = target.url.clone();
    let mut hop = Hop::FIRST;
    let mut visited: Vec<ProbeUrl> = Vec::new();
    let mut jar = target.cookies.then(cookies::Jar::default);
    loop {
        let mut facts = Facts::default();
        let location = request(target, &url, hop, deadline, env, &mut facts, jar.as_mut()).await;
        let code = facts.status.as_ref().map_or(0, |s| s.code);
        let next = location.and_then(|location| match redirect::resolve(&url, &location) {
            Ok(next) => Some(next),
            Err(why) => {
                facts.not_followed(why);
                None
            }
        });
        checked = facts.checked.take();
        late += result.settle(facts);
        let Some(next) = next else { break };
        visited.push(url.clone());
        let chain = (&target.url, target.follow_redirects);
        match redirect::next_hop(chain, &visited, result.redirects, hop, code, &next) {
            Ok(next_hop) => {
                trace::note(|| format!("redirect {code}: following to {}", next.raw));
                result.redirects += 1;
                hop = next_hop;
                url = next;
            }
            Err(Failure { reason, detail }) => {
                result.fail(reason, detail);
                break;
            }
        }
    }
    (result, url, late, checked)
}

/// One request of a probe to `url`, made as `hop`: route, resolve, connect (to the proxy if
/// the route goes through one), tunnel, TLS, exchange. Each phase records what it established
/// in `facts`, which the caller made fresh for this request, and a failure ends the request;
/// returns the `Location` of a redirect to follow. With a `jar` (a chain that keeps cookies),
/// the request sends the cookies of the jar that match `url`, and the jar takes those a
/// redirect answered sets.
async fn request(
    target: &Target,
    url: &ProbeUrl,
    hop: Hop,
    deadline: Instant,
    env: &Env<'_>,
    facts: &mut Facts,
    jar: Option<&mut cookies::Jar>,
) -> Option<String> {
    let route = route::route(target, url);
    // For a target not in the file, its host must be admitted; `by_name` says whether a
    // name pattern did it, which the checks of its addresses and its socket need.
    let by_name = match target.allowed.as_deref().map(|allow| admission(allow, url)) {
        Some(Admission::Refused(why)) => {
            let Failure { reason, detail } = denied(why);
            facts.fail(reason, detail);
            return None;
        }
        Some(Admission::Admitted { by_name, .. }) => by_name,
        None => false,
    };
    trace::note(|| match route.via {
        Via::Direct => format!(
            "request to {}: direct to {}:{}",
            url.raw, route.host, route.port
        ),
        Via::Proxy(p) => format!(
            "request to {}: through the proxy {}",
            url.raw,
            p.authority()
        ),
        Via::Tunnel(p) => format!(
            "request to {}: tunnel through the proxy {}",
            url.raw,
            p.authority()
        ),
    });
    // Each phase's outcome in a block of its own: a value whose scope spans a later await
    // takes room in the probe's future, even once it has been moved.
    let mut addrs = {
        let resolved = connect::resolve(&route, target.ip_protocol, deadline, env.resolver).await;
        resolved.note("resolve", |a| {
            let list: Vec<String> = a.iter().map(ToString::to_string).collect();
            format!("{} is {}", route.host, list.join(", "))
        });
        facts.record(|p| &mut p.resolve, resolved)?
    };
    if let Some(allow) = &target.allowed {
        addrs = facts.check(allowed(allow, by_name, url, &route, &addrs))?;
    }
    // Known from here on, also when connecting fails (as blackbox_exporter reports them).
    facts.address(addrs.first().copied());
    // The permit holds this request's place at the address's gate until the request ends.
    let connect::Connected {
        tcp,
        ip,
        permit: _permit,
    } = {
        let opened = connect::open(&route, addrs, target.source_ip, deadline, env.gates).await;
        opened.note("connect", |c| match c.ip {
            Some(ip) => format!("connected to {}", std::net::SocketAddr::new(ip, route.port)),
            None => "connected".into(),
        });
        facts.record(|p| &mut p.connect, opened)?
    };
    facts.address(ip);
    if let Some(allow) = &target.allowed {
        facts.check(landed(allow, by_name, tcp.tcp()))?;
    }
    let tcp = match route.via {
        Via::Tunnel(proxy) => {
            let tunnel = tunnel::open(tcp, proxy, url, deadline).await;
            tunnel.note("CONNECT", |_| "the tunnel is open".into());
            facts.record(|p| &mut p.proxy, tunnel)?
        }
        Via::Direct | Via::Proxy(_) => tcp,
    };

    let head = next_head(target, url, route.form, hop, jar.as_deref());
    trace::note(|| format!("send: {}", shown_head(&head)));
    let request = (head, request_body(&target.spec, hop));
    let want = match (target.follow_redirects, &jar) {
        (0, _) => Want::Status,
        (_, None) => Want::Location,
        (_, Some(_)) => Want::Cookies,
    };
    let exchanged = match route.security {
        // A request written to a plain-HTTP proxy: a stall is the proxy's.
        Security::Plain => {
            let checks = target.checks.as_deref();
            exchange::exchange(tcp, request, want, checks, route.proxy(), deadline).await
        }
        Security::NoClient => {
            facts.fail(
                FailureReason::TlsHandshake,
                format!("no TLS client for {}", url.host),
            );
            return None;
        }
        // Boxed: the TLS state is large, and plain probes should not carry its size.
        Security::Tls {
            config,
            server_name,
        } => {
            let name = server_name.into_owned();
            let ask = (want, target.checks.as_deref());
            Box::pin(secured(tcp, config, name, request, ask, deadline, facts)).await?
        }
    };
    exchanged.note("answer", |a| match a.content_length {
        Some(n) => format!("{} (Content-Length {n})", a.status),
        None => a.status.to_string(),
    });
    let Answer {
        status,
        location,
        content_length,
        set_cookies,
        checked,
    } = facts.record(|p| &mut p.processing, exchanged)?;
    facts.checked = checked;
    if let Some(jar) = jar
        && !set_cookies.is_empty()
    {
        keep_cookies(jar, url, &set_cookies);
    }
    facts.status = Some(status);
    facts.content_length = content_length;
    location.unwrap_or_else(|why| {
        facts.not_followed(why);
        None
    })
}

/// The head of a request to `url`, made as `hop`: with the cookies of `jar` that match `url`,
/// if any. It is written into a buffer large enough to read the answer's status line into
/// afterwards, so that a plain probe makes one buffer for both.
fn next_head(
    target: &Target,
    url: &ProbeUrl,
    form: crate::request::RequestForm<'_>,
    hop: Hop,
    jar: Option<&cookies::Jar>,
) -> Vec<u8> {
    let cookies = jar.and_then(|j| j.header(url));
    if let Some((_, names)) = &cookies {
        trace::note(|| {
            format!(
                "cookies sent: {}",
                crate::peer_text::printable(&names.join(", "))
            )
        });
    }
    let value = cookies.as_ref().map(|(v, _)| v.as_str());
    let mut head = String::with_capacity(exchange::INITIAL_READ);
    write_head(&mut head, url, &target.spec, form, hop, value);
    head.into_bytes()
}

/// Put the `Set-Cookie` values a redirect answered to a request for `url` in `jar`; the trace
/// names the cookies kept, deleted and refused (never their values).
fn keep_cookies(jar: &mut cookies::Jar, url: &ProbeUrl, set_cookies: &[Vec<u8>]) {
    // A clock before 1970 makes every Expires date a future one: nothing is deleted by it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let stored: Vec<cookies::Stored> = set_cookies
        .iter()
        .map(|value| jar.store(url, value, now))
        .collect();
    trace::note(|| {
        let said: Vec<String> = stored
            .iter()
            .map(|s| match s {
                cookies::Stored::Kept(name) => format!("kept {name}"),
                cookies::Stored::Deleted(name) => format!("deleted {name}"),
                cookies::Stored::Refused(name, why) => format!("refused {name} ({why})"),
            })
            .collect();
        format!(
            "cookies set: {}",
            crate::peer_text::printable(&said.join(", "))
        )
    });
}

/// The TLS half of an https request: the handshake over `tcp` (its facts go into `facts`),
/// then the exchange through it; `None` when the handshake failed.
async fn secured(
    tcp: socket::Socket,
    config: &Arc<rustls::ClientConfig>,
    server_name: rustls_pki_types::ServerName<'static>,
    request: (Vec<u8>, &[u8]),
    (want, checks): (Want, Option<&crate::checks::Checks>),
    deadline: Instant,
    facts: &mut Facts,
) -> Option<Timed<Answer>> {
    let name = format!("{server_name:?}");
    // The handshake's records must not wait for an ACK of the ones before them.
    let _ = tcp.tcp().set_nodelay(true);
    let handshake::Handshake { presented, secured } =
        handshake::handshake(tcp, config, server_name, deadline).await;
    let cert = presented.as_ref().map(|p| p.expiry);
    secured.note("TLS", |s| {
        let version = s.version.map_or("TLS", |v| v.as_str());
        match cert {
            Some(c) => format!(
                "{version} with {name}, leaf certificate valid until unix {}, chain until {}",
                c.leaf, c.earliest
            ),
            None => format!("{version} with {name}"),
        }
    });
    if let Some(crate::tls::Presented { expiry, chain }) = presented {
        facts.cert = Some(expiry);
        facts.chain = Some(chain);
    }
    let handshake::Secured { stream, version } = facts.record(|p| &mut p.tls, secured)?;
    facts.ssl = true;
    facts.tls_version = version;
    Some(exchange::exchange(stream, request, want, checks, None, deadline).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn taking a target, a deadline and a resolver returns.
    fn future_size<'a, R>(_: impl Fn(&'a Target, Instant, &'a Env<'a>) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn the_probe_future_stays_small() {
        // Every probe running holds one (at most the concurrency bound, 4,096 by default).
        // 1,168 bytes (1,136 in release) was its size with rustc 1.95 before the phases were
        // split apart; a redirect chain and the TLS state are boxed so that plain probes do
        // not carry them. The place at the address's gate (and the Happy Eyeballs attempts
        // that each hold one) added 184 bytes in release: 1,320.
        let size = future_size(probe);
        assert!(size <= 1352, "the probe future is {size} bytes");
    }
    #[tokio::test]
    async fn a_connection_that_landed_on_this_host_is_refused_before_sending() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        // Admitted by name, and by every network but loopback's: the socket decides.
        let wide = Allow::new(&["*.example".into(), "0.0.0.0/0".into()], &[]).unwrap();
        let f = landed(&wide, true, &tcp).unwrap_err();
        assert_eq!(f.reason, FailureReason::AddressDenied);
        assert!(f.detail.contains("reached 127.0.0.1"), "{}", f.detail);
        let lo = Allow::new(&["127.0.0.0/8".into()], &[]).unwrap();
        assert!(landed(&lo, false, &tcp).is_ok());
        assert_eq!(
            as_seen(
                "198.18.0.1".parse().unwrap(),
                &["198.18.0.1".parse().unwrap()]
            ),
            "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );
    }
}
