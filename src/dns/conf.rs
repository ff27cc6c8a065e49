//! The resolver's files, read as glibc reads them: `resolv.conf` (name servers, search list,
//! `ndots`, `timeout`, `attempts`, `rotate`) and `hosts`.
//!
//! Parsing is pure (text in, settings out) so that it is tested without files; the one thing it
//! asks the system is the index of the interface a name server's zone names (`fe80::53%eth0`),
//! as glibc asks when it reads the file. `resolv.conf` has no errors, as glibc has none: every
//! line is read as glibc reads it (`ndots:abc` is 0, `nameserver dns.example` is skipped), and
//! a line read otherwise than its writer probably meant gives a warning that names the file,
//! line and column, like every config error.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::time::Duration;

use crate::config_error::ConfigError;

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// glibc uses at most this many `nameserver` lines (`MAXNS`); later ones are ignored.
pub const MAX_NAMESERVERS: usize = 3;

/// glibc caps `ndots` at 15 (`RES_MAXNDOTS`).
const MAX_NDOTS: i32 = 15;

/// glibc caps `timeout` at 30 s (`RES_MAXRETRANS`).
const MAX_TIMEOUT_SECS: i32 = 30;

/// glibc caps `attempts` at 5 (`RES_MAXRETRY`).
const MAX_ATTEMPTS: i32 = 5;

/// Largest resolver file read: both are a few lines in practice.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// The keywords of `resolv.conf` that the exporter reads. glibc takes one only at the very
/// start of a line, followed by a space or a tab.
const KEYWORDS: [&str; 4] = ["nameserver", "search", "domain", "options"];

/// What `resolv.conf` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Servers to ask, in order (at most [`MAX_NAMESERVERS`]); `127.0.0.1:53` when none. A
    /// link-local IPv6 server carries the index of its interface as its scope ID.
    pub nameservers: Vec<SocketAddr>,
    /// Domains appended to names with fewer than `ndots` dots (`search`, or `domain`).
    pub search: Vec<String>,
    /// Dots a name needs to be tried as written before the search list (0 to 15).
    pub ndots: usize,
    /// How long to wait for one server's answer (1 to 30 s).
    pub timeout: Duration,
    /// How many times to go through the servers (0 to 5); 0, glibc's reading of
    /// `attempts:0` or `attempts:abc`, sends no query at all.
    pub attempts: usize,
    /// Spread queries over the servers instead of always asking the first.
    pub rotate: bool,
}

impl Default for ResolvConf {
    /// glibc's defaults for an empty or missing file.
    fn default() -> Self {
        ResolvConf {
            nameservers: vec![SocketAddr::from(([127, 0, 0, 1], DNS_PORT))],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
        }
    }
}

/// A `file:line:column: message` error or warning.
fn error(file: &Path, line: usize, column: usize, message: String) -> ConfigError {
    ConfigError::new(file, line, column, message)
}

/// Column (1-based, in characters) of `word` within `line`, which it is a slice of.
fn column_of(line: &str, word: &str) -> usize {
    let offset = (word.as_ptr() as usize).saturating_sub(line.as_ptr() as usize);
    line.get(..offset).map_or(1, |s| s.chars().count() + 1)
}

/// The number at the start of `s` as `strtoul(s, &end, 0)` reads it when `s` starts with a
/// digit: hexadecimal after `0x`, octal after `0`, else decimal. `None` when `s` starts with no
/// digit or the number needs more than 32 bits (`inet_aton` refuses those); else the number
/// and the text after it.
fn c_number(s: &str) -> Option<(u32, &str)> {
    if !s.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .filter(|h| h.starts_with(|c: char| c.is_ascii_hexdigit()));
    let (radix, digits) = match hex {
        Some(h) => (16, h),
        None if s.starts_with('0') => (8, s),
        None => (10, s),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let value = u32::from_str_radix(&digits[..end], radix).ok()?;
    Some((value, &digits[end..]))
}

/// An IPv4 address as glibc's `inet_aton` reads a whole word: one to four numbers separated by
/// dots, each decimal, octal (a leading `0`) or hexadecimal (`0x`), the last one filling the
/// bytes left: `127.1` is 127.0.0.1, `10.0.0.010` is 10.0.0.8.
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let mut bytes = [0u8; 3];
    let mut parts = 0;
    let mut rest = s;
    let last = loop {
        let (value, after) = c_number(rest)?;
        if after.is_empty() {
            break value;
        }
        rest = after.strip_prefix('.')?;
        if parts == bytes.len() {
            return None;
        }
        bytes[parts] = u8::try_from(value).ok()?;
        parts += 1;
    };
    let room = 8 * (4 - parts as u32);
    if room < 32 && last >> room != 0 {
        return None;
    }
    let high = bytes[..parts]
        .iter()
        .enumerate()
        .fold(0u32, |word, (i, b)| word | (u32::from(*b) << (24 - 8 * i)));
    Some(Ipv4Addr::from(high | last))
}

/// Whether glibc reads an interface name as the zone of `ip`: a link-local address, or a
/// link- or node-local multicast one (`__inet6_scopeid_pton`).
fn takes_interface(ip: &Ipv6Addr) -> bool {
    let o = ip.octets();
    let link_local = o[0] == 0xfe && o[1] & 0xc0 == 0x80;
    let multicast_local = o[0] == 0xff && matches!(o[1] & 0x0f, 1 | 2);
    link_local || multicast_local
}

/// The index of the interface named `name`, or `None` when there is none.
fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads the NUL-terminated string it is given and nothing else.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The scope ID glibc gives `ip` for the zone written after `%`: the index of the interface of
/// that name (for a link-local address only), else a decimal number of 32 bits; `None` for
/// anything else, which glibc leaves without a zone.
fn scope_id(ip: &Ipv6Addr, zone: &str) -> Option<u32> {
    if takes_interface(ip)
        && let Some(index) = interface_index(zone)
    {
        return Some(index);
    }
    if zone.starts_with(|c: char| c.is_ascii_digit()) {
        return zone.parse().ok();
    }
    None
}

/// An IP address of a name server as glibc reads it, with `port`: IPv4 as `inet_aton` reads it;
/// IPv6 with an optional zone. Returns the address and a warning when glibc reads it otherwise
/// than it is written, or why it is no address.
fn server_address(s: &str, ip: &str, port: u16) -> Result<(SocketAddr, Option<String>), String> {
    if let Some(v4) = inet_aton(ip) {
        let note = (ip.parse::<Ipv4Addr>() != Ok(v4))
            .then(|| format!("nameserver {s} is read as {v4}, as glibc reads it"));
        return Ok((SocketAddr::from((v4, port)), note));
    }
    let (text, zone) = match ip.split_once('%') {
        Some((text, zone)) => (text, Some(zone)),
        None => (ip, None),
    };
    let Ok(v6) = text.parse::<Ipv6Addr>() else {
        if zone.is_some() && inet_aton(text).is_some() {
            return Err(format!(
                "nameserver {s:?}: glibc reads a zone (%) only after an IPv6 address"
            ));
        }
        return Err(format!(
            "nameserver {s:?} is not an IP address (optionally with #port)"
        ));
    };
    let (scope, note) = match zone {
        None if takes_interface(&v6) => (
            0,
            Some(format!(
                "nameserver {s} is link-local without a zone (%interface): it cannot be reached"
            )),
        ),
        None => (0, None),
        Some(zone) => match scope_id(&v6, zone) {
            Some(scope) => (scope, None),
            None if takes_interface(&v6) => (
                0,
                Some(format!(
                    "nameserver {s}: {zone:?} is no interface of this host and no number, so \
                     the server is asked without a zone, as glibc asks it, and cannot be reached"
                )),
            ),
            None => (
                0,
                Some(format!(
                    "nameserver {s}: the zone {zone:?} is ignored, as glibc ignores a zone that \
                     is not a number after an address that is not link-local"
                )),
            ),
        },
    };
    Ok((SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)), note))
}

/// A name server as glibc reads it: an IPv4 address as `inet_aton` reads it (`127.1` too), or
/// an IPv6 address with an optional zone, an interface name (for a link-local address) or a
/// number: `fe80::53%eth0`, `fe80::53%2`. A port may follow, an extension for tests and
/// containers that run a resolver on another port: `IP#port`, `IPv4:port` or `[IPv6]:port`.
/// Returns the address and a warning when glibc reads it otherwise than it is written (a zone
/// that is no interface), or why it is no address.
pub fn parse_nameserver(s: &str) -> Result<(SocketAddr, Option<String>), String> {
    let bad = || format!("nameserver {s:?} is not an IP address (optionally with #port)");
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("nameserver {s:?}: port {p:?} is not 1 to 65535"))
    };
    if let Some((addr, p)) = s.split_once('#') {
        return server_address(s, addr, port(p)?);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']').ok_or_else(bad)?;
        let p = match tail {
            "" => DNS_PORT,
            t => port(t.strip_prefix(':').ok_or_else(bad)?)?,
        };
        return server_address(s, addr, p);
    }
    if let Some((addr, p)) = s.split_once(':')
        && !p.contains(':')
    {
        return server_address(s, addr, port(p)?);
    }
    server_address(s, s, DNS_PORT)
}

/// The number C's `atoi` reads at the start of `s`, as glibc computes it: `(int) strtol(s,
/// NULL, 10)`. White space before it is skipped (`ndots: 3` is 3), then a sign, then digits up
/// to the first other character (`3x` is 3; `abc` is 0); a number beyond `long` is its limit,
/// then cut to 32 bits as the cast to `int` cuts it (`4294967299` is 3).
fn atoi(s: &str) -> i32 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    // The magnitude, held at 2^64 once past it: enough to see where strtol stops.
    let magnitude = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0u128, |m, d| (m * 10 + u128::from(d - b'0')).min(1 << 64));
    let long = if negative {
        i64::try_from(magnitude).map_or(i64::MIN, |m| -m)
    } else {
        i64::try_from(magnitude).unwrap_or(i64::MAX)
    };
    // The low 32 bits, as the conversion to `int` keeps them on every target glibc supports.
    long as i32
}

/// glibc's `ndots` for the number read: at most 15; a negative number kept in the 4 bits glibc
/// stores it in (`-1` is 15, `-16` is 0).
fn ndots_of(n: i32) -> usize {
    if n > MAX_NDOTS {
        MAX_NDOTS as usize
    } else {
        (n & 0xF) as usize
    }
}

/// glibc's wait for one server, in seconds, for the number read: at most 30, and never under
/// 1 s (glibc waits 1 s when the number is 0 or negative).
fn timeout_of(n: i32) -> u64 {
    u64::from(n.clamp(1, MAX_TIMEOUT_SECS).unsigned_abs())
}

/// glibc's rounds through the servers for the number read: at most 5; 0 or a negative number
/// is 0, no query at all.
fn attempts_of(n: i32) -> usize {
    n.clamp(0, MAX_ATTEMPTS).unsigned_abs() as usize
}

/// The warning for option `token`, whose number glibc reads as `read` (`max` is its cap): when
/// its `value` is not written as that very number, or when there is a `consequence` to tell
/// (which ends the message); else `None`.
fn odd_option(token: &str, value: &str, read: u64, max: u64, consequence: &str) -> Option<String> {
    let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let same = plain && value.parse::<u64>() == Ok(read);
    if same && consequence.is_empty() {
        return None;
    }
    let how = if same {
        ""
    } else if plain && read == max {
        ", glibc's largest"
    } else {
        ", as glibc reads it"
    };
    Some(format!(
        "options {token} is read as {read}{how}{consequence}"
    ))
}

/// An `options` line after its keyword, as glibc's `res_setoptions` reads it: words separated
/// by spaces or tabs; `ndots:`, `timeout:` and `attempts:` take the number `atoi` reads after
/// the colon; a word that starts with `rotate` is `rotate`; anything else is ignored. `warn`
/// gets each value read otherwise than written, with the word it is about.
fn read_options(rest: &str, conf: &mut ResolvConf, mut warn: impl FnMut(&str, String)) {
    let mut offset = 0;
    for token in rest.split([' ', '\t']) {
        let start = offset;
        offset += token.len() + 1;
        if token.is_empty() {
            continue;
        }
        // atoi reads on past the word when the value is missing (`ndots: 3`), as in glibc.
        let after = |name: &str| rest.get(start + name.len()..).unwrap_or_default();
        let note = if let Some(value) = token.strip_prefix("ndots:") {
            let read = ndots_of(atoi(after("ndots:")));
            conf.ndots = read;
            odd_option(token, value, read as u64, MAX_NDOTS as u64, "")
        } else if let Some(value) = token.strip_prefix("timeout:") {
            let n = atoi(after("timeout:"));
            let read = timeout_of(n);
            conf.timeout = Duration::from_secs(read);
            let consequence = if n < 1 {
                " (glibc waits at least 1 s)"
            } else {
                ""
            };
            odd_option(token, value, read, MAX_TIMEOUT_SECS as u64, consequence)
        } else if let Some(value) = token.strip_prefix("attempts:") {
            let read = attempts_of(atoi(after("attempts:")));
            conf.attempts = read;
            let consequence = if read == 0 {
                ": no query is ever sent, so every lookup fails, as with glibc"
            } else {
                ""
            };
            odd_option(token, value, read as u64, MAX_ATTEMPTS as u64, consequence)
        } else if token.starts_with("rotate") {
            conf.rotate = true;
            (token != "rotate")
                .then(|| format!("options {token} is read as rotate, as glibc reads it"))
        } else if matches!(token, "ndots" | "timeout" | "attempts") {
            Some(format!(
                "options {token} has no value ({token}:N): ignored, as glibc ignores it"
            ))
        } else {
            None
        };
        if let Some(note) = note {
            warn(token, note);
        }
    }
}

/// Parse `resolv.conf` text as glibc reads it: a setting is a line that starts with its
/// keyword and a space or tab; a line that starts with `#` or `;` is a comment; unknown
/// keywords and options, and a `nameserver` that is no address, are ignored. Nothing is an
/// error. Returns the settings and a warning for each line or value read otherwise than its
/// writer probably meant: an odd number (`ndots:abc` is 0, `ndots:99` is 15), a skipped
/// `nameserver`, a zone that is no interface, an indented setting (which glibc ignores).
pub fn parse_resolv_conf(file: &Path, text: &str) -> (ResolvConf, Vec<ConfigError>) {
    let mut conf = ResolvConf {
        nameservers: Vec::new(),
        ..ResolvConf::default()
    };
    let mut warnings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let mut warn = |word: &str, message: String| {
            warnings.push(error(file, line_no, column_of(line, word), message));
        };
        if line.starts_with(['#', ';']) {
            continue;
        }
        let keyword = KEYWORDS.into_iter().find(|k| {
            line.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with([' ', '\t']))
        });
        let Some(keyword) = keyword else {
            // Lines that look like a setting but that glibc skips.
            let trimmed = line.trim_start_matches([' ', '\t']);
            let word = trimmed.split([' ', '\t']).next().unwrap_or_default();
            if KEYWORDS.contains(&word) && trimmed.len() < line.len() {
                warn(
                    word,
                    format!(
                        "{word} is indented: glibc reads a setting only at the start of a line, \
                         so the line is ignored"
                    ),
                );
            } else if word == "nameserver" {
                warn(
                    word,
                    "nameserver without an address: ignored, as glibc ignores it".into(),
                );
            }
            continue;
        };
        let rest = &line[keyword.len()..];
        let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty()).peekable();
        match keyword {
            "nameserver" => {
                let Some(addr) = words.next() else {
                    warn(
                        keyword,
                        "nameserver without an address: ignored, as glibc ignores it".into(),
                    );
                    continue;
                };
                match parse_nameserver(addr) {
                    Err(message) => warn(addr, format!("{message}: ignored, as glibc ignores it")),
                    Ok((server, note)) => {
                        if let Some(note) = note {
                            warn(addr, note);
                        }
                        if conf.nameservers.len() < MAX_NAMESERVERS {
                            conf.nameservers.push(server);
                        } else {
                            warn(
                                addr,
                                format!(
                                    "nameserver {addr} is ignored: glibc asks the first \
                                     {MAX_NAMESERVERS} only"
                                ),
                            );
                        }
                    }
                }
            }
            // The last `search` or `domain` line with a domain wins, as in glibc.
            "search" | "domain" => {
                if words.peek().is_none() {
                    continue;
                }
                conf.search = words
                    .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                    .filter(|d| !d.is_empty())
                    .collect();
                if keyword == "domain" {
                    conf.search.truncate(1);
                }
            }
            _ => read_options(rest, &mut conf, warn),
        }
    }
    if conf.nameservers.is_empty() {
        conf.nameservers = ResolvConf::default().nameservers;
    }
    (conf, warnings)
}

/// Names and their addresses from a hosts file, names in lower case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    /// Every address of a name, in file order.
    names: HashMap<String, Vec<IpAddr>>,
}

impl Hosts {
    /// The addresses of `name`, if the file lists it.
    pub fn get(&self, name: &str) -> Option<&[IpAddr]> {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.names.get(name).map(Vec::as_slice)
    }

    /// How many names the file lists.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the file lists no name.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Parse hosts-file text: `address name [alias...]`, `#` comments. A line whose first word is
/// not an address is skipped, as glibc does, so one odd line does not stop name resolution.
pub fn parse_hosts(text: &str) -> Hosts {
    let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in text.lines() {
        let content = line.split('#').next().unwrap_or_default();
        let mut words = content.split_whitespace();
        let Some(addr) = words.next() else { continue };
        let addr = addr.split_once('%').map_or(addr, |(ip, _zone)| ip);
        let Ok(ip) = addr.parse::<IpAddr>() else {
            continue;
        };
        for name in words {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let list = names.entry(name).or_default();
            if !list.contains(&ip) {
                list.push(ip);
            }
        }
    }
    Hosts { names }
}

/// Read a resolver file: a regular file of at most [`MAX_FILE_SIZE`] bytes, as text. The file
/// is checked through the descriptor that is read (a path swapped for `/dev/zero` between a
/// check and the read changes nothing), and never more than [`MAX_FILE_SIZE`] bytes are read,
/// whatever size it claims (files under `/proc` claim 0).
pub fn read(file: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let fail = |message: String| error(file, 1, 1, message);
    let too_big = |size: u64| {
        fail(format!(
            "is {size} bytes, more than the {MAX_FILE_SIZE} a resolver file may have"
        ))
    };
    let opened = std::fs::File::open(file).map_err(|e| fail(format!("cannot read: {e}")))?;
    let meta = opened
        .metadata()
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    opened
        .take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(fail(format!(
            "holds more than the {MAX_FILE_SIZE} bytes a resolver file may have"
        )));
    }
    String::from_utf8(bytes).map_err(|_| fail("is not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> ResolvConf {
        let (conf, warnings) = parse_resolv_conf(Path::new("resolv.conf"), text);
        assert_eq!(warnings, [], "{text:?}");
        conf
    }

    /// The settings and the warnings, each as `line:column: message`.
    fn warned(text: &str) -> (ResolvConf, Vec<String>) {
        let (conf, warnings) = parse_resolv_conf(Path::new("resolv.conf"), text);
        let warnings = warnings
            .iter()
            .map(|w| format!("{}:{}: {}", w.line, w.column, w.message))
            .collect();
        (conf, warnings)
    }

    #[test]
    fn resolv_conf_as_glibc_reads_it() {
        let c = conf(
            "# comment\nnameserver 10.0.0.1\nnameserver ::1 ; trailing\nsearch Corp.example. lab.example\n\
             options ndots:2 timeout:3 attempts:4 rotate edns0\nnameserver 10.0.0.3\n",
        );
        assert_eq!(
            c.nameservers,
            [
                "10.0.0.1:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "10.0.0.3:53".parse().unwrap()
            ]
        );
        assert_eq!(c.search, ["corp.example", "lab.example"]);
        assert_eq!((c.ndots, c.attempts, c.rotate), (2, 4, true));
        assert_eq!(c.timeout, Duration::from_secs(3));
        // Empty: glibc's defaults. `domain` after `search` wins; a `search` line without a
        // domain changes nothing.
        assert_eq!(conf(""), ResolvConf::default());
        assert_eq!(conf("search a b\ndomain c\n").search, ["c".to_owned()]);
        assert_eq!(conf("search a b\nsearch \n").search, ["a", "b"]);
        // A fourth server is not asked.
        let (c, w) = warned(
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n",
        );
        assert_eq!(c.nameservers.len(), 3);
        assert_eq!(
            w,
            ["4:12: nameserver 10.0.0.4 is ignored: glibc asks the first 3 only"]
        );
    }

    /// `(ndots, timeout in seconds, attempts)`.
    fn numbers(c: &ResolvConf) -> (usize, u64, usize) {
        (c.ndots, c.timeout.as_secs(), c.attempts)
    }

    #[test]
    fn odd_option_values_are_read_as_glibc_reads_them_with_a_warning() {
        // Each value as glibc 2.36 reads it (`tests/resolvers.rs` asks getent): atoi's number,
        // then glibc's caps; a negative ndots keeps its low 4 bits.
        for (option, want) in [
            ("ndots:abc", (0, 5, 2)),
            ("ndots:3x", (3, 5, 2)),
            ("ndots:+4", (4, 5, 2)),
            ("ndots:", (0, 5, 2)),
            ("ndots: 3", (3, 5, 2)),
            ("ndots:-1", (15, 5, 2)),
            ("ndots:-2", (14, 5, 2)),
            ("ndots:-16", (0, 5, 2)),
            ("ndots:-17", (15, 5, 2)),
            ("ndots:99", (15, 5, 2)),
            ("ndots:4294967299", (3, 5, 2)),
            ("ndots:99999999999999999999999", (15, 5, 2)),
            ("ndots:-99999999999999999999999", (0, 5, 2)),
            ("ndots:0x5", (0, 5, 2)),
            ("timeout:abc", (1, 1, 2)),
            ("timeout:0", (1, 1, 2)),
            ("timeout:-5", (1, 1, 2)),
            ("timeout:2x", (1, 2, 2)),
            ("timeout:99", (1, 30, 2)),
            ("attempts:x", (1, 5, 0)),
            ("attempts:0", (1, 5, 0)),
            ("attempts:-1", (1, 5, 0)),
            ("attempts:3x", (1, 5, 3)),
            ("attempts:50", (1, 5, 5)),
        ] {
            let (c, w) = warned(&format!("nameserver 10.0.0.1\noptions rotate {option}\n"));
            assert_eq!(numbers(&c), want, "{option}");
            assert_eq!(w.len(), 1, "{option}: {w:?}");
            assert!(w[0].starts_with("2:16: options "), "{option}: {w:?}");
        }
        let (_, w) = warned("options ndots:abc ndots:99 attempts:0 timeout:0\n");
        assert_eq!(
            w,
            [
                "1:9: options ndots:abc is read as 0, as glibc reads it",
                "1:19: options ndots:99 is read as 15, glibc's largest",
                "1:28: options attempts:0 is read as 0: no query is ever sent, so every lookup \
                 fails, as with glibc",
                "1:39: options timeout:0 is read as 1, as glibc reads it (glibc waits at least 1 s)",
            ]
        );
        // The last value wins; a word that starts with `rotate` is rotate; `ndots` alone is
        // ignored; plain values within the caps need no warning.
        let (c, w) = warned("options ndots:2 ndots:x rotatex ndots\n");
        assert_eq!((c.ndots, c.rotate), (0, true));
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[2].contains("ndots has no value"), "{w:?}");
        assert_eq!(
            numbers(&conf("options ndots:015 timeout:30 attempts:05\n")),
            (15, 30, 5)
        );
    }

    #[test]
    fn atoi_is_c_atoi() {
        for (text, want) in [
            ("7", 7),
            ("  -12z", -12),
            ("+3", 3),
            ("", 0),
            ("-", 0),
            ("x1", 0),
            ("2147483648", i32::MIN),
            ("4294967299", 3),
            ("9223372036854775807", -1),
            ("9223372036854775808", -1),
            ("-9223372036854775808", 0),
            ("-9223372036854775809", 0),
        ] {
            assert_eq!(atoi(text), want, "{text:?}");
        }
    }

    #[test]
    fn nameserver_addresses_and_ports() {
        let lo = interface_index("lo").expect("the loopback interface");
        for (text, want) in [
            ("127.0.0.1", "127.0.0.1:53"),
            ("127.0.0.1#5353", "127.0.0.1:5353"),
            ("127.0.0.1:5353", "127.0.0.1:5353"),
            ("[::1]:5353", "[::1]:5353"),
            ("::1#5353", "[::1]:5353"),
            // Zones: an interface name or a number, with or without a port.
            ("fe80::1%lo", &format!("[fe80::1%{lo}]:53")),
            ("fe80::1%7", "[fe80::1%7]:53"),
            ("[fe80::1%lo]:5353", &format!("[fe80::1%{lo}]:5353")),
            ("fe80::1%lo#5353", &format!("[fe80::1%{lo}]:5353")),
            ("ff02::fb%lo", &format!("[ff02::fb%{lo}]:53")),
            // A number is a zone for any address, as in glibc.
            ("2001:db8::1%3", "[2001:db8::1%3]:53"),
        ] {
            assert_eq!(
                parse_nameserver(text),
                Ok((want.parse().unwrap(), None)),
                "{text}"
            );
        }
        // Read as glibc reads them, with a warning.
        for (text, want, warning) in [
            ("127.1", "127.0.0.1:53", "is read as 127.0.0.1"),
            ("0x7f.0.0.010", "127.0.0.8:53", "is read as 127.0.0.8"),
            ("10.65535", "10.0.255.255:53", "is read as 10.0.255.255"),
            ("fe80::1", "[fe80::1]:53", "link-local without a zone"),
            (
                "fe80::1%nosuch0",
                "[fe80::1]:53",
                "\"nosuch0\" is no interface",
            ),
            ("fe80::1%0x2", "[fe80::1]:53", "is no interface"),
            ("fe80::1%4294967296", "[fe80::1]:53", "is no interface"),
            ("::1%lo", "[::1]:53", "the zone \"lo\" is ignored"),
        ] {
            let (got, note) = parse_nameserver(text).unwrap();
            assert_eq!(got, want.parse().unwrap(), "{text}");
            assert!(
                note.as_deref().unwrap_or_default().contains(warning),
                "{text}: {note:?}"
            );
        }
        for bad in [
            "dns.example",
            "127.0.0.1#0",
            "127.0.0.1:x",
            "[::1",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "08.0.0.1",
            "1.2.3.",
            "127.0.0.1%lo",
            "4294967296",
        ] {
            assert!(parse_nameserver(bad).is_err(), "{bad} accepted");
        }
        assert!(
            parse_nameserver("127.0.0.1%lo")
                .unwrap_err()
                .contains("only after an IPv6 address")
        );
        assert_eq!(inet_aton("4294967295"), Some(Ipv4Addr::BROADCAST));
        assert_eq!(inet_aton("1.2.3"), Some(Ipv4Addr::new(1, 2, 0, 3)));
    }

    #[test]
    fn what_glibc_skips_is_skipped_with_a_warning_naming_line_and_column() {
        let (c, w) = warned(
            "search x\nnameserver  dns.example\n  nameserver 10.0.0.9\nnameserver\n\
             nameserver 10.0.0.1\n\toptions ndots:4\n # not a comment, not a setting\n",
        );
        assert_eq!(c.nameservers, ["10.0.0.1:53".parse().unwrap()]);
        assert_eq!(c.ndots, 1);
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(
            w[0].starts_with("2:13: nameserver \"dns.example\" is not an IP address"),
            "{w:?}"
        );
        assert!(w[0].ends_with("ignored, as glibc ignores it"), "{w:?}");
        assert!(w[1].starts_with("3:3: nameserver is indented"), "{w:?}");
        assert_eq!(
            w[2],
            "4:1: nameserver without an address: ignored, as glibc ignores it"
        );
        assert!(w[3].starts_with("6:2: options is indented"), "{w:?}");
        // No server left: glibc's default.
        let (c, w) = warned("nameserver bogus\n");
        assert_eq!(c.nameservers, ResolvConf::default().nameservers);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn files_are_read_bounded_whatever_size_they_claim() {
        // /proc/kallsyms is a regular file that claims 0 bytes and holds megabytes.
        let big = Path::new("/proc/kallsyms");
        let claimed = std::fs::metadata(big)
            .expect("/proc/kallsyms (procfs) exists")
            .len();
        assert_eq!(claimed, 0);
        let e = read(big).unwrap_err();
        assert!(e.message.contains("more than the 1048576 bytes"), "{e}");
        let e = read(Path::new("/dev/zero")).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("hosts");
        std::fs::write(&ok, "127.0.0.1 a\n").unwrap();
        assert_eq!(read(&ok).unwrap(), "127.0.0.1 a\n");
        let over = dir.path().join("big");
        std::fs::write(&over, vec![b'#'; (MAX_FILE_SIZE + 1) as usize]).unwrap();
        assert!(read(&over).unwrap_err().message.contains("more than"));
    }

    #[test]
    fn hosts_file() {
        let h = parse_hosts(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost # v6\n10.1.1.1 Web.Example web\nbogus line\n\n",
        );
        assert_eq!(
            h.get("localhost").unwrap(),
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(
            h.get("web.example.").unwrap(),
            ["10.1.1.1".parse::<IpAddr>().unwrap()]
        );
        assert!(h.get("bogus").is_none());
        assert_eq!(h.len(), 4);
    }
}
