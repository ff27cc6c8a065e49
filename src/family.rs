//! The per-target metric families: their names and the labels each puts on its series after
//! the target's own (`target`, `name`, `group` and the file's labels). Below the config, so
//! that a target label may never be one of them: a label added to a family here is refused in
//! the file at once. Help texts and rendering are [`crate::metrics`]'.
//!
//! Imports nothing of this crate.

/// One per-target metric family. Every family is rendered by its own arm of an exhaustive
/// `match` (in [`crate::metrics`]), so a new family cannot be listed without being rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `probe_success`
    Success,
    /// `probe_http_status_code`
    StatusCode,
    /// `probe_duration_seconds`
    Duration,
    /// `probe_http_duration_seconds`
    PhaseDuration,
    /// `probe_dns_lookup_time_seconds`
    DnsLookupTime,
    /// `probe_http_redirects`
    Redirects,
    /// `probe_http_ssl`
    Ssl,
    /// `probe_failure_reason`
    FailureReason,
    /// `probe_ip_protocol`
    IpProtocol,
    /// `probe_ip_addr_hash`
    IpAddrHash,
    /// `probe_http_version`
    HttpVersion,
    /// `probe_http_content_length`
    ContentLength,
    /// `probe_http_uncompressed_body_length`
    UncompressedBodyLength,
    /// `probe_failed_due_to_regex`
    FailedDueToRegex,
    /// `probe_tls_version_info`
    TlsVersionInfo,
    /// `probe_ssl_earliest_cert_expiry`
    EarliestCertExpiry,
    /// `probe_ssl_leaf_cert_expiry`
    LeafCertExpiry,
    /// `probe_ssl_last_chain_expiry_timestamp_seconds`
    LastChainExpiry,
    /// `probe_ssl_last_chain_info`
    LastChainInfo,
}

impl Family {
    /// Every family, in output order.
    pub const ALL: [Family; 19] = [
        Family::Success,
        Family::StatusCode,
        Family::Duration,
        Family::PhaseDuration,
        Family::DnsLookupTime,
        Family::Redirects,
        Family::Ssl,
        Family::FailureReason,
        Family::IpProtocol,
        Family::IpAddrHash,
        Family::HttpVersion,
        Family::ContentLength,
        Family::UncompressedBodyLength,
        Family::FailedDueToRegex,
        Family::TlsVersionInfo,
        Family::EarliestCertExpiry,
        Family::LeafCertExpiry,
        Family::LastChainExpiry,
        Family::LastChainInfo,
    ];

    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Success => "probe_success",
            Family::StatusCode => "probe_http_status_code",
            Family::Duration => "probe_duration_seconds",
            Family::PhaseDuration => "probe_http_duration_seconds",
            Family::DnsLookupTime => "probe_dns_lookup_time_seconds",
            Family::Redirects => "probe_http_redirects",
            Family::Ssl => "probe_http_ssl",
            Family::FailureReason => "probe_failure_reason",
            Family::IpProtocol => "probe_ip_protocol",
            Family::IpAddrHash => "probe_ip_addr_hash",
            Family::HttpVersion => "probe_http_version",
            Family::ContentLength => "probe_http_content_length",
            Family::UncompressedBodyLength => "probe_http_uncompressed_body_length",
            Family::FailedDueToRegex => "probe_failed_due_to_regex",
            Family::TlsVersionInfo => "probe_tls_version_info",
            Family::EarliestCertExpiry => "probe_ssl_earliest_cert_expiry",
            Family::LeafCertExpiry => "probe_ssl_leaf_cert_expiry",
            Family::LastChainExpiry => "probe_ssl_last_chain_expiry_timestamp_seconds",
            Family::LastChainInfo => "probe_ssl_last_chain_info",
        }
    }

    /// The labels this family puts on a series after the target's own, in order. The
    /// renderer takes their names from here.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Family::PhaseDuration => &["phase"],
            Family::FailureReason => &["reason"],
            Family::TlsVersionInfo => &["version"],
            Family::LastChainInfo => &[
                "fingerprint_sha256",
                "issuer",
                "subject",
                "subjectalternative",
            ],
            Family::Success
            | Family::StatusCode
            | Family::Duration
            | Family::DnsLookupTime
            | Family::Redirects
            | Family::Ssl
            | Family::IpProtocol
            | Family::IpAddrHash
            | Family::HttpVersion
            | Family::ContentLength
            | Family::UncompressedBodyLength
            | Family::FailedDueToRegex
            | Family::EarliestCertExpiry
            | Family::LeafCertExpiry
            | Family::LastChainExpiry => &[],
        }
    }
}

/// The labels of a target's block that are always the exporter's: its URL and its name.
/// (`group` is the exporter's only in a file that uses groups: the config checks that.)
pub const TARGET_LABELS: &[&str] = &["target", "name"];

/// Every label name the exporter itself puts on a per-target series: a target label may be
/// none of them, or a series would carry the name twice (which Prometheus rejects, losing
/// the whole scrape).
pub fn reserved_labels() -> impl Iterator<Item = &'static str> {
    TARGET_LABELS
        .iter()
        .copied()
        .chain(Family::ALL.iter().flat_map(|f| f.labels().iter().copied()))
}
