//! Metric names and help texts, rendering a round into the text exposition format, and the
//! exporter's own metrics.
//!
//! Probe metrics are rendered straight from a round's results with each target's label block
//! built at load, once per round, and shared by every scrape that reads that round. A target
//! removed from the config is simply not in the next round, so it leaves no series behind.
//! The exporter's own metrics live in a [`prometheus::Registry`] owned by [`ExporterMetrics`].

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus::{Encoder, Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::outcome::ProbeResult;
use crate::target::Target;

pub use crate::family::Family;

impl Family {
    /// The help text.
    pub fn help(self) -> &'static str {
        match self {
            Family::Success => {
                "Whether the probe succeeded: a valid status line with a valid code."
            }
            Family::StatusCode => {
                "Status code of the final response; 0 when no valid status line arrived."
            }
            Family::Duration => {
                "Duration of the probe from its start (after it left the queue) to its end."
            }
            Family::PhaseDuration => {
                "Duration of each phase of the probe, summed over its redirects: resolve, connect, proxy (targets with a proxy only), tls, processing."
            }
            Family::DnsLookupTime => {
                "Time spent resolving the host name, summed over redirects (blackbox_exporter's name; 0 for IP literals)."
            }
            Family::Redirects => "Redirects the probe followed.",
            Family::Ssl => "Whether the final request went over TLS: 1 or 0.",
            Family::FailureReason => {
                "Why the probe failed: 1 on the series of its reason, only for failed probes."
            }
            Family::IpProtocol => "Address family the probe connected with: 4 or 6.",
            Family::IpAddrHash => {
                "FNV-1a (32 bits) of the address probed, as blackbox_exporter computes it: it changes when the address does."
            }
            Family::HttpVersion => "HTTP version of the status line: 1 or 1.1.",
            Family::ContentLength => {
                "Content-Length of the final answer, when it came with the status line."
            }
            Family::UncompressedBodyLength => {
                "Bytes of the final answer's body read, decoded (at most body_size_limit); only for targets that read the body."
            }
            Family::FailedDueToRegex => {
                "Whether a header or body check failed (a body that could not be read whole fails its body checks): 1 or 0; only for targets with a header or body key."
            }
            Family::TlsVersionInfo => "Negotiated TLS version, as the version label; value 1.",
            Family::EarliestCertExpiry => {
                "Earliest NotAfter in the certificate chain the server presented, unix seconds; reported also when verification failed."
            }
            Family::LeafCertExpiry => {
                "NotAfter of the server's leaf certificate, unix seconds; reported also when verification failed."
            }
            Family::LastChainExpiry => {
                "Earliest NotAfter of the verified chain, the ca_file's CA included, unix seconds; only when verification succeeded."
            }
            Family::LastChainInfo => {
                "The server's leaf certificate: SHA-256 fingerprint, subject, issuer and DNS names as labels; value 1; reported also when verification failed."
            }
        }
    }
}

/// The phases of `probe_http_duration_seconds`; `proxy` only for targets with a proxy.
pub const PHASES: [&str; 5] = ["resolve", "connect", "proxy", "tls", "processing"];

/// `# HELP` and `# TYPE` lines of a family.
fn family_header(out: &mut String, name: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
}

/// Targets rendered per step of a [`ChunkedRender`].
const CHUNK_TARGETS: usize = 256;

/// A chunk is handed out once it holds this many bytes.
const CHUNK_BYTES: usize = 64 * 1024;

/// Renders a round's probe metrics a chunk at a time, so a scrape of 100,000 targets never
/// holds the whole exposition in memory; each chunk is built from the label blocks made at load.
#[derive(Debug)]
pub struct ChunkedRender {
    /// The round being rendered.
    round: std::sync::Arc<crate::round::Round>,
    /// Index into [`Family::ALL`] of the family being rendered.
    family: usize,
    /// The next target of that family.
    next: usize,
}

impl ChunkedRender {
    /// Start rendering `round`.
    pub fn new(round: std::sync::Arc<crate::round::Round>) -> Self {
        ChunkedRender {
            round,
            family: 0,
            next: 0,
        }
    }

    /// The next chunk of the exposition, or `None` when all is rendered.
    pub fn next_chunk(&mut self) -> Option<bytes::Bytes> {
        let targets = &self.round.config.targets;
        let results = &self.round.results;
        if self.family >= Family::ALL.len() {
            return None;
        }
        let mut out = String::with_capacity(CHUNK_BYTES + 16 * 1024);
        while let Some(&family) = Family::ALL.get(self.family)
            && out.len() < CHUNK_BYTES
        {
            if self.next == 0 {
                family_header(&mut out, family.name(), family.help());
            }
            let end = (self.next + CHUNK_TARGETS).min(targets.len());
            render_family(
                &mut out,
                family,
                &targets[self.next..end],
                &results[self.next..end],
            );
            self.next = end;
            if self.next >= targets.len() {
                self.family += 1;
                self.next = 0;
            }
        }
        Some(bytes::Bytes::from(out))
    }
}

/// The samples of `family` for `targets` (no header).
fn render_family(
    out: &mut String,
    family: Family,
    targets: &[Arc<Target>],
    results: &[ProbeResult],
) {
    let pairs = || targets.iter().zip(results);
    let name = family.name();
    match family {
        Family::Success => {
            for (t, r) in pairs() {
                line(out, name, &t.label_block, u8::from(r.success()));
            }
        }
        Family::StatusCode => {
            for (t, r) in pairs() {
                let code = r.status.as_ref().map_or(0, |s| s.code);
                line(out, name, &t.label_block, code);
            }
        }
        Family::Duration => {
            for (t, r) in pairs() {
                line(out, name, &t.label_block, r.duration.as_secs_f64());
            }
        }
        Family::PhaseDuration => {
            for (t, r) in pairs() {
                let p = &r.phases;
                for (phase, d) in
                    PHASES
                        .iter()
                        .zip([p.resolve, p.connect, p.proxy, p.tls, p.processing])
                {
                    if *phase != "proxy" || t.proxy.is_some() {
                        extra(
                            out,
                            name,
                            &t.label_block,
                            family.labels()[0],
                            phase,
                            d.as_secs_f64(),
                        );
                    }
                }
            }
        }
        Family::DnsLookupTime => {
            for (t, r) in pairs() {
                line(out, name, &t.label_block, r.phases.resolve.as_secs_f64());
            }
        }
        Family::Redirects => {
            for (t, r) in pairs() {
                line(out, name, &t.label_block, r.redirects);
            }
        }
        Family::Ssl => {
            for (t, r) in pairs() {
                line(out, name, &t.label_block, u8::from(r.ssl));
            }
        }
        Family::FailureReason => {
            for (t, r) in pairs() {
                if let Some(reason) = r.failure {
                    extra(
                        out,
                        name,
                        &t.label_block,
                        family.labels()[0],
                        reason.as_str(),
                        1,
                    );
                }
            }
        }
        Family::IpProtocol => {
            for (t, r) in pairs() {
                if let Some(v) = r.ip_protocol() {
                    line(out, name, &t.label_block, v);
                }
            }
        }
        Family::IpAddrHash => {
            for (t, r) in pairs() {
                if let Some(ip) = r.ip {
                    line(out, name, &t.label_block, ip_hash(ip));
                }
            }
        }
        Family::ContentLength => {
            for (t, r) in pairs() {
                if let Some(n) = r.content_length {
                    line(out, name, &t.label_block, n);
                }
            }
        }
        Family::UncompressedBodyLength => {
            for (t, r) in pairs() {
                if let Some(n) = r.body_length {
                    line(out, name, &t.label_block, n);
                }
            }
        }
        Family::FailedDueToRegex => {
            for (t, r) in pairs() {
                if t.checks.is_some() {
                    let failed = r.failed_due_to_regex.unwrap_or(false);
                    line(out, name, &t.label_block, u8::from(failed));
                }
            }
        }
        Family::HttpVersion => {
            for (t, r) in pairs() {
                if let Some(s) = &r.status {
                    let v = match s.version {
                        crate::outcome::HttpVersion::Http10 => "1",
                        crate::outcome::HttpVersion::Http11 => "1.1",
                    };
                    line(out, name, &t.label_block, v);
                }
            }
        }
        Family::TlsVersionInfo => {
            for (t, r) in pairs() {
                if let Some(v) = r.tls_version {
                    extra(out, name, &t.label_block, family.labels()[0], v.as_str(), 1);
                }
            }
        }
        Family::EarliestCertExpiry => {
            for (t, r) in pairs() {
                if let Some(c) = r.cert {
                    line(out, name, &t.label_block, c.earliest);
                }
            }
        }
        Family::LeafCertExpiry => {
            for (t, r) in pairs() {
                if let Some(c) = r.cert {
                    line(out, name, &t.label_block, c.leaf);
                }
            }
        }
        Family::LastChainExpiry => {
            for (t, r) in pairs() {
                if let Some(expiry) = r.chain.as_ref().and_then(|c| c.last_chain_expiry) {
                    line(out, name, &t.label_block, expiry);
                }
            }
        }
        Family::LastChainInfo => {
            for (t, r) in pairs() {
                if let Some(c) = &r.chain {
                    chain_info(out, name, &t.label_block, c);
                }
            }
        }
    }
}

/// FNV-1a, 32 bits, of an address's bytes: 4 for IPv4 (also IPv4-mapped IPv6), else 16, as
/// blackbox_exporter's `probe_ip_addr_hash`.
pub fn ip_hash(ip: std::net::IpAddr) -> u32 {
    match ip {
        std::net::IpAddr::V4(a) => fnv1a_32(&a.octets()),
        std::net::IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => fnv1a_32(&v4.octets()),
            None => fnv1a_32(&a.octets()),
        },
    }
}

/// FNV-1a, 32 bits.
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `probe_ssl_last_chain_info{labels,fingerprint_sha256=…,issuer=…,subject=…,subjectalternative=…} 1`,
/// the certificate's names (peer text, already printable) escaped as label values.
fn chain_info(out: &mut String, name: &str, labels: &str, chain: &crate::outcome::ChainInfo) {
    use crate::target::escape_label_value;
    let values = [
        chain.fingerprint_hex(),
        chain.issuer().to_owned(),
        chain.subject().to_owned(),
        chain.subject_alternative().to_owned(),
    ];
    let _ = write!(out, "{name}{{{labels}");
    for (key, value) in Family::LastChainInfo.labels().iter().zip(&values) {
        let _ = write!(out, ",{key}=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    out.push_str("} 1\n");
}

/// `name{labels} value`.
fn line(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

/// `name{labels,key="value"} v`; `value` must need no escaping (it is one of ours).
fn extra(
    out: &mut String,
    name: &str,
    labels: &str,
    key: &str,
    value: &str,
    v: impl std::fmt::Display,
) {
    let _ = writeln!(out, "{name}{{{labels},{key}=\"{value}\"}} {v}");
}

/// The exporter's own metrics, in a registry this struct owns.
#[derive(Debug, Clone)]
pub struct ExporterMetrics {
    /// Everything below, plus process metrics.
    pub registry: Registry,
    /// Targets this instance probes (after sharding).
    pub targets: IntGauge,
    /// Duration of the last completed round.
    pub round_duration: Gauge,
    /// Longest time a probe of the last round waited for a free slot.
    pub round_queue: Gauge,
    /// Probes of the last round that never started before the scrape deadline.
    pub round_not_started: IntGauge,
    /// Rounds run since start.
    pub rounds: IntCounter,
    /// Rounds ended because every scrape waiting for them went away.
    pub rounds_abandoned: IntCounter,
    /// Scrapes answered since start (several may share one round).
    pub scrapes: IntCounter,
    /// Whether the last config reload succeeded.
    pub reload_ok: IntGauge,
    /// When the config was last loaded successfully.
    pub reload_success_time: Gauge,
    /// [`Self::reload_ok`] under blackbox_exporter's name, so that alerts written for it fire.
    pub blackbox_reload_ok: IntGauge,
    /// [`Self::reload_success_time`] under blackbox_exporter's name.
    pub blackbox_reload_success_time: Gauge,
    /// The effective probe concurrency bound.
    pub concurrency: IntGauge,
}

/// Namespace of the exporter's own metrics.
pub const NAMESPACE: &str = "http_status_exporter";

impl ExporterMetrics {
    /// Register every exporter metric (and process metrics, on Linux) in a new registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
        let build = IntGaugeVec::new(
            opts("build_info", "Build information; value 1.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
            &[],
        )?;
        build.with_label_values(&[] as &[&str]).set(1);
        let m = ExporterMetrics {
            targets: IntGauge::with_opts(opts(
                "targets",
                "Targets probed by this instance (after sharding).",
            ))?,
            round_duration: Gauge::with_opts(opts(
                "round_duration_seconds",
                "Duration of the last completed probe round.",
            ))?,
            round_queue: Gauge::with_opts(opts(
                "round_queue_seconds",
                "Longest time a probe of the last round waited for a free slot before it started.",
            ))?,
            round_not_started: IntGauge::with_opts(opts(
                "round_probes_not_started",
                "Probes of the last round that never started before the scrape deadline.",
            ))?,
            rounds: IntCounter::with_opts(opts("rounds_total", "Probe rounds run."))?,
            rounds_abandoned: IntCounter::with_opts(opts(
                "rounds_abandoned_total",
                "Probe rounds ended early because every scrape waiting for them went away.",
            ))?,
            scrapes: IntCounter::with_opts(opts("scrapes_total", "Scrapes of /metrics answered."))?,
            reload_ok: IntGauge::with_opts(opts(
                "config_last_reload_successful",
                "Whether the last config load or reload succeeded.",
            ))?,
            reload_success_time: Gauge::with_opts(opts(
                "config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load or reload.",
            ))?,
            blackbox_reload_ok: IntGauge::with_opts(Opts::new(
                "blackbox_exporter_config_last_reload_successful",
                "Whether the last config load or reload succeeded (blackbox_exporter's name).",
            ))?,
            blackbox_reload_success_time: Gauge::with_opts(Opts::new(
                "blackbox_exporter_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load or reload (blackbox_exporter's name).",
            ))?,
            concurrency: IntGauge::with_opts(opts(
                "probe_concurrency",
                "Most probes that run at once.",
            ))?,
            registry,
        };
        m.registry.register(Box::new(build))?;
        for c in [
            Box::new(m.targets.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.round_duration.clone()),
            Box::new(m.round_queue.clone()),
            Box::new(m.round_not_started.clone()),
            Box::new(m.rounds.clone()),
            Box::new(m.rounds_abandoned.clone()),
            Box::new(m.scrapes.clone()),
            Box::new(m.reload_ok.clone()),
            Box::new(m.reload_success_time.clone()),
            Box::new(m.blackbox_reload_ok.clone()),
            Box::new(m.blackbox_reload_success_time.clone()),
            Box::new(m.concurrency.clone()),
        ] {
            m.registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(m)
    }

    /// Record a config load or reload: whether it succeeded, and when if it did, under our
    /// names and blackbox_exporter's.
    pub fn record_load(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        self.blackbox_reload_ok.set(i64::from(ok));
        if ok {
            let now = crate::sys::unix_now();
            self.reload_success_time.set(now);
            self.blackbox_reload_success_time.set(now);
        }
    }

    /// The registry in the text exposition format.
    pub fn render(&self, out: &mut Vec<u8>) -> Result<(), prometheus::Error> {
        TextEncoder::new().encode(&self.registry.gather(), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{FailureReason, Phases};
    use crate::outcome::{HttpVersion, StatusLine};
    use std::time::Duration;

    /// A round of `targets` with `results`, rendered whole through [`ChunkedRender`].
    fn render_round(targets: &[Arc<Target>], results: &[ProbeResult]) -> String {
        let mut config =
            crate::config::parse(std::path::Path::new("t.yml"), "targets: []").unwrap();
        config.targets = targets.to_vec();
        let round = std::sync::Arc::new(crate::round::Round::of(
            std::sync::Arc::new(config),
            results.to_vec(),
            None,
        ));
        let mut r = ChunkedRender::new(round);
        let mut joined = Vec::new();
        while let Some(c) = r.next_chunk() {
            joined.extend_from_slice(&c);
        }
        String::from_utf8(joined).unwrap()
    }

    fn target(url: &str) -> Arc<Target> {
        crate::config::parse(
            std::path::Path::new("t.yml"),
            &format!("targets: ['{url}']"),
        )
        .unwrap()
        .targets
        .remove(0)
    }

    #[test]
    fn a_round_renders_every_family_in_order() {
        let targets = [
            target("http://127.0.0.1:1/ok"),
            target("http://127.0.0.1:2/down"),
        ];
        let ok = ProbeResult {
            status: Some(StatusLine {
                version: HttpVersion::Http11,
                code: 200,
                reason: crate::outcome::Reason::new(200, "OK"),
            }),
            duration: Duration::from_millis(1500).into(),
            phases: Phases {
                connect: Duration::from_millis(500).into(),
                ..Default::default()
            },
            ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
            ..Default::default()
        };
        let down = ProbeResult {
            failure: Some(FailureReason::ConnectRefused),
            ..Default::default()
        };
        let text = render_round(&targets, &[ok, down]);
        for want in [
            "probe_success{target=\"http://127.0.0.1:1/ok\"} 1\n",
            "probe_success{target=\"http://127.0.0.1:2/down\"} 0\n",
            "probe_http_status_code{target=\"http://127.0.0.1:1/ok\"} 200\n",
            "probe_http_status_code{target=\"http://127.0.0.1:2/down\"} 0\n",
            "probe_duration_seconds{target=\"http://127.0.0.1:1/ok\"} 1.5\n",
            "probe_http_duration_seconds{target=\"http://127.0.0.1:1/ok\",phase=\"connect\"} 0.5\n",
            "probe_failure_reason{target=\"http://127.0.0.1:2/down\",reason=\"connect_refused\"} 1\n",
            "probe_ip_protocol{target=\"http://127.0.0.1:1/ok\"} 4\n",
            "probe_http_version{target=\"http://127.0.0.1:1/ok\"} 1.1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("reason=\"connect_refused\"} 0"));
        assert!(!text.contains("probe_failure_reason{target=\"http://127.0.0.1:1/ok\""));
        // Families appear once each, in order.
        let helps: Vec<_> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        assert_eq!(helps.len(), Family::ALL.len());
    }

    #[test]
    fn the_last_chain_families_render_the_leaf_and_the_verified_expiry() {
        let targets = [
            target("https://127.0.0.1:1/verified"),
            target("https://127.0.0.1:2/refused"),
        ];
        let subject = "CN=a.test,O=Say \"hi\"\\, Inc";
        let issuer = "CN=CA";
        let chain = |last_chain_expiry| {
            Some(Arc::new(crate::outcome::ChainInfo {
                fingerprint_sha256: [0xab; 32],
                names: format!("{subject}{issuer}a.test,b.test"),
                subject_end: subject.len(),
                issuer_end: subject.len() + issuer.len(),
                last_chain_expiry,
            }))
        };
        let verified = ProbeResult {
            chain: chain(Some(1_900_000_000)),
            ..Default::default()
        };
        let refused = ProbeResult {
            chain: chain(None),
            ..Default::default()
        };
        let text = render_round(&targets, &[verified, refused]);
        let fp = "ab".repeat(32);
        for url in [
            "https://127.0.0.1:1/verified",
            "https://127.0.0.1:2/refused",
        ] {
            let want = format!(
                "probe_ssl_last_chain_info{{target=\"{url}\",fingerprint_sha256=\"{fp}\",issuer=\"CN=CA\",subject=\"CN=a.test,O=Say \\\"hi\\\"\\\\, Inc\",subjectalternative=\"a.test,b.test\"}} 1\n"
            );
            assert!(text.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(text.contains(
            "probe_ssl_last_chain_expiry_timestamp_seconds{target=\"https://127.0.0.1:1/verified\"} 1900000000\n"
        ));
        assert!(!text.contains(
            "probe_ssl_last_chain_expiry_timestamp_seconds{target=\"https://127.0.0.1:2/refused\"}"
        ));
    }

    #[test]
    fn chunks_add_up_to_the_whole_rendering() {
        let mut yaml = String::from("targets:\n");
        for i in 0..1000 {
            yaml.push_str(&format!("  - http://127.0.0.1:1/{i}\n"));
        }
        let config = crate::config::parse(std::path::Path::new("t.yml"), &yaml).unwrap();
        let results: Vec<ProbeResult> = (0..1000)
            .map(|i| ProbeResult {
                failure: (i % 3 == 0).then_some(FailureReason::Timeout),
                duration: Duration::from_micros(i).into(),
                ..Default::default()
            })
            .collect();
        let whole = render_round(&config.targets, &results);
        let round = std::sync::Arc::new(crate::round::Round::of(
            std::sync::Arc::new(config),
            results,
            None,
        ));
        let mut r = ChunkedRender::new(round);
        let mut joined = Vec::new();
        let mut chunks = 0;
        while let Some(c) = r.next_chunk() {
            assert!(c.len() < CHUNK_BYTES + 64 * 1024);
            joined.extend_from_slice(&c);
            chunks += 1;
        }
        assert!(chunks > 3, "{chunks} chunks");
        assert_eq!(String::from_utf8(joined).unwrap(), whole);
    }

    #[test]
    fn ip_hashes_are_fnv1a_32_of_the_address_bytes() {
        // Published FNV-1a 32 test vectors.
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
        assert_eq!(ip_hash("1.2.3.4".parse().unwrap()), fnv1a_32(&[1, 2, 3, 4]));
        let v4 = ip_hash("127.0.0.1".parse().unwrap());
        assert_eq!(ip_hash("::ffff:127.0.0.1".parse().unwrap()), v4);
        assert_ne!(ip_hash("::1".parse().unwrap()), v4);
        assert_ne!(ip_hash("127.0.0.2".parse().unwrap()), v4);
    }

    #[test]
    fn exporter_metrics_render() {
        let m = ExporterMetrics::new().unwrap();
        m.targets.set(3);
        let mut out = Vec::new();
        m.render(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("http_status_exporter_targets 3\n"), "{text}");
        assert!(text.contains("http_status_exporter_build_info{version=\""));
    }
}
