//! [`UsedStates`]: login states (by their SHA-256, [`super::login_state_digest`]) whose callback
//! has been handled, in this process's memory until they expire, so that a replayed callback is
//! refused (RFC 6749 §10.12 binds `state` to one use). The embedded store keeps its replay set
//! here, and every replica keeps one as the fallback for while the shared store fails.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

/// Used login states → until when each counts as used. Expired entries are swept whenever the
/// map has doubled since the last sweep (and by [`UsedStates::sweep`], which the store's prune
/// calls): amortized O(1) per login, where a scan of every state of the last `login_timeout`
/// on each callback would grow with the login rate. The map holds at most about twice the
/// states of one `login_timeout`, or [`UsedStates::SWEEP_FLOOR`].
#[derive(Debug, Default)]
pub struct UsedStates {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Digest → keep-until, Unix milliseconds.
    keep_until: HashMap<[u8; 32], i64>,
    /// Entries left by the last sweep.
    swept_len: usize,
}

impl Seen {
    fn sweep(&mut self, now_ms: i64) -> usize {
        let before = self.keep_until.len();
        self.keep_until.retain(|_, until| *until > now_ms);
        self.swept_len = self.keep_until.len();
        before - self.keep_until.len()
    }
}

impl UsedStates {
    /// Below twice this many entries no sweep is worth it.
    pub const SWEEP_FLOOR: usize = 1024;

    /// Marks `digest` used until `keep_until`. Returns false when it already counts as used at
    /// `now` (a replay).
    pub fn mark(&self, digest: [u8; 32], now: DateTime<Utc>, keep_until: DateTime<Utc>) -> bool {
        let now_ms = now.timestamp_millis();
        let mut seen = self.lock();
        if seen.keep_until.len() >= seen.swept_len.max(Self::SWEEP_FLOOR) * 2 {
            seen.sweep(now_ms);
        }
        match seen.keep_until.get(&digest) {
            Some(until) if *until > now_ms => false,
            _ => {
                seen.keep_until
                    .insert(digest, keep_until.timestamp_millis());
                true
            }
        }
    }

    /// Forgets the states expired at `now`; returns how many went.
    pub fn sweep(&self, now: DateTime<Utc>) -> usize {
        self.lock().sweep(now.timestamp_millis())
    }

    /// States remembered right now, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().keep_until.len()
    }

    /// Whether no state is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map is whole after every insert or sweep, so a panic elsewhere cannot leave it
    /// half-changed.
    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn digest(n: u64) -> [u8; 32] {
        let mut digest = [0; 32];
        digest[..8].copy_from_slice(&n.to_be_bytes());
        digest
    }

    #[test]
    fn a_state_is_refused_until_it_expires_and_then_accepted_again() {
        let used = UsedStates::default();
        assert!(used.mark(digest(1), at(100), at(700)));
        assert!(!used.mark(digest(1), at(200), at(800)), "a replay");
        assert!(used.mark(digest(2), at(200), at(800)));
        assert!(
            !used.mark(digest(1), at(699), at(1300)),
            "just before expiry"
        );
        assert!(used.mark(digest(1), at(700), at(1300)), "expired at 700");
    }

    #[test]
    fn states_are_swept_as_they_expire_without_a_prune() {
        let used = UsedStates::default();
        // 20,000 logins, one a second, each state kept for 60 s: at most a minute's worth is
        // live, and the map never holds more than twice the floor.
        for n in 0..20_000_u64 {
            let now = at(n as i64);
            assert!(used.mark(digest(n), now, at(n as i64 + 60)));
            assert!(!used.mark(digest(n), now, at(n as i64 + 60)), "a replay");
            assert!(used.len() <= 2 * UsedStates::SWEEP_FLOOR);
        }
        let left = used.len();
        assert_eq!(used.sweep(at(20_000)), left - 59);
        assert_eq!(used.len(), 59);
        assert!(!used.is_empty());
    }
}
