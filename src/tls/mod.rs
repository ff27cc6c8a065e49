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

mod der;

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
