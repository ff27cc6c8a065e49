//! Connection gates: how many probes hold (or are about to open) a connection to one host or
//! one address, against a cap that every gate of a set shares and a reload may change.
//!
//! A gate is waited for in FIFO order and woken by any permit of its key that is freed,
//! whichever round, `/probe` request or traced probe held it. Gates nobody holds are dropped
//! by [`Gates::sweep`].
//!
//! Imports nothing of this crate.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Lock a mutex whose data stays valid even if a holder panicked (every critical section
/// here and in the rounds leaves its data consistent at each step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The connections of one key, counted across everything that shares the set.
#[derive(Debug, Default)]
pub struct Gate {
    /// Permits held: each stands for at most one connection open.
    open: Mutex<usize>,
    /// Wakes the first waiter (FIFO) when a permit is freed.
    freed: Notify,
}

impl Gate {
    /// Places held now.
    pub fn open(&self) -> usize {
        *lock(&self.open)
    }
}

/// A place at one gate, freed when dropped (the connection closed, the probe ended or was
/// aborted, or it never started).
#[derive(Debug)]
pub struct Permit {
    /// The gate it holds a place of.
    gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut open = lock(&self.gate.open);
            *open = open.saturating_sub(1);
        }
        self.gate.freed.notify_one();
    }
}

/// One gate per key, all under one cap.
#[derive(Debug)]
pub struct Gates<K> {
    /// The gates in use.
    map: Mutex<HashMap<K, Arc<Gate>>>,
    /// Permits per key at most: shared with the other sets of the same prober.
    cap: Arc<AtomicUsize>,
}

impl<K: Hash + Eq + Clone> Gates<K> {
    /// Gates under `cap`, which the owner may change (see [`Gates::wake_all`]).
    pub fn new(cap: Arc<AtomicUsize>) -> Self {
        Gates {
            map: Mutex::new(HashMap::new()),
            cap,
        }
    }

    /// The gate of `key`.
    pub fn gate(&self, key: &K) -> Arc<Gate> {
        lock(&self.map).entry(key.clone()).or_default().clone()
    }

    /// A place at `gate` if it is below the cap now.
    fn take(&self, gate: &Arc<Gate>) -> Option<Permit> {
        let mut open = lock(&gate.open);
        (*open < self.cap.load(Ordering::Relaxed).max(1)).then(|| {
            *open += 1;
            Permit { gate: gate.clone() }
        })
    }

    /// Wait for a place at `gate` (one of this set's).
    pub async fn enter(&self, gate: &Arc<Gate>) -> Permit {
        loop {
            // Registered before the count is read, so that a permit freed in between wakes us.
            let freed = gate.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(permit) = self.take(gate) {
                return permit;
            }
            freed.await;
        }
    }

    /// A place at `key`'s gate if one is free now, without waiting.
    pub fn try_slot(&self, key: &K) -> Option<Permit> {
        self.take(&self.gate(key))
    }

    /// Wait for a place at `key`'s gate.
    pub async fn slot(&self, key: &K) -> Permit {
        let gate = self.gate(key);
        self.enter(&gate).await
    }

    /// Let every waiter check the cap again (it was raised).
    pub fn wake_all(&self) {
        for gate in lock(&self.map).values() {
            gate.freed.notify_waiters();
        }
    }

    /// Drop the gates nobody holds or waits at.
    pub fn sweep(&self) {
        lock(&self.map).retain(|_, g| Arc::strong_count(g) > 1);
    }

    /// How many gates are in use.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether no gate is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_freed_permit_wakes_a_waiter_of_its_key_only() {
        let gates = Arc::new(Gates::new(Arc::new(AtomicUsize::new(1))));
        let a = gates.slot(&"a").await;
        let _b = gates.slot(&"b").await;
        let waiter = {
            let gates = gates.clone();
            tokio::spawn(async move { gates.slot(&"a").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a second place at a cap of 1 waits");
        drop(a);
        let again = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken by the freed permit")
            .unwrap();
        drop(again);
        gates.sweep();
        assert_eq!(gates.len(), 1, "only b's gate is still held");
    }
}
