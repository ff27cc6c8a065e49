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

/// An IPv4-mapped or IPv4-compatible IPv6 address as the IPv4 address it carries (`::` and
/// `::1` stay IPv6); anything else as is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            // IPv4-compatible (`::a.b.c.d`, RFC 4291 §2.5.5.1, deprecated): judged as its
            // IPv4 address, whatever the kernel would do with it.
            None if u128::from(a) >> 32 == 0 && u128::from(a) > 1 => {
                IpAddr::V4(Ipv4Addr::from(u128::from(a) as u32))
            }
            None => ip,
        },
        v4 => v4,
    }
}

/// Where a connection to `ip` lands, as the allowlist judges it: the IPv4 address of an
/// IPv4-mapped or IPv4-compatible one, and this host's loopback address for the unspecified
/// ones (`0.0.0.0/8` and `::`: a connection to them reaches the local host).
pub fn landing(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(a) if a.octets()[0] == 0 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The ranges no name pattern and no wider network opens: loopback, `0.0.0.0/8`, link-local
/// (the cloud metadata address among them), multicast and broadcast, and their IPv6
/// counterparts. Only an allowed network inside one of them opens (part of) it.
const SPECIAL: &[(IpAddr, u8)] = &[
    (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
    (IpAddr::V4(Ipv4Addr::new(224, 0, 0, 0)), 4),
    (IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)), 32),
    (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 128),
    (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
    (IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)), 8),
];

/// The special range `ip` is in, if any.
fn special_range(ip: IpAddr) -> Option<Net> {
    let ip = canonical(ip);
    SPECIAL
        .iter()
        .map(|&(addr, prefix)| Net { addr, prefix })
        .find(|n| n.contains(ip))
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
    /// address literal, judged by where a connection to it lands: see [`landing`]).
    pub fn admits(&self, host: &str, ip: Option<IpAddr>) -> Admission {
        if let Some(ip) = ip {
            return match self.judge(ip, false) {
                Ok(by) => Admission::Admitted {
                    by: by.map_or_else(|| ip.to_string(), |n| n.to_string()),
                    by_name: false,
                },
                Err(Verdict::Denied(why)) => Admission::Refused(why),
                Err(Verdict::Outside(why)) => {
                    let lands = landing(ip);
                    Admission::Refused(format!(
                        "{why}; an `allow` entry like {} would admit it",
                        Net {
                            addr: lands,
                            prefix: if lands.is_ipv4() { 32 } else { 128 },
                        }
                    ))
                }
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
    /// (`by_name` from its admission), and again on the address a connection reached: `Err`
    /// says why no connection may be made to it (or why the one made is closed).
    pub fn permits(&self, ip: IpAddr, by_name: bool) -> Result<(), String> {
        self.judge(ip, by_name).map(|_| ()).map_err(|v| match v {
            Verdict::Denied(why) | Verdict::Outside(why) => why,
        })
    }

    /// The one decision on an address, by where a connection to it lands: a `deny` network
    /// that holds the address as written or where it lands refuses it; an address that lands
    /// in a special range (loopback, the local host, link-local, multicast, broadcast) is
    /// permitted only by an allowed network inside that range, so `0.0.0.0/0` never opens
    /// loopback; any other address by an allowed network, or by a name pattern (`by_name`).
    /// `Ok` names the network that permitted it, if one did.
    fn judge(&self, ip: IpAddr, by_name: bool) -> Result<Option<Net>, Verdict> {
        let lands = landing(ip);
        let shown = if lands == canonical(ip) {
            ip.to_string()
        } else {
            format!("{ip} (which reaches {lands})")
        };
        if let Some(d) = self
            .deny
            .iter()
            .find(|d| d.contains(ip) || d.contains(lands))
        {
            return Err(Verdict::Denied(format!(
                "{shown} is in the denied network {d}"
            )));
        }
        if let Some(range) = special_range(lands) {
            return self
                .nets
                .iter()
                .find(|n| n.contains(lands) && n.prefix >= range.prefix && range.contains(n.addr))
                .map(|n| Some(*n))
                .ok_or_else(|| {
                    Verdict::Outside(format!(
                        "{shown} is a loopback, local-host, link-local, multicast or broadcast \
                         address (in {range}), which only an allowed network inside that range \
                         admits"
                    ))
                });
        }
        match self.nets.iter().find(|n| n.contains(lands)) {
            Some(n) => Ok(Some(*n)),
            None if by_name => Ok(None),
            None => Err(Verdict::Outside(format!(
                "{shown} is in no allowed network"
            ))),
        }
    }
}

/// Why [`Allow::judge`] refused an address.
#[derive(Debug)]
enum Verdict {
    /// A `deny` network holds it.
    Denied(String),
    /// No allowed network (or pattern) opens it.
    Outside(String),
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
        // IPv4-compatible: judged as the IPv4 address it carries.
        assert!(n.contains(ip("::a00:1")));
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
    #[test]
    fn addresses_are_judged_by_where_a_connection_lands() {
        let a = allow(
            &["0.0.0.0/0", "::/0"],
            &["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10"],
        );
        let local = [
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "::ffff:0.0.0.0",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::7f00:1",
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "224.0.0.1",
            "255.255.255.255",
            "ff02::1",
        ];
        for bad in local {
            assert!(a.permits(ip(bad), false).is_err(), "{bad}");
            assert!(a.permits(ip(bad), true).is_err(), "{bad}");
            assert!(
                matches!(a.admits(bad, Some(ip(bad))), Admission::Refused(_)),
                "{bad}"
            );
        }
        assert_eq!(a.permits(ip("192.0.2.7"), false), Ok(()));
        assert_eq!(a.permits(ip("::ffff:192.0.2.7"), false), Ok(()));
        assert_eq!(a.permits(ip("2001:db8::1"), false), Ok(()));
        // Without a deny list, a network wider than a special range still does not open it.
        let wide = allow(&["0.0.0.0/0", "::/0"], &[]);
        for bad in local {
            assert!(wide.permits(ip(bad), false).is_err(), "{bad}");
        }
        // A network inside loopback opens it, and so the unspecified address, which lands
        // there; a deny of the unspecified range catches it as written.
        let lo = allow(&["127.0.0.0/8"], &[]);
        assert_eq!(lo.permits(ip("0.0.0.0"), false), Ok(()));
        assert_eq!(lo.permits(ip("::ffff:127.0.0.1"), false), Ok(()));
        assert!(lo.permits(ip("::1"), false).is_err());
        let no_zero = allow(&["127.0.0.0/8"], &["0.0.0.0/8"]);
        assert!(no_zero.permits(ip("0.0.0.0"), false).is_err());
        assert_eq!(landing(ip("::")), ip("::1"));
        assert_eq!(landing(ip("0.0.0.0")), ip("127.0.0.1"));
        assert_eq!(landing(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
