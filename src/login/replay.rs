//! The callback's single-use check of the login `state` (RFC 6749 §10.12 binds `state` to one
//! use): a callback replayed with an old copy of the login cookie is refused, on this replica
//! and, with the shared store, on every other.

use chrono::{DateTime, Utc};

use crate::store::{LogoutStore, UsedStates, login_state_digest};

/// Whether this is the first use of `state`. The store decides (so a callback replayed against
/// another replica is refused); while the store fails, this replica's own memory `fallback`
/// does, so that logins still complete during a database outage (a replay on another replica is
/// then stopped by the IdP's single-use authorization code). `valid_until` is in Unix seconds:
/// until then the login cookie could be presented, so until then the state counts as used.
pub async fn first_use_of_state(
    store: &dyn LogoutStore,
    fallback: &UsedStates,
    state: &str,
    now: DateTime<Utc>,
    valid_until: i64,
) -> bool {
    let keep_until = DateTime::from_timestamp(valid_until, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
    let digest = login_state_digest(state);
    let local = fallback.mark(digest, now, keep_until);
    match store.mark_login_state_used(digest, now, keep_until).await {
        Ok(first) => first && local,
        Err(error) => {
            metrics::counter!("bridge_store_errors_total", "operation" => "login_state")
                .increment(1);
            tracing::warn!(%error, "the store cannot check the login state; this replica's memory decides");
            local
        }
    }
}
