//! The resolver's files, read as glibc reads them: `resolv.conf` (name servers, search list,
//! `ndots`, `timeout`, `attempts`, `rotate`) and `hosts`.
//!
//! Parsing is pure (text in, settings out) so that it is tested without files. Errors name the
//! file, line and column, like every other config error.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config_error::ConfigError;

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// glibc uses at most this many `nameserver` lines (`MAXNS`); later ones are ignored.
pub const MAX_NAMESERVERS: usize = 3;

/// glibc caps `ndots` at 15.
const MAX_NDOTS: usize = 15;

/// glibc caps `timeout` at 30 s.
const MAX_TIMEOUT_SECS: u64 = 30;

/// glibc caps `attempts` at 5.
const MAX_ATTEMPTS: usize = 5;

/// Largest resolver file read: both are a few lines in practice.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// What `resolv.conf` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Servers to ask, in order (at most [`MAX_NAMESERVERS`]); `127.0.0.1:53` when none.
    pub nameservers: Vec<SocketAddr>,
    /// Domains appended to names with fewer than `ndots` dots (`search`, or `domain`).
    pub search: Vec<String>,
    /// Dots a name needs to be tried as written before the search list.
    pub ndots: usize,
    /// How long to wait for one server's answer.
    pub timeout: Duration,
    /// How many times to go through the servers.
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

/// A `file:line:column: message` error.
fn error(file: &Path, line: usize, column: usize, message: String) -> ConfigError {
    ConfigError::new(file, line, column, message)
}

/// Column (1-based, in characters) of `word` within `line`, which it is a slice of.
fn column_of(line: &str, word: &str) -> usize {
    let offset = (word.as_ptr() as usize).saturating_sub(line.as_ptr() as usize);
    line.get(..offset).map_or(1, |s| s.chars().count() + 1)
}

/// A name server address: `IP`, or with a port (an extension for tests and containers that run
/// a resolver on another port): `IP#port`, `IPv4:port` or `[IPv6]:port`. A zone index
/// (`fe80::1%eth0`) is accepted and dropped.
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    let bad = || format!("nameserver {s:?} is not an IP address (optionally with #port)");
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("nameserver {s:?}: port {p:?} is not 1 to 65535"))
    };
    let ip = |a: &str| {
        let a = a.split_once('%').map_or(a, |(ip, _zone)| ip);
        a.parse::<IpAddr>().map_err(|_| bad())
    };
    if let Some((addr, p)) = s.split_once('#') {
        return Ok(SocketAddr::new(ip(addr)?, port(p)?));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']').ok_or_else(bad)?;
        let p = match tail {
            "" => DNS_PORT,
            t => port(t.strip_prefix(':').ok_or_else(bad)?)?,
        };
        return Ok(SocketAddr::new(ip(addr)?, p));
    }
    if let Some((addr, p)) = s.split_once(':')
        && !p.contains(':')
    {
        return Ok(SocketAddr::new(ip(addr)?, port(p)?));
    }
    Ok(SocketAddr::new(ip(s)?, DNS_PORT))
}

/// Parse `resolv.conf` text. Unknown keywords and options are ignored, as glibc does; a value
/// that cannot be what it claims to be (a bad address, `ndots:x`) is an error.
pub fn parse_resolv_conf(file: &Path, text: &str) -> Result<ResolvConf, ConfigError> {
    let mut conf = ResolvConf {
        nameservers: Vec::new(),
        ..ResolvConf::default()
    };
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        // As in glibc, a comment is a line that starts with `#` or `;` (so `#port` can follow
        // an address); words after a keyword's values are ignored.
        if line.trim_start().starts_with(['#', ';']) {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        let at = |word: &str, message: String| error(file, line_no, column_of(line, word), message);
        match keyword {
            "nameserver" => {
                let Some(addr) = words.next() else {
                    return Err(at(keyword, "nameserver needs an address".into()));
                };
                let parsed = parse_nameserver(addr).map_err(|m| at(addr, m))?;
                if conf.nameservers.len() < MAX_NAMESERVERS {
                    conf.nameservers.push(parsed);
                }
            }
            // The last `search` or `domain` line wins, as in glibc.
            "search" | "domain" => {
                conf.search = words
                    .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                    .filter(|d| !d.is_empty())
                    .collect();
                if keyword == "domain" {
                    conf.search.truncate(1);
                }
            }
            "options" => {
                for option in words {
                    let (name, value) = option.split_once(':').unwrap_or((option, ""));
                    let number = |max: u64| {
                        value.parse::<u64>().map(|v| v.min(max)).map_err(|_| {
                            at(option, format!("options {name}: {value:?} is not a number"))
                        })
                    };
                    match name {
                        "ndots" => conf.ndots = number(MAX_NDOTS as u64)? as usize,
                        "timeout" => {
                            conf.timeout = Duration::from_secs(number(MAX_TIMEOUT_SECS)?.max(1));
                        }
                        "attempts" => {
                            conf.attempts = (number(MAX_ATTEMPTS as u64)? as usize).max(1)
                        }
                        "rotate" => conf.rotate = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if conf.nameservers.is_empty() {
        conf.nameservers = ResolvConf::default().nameservers;
    }
    Ok(conf)
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

    fn conf(text: &str) -> Result<ResolvConf, ConfigError> {
        parse_resolv_conf(Path::new("resolv.conf"), text)
    }

    #[test]
    fn resolv_conf_as_glibc_reads_it() {
        let c = conf(
            "# comment\nnameserver 10.0.0.1\nnameserver ::1 ; trailing\nsearch Corp.example. lab.example\n\
             options ndots:2 timeout:3 attempts:4 rotate edns0\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n",
        )
        .unwrap();
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
        // Empty: glibc's defaults. `domain` after `search` wins.
        assert_eq!(conf("").unwrap(), ResolvConf::default());
        assert_eq!(
            conf("search a b\ndomain c\n").unwrap().search,
            ["c".to_owned()]
        );
        // Values beyond glibc's caps are capped.
        let c = conf("options ndots:99 timeout:0 attempts:50\n").unwrap();
        assert_eq!((c.ndots, c.timeout.as_secs(), c.attempts), (15, 1, 5));
    }

    #[test]
    fn nameserver_ports() {
        for (text, want) in [
            ("127.0.0.1", "127.0.0.1:53"),
            ("127.0.0.1#5353", "127.0.0.1:5353"),
            ("127.0.0.1:5353", "127.0.0.1:5353"),
            ("[::1]:5353", "[::1]:5353"),
            ("::1#5353", "[::1]:5353"),
            ("fe80::1%eth0", "[fe80::1]:53"),
        ] {
            assert_eq!(parse_nameserver(text), Ok(want.parse().unwrap()), "{text}");
        }
        for bad in ["dns.example", "127.0.0.1#0", "127.0.0.1:x", "[::1", "1.2.3"] {
            assert!(parse_nameserver(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn resolv_conf_errors_name_line_and_column() {
        let e = conf("search x\nnameserver  dns.example\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 13), "{e}");
        assert!(e.message.contains("dns.example"), "{e}");
        let e = conf("options rotate ndots:x\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 16), "{e}");
        let e = conf("nameserver\n").unwrap_err();
        assert!(e.message.contains("needs an address"), "{e}");
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
