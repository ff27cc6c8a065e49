//! Going on after an error, so that one load reports every error of a targets file, at a cost
//! close to that of a clean load.
//!
//! The YAML decoder stops at the first bad value, and every decode reads the whole file. So
//! after the first error, the file's outline is scanned once (where `defaults`, each group of
//! `groups` and each entry of `targets` stand), and the entries are decoded again on their
//! own, a piece at a time: a piece is a run of entries of at most [`PIECE`] bytes under the
//! key they stand under. An error costs a decode of what is left of its piece, so listing
//! every error costs about one more decode of the file. Each error reads as the decoder gives
//! it for the entry alone in the file: its path names the entry's index in the file, and its
//! place is the file's line and column.
//!
//! Then the file is decoded once more with the entries of `targets` and the groups of
//! `groups` blanked out (their values come from the pieces), and `defaults` when it held an
//! error: that decode finds what stands outside the entries and blocks (an unknown key at the
//! top, a bad group name, a syntax error between entries), which ends the list, and gives the
//! rest of the file. Blanking replaces each byte with a space and keeps line breaks, so that
//! every other value keeps its line and column; one `~` (a null) stands for all the entries of
//! `targets`. Whatever the pieces could not place is left in that decode as it is written.
//!
//! The outline is found with a YAML scanner, on the text with each non-ASCII character
//! replaced by as many `x` as it has bytes, so that the scanner's positions are byte offsets.
//! A load lists at most [`MAX_ERRORS`] errors.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use yaml_rust2::scanner::{Scanner, Token, TokenType};

use super::MAX_ERRORS;
use super::layer::Settings;
use super::position;
use super::schema::{GroupName, NativeFile, RawTarget};

/// Most bytes of entries decoded as one piece (an entry larger than that is a piece alone):
/// an error costs at most this much decoded again.
const PIECE: usize = 2 * 1024;

/// A part of the text, in byte offsets: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// First byte.
    start: usize,
    /// One past the last byte.
    end: usize,
}

impl Span {
    /// Whether byte `at` stands in it.
    fn contains(&self, at: usize) -> bool {
        (self.start..self.end).contains(&at)
    }
}

/// One entry of `targets` or `groups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Where the entry starts: its `-` in a block sequence, its key in a mapping, its value in
    /// a flow sequence.
    item: usize,
    /// Its value. An empty value stands where the next entry (or the end) starts.
    value: Span,
}

/// The entries of `targets` or of `groups`.
#[derive(Debug, Default)]
struct Collection {
    /// Whether it is written in flow style (`[...]`, `{...}`).
    flow: bool,
    /// The entries, in order.
    entries: Vec<Entry>,
}

impl Collection {
    /// The entry whose value holds byte `at`.
    fn entry_at(&self, at: usize) -> Option<usize> {
        let k = self
            .entries
            .partition_point(|e| e.value.start <= at)
            .checked_sub(1)?;
        self.entries[k].value.contains(at).then_some(k)
    }

    /// Where entries `k..m` stand: from the first one's start to the last one's end.
    fn range(&self, k: usize, m: usize) -> (usize, usize) {
        (self.entries[k].item, self.entries[m - 1].value.end)
    }

    /// The entries from `k` on that make one piece, up to the first of `stop`.
    fn piece_end(&self, k: usize, stop: Option<usize>) -> usize {
        let from = self.entries[k].item;
        let mut m = k + 1;
        while m < self.entries.len()
            && stop != Some(m)
            && self.entries[m].value.end.saturating_sub(from) <= PIECE
        {
            m += 1;
        }
        m
    }
}

/// Where the parts of a native targets file stand.
#[derive(Debug, Default)]
struct Outline {
    /// The value of `defaults`, when it has one.
    defaults: Option<Span>,
    /// The groups of `groups`: each one's name and block.
    groups: Option<Collection>,
    /// The entries of `targets`.
    targets: Option<Collection>,
}

/// A part of the file that can hold an error and be blanked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The `defaults` block.
    Defaults,
    /// The block of group `g` of `groups`.
    Group(usize),
    /// Entry `k` of `targets`.
    Target(usize),
}

impl Outline {
    /// The part that byte `at` stands in.
    fn part_at(&self, at: usize) -> Option<Part> {
        if let Some(k) = self.targets.as_ref().and_then(|c| c.entry_at(at)) {
            return Some(Part::Target(k));
        }
        if let Some(g) = self.groups.as_ref().and_then(|c| c.entry_at(at)) {
            return Some(Part::Group(g));
        }
        self.defaults
            .is_some_and(|s| s.contains(at))
            .then_some(Part::Defaults)
    }
}

/// Where each line of a text starts, to turn byte offsets into lines and columns.
struct Lines(Vec<usize>);

impl Lines {
    /// The lines of `text`.
    fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines(starts)
    }

    /// The 1-based line of byte `at`.
    fn line(&self, at: usize) -> usize {
        self.0.partition_point(|&s| s <= at)
    }

    /// Where the line of byte `at` starts.
    fn start_of(&self, at: usize) -> usize {
        self.0[self.line(at) - 1]
    }

    /// The 1-based line and column of byte `at`, the column in bytes (as
    /// [`position::line_col`] counts).
    fn byte_place(&self, at: usize) -> (usize, usize) {
        (self.line(at), at - self.start_of(at) + 1)
    }

    /// The 1-based line and column of byte `at`, the column in characters (as the decoder
    /// counts).
    fn char_place(&self, text: &str, at: usize) -> (usize, usize) {
        let column = text
            .get(self.start_of(at)..at)
            .map_or(0, |s| s.chars().count());
        (self.line(at), column + 1)
    }
}

/// Where the lines and the parts of a targets file stand.
pub(super) struct FileMap {
    /// Where each line starts.
    lines: Lines,
    /// The parts; `None` when the text does not scan or is not a mapping.
    outline: Option<Outline>,
}

impl FileMap {
    /// The map of `text`.
    pub(super) fn new(text: &str) -> FileMap {
        FileMap {
            lines: Lines::new(text),
            outline: outline(text),
        }
    }

    /// Where entry `k` of `targets` stands (an empty entry: its `-`), as a 1-based line and
    /// column in characters.
    pub(super) fn target_place(&self, text: &str, k: usize) -> Option<(usize, usize)> {
        let entry = self.outline.as_ref()?.targets.as_ref()?.entries.get(k)?;
        let at = if entry.value.start < entry.value.end {
            entry.value.start
        } else {
            entry.item
        };
        Some(self.lines.char_place(text, at))
    }
}

/// An error the decoder found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    /// The byte where the decoder stood: it tells which part the error is in.
    at: usize,
    /// The byte where the error is shown: errors are listed in this order. The decoder stands
    /// at the start of the enclosing mapping for some errors (a bad group name), when what it
    /// found stands further on.
    shown: usize,
    /// Where the error is shown: 1-based line and column.
    place: (usize, usize),
    /// What it says.
    message: String,
}

/// What going on after a failed decode found out.
pub(super) struct Recovered {
    /// The errors, in file order, each with its 1-based line and column.
    pub(super) errors: Vec<((usize, usize), String)>,
    /// Whether the list stopped at [`MAX_ERRORS`], so that more may follow.
    pub(super) truncated: bool,
    /// The file without the parts that held an error, when the list reached the file's end
    /// (a bad entry of `targets` is `None`).
    pub(super) file: Option<NativeFile>,
    /// The entries of `targets` that held an error.
    pub(super) skipped: BTreeSet<usize>,
    /// Whether a block of settings (`defaults`, a group) held an error.
    pub(super) blanked_a_block: bool,
    /// Where the file's lines and parts stand.
    pub(super) map: FileMap,
}

/// Go on after `first`, the error of decoding the whole of `text`, and find every other
/// error of the file, in file order, up to [`MAX_ERRORS`] (see the module's documentation).
/// An error outside the entries and blocks ends the list, as does an error with no place.
pub(super) fn recover(text: &str, first: &serde_yaml::Error) -> Recovered {
    let (place, message) = position::yaml_error(text, first);
    let reading = position::read_error(text, first);
    let at = reading.mark.map(|l| l.index());
    let first = Found {
        at: at.unwrap_or(0),
        shown: reading.value_at.or(at).unwrap_or(0),
        place,
        message,
    };
    let map = FileMap::new(text);
    let part = map
        .outline
        .as_ref()
        .zip(at)
        .and_then(|(o, at)| o.part_at(at));
    let (Some(outline), Some(part)) = (&map.outline, part) else {
        return Recovered {
            errors: vec![(first.place, first.message)],
            truncated: false,
            file: None,
            skipped: BTreeSet::new(),
            blanked_a_block: false,
            map,
        };
    };
    let lines = &map.lines;

    // Each part on its own: the entries of `targets`, `defaults`, the groups.
    let known_target = match part {
        Part::Target(k) => Some(k),
        _ => None,
    };
    let mut targets = outline
        .targets
        .as_ref()
        .map(|c| check_targets(text, lines, c, known_target))
        .unwrap_or_default();
    let mut found = std::mem::take(&mut targets.errors);
    let mut bad_defaults = None;
    if let Some(span) = outline.defaults {
        if part == Part::Defaults {
            bad_defaults = Some(span);
        } else if let Some(f) = check_defaults(text, lines, span) {
            bad_defaults = Some(span);
            found.push(f);
        }
    }
    let mut groups = GroupsChecked::default();
    if let Some(c) = &outline.groups {
        let known = match part {
            Part::Group(g) => Some(g),
            _ => None,
        };
        groups = check_groups(text, lines, c, known);
        found.append(&mut groups.errors);
    }

    // The rest of the file, with what was checked blanked out. When every group was
    // reached, they all are (their values come from the pieces); when every entry of
    // `targets` was, one null entry stands for them all (the `-` or `,` of the others
    // blanked too). This decode then costs little more than the rest itself.
    let mut blanks: Vec<(Span, Option<char>)> = bad_defaults.iter().map(|s| (*s, None)).collect();
    let mut all_groups = false;
    if let Some(c) = &outline.groups {
        match (c.entries.first(), c.entries.last()) {
            (Some(first), Some(last)) if groups.all => {
                let all = Span {
                    start: first.item,
                    end: last.value.end,
                };
                blanks.push((all, None));
                all_groups = true;
            }
            _ => blanks.extend(groups.bad.iter().map(|g| (c.entries[*g].value, None))),
        }
    }
    let mut entries_left = 0;
    let mut one_for_all = false;
    if let Some(c) = &outline.targets {
        entries_left = c.entries.len();
        match (c.entries.first(), c.entries.last()) {
            (Some(first), Some(last)) if (0..c.entries.len()).all(|k| targets.reached(k)) => {
                blanks.push((first.value, Some('~')));
                let others = Span {
                    start: first.value.end,
                    end: last.value.end,
                };
                blanks.push((others, None));
                (entries_left, one_for_all) = (1, true);
            }
            _ => {
                let reached = c
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| targets.reached(*k));
                blanks.extend(reached.map(|(_, e)| (e.value, Some('~'))));
            }
        }
    }
    blanks.sort_by_key(|(s, _)| s.start);
    let rest = blank_all(text, &blanks);
    let (file, stop) = match serde_yaml::from_str::<NativeFile>(&rest) {
        // The decoder saw other entries than the outline: the errors of the pieces may be
        // numbered wrong, and the first error is all that is sure.
        Ok(file) if outline.targets.is_some() && file.targets.len() != entries_left => {
            (None, Some((0, None)))
        }
        Ok(mut file) => {
            if one_for_all {
                file.targets = targets.values;
            } else {
                for (slot, value) in file.targets.iter_mut().zip(targets.values) {
                    *slot = value;
                }
            }
            if all_groups {
                file.groups = groups.values;
            }
            (Some(file), None)
        }
        Err(e) => {
            // Blanking keeps every byte where it stands: a byte of `rest` is the file's.
            let stop = found_in(text, lines, &rest, &e, |at| {
                (at <= text.len()).then_some(at)
            })
            .unwrap_or_else(|| {
                let (place, message) = position::yaml_error(&rest, &e);
                let end = text.len();
                Found {
                    at: end,
                    shown: end,
                    place,
                    message,
                }
            });
            // An error in what was blanked comes from blanking, not from the file: the list
            // ends without it.
            let spurious = blanks.iter().any(|(s, _)| s.contains(stop.at));
            (None, Some((stop.shown, (!spurious).then_some(stop))))
        }
    };

    // The list: the errors before the one that ends it, in file order, up to MAX_ERRORS.
    if let Some((end, _)) = &stop {
        found.retain(|f| f.shown < *end);
    }
    found.push(first);
    found.sort_by_key(|f| f.shown);
    let truncated = found.len() >= MAX_ERRORS;
    found.truncate(MAX_ERRORS);
    let file = match stop {
        _ if truncated => None,
        Some((_, last)) => {
            found.extend(last);
            None
        }
        None => file,
    };
    Recovered {
        errors: found.into_iter().map(|f| (f.place, f.message)).collect(),
        truncated,
        file,
        skipped: targets.bad,
        blanked_a_block: bad_defaults.is_some() || !groups.bad.is_empty(),
        map,
    }
}

/// What decoding the entries of `targets` piece by piece found.
#[derive(Default)]
struct Checked {
    /// Each entry from the first, decoded (`None` for `~` and for a bad entry), up to where
    /// the check stopped.
    values: Vec<Option<RawTarget>>,
    /// The entries that held an error.
    bad: BTreeSet<usize>,
    /// Their errors.
    errors: Vec<Found>,
    /// Whether the check stopped because the list was full.
    capped: bool,
}

impl Checked {
    /// Whether entry `k` was decoded or found bad, or need not be: the list is full.
    fn reached(&self, k: usize) -> bool {
        self.capped || k < self.values.len() || self.bad.contains(&k)
    }
}

/// Decode the entries of `targets`, `c`, a piece at a time; entry `known` is known to be bad.
/// Stops when the list is full, or at an error the decoder places outside the piece's
/// entries, or when it sees other entries than the outline: the entries not reached are
/// left to the decode of the rest of the file.
fn check_targets(text: &str, lines: &Lines, c: &Collection, known: Option<usize>) -> Checked {
    let mut checked = Checked {
        values: Vec::with_capacity(c.entries.len()),
        bad: known.into_iter().collect(),
        ..Checked::default()
    };
    let mut k = 0;
    while k < c.entries.len() {
        if known == Some(k) {
            checked.values.push(None);
            k += 1;
            continue;
        }
        if checked.errors.len() + 1 >= MAX_ERRORS {
            checked.capped = true;
            break;
        }
        let m = c.piece_end(k, known);
        let bracket = c.flow.then_some(('[', ']'));
        let (from, to) = c.range(k, m);
        let Some(piece) = Piece::new(text, lines, "targets", bracket, from, to) else {
            break;
        };
        let mut decoded = Vec::with_capacity(m - k);
        let result = TargetsPiece { out: &mut decoded }
            .deserialize(serde_yaml::Deserializer::from_str(&piece.text));
        let i = decoded.len();
        checked.values.extend(decoded);
        match result {
            Ok(()) if k + i == m => k = m,
            Err(e) if k + i < m => {
                let Some(mut f) = piece.found(text, lines, &e) else {
                    break;
                };
                // The piece's path numbers the entry within the piece.
                if let Some(rest) = f.message.strip_prefix(&format!("targets[{i}]")) {
                    f.message = format!("targets[{}]{rest}", k + i);
                }
                checked.errors.push(f);
                checked.values.push(None);
                checked.bad.insert(k + i);
                k += i + 1;
            }
            _ => {
                checked.values.truncate(k);
                break;
            }
        }
    }
    checked
}

/// The error of the `defaults` block, `span`, decoded on its own, when it stands in it.
fn check_defaults(text: &str, lines: &Lines, span: Span) -> Option<Found> {
    let piece = Piece::new(text, lines, "defaults", None, span.start, span.end)?;
    let e = serde_yaml::from_str::<BTreeMap<String, Settings>>(&piece.text).err()?;
    piece.found(text, lines, &e).filter(|f| span.contains(f.at))
}

/// What decoding the groups of `groups` piece by piece found.
#[derive(Default)]
struct GroupsChecked {
    /// Each good group's settings, by name.
    values: BTreeMap<GroupName, Settings>,
    /// The groups that held an error.
    bad: Vec<usize>,
    /// Their errors.
    errors: Vec<Found>,
    /// Whether every group was reached.
    all: bool,
}

/// Decode the groups of `groups`, `c`, a piece at a time; group `known` is known to be bad.
/// Stops at an error that stands in no group's block (a bad group name): the groups not
/// reached are left to the decode of the rest of the file.
fn check_groups(text: &str, lines: &Lines, c: &Collection, known: Option<usize>) -> GroupsChecked {
    let mut checked = GroupsChecked {
        bad: known.into_iter().collect(),
        ..GroupsChecked::default()
    };
    let mut k = 0;
    while k < c.entries.len() {
        if known == Some(k) {
            k += 1;
            continue;
        }
        let m = c.piece_end(k, known);
        let brace = c.flow.then_some(('{', '}'));
        let (from, to) = c.range(k, m);
        let Some(piece) = Piece::new(text, lines, "groups", brace, from, to) else {
            return checked;
        };
        let decoded = GroupsPiece {
            out: &mut checked.values,
        }
        .deserialize(serde_yaml::Deserializer::from_str(&piece.text));
        let Err(e) = decoded else {
            k = m;
            continue;
        };
        let Some(f) = piece.found(text, lines, &e) else {
            return checked;
        };
        let Some(g) = c.entry_at(f.at).filter(|g| (k..m).contains(g)) else {
            return checked;
        };
        checked.bad.push(g);
        checked.errors.push(f);
        k = g + 1;
    }
    checked.all = true;
    checked
}

/// A run of entries decoded on its own, under the key they stand under.
struct Piece {
    /// The text decoded: the key, then on the next line the entries as they stand in the
    /// file, their first line indented as in the file.
    text: String,
    /// Where in `text` the entries start.
    content: usize,
    /// Where in the file the entries start.
    from: usize,
    /// Where in the file they end.
    to: usize,
}

impl Piece {
    /// The file's bytes `from..to`, entries that stand under `key`: a block collection (or
    /// a block's value), or a flow collection in `brackets`. `None` when `from..to` does not
    /// fall on character boundaries.
    fn new(
        text: &str,
        lines: &Lines,
        key: &str,
        brackets: Option<(char, char)>,
        from: usize,
        to: usize,
    ) -> Option<Piece> {
        let to = to.max(from);
        let entries = text.get(from..to)?;
        // A block collection's entries are indented as in the file; flow entries need only
        // stand right of the key.
        let before = text.get(lines.start_of(from)..from)?;
        let indent = if before.bytes().all(|b| b == b' ') {
            before.len()
        } else {
            1
        };
        let mut piece = String::with_capacity(key.len() + indent + entries.len() + 5);
        piece.push_str(key);
        piece.push(':');
        if let Some((open, _)) = brackets {
            piece.push(' ');
            piece.push(open);
        }
        piece.push('\n');
        piece.extend(std::iter::repeat_n(' ', indent));
        let content = piece.len();
        piece.push_str(entries);
        if let Some((_, close)) = brackets {
            piece.push(close);
        }
        Some(Piece {
            text: piece,
            content,
            from,
            to,
        })
    }

    /// The file's byte for byte `at` of the piece, when it stands in the entries.
    fn to_file(&self, at: usize) -> Option<usize> {
        let within = at.checked_sub(self.content)?;
        (within <= self.to - self.from).then_some(self.from + within)
    }

    /// Error `e` of decoding the piece as it reads in the file (`text`). `None` when the
    /// decoder stood outside the entries.
    fn found(&self, text: &str, lines: &Lines, e: &serde_yaml::Error) -> Option<Found> {
        found_in(text, lines, &self.text, e, |at| self.to_file(at))
    }
}

/// Error `e` of decoding `decoded` as it reads in the file, `text`, where `to_file` takes a
/// byte of `decoded` to the file's: its place is found as [`position::yaml_error`] finds it
/// (at the value the message quotes, else where the decoder stood), in the file's lines.
/// `None` when the decoder stood nowhere in the file.
fn found_in(
    text: &str,
    lines: &Lines,
    decoded: &str,
    e: &serde_yaml::Error,
    to_file: impl Fn(usize) -> Option<usize>,
) -> Option<Found> {
    let reading = position::read_error(decoded, e);
    let mark = reading.mark?;
    let at = to_file(mark.index())?;
    let (line, column) = lines.char_place(text, at);
    let shown = reading.value_at.and_then(&to_file);
    let place = shown.map_or((line, column), |i| lines.byte_place(i));
    // A syntax error's message names where the decoder stood, in the text it decoded.
    let message = reading.message.replace(
        &format!(" at line {} column {}", mark.line(), mark.column()),
        &format!(" at line {line} column {column}"),
    );
    Some(Found {
        at,
        shown: shown.unwrap_or(at),
        place,
        message,
    })
}

/// Decodes a piece of `targets` into `out` an entry at a time, so that the entries decoded
/// before an error are kept.
struct TargetsPiece<'o> {
    /// The entries decoded so far.
    out: &'o mut Vec<Option<RawTarget>>,
}

impl<'de> DeserializeSeed<'de> for TargetsPiece<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TargetsPiece<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a piece of `targets`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        while let Some(key) = map.next_key::<String>()? {
            if key != "targets" {
                return Err(de::Error::unknown_field(&key, &["targets"]));
            }
            map.next_value_seed(Entries { out: &mut *out })?;
        }
        Ok(())
    }
}

/// Decodes the entries of a piece of `targets` into `out`.
struct Entries<'o> {
    /// The entries decoded so far.
    out: &'o mut Vec<Option<RawTarget>>,
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of targets")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<Option<RawTarget>>()? {
            self.out.push(entry);
        }
        Ok(())
    }
}

/// Decodes a piece of `groups` into `out` a group at a time, so that the groups decoded
/// before an error are kept.
struct GroupsPiece<'o> {
    /// The groups decoded so far.
    out: &'o mut BTreeMap<GroupName, Settings>,
}

impl<'de> DeserializeSeed<'de> for GroupsPiece<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for GroupsPiece<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a piece of `groups`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        while let Some(key) = map.next_key::<String>()? {
            if key != "groups" {
                return Err(de::Error::unknown_field(&key, &["groups"]));
            }
            map.next_value_seed(Groups { out: &mut *out })?;
        }
        Ok(())
    }
}

/// Decodes the groups of a piece of `groups` into `out`.
struct Groups<'o> {
    /// The groups decoded so far.
    out: &'o mut BTreeMap<GroupName, Settings>,
}

impl<'de> DeserializeSeed<'de> for Groups<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Groups<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of groups")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<GroupName>()? {
            let settings = map.next_value::<Settings>()?;
            self.out.insert(name, settings);
        }
        Ok(())
    }
}

/// `text` with each of `spans` (in order, not overlapping) blanked: each byte of a character
/// replaced by a space, line breaks kept, and the first one by the span's placeholder when it
/// has one. Every byte keeps its offset, and every line its number.
fn blank_all(text: &str, spans: &[(Span, Option<char>)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for (span, placeholder) in spans {
        let Some(blanked) = text
            .get(span.start..span.end)
            .filter(|_| span.start >= done)
        else {
            continue;
        };
        out.push_str(&text[done..span.start]);
        for (i, c) in blanked.char_indices() {
            match (c, placeholder) {
                ('\n' | '\r', _) => out.push(c),
                (_, Some(p)) if i == 0 => {
                    out.push(*p);
                    out.extend(std::iter::repeat_n(' ', c.len_utf8() - 1));
                }
                _ => out.extend(std::iter::repeat_n(' ', c.len_utf8())),
            }
        }
        done = span.end;
    }
    out.push_str(&text[done..]);
    out
}

/// The parts of a native targets file (a mapping at the top), or `None` when the text does
/// not scan, is not a mapping, or its outline does not cut it at character boundaries.
fn outline(text: &str) -> Option<Outline> {
    // Each non-ASCII character becomes as many `x` as it has bytes: the scanner's positions
    // are then byte offsets, and it sees no indicator that is not in the text.
    let ascii: Cow<'_, str> = if text.is_ascii() {
        Cow::Borrowed(text)
    } else {
        let mut a = String::with_capacity(text.len());
        for c in text.chars() {
            match c.is_ascii() {
                true => a.push(c),
                false => a.extend(std::iter::repeat_n('x', c.len_utf8())),
            }
        }
        Cow::Owned(a)
    };
    let mut scanner = Scanner::new(ascii.chars());
    let ascii = ascii.as_bytes();
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
                        outline.defaults = Some(span(ascii, &tokens, start, end));
                    }
                    "groups" => outline.groups = Some(mapping_entries(ascii, &tokens, start, end)?),
                    "targets" => {
                        outline.targets = Some(sequence_entries(ascii, &tokens, start, end)?);
                    }
                    _ => {}
                }
                i = end;
            }
            TokenType::FlowEntry => i += 1,
            _ => break,
        }
    }
    cut_at_characters(text, &outline).then_some(outline)
}

/// Whether every place of `outline` falls on a character boundary of `text`.
fn cut_at_characters(text: &str, outline: &Outline) -> bool {
    let entries = [&outline.groups, &outline.targets]
        .into_iter()
        .flatten()
        .flat_map(|c| &c.entries)
        .flat_map(|e| [e.item, e.value.start, e.value.end]);
    let defaults = outline.defaults.iter().flat_map(|s| [s.start, s.end]);
    defaults.chain(entries).all(|at| text.is_char_boundary(at))
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

/// Where token `i` stands; a `-` stands where it is written (its mark stands after it and the
/// blanks that follow, on its line).
fn stand(ascii: &[u8], tokens: &[Token], i: usize) -> usize {
    let at = tokens[i].0.index().min(ascii.len());
    if !matches!(tokens[i].1, TokenType::BlockEntry) {
        return at;
    }
    let line = ascii[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let indent = ascii[line..]
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(0);
    line + indent
}

/// The bytes of tokens `start..end`, up to where token `end` stands. A token's mark is not
/// always where it starts (a block mapping's stands at its first `:`), so the part starts at
/// the first mark of its tokens.
fn span(ascii: &[u8], tokens: &[Token], start: usize, end: usize) -> Span {
    let stop = stand(ascii, tokens, end);
    let first = tokens[start..end]
        .iter()
        .map(|t| t.0.index())
        .min()
        .unwrap_or(stop);
    Span {
        start: first,
        end: stop.max(first),
    }
}

/// The entries of the mapping made of tokens `start..end`: each key and value (none when it
/// is not a mapping).
fn mapping_entries(ascii: &[u8], tokens: &[Token], start: usize, end: usize) -> Option<Collection> {
    let (flow, ends): (bool, &[Kind]) = match tokens.get(start).map(|t| &t.1) {
        Some(TokenType::BlockMappingStart) => (false, &[Kind::Key, Kind::BlockEnd]),
        Some(TokenType::FlowMappingStart) => (true, &[Kind::FlowEntry, Kind::FlowMappingEnd]),
        _ => return Some(Collection::default()),
    };
    let mut entries = Vec::new();
    let mut i = start + 1;
    while i < end {
        match tokens[i].1 {
            TokenType::Key => {
                let item = tokens[i..=i + 1]
                    .iter()
                    .map(|t| t.0.index())
                    .min()
                    .unwrap_or(0);
                i = until(tokens, i + 1, &[Kind::Value, Kind::Key, Kind::BlockEnd])?;
                if matches!(tokens[i].1, TokenType::Value) {
                    let value_end = until(tokens, i + 1, ends)?;
                    let value = if i + 1 < value_end {
                        span(ascii, tokens, i + 1, value_end)
                    } else {
                        let at = stand(ascii, tokens, value_end);
                        Span { start: at, end: at }
                    };
                    entries.push(Entry { item, value });
                    i = value_end;
                }
            }
            TokenType::FlowEntry => i += 1,
            _ => break,
        }
    }
    Some(Collection { flow, entries })
}

/// The entries of the sequence made of tokens `start..end`: a block sequence, one without
/// indentation (`targets:\n- a`), or a flow sequence. `None` when a `-` is not the first of
/// its line.
fn sequence_entries(
    ascii: &[u8],
    tokens: &[Token],
    start: usize,
    end: usize,
) -> Option<Collection> {
    let (mut i, flow, ends): (usize, bool, &[Kind]) = match tokens.get(start).map(|t| &t.1) {
        Some(TokenType::BlockSequenceStart) => {
            (start + 1, false, &[Kind::BlockEntry, Kind::BlockEnd])
        }
        Some(TokenType::BlockEntry) => {
            (start, false, &[Kind::BlockEntry, Kind::Key, Kind::BlockEnd])
        }
        Some(TokenType::FlowSequenceStart) => {
            (start + 1, true, &[Kind::FlowEntry, Kind::FlowSequenceEnd])
        }
        _ => return Some(Collection::default()),
    };
    let mut entries = Vec::new();
    // A flow sequence has no `-`: its first entry starts at once. In a block sequence, the
    // `-` whose entry is next.
    let mut entry_next = flow;
    let mut dash = None;
    while i < end {
        match tokens[i].1 {
            TokenType::BlockEntry if !flow => {
                let at = stand(ascii, tokens, i);
                if ascii.get(at) != Some(&b'-') {
                    return None;
                }
                // A `-` after a `-`: the first one's entry is empty.
                if let Some(item) = dash.replace(at) {
                    let value = Span { start: at, end: at };
                    entries.push(Entry { item, value });
                }
                i += 1;
            }
            TokenType::FlowEntry if flow => {
                i += 1;
                entry_next = true;
            }
            TokenType::BlockEnd | TokenType::FlowSequenceEnd => break,
            TokenType::Key if !flow => break,
            _ if entry_next || dash.is_some() => {
                let entry_end = until(tokens, i, ends)?;
                let value = span(ascii, tokens, i, entry_end);
                let item = dash.take().unwrap_or(value.start);
                entries.push(Entry { item, value });
                i = entry_end;
                entry_next = false;
            }
            _ => break,
        }
    }
    if let Some(item) = dash {
        let at = tokens
            .get(i)
            .map_or(ascii.len(), |_| stand(ascii, tokens, i));
        let value = Span { start: at, end: at };
        entries.push(Entry { item, value });
    }
    Some(Collection { flow, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    /// The text of each span, trimmed at the end.
    fn texts(text: &str, spans: impl IntoIterator<Item = Span>) -> Vec<&str> {
        spans
            .into_iter()
            .map(|s| text[s.start..s.end].trim_end())
            .collect()
    }

    /// The values of a collection's entries.
    fn values(text: &str, c: &Option<Collection>) -> Vec<String> {
        let c = c.as_ref().unwrap();
        texts(text, c.entries.iter().map(|e| e.value))
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Where each entry of a collection starts.
    fn items(text: &str, c: &Option<Collection>) -> Vec<String> {
        let c = c.as_ref().unwrap();
        c.entries
            .iter()
            .map(|e| text[e.item..].chars().take(3).collect())
            .collect()
    }

    #[test]
    fn the_outline_finds_each_entry_and_block_in_every_style() {
        let text = "defaults: {timeout: 2s}\ngroups:\n  a:\n    timeout: 1s\n  b: {method: HEAD}\n  c:\n\
                    targets:\n  - http://x/  # one\n  -\n    url: http://ü/\n    name: n\n  -\n  - {url: 'http://z/'}\n\
                    max_connections_per_host: 3\n";
        let o = outline(text).unwrap();
        assert_eq!(texts(text, o.defaults), ["{timeout: 2s}"]);
        assert_eq!(
            values(text, &o.groups),
            ["timeout: 1s", "{method: HEAD}", ""]
        );
        assert_eq!(items(text, &o.groups), ["a:\n", "b: ", "c:\n"]);
        assert!(!o.groups.as_ref().unwrap().flow);
        assert_eq!(
            values(text, &o.targets),
            [
                "http://x/  # one",
                "url: http://ü/\n    name: n",
                "",
                "{url: 'http://z/'}"
            ]
        );
        assert_eq!(items(text, &o.targets), ["- h", "-\n ", "-\n ", "- {"]);
        // Without indentation, and with the block after `targets`.
        let text = "targets:\n- a\n-\n- {url: b}\ndefaults:\n  timeout: 1s\n";
        let o = outline(text).unwrap();
        assert_eq!(values(text, &o.targets), ["a", "", "{url: b}"]);
        assert_eq!(texts(text, o.defaults), ["timeout: 1s"]);
        // Flow style, where a pair is an entry.
        let text = "{targets: [a, {url: b, x: 1}, 'c', d: 1], groups: {g: {timeout: 1s}}}";
        let o = outline(text).unwrap();
        assert_eq!(
            values(text, &o.targets),
            ["a", "{url: b, x: 1}", "'c'", "d: 1"]
        );
        assert_eq!(items(text, &o.targets), ["a, ", "{ur", "'c'", "d: "]);
        assert_eq!(values(text, &o.groups), ["{timeout: 1s}"]);
        assert!(o.targets.as_ref().unwrap().flow && o.groups.as_ref().unwrap().flow);
        assert!(outline("- targets: [a]\n").is_none());
    }

    #[test]
    fn blanking_keeps_every_byte_and_line_where_it_stands() {
        let text = "targets:\n  - {url: ü, x: 1}\n  - b\n";
        let o = outline(text).unwrap();
        let entries = &o.targets.as_ref().unwrap().entries;
        let blanked = blank_all(text, &[(entries[0].value, Some('~'))]);
        assert_eq!(blanked, "targets:\n  - ~              \n  - b\n");
        assert_eq!(blanked.len(), text.len());
        let both = blank_all(text, &[(entries[0].value, None), (entries[1].value, None)]);
        assert_eq!(both.lines().count(), text.lines().count());
    }

    /// A file of `n` targets in `style` (`block` or `flow`). The entries of `bad` carry a
    /// key of their own, wrong in those that `broken` names (the others carry a right value
    /// of the same length, so that every place stays where it is).
    fn file(style: &str, n: usize, bad: &[usize], broken: impl Fn(usize) -> bool) -> String {
        let entry = |k: usize| {
            let url = format!("http://h{k}.test/ü{k}");
            let key = match (k % 4, broken(k)) {
                (0, true) => "nope: 1",
                (0, false) => "name: 1",
                (1, true) => "timeout: 0s",
                (1, false) => "timeout: 1s",
                (2, true) => "follow_redirects: 99",
                (2, false) => "follow_redirects: 19",
                (_, true) => "name: [x]",
                (_, false) => "name: 'x'",
            };
            match (bad.contains(&k), style) {
                (false, "flow") => format!("'{url}'"),
                (false, _) if k % 3 == 0 => format!("url: {url}\n    name: n{k}"),
                (true, "block") if k % 3 == 0 => format!("url: {url}\n    {key}"),
                (false, _) => url,
                (true, _) => format!("{{url: '{url}', {key}}}"),
            }
        };
        let entries: Vec<String> = (0..n).map(entry).collect();
        match style {
            "flow" => format!("targets: [{}]\n", entries.join(", ")),
            _ => format!("targets:\n  - {}\n", entries.join("\n  - ")),
        }
    }

    #[test]
    fn each_error_reads_as_it_does_alone_whatever_piece_it_falls_in() {
        for style in ["block", "flow"] {
            let n = 3000;
            let bad = [0, 1, 2, 3, 700, 701, 1699, 2999];
            let text = file(style, n, &bad, |_| true);
            assert!(text.len() > 4 * PIECE);
            let e = parse(Path::new("t.yml"), &text).unwrap_err().to_string();
            let got: Vec<&str> = e.lines().collect();
            let alone: Vec<String> = bad
                .iter()
                .map(|&b| {
                    let text = file(style, n, &bad, |k| k == b);
                    let e = parse(Path::new("t.yml"), &text).unwrap_err();
                    assert_eq!(e.count(), 1, "{e}");
                    e.to_string()
                })
                .collect();
            assert_eq!(got, alone, "{style}");
        }
    }

    #[test]
    fn a_syntax_error_in_an_entry_reads_as_it_does_alone_and_the_list_goes_on() {
        let text = |first_bad: bool| {
            let mut text = String::from("targets:\n");
            for k in 0..2000 {
                match k {
                    5 if first_bad => text.push_str("  - {url: 'http://h5.test/', nope: 1}\n"),
                    _ => text.push_str(&format!("  - http://h{k}.test/\n")),
                }
            }
            text + "  - {url: 'http://a.test/': :}\n  - {url: 'http://b.test/', nope: 1}\n"
        };
        let e = parse(Path::new("t.yml"), &text(true))
            .unwrap_err()
            .to_string();
        let got: Vec<&str> = e.lines().collect();
        assert_eq!(got.len(), 3, "{got:?}");
        let alone = parse(Path::new("t.yml"), &text(false)).unwrap_err();
        assert_eq!(got[1..], alone.to_string().lines().collect::<Vec<_>>());
        assert!(
            got[1].starts_with(
                "t.yml:2002:27: did not find expected ',' or '}' at line 2002 column 27"
            )
        );
        assert!(got[2].starts_with("t.yml:2003:29: targets[2001]: unknown field `nope`"));
    }
}
