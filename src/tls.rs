//! TLS client configuration for probes, certificate expiry and facts, and TLS failure
//! classification.
//!
//! One [`ClientConfig`] is built per distinct TLS setting at load and shared by every target
//! that uses it. The certificate verifier records the expiry of the chain the server presented
//! and its leaf's identity whether or not it trusts them, so a probe reports certificate
//! expiry even when the handshake fails because of that certificate; the expiry of the
//! verified chain (blackbox_exporter's "last chain") only when it trusted them.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::outcome::{CertExpiry, ChainInfo, FailureReason};

/// The lowest TLS version a target accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[serde(rename = "TLS12")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "TLS13")]
    Tls13,
}

impl MinVersion {
    /// The TLS versions offered and accepted with `min` as the lowest (TLS 1.2 when unset).
    pub fn versions(
        min: Option<MinVersion>,
    ) -> &'static [&'static rustls::SupportedProtocolVersion] {
        /// TLS 1.3 only.
        static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        /// TLS 1.3, then 1.2.
        static TLS12: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        match min {
            Some(MinVersion::Tls13) => &TLS13,
            Some(MinVersion::Tls12) | None => &TLS12,
        }
    }
}

/// The TLS settings that decide a client configuration; targets that share them share one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// PEM file of CA certificates replacing the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
    /// Accept any certificate (expiry is still reported).
    pub insecure_skip_verify: bool,
    /// Refuse versions below this one.
    pub min_version: Option<MinVersion>,
}

/// Why a TLS client configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} {path:?}: {reason}")]
    File {
        /// Which file: CA file, certificate file, key file.
        what: &'static str,
        /// The path as configured (relative ones resolved against the config's folder).
        path: PathBuf,
        /// The underlying error.
        reason: String,
    },
    /// A PEM file held no certificate.
    #[error("{path:?} contains no PEM certificate")]
    NoCertificate {
        /// The offending file.
        path: PathBuf,
    },
    /// Only one of cert_file and key_file was given.
    #[error("cert_file and key_file must be given together")]
    HalfClientCert,
    /// rustls refused the material (a key that does not match its certificate, say).
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

/// The crypto provider of every probe: chosen explicitly so that no other provider compiled in
/// by a dependency can be picked up by accident.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Largest PEM file read: a long chain or CA bundle is a few hundred KiB.
pub const MAX_PEM_SIZE: u64 = 4 << 20;

/// Read a PEM file: a regular file (not a FIFO or `/dev/zero`) of at most [`MAX_PEM_SIZE`].
pub fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_PEM_SIZE {
        return Err(format!("larger than {MAX_PEM_SIZE} bytes"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_SIZE + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_PEM_SIZE {
        return Err(format!("larger than {MAX_PEM_SIZE} bytes"));
    }
    Ok(bytes)
}

/// Read every certificate of a PEM file.
pub fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let pem = read_pem(path).map_err(file_err)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(CertificateDer::into_owned))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Build the client configuration of one TLS setting.
pub fn build_client_config(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let rustls_err = |e: rustls::Error| TlsError::Rustls(e.to_string());
    let mut roots = RootCertStore::empty();
    let mut anchors = Vec::new();
    match &settings.ca_file {
        Some(path) => {
            for cert in read_certs("CA file", path)? {
                if let Some(tbs) = tbs(&cert) {
                    anchors.push(Anchor {
                        subject: tbs.subject.into(),
                        not_after: tbs.not_after,
                    });
                }
                roots.add(cert).map_err(rustls_err)?;
            }
        }
        // The built-in roots carry names and keys, no validity: their expiry is unknown.
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let inner = if settings.insecure_skip_verify {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?,
        )
    };
    let verifier = Arc::new(RecordingVerifier {
        inner,
        anchors,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(MinVersion::versions(settings.min_version))
        .map_err(rustls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("certificate file", cert)?;
            let key = read_pem(key)
                .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem).map_err(|e| e.to_string()))
                .map_err(|e| TlsError::File {
                    what: "key file",
                    path: key.clone(),
                    reason: e.to_string(),
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(rustls_err)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsError::HalfClientCert),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every probe measures a full handshake, as a new visitor would see it.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The TLS server name (SNI and verification name) of an https request to `host`: the
/// configured `server_name`, else the host of a configured `Host` header (as blackbox_exporter
/// does), else the URL's host. The error names the setting at fault and says why.
pub fn server_name(
    configured: Option<&str>,
    host_header: Option<&str>,
    host: &crate::probe_url::Host,
) -> Result<ServerName<'static>, (&'static str, String)> {
    match (configured, host_header, host) {
        (Some(name), _, _) => ServerName::try_from(name.to_owned()).map_err(|e| {
            (
                "server_name",
                format!("tls_config.server_name: invalid server_name {name:?}: {e}"),
            )
        }),
        (None, Some(value), _) => {
            let name = crate::request::host_of(value);
            ServerName::try_from(name.to_owned()).map_err(|e| {
                (
                    "headers",
                    format!("headers: Host: {name:?} is not a valid TLS server name: {e}"),
                )
            })
        }
        (None, None, crate::probe_url::Host::Ip(ip)) => Ok(ServerName::IpAddress((*ip).into())),
        (None, None, crate::probe_url::Host::Name(n)) => {
            ServerName::try_from(n.clone()).map_err(|e| {
                (
                    "server_name",
                    format!("tls_config.server_name: invalid TLS server name {n:?}: {e}"),
                )
            })
        }
    }
}

/// The TLS side of one https target: a shared client configuration and the name to verify.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    /// Shared by every target with the same [`TlsSettings`].
    pub config: Arc<ClientConfig>,
    /// SNI and verification name.
    pub server_name: ServerName<'static>,
}

/// What the verifier saw of the chain a server presented.
#[derive(Debug)]
pub struct Presented {
    /// Expiry of the leaf and of the whole presented chain.
    pub expiry: CertExpiry,
    /// The leaf's identity and, when the chain was verified, its expiry.
    pub chain: Arc<ChainInfo>,
}

tokio::task_local! {
    /// Where the verifier leaves what it saw of the chain presented to the probe that is
    /// running the handshake on this task.
    pub static PRESENTED: Cell<Option<Presented>>;
}

/// Most characters kept of the subject, the issuer and the DNS names of a presented leaf
/// (peer text that becomes label values); a longer one is cut and ends in `…`.
pub const MAX_CHAIN_TEXT: usize = 4096;

/// Longest path walked from the leaf towards a trust anchor.
const MAX_PATH: usize = 8;

/// A CA of a `ca_file`: what the expiry of a chain that ends at it needs.
#[derive(Debug)]
struct Anchor {
    /// The DER of its subject Name, compared byte for byte with a certificate's issuer.
    subject: Box<[u8]>,
    /// Its NotAfter, unix seconds.
    not_after: i64,
}

/// Verifies like rustls' WebPKI verifier (or not at all, for `insecure_skip_verify`), and
/// records what it saw of the presented chain in [`PRESENTED`], whatever the verdict.
#[derive(Debug)]
struct RecordingVerifier {
    /// The real verifier; `None` skips verification.
    inner: Option<Arc<WebPkiServerVerifier>>,
    /// The CAs of the `ca_file`, for the expiry of a verified chain; empty with the built-in
    /// roots, whose expiry is unknown.
    anchors: Vec<Anchor>,
    /// Signature algorithms for handshake signatures.
    algorithms: WebPkiSupportedAlgorithms,
}

impl RecordingVerifier {
    /// Earliest NotAfter of the path from `leaf` through the presented `intermediates` to a
    /// CA of the `ca_file`, that CA included. The path is found by names (each certificate's
    /// issuer equal, in DER, to the next one's subject), as Go's verifier looks up parents;
    /// when several CAs have the name, the one that expires last counts, as the chain that
    /// expires last does in blackbox_exporter. Without a known anchor (the built-in roots)
    /// the path ends at the last presented certificate found.
    fn last_chain_expiry(&self, leaf: &Tbs<'_>, intermediates: &[CertificateDer<'_>]) -> i64 {
        let mut earliest = leaf.not_after;
        let (mut issuer, mut subject) = (leaf.issuer, leaf.subject);
        for _ in 0..MAX_PATH {
            let anchor = self
                .anchors
                .iter()
                .filter(|a| *a.subject == *issuer)
                .map(|a| a.not_after)
                .max();
            if let Some(anchor) = anchor {
                return earliest.min(anchor);
            }
            if issuer == subject {
                break;
            }
            let Some(parent) = intermediates
                .iter()
                .filter_map(|c| tbs(c))
                .find(|t| t.subject == issuer)
            else {
                break;
            };
            earliest = earliest.min(parent.not_after);
            (issuer, subject) = (parent.issuer, parent.subject);
        }
        earliest
    }
}

/// The [`ChainInfo`] of a leaf: its fingerprint, and its names made printable.
fn chain_info(leaf_der: &[u8], leaf: &Tbs<'_>, last_chain_expiry: Option<i64>) -> ChainInfo {
    use crate::peer_text::printable_within;
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf_der);
    // A SHA-256 digest is 32 bytes: the default is never used.
    let fingerprint_sha256 = <[u8; 32]>::try_from(digest.as_ref()).unwrap_or_default();
    let subject = printable_within(&der::name_string(leaf.subject), MAX_CHAIN_TEXT);
    let issuer = printable_within(&der::name_string(leaf.issuer), MAX_CHAIN_TEXT);
    let dns = printable_within(&der::dns_names(leaf.extensions), MAX_CHAIN_TEXT);
    let mut names = String::with_capacity(subject.len() + issuer.len() + dns.len());
    names.push_str(&subject);
    names.push_str(&issuer);
    names.push_str(&dns);
    ChainInfo {
        fingerprint_sha256,
        names,
        subject_end: subject.len(),
        issuer_end: subject.len() + issuer.len(),
        last_chain_expiry,
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        };
        if let Some(leaf) = tbs(end_entity) {
            // Outside a probe (no scope set) there is nowhere to record; that is fine.
            let _ = PRESENTED.try_with(|slot| {
                let earliest = intermediates
                    .iter()
                    .filter_map(|c| not_after(c))
                    .fold(leaf.not_after, i64::min);
                let verified = self.inner.is_some() && verdict.is_ok();
                let last = verified.then(|| self.last_chain_expiry(&leaf, intermediates));
                slot.set(Some(Presented {
                    expiry: CertExpiry {
                        leaf: leaf.not_after,
                        earliest,
                    },
                    chain: Arc::new(chain_info(end_entity, &leaf, last)),
                }));
            });
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Map a rustls error met during a probe to a failure reason.
pub fn classify(err: &rustls::Error) -> FailureReason {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match err {
        E::InvalidCertificate(c) => match c {
            C::Expired
            | C::NotValidYet
            | C::ExpiredContext { .. }
            | C::NotValidYetContext { .. } => FailureReason::TlsCertExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                FailureReason::TlsHostnameMismatch
            }
            _ => FailureReason::TlsCertUntrusted,
        },
        E::AlertReceived(A::ProtocolVersion) => FailureReason::TlsProtocolVersion,
        E::PeerIncompatible(_) => FailureReason::TlsProtocolVersion,
        E::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied,
        ) => FailureReason::TlsClientCert,
        E::InvalidMessage(_) => FailureReason::TlsNotTls,
        _ => FailureReason::TlsHandshake,
    }
}

/// The NotAfter of a DER certificate as unix seconds, or `None` if it cannot be read.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    tbs(cert).map(|t| t.not_after)
}

/// The fields of a certificate's TBSCertificate that are read here.
#[derive(Debug)]
struct Tbs<'a> {
    /// The issuer Name, tag and length included.
    issuer: &'a [u8],
    /// NotAfter, unix seconds.
    not_after: i64,
    /// The subject Name, tag and length included.
    subject: &'a [u8],
    /// The contents of the extensions' SEQUENCE; empty without extensions.
    extensions: &'a [u8],
}

/// Read the fields of [`Tbs`] from a DER certificate; `None` if it cannot be read.
fn tbs(cert: &[u8]) -> Option<Tbs<'_>> {
    let (tag, cert, _) = der::read(cert)?;
    if tag != der::SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der::read(cert)?;
    if tag != der::SEQUENCE {
        return None;
    }
    // version [0] EXPLICIT is optional.
    if tbs.first() == Some(&0xa0) {
        tbs = der::read(tbs)?.2;
    }
    // serialNumber, signature.
    for _ in 0..2 {
        tbs = der::read(tbs)?.2;
    }
    let (issuer, rest) = der::split_sequence(tbs)?;
    let (tag, validity, rest) = der::read(rest)?;
    if tag != der::SEQUENCE {
        return None;
    }
    let (_, _, times) = der::read(validity)?;
    let (tag, time, _) = der::read(times)?;
    let not_after = der::time(tag, time)?;
    let (subject, rest) = der::split_sequence(rest)?;
    // subjectPublicKeyInfo, then the optional unique identifiers [1] and [2], extensions [3].
    let mut rest = der::read(rest)?.2;
    let mut extensions: &[u8] = &[];
    while let Some((tag, contents, after)) = der::read(rest) {
        if tag == der::EXTENSIONS {
            if let Some((der::SEQUENCE, list, _)) = der::read(contents) {
                extensions = list;
            }
            break;
        }
        rest = after;
    }
    Some(Tbs {
        issuer,
        not_after,
        subject,
        extensions,
    })
}

/// Just enough DER to read a certificate's validity, names and DNS names, bounded by its
/// input and without panics: certificates are the peer's data.
mod der {
    use std::borrow::Cow;
    use std::fmt::Write as _;

    /// The SEQUENCE tag.
    pub const SEQUENCE: u8 = 0x30;
    /// The SET tag.
    const SET: u8 = 0x31;
    /// The OBJECT IDENTIFIER tag.
    const OID: u8 = 0x06;
    /// The OCTET STRING tag.
    const OCTET_STRING: u8 = 0x04;
    /// The extensions of a TBSCertificate: `[3] EXPLICIT`.
    pub const EXTENSIONS: u8 = 0xa3;
    /// A dNSName in GeneralNames: `[2] IMPLICIT IA5String`.
    const DNS_NAME: u8 = 0x82;
    /// The subjectAltName extension, 2.5.29.17, as the contents of its OID.
    const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];
    /// PrintableString.
    const PRINTABLE_STRING: u8 = 0x13;
    /// UTF8String.
    const UTF8_STRING: u8 = 0x0c;
    /// T61String (TeletexString): Go takes its bytes as they are.
    const T61_STRING: u8 = 0x14;
    /// IA5String.
    const IA5_STRING: u8 = 0x16;
    /// NumericString.
    const NUMERIC_STRING: u8 = 0x12;
    /// BMPString: UTF-16, big-endian.
    const BMP_STRING: u8 = 0x1e;
    /// UTCTime: two-digit years.
    const UTC_TIME: u8 = 0x17;
    /// GeneralizedTime: four-digit years.
    const GENERALIZED_TIME: u8 = 0x18;

    /// Split one TLV off the front: (tag, contents, rest).
    pub fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (bytes, r) = rest.split_at_checked(n)?;
            rest = r;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (contents, rest) = rest.split_at_checked(len)?;
        Some((tag, contents, rest))
    }

    /// Split one SEQUENCE off the front: (the whole SEQUENCE, tag and length included, rest).
    pub fn split_sequence(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (tag, _, rest) = read(input)?;
        if tag != SEQUENCE {
            return None;
        }
        let whole = input.get(..input.len() - rest.len())?;
        Some((whole, rest))
    }

    /// Call `f` with (type OID contents, value tag, value contents) of every attribute of the
    /// Name `rdns` (the contents of its SEQUENCE), in order; stops at the first malformed one.
    fn attributes<'a>(mut rdns: &'a [u8], mut f: impl FnMut(&'a [u8], u8, &'a [u8])) {
        while let Some((SET, mut rdn, rest)) = read(rdns) {
            while let Some((SEQUENCE, atv, after)) = read(rdn) {
                let Some((OID, oid, value)) = read(atv) else {
                    return;
                };
                let Some((tag, value, _)) = read(value) else {
                    return;
                };
                f(oid, tag, value);
                rdn = after;
            }
            rdns = rest;
        }
    }

    /// A directory string's text as Go's certificate parser reads it; `None` for a type it
    /// does not take as text.
    fn text(tag: u8, value: &[u8]) -> Option<Cow<'_, str>> {
        match tag {
            PRINTABLE_STRING | UTF8_STRING | T61_STRING | IA5_STRING | NUMERIC_STRING => {
                Some(String::from_utf8_lossy(value))
            }
            BMP_STRING if value.len() % 2 == 0 => {
                let value = value.strip_prefix(&[0xfe, 0xff]).unwrap_or(value);
                let units = value
                    .chunks_exact(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]));
                Some(Cow::Owned(
                    char::decode_utf16(units)
                        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                        .collect(),
                ))
            }
            _ => None,
        }
    }

    /// The attributes Go's `pkix.Name` has fields for (2.5.4.n, by n), in the order in which
    /// `Name.String()` writes them, with their names; CN and SERIALNUMBER hold one value.
    const NAMED: [(u8, &str); 9] = [
        (5, "SERIALNUMBER"),
        (3, "CN"),
        (11, "OU"),
        (10, "O"),
        (17, "POSTALCODE"),
        (9, "STREET"),
        (7, "L"),
        (8, "ST"),
        (6, "C"),
    ];

    /// The `n` of an attribute type 2.5.4.n that [`NAMED`] lists.
    fn named(oid: &[u8]) -> Option<u8> {
        match oid {
            [0x55, 0x04, n] if NAMED.iter().any(|(k, _)| k == n) => Some(*n),
            _ => None,
        }
    }

    /// A DER Name (tag and length included) as Go's `pkix.Name.String()` writes it, which is
    /// what blackbox_exporter reports: the RDNs in reverse order of Go's own, which is C, ST,
    /// L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER (so `CN=a.test,O=Example`), the values
    /// of one type in one RDN joined with `+`, only the last CN and SERIALNUMBER, and every
    /// other attribute last, in reverse order, as `OID=#` and the hex of its value's DER.
    pub fn name_string(name: &[u8]) -> String {
        let mut out = String::new();
        let Some((SEQUENCE, rdns, _)) = read(name) else {
            return out;
        };
        for (n, label) in NAMED {
            let oid = [0x55, 0x04, n];
            if n == 3 || n == 5 {
                let mut last = None;
                attributes(rdns, |t, tag, v| {
                    if t == oid {
                        last = text(tag, v).or(last.take());
                    }
                });
                if let Some(value) = last.filter(|v| !v.is_empty()) {
                    rdn_separator(&mut out);
                    attribute(&mut out, label, &value);
                }
            } else {
                let mut first = true;
                attributes(rdns, |t, tag, v| {
                    if t == oid {
                        if let Some(value) = text(tag, v) {
                            if first {
                                rdn_separator(&mut out);
                                first = false;
                            } else {
                                out.push('+');
                            }
                            attribute(&mut out, label, &value);
                        }
                    }
                });
            }
        }
        let mut others = Vec::new();
        attributes(rdns, |t, tag, v| {
            if named(t).is_none() {
                others.push((t, tag, v));
            }
        });
        for (oid, tag, value) in others.into_iter().rev() {
            rdn_separator(&mut out);
            let Some(dotted) = oid_string(oid) else {
                continue;
            };
            out.push_str(&dotted);
            let utf8 = tag == BMP_STRING || std::str::from_utf8(value).is_ok();
            match text(tag, value) {
                Some(s) if utf8 => {
                    out.push_str("=#");
                    hex(&mut out, &go_marshal(&s));
                }
                // Not valid UTF-8: Go cannot marshal it back and writes it as text.
                Some(s) => {
                    out.push('=');
                    escape(&mut out, &s);
                }
                None => {
                    out.push_str("=#");
                    hex(
                        &mut out,
                        &[&[tag][..], &length(value.len()), value].concat(),
                    );
                }
            }
        }
        out
    }

    /// The `,` between RDNs.
    fn rdn_separator(out: &mut String) {
        if !out.is_empty() {
            out.push(',');
        }
    }

    /// `label=value`, the value escaped as Go does.
    fn attribute(out: &mut String, label: &str, value: &str) {
        out.push_str(label);
        out.push('=');
        escape(out, value);
    }

    /// Go's escaping of a Name's value: `,+"\<>;` always, a space first or last, `#` first.
    fn escape(out: &mut String, value: &str) {
        let last = value.len().saturating_sub(1);
        for (i, c) in value.char_indices() {
            let escaped = match c {
                ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
                ' ' => i == 0 || i == last,
                '#' => i == 0,
                _ => false,
            };
            if escaped {
                out.push('\\');
            }
            out.push(c);
        }
    }

    /// Lowercase hex of `bytes`, appended to `out`.
    fn hex(out: &mut String, bytes: &[u8]) {
        for b in bytes {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
        }
    }

    /// A DER length.
    fn length(len: usize) -> Vec<u8> {
        if len < 0x80 {
            // Below 0x80: fits.
            return vec![len as u8];
        }
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let mut out = vec![0x80 | (bytes.len() - skip) as u8];
        out.extend_from_slice(&bytes[skip..]);
        out
    }

    /// What Go's `asn1.Marshal` makes of a string: a PrintableString when every character is
    /// one (`*` and `&` excluded), else a UTF8String.
    fn go_marshal(s: &str) -> Vec<u8> {
        let printable = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
        let tag = if printable {
            PRINTABLE_STRING
        } else {
            UTF8_STRING
        };
        [&[tag][..], &length(s.len()), s.as_bytes()].concat()
    }

    /// An OID's contents in dotted form (`1.2.840.113549.1.9.1`); `None` if malformed.
    fn oid_string(oid: &[u8]) -> Option<String> {
        let mut out = String::new();
        let mut arc: u64 = 0;
        let mut first = true;
        for &b in oid {
            arc = arc.checked_mul(128)? | u64::from(b & 0x7f);
            if b & 0x80 != 0 {
                continue;
            }
            if first {
                let (a, b) = match arc {
                    0..40 => (0, arc),
                    40..80 => (1, arc - 40),
                    _ => (2, arc - 80),
                };
                let _ = write!(out, "{a}.{b}");
                first = false;
            } else {
                let _ = write!(out, ".{arc}");
            }
            arc = 0;
        }
        (!first && oid.last().is_some_and(|b| b & 0x80 == 0)).then_some(out)
    }

    /// The DNS names of the first subjectAltName among `extensions` (the contents of their
    /// SEQUENCE), joined with `,` as blackbox_exporter joins Go's `DNSNames`.
    pub fn dns_names(mut extensions: &[u8]) -> String {
        let mut out = String::new();
        while let Some((SEQUENCE, extension, rest)) = read(extensions) {
            extensions = rest;
            let Some((OID, oid, mut fields)) = read(extension) else {
                continue;
            };
            if oid != SUBJECT_ALT_NAME {
                continue;
            }
            // critical BOOLEAN DEFAULT FALSE, then the value.
            while let Some((tag, value, after)) = read(fields) {
                if tag == OCTET_STRING {
                    if let Some((SEQUENCE, mut names, _)) = read(value) {
                        while let Some((tag, name, after)) = read(names) {
                            if tag == DNS_NAME {
                                if !out.is_empty() {
                                    out.push(',');
                                }
                                out.push_str(&String::from_utf8_lossy(name));
                            }
                            names = after;
                        }
                    }
                    break;
                }
                fields = after;
            }
            break;
        }
        out
    }

    /// A UTCTime or GeneralizedTime in UTC (`Z`) as unix seconds.
    pub fn time(tag: u8, s: &[u8]) -> Option<i64> {
        let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
        let num = |a: usize, b: usize| -> Option<i64> {
            let t = s.get(a..b)?;
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse().ok()
            } else {
                None
            }
        };
        let (year, rest) = match (tag, s.len()) {
            (UTC_TIME, 12) => {
                let yy = num(0, 2)?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
            }
            (GENERALIZED_TIME, 14) => (num(0, 4)?, 4),
            _ => return None,
        };
        let month = num(rest, rest + 2)?;
        let day = num(rest + 2, rest + 4)?;
        let hour = num(rest + 4, rest + 6)?;
        let min = num(rest + 6, rest + 8)?;
        let sec = num(rest + 8, rest + 10)?;
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || min > 59
            || sec > 60
        {
            return None;
        }
        Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn times() {
            assert_eq!(time(UTC_TIME, b"700101000000Z"), Some(0));
            assert_eq!(time(UTC_TIME, b"491231235959Z"), Some(2_524_607_999));
            assert_eq!(
                time(GENERALIZED_TIME, b"20380119031408Z"),
                Some(2_147_483_648)
            );
            assert_eq!(
                time(GENERALIZED_TIME, b"20240229120000Z"),
                Some(1_709_208_000)
            );
            assert_eq!(time(UTC_TIME, b"700101000000"), None);
            assert_eq!(time(UTC_TIME, b"701301000000Z"), None);
            assert_eq!(time(GENERALIZED_TIME, b"700101000000Z"), None);
        }

        /// One attribute: 2.5.4.n as `[n]` or a full OID's contents, the value's tag, the value.
        type Atv<'a> = (&'a [u8], u8, &'a [u8]);

        /// A DER Name of RDNs of attributes.
        fn name(rdns: &[&[Atv<'_>]]) -> Vec<u8> {
            let tlv = |tag: u8, body: &[u8]| [&[tag][..], &length(body.len()), body].concat();
            let mut seq = Vec::new();
            for rdn in rdns {
                let mut set = Vec::new();
                for (oid, tag, value) in *rdn {
                    let oid = if oid.len() == 1 {
                        vec![0x55, 0x04, oid[0]]
                    } else {
                        oid.to_vec()
                    };
                    set.extend(tlv(SEQUENCE, &[tlv(OID, &oid), tlv(*tag, value)].concat()));
                }
                seq.extend(tlv(SET, &set));
            }
            tlv(SEQUENCE, &seq)
        }

        const CN: &[u8] = &[3];
        const O: &[u8] = &[10];
        const C: &[u8] = &[6];
        const OU: &[u8] = &[11];
        const P: u8 = PRINTABLE_STRING;
        const U: u8 = UTF8_STRING;

        #[test]
        fn names_are_written_as_go_writes_them() {
            // Go's order, whatever the certificate's: CN, OU, O, ..., C.
            let n = name(&[&[(O, P, b"Example")], &[(CN, U, b"a.test")]]);
            assert_eq!(name_string(&n), "CN=a.test,O=Example");
            let n = name(&[
                &[(C, P, b"DE")],
                &[(CN, U, b"a.test")],
                &[(O, U, b"Example")],
                &[(OU, U, b"Ops")],
            ]);
            assert_eq!(name_string(&n), "CN=a.test,OU=Ops,O=Example,C=DE");
            // The values of one type in one RDN; only the last CN.
            let n = name(&[
                &[(O, U, b"A")],
                &[(CN, U, b"first")],
                &[(O, U, b"B"), (CN, U, b"second")],
            ]);
            assert_eq!(name_string(&n), "CN=second,O=A+O=B");
            // Go's escaping.
            let n = name(&[&[(CN, U, b" a,b+c\"<>;d ")], &[(O, U, b"#x#")]]);
            assert_eq!(name_string(&n), "CN=\\ a\\,b\\+c\\\"\\<\\>\\;d\\ ,O=\\#x#");
            // Other attributes last, in reverse order, as the hex of Go's re-encoding.
            let email: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
            let dc: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
            let n = name(&[
                &[(dc, IA5_STRING, b"example")],
                &[(email, IA5_STRING, b"a@b")],
                &[(CN, U, b"x")],
            ]);
            assert_eq!(
                name_string(&n),
                "CN=x,1.2.840.113549.1.9.1=#0c03614062,0.9.2342.19200300.100.1.25=#13076578616d706c65"
            );
            // BMPString, and an empty CN that Go leaves out.
            let n = name(&[&[(CN, BMP_STRING, &[0, b'h', 0, b'i'])], &[(O, U, b"")]]);
            assert_eq!(name_string(&n), "CN=hi,O=");
            let n = name(&[&[(CN, U, b"")]]);
            assert_eq!(name_string(&n), "");
        }

        #[test]
        fn damaged_names_and_extensions_end_quietly() {
            let n = name(&[&[(CN, U, b"a.test")], &[(O, U, b"Example")]]);
            for cut in 0..n.len() {
                let _ = name_string(&n[..cut]);
                let _ = dns_names(&n[..cut]);
            }
            let mut x: u32 = 7;
            for _ in 0..2000 {
                let bytes: Vec<u8> = (0..40)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (x >> 16) as u8
                    })
                    .collect();
                let _ = name_string(&bytes);
                let _ = dns_names(&bytes);
                let _ = oid_string(&bytes);
            }
            assert_eq!(oid_string(&[0x2a, 0x86]), None);
            assert_eq!(oid_string(&[]), None);
            assert_eq!(length(200), [0x81, 200]);
            assert_eq!(length(0x1234), [0x82, 0x12, 0x34]);
        }

        #[test]
        fn truncated_input() {
            assert_eq!(read(&[0x30]), None);
            assert_eq!(read(&[0x30, 0x05, 1, 2]), None);
            assert_eq!(read(&[0x30, 0x85, 0, 0, 0, 0, 0]), None);
            assert_eq!(
                read(&[0x30, 0x81, 0x01, 7]),
                Some((0x30, &[7u8][..], &[][..]))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_after_of_generated_certificates() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        // 2031-05-17T00:00:00Z
        assert_eq!(not_after(cert.der()), Some(1_936_742_400));

        params.not_after = rcgen::date_time_ymd(2051, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(not_after(cert.der()), Some(2_556_230_400));
    }

    /// A CA named `name` expiring on `year`-01-01, signed by `by` (or by itself).
    fn ca(
        name: &str,
        year: i32,
        by: Option<&rcgen::CertifiedIssuer<'static, rcgen::KeyPair>>,
    ) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        match by {
            Some(issuer) => rcgen::CertifiedIssuer::signed_by(params, key, issuer).unwrap(),
            None => rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// 1 January of `year`, unix seconds.
    fn jan1(year: i32) -> i64 {
        let mut params = rcgen::CertificateParams::default();
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let cert = params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        not_after(cert.der()).unwrap()
    }

    #[test]
    fn the_leaf_facts_and_the_verified_chain_expiry() {
        let root = ca("root", 2040, None);
        let inter = ca("intermediate", 2045, Some(&root));
        let stranger = ca("stranger", 2030, None);
        let mut params = rcgen::CertificateParams::new(vec![
            "a.test".into(),
            "b.test".into(),
            "10.0.0.1".into(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "a.test");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc");
        params.not_after = rcgen::date_time_ymd(2050, 1, 1);
        let leaf = params
            .signed_by(&rcgen::KeyPair::generate().unwrap(), &inter)
            .unwrap();
        let tbs = tbs(leaf.der()).unwrap();
        let info = chain_info(leaf.der(), &tbs, None);
        assert_eq!(info.subject(), "CN=a.test,O=Example\\, Inc");
        assert_eq!(info.issuer(), "CN=intermediate");
        assert_eq!(info.subject_alternative(), "a.test,b.test");
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf.der());
        assert_eq!(info.fingerprint_sha256[..], *digest.as_ref());
        assert_eq!(info.fingerprint_hex().len(), 64);

        let verifier =
            |anchors: &[&rcgen::CertifiedIssuer<'static, rcgen::KeyPair>]| RecordingVerifier {
                inner: None,
                anchors: anchors
                    .iter()
                    .map(|a| {
                        let t = super::tbs(a.der()).unwrap();
                        Anchor {
                            subject: t.subject.into(),
                            not_after: t.not_after,
                        }
                    })
                    .collect(),
                algorithms: provider().signature_verification_algorithms,
            };
        let presented = [stranger.der().clone(), inter.der().clone()];
        // The root of the ca_file counts; the stranger, not on the path, does not.
        assert_eq!(
            verifier(&[&stranger, &root]).last_chain_expiry(&tbs, &presented),
            jan1(2040)
        );
        // Trusting the intermediate itself ends the path there.
        assert_eq!(
            verifier(&[&inter]).last_chain_expiry(&tbs, &presented),
            jan1(2045)
        );
        // Without a known anchor (the built-in roots), the presented path alone.
        assert_eq!(
            verifier(&[]).last_chain_expiry(&tbs, &presented),
            jan1(2045)
        );
        assert_eq!(verifier(&[]).last_chain_expiry(&tbs, &[]), jan1(2050));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(b"\x30\x03\x02\x01\x01"), None);
        assert_eq!(not_after(&[0xff; 64]), None);
    }
}
