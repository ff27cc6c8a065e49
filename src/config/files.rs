//! What a target's settings name in files, and what is built from them: the request (method,
//! headers, credentials, body) and the proxy rules. Each file is read once per load, each
//! distinct set of settings built once and shared by the targets that have it. Errors never
//! quote a secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::layer::Settings;
use super::schema::{BasicAuth, HeaderSource, Headers, NoProxyList, SecretValue, has_control};
use super::{MAX_BODY, MAX_PAIRS, MAX_SECRET_FILE, MAX_TEXT};
use crate::proxy::{self, NoProxy, ProxyRules};
use crate::request::{Method, RequestSpec};
use crate::secret::Secret;

/// A field-level error: the key to point at, and the message.
pub(super) type FieldError = (&'static str, String);

/// What the settings of a target turn into, shared by every target with the same settings.
type SpecKey = (
    Option<Method>,
    Option<Headers>,
    Option<BasicAuth>,
    Option<SecretValue>,
    Option<PathBuf>,
    Option<String>,
    Option<PathBuf>,
);

/// The proxy keys of a target, for sharing their rules.
type ProxyKey = (
    Option<SecretValue>,
    Option<NoProxyList>,
    Option<bool>,
    Option<Headers>,
);

/// Files the targets name (secrets, bodies), each read once per load, and what the settings
/// built from them, shared between targets.
#[derive(Default)]
pub(super) struct Files {
    /// Contents by path.
    read: HashMap<PathBuf, Result<Bytes, String>>,
    /// Request specs by their settings.
    specs: HashMap<SpecKey, Arc<RequestSpec>>,
    /// Proxy rules by their settings.
    proxies: HashMap<ProxyKey, Option<Arc<ProxyRules>>>,
}

impl Files {
    /// A file's bytes: a regular file of at most `limit` bytes, relative to `base`.
    fn bytes(&mut self, base: &Path, path: &Path, limit: usize) -> Result<Bytes, String> {
        let full = base.join(path);
        if let Some(r) = self.read.get(&full) {
            return r.clone();
        }
        let r = read_limited(&full, limit);
        self.read.insert(full, r.clone());
        r
    }

    /// A secret read from a file: UTF-8 text, surrounding whitespace trimmed (a file written
    /// by `echo` ends in a newline), no control characters. Errors never quote the contents.
    fn secret(&mut self, base: &Path, path: &Path) -> Result<Secret, String> {
        let bytes = self.bytes(base, path, MAX_SECRET_FILE)?;
        let shown = base.join(path).display().to_string();
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| format!("{shown} is not UTF-8 text"))?
            .trim();
        if has_control(text) {
            return Err(format!("{shown} holds control characters"));
        }
        Ok(Secret::new(text.to_owned()))
    }

    /// A header's values: those written in the file (`Ok`), or the secret read from a file.
    fn header_values(
        &mut self,
        base: &Path,
        source: &HeaderSource,
    ) -> Result<Result<Vec<String>, Secret>, String> {
        Ok(match source {
            HeaderSource::Plain(v) => Ok(vec![v.clone()]),
            HeaderSource::List(l) => Ok(l.clone()),
            HeaderSource::File(p) => Err(self.secret(base, p)?),
        })
    }

    /// The method, headers, credentials and body of `s`; or every error among the three (a
    /// header file and a token file both missing are two errors).
    pub(super) fn request_spec(
        &mut self,
        s: &Settings,
        base: &Path,
    ) -> Result<Arc<RequestSpec>, Vec<FieldError>> {
        let key: SpecKey = (
            s.method.clone(),
            s.headers.clone(),
            s.basic_auth.clone(),
            s.bearer_token.clone(),
            s.bearer_token_file.clone(),
            s.body.clone(),
            s.body_file.clone(),
        );
        if let Some(spec) = self.specs.get(&key) {
            return Ok(spec.clone());
        }
        let mut spec = RequestSpec::bare(s.method.clone().unwrap_or(Method::GET));
        let mut errors = Vec::new();
        if let Err(e) = self.headers(&mut spec, s, base) {
            errors.push(e);
        }
        match self.authorization(s, base) {
            Ok(Some(auth)) => {
                let set = |k: &String| k.eq_ignore_ascii_case("authorization");
                if spec.headers.iter().any(|(k, _)| set(k))
                    || spec.secret_headers.iter().any(|(k, _)| set(k))
                {
                    errors.push((
                        "headers",
                        "headers: Authorization is set by basic_auth or bearer_token".into(),
                    ));
                }
                spec.secret_headers.push(("Authorization".into(), auth));
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
        match self.body(s, base) {
            Ok(body) => spec.body = body,
            Err(e) => errors.push(e),
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let spec = Arc::new(spec);
        self.specs.insert(key, spec.clone());
        Ok(spec)
    }

    /// The headers of `s` into `spec`: those written in the file, those read from files
    /// (secrets), within the caps on their number and length.
    fn headers(
        &mut self,
        spec: &mut RequestSpec,
        s: &Settings,
        base: &Path,
    ) -> Result<(), FieldError> {
        for (k, v) in s.headers.iter().flat_map(|h| &h.0) {
            if k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("transfer-encoding")
            {
                return Err(("headers", format!("headers: {k} is set from body")));
            }
            let values = self
                .header_values(base, v)
                .map_err(|m| ("file", format!("headers: {k}: {m}")))?;
            match values {
                Ok(shown) => spec
                    .headers
                    .extend(shown.into_iter().map(|v| (k.clone(), v))),
                Err(secret) => spec.secret_headers.push((k.clone(), secret)),
            }
        }
        let count = spec.headers.len() + spec.secret_headers.len();
        if count > MAX_PAIRS {
            return Err(("headers", format!("more than {MAX_PAIRS} headers")));
        }
        let long = spec
            .headers
            .iter()
            .map(|(k, v)| (k, v.len()))
            .chain(
                spec.secret_headers
                    .iter()
                    .map(|(k, v)| (k, v.expose().len())),
            )
            .find(|(k, n)| k.len() + n > MAX_TEXT);
        if let Some((k, _)) = long {
            return Err((
                "headers",
                format!("headers: {k} is longer than {MAX_TEXT} bytes"),
            ));
        }
        Ok(())
    }

    /// The `Authorization` value of `basic_auth`, `bearer_token` or `bearer_token_file`, at
    /// most one of which may be set.
    fn authorization(&mut self, s: &Settings, base: &Path) -> Result<Option<Secret>, FieldError> {
        Ok(
            match (&s.basic_auth, &s.bearer_token, &s.bearer_token_file) {
                (None, None, None) => None,
                (Some(auth), None, None) => {
                    let password = match (&auth.password, &auth.password_file) {
                        (Some(_), Some(_)) => {
                            return Err((
                                "password_file",
                                "basic_auth: password and password_file cannot both be set".into(),
                            ));
                        }
                        (Some(p), None) => p.0.clone(),
                        (None, Some(f)) => self.secret(base, f).map_err(|m| {
                            ("password_file", format!("basic_auth.password_file: {m}"))
                        })?,
                        (None, None) => Secret::new(String::new()),
                    };
                    if auth.username.contains(':') || has_control(&auth.username) {
                        return Err((
                            "username",
                            "basic_auth.username must not hold `:` or control characters".into(),
                        ));
                    }
                    let token = base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("{}:{}", auth.username, password.expose()),
                    );
                    Some(Secret::new(format!("Basic {token}")))
                }
                (None, Some(t), None) => Some(Secret::new(format!("Bearer {}", t.0.expose()))),
                (None, None, Some(f)) => {
                    let t = self
                        .secret(base, f)
                        .map_err(|m| ("bearer_token_file", format!("bearer_token_file: {m}")))?;
                    Some(Secret::new(format!("Bearer {}", t.expose())))
                }
                (None, Some(_), Some(_)) => {
                    return Err((
                        "bearer_token_file",
                        "bearer_token and bearer_token_file cannot both be set".into(),
                    ));
                }
                _ => {
                    return Err((
                        "basic_auth",
                        "basic_auth and bearer_token cannot both be set".into(),
                    ));
                }
            },
        )
    }

    /// The request body: `body`, or the contents of `body_file`.
    fn body(&mut self, s: &Settings, base: &Path) -> Result<Bytes, FieldError> {
        Ok(match (&s.body, &s.body_file) {
            (None, None) => Bytes::new(),
            (Some(b), None) if b.len() > MAX_BODY => {
                return Err(("body", format!("body is longer than {MAX_BODY} bytes")));
            }
            (Some(b), None) => Bytes::from(b.clone()),
            (None, Some(f)) => self
                .bytes(base, f, MAX_BODY)
                .map_err(|m| ("body_file", format!("body_file: {m}")))?,
            (Some(_), Some(_)) => {
                return Err(("body_file", "body and body_file cannot both be set".into()));
            }
        })
    }

    /// The proxy rules of `s`, `None` when it names no proxy.
    pub(super) fn proxy_rules(
        &mut self,
        s: &Settings,
        base: &Path,
    ) -> Result<Option<Arc<ProxyRules>>, FieldError> {
        let key: ProxyKey = (
            s.proxy_url.clone(),
            s.no_proxy.clone(),
            s.proxy_from_environment,
            s.proxy_connect_header.clone(),
        );
        if let Some(rules) = self.proxies.get(&key) {
            return Ok(rules.clone());
        }
        let from_env = s.proxy_from_environment.unwrap_or(false);
        if s.proxy_url.is_some() && from_env {
            return Err((
                "proxy_from_environment",
                "proxy_url and proxy_from_environment cannot both be set".into(),
            ));
        }
        if s.no_proxy.is_some() && s.proxy_url.is_none() {
            return Err((
                "no_proxy",
                "no_proxy needs proxy_url (with proxy_from_environment, NO_PROXY applies)".into(),
            ));
        }
        if s.proxy_connect_header.is_some() && s.proxy_url.is_none() && !from_env {
            return Err((
                "proxy_connect_header",
                "proxy_connect_header needs proxy_url or proxy_from_environment".into(),
            ));
        }
        let mut lines = String::new();
        for (k, v) in s.proxy_connect_header.iter().flat_map(|h| &h.0) {
            let values = match self
                .header_values(base, v)
                .map_err(|m| ("file", format!("proxy_connect_header: {k}: {m}")))?
            {
                Ok(shown) => shown,
                Err(secret) => vec![secret.expose().to_owned()],
            };
            for v in values {
                if k.len() + v.len() > MAX_TEXT {
                    return Err((
                        "proxy_connect_header",
                        format!("proxy_connect_header: {k} is longer than {MAX_TEXT} bytes"),
                    ));
                }
                lines.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        let connect = Secret::new(lines);
        let rules = if let Some(u) = &s.proxy_url {
            let p = proxy::parse(u.0.expose(), connect)
                .map_err(|e| ("proxy_url", format!("proxy_url: {e}")))?;
            let no_proxy = NoProxy::parse(s.no_proxy.iter().flat_map(|l| &l.0).map(String::as_str))
                .map_err(|e| ("no_proxy", e.to_string()))?;
            Some(Arc::new(ProxyRules {
                http: Some(p.clone()),
                https: Some(p),
                no_proxy,
            }))
        } else if from_env {
            ProxyRules::from_environment(|k| std::env::var(k).ok(), &connect)
                .map_err(|(var, e)| {
                    (
                        "proxy_from_environment",
                        format!("proxy_from_environment: {var}: {e}"),
                    )
                })?
                .map(Arc::new)
        } else {
            None
        };
        self.proxies.insert(key, rules.clone());
        Ok(rules)
    }
}

/// Read at most `limit` bytes of a regular file.
fn read_limited(path: &Path, limit: usize) -> Result<Bytes, String> {
    use std::io::Read as _;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() > limit {
        return Err(format!("{shown} is larger than {limit} bytes"));
    }
    Ok(Bytes::from(bytes))
}
