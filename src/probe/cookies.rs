//! The cookie jar of one redirect chain (`cookies: true`): the cookies the redirects of the
//! chain set (`Set-Cookie`), sent with the later requests of the same probe whose URL they
//! match, by the rules of RFC 6265 that browsers and Go's `net/http/cookiejar` (which
//! blackbox_exporter uses) share for the simple cases. Pure: the chain owns the jar, the
//! exchange hands it the `Set-Cookie` values of each redirect, and nothing outlives the probe.
//!
//! - `Domain`: without it a cookie is host-only (sent to the host that set it, nothing else);
//!   with it, to that domain and its subdomains. A `Domain` the setting host does not
//!   domain-match is refused, and so is one on an IP address that is not that address. There
//!   is no public suffix list: a `Domain` of a single label (`Domain=com`) is refused unless it
//!   is the host itself, but `Domain=co.uk` set by `a.co.uk` is kept.
//! - `Path`: a cookie is sent to its path and the paths under it; without one (or with one
//!   not starting with `/`) its path is the default path of RFC 6265 §5.1.4, the directory of
//!   the request that set it.
//! - `Secure`: sent over https only.
//! - Lifetime: every cookie lives as long as the probe. `Max-Age` of 0 or less deletes it,
//!   and so does an `Expires` date (RFC 6265 §5.1.1) in the past when there is no
//!   `Max-Age`; any other `Max-Age` or `Expires` changes nothing.
//! - Ports are ignored (RFC 6265 §8.5), and so are `HttpOnly` and `SameSite` (no page, no
//!   script).
//!
//! Bounds, against a peer that sets many or large cookies: at most [`MAX_COOKIES`] cookies,
//! [`MAX_COOKIE`] bytes each (name and value), and a `Cookie` header of at most
//! [`MAX_HEADER`] bytes (the cookies that would not fit are left out of it).

use crate::probe_url::{Host, ProbeUrl, Scheme};

/// The most cookies a jar holds: a `Set-Cookie` for a new one past this is refused.
pub const MAX_COOKIES: usize = 50;

/// The longest cookie kept, name and value, in bytes.
pub const MAX_COOKIE: usize = 4096;

/// The longest `Cookie` header value the jar makes, in bytes.
pub const MAX_HEADER: usize = 8192;

/// The cookies of one redirect chain.
#[derive(Debug, Default)]
pub struct Jar {
    /// The cookies, oldest first (a replaced cookie keeps its place, as RFC 6265 keeps its
    /// creation time).
    cookies: Vec<Cookie>,
}

/// One cookie kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    /// Its name.
    name: String,
    /// Its value, as it came.
    value: String,
    /// The host (host-only) or domain it is sent to, lower case.
    domain: String,
    /// Sent to `domain` itself only, not to its subdomains.
    host_only: bool,
    /// The path it is sent to, and the paths under it.
    path: String,
    /// Sent over https only.
    secure: bool,
}

/// What became of one `Set-Cookie` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The cookie named is kept (new, or replacing one of the same name, domain and path).
    Kept(String),
    /// The cookie named is deleted (`Max-Age` of 0 or less, or a past `Expires`).
    Deleted(String),
    /// The cookie named (empty when no name could be read) is refused, and why.
    Refused(String, &'static str),
}

impl Jar {
    /// Take one `Set-Cookie` value answered to a request for `url`, at unix time `now` (for
    /// `Expires`).
    pub fn store(&mut self, url: &ProbeUrl, set_cookie: &[u8], now: i64) -> Stored {
        let parsed = match parse(url, set_cookie, now) {
            Ok(parsed) => parsed,
            Err(refused) => return refused,
        };
        let Parsed { cookie, delete } = parsed;
        let same = |c: &Cookie| {
            (&c.name, &c.domain, &c.path, c.host_only)
                == (&cookie.name, &cookie.domain, &cookie.path, cookie.host_only)
        };
        let existing = self.cookies.iter().position(same);
        if delete {
            if let Some(i) = existing {
                self.cookies.remove(i);
            }
            return Stored::Deleted(cookie.name);
        }
        let name = cookie.name.clone();
        match existing {
            Some(i) => self.cookies[i] = cookie,
            None if self.cookies.len() >= MAX_COOKIES => {
                return Stored::Refused(name, "the jar holds 50 cookies already");
            }
            None => self.cookies.push(cookie),
        }
        Stored::Kept(name)
    }

    /// The `Cookie` header value for a request to `url`, and the names of the cookies in it;
    /// `None` when no cookie matches. Longer paths first, then older cookies first (RFC 6265
    /// §5.4); a cookie that would take the value past [`MAX_HEADER`] bytes is left out.
    pub fn header(&self, url: &ProbeUrl) -> Option<(String, Vec<&str>)> {
        let host = host_of(url);
        let path = request_path(url);
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| {
                domain_matches(c, &host, matches!(url.host, Host::Ip(_)))
                    && path_matches(&c.path, path)
                    && (!c.secure || url.scheme == Scheme::Https)
            })
            .collect();
        // Stable: cookies of the same path length stay oldest first.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let mut value = String::new();
        let mut names = Vec::new();
        for c in matching {
            let sep = if value.is_empty() { 0 } else { 2 };
            if value.len() + sep + c.name.len() + 1 + c.value.len() > MAX_HEADER {
                continue;
            }
            if sep > 0 {
                value.push_str("; ");
            }
            value.push_str(&c.name);
            value.push('=');
            value.push_str(&c.value);
            names.push(c.name.as_str());
        }
        (!names.is_empty()).then_some((value, names))
    }
}

/// A `Set-Cookie` value read: the cookie, and whether it deletes rather than sets.
struct Parsed {
    /// The cookie it names (its value is irrelevant when it deletes).
    cookie: Cookie,
    /// `Max-Age` of 0 or less, or an `Expires` in the past without `Max-Age`.
    delete: bool,
}

/// Read a `Set-Cookie` value answered to `url` (RFC 6265 §5.2, §5.3), at unix time `now`;
/// the refusal when it cannot be kept.
fn parse(url: &ProbeUrl, set_cookie: &[u8], now: i64) -> Result<Parsed, Stored> {
    let refused = |name: &str, why| Stored::Refused(name.to_owned(), why);
    let Ok(text) = std::str::from_utf8(set_cookie) else {
        return Err(refused("", "not UTF-8"));
    };
    let mut parts = text.split(';');
    let pair = parts.next().unwrap_or_default();
    let Some((name, value)) = pair.split_once('=') else {
        return Err(refused("", "no name=value"));
    };
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() {
        return Err(refused("", "no name"));
    }
    // Control characters would end a header line or hide what it says.
    if text.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(refused(name, "control characters"));
    }
    if name.len() + value.len() > MAX_COOKIE {
        return Err(refused(name, "longer than 4096 bytes"));
    }
    let mut domain_attr: Option<String> = None;
    let mut path = None;
    let mut secure = false;
    let mut max_age: Option<i64> = None;
    let mut expired = false;
    for attr in parts {
        let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
        let (key, val) = (key.trim(), val.trim());
        if key.eq_ignore_ascii_case("domain") {
            // An empty Domain is ignored; a leading dot is dropped.
            if !val.is_empty() {
                let d = val.strip_prefix('.').unwrap_or(val);
                domain_attr = Some(d.to_ascii_lowercase());
            }
        } else if key.eq_ignore_ascii_case("path") {
            path = val.starts_with('/').then(|| val.to_owned());
        } else if key.eq_ignore_ascii_case("secure") {
            secure = true;
        } else if key.eq_ignore_ascii_case("max-age") {
            if let Some(seconds) = parse_max_age(val) {
                max_age = Some(seconds);
            }
        } else if key.eq_ignore_ascii_case("expires")
            && let Some(at) = cookie_date(val)
        {
            expired = at <= now;
        }
    }
    let host = host_of(url);
    let (domain, host_only) = match domain_attr {
        None => (host, true),
        Some(d) => {
            check_domain(url, &host, &d).map_err(|why| refused(name, why))?;
            // On an IP address, the Domain that is the address makes a host-only cookie.
            let host_only = matches!(url.host, Host::Ip(_));
            (d, host_only)
        }
    };
    let path = path.unwrap_or_else(|| default_path(request_path(url)).to_owned());
    Ok(Parsed {
        cookie: Cookie {
            name: name.to_owned(),
            value: value.to_owned(),
            domain,
            host_only,
            path,
            secure,
        },
        delete: max_age.map_or(expired, |s| s <= 0),
    })
}

/// Whether a cookie from `url` (whose host is `host`) may name `domain` (RFC 6265 §5.3 step 6,
/// without a public suffix list; see the module's documentation).
fn check_domain(url: &ProbeUrl, host: &str, domain: &str) -> Result<(), &'static str> {
    if domain.ends_with('.') {
        return Err("a Domain ending with a dot");
    }
    if domain == host {
        return Ok(());
    }
    if matches!(url.host, Host::Ip(_)) {
        return Err("a Domain on an IP address that is not that address");
    }
    if !host.ends_with(domain) || !host[..host.len() - domain.len()].ends_with('.') {
        return Err("a Domain the host is not in");
    }
    if !domain.contains('.') {
        return Err("a Domain of a single label");
    }
    Ok(())
}

/// `Max-Age`'s seconds: an optional `-` and digits (a number too large to hold is as far as
/// it can be in its direction); `None` for anything else, which is ignored.
fn parse_max_age(val: &str) -> Option<i64> {
    let digits = val.strip_prefix('-').unwrap_or(val);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(val.parse().unwrap_or(if val.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    }))
}

/// The host of `url` as cookies name it: a DNS name in lower case, or an address without
/// brackets.
fn host_of(url: &ProbeUrl) -> String {
    match &url.host {
        Host::Name(n) => n.clone(),
        Host::Ip(ip) => ip.to_string(),
    }
}

/// Whether cookie `c` goes to `host` (RFC 6265 §5.1.3): its own host, or for a domain cookie
/// a name under that domain too.
fn domain_matches(c: &Cookie, host: &str, host_is_ip: bool) -> bool {
    if c.domain == host {
        return true;
    }
    !c.host_only
        && !host_is_ip
        && host.ends_with(c.domain.as_str())
        && host[..host.len() - c.domain.len()].ends_with('.')
}

/// The path of `url`'s request target, without its query.
fn request_path(url: &ProbeUrl) -> &str {
    let p = &url.path_and_query;
    p.split_once('?').map_or(p.as_str(), |(path, _)| path)
}

/// The default path of a cookie set in answer to a request for `path` (RFC 6265 §5.1.4):
/// up to, not including, its last `/`, or `/`.
fn default_path(path: &str) -> &str {
    if !path.starts_with('/') {
        return "/";
    }
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Whether a cookie of path `cookie` goes to a request for `path` (RFC 6265 §5.1.4).
fn path_matches(cookie: &str, path: &str) -> bool {
    match path.strip_prefix(cookie) {
        Some("") => true,
        Some(rest) => cookie.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// The unix time of a cookie date (RFC 6265 §5.1.1): `Thu, 01 Jan 1970 00:00:00 GMT` and
/// the other forms servers send; `None` when it cannot be read.
fn cookie_date(text: &str) -> Option<i64> {
    let delimiter = |c: char| matches!(c, '\t' | ' '..='/' | ';'..='@' | '['..='`' | '{'..='~');
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    for token in text.split(delimiter).filter(|t| !t.is_empty()) {
        if time.is_none()
            && let Some(t) = clock(token)
        {
            time = Some(t);
        } else if day.is_none()
            && let Some(d) = leading_digits(token, 1, 2)
        {
            day = Some(d);
        } else if month.is_none()
            && let Some(m) = month_of(token)
        {
            month = Some(m);
        } else if year.is_none()
            && let Some(y) = leading_digits(token, 2, 4)
        {
            year = Some(y);
        }
    }
    let (hour, minute, second) = time?;
    let (day, month, mut year) = (day?, month?, year?);
    if (70..=99).contains(&year) {
        year += 1900;
    } else if year <= 69 {
        year += 2000;
    }
    if !(1..=31).contains(&day) || year < 1601 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// `hh:mm:ss` (one or two digits each; the seconds may be followed by a non-digit).
fn clock(token: &str) -> Option<(i64, i64, i64)> {
    let (h, rest) = token.split_once(':')?;
    let (m, s) = rest.split_once(':')?;
    let field = |f: &str| {
        let digits = (1..=2).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| f.parse().ok()).flatten()
    };
    Some((field(h)?, field(m)?, leading_digits(s, 1, 2)?))
}

/// The number `min` to `max` digits long at the start of `token`, when what follows them (if
/// anything) is not a digit.
fn leading_digits(token: &str, min: usize, max: usize) -> Option<i64> {
    let n = token.bytes().take_while(u8::is_ascii_digit).count();
    if n < min || n > max {
        return None;
    }
    token[..n].parse().ok()
}

/// The month (1 to 12) a token names by its first three letters.
fn month_of(token: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let prefix = token.get(..3)?;
    let i = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(prefix))?;
    i64::try_from(i + 1).ok()
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe_url::parse_url;

    /// 2026-01-01T00:00:00Z.
    const NOW: i64 = 1_767_225_600;

    fn url(raw: &str) -> ProbeUrl {
        parse_url(raw).unwrap()
    }

    /// A jar that took `set` (each a `Set-Cookie` value answered to `from`).
    fn jar(from: &str, set: &[&str]) -> Jar {
        let mut jar = Jar::default();
        for s in set {
            jar.store(&url(from), s.as_bytes(), NOW);
        }
        jar
    }

    /// The `Cookie` value `jar` sends to `to`.
    fn sent(jar: &Jar, to: &str) -> Option<String> {
        jar.header(&url(to)).map(|(v, _)| v)
    }

    #[test]
    fn a_host_only_cookie_goes_to_its_host_and_a_domain_cookie_to_subdomains() {
        let j = jar(
            "http://www.example.com/",
            &["a=1", "b=2; Domain=example.com"],
        );
        assert_eq!(
            sent(&j, "http://www.example.com/").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(sent(&j, "http://example.com/").as_deref(), Some("b=2"));
        assert_eq!(
            sent(&j, "http://x.www.example.com/").as_deref(),
            Some("b=2")
        );
        assert_eq!(sent(&j, "http://notexample.com/"), None);
        // Ports are ignored; a leading dot is dropped.
        let j = jar("http://example.com:8080/", &["c=3; Domain=.EXAMPLE.com"]);
        assert_eq!(sent(&j, "https://a.example.com/").as_deref(), Some("c=3"));
    }

    #[test]
    fn a_domain_the_host_is_not_in_is_refused() {
        let mut j = Jar::default();
        let from = url("http://www.example.com/");
        for (set, why) in [
            ("a=1; Domain=other.com", "a Domain the host is not in"),
            ("a=1; Domain=ww.example.com", "a Domain the host is not in"),
            ("a=1; Domain=w.example.com", "a Domain the host is not in"),
            ("a=1; Domain=com", "a Domain of a single label"),
            ("a=1; Domain=example.com.", "a Domain ending with a dot"),
        ] {
            assert_eq!(
                j.store(&from, set.as_bytes(), NOW),
                Stored::Refused("a".into(), why),
                "{set}"
            );
        }
        assert_eq!(sent(&j, "http://www.example.com/"), None);
        // A single label is fine for the host itself.
        let j = jar("http://localhost/", &["a=1; Domain=localhost"]);
        assert_eq!(sent(&j, "http://localhost/").as_deref(), Some("a=1"));
        // On an address: only that address, and host-only.
        let j = jar(
            "http://127.0.0.1/",
            &["a=1; Domain=127.0.0.1", "b=2; Domain=0.0.1"],
        );
        assert_eq!(sent(&j, "http://127.0.0.1:9/").as_deref(), Some("a=1"));
        let j = jar("http://[::1]/", &["a=1"]);
        assert_eq!(sent(&j, "http://[::1]:8080/x").as_deref(), Some("a=1"));
    }

    #[test]
    fn paths_default_to_the_directory_and_match_below_themselves() {
        assert_eq!(default_path("/"), "/");
        assert_eq!(default_path("/login"), "/");
        assert_eq!(default_path("/a/b/login"), "/a/b");
        assert_eq!(default_path("/a/b/"), "/a/b");
        assert!(path_matches("/", "/anything"));
        assert!(path_matches("/a", "/a"));
        assert!(path_matches("/a", "/a/b"));
        assert!(path_matches("/a/", "/a/b"));
        assert!(!path_matches("/a", "/ab"));
        assert!(!path_matches("/a/b", "/a"));
        let j = jar(
            "http://h/app/login?next=/",
            &[
                "d=1",
                "o=2; Path=/other",
                "r=3; Path=/",
                "x=4; Path=relative",
            ],
        );
        // Longer paths first; a Path not starting with / is the default path.
        assert_eq!(
            sent(&j, "http://h/app/home").as_deref(),
            Some("d=1; x=4; r=3")
        );
        assert_eq!(sent(&j, "http://h/home").as_deref(), Some("r=3"));
        assert_eq!(sent(&j, "http://h/other/x?q").as_deref(), Some("o=2; r=3"));
    }

    #[test]
    fn a_secure_cookie_goes_over_https_only() {
        let j = jar("https://h/", &["s=1; Secure", "p=2"]);
        assert_eq!(sent(&j, "https://h/").as_deref(), Some("s=1; p=2"));
        assert_eq!(sent(&j, "http://h/").as_deref(), Some("p=2"));
    }

    #[test]
    fn max_age_and_past_expires_delete_and_a_new_value_replaces() {
        let mut j = jar("http://h/", &["a=1", "b=2", "c=3", "d=4"]);
        let h = url("http://h/");
        assert_eq!(
            j.store(&h, b"a=; Max-Age=0", NOW),
            Stored::Deleted("a".into())
        );
        j.store(
            &h,
            b"b=x; Max-Age=-1; Expires=Fri, 01 Jan 2100 00:00:00 GMT",
            NOW,
        );
        j.store(&h, b"c=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT", NOW);
        // Max-Age wins over Expires; a future or unreadable Expires changes nothing.
        j.store(
            &h,
            b"d=5; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            NOW,
        );
        j.store(&h, b"e=6; Expires=Fri, 01 Jan 2100 00:00:00 GMT", NOW);
        j.store(&h, b"f=7; Expires=soon; Max-Age=x", NOW);
        assert_eq!(sent(&j, "http://h/").as_deref(), Some("d=5; e=6; f=7"));
        // Another path is another cookie.
        j.store(&h, b"d=8; Path=/x", NOW);
        assert_eq!(
            sent(&j, "http://h/x").as_deref(),
            Some("d=8; d=5; e=6; f=7")
        );
    }

    #[test]
    fn cookie_dates_are_read_in_the_forms_servers_send() {
        assert_eq!(cookie_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(cookie_date("Thu, 01-Jan-70 00:00:01 GMT"), Some(1));
        assert_eq!(cookie_date("Thursday, 01-Jan-2026 00:00:00 GMT"), Some(NOW));
        assert_eq!(cookie_date("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
        assert_eq!(
            cookie_date("Wed, 09 Jun 2021 10:18:14 GMT"),
            Some(1_623_233_894)
        );
        for bad in [
            "",
            "tomorrow",
            "Thu, 32 Jan 1970 00:00:00",
            "01 Jan 1970",
            "1 Foo 1999 1:2:3",
        ] {
            assert_eq!(cookie_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn what_a_peer_sends_never_grows_the_jar_past_its_bounds() {
        let h = url("http://h/");
        let mut j = Jar::default();
        for i in 0..MAX_COOKIES {
            let set = format!("c{i}={}", "v".repeat(200));
            assert_eq!(
                j.store(&h, set.as_bytes(), NOW),
                Stored::Kept(format!("c{i}"))
            );
        }
        assert_eq!(
            j.store(&h, b"late=1", NOW),
            Stored::Refused("late".into(), "the jar holds 50 cookies already")
        );
        // Replacing one is still allowed.
        assert_eq!(j.store(&h, b"c0=new", NOW), Stored::Kept("c0".into()));
        assert_eq!(j.cookies.len(), MAX_COOKIES);
        // 50 cookies of 204 bytes do not fit in 8 KiB: the header stops short of it.
        let (value, names) = j.header(&h).unwrap();
        assert!(value.len() <= MAX_HEADER, "{}", value.len());
        assert!(
            names.len() < MAX_COOKIES && names.len() > 30,
            "{}",
            names.len()
        );
        // Too long, control characters, no name, not UTF-8: refused.
        let long = format!("big={}", "v".repeat(MAX_COOKIE));
        let mut j = Jar::default();
        assert!(matches!(
            j.store(&h, long.as_bytes(), NOW),
            Stored::Refused(..)
        ));
        for bad in [
            &b"a=1\r\nX: y"[..],
            b"a=\x001",
            b"=1",
            b"noequals",
            b"a=\xff",
            b"",
        ] {
            assert!(
                matches!(j.store(&h, bad, NOW), Stored::Refused(..)),
                "{bad:?}"
            );
        }
        assert!(j.cookies.is_empty());
    }
}
