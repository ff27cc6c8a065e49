//! Text that came from a peer (a reason phrase, a proxy's status line, names in a server's
//! certificate, a `Location`), made safe to show once, where it enters: on a terminal
//! (`check`), in a page, in a log line or in JSON.

/// Most characters kept of one text from a peer, escapes included; a longer one is cut and
/// ends in `…`.
pub const MAX_PEER_TEXT: usize = 512;

/// `text` with every control character but the tab (C0, DEL and C1: `\u{9b}` is a terminal's
/// CSI), and every character that reorders or hides text (bidirectional marks, overrides and
/// isolates, zero-width and line-separator characters), written as a `\u{..}` escape; cut to
/// [`MAX_PEER_TEXT`] characters.
pub fn printable(text: &str) -> String {
    printable_within(text, MAX_PEER_TEXT)
}

/// [`printable`] with `max` characters kept instead of [`MAX_PEER_TEXT`]: for texts that are
/// longer by nature, such as the list of names a certificate is valid for.
pub fn printable_within(text: &str, max: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len().min(max));
    let mut shown = 0;
    for c in text.chars() {
        let hidden = (c.is_control() && c != '\t') || reorders(c);
        let width = if hidden { escape_width(c) } else { 1 };
        if shown + width > max {
            out.push('…');
            break;
        }
        shown += width;
        if hidden {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` reorders, hides or breaks the text around it when shown.
fn reorders(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// Characters of the `\u{..}` escape of `c`.
fn escape_width(c: char) -> usize {
    let digits = (32 - u32::from(c).leading_zeros()).div_ceil(4).max(1) as usize;
    digits + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_reordering_characters_are_escaped() {
        assert_eq!(printable("ok\u{1b}[2J"), "ok\\u{1b}[2J");
        assert_eq!(printable("a\u{202e}b\u{2066}c"), "a\\u{202e}b\\u{2066}c");
        assert_eq!(
            printable("O\u{9b}2J\u{7f}\r\n\0"),
            "O\\u{9b}2J\\u{7f}\\u{d}\\u{a}\\u{0}"
        );
        assert_eq!(
            printable("x\u{200b}\u{2028}\u{feff}"),
            "x\\u{200b}\\u{2028}\\u{feff}"
        );
        // What is safe stays as it is: text in any script, and the tab.
        assert_eq!(printable("Ünïcode OK\tשלום 日本"), "Ünïcode OK\tשלום 日本");
        assert_eq!(printable(""), "");
    }

    #[test]
    fn long_texts_are_cut() {
        let long = "a".repeat(MAX_PEER_TEXT + 1);
        let cut = printable(&long);
        assert_eq!(cut.chars().count(), MAX_PEER_TEXT + 1);
        assert!(cut.ends_with("a…"));
        assert_eq!(printable(&long[1..]), long[1..]);
        // An escape is never cut in two.
        let escapes = "\u{1b}".repeat(MAX_PEER_TEXT);
        let cut = printable(&escapes);
        assert!(cut.ends_with("\\u{1b}…"), "{cut}");
        assert!(cut.chars().count() <= MAX_PEER_TEXT + 1);
        assert_eq!(escape_width('\u{0}'), 5);
        assert_eq!(escape_width('\u{1b}'), 6);
        assert_eq!(escape_width('\u{202e}'), 8);
        assert_eq!(printable_within("abcdef", 4), "abcd…");
        assert_eq!(printable_within("abcd", 4), "abcd");
    }
}
