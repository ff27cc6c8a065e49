//! Where in a file an error stands: 1-based line and column from byte offsets, the place of a
//! value the decoder's message quotes, and the place of a target's URL.
//!
//! The YAML decoder reports most errors at the offending value itself. Checks made after
//! decoding (duplicates, files that cannot be read) have only the value, so they look it up in
//! the source text; these functions do that in time linear in the file.

/// How far past the previous target's URL the next one is looked for when an error must be
/// placed: far enough for a target with a long block of settings.
const SEARCH_WINDOW: usize = 16 * 1024;

/// Drop serde_yaml's " at line L column C" suffix: the location is printed in front instead.
pub(crate) fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_owned(),
        _ => msg.to_owned(),
    }
}

/// Line, column and message of a decoder error in `text`. The decoder reports some errors at
/// the start of the enclosing mapping: when the message quotes a value, the place is moved to
/// that value. Quoted strings are left out of the message (see [`without_strings`]).
pub(super) fn yaml_error(text: &str, e: &serde_yaml::Error) -> ((usize, usize), String) {
    let reading = read_error(text, e);
    let place = match (reading.mark, reading.value_at) {
        (Some(_), Some(i)) => line_col(text, i),
        (Some(l), None) => (l.line(), l.column()),
        (None, _) => (1, 1),
    };
    (place, reading.message)
}

/// A decoder error as read against the text that was decoded.
pub(super) struct Reading {
    /// The message, without the decoder's location suffix and the strings it quotes.
    pub(super) message: String,
    /// Where the decoder stood; `None` for an error with no place.
    pub(super) mark: Option<serde_yaml::Location>,
    /// With a mark: the byte offset of the value the message quotes, looked for from the mark
    /// on, then from the start.
    pub(super) value_at: Option<usize>,
}

/// Read decoder error `e` against `text`, the text it decoded (see [`yaml_error`]).
pub(super) fn read_error(text: &str, e: &serde_yaml::Error) -> Reading {
    let full = strip_location(&e.to_string());
    let mark = e.location();
    let value_at = mark.as_ref().and_then(|l| {
        quoted(&full).and_then(|v| find_from(text, v, l.index()).or_else(|| text.find(v)))
    });
    Reading {
        message: without_strings(&full),
        mark,
        value_at,
    }
}

/// 1-based line and column of the first occurrence of `needle` at or after byte `from`
/// (falling back to the whole text, then to 1:1), and the byte offset just after it.
pub(super) fn locate(text: &str, needle: &str, from: usize) -> ((usize, usize), usize) {
    match find_from(text, needle, from).or_else(|| text.find(needle)) {
        Some(i) => (line_col(text, i), i + needle.len()),
        None => ((1, 1), from),
    }
}

/// Byte offset of `needle` at or after `from`.
fn find_from(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.get(from..)?.find(needle).map(|i| i + from)
}

/// 1-based line and column of byte offset `i`.
pub(super) fn line_col(text: &str, i: usize) -> (usize, usize) {
    let before = &text[..i];
    let line = before.matches('\n').count() + 1;
    let column = i - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    (line, column)
}

/// Where the last of `urls` stands in `text` (`None` when it is not found), and the byte
/// offset just after it (or after the last one found), from which its settings are searched.
/// URLs are searched in file order, each after the previous one and within a window, since
/// one written with escapes is not in the text as decoded.
pub(super) fn url_position<'a>(
    text: &str,
    urls: impl IntoIterator<Item = &'a str>,
) -> (Option<usize>, usize) {
    let mut cursor = 0;
    let mut at = None;
    for raw in urls {
        let end = (cursor + raw.len() + SEARCH_WINDOW).min(text.len());
        at = text
            .get(cursor..end)
            .and_then(|w| w.find(raw))
            .map(|i| i + cursor);
        cursor = at.map_or(cursor, |i| i + raw.len());
    }
    (at, cursor)
}

/// A decoder's message without the strings it quotes: `invalid type: string "probe:pw",
/// expected struct BasicAuth` becomes `invalid type: a string, expected struct BasicAuth`. A
/// value in the wrong place can be a secret (a `basic_auth` written as `user:password`, a
/// header written as one string), and the line and column point at it anyway.
fn without_strings(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(QUOTED) {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        // The string is Debug-quoted: it ends at the first quote that is not escaped.
        let mut chars = rest[i + QUOTED.len()..].char_indices();
        let mut end = rest.len() - i - QUOTED.len();
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[i + QUOTED.len() + end..];
    }
    out.push_str(rest);
    out
}

/// The first `"quoted"` part of a message, when it has no escapes.
fn quoted(message: &str) -> Option<&str> {
    let start = message.find('"')? + 1;
    let len = message[start..].find('"')?;
    let value = &message[start..start + len];
    (!value.is_empty() && !value.contains('\\')).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    #[test]
    fn decoder_messages_lose_the_strings_they_quote() {
        assert_eq!(
            without_strings("invalid type: string \"probe:pw\", expected struct BasicAuth"),
            "invalid type: a string, expected struct BasicAuth"
        );
        assert_eq!(
            without_strings("x: string \"a\\\"b\", y: string \"c\""),
            "x: a string, y: a string"
        );
        assert_eq!(
            without_strings("unterminated string \"abc"),
            "unterminated a string"
        );
        assert_eq!(without_strings("no quotes"), "no quotes");
        for yaml in [
            "{url: 'http://a/', basic_auth: 'probe:pw-1234'}",
            "{url: 'http://a/', headers: 'Authorization: Bearer pw-1234'}",
            "{url: 'http://a/', proxy_connect_header: 'X: pw-1234'}",
            "{url: 'http://a/', headers: {X: {pw-1234: 1}}}",
            "{url: 'http://u:pw-1234@a/'}",
            "'http://u:pw-1234@a b/'",
            "'u:pw-1234@a/'",
        ] {
            let text = format!("targets:\n  - {yaml}\n");
            let e = parse(Path::new("t.yml"), &text).unwrap_err().to_string();
            assert!(e.starts_with("t.yml:2:"), "{e}");
            assert!(!e.contains("pw-1") && !e.contains("1234"), "{yaml}: {e}");
        }
    }

    #[test]
    fn locate_finds_line_and_column() {
        let text = "a: 1\nbb: x\n  c: x\n";
        assert_eq!(locate(text, "x", 0), ((2, 5), 10));
        assert_eq!(locate(text, "x", 10), ((3, 6), 17));
        assert_eq!(locate(text, "zz", 3), ((1, 1), 3));
        assert_eq!(quoted("bad \"v 1\" here"), Some("v 1"));
        assert_eq!(quoted("none"), None);
    }

    #[test]
    fn the_decoders_location_suffix_is_dropped() {
        assert_eq!(strip_location("bad value at line 3 column 7"), "bad value");
        assert_eq!(strip_location("said at line 3"), "said at line 3");
        assert_eq!(strip_location("no place"), "no place");
    }
}
