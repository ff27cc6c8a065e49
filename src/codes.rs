//! The set of status codes that count as success: `200`, `"3xx"`, `"400-404"`.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// An inclusive range of status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeRange {
    /// First code of the range.
    pub lo: u16,
    /// Last code of the range.
    pub hi: u16,
}

/// The valid status codes of a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusCodes {
    /// The ranges, as configured.
    ranges: Vec<CodeRange>,
}

impl Default for StatusCodes {
    /// 2xx and 3xx: unless `follow_redirects` is set, a redirect is an answer.
    fn default() -> Self {
        StatusCodes {
            ranges: vec![CodeRange { lo: 200, hi: 399 }],
        }
    }
}

impl StatusCodes {
    /// Whether `code` is one of the valid codes.
    pub fn contains(&self, code: u16) -> bool {
        self.ranges.iter().any(|r| (r.lo..=r.hi).contains(&code))
    }

    /// Parse one entry: `200`, `"2xx"` or `"400-404"`.
    pub fn parse_entry(s: &str) -> Result<CodeRange, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "invalid status code {s:?}: expected a code like 200, a class like \"2xx\" or a range like \"400-404\""
            )
        };
        let code = |t: &str| -> Result<u16, String> {
            let c: u16 = t.trim().parse().map_err(|_| bad())?;
            if (100..=599).contains(&c) && t.trim().len() == 3 {
                Ok(c)
            } else {
                Err(bad())
            }
        };
        let lower = s.to_ascii_lowercase();
        if let Some(class) = lower.strip_suffix("xx") {
            let d: u16 = class.parse().map_err(|_| bad())?;
            if class.len() != 1 || !(1..=5).contains(&d) {
                return Err(bad());
            }
            return Ok(CodeRange {
                lo: d * 100,
                hi: d * 100 + 99,
            });
        }
        if let Some((a, b)) = s.split_once('-') {
            let (lo, hi) = (code(a)?, code(b)?);
            if lo > hi {
                return Err(format!(
                    "invalid status code range {s:?}: {lo} is above {hi}"
                ));
            }
            return Ok(CodeRange { lo, hi });
        }
        let c = code(s)?;
        Ok(CodeRange { lo: c, hi: c })
    }
}

impl<'de> serde::Deserialize<'de> for StatusCodes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Visits the YAML sequence of entries.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusCodes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of status codes like [200, \"3xx\", \"400-404\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatusCodes, A::Error> {
                let mut ranges = Vec::new();
                while let Some(entry) = seq.next_element::<Entry>()? {
                    ranges.push(entry.0);
                }
                // An empty list is blackbox_exporter's way of asking for the default.
                if ranges.is_empty() {
                    return Ok(StatusCodes::default());
                }
                Ok(StatusCodes { ranges })
            }
        }
        d.deserialize_seq(V)
    }
}

/// One entry of the list: a number or a string.
struct Entry(CodeRange);

impl<'de> serde::Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Visits a number or a string.
        struct V;
        impl Visitor<'_> for V {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code, class or range")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Entry, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Entry, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
                StatusCodes::parse_entry(v).map(Entry).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        assert_eq!(
            StatusCodes::parse_entry("200"),
            Ok(CodeRange { lo: 200, hi: 200 })
        );
        assert_eq!(
            StatusCodes::parse_entry("3xx"),
            Ok(CodeRange { lo: 300, hi: 399 })
        );
        assert_eq!(
            StatusCodes::parse_entry("4XX"),
            Ok(CodeRange { lo: 400, hi: 499 })
        );
        assert_eq!(
            StatusCodes::parse_entry("400-404"),
            Ok(CodeRange { lo: 400, hi: 404 })
        );
        for bad in [
            "",
            "20",
            "2000",
            "6xx",
            "0xx",
            "404-400",
            "abc",
            "1000-1001",
            "x",
        ] {
            assert!(StatusCodes::parse_entry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn membership() {
        let codes: StatusCodes = serde_yaml::from_str("[200, \"3xx\", \"400-404\"]").unwrap();
        for (code, ok) in [
            (200, true),
            (201, false),
            (302, true),
            (404, true),
            (405, false),
        ] {
            assert_eq!(codes.contains(code), ok, "{code}");
        }
        let d = StatusCodes::default();
        assert!(d.contains(204) && d.contains(301) && !d.contains(404) && !d.contains(101));
    }
}
