//! [`UsedStates`]: the login states whose callback has been handled, so that a replayed
//! callback is refused even when an old copy of the login cookie is presented again (RFC 6749
//! §10.12 asks the client to bind `state` to one use).

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// States whose callback has been handled, remembered until their cookie could no longer be
/// valid. Per process: with several replicas the IdP's single-use authorization codes remain
/// the backstop.
#[derive(Debug, Default)]
pub struct UsedStates {
    seen: Mutex<SeenStates>,
}

#[derive(Debug, Default)]
struct SeenStates {
    /// SHA-256 of the state → until when it counts as used (Unix seconds).
    until: HashMap<[u8; 32], i64>,
    /// When expired entries were last dropped: at most once a second, so that a busy bridge
    /// does not scan every login of the last `login_timeout` on every callback.
    pruned_at: i64,
}

impl UsedStates {
    /// Marks `state` used until `expires_at` (Unix seconds). Returns false when it was already
    /// used. Expired entries are pruned on the way.
    pub fn mark_used(&self, state: &str, now: i64, expires_at: i64) -> bool {
        let digest: [u8; 32] = Sha256::digest(state.as_bytes()).into();
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if now > seen.pruned_at {
            seen.until.retain(|_, until| *until > now);
            seen.pruned_at = now;
        }
        match seen.until.get(&digest) {
            Some(until) if *until > now => false,
            _ => {
                seen.until.insert(digest, expires_at);
                true
            }
        }
    }

    /// States remembered right now (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |seen| seen.until.len())
    }

    /// Whether no state is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_states_are_refused_until_they_expire_and_then_forgotten() {
        let used = UsedStates::default();
        assert!(used.mark_used("a", 100, 700));
        assert!(!used.mark_used("a", 101, 700), "a replay is refused");
        for n in 0..2000 {
            assert!(used.mark_used(&format!("s{n}"), 102, 702));
        }
        assert!(
            !used.mark_used("a", 699, 700),
            "still refused just before expiry"
        );
        assert_eq!(used.len(), 2001);
        // A second later everything has expired and is dropped.
        assert!(used.mark_used("b", 703, 1300));
        assert_eq!(used.len(), 1);
        assert!(
            used.mark_used("a", 704, 1300),
            "an expired state is no longer known"
        );
    }

    #[test]
    fn used_states_refuse_a_second_use_until_expiry() {
        let used = UsedStates::default();
        assert!(used.mark_used("s1", 100, 700));
        assert!(!used.mark_used("s1", 200, 800));
        assert!(used.mark_used("s2", 200, 800));
        assert!(
            used.mark_used("s1", 701, 1300),
            "forgotten after it expired"
        );
    }
}
