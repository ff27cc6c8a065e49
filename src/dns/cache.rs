//! `--dns.cache`: answers kept across rounds for their TTL, in bounded memory. An entry is
//! never served past its TTL and is dropped once expired; the cache holds at most
//! [`MAX_ENTRIES`] names, and when full it drops the expired entries first, then the oldest.
//!
//! Pure logic over a clock given by the caller, so it is tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::probe_url::IpProtocol;

/// Most entries (one per name and `ip_protocol`) the cache holds: 16,384, a few MiB.
pub const MAX_ENTRIES: usize = 16_384;

/// How often, at most, an insertion sweeps out the expired entries.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// One kept answer.
#[derive(Debug)]
struct Entry {
    /// When it stops being served.
    until: Instant,
    /// The order of insertion: smaller is older.
    age: u64,
    /// The addresses, ordered as served.
    addrs: Arc<[IpAddr]>,
}

/// Answers by `(name, ip_protocol)`, each until its TTL runs out.
#[derive(Debug)]
pub struct Cache {
    /// The entries.
    entries: HashMap<(String, IpProtocol), Entry>,
    /// Insertions so far (the next entry's age).
    inserted: u64,
    /// When the next sweep of expired entries is due.
    next_sweep: Option<Instant>,
    /// Most entries kept.
    capacity: usize,
}

impl Default for Cache {
    fn default() -> Self {
        Cache::with_capacity(MAX_ENTRIES)
    }
}

impl Cache {
    /// A cache of at most `capacity` entries (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Cache {
            entries: HashMap::new(),
            inserted: 0,
            next_sweep: None,
            capacity: capacity.max(1),
        }
    }

    /// The answer for `key` if it has not expired at `now`; an expired one is dropped.
    pub fn get(&mut self, key: &(String, IpProtocol), now: Instant) -> Option<Arc<[IpAddr]>> {
        match self.entries.get(key) {
            Some(e) if e.until > now => Some(e.addrs.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keep `addrs` for `key` for `ttl` from `now` (a TTL of 0 keeps nothing). Expired
    /// entries are swept out every 10 s at most; when the cache is full, the expired
    /// entries go first, then the oldest eighth.
    pub fn insert(
        &mut self,
        key: (String, IpProtocol),
        addrs: Arc<[IpAddr]>,
        ttl: Duration,
        now: Instant,
    ) {
        if self.next_sweep.is_none_or(|at| now >= at) {
            self.entries.retain(|_, e| e.until > now);
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
        if ttl.is_zero() {
            self.entries.remove(&key);
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.until > now);
            if self.entries.len() >= self.capacity {
                self.evict_oldest();
            }
        }
        self.inserted += 1;
        let until = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(1 << 31));
        self.entries.insert(
            key,
            Entry {
                until,
                age: self.inserted,
                addrs,
            },
        );
    }

    /// Drop the oldest eighth of the entries (at least one), so that a full cache pays for a
    /// scan once every many insertions.
    fn evict_oldest(&mut self) {
        let drop = (self.capacity / 8).max(1).min(self.entries.len());
        let mut ages: Vec<u64> = self.entries.values().map(|e| e.age).collect();
        let (_, nth, _) = ages.select_nth_unstable(drop - 1);
        let cutoff = *nth;
        self.entries.retain(|_, e| e.age > cutoff);
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> (String, IpProtocol) {
        (format!("n{i}.test"), IpProtocol::Auto)
    }

    fn addrs() -> Arc<[IpAddr]> {
        Arc::from(vec![IpAddr::from([127, 0, 0, 1])])
    }

    #[test]
    fn entries_are_served_for_their_ttl_only() {
        let t0 = Instant::now();
        let mut c = Cache::default();
        c.insert(key(1), addrs(), Duration::from_secs(5), t0);
        c.insert(key(2), addrs(), Duration::ZERO, t0);
        assert!(c.get(&key(1), t0 + Duration::from_secs(4)).is_some());
        assert!(c.get(&key(2), t0).is_none());
        assert!(c.get(&key(1), t0 + Duration::from_secs(5)).is_none());
        // The expired entry was dropped, not only hidden.
        assert!(c.is_empty());
    }

    #[test]
    fn expired_one_off_names_are_swept_out() {
        let t0 = Instant::now();
        let mut c = Cache::default();
        for i in 0..10_000 {
            c.insert(key(i), addrs(), Duration::from_secs(1), t0);
        }
        assert_eq!(c.len(), 10_000);
        // Never asked for again: the next insertion after the sweep interval drops them.
        c.insert(
            key(99_999),
            addrs(),
            Duration::from_secs(60),
            t0 + SWEEP_INTERVAL,
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_count_is_bounded_expired_first_then_oldest() {
        let t0 = Instant::now();
        let mut c = Cache::with_capacity(80);
        // 40 long-lived, then 40 short-lived entries: full.
        for i in 0..40 {
            c.insert(key(i), addrs(), Duration::from_secs(3600), t0);
        }
        for i in 40..80 {
            c.insert(key(i), addrs(), Duration::from_secs(2), t0);
        }
        assert_eq!(c.len(), 80);
        // Three seconds later (before a sweep is due) a new name comes: the expired go first
        // and every long-lived entry stays.
        let t1 = t0 + Duration::from_secs(3);
        c.insert(key(80), addrs(), Duration::from_secs(3600), t1);
        assert_eq!(c.len(), 41);
        assert!((0..40).all(|i| c.get(&key(i), t1).is_some()));
        // Nothing expired: the oldest go.
        for i in 81..200 {
            c.insert(key(i), addrs(), Duration::from_secs(3600), t1);
            assert!(c.len() <= 80);
        }
        assert!(c.get(&key(0), t1).is_none(), "the oldest entry stayed");
        assert!(c.get(&key(199), t1).is_some(), "the newest entry went");
        // 100,000 distinct names never hold more than the bound.
        let mut c = Cache::default();
        for i in 0..100_000 {
            c.insert(key(i), addrs(), Duration::from_secs(3600), t0);
        }
        assert!(c.len() <= MAX_ENTRIES);
        assert!(c.get(&key(99_999), t0).is_some());
    }
}
