//! Just enough DER to read a certificate's validity, names and DNS names, bounded by its
//! input and without panics: certificates are the peer's data.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The SEQUENCE tag.
pub const SEQUENCE: u8 = 0x30;
/// The SET tag.
const SET: u8 = 0x31;
/// The OBJECT IDENTIFIER tag.
const OID: u8 = 0x06;
/// The OCTET STRING tag.
const OCTET_STRING: u8 = 0x04;
/// The extensions of a TBSCertificate: `[3] EXPLICIT`.
pub const EXTENSIONS: u8 = 0xa3;
/// A dNSName in GeneralNames: `[2] IMPLICIT IA5String`.
const DNS_NAME: u8 = 0x82;
/// The subjectAltName extension, 2.5.29.17, as the contents of its OID.
const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];
/// PrintableString.
const PRINTABLE_STRING: u8 = 0x13;
/// UTF8String.
const UTF8_STRING: u8 = 0x0c;
/// T61String (TeletexString): Go takes its bytes as they are.
const T61_STRING: u8 = 0x14;
/// IA5String.
const IA5_STRING: u8 = 0x16;
/// NumericString.
const NUMERIC_STRING: u8 = 0x12;
/// BMPString: UTF-16, big-endian.
const BMP_STRING: u8 = 0x1e;
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

/// Split one SEQUENCE off the front: (the whole SEQUENCE, tag and length included, rest).
pub fn split_sequence(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, _, rest) = read(input)?;
    if tag != SEQUENCE {
        return None;
    }
    let whole = input.get(..input.len() - rest.len())?;
    Some((whole, rest))
}

/// Call `f` with (type OID contents, value tag, value contents) of every attribute of the
/// Name `rdns` (the contents of its SEQUENCE), in order; stops at the first malformed one.
fn attributes<'a>(mut rdns: &'a [u8], mut f: impl FnMut(&'a [u8], u8, &'a [u8])) {
    while let Some((SET, mut rdn, rest)) = read(rdns) {
        while let Some((SEQUENCE, atv, after)) = read(rdn) {
            let Some((OID, oid, value)) = read(atv) else {
                return;
            };
            let Some((tag, value, _)) = read(value) else {
                return;
            };
            f(oid, tag, value);
            rdn = after;
        }
        rdns = rest;
    }
}

/// A directory string's text as Go's certificate parser reads it; `None` for a type it
/// does not take as text.
fn text(tag: u8, value: &[u8]) -> Option<Cow<'_, str>> {
    match tag {
        PRINTABLE_STRING | UTF8_STRING | T61_STRING | IA5_STRING | NUMERIC_STRING => {
            Some(String::from_utf8_lossy(value))
        }
        BMP_STRING if value.len() % 2 == 0 => {
            let value = value.strip_prefix(&[0xfe, 0xff]).unwrap_or(value);
            let units = value
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]));
            Some(Cow::Owned(
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// The attributes Go's `pkix.Name` has fields for (2.5.4.n, by n), in the order in which
/// `Name.String()` writes them, with their names; CN and SERIALNUMBER hold one value.
const NAMED: [(u8, &str); 9] = [
    (5, "SERIALNUMBER"),
    (3, "CN"),
    (11, "OU"),
    (10, "O"),
    (17, "POSTALCODE"),
    (9, "STREET"),
    (7, "L"),
    (8, "ST"),
    (6, "C"),
];

/// The `n` of an attribute type 2.5.4.n that [`NAMED`] lists.
fn named(oid: &[u8]) -> Option<u8> {
    match oid {
        [0x55, 0x04, n] if NAMED.iter().any(|(k, _)| k == n) => Some(*n),
        _ => None,
    }
}

/// A DER Name (tag and length included) as Go's `pkix.Name.String()` writes it, which is
/// what blackbox_exporter reports: the RDNs in reverse order of Go's own, which is C, ST,
/// L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER (so `CN=a.test,O=Example`), the values
/// of one type in one RDN joined with `+`, only the last CN and SERIALNUMBER, and every
/// other attribute last, in reverse order, as `OID=#` and the hex of its value's DER.
pub fn name_string(name: &[u8]) -> String {
    let mut out = String::new();
    let Some((SEQUENCE, rdns, _)) = read(name) else {
        return out;
    };
    for (n, label) in NAMED {
        let oid = [0x55, 0x04, n];
        if n == 3 || n == 5 {
            let mut last = None;
            attributes(rdns, |t, tag, v| {
                if t == oid {
                    last = text(tag, v).or(last.take());
                }
            });
            if let Some(value) = last.filter(|v| !v.is_empty()) {
                rdn_separator(&mut out);
                attribute(&mut out, label, &value);
            }
        } else {
            let mut first = true;
            attributes(rdns, |t, tag, v| {
                if t == oid {
                    if let Some(value) = text(tag, v) {
                        if first {
                            rdn_separator(&mut out);
                            first = false;
                        } else {
                            out.push('+');
                        }
                        attribute(&mut out, label, &value);
                    }
                }
            });
        }
    }
    let mut others = Vec::new();
    attributes(rdns, |t, tag, v| {
        if named(t).is_none() {
            others.push((t, tag, v));
        }
    });
    for (oid, tag, value) in others.into_iter().rev() {
        rdn_separator(&mut out);
        let Some(dotted) = oid_string(oid) else {
            continue;
        };
        out.push_str(&dotted);
        let utf8 = tag == BMP_STRING || std::str::from_utf8(value).is_ok();
        match text(tag, value) {
            Some(s) if utf8 => {
                out.push_str("=#");
                hex(&mut out, &go_marshal(&s));
            }
            // Not valid UTF-8: Go cannot marshal it back and writes it as text.
            Some(s) => {
                out.push('=');
                escape(&mut out, &s);
            }
            None => {
                out.push_str("=#");
                hex(
                    &mut out,
                    &[&[tag][..], &length(value.len()), value].concat(),
                );
            }
        }
    }
    out
}

/// The `,` between RDNs.
fn rdn_separator(out: &mut String) {
    if !out.is_empty() {
        out.push(',');
    }
}

/// `label=value`, the value escaped as Go does.
fn attribute(out: &mut String, label: &str, value: &str) {
    out.push_str(label);
    out.push('=');
    escape(out, value);
}

/// Go's escaping of a Name's value: `,+"\<>;` always, a space first or last, `#` first.
fn escape(out: &mut String, value: &str) {
    let last = value.len().saturating_sub(1);
    for (i, c) in value.char_indices() {
        let escaped = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => i == 0 || i == last,
            '#' => i == 0,
            _ => false,
        };
        if escaped {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Lowercase hex of `bytes`, appended to `out`.
fn hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
}

/// A DER length.
fn length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        // Below 0x80: fits.
        return vec![len as u8];
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut out = vec![0x80 | (bytes.len() - skip) as u8];
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// What Go's `asn1.Marshal` makes of a string: a PrintableString when every character is
/// one (`*` and `&` excluded), else a UTF8String.
fn go_marshal(s: &str) -> Vec<u8> {
    let printable = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
    let tag = if printable {
        PRINTABLE_STRING
    } else {
        UTF8_STRING
    };
    [&[tag][..], &length(s.len()), s.as_bytes()].concat()
}

/// An OID's contents in dotted form (`1.2.840.113549.1.9.1`); `None` if malformed.
fn oid_string(oid: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut arc: u64 = 0;
    let mut first = true;
    for &b in oid {
        arc = arc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 != 0 {
            continue;
        }
        if first {
            let (a, b) = match arc {
                0..40 => (0, arc),
                40..80 => (1, arc - 40),
                _ => (2, arc - 80),
            };
            let _ = write!(out, "{a}.{b}");
            first = false;
        } else {
            let _ = write!(out, ".{arc}");
        }
        arc = 0;
    }
    (!first && oid.last().is_some_and(|b| b & 0x80 == 0)).then_some(out)
}

/// The DNS names of the first subjectAltName among `extensions` (the contents of their
/// SEQUENCE), joined with `,` as blackbox_exporter joins Go's `DNSNames`.
pub fn dns_names(mut extensions: &[u8]) -> String {
    let mut out = String::new();
    while let Some((SEQUENCE, extension, rest)) = read(extensions) {
        extensions = rest;
        let Some((OID, oid, mut fields)) = read(extension) else {
            continue;
        };
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        // critical BOOLEAN DEFAULT FALSE, then the value.
        while let Some((tag, value, after)) = read(fields) {
            if tag == OCTET_STRING {
                if let Some((SEQUENCE, mut names, _)) = read(value) {
                    while let Some((tag, name, after)) = read(names) {
                        if tag == DNS_NAME {
                            if !out.is_empty() {
                                out.push(',');
                            }
                            out.push_str(&String::from_utf8_lossy(name));
                        }
                        names = after;
                    }
                }
                break;
            }
            fields = after;
        }
        break;
    }
    out
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
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
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

    /// One attribute: 2.5.4.n as `[n]` or a full OID's contents, the value's tag, the value.
    type Atv<'a> = (&'a [u8], u8, &'a [u8]);

    /// A DER Name of RDNs of attributes.
    fn name(rdns: &[&[Atv<'_>]]) -> Vec<u8> {
        let tlv = |tag: u8, body: &[u8]| [&[tag][..], &length(body.len()), body].concat();
        let mut seq = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, tag, value) in *rdn {
                let oid = if oid.len() == 1 {
                    vec![0x55, 0x04, oid[0]]
                } else {
                    oid.to_vec()
                };
                set.extend(tlv(SEQUENCE, &[tlv(OID, &oid), tlv(*tag, value)].concat()));
            }
            seq.extend(tlv(SET, &set));
        }
        tlv(SEQUENCE, &seq)
    }

    const CN: &[u8] = &[3];
    const O: &[u8] = &[10];
    const C: &[u8] = &[6];
    const OU: &[u8] = &[11];
    const P: u8 = PRINTABLE_STRING;
    const U: u8 = UTF8_STRING;

    #[test]
    fn names_are_written_as_go_writes_them() {
        // Go's order, whatever the certificate's: CN, OU, O, ..., C.
        let n = name(&[&[(O, P, b"Example")], &[(CN, U, b"a.test")]]);
        assert_eq!(name_string(&n), "CN=a.test,O=Example");
        let n = name(&[
            &[(C, P, b"DE")],
            &[(CN, U, b"a.test")],
            &[(O, U, b"Example")],
            &[(OU, U, b"Ops")],
        ]);
        assert_eq!(name_string(&n), "CN=a.test,OU=Ops,O=Example,C=DE");
        // The values of one type in one RDN; only the last CN.
        let n = name(&[
            &[(O, U, b"A")],
            &[(CN, U, b"first")],
            &[(O, U, b"B"), (CN, U, b"second")],
        ]);
        assert_eq!(name_string(&n), "CN=second,O=A+O=B");
        // Go's escaping.
        let n = name(&[&[(CN, U, b" a,b+c\"<>;d ")], &[(O, U, b"#x#")]]);
        assert_eq!(name_string(&n), "CN=\\ a\\,b\\+c\\\"\\<\\>\\;d\\ ,O=\\#x#");
        // Other attributes last, in reverse order, as the hex of Go's re-encoding.
        let email: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        let dc: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
        let n = name(&[
            &[(dc, IA5_STRING, b"example")],
            &[(email, IA5_STRING, b"a@b")],
            &[(CN, U, b"x")],
        ]);
        assert_eq!(
            name_string(&n),
            "CN=x,1.2.840.113549.1.9.1=#0c03614062,0.9.2342.19200300.100.1.25=#13076578616d706c65"
        );
        // BMPString, and an empty CN that Go leaves out.
        let n = name(&[&[(CN, BMP_STRING, &[0, b'h', 0, b'i'])], &[(O, U, b"")]]);
        assert_eq!(name_string(&n), "CN=hi,O=");
        let n = name(&[&[(CN, U, b"")]]);
        assert_eq!(name_string(&n), "");
    }

    #[test]
    fn damaged_names_and_extensions_end_quietly() {
        let n = name(&[&[(CN, U, b"a.test")], &[(O, U, b"Example")]]);
        for cut in 0..n.len() {
            let _ = name_string(&n[..cut]);
            let _ = dns_names(&n[..cut]);
        }
        let mut x: u32 = 7;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..40)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = name_string(&bytes);
            let _ = dns_names(&bytes);
            let _ = oid_string(&bytes);
        }
        assert_eq!(oid_string(&[0x2a, 0x86]), None);
        assert_eq!(oid_string(&[]), None);
        assert_eq!(length(200), [0x81, 200]);
        assert_eq!(length(0x1234), [0x82, 0x12, 0x34]);
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
