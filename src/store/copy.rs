//! Moving a single-replica deployment onto the shared store: copies an embedded store's login
//! records, sessions, replay set and pending relay jobs into PostgreSQL.
//!
//! Idempotent: rows already present are left alone, and each embedded job is queued once however
//! often the copy runs (`bridge_imported_jobs` remembers it, even after it was delivered). Used
//! login states live in memory only and are not copied; neither is the given-up counter.

use chrono::{DateTime, Utc};

use super::{PgStore, RedbStore, RelayJob, RelayJobId, SessionRecord, StoreError};

/// One login entry: `key` is the `sub` (by subject) or the `sid` (by session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEntry {
    pub iss: String,
    pub key: String,
    pub external_id: String,
    pub logged_in_at: DateTime<Utc>,
}

/// Everything an embedded store holds.
#[derive(Debug, Clone, Default)]
pub struct Export {
    pub by_sub: Vec<LoginEntry>,
    pub by_sid: Vec<LoginEntry>,
    /// `(iss, jti, keep_until)`.
    pub jtis: Vec<(String, String, DateTime<Utc>)>,
    /// `(session id, session)`.
    pub sessions: Vec<(String, SessionRecord)>,
    pub jobs: Vec<(RelayJobId, RelayJob)>,
}

/// Rows a copy added (rows already present are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub logins: u64,
    pub jtis: u64,
    pub sessions: u64,
    pub jobs: u64,
}

/// Copies `from` into `to` in one PostgreSQL transaction (all or nothing).
pub async fn embedded_to_postgres(
    from: &RedbStore,
    to: &PgStore,
) -> Result<CopyReport, StoreError> {
    let export = from.export()?;
    to.import(&export).await
}
