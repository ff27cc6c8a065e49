//! The last results of every target, kept in memory for the status page and the per-target
//! page: a ring of compact entries per target (24 bytes each), with the texts (status line or
//! failure detail) in a small table of distinct values per target and certificate expiry kept
//! only when it changes. A status line with its code's usual phrase is a mark, not a text: a
//! target whose results are all such holds its ring and 40 bytes.
//!
//! It sits beside the rounds, not inside the page, so that `/`, `/target` and any future API
//! read the same store. A reload keeps the history of every target that stays (matched by its
//! URL, name and labels).

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::outcome::{FailureReason, HttpVersion, ProbeResult, TlsVersion, standard_reason};
use crate::round::Round;

/// Default `--status.history`.
pub const DEFAULT_DEPTH: usize = 60;

/// Distinct texts kept per target (the index has 6 bits; 62 and 63 are marks, see
/// [`STATUS_TEXT`] and [`NO_TEXT`]).
const MAX_TEXTS: usize = 62;

/// Longest text kept for one result, in bytes; a longer one is cut at a character boundary
/// and ends in `…`.
pub const MAX_TEXT_BYTES: usize = 200;

/// Bytes of text kept per target, in one buffer (no allocation per text). When a new text does not fit, texts no entry uses go first,
/// then the texts of the oldest entries (those entries then show "(detail not kept)"): so
/// 10,000 targets whose details change every round hold at most about 10 MiB of text.
pub const MAX_TARGET_TEXT_BYTES: usize = 512;

/// A target's distinct texts in one buffer: text `i` is `buf[start..start + len]` of
/// `spans[i]`.
#[derive(Debug, Default)]
struct Texts {
    /// Every text, one after the other.
    buf: String,
    /// `(start, len)` of each text in `buf`.
    spans: Vec<(u16, u16)>,
}

impl Texts {
    /// How many texts.
    fn len(&self) -> usize {
        self.spans.len()
    }

    /// Bytes of text held.
    fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Text `i`.
    fn get(&self, i: usize) -> Option<&str> {
        let &(start, len) = self.spans.get(i)?;
        self.buf
            .get(usize::from(start)..usize::from(start) + usize::from(len))
    }

    /// Every text, in index order.
    fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Add `text` (at most [`MAX_TARGET_TEXT_BYTES`] long, which fits a `u16`).
    fn push(&mut self, text: &str) {
        let start = u16::try_from(self.buf.len()).unwrap_or(u16::MAX);
        let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
        self.buf.push_str(text);
        self.spans.push((start, len));
    }
}

/// The text index that means "none".
const NO_TEXT: u16 = 63;

/// The text index that means "the status line the entry's code and version make, with the
/// code's usual reason phrase": the text of nearly every success, which then costs no text.
const STATUS_TEXT: u16 = 62;

/// One result, compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When the round started, unix seconds.
    pub at: u32,
    /// The probe's duration, microseconds.
    pub duration_us: u32,
    /// The resolve phase, microseconds.
    pub resolve_us: u32,
    /// The connect phase, microseconds.
    pub connect_us: u32,
    /// The TLS phase, microseconds.
    pub tls_us: u32,
    /// The status code; 0 when no status line arrived.
    pub code: u16,
    /// Bits 0-4 the failure reason (0: success), 5-6 the TLS version, 7 HTTP/1.0, 8-9 the
    /// address family (1: IPv4, 2: IPv6), 10-15 the text's index.
    flags: u16,
}

/// An entry read back, with what the compact form packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Result {
    /// When the round started.
    pub at: SystemTime,
    /// The probe's duration.
    pub duration: Duration,
    /// Phases: resolve, connect, TLS, processing.
    pub phases: [Duration; 4],
    /// The status code; 0 when no status line arrived.
    pub code: u16,
    /// Why it failed; `None` is success.
    pub failure: Option<FailureReason>,
    /// The negotiated TLS version.
    pub tls: Option<TlsVersion>,
    /// The address family connected with.
    pub ip_protocol: Option<u8>,
    /// The status line, or the failure's detail when no status line arrived.
    pub text: Option<String>,
    /// Earliest certificate expiry of the chain presented, unix seconds.
    pub cert_expiry: Option<i64>,
}

impl Entry {
    /// Whether the probe succeeded.
    pub fn success(&self) -> bool {
        self.flags & 0x1F == 0
    }

    /// Why it failed.
    pub fn failure(&self) -> Option<FailureReason> {
        let i = usize::from(self.flags & 0x1F);
        i.checked_sub(1)
            .and_then(|i| FailureReason::ALL.get(i).copied())
    }

    /// When its round started.
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::from(self.at))
    }

    /// The probe's duration.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(u64::from(self.duration_us))
    }
}

/// Microseconds, saturating at `u32::MAX` (71 minutes, beyond any timeout).
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// One target's history: 40 bytes and its ring of entries, for a target whose results have
/// only usual status lines and no certificate.
#[derive(Debug, Default)]
struct Track {
    /// Oldest first.
    entries: VecDeque<Entry>,
    /// Texts and certificate expiries, once there is one.
    extra: Option<Box<Extra>>,
}

/// What a track holds beyond its entries, when it holds any.
#[derive(Debug, Default)]
struct Extra {
    /// Distinct texts the entries point at.
    texts: Texts,
    /// `(from, expiry)`: the certificate expiry seen from that time on, oldest first.
    certs: Vec<(u32, i64)>,
}

/// No texts.
static NO_TEXTS: Texts = Texts {
    buf: String::new(),
    spans: Vec::new(),
};

/// `text` cut to [`MAX_TEXT_BYTES`] at a character boundary, marked with `…` when cut.
fn capped(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_TEXT_BYTES {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = MAX_TEXT_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &text[..end]))
}

/// The text index an entry's flags hold.
fn text_of(e: &Entry) -> u16 {
    e.flags >> 10
}

impl Track {
    /// The distinct texts.
    fn texts(&self) -> &Texts {
        self.extra.as_ref().map_or(&NO_TEXTS, |x| &x.texts)
    }

    /// The certificate expiries.
    fn certs(&self) -> &[(u32, i64)] {
        self.extra.as_ref().map_or(&[], |x| &x.certs)
    }

    /// Texts and certificates, made when first needed.
    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Bytes of text held.
    fn text_bytes(&self) -> usize {
        self.texts().bytes()
    }

    /// The index of `text`, added if new: room is made by dropping texts no entry uses, then
    /// the texts of the oldest entries.
    fn text_index(&mut self, text: Option<&str>) -> u16 {
        let Some(text) = text else { return NO_TEXT };
        let text = capped(text);
        if let Some(i) = self.texts().iter().position(|t| t == text) {
            return i as u16;
        }
        loop {
            if self.texts().len() < MAX_TEXTS
                && self.text_bytes() + text.len() <= MAX_TARGET_TEXT_BYTES
            {
                let texts = &mut self.extra_mut().texts;
                texts.push(&text);
                return (texts.len() - 1) as u16;
            }
            if !self.drop_unused_texts() {
                // Every text is in use: the oldest entry that has one loses it.
                let Some(victim) = self
                    .entries
                    .iter()
                    .map(text_of)
                    .find(|&i| usize::from(i) < MAX_TEXTS)
                else {
                    return NO_TEXT;
                };
                for e in &mut self.entries {
                    if text_of(e) == victim {
                        e.flags = (e.flags & 0x03FF) | (NO_TEXT << 10);
                    }
                }
            }
        }
    }

    /// Drop the texts no entry points at, renumbering the rest; whether any went.
    fn drop_unused_texts(&mut self) -> bool {
        let mut used = [false; MAX_TEXTS];
        for e in &self.entries {
            if let Some(u) = used.get_mut(usize::from(text_of(e))) {
                *u = true;
            }
        }
        if (0..self.texts().len()).all(|i| used[i]) {
            return false;
        }
        let mut new_index = [NO_TEXT; MAX_TEXTS];
        let mut kept = Texts::default();
        for (i, t) in self.texts().iter().enumerate() {
            if used[i] {
                new_index[i] = kept.len() as u16;
                kept.push(t);
            }
        }
        self.extra_mut().texts = kept;
        for e in &mut self.entries {
            let i = text_of(e);
            // The marks stay as they are.
            let to = new_index.get(usize::from(i)).copied().unwrap_or(i);
            e.flags = (e.flags & 0x03FF) | (to << 10);
        }
        true
    }

    /// Add a result, dropping the oldest beyond `depth`.
    fn push(&mut self, at: u32, r: &ProbeResult, depth: usize, scratch: &mut String) {
        let reason = r.failure.map_or(0, |f| {
            FailureReason::ALL
                .iter()
                .position(|x| *x == f)
                .map_or(0, |i| i as u16 + 1)
        });
        let tls = match r.tls_version {
            None => 0,
            Some(TlsVersion::Tls12) => 1,
            Some(TlsVersion::Tls13) => 2,
        };
        let http10 = r
            .status
            .as_ref()
            .is_some_and(|s| s.version == HttpVersion::Http10);
        let family = match r.ip_protocol() {
            Some(4) => 1,
            Some(6) => 2,
            _ => 0,
        };
        // The text is written into `scratch`, and copied only when it is new to this track.
        scratch.clear();
        let usual = r.status.as_ref().is_some_and(|s| s.reason.is_usual())
            && !r.failure.is_some_and(FailureReason::about_head_or_body);
        let text = match (&r.status, &r.detail) {
            _ if usual => None,
            (Some(s), d) => {
                use std::fmt::Write as _;
                let _ = write!(scratch, "{s}");
                // A header or body check: the detail names the pattern.
                if let Some(d) = d
                    && r.failure.is_some_and(FailureReason::about_head_or_body)
                {
                    let _ = write!(scratch, ": {d}");
                }
                Some(scratch.as_str())
            }
            (None, d) => d.as_deref(),
        };
        // Room is made first, so that the ring never grows past `depth` and the texts of the
        // entry that goes are free for the new one.
        while self.entries.len() >= depth {
            self.entries.pop_front();
        }
        // A depth made smaller (a reload to a larger file) gives the room back.
        if self.entries.capacity() > depth {
            self.entries.shrink_to(depth);
        }
        let index = if usual {
            STATUS_TEXT
        } else {
            self.text_index(text)
        };
        if let Some(c) = r.cert
            && self.certs().last().is_none_or(|(_, e)| *e != c.earliest)
        {
            self.extra_mut().certs.push((at, c.earliest));
        }
        // Grown by doubling up to exactly `depth`: a young history costs what it holds.
        if self.entries.len() == self.entries.capacity() {
            let next = (self.entries.capacity() * 2).max(4).min(depth);
            self.entries.reserve_exact(next - self.entries.len());
        }
        self.entries.push_back(Entry {
            at,
            duration_us: micros(r.duration.get()),
            resolve_us: micros(r.phases.resolve.get()),
            connect_us: micros(r.phases.connect.get()),
            tls_us: micros(r.phases.tls.get()),
            code: r.status.as_ref().map_or(0, |s| s.code),
            flags: reason | (tls << 5) | (u16::from(http10) << 7) | (family << 8) | (index << 10),
        });
        // Certificate changes older than the oldest entry are of no use.
        let oldest = self.entries.front().map_or(0, |e| e.at);
        if let Some(x) = &mut self.extra {
            while x.certs.len() > 1 && x.certs[1].0 <= oldest {
                x.certs.remove(0);
            }
        }
    }

    /// An entry in full.
    fn expand(&self, e: &Entry) -> Result {
        let total = e.duration();
        let resolve = Duration::from_micros(u64::from(e.resolve_us));
        let connect = Duration::from_micros(u64::from(e.connect_us));
        let tls = Duration::from_micros(u64::from(e.tls_us));
        let text_index = usize::from(e.flags >> 10);
        Result {
            at: e.time(),
            duration: total,
            phases: [
                resolve,
                connect,
                tls,
                total.saturating_sub(resolve + connect + tls),
            ],
            code: e.code,
            failure: e.failure(),
            tls: match (e.flags >> 5) & 3 {
                1 => Some(TlsVersion::Tls12),
                2 => Some(TlsVersion::Tls13),
                _ => None,
            },
            ip_protocol: match (e.flags >> 8) & 3 {
                1 => Some(4),
                2 => Some(6),
                _ => None,
            },
            text: self
                .texts()
                .get(text_index)
                .map(ToString::to_string)
                .or_else(|| {
                    (text_index == usize::from(STATUS_TEXT)).then(|| {
                        let version = if e.flags & 0x80 != 0 {
                            HttpVersion::Http10
                        } else {
                            HttpVersion::Http11
                        };
                        format!("{version} {} {}", e.code, standard_reason(e.code))
                    })
                })
                .or_else(|| {
                    (text_index == usize::from(NO_TEXT) && e.failure().is_some())
                        .then(|| "(detail not kept)".into())
                })
                .filter(|t| !t.is_empty()),
            cert_expiry: self
                .certs()
                .iter()
                .rev()
                .find(|(from, _)| *from <= e.at)
                .map(|(_, c)| *c),
        }
    }
}

/// Bytes of entries the default history holds at most: a file so large that
/// [`DEFAULT_DEPTH`] rounds of it would hold more keeps fewer rounds (100,000 targets: 10),
/// unless `--status.history` says how many.
pub const DEFAULT_BUDGET: usize = 24 << 20;

/// The history of every target.
#[derive(Debug)]
pub struct History {
    /// Results kept per target; 0 keeps none.
    depth: std::sync::atomic::AtomicUsize,
    /// Whether the depth was given (`--status.history`); else it follows the number of
    /// targets (see [`History::fit`]).
    fixed: bool,
    /// By the target's label block (URL, name, labels).
    /// By label block, shared with the target's (not a copy of it).
    tracks: RwLock<HashMap<std::sync::Arc<str>, Track>>,
}

impl History {
    /// A history of `depth` results per target.
    pub fn new(depth: usize) -> Self {
        History {
            depth: depth.into(),
            fixed: true,
            tracks: RwLock::new(HashMap::new()),
        }
    }

    /// The default history: [`DEFAULT_DEPTH`] results per target, fewer when `targets` would
    /// make them more than [`DEFAULT_BUDGET`] bytes of entries.
    pub fn auto(targets: usize) -> Self {
        let h = History {
            depth: DEFAULT_DEPTH.into(),
            fixed: false,
            tracks: RwLock::new(HashMap::new()),
        };
        h.fit(targets);
        h
    }

    /// Keep as many results per target as suit a config of `targets` (a default history
    /// only; a depth given stays). Rings longer than that shrink as their next results come.
    pub fn fit(&self, targets: usize) {
        if !self.fixed {
            let rounds = DEFAULT_BUDGET / (std::mem::size_of::<Entry>() * targets.max(1));
            self.depth.store(
                rounds.clamp(1, DEFAULT_DEPTH),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// How many results are kept per target.
    pub fn depth(&self) -> usize {
        self.depth.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Add a round's results.
    pub fn record(&self, round: &Round) {
        let depth = self.depth();
        if depth == 0 {
            return;
        }
        let at = round
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let mut tracks = self.tracks.write().unwrap_or_else(|p| p.into_inner());
        let mut scratch = String::new();
        for (t, r) in round.config.targets.iter().zip(&round.results) {
            let track = match tracks.get_mut(&*t.label_block) {
                Some(track) => track,
                None => tracks.entry(t.label_block.clone()).or_default(),
            };
            track.push(at, r, depth, &mut scratch);
        }
    }

    /// Keep only the targets whose label blocks `keep` holds (after a reload).
    pub fn retain(&self, keep: &std::collections::HashSet<&str>) {
        self.tracks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep.contains(&**k));
    }

    /// A target's compact entries, oldest first, and its uptime over them.
    pub fn strip(&self, label_block: &str) -> (Vec<Entry>, Option<f64>) {
        let tracks = self.tracks.read().unwrap_or_else(|p| p.into_inner());
        let Some(t) = tracks.get(label_block) else {
            return (Vec::new(), None);
        };
        let entries: Vec<Entry> = t.entries.iter().copied().collect();
        let up = entries.iter().filter(|e| e.success()).count();
        let uptime = (!entries.is_empty()).then(|| up as f64 / entries.len() as f64);
        (entries, uptime)
    }

    /// A target's results in full, newest first.
    pub fn results(&self, label_block: &str) -> Vec<Result> {
        let tracks = self.tracks.read().unwrap_or_else(|p| p.into_inner());
        tracks.get(label_block).map_or_else(Vec::new, |t| {
            t.entries.iter().rev().map(|e| t.expand(e)).collect()
        })
    }

    /// Bytes held, roughly: entries, texts and the keys' pointers (their text is the
    /// targets').
    pub fn approximate_bytes(&self) -> usize {
        let tracks = self.tracks.read().unwrap_or_else(|p| p.into_inner());
        tracks
            .values()
            .map(|t| {
                std::mem::size_of::<std::sync::Arc<str>>()
                    + std::mem::size_of::<Track>()
                    + t.entries.capacity() * std::mem::size_of::<Entry>()
                    + t.extra.as_ref().map_or(0, |x| {
                        std::mem::size_of::<Extra>()
                            + x.texts.buf.capacity()
                            + x.texts.spans.capacity() * 4
                            + x.certs.capacity() * 16
                    })
                    + 32
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::outcome::StatusLine;
    use std::sync::Arc;

    fn round(config: &Arc<crate::config::Config>, at: u64, up: impl Fn(usize) -> bool) -> Round {
        let results = (0..config.targets.len())
            .map(|i| {
                let mut r = ProbeResult {
                    duration: Duration::from_micros(1500 + i as u64).into(),
                    ..Default::default()
                };
                r.phases.connect = Duration::from_micros(500).into();
                if up(i) {
                    r.status = Some(StatusLine {
                        version: HttpVersion::Http11,
                        code: 200,
                        reason: crate::outcome::Reason::new(200, "OK"),
                    });
                } else {
                    r.failure = Some(FailureReason::ConnectRefused);
                    r.detail = Some("Connection refused (os error 111)".into());
                }
                r
            })
            .collect();
        Round {
            config: config.clone(),
            results,
            started_at: UNIX_EPOCH + Duration::from_secs(at),
            duration: Duration::ZERO,
            max_queue_wait: Duration::ZERO,
            not_started: 0,
            cut: 0,
            budget: None,
            finished: tokio::time::Instant::now(),
        }
    }

    fn config(n: usize) -> Arc<crate::config::Config> {
        let mut text = String::from("targets:\n");
        for i in 0..n {
            text.push_str(&format!("  - http://host{i}.test/\n"));
        }
        Arc::new(crate::config::parse(std::path::Path::new("t.yml"), &text).unwrap())
    }

    #[test]
    fn entries_are_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn a_flapping_target_shows_its_strip_uptime_and_details() {
        let c = config(2);
        let h = History::new(10);
        for k in 0..12u64 {
            h.record(&round(&c, 1_000 + k, |i| i == 0 || k % 2 == 0));
        }
        let (strip, uptime) = h.strip(&c.targets[1].label_block);
        assert_eq!(strip.len(), 10, "kept to the depth");
        assert!(strip.windows(2).all(|w| w[0].success() != w[1].success()));
        assert_eq!(uptime, Some(0.5));
        assert_eq!(h.strip(&c.targets[0].label_block).1, Some(1.0));
        let full = h.results(&c.targets[1].label_block);
        assert_eq!(full[0].at, UNIX_EPOCH + Duration::from_secs(1_011));
        assert_eq!(full[0].failure, Some(FailureReason::ConnectRefused));
        assert_eq!(
            full[0].text.as_deref(),
            Some("Connection refused (os error 111)")
        );
        assert_eq!(full[1].text.as_deref(), Some("HTTP/1.1 200 OK"));
        assert_eq!(full[1].phases[1], Duration::from_micros(500));
        assert_eq!(full[1].phases[3], Duration::from_micros(1001));
        // A reload keeps the targets that stay.
        let keep: std::collections::HashSet<&str> = [&*c.targets[0].label_block].into();
        h.retain(&keep);
        assert!(h.strip(&c.targets[1].label_block).0.is_empty());
        assert_eq!(h.strip(&c.targets[0].label_block).0.len(), 10);
    }

    #[test]
    fn a_usual_status_line_costs_no_text_and_any_other_is_kept() {
        let c = config(3);
        let h = History::new(10);
        let mut r = round(&c, 1_000, |_| true);
        r.results[1].status = Some(StatusLine {
            version: HttpVersion::Http10,
            code: 404,
            reason: crate::outcome::Reason::new(404, "Not Found"),
        });
        r.results[2].status = Some(StatusLine {
            version: HttpVersion::Http11,
            code: 200,
            reason: crate::outcome::Reason::new(200, "Fine"),
        });
        h.record(&r);
        let tracks = h.tracks.read().unwrap();
        let extra = |i: usize| tracks[&c.targets[i].label_block].extra.is_some();
        assert!(!extra(0) && !extra(1), "usual lines are marks");
        assert!(extra(2), "an unusual phrase is kept");
        drop(tracks);
        let text = |i: usize| h.results(&c.targets[i].label_block)[0].text.clone();
        assert_eq!(text(0).as_deref(), Some("HTTP/1.1 200 OK"));
        assert_eq!(text(1).as_deref(), Some("HTTP/1.0 404 Not Found"));
        assert_eq!(text(2).as_deref(), Some("HTTP/1.1 200 Fine"));
        // Marks survive the texts being renumbered when room is made.
        for k in 0..81u64 {
            let mut r = round(&c, 1_001 + k, |_| k % 2 == 0);
            if k % 2 == 1 {
                r.results[0].detail = Some(format!("{k} {}", "y".repeat(100)).into());
            }
            h.record(&r);
        }
        let full = h.results(&c.targets[0].label_block);
        assert_eq!(full.len(), 10);
        assert!(full[1].text.as_deref().unwrap().starts_with("79 yyy"));
        for r in full.iter().step_by(2) {
            assert_eq!(r.text.as_deref(), Some("HTTP/1.1 200 OK"), "{full:?}");
        }
    }

    #[test]
    fn a_default_history_keeps_fewer_rounds_of_a_file_too_large_for_its_budget() {
        // 10,000 targets: 60 rounds are 14 MiB of entries; 100,000: 10 rounds fit 24 MiB.
        assert_eq!(History::auto(10_000).depth(), DEFAULT_DEPTH);
        assert_eq!(History::auto(100_000).depth(), 10);
        assert_eq!(History::auto(10_000_000).depth(), 1);
        assert_eq!(History::auto(0).depth(), DEFAULT_DEPTH);
        // A depth given stays whatever the file.
        let given = History::new(60);
        given.fit(1_000_000);
        assert_eq!(given.depth(), 60);
        // A reload to a larger file shortens the rings as their next results come.
        let c = config(2);
        let h = History::auto(2);
        for k in 0..30u64 {
            h.record(&round(&c, 1_000 + k, |_| true));
        }
        assert_eq!(h.strip(&c.targets[0].label_block).0.len(), 30);
        h.fit(200_000);
        h.record(&round(&c, 2_000, |_| true));
        let (strip, _) = h.strip(&c.targets[0].label_block);
        assert_eq!(strip.len(), 5);
        assert_eq!(strip[4].time(), UNIX_EPOCH + Duration::from_secs(2_000));
        let tracks = h.tracks.read().unwrap();
        assert!(tracks[&c.targets[0].label_block].entries.capacity() <= 5);
    }

    #[test]
    fn the_shortest_histories_keep_what_they_say() {
        let c = config(1);
        for depth in 1..=5 {
            let h = History::new(depth);
            for k in 0..9u64 {
                h.record(&round(&c, 1_000 + k, |_| k % 2 == 0));
            }
            let (strip, _) = h.strip(&c.targets[0].label_block);
            assert_eq!(strip.len(), depth);
            assert_eq!(
                strip[depth - 1].time(),
                UNIX_EPOCH + Duration::from_secs(1_008)
            );
        }
    }

    #[test]
    fn texts_are_capped_per_result_and_per_target_and_the_newest_are_kept() {
        let c = config(1);
        let h = History::new(60);
        let key = c.targets[0].label_block.clone();
        for k in 0..120u64 {
            let mut r = round(&c, 1_000 + k, |_| false);
            // A detail that changes every round, and is long.
            r.results[0].detail = Some(format!("{k}: {}", "x".repeat(500)).into());
            h.record(&r);
        }
        let tracks = h.tracks.read().unwrap();
        let track = &tracks[&key];
        assert!(
            track.text_bytes() <= MAX_TARGET_TEXT_BYTES,
            "{}",
            track.text_bytes()
        );
        assert!(track.texts().iter().all(|t| t.len() <= MAX_TEXT_BYTES));
        assert!(track.texts().len() > 1, "more than one text kept");
        drop(tracks);
        let full = h.results(&key);
        assert_eq!(full.len(), 60);
        let newest = full[0].text.as_deref().unwrap();
        assert!(
            newest.starts_with("119: xxx") && newest.ends_with('…'),
            "{newest}"
        );
        assert!(newest.len() <= MAX_TEXT_BYTES);
        // The oldest lost theirs, and say so.
        assert_eq!(full[59].text.as_deref(), Some("(detail not kept)"));
        // Texts that repeat cost nothing more: a flapping target keeps both of its texts.
        let h = History::new(60);
        for k in 0..120u64 {
            h.record(&round(&c, 1_000 + k, |_| k % 2 == 0));
        }
        let full = h.results(&key);
        assert!(full.iter().all(|r| r.text.is_some()));
    }

    #[test]
    fn ten_thousand_flapping_targets_with_changing_details_fit_in_32_mib() {
        let c = config(10_000);
        let h = History::new(60);
        for k in 0..60u64 {
            let mut r = round(&c, 1_000 + k, |i| (i + k as usize) % 2 == 0);
            for (i, res) in r.results.iter_mut().enumerate() {
                if res.failure.is_some() {
                    res.detail = Some(
                        format!(
                            "redirect hop 2: http://host{i}.test/{k}/{}",
                            "p".repeat(150)
                        )
                        .into(),
                    );
                }
            }
            h.record(&r);
        }
        let bytes = h.approximate_bytes();
        assert!(bytes < 32 << 20, "{bytes} bytes");
    }

    #[test]
    fn ten_thousand_targets_by_sixty_rounds_fit_in_16_mib() {
        let c = config(10_000);
        let h = History::new(60);
        for k in 0..60u64 {
            h.record(&round(&c, 1_000 + k, |i| (i + k as usize) % 7 != 0));
        }
        let bytes = h.approximate_bytes();
        assert!(bytes < 16 << 20, "{bytes} bytes");
        println!(
            "history of 10,000 targets x 60 rounds: {:.1} MiB",
            bytes as f64 / (1 << 20) as f64
        );
    }
}
