//! The `/probe` allowlist: which targets that are not in the targets file `/probe` may probe,
//! and which addresses such a probe may connect to.
//!
//! A rule is a network (`10.0.0.0/8`, `2001:db8::/32`, a bare address) or a host name pattern
//! (`api.example.internal`, `*.example.internal`, where `*` stands for one or more labels).
//! `deny` rules are networks that win over every `allow` rule.
//!
//! Two checks, because a name says nothing about where it leads:
//! - **Before resolution** ([`Allow::admits`]): the target's host must be an address in an
//!   allowed network, or a name that matches a pattern or may resolve into an allowed network.
//! - **After resolution** ([`Allow::permits`], on every address before any connection): an
//!   address is permitted when it is in an allowed network, or when the name matched a pattern
//!   and the address is in none of the ranges no pattern opens (loopback, link-local such as
//!   the cloud metadata address, unspecified, multicast, broadcast). A `deny` network is never
//!   permitted. So a permitted name that resolves into a denied range makes no connection.
//!
//! Imports nothing of this crate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an allowlist entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A network whose prefix length does not fit its family, or is not a number.
    #[error("{0:?} is not a network: the prefix length must be 0-32 (IPv4) or 0-128 (IPv6)")]
    Prefix(String),
    /// Neither an address, a network nor a host name pattern.
    #[error(
        "{0:?} is neither a network (10.0.0.0/8), an address, nor a host name pattern \
         (api.example.internal, *.example.internal)"
    )]
    Invalid(String),
}

/// A network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    /// The network address (host bits cleared).
    addr: IpAddr,
    /// Prefix length.
    prefix: u8,
}

impl Net {
    /// Parse `a.b.c.d/n`, `x::y/n` or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Option<Net>, RuleError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let Ok(addr) = addr.parse::<IpAddr>() else {
            return Ok(None);
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| RuleError::Prefix(text.to_owned()))?,
        };
        Ok(Some(Net {
            addr: mask(addr, prefix),
            prefix,
        }))
    }

    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `ip` with all but its first `prefix` bits cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; anything else as is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses no name pattern opens: only an allowed network can.
fn special(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// A host name pattern, lower case: `api.example.internal`, or `*.example.internal`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// Whether the pattern starts with `*.`.
    wildcard: bool,
    /// The rest: the exact name, or the suffix after `*.`.
    name: String,
}

impl Pattern {
    /// Parse a pattern; `None` unless it is a host name, optionally behind `*.`.
    fn parse(text: &str) -> Option<Pattern> {
        let lower = text.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, lower),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        valid.then_some(Pattern { wildcard, name })
    }

    /// Whether `host` (lower case, no trailing dot) matches.
    fn matches(&self, host: &str) -> bool {
        if self.wildcard {
            host.strip_suffix(self.name.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty())
        } else {
            host == self.name
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// The allowlist of `/probe`: empty (the default) admits nothing that is not configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    /// Allowed networks.
    nets: Vec<Net>,
    /// Allowed host name patterns.
    patterns: Vec<Pattern>,
    /// Denied networks, which win over everything.
    deny: Vec<Net>,
}

/// What the check before resolution decided about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Admitted: `by` names the rule, and whether a name pattern admitted it (which lets its
    /// addresses outside the special ranges through).
    Admitted {
        /// The rule that admitted the host, as written back.
        by: String,
        /// Whether a name pattern admitted it.
        by_name: bool,
    },
    /// Refused, with why.
    Refused(String),
}

impl Allow {
    /// Build from the `allow` and `deny` entries as written; the first bad entry is the error,
    /// with its index.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Allow, (usize, bool, RuleError)> {
        let mut out = Allow::default();
        for (i, rule) in allow.iter().enumerate() {
            match Net::parse(rule).map_err(|e| (i, true, e))? {
                Some(net) => out.nets.push(net),
                None => out.patterns.push(
                    Pattern::parse(rule)
                        .ok_or_else(|| (i, true, RuleError::Invalid(rule.clone())))?,
                ),
            }
        }
        for (i, rule) in deny.iter().enumerate() {
            match Net::parse(rule).map_err(|e| (i, false, e))? {
                Some(net) => out.deny.push(net),
                None => return Err((i, false, RuleError::Invalid(rule.clone()))),
            }
        }
        Ok(out)
    }

    /// Whether the list admits anything at all.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.patterns.is_empty()
    }

    /// The check before resolution, for a host as parsed from a URL (a lower-case name, or an
    /// address literal).
    pub fn admits(&self, host: &str, ip: Option<IpAddr>) -> Admission {
        if let Some(ip) = ip {
            if let Some(d) = self.deny.iter().find(|d| d.contains(ip)) {
                return Admission::Refused(format!("{ip} is in the denied network {d}"));
            }
            return match self.nets.iter().find(|n| n.contains(ip)) {
                Some(n) => Admission::Admitted {
                    by: n.to_string(),
                    by_name: false,
                },
                None => Admission::Refused(format!(
                    "{ip} is in no allowed network; an `allow` entry like {} would admit it",
                    Net {
                        addr: canonical(ip),
                        prefix: if canonical(ip).is_ipv4() { 32 } else { 128 },
                    }
                )),
            };
        }
        let host = host.trim_end_matches('.');
        if let Some(p) = self.patterns.iter().find(|p| p.matches(host)) {
            return Admission::Admitted {
                by: p.to_string(),
                by_name: true,
            };
        }
        if let Some(n) = self.nets.first() {
            // Its addresses decide, after resolution.
            return Admission::Admitted {
                by: format!("{n} (if every address it resolves to is allowed)"),
                by_name: false,
            };
        }
        let suggestion = match host.split_once('.') {
            Some((_, parent)) if parent.contains('.') => format!("{host} or *.{parent}"),
            _ => host.to_owned(),
        };
        Admission::Refused(format!(
            "{host} matches no allowed name; an `allow` entry like {suggestion} would admit it"
        ))
    }

    /// The check after resolution, on one address of a host that [`Allow::admits`] admitted
    /// (`by_name` from its admission): `Err` says why no connection may be made to it.
    pub fn permits(&self, ip: IpAddr, by_name: bool) -> Result<(), String> {
        if let Some(d) = self.deny.iter().find(|d| d.contains(ip)) {
            return Err(format!("{ip} is in the denied network {d}"));
        }
        if self.nets.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        if by_name && !special(ip) {
            return Ok(());
        }
        Err(if by_name {
            format!(
                "{ip} is a loopback, link-local or other special address, which only an allowed \
                 network admits"
            )
        } else {
            format!("{ip} is in no allowed network")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(a: &[&str], d: &[&str]) -> Allow {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Allow::new(&s(a), &s(d)).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let n = Net::parse("10.1.2.3/8").unwrap().unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert!(n.contains(ip("10.255.0.1")));
        assert!(n.contains(ip("::ffff:10.0.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::a00:1")));
        let n = Net::parse("2001:db8::/32").unwrap().unwrap();
        assert!(n.contains(ip("2001:db8:ffff::1")));
        assert!(!n.contains(ip("2001:db9::1")));
        assert!(
            Net::parse("0.0.0.0/0")
                .unwrap()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert_eq!(
            Net::parse("192.0.2.1").unwrap().unwrap().to_string(),
            "192.0.2.1/32"
        );
        assert!(Net::parse("10.0.0.0/33").is_err());
        assert!(Net::parse("10.0.0.0/x").is_err());
        assert_eq!(Net::parse("api.example").unwrap(), None);
    }

    #[test]
    fn patterns_match_names_and_suffixes_on_label_boundaries() {
        let a = allow(&["*.example.internal", "api.other.test"], &[]);
        let admitted = |h: &str| matches!(a.admits(h, None), Admission::Admitted { .. });
        assert!(admitted("a.example.internal"));
        assert!(admitted("a.b.example.internal"));
        assert!(admitted("api.other.test"));
        assert!(admitted("api.other.test."));
        assert!(!admitted("example.internal"));
        assert!(!admitted("badexample.internal"));
        assert!(!admitted("x.api.other.test"));
        assert!(!admitted("other.test"));
        match a.admits("shop.corp.example", None) {
            Admission::Refused(why) => {
                assert!(why.contains("shop.corp.example or *.corp.example"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(Allow::new(&["bad name!".into()], &[]).is_err());
        assert!(Allow::new(&[], &["*.x.test".into()]).is_err());
    }

    #[test]
    fn addresses_are_checked_after_resolution() {
        let a = allow(&["10.0.0.0/8", "*.example.internal"], &["10.9.0.0/16"]);
        // A literal: its network decides, deny first.
        assert!(matches!(
            a.admits("10.1.1.1", Some(ip("10.1.1.1"))),
            Admission::Admitted { by_name: false, .. }
        ));
        assert!(matches!(
            a.admits("10.9.1.1", Some(ip("10.9.1.1"))),
            Admission::Refused(_)
        ));
        match a.admits("127.0.0.1", Some(ip("127.0.0.1"))) {
            Admission::Refused(why) => assert!(why.contains("127.0.0.1/32"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A permitted name: public addresses pass, special ranges and denied networks do not.
        assert_eq!(a.permits(ip("192.0.2.7"), true), Ok(()));
        assert!(a.permits(ip("169.254.169.254"), true).is_err());
        assert!(a.permits(ip("127.0.0.1"), true).is_err());
        assert!(a.permits(ip("::1"), true).is_err());
        assert!(a.permits(ip("fe80::1"), true).is_err());
        assert!(a.permits(ip("10.9.0.1"), true).is_err());
        assert_eq!(a.permits(ip("10.1.0.1"), true), Ok(()));
        // A name no pattern matches goes on only into an allowed network.
        assert!(matches!(
            a.admits("host.elsewhere.test", None),
            Admission::Admitted { by_name: false, .. }
        ));
        assert_eq!(a.permits(ip("10.1.0.1"), false), Ok(()));
        assert!(a.permits(ip("192.0.2.7"), false).is_err());
        // An allowed network opens even a special range.
        let lo = allow(&["127.0.0.0/8"], &[]);
        assert_eq!(lo.permits(ip("127.0.0.1"), false), Ok(()));
        // The default admits nothing.
        assert!(Allow::default().is_empty());
        assert!(matches!(
            Allow::default().admits("a.test", None),
            Admission::Refused(_)
        ));
    }
}
