//! TLS client configuration for probes, certificate expiry and TLS failure classification.
//!
//! One [`ClientConfig`] is built per distinct TLS setting at load and shared by every target
//! that uses it. The certificate verifier records the expiry of the chain the server presented
//! before deciding whether to trust it, so a probe reports certificate expiry even when the
//! handshake fails because of that certificate.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::outcome::{CertExpiry, FailureReason};

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
    match &settings.ca_file {
        Some(path) => {
            for cert in read_certs("CA file", path)? {
                roots.add(cert).map_err(rustls_err)?;
            }
        }
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

tokio::task_local! {
    /// Where the verifier leaves the expiry of the chain presented to the probe that is
    /// running the handshake on this task.
    pub static PRESENTED: Cell<Option<CertExpiry>>;
}

/// Verifies like rustls' WebPKI verifier (or not at all, for `insecure_skip_verify`), after
/// recording the presented chain's expiry in [`PRESENTED`].
#[derive(Debug)]
struct RecordingVerifier {
    /// The real verifier; `None` skips verification.
    inner: Option<Arc<WebPkiServerVerifier>>,
    /// Signature algorithms for handshake signatures.
    algorithms: WebPkiSupportedAlgorithms,
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
        if let Some(leaf) = not_after(end_entity) {
            let earliest = intermediates
                .iter()
                .filter_map(|c| not_after(c))
                .fold(leaf, i64::min);
            // Outside a probe (no scope set) there is nowhere to record; that is fine.
            let _ = PRESENTED.try_with(|slot| slot.set(Some(CertExpiry { leaf, earliest })));
        }
        match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
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
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        tbs = der::read(tbs)?.2;
    }
    let (tag, validity, _) = der::read(tbs)?;
    if tag != der::SEQUENCE {
        return None;
    }
    let (_, _, rest) = der::read(validity)?;
    let (tag, time, _) = der::read(rest)?;
    der::time(tag, time)
}

/// Just enough DER to reach a certificate's validity.
mod der {
    /// The SEQUENCE tag.
    pub const SEQUENCE: u8 = 0x30;
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

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(b"\x30\x03\x02\x01\x01"), None);
        assert_eq!(not_after(&[0xff; 64]), None);
    }
}
