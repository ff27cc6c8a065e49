//! `--web.config.file`: TLS (optionally mutual) and basic authentication on every endpoint, in
//! the exporter-toolkit format Prometheus users know:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_ca_file: ca.crt                        # optional
//!   client_auth_type: RequireAndVerifyClientCert  # or VerifyClientCertIfGiven, NoClientCert
//!   min_version: TLS12                            # or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                        # bcrypt hash
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;

use crate::config::position::strip_location;
use crate::config_error::ConfigError;
use crate::tls::{MinVersion, provider, read_certs};

/// Successful `Authorization` headers remembered, so bcrypt runs once per credential.
const AUTH_CACHE: usize = 64;

/// How client certificates are asked for, weakest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    NoClientCert,
    /// A client certificate, if sent, must verify against `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A client certificate is required and must verify against `client_ca_file`.
    RequireAndVerifyClientCert,
}

/// The `tls_server_config` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    /// Server certificate chain (PEM).
    cert_file: PathBuf,
    /// Server key (PEM).
    key_file: PathBuf,
    /// CA certificates for client certificates (PEM).
    client_ca_file: Option<PathBuf>,
    /// How client certificates are asked for.
    #[serde(default)]
    client_auth_type: ClientAuth,
    /// Lowest accepted TLS version.
    min_version: Option<MinVersion>,
}

/// The web config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    /// TLS on our endpoints.
    tls_server_config: Option<RawTls>,
    /// User name to bcrypt hash.
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

/// A loaded web config.
pub struct WebConfig {
    /// TLS acceptor, when TLS is on.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// How client certificates are checked (`NoClientCert` without TLS).
    pub client_auth: ClientAuth,
    /// User name to bcrypt hash; empty means no authentication.
    users: BTreeMap<String, String>,
    /// `Authorization` header values that passed.
    verified: Mutex<HashSet<String>>,
    /// A hash of the users' highest cost, checked for unknown users so that they take as long
    /// as a wrong password and user names cannot be told apart by timing.
    dummy: Option<String>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebConfig {
    /// No TLS, no authentication.
    pub fn open() -> Self {
        WebConfig {
            tls: None,
            client_auth: ClientAuth::NoClientCert,
            users: BTreeMap::new(),
            verified: Mutex::new(HashSet::new()),
            dummy: None,
        }
    }

    /// What `next` would turn off that this config has: TLS, basic authentication, or the
    /// checking of client certificates. A reload must never weaken the endpoint's protection
    /// (an emptied or truncated file would otherwise open it silently).
    pub fn weakened_by(&self, next: &WebConfig) -> Option<&'static str> {
        if self.tls.is_some() && next.tls.is_none() {
            Some("TLS")
        } else if self.requires_auth() && !next.requires_auth() {
            Some("basic authentication")
        } else if next.client_auth < self.client_auth {
            Some("part of the client certificate checks")
        } else {
            None
        }
    }

    /// Whether requests must authenticate.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Check an `Authorization` header value against the users.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some(value) = header else {
            return false;
        };
        let cache = || self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache().contains(value) {
            return true;
        }
        // The scheme is case-insensitive (RFC 7617 §2).
        let Some((scheme, encoded)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        let ok = match (self.users.get(user), &self.dummy) {
            (Some(hash), _) => bcrypt::verify(password, hash).unwrap_or(false),
            (None, Some(dummy)) => {
                let _ = bcrypt::verify(password, dummy);
                false
            }
            (None, None) => false,
        };
        if ok {
            let mut c = cache();
            if c.len() >= AUTH_CACHE {
                c.clear();
            }
            c.insert(value.to_owned());
        }
        ok
    }
}

/// Load a web config file; relative paths are resolved against its folder.
pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
    let text = crate::config::read_bounded(path, "web config file")?;
    parse(path, &text)
}

/// Validate a web config's text; `path` names it in errors and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<WebConfig, ConfigError> {
    let err =
        |line: usize, column: usize, message: String| ConfigError::new(path, line, column, message);
    let raw: RawWeb = if text.trim().is_empty() {
        RawWeb::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let (l, c) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            err(l, c, strip_location(&e.to_string()))
        })?
    };
    for (user, hash) in &raw.basic_auth_users {
        // Parsed now, so that --config.check finds a malformed hash, not the first login.
        if !hash.starts_with("$2") || hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(err(
                1,
                1,
                format!("basic_auth_users.{user}: not a bcrypt hash"),
            ));
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let tls = match &raw.tls_server_config {
        None => None,
        Some(t) => {
            Some(tls_acceptor(t, base).map_err(|m| err(1, 1, format!("tls_server_config: {m}")))?)
        }
    };
    Ok(WebConfig {
        tls,
        client_auth: raw
            .tls_server_config
            .as_ref()
            .map_or(ClientAuth::NoClientCert, |t| t.client_auth_type),
        dummy: dummy_hash(&raw.basic_auth_users),
        users: raw.basic_auth_users,
        verified: Mutex::new(HashSet::new()),
    })
}

/// A bcrypt hash at the highest cost among `users` (`$2y$10$...`), or `None` without users.
fn dummy_hash(users: &BTreeMap<String, String>) -> Option<String> {
    let cost = users
        .values()
        .filter_map(|h| h.split('$').nth(2)?.parse::<u32>().ok())
        .max()?;
    bcrypt::hash("not a password of anyone", cost.clamp(4, 31)).ok()
}

/// Build the TLS acceptor of `tls_server_config`.
fn tls_acceptor(t: &RawTls, base: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = provider();
    let chain = read_certs("cert_file", &base.join(&t.cert_file)).map_err(|e| e.to_string())?;
    let key_path = base.join(&t.key_file);
    let key = crate::tls::read_pem(&key_path)
        .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem).map_err(|e| e.to_string()))
        .map_err(|e| format!("key_file {key_path:?}: {e}"))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(MinVersion::versions(t.min_version))
        .map_err(|e| e.to_string())?;
    let builder = match (t.client_auth_type, &t.client_ca_file) {
        (ClientAuth::NoClientCert, _) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs("client_ca_file", &base.join(ca)).map_err(|e| e.to_string())? {
                roots.add(c).map_err(|e| e.to_string())?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if mode == ClientAuth::VerifyClientCertIfGiven {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
        }
        (_, None) => return Err("client_auth_type needs client_ca_file".into()),
    };
    let mut config = builder
        .with_single_cert(
            chain.into_iter().map(CertificateDer::into_owned).collect(),
            key,
        )
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with one user, `prom`, whose password `secret` is hashed at `cost`.
    fn one_user(cost: u32) -> WebConfig {
        let mut users = BTreeMap::new();
        users.insert("prom".to_owned(), bcrypt::hash("secret", cost).unwrap());
        WebConfig {
            tls: None,
            client_auth: ClientAuth::NoClientCert,
            dummy: dummy_hash(&users),
            users,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// A Basic `Authorization` value.
    fn b64(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn basic_auth() {
        let w = one_user(4);
        assert!(w.authorized(Some(&b64("prom:secret"))));
        assert!(w.authorized(Some(&b64("prom:secret"))), "cached");
        assert!(!w.authorized(Some(&b64("prom:wrong"))));
        assert!(!w.authorized(Some(&b64("other:secret"))));
        assert!(!w.authorized(Some("Bearer x")));
        assert!(!w.authorized(Some("Basic !!!")));
        assert!(!w.authorized(None));
        assert!(WebConfig::open().authorized(None));
        // The scheme is case-insensitive.
        let lower = b64("prom:secret").replacen("Basic", "basic", 1);
        assert!(w.authorized(Some(&lower)));
        assert!(w.authorized(Some(&lower.replacen("basic", "BASIC", 1))));
    }

    #[test]
    fn unknown_users_take_as_long_as_wrong_passwords() {
        let w = one_user(8);
        let time = |header: &str| {
            let t = std::time::Instant::now();
            for _ in 0..5 {
                assert!(!w.authorized(Some(header)));
            }
            t.elapsed().as_secs_f64()
        };
        let wrong_password = time(&b64("prom:nope"));
        let unknown_user = time(&b64("nobody:nope"));
        let ratio = unknown_user / wrong_password;
        assert!(
            (0.5..2.0).contains(&ratio),
            "unknown {unknown_user}s vs wrong {wrong_password}s"
        );
    }
}
