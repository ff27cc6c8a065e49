//! The DNS wire format a stub resolver needs (RFC 1035): a query for one name and type, and the
//! parts of an answer that resolve it (response code, truncation, the addresses at the end of
//! the CNAME chain, the smallest TTL). Pure functions over bytes, so they are tested and fuzzed
//! without a network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Record type OPT (EDNS0).
const TYPE_OPT: u16 = 41;
/// Class IN.
const CLASS_IN: u16 = 1;
/// UDP payload we announce with EDNS0 (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;

/// Response codes that matter to a stub resolver.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// Format error.
    pub const FORMERR: u8 = 1;
    /// Server failure.
    pub const SERVFAIL: u8 = 2;
    /// The name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// Not implemented.
    pub const NOTIMP: u8 = 4;
    /// Refused.
    pub const REFUSED: u8 = 5;

    /// The name DNS tools print.
    pub fn name(code: u8) -> String {
        match code {
            NOERROR => "NOERROR".into(),
            FORMERR => "FORMERR".into(),
            SERVFAIL => "SERVFAIL".into(),
            NXDOMAIN => "NXDOMAIN".into(),
            NOTIMP => "NOTIMP".into(),
            REFUSED => "REFUSED".into(),
            other => format!("RCODE{other}"),
        }
    }
}

/// Why bytes are not an answer to our question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The name cannot be sent (empty label, label over 63 bytes, name over 255).
    #[error("{0:?} is not a valid DNS name")]
    BadName(String),
    /// The message ended early or points outside itself.
    #[error("truncated or malformed DNS message")]
    Malformed,
    /// Not a response, or a response to another question.
    #[error("the answer does not match the question")]
    Mismatch,
}

/// What an answer says about our question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code.
    pub rcode: u8,
    /// The TC bit: ask again over TCP.
    pub truncated: bool,
    /// Addresses of the asked type at the end of the CNAME chain.
    pub addrs: Vec<IpAddr>,
    /// Smallest TTL of the records used, seconds (0 when there are none). A TTL with the top
    /// bit set counts as 0 (RFC 2181 §8).
    pub ttl: u32,
    /// Records in the answer section, whatever their type: glibc takes a NOERROR answer with
    /// any as the one that ends the search list, even when no address is among them.
    pub answer_count: u16,
}

/// A query for `name` (ASCII, with or without the final dot) of `qtype`, recursion desired,
/// with an EDNS0 OPT record announcing [`EDNS_PAYLOAD`].
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(name.len() + 2 + 16 + 11);
    out.extend_from_slice(&id.to_be_bytes());
    // QR=0, OPCODE=0, RD=1; one question, one additional (OPT).
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    encode_name(name, &mut out)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root name, type, payload size as class, extended rcode/version/flags 0, no data.
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Ok(out)
}

/// Append `name` as labels.
fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    let bad = || WireError::BadName(name.to_owned());
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() + 2 > MAX_NAME {
        return Err(bad());
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(bad());
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// A cursor over a message.
struct Reader<'a> {
    /// The whole message (names point into it).
    msg: &'a [u8],
    /// Where the next read starts.
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Malformed)?;
        let s = self.msg.get(self.pos..end).ok_or(WireError::Malformed)?;
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name, following compression pointers, in lower case without the final dot.
    fn name(&mut self) -> Result<String, WireError> {
        let mut out = String::new();
        let mut pos = self.pos;
        let mut jumped = false;
        // Every jump must go backwards, so a loop cannot last; the count is a second guard.
        for _ in 0..MAX_NAME {
            let len = *self.msg.get(pos).ok_or(WireError::Malformed)?;
            match len {
                0 => {
                    if !jumped {
                        self.pos = pos + 1;
                    }
                    return Ok(out);
                }
                l if l & 0xC0 == 0xC0 => {
                    let lo = *self.msg.get(pos + 1).ok_or(WireError::Malformed)?;
                    let target = (usize::from(l & 0x3F) << 8) | usize::from(lo);
                    if target >= pos {
                        return Err(WireError::Malformed);
                    }
                    if !jumped {
                        self.pos = pos + 2;
                    }
                    jumped = true;
                    pos = target;
                }
                l if l & 0xC0 != 0 => return Err(WireError::Malformed),
                l => {
                    let label = self
                        .msg
                        .get(pos + 1..pos + 1 + usize::from(l))
                        .ok_or(WireError::Malformed)?;
                    if !out.is_empty() {
                        out.push('.');
                    }
                    for &b in label {
                        out.push(char::from(b.to_ascii_lowercase()));
                    }
                    if out.len() > MAX_NAME {
                        return Err(WireError::Malformed);
                    }
                    pos += 1 + usize::from(l);
                }
            }
        }
        Err(WireError::Malformed)
    }
}

/// One resource record, as far as a stub needs it.
struct Rr {
    owner: String,
    rtype: u16,
    ttl: u32,
    data: RrData,
}

/// The data of the record types we follow.
enum RrData {
    Addr(IpAddr),
    Alias(String),
    Other,
}

/// Read an answer to `(id, qname, qtype)`. `qname` is compared case-insensitively, without the
/// final dot.
pub fn parse_answer(msg: &[u8], id: u16, qname: &str, qtype: u16) -> Result<Answer, WireError> {
    let mut r = Reader { msg, pos: 0 };
    let got_id = r.u16()?;
    let flags = r.u16()?;
    let qd = r.u16()?;
    let an = r.u16()?;
    let _ns = r.u16()?;
    let _ar = r.u16()?;
    if got_id != id || flags & 0x8000 == 0 || qd != 1 {
        return Err(WireError::Mismatch);
    }
    let asked = qname.strip_suffix('.').unwrap_or(qname);
    let name = r.name()?;
    let (t, c) = (r.u16()?, r.u16()?);
    if !name.eq_ignore_ascii_case(asked) || t != qtype || c != CLASS_IN {
        return Err(WireError::Mismatch);
    }
    let rcode = (flags & 0x000F) as u8;
    let truncated = flags & 0x0200 != 0;
    let mut records = Vec::with_capacity(usize::from(an));
    for _ in 0..an {
        let owner = r.name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        // RFC 2181 §8: a value with the top bit set is to be taken as zero.
        let ttl = match r.u32()? {
            t if t & 0x8000_0000 != 0 => 0,
            t => t,
        };
        let len = usize::from(r.u16()?);
        let start = r.pos;
        let data = match (rtype, len) {
            (TYPE_A, 4) => {
                let b = r.bytes(4)?;
                RrData::Addr(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            (TYPE_AAAA, 16) => {
                let b: [u8; 16] = r.bytes(16)?.try_into().map_err(|_| WireError::Malformed)?;
                RrData::Addr(IpAddr::V6(Ipv6Addr::from(b)))
            }
            (TYPE_CNAME, _) => RrData::Alias(r.name()?),
            _ => RrData::Other,
        };
        // Whatever the record held, the next one starts after its stated length.
        r.pos = start;
        r.bytes(len)?;
        records.push(Rr {
            owner,
            rtype,
            ttl,
            data,
        });
    }
    // Follow the chain from the question's name, as far as the answer goes (glibc follows
    // every alias in the answer section): each link is a record of its own, so a chain has at
    // most as many links as there are records, and a loop ends there.
    let mut current = asked.to_ascii_lowercase();
    let mut ttl = u32::MAX;
    for _ in 0..records.len() {
        let next = records.iter().find_map(|rr| match &rr.data {
            RrData::Alias(target) if rr.owner == current => Some((target.clone(), rr.ttl)),
            _ => None,
        });
        match next {
            Some((target, t)) => {
                ttl = ttl.min(t);
                current = target;
            }
            None => break,
        }
    }
    let mut addrs = Vec::new();
    for rr in &records {
        if let RrData::Addr(ip) = rr.data
            && rr.rtype == qtype
            && rr.owner == current
        {
            ttl = ttl.min(rr.ttl);
            addrs.push(ip);
        }
    }
    Ok(Answer {
        rcode,
        truncated,
        addrs,
        ttl: if ttl == u32::MAX { 0 } else { ttl },
        answer_count: an,
    })
}

/// The ID of a message, if it has one.
pub fn message_id(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `query` with `answers` (raw RRs) appended.
    fn respond(query: &[u8], flags: u16, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2..4].copy_from_slice(&flags.to_be_bytes());
        m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        // Drop the OPT record: 11 bytes at the end, and its count.
        m.truncate(m.len() - 11);
        m[10..12].copy_from_slice(&0u16.to_be_bytes());
        for a in answers {
            m.extend_from_slice(a);
        }
        m
    }

    /// A record whose owner is a pointer to offset 12 (the question's name).
    fn rr(owner: &[u8], rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
        let mut v = owner.to_vec();
        v.extend_from_slice(&rtype.to_be_bytes());
        v.extend_from_slice(&CLASS_IN.to_be_bytes());
        v.extend_from_slice(&ttl.to_be_bytes());
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn labels(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        encode_name(name, &mut v).unwrap();
        v
    }

    #[test]
    fn a_query_on_the_wire() {
        let q = encode_query(0xBEEF, "Www.Example.", TYPE_AAAA).unwrap();
        assert_eq!(&q[..12], &[0xBE, 0xEF, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&q[12..25], b"\x03Www\x07Example\x00");
        assert_eq!(&q[25..29], &[0, 28, 0, 1]);
        assert_eq!(&q[29..], &[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
        for bad in ["", ".", "a..b", &"x".repeat(64), &"a.".repeat(128)] {
            assert!(encode_query(1, bad, TYPE_A).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_follow_the_cname_chain_with_compression() {
        let q = encode_query(7, "www.test", TYPE_A).unwrap();
        let ptr = [0xC0, 12];
        let edge = labels("edge.test");
        let answers = vec![
            rr(&ptr, TYPE_CNAME, 300, &edge),
            rr(&edge, TYPE_A, 60, &[127, 0, 0, 1]),
            rr(&edge, TYPE_A, 90, &[127, 0, 0, 2]),
            // An address of another owner is not ours.
            rr(&labels("other.test"), TYPE_A, 5, &[10, 0, 0, 1]),
        ];
        let a = parse_answer(&respond(&q, 0x8180, &answers), 7, "WWW.test.", TYPE_A).unwrap();
        assert_eq!(a.rcode, rcode::NOERROR);
        assert!(!a.truncated);
        assert_eq!(
            a.addrs,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "127.0.0.2".parse().unwrap()
            ]
        );
        assert_eq!(a.ttl, 60);
    }

    #[test]
    fn a_chain_of_twenty_aliases_is_followed_and_a_loop_ends() {
        let q = encode_query(5, "c0.test", TYPE_A).unwrap();
        let mut answers: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                rr(
                    &labels(&format!("c{i}.test")),
                    TYPE_CNAME,
                    300,
                    &labels(&format!("c{}.test", i + 1)),
                )
            })
            .collect();
        answers.push(rr(&labels("c20.test"), TYPE_A, 30, &[127, 0, 0, 20]));
        // Records in any order: the chain is found by owner, not by position.
        answers.reverse();
        let a = parse_answer(&respond(&q, 0x8180, &answers), 5, "c0.test", TYPE_A).unwrap();
        assert_eq!(a.addrs, ["127.0.0.20".parse::<IpAddr>().unwrap()]);
        assert_eq!((a.ttl, a.answer_count), (30, 21));
        // A loop of aliases ends without an address and without hanging.
        let q = encode_query(6, "l0.test", TYPE_A).unwrap();
        let looped = vec![
            rr(&labels("l0.test"), TYPE_CNAME, 1, &labels("l1.test")),
            rr(&labels("l1.test"), TYPE_CNAME, 1, &labels("l0.test")),
        ];
        let a = parse_answer(&respond(&q, 0x8180, &looped), 6, "l0.test", TYPE_A).unwrap();
        assert!(a.addrs.is_empty());
    }

    #[test]
    fn a_ttl_with_the_top_bit_set_counts_as_zero() {
        let q = encode_query(4, "t.test", TYPE_A).unwrap();
        for (raw, want) in [(0x8000_0000, 0), (u32::MAX, 0), (0x7FFF_FFFF, 0x7FFF_FFFF)] {
            let answer = respond(&q, 0x8180, &[rr(&[0xC0, 12], TYPE_A, raw, &[1, 2, 3, 4])]);
            let a = parse_answer(&answer, 4, "t.test", TYPE_A).unwrap();
            assert_eq!(a.ttl, want, "{raw:#x}");
        }
    }

    #[test]
    fn codes_truncation_and_mismatches() {
        let q = encode_query(9, "x.test", TYPE_A).unwrap();
        let nx = parse_answer(&respond(&q, 0x8183, &[]), 9, "x.test", TYPE_A).unwrap();
        assert_eq!((nx.rcode, nx.addrs.len()), (rcode::NXDOMAIN, 0));
        let tc = parse_answer(&respond(&q, 0x8380, &[]), 9, "x.test", TYPE_A).unwrap();
        assert!(tc.truncated);
        assert_eq!(
            parse_answer(&respond(&q, 0x8180, &[]), 8, "x.test", TYPE_A),
            Err(WireError::Mismatch)
        );
        assert_eq!(
            parse_answer(&respond(&q, 0x8180, &[]), 9, "y.test", TYPE_A),
            Err(WireError::Mismatch)
        );
        assert_eq!(
            parse_answer(&respond(&q, 0x8180, &[]), 9, "x.test", TYPE_AAAA),
            Err(WireError::Mismatch)
        );
        // A query is not an answer.
        assert_eq!(
            parse_answer(&q, 9, "x.test", TYPE_A),
            Err(WireError::Mismatch)
        );
    }

    #[test]
    fn malformed_messages_are_refused_without_panicking() {
        let q = encode_query(3, "loop.test", TYPE_A).unwrap();
        // A pointer to itself, and one forwards.
        let mut looped = respond(&q, 0x8180, &[]);
        looped[6..8].copy_from_slice(&1u16.to_be_bytes());
        let at = looped.len() as u8;
        looped.extend_from_slice(&[0xC0, at]);
        assert_eq!(
            parse_answer(&looped, 3, "loop.test", TYPE_A),
            Err(WireError::Malformed)
        );
        // Every prefix of a good answer is refused or read, never a panic.
        let good = respond(&q, 0x8180, &[rr(&[0xC0, 12], TYPE_A, 1, &[1, 2, 3, 4])]);
        for n in 0..good.len() {
            let _ = parse_answer(&good[..n], 3, "loop.test", TYPE_A);
        }
        assert_eq!(
            parse_answer(&good, 3, "loop.test", TYPE_A)
                .unwrap()
                .addrs
                .len(),
            1
        );
    }
}
