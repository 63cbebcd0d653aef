//! Principals of recently seen bearer tokens, so a call does not cost a database read.
//!
//! Entries are keyed by the token's SHA-256 (the token itself is never kept) and live at most
//! [`TTL`]; each is tagged with the store's credential epoch read *before* the lookup that
//! produced it, and is only used while the epoch is unchanged. Every store change that ends
//! or weakens a credential moves the epoch on after its write, so a logout, a revoked token,
//! a deleted user or a changed role takes effect on the very next call, and a lookup racing
//! with such a change can never leave a stale entry behind.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::Principal;

/// How long an entry is used without asking the database again.
pub const TTL: Duration = Duration::from_secs(10);
/// Most entries held; when full, stale ones are dropped, and if none is stale, all.
const MAX_ENTRIES: usize = 4096;

/// One cached principal.
#[derive(Clone, Debug)]
pub struct Cached {
    /// Who the token is.
    pub principal: Principal,
    /// For a session: when it was last recorded as used, Unix ms (the idle timeout slides).
    pub last_used_at: i64,
    epoch: u64,
    at: Instant,
}

/// The cache.
#[derive(Default)]
pub struct PrincipalCache {
    // std Mutex: a map lookup or insert, never held across an await.
    entries: Mutex<HashMap<String, Cached>>,
}

impl PrincipalCache {
    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for a token hash, if it is fresh and from the current epoch.
    pub fn get(&self, hash: &str, epoch: u64) -> Option<Cached> {
        let mut m = self.locked();
        let c = m.get(hash)?;
        if c.epoch == epoch && c.at.elapsed() < TTL {
            return Some(c.clone());
        }
        m.remove(hash);
        None
    }

    /// Keeps what a lookup that started at `epoch` found.
    pub fn put(&self, hash: String, principal: Principal, last_used_at: i64, epoch: u64) {
        let mut m = self.locked();
        if m.len() >= MAX_ENTRIES && !m.contains_key(&hash) {
            m.retain(|_, c| c.epoch == epoch && c.at.elapsed() < TTL);
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
        }
        m.insert(
            hash,
            Cached {
                principal,
                last_used_at,
                epoch,
                at: Instant::now(),
            },
        );
    }

    /// Records a session's use written to the store.
    pub fn touched(&self, hash: &str, at: i64) {
        if let Some(c) = self.locked().get_mut(hash) {
            c.last_used_at = at;
        }
    }

    /// Number of entries (tests).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.locked().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Principal {
        Principal::Spawner { id: "s".into() }
    }

    #[test]
    fn entries_of_an_older_epoch_are_never_used() {
        let c = PrincipalCache::default();
        c.put("h".into(), p(), 0, 1);
        assert!(c.get("h", 1).is_some());
        assert!(c.get("h", 2).is_none());
        // And the stale entry is gone for good.
        assert!(c.get("h", 1).is_none());
    }

    #[test]
    fn a_full_cache_makes_room() {
        let c = PrincipalCache::default();
        for i in 0..MAX_ENTRIES {
            c.put(format!("h{i}"), p(), 0, 1);
        }
        assert_eq!(c.entries(), MAX_ENTRIES);
        c.put("new".into(), p(), 0, 2);
        assert_eq!(c.entries(), 1);
        assert!(c.get("new", 2).is_some());
    }
}
