//! Going on after an error, so that one load reports every error of a targets file.
//!
//! The YAML decoder stops at the first bad value. To find the next one, the block that held
//! the error (an entry of `targets`, the `defaults` block, a block of `groups`) is blanked out
//! and the text decoded again. Blanking replaces each character with a space and keeps line
//! breaks, so that every other value keeps its line and column, and the decoder's own errors
//! and places stay what they would be alone. A blanked entry of `targets` becomes `~` (a null
//! the targets list knows to skip), a blanked block an empty value.
//!
//! The blocks are found once, with a YAML scanner, on the text with each non-ASCII character
//! replaced by `x`, so that the scanner's positions are character indices. Each decode costs
//! a pass over the file, so a load lists at most
//! [`MAX_ERRORS`](crate::config_error::MAX_ERRORS) errors.

use std::collections::BTreeSet;

use yaml_rust2::scanner::{Scanner, Token, TokenType};

/// A part of the text, in character indices: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// First character.
    start: usize,
    /// One past the last character.
    end: usize,
}

/// Where the blocks of a native targets file stand.
#[derive(Debug, Default)]
struct Outline {
    /// The value of `defaults` and the value of each group of `groups`.
    blocks: Vec<Span>,
    /// Each entry of `targets`, in order.
    targets: Vec<Span>,
}

/// What a blanked span was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// A block of settings: blanked to an empty value.
    Block(usize),
    /// Entry `k` of `targets`: blanked to `~`.
    Target(usize),
}

/// What follows an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The part that held it was blanked: decode again.
    Again,
    /// It cannot be gone past: report it and stop.
    Stop,
    /// It comes from blanking, not from the file: stop without it.
    Spurious,
}

/// The text of a targets file as decoded again and again, with the blocks that held an error
/// blanked out.
pub(super) struct Recovery {
    /// The text, with blanked blocks.
    text: String,
    /// The blocks of the original text; `None` when it could not be scanned.
    outline: Option<Outline>,
    /// Character index of the start of each line.
    lines: Vec<usize>,
    /// The blanked parts.
    blanked: Vec<Part>,
    /// Where the last blanked part ends: a later error must stand after it.
    last_end: usize,
}

impl Recovery {
    /// Ready to go on after errors in `text`.
    pub(super) fn new(text: &str) -> Recovery {
        let mut lines = vec![0];
        for (i, c) in text.chars().enumerate() {
            if c == '\n' {
                lines.push(i + 1);
            }
        }
        Recovery {
            text: text.to_owned(),
            outline: outline(text),
            lines,
            blanked: Vec::new(),
            last_end: 0,
        }
    }

    /// The text to decode next.
    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// The entries of `targets` that were blanked out.
    pub(super) fn skipped_targets(&self) -> BTreeSet<usize> {
        self.blanked
            .iter()
            .filter_map(|p| match p {
                Part::Target(k) => Some(*k),
                Part::Block(_) => None,
            })
            .collect()
    }

    /// Whether a block of settings (`defaults`, a group) was blanked out.
    pub(super) fn blanked_a_block(&self) -> bool {
        self.blanked.iter().any(|p| matches!(p, Part::Block(_)))
    }

    /// Where entry `k` of `targets` starts, as a 1-based line and column.
    pub(super) fn target_place(&self, k: usize) -> Option<(usize, usize)> {
        let span = self.outline.as_ref()?.targets.get(k)?;
        let line = self.lines.partition_point(|&s| s <= span.start);
        Some((line, span.start - self.lines[line - 1] + 1))
    }

    /// What to do after an error at 1-based `line` and `column` (in characters): when it
    /// stands within a block or an entry not yet blanked, that part is blanked and the text
    /// is to be decoded again. An error before the end of the last blanked part comes from
    /// the blanking itself (an entry the scanner saw otherwise than the decoder): it is not
    /// reported.
    pub(super) fn skip(&mut self, line: usize, column: usize) -> Step {
        let Some(outline) = &self.outline else {
            return Step::Stop;
        };
        let Some(line_start) = line.checked_sub(1).and_then(|l| self.lines.get(l)) else {
            return Step::Stop;
        };
        let at = line_start + column.saturating_sub(1);
        if !self.blanked.is_empty() && at < self.last_end {
            return Step::Spurious;
        }
        let within = |s: &Span| (s.start..s.end).contains(&at);
        let part = match outline.targets.iter().position(within) {
            Some(k) => Part::Target(k),
            None => match outline.blocks.iter().position(within) {
                Some(b) => Part::Block(b),
                None => return Step::Stop,
            },
        };
        if self.blanked.contains(&part) {
            return Step::Spurious;
        }
        let (span, placeholder) = match part {
            Part::Target(k) => (outline.targets[k], Some('~')),
            Part::Block(b) => (outline.blocks[b], None),
        };
        self.text = blank(&self.text, span, placeholder);
        self.blanked.push(part);
        self.last_end = span.end;
        Step::Again
    }
}

/// `text` with the characters of `span` replaced by spaces, line breaks kept, and the first
/// one by `placeholder` when given.
fn blank(text: &str, span: Span, placeholder: Option<char>) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| match i {
            _ if !(span.start..span.end).contains(&i) || c == '\n' || c == '\r' => c,
            _ if i == span.start => placeholder.unwrap_or(' '),
            _ => ' ',
        })
        .collect()
}

/// The blocks of a native targets file (a mapping at the top), or `None` when the text does
/// not scan or is not a mapping.
fn outline(text: &str) -> Option<Outline> {
    let ascii: String = text
        .chars()
        .map(|c| if c.is_ascii() { c } else { 'x' })
        .collect();
    let mut scanner = Scanner::new(ascii.chars());
    let tokens: Vec<Token> = scanner.by_ref().collect();
    if scanner.get_error().is_some() {
        return None;
    }
    let mut outline = Outline::default();
    let mut i = tokens.iter().position(|t| {
        !matches!(
            t.1,
            TokenType::StreamStart(_)
                | TokenType::DocumentStart
                | TokenType::VersionDirective(..)
                | TokenType::TagDirective(..)
        )
    })?;
    if !matches!(
        tokens[i].1,
        TokenType::BlockMappingStart | TokenType::FlowMappingStart
    ) {
        return None;
    }
    let block = matches!(tokens[i].1, TokenType::BlockMappingStart);
    i += 1;
    let value_ends: &[Kind] = if block {
        &[Kind::Key, Kind::BlockEnd]
    } else {
        &[Kind::FlowEntry, Kind::FlowMappingEnd]
    };
    while let Some(t) = tokens.get(i) {
        match &t.1 {
            TokenType::Key => {
                let name = match tokens.get(i + 1).map(|t| &t.1) {
                    Some(TokenType::Scalar(_, name)) => name.clone(),
                    _ => String::new(),
                };
                i = until(&tokens, i + 1, &[Kind::Value, Kind::Key, Kind::BlockEnd])?;
                if !matches!(tokens[i].1, TokenType::Value) {
                    continue;
                }
                let start = i + 1;
                let end = until(&tokens, start, value_ends)?;
                match name.as_str() {
                    "defaults" if start < end => {
                        outline
                            .blocks
                            .push(span(ascii.as_bytes(), &tokens, start, end))
                    }
                    "groups" => outline.blocks.extend(mapping_values(
                        ascii.as_bytes(),
                        &tokens,
                        start,
                        end,
                    )?),
                    "targets" => {
                        outline.targets = sequence_entries(ascii.as_bytes(), &tokens, start, end)?
                    }
                    _ => {}
                }
                i = end;
            }
            TokenType::FlowEntry => i += 1,
            _ => break,
        }
    }
    Some(outline)
}

/// The tokens that end a part, each at the depth the part started at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `?` or an implicit key.
    Key,
    /// `:`.
    Value,
    /// `-`.
    BlockEntry,
    /// `,`.
    FlowEntry,
    /// The end of a block collection.
    BlockEnd,
    /// `]`.
    FlowSequenceEnd,
    /// `}`.
    FlowMappingEnd,
}

/// The first token from `i` on that is of one of `kinds` and at the depth `i` is at (or the
/// end of the stream); `None` when a collection closes before.
fn until(tokens: &[Token], mut i: usize, kinds: &[Kind]) -> Option<usize> {
    let mut depth = 0usize;
    while let Some(t) = tokens.get(i) {
        let kind = match t.1 {
            TokenType::Key => Some(Kind::Key),
            TokenType::Value => Some(Kind::Value),
            TokenType::BlockEntry => Some(Kind::BlockEntry),
            TokenType::FlowEntry => Some(Kind::FlowEntry),
            TokenType::BlockEnd => Some(Kind::BlockEnd),
            TokenType::FlowSequenceEnd => Some(Kind::FlowSequenceEnd),
            TokenType::FlowMappingEnd => Some(Kind::FlowMappingEnd),
            _ => None,
        };
        if depth == 0 && kind.is_some_and(|k| kinds.contains(&k)) {
            return Some(i);
        }
        match t.1 {
            TokenType::BlockSequenceStart
            | TokenType::BlockMappingStart
            | TokenType::FlowSequenceStart
            | TokenType::FlowMappingStart => depth += 1,
            TokenType::BlockEnd | TokenType::FlowSequenceEnd | TokenType::FlowMappingEnd => {
                depth = depth.checked_sub(1)?;
            }
            TokenType::StreamEnd => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The characters of tokens `start..end`, up to where token `end` stands. A token's mark is
/// not always where it starts (a block mapping's stands at its first `:`), so the part starts
/// at the first mark of its tokens. A `-` is marked after it and the blanks that follow: a
/// part that ends at one ends at the first non-blank of the `-`'s line.
fn span(ascii: &[u8], tokens: &[Token], start: usize, end: usize) -> Span {
    let mut stop = tokens[end].0.index().min(ascii.len());
    let first = tokens[start..end]
        .iter()
        .map(|t| t.0.index())
        .min()
        .unwrap_or(stop);
    if matches!(tokens[end].1, TokenType::BlockEntry) {
        let line = ascii[..stop]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let indent = ascii[line..]
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(0);
        stop = line + indent;
    }
    Span {
        start: first,
        end: stop.max(first),
    }
}

/// The values of the mapping made of tokens `start..end` (none when it is not a mapping).
fn mapping_values(ascii: &[u8], tokens: &[Token], start: usize, end: usize) -> Option<Vec<Span>> {
    let ends: &[Kind] = match tokens.get(start).map(|t| &t.1) {
        Some(TokenType::BlockMappingStart) => &[Kind::Key, Kind::BlockEnd],
        Some(TokenType::FlowMappingStart) => &[Kind::FlowEntry, Kind::FlowMappingEnd],
        _ => return Some(Vec::new()),
    };
    let mut values = Vec::new();
    let mut i = start + 1;
    while i < end {
        match tokens[i].1 {
            TokenType::Key => {
                i = until(tokens, i + 1, &[Kind::Value, Kind::Key, Kind::BlockEnd])?;
                if matches!(tokens[i].1, TokenType::Value) {
                    let value_end = until(tokens, i + 1, ends)?;
                    if i + 1 < value_end {
                        values.push(span(ascii, tokens, i + 1, value_end));
                    }
                    i = value_end;
                }
            }
            TokenType::FlowEntry => i += 1,
            _ => break,
        }
    }
    Some(values)
}

/// The entries of the sequence made of tokens `start..end`: a block sequence, one without
/// indentation (`targets:\n- a`), or a flow sequence. An empty entry has an empty span.
fn sequence_entries(ascii: &[u8], tokens: &[Token], start: usize, end: usize) -> Option<Vec<Span>> {
    let (mut i, ends): (usize, &[Kind]) = match tokens.get(start).map(|t| &t.1) {
        Some(TokenType::BlockSequenceStart) => (start + 1, &[Kind::BlockEntry, Kind::BlockEnd]),
        Some(TokenType::BlockEntry) => (start, &[Kind::BlockEntry, Kind::Key, Kind::BlockEnd]),
        Some(TokenType::FlowSequenceStart) => {
            (start + 1, &[Kind::FlowEntry, Kind::FlowSequenceEnd])
        }
        _ => return Some(Vec::new()),
    };
    let flow = ends.contains(&Kind::FlowEntry);
    let mut entries = Vec::new();
    // A flow sequence has no `-`: its first entry starts at once.
    let mut entry_next = flow;
    while i < end {
        match tokens[i].1 {
            TokenType::BlockEntry if !flow => {
                i += 1;
                entry_next = true;
            }
            TokenType::FlowEntry if flow => {
                i += 1;
                entry_next = true;
            }
            TokenType::BlockEnd | TokenType::FlowSequenceEnd | TokenType::Key => break,
            _ if entry_next => {
                let entry_end = until(tokens, i, ends)?;
                entries.push(span(ascii, tokens, i, entry_end));
                i = entry_end;
                entry_next = false;
            }
            _ => break,
        }
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of each span.
    fn texts(text: &str, spans: &[Span]) -> Vec<String> {
        spans
            .iter()
            .map(|s| {
                text.chars()
                    .skip(s.start)
                    .take(s.end - s.start)
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn the_outline_finds_each_entry_and_block_in_every_style() {
        let text = "defaults: {timeout: 2s}\ngroups:\n  a:\n    timeout: 1s\n  b: {method: HEAD}\n\
                    targets:\n  - http://x/  # one\n  -\n    url: http://ü/\n    name: n\n  - {url: 'http://z/'}\n\
                    max_connections_per_host: 3\n";
        let o = outline(text).unwrap();
        assert_eq!(
            texts(text, &o.blocks),
            ["{timeout: 2s}", "timeout: 1s", "{method: HEAD}"]
        );
        assert_eq!(
            texts(text, &o.targets),
            [
                "http://x/  # one",
                "url: http://ü/\n    name: n",
                "{url: 'http://z/'}"
            ]
        );
        let text = "targets:\n- a\n- {url: b}\ndefaults:\n  timeout: 1s\n";
        let o = outline(text).unwrap();
        assert_eq!(texts(text, &o.targets), ["a", "{url: b}"]);
        assert_eq!(texts(text, &o.blocks), ["timeout: 1s"]);
        let text = "{targets: [a, {url: b, x: 1}, 'c'], defaults: {timeout: 1s}}";
        let o = outline(text).unwrap();
        assert_eq!(texts(text, &o.targets), ["a", "{url: b, x: 1}", "'c'"]);
        assert_eq!(texts(text, &o.blocks), ["{timeout: 1s}"]);
        assert!(outline("- targets: [a]\n").is_none());
    }

    #[test]
    fn blanking_keeps_every_other_place() {
        let text = "targets:\n  - {url: ü, x: 1}\n  - b\n";
        let mut r = Recovery::new(text);
        assert_eq!(r.skip(2, 10), Step::Again);
        assert_eq!(r.text(), "targets:\n  - ~             \n  - b\n");
        assert_eq!(r.skipped_targets(), BTreeSet::from([0]));
        assert_eq!(r.target_place(1), Some((3, 5)));
        // Not again, and not before what was blanked.
        assert_eq!(r.skip(2, 10), Step::Spurious);
        assert_eq!(r.skip(1, 1), Step::Spurious);
        assert!(!r.blanked_a_block());
        assert_eq!(Recovery::new("targets: [a]\n").skip(1, 1), Step::Stop);
    }
}
