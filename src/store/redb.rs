//! Embedded durable store (redb): the [`LogoutStore`] of a single replica, one file at
//! `<path>/bridge.redb`.
//!
//! Each operation is one redb write or read transaction, so it is atomic on its own; every
//! write commits durably (redb's default `Durability::Immediate`), which is why there is no
//! separate flush. redb calls are synchronous: each runs on tokio's blocking pool, so that an
//! fsync never stalls an async worker thread. Used login states stay in this process's memory:
//! the embedded store serves one replica, and a restart forgets them as it always did (the IdP's
//! single-use authorization codes remain the backstop).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use redb::{
    Builder, ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    Table, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    ClaimedJob, CompletedLogin, LoginRecord, LogoutStore, PruneReport, RelayJob, RelayJobId,
    RelayReason, ScimKind, ScimWrite, SessionRecord, StoreError, UsedStates, millis,
};

macro_rules! redb_error_from {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                Self::Database(error.into())
            }
        }
    )*};
}
redb_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// File name of the embedded database inside `[store] path`.
pub const DATABASE_FILE: &str = "bridge.redb";

// Tables. Values are JSON so that records can gain fields without a migration; times are
// milliseconds since the epoch.

/// `(iss, sub)` → JSON `{external_id: last_login_ms}`.
const LOGINS_BY_SUB: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("logins_by_sub");
/// `(iss, sid)` → JSON [`SidEntry`].
const LOGINS_BY_SID: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("logins_by_sid");
/// `(iss, jti)` → keep-until ms.
const SEEN_JTIS: TableDefinition<'_, (&str, &str), i64> = TableDefinition::new("seen_jtis");
/// job id → JSON [`StoredJob`].
const RELAY_JOBS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("relay_jobs");
/// session id → JSON [`SessionRecord`].
const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
/// Counters: [`NEXT_JOB_ID`], [`GIVEN_UP_TOTAL`].
const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("counters");
/// `(kind, id)` → SCIM record (JSON owned by `crate::scim`).
const SCIM: TableDefinition<'_, (&str, &str), &str> = TableDefinition::new("scim");

const NEXT_JOB_ID: &str = "next_job_id";
const GIVEN_UP_TOTAL: &str = "given_up_total";

#[derive(Debug, Serialize, Deserialize)]
struct SidEntry {
    external_id: String,
    #[serde(with = "millis")]
    logged_in_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredJob {
    /// End of the current lease (ms); absent when nobody holds the job.
    #[serde(default)]
    locked_until: Option<i64>,
    /// Who holds the lease, for diagnostics.
    #[serde(default)]
    locked_by: Option<String>,
    external_id: String,
    reason: RelayReason,
    #[serde(with = "millis")]
    created_at: DateTime<Utc>,
    attempts: u32,
    #[serde(with = "millis")]
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
}

impl From<&RelayJob> for StoredJob {
    fn from(job: &RelayJob) -> Self {
        Self {
            locked_until: None,
            locked_by: None,
            external_id: job.external_id.clone(),
            reason: job.reason,
            created_at: job.created_at,
            attempts: job.attempts,
            next_attempt_at: job.next_attempt_at,
            last_error: job.last_error.clone(),
            payload: job.payload.clone(),
        }
    }
}

impl From<StoredJob> for RelayJob {
    fn from(job: StoredJob) -> Self {
        Self {
            external_id: job.external_id,
            reason: job.reason,
            created_at: job.created_at,
            attempts: job.attempts,
            next_attempt_at: job.next_attempt_at,
            last_error: job.last_error,
            payload: job.payload,
        }
    }
}

fn encode<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}

/// Page cache of the embedded database; the data set is small (jobs, ids, a few KB per session).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The redb implementation of [`LogoutStore`], one file at `<path>/bridge.redb`.
///
/// The file is opened in redb's multi-writer mode (byte-range locks), so that the admin
/// commands (`logout --external-id`) can enqueue into the store of a running server; every
/// process sharing the directory must open it through [`RedbStore::open`].
#[derive(Debug)]
pub struct RedbStore {
    embedded: Arc<Embedded>,
    /// Used login states; per process (see the module docs).
    used_states: UsedStates,
}

/// The synchronous half: one redb database.
#[derive(Debug)]
struct Embedded {
    db: Database,
}

impl RedbStore {
    /// Opens (creating if needed) the store in `dir`. Synchronous (file I/O).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            embedded: Arc::new(Embedded::open(dir)?),
            used_states: UsedStates::default(),
        })
    }

    /// Everything the store holds, for [`super::copy`]. Synchronous.
    pub fn export(&self) -> Result<super::copy::Export, StoreError> {
        self.embedded.export()
    }

    /// [`LogoutStore::record_logins`] on the calling thread (for benchmarks that measure the
    /// calling thread's CPU time).
    pub fn record_logins_blocking(&self, logins: &[CompletedLogin]) -> Result<(), StoreError> {
        self.embedded.record_logins(logins)
    }

    /// [`LogoutStore::record_login`] then [`LogoutStore::put_session`] on the calling thread,
    /// as two transactions (what the callback once did; for benchmarks).
    pub fn record_login_and_session_blocking(
        &self,
        login: &LoginRecord,
        session_id: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        self.embedded.record_login(login)?;
        self.embedded.put_session(session_id, session)
    }

    /// Runs `call` on the blocking pool with a handle on the database.
    async fn run<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Embedded) -> Result<T, StoreError> + Send + 'static,
    {
        let embedded = Arc::clone(&self.embedded);
        tokio::task::spawn_blocking(move || call(&embedded))
            .await
            .map_err(|error| StoreError::Interrupted(error.to_string()))?
    }
}

impl Embedded {
    fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(dir.join(DATABASE_FILE))?;
        // Create every table once, so read transactions never meet a missing table.
        let txn = db.begin_write()?;
        {
            txn.open_table(LOGINS_BY_SUB)?;
            txn.open_table(LOGINS_BY_SID)?;
            txn.open_table(SEEN_JTIS)?;
            txn.open_table(RELAY_JOBS)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(COUNTERS)?;
            txn.open_table(SCIM)?;
        }
        txn.commit()?;
        Ok(Self { db })
    }
}

/// The tables a login writes, opened once per write transaction (opening a table costs a
/// lookup in the transaction's table tree, and closing it writes its root back).
struct LoginTables<'txn> {
    by_sub: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    by_sid: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    sessions: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> LoginTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            by_sub: txn.open_table(LOGINS_BY_SUB)?,
            by_sid: txn.open_table(LOGINS_BY_SID)?,
            sessions: txn.open_table(SESSIONS)?,
        })
    }

    /// Records who logged in: `(iss, sub)` → every `external_id` with its time, and
    /// `(iss, sid)` → the session's `external_id`.
    fn insert_login(&mut self, login: &LoginRecord) -> Result<(), StoreError> {
        let key = (login.iss.as_str(), login.sub.as_str());
        let mut ids: BTreeMap<String, i64> = match self.by_sub.get(key)? {
            Some(value) => decode("logins_by_sub", value.value())?,
            None => BTreeMap::new(),
        };
        ids.insert(
            login.external_id.clone(),
            login.logged_in_at.timestamp_millis(),
        );
        self.by_sub
            .insert(key, encode("logins_by_sub", &ids)?.as_slice())?;
        if let Some(sid) = &login.sid {
            let entry = SidEntry {
                external_id: login.external_id.clone(),
                logged_in_at: login.logged_in_at,
            };
            self.by_sid.insert(
                (login.iss.as_str(), sid.as_str()),
                encode("logins_by_sid", &entry)?.as_slice(),
            )?;
        }
        Ok(())
    }

    /// Stores a browser session.
    fn insert_session(
        &mut self,
        session_id: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        self.sessions
            .insert(session_id, encode("sessions", session)?.as_slice())?;
        Ok(())
    }
}

impl Embedded {
    fn record_login(&self, login: &LoginRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        LoginTables::open(&txn)?.insert_login(login)?;
        txn.commit()?;
        Ok(())
    }

    fn record_logins(&self, logins: &[CompletedLogin]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut tables = LoginTables::open(&txn)?;
            for completed in logins {
                tables.insert_login(&completed.login)?;
                tables.insert_session(&completed.session_id, &completed.session)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn external_ids_for_sub(&self, iss: &str, sub: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGINS_BY_SUB)?;
        let Some(value) = table.get((iss, sub))? else {
            return Ok(Vec::new());
        };
        let ids: BTreeMap<String, i64> = decode("logins_by_sub", value.value())?;
        let mut ids: Vec<(String, i64)> = ids.into_iter().collect();
        ids.sort_by_key(|(_, at)| *at);
        Ok(ids.into_iter().map(|(id, _)| id).collect())
    }

    fn external_id_for_sid(&self, iss: &str, sid: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGINS_BY_SID)?;
        let Some(value) = table.get((iss, sid))? else {
            return Ok(None);
        };
        let entry: SidEntry = decode("logins_by_sid", value.value())?;
        Ok(Some(entry.external_id))
    }

    fn remember_jti(
        &self,
        iss: &str,
        jti: &str,
        keep_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let is_new = {
            let mut table = txn.open_table(SEEN_JTIS)?;
            let known = table.get((iss, jti))?.is_some();
            if !known {
                table.insert((iss, jti), keep_until.timestamp_millis())?;
            }
            !known
        };
        txn.commit()?;
        Ok(is_new)
    }

    fn enqueue(&self, job: &RelayJob) -> Result<RelayJobId, StoreError> {
        let txn = self.db.begin_write()?;
        let id = insert_job(&txn, job)?;
        txn.commit()?;
        Ok(id)
    }

    fn accept_logout(
        &self,
        iss: &str,
        jti: &str,
        keep_until: DateTime<Utc>,
        jobs: &[RelayJob],
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SEEN_JTIS)?;
            if table.get((iss, jti))?.is_some() {
                return Ok(false);
            }
            table.insert((iss, jti), keep_until.timestamp_millis())?;
        }
        for job in jobs {
            insert_job(&txn, job)?;
        }
        txn.commit()?;
        Ok(true)
    }

    fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        holder: &str,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let now_ms = now.timestamp_millis();
        let until_ms = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let txn = self.db.begin_write()?;
        let claimed = {
            let mut jobs = txn.open_table(RELAY_JOBS)?;
            // The job table stays small (jobs leave it once delivered), so a scan is fine.
            let mut due: Vec<(RelayJobId, StoredJob)> = Vec::new();
            for entry in jobs.iter()? {
                let (id, value) = entry?;
                let job: StoredJob = decode("relay_jobs", value.value())?;
                let free = job.locked_until.is_none_or(|until| until <= now_ms);
                if free && job.next_attempt_at <= now {
                    due.push((id.value(), job));
                }
            }
            due.sort_by_key(|(id, job)| (job.next_attempt_at, *id));
            due.truncate(limit);
            let mut claimed = Vec::with_capacity(due.len());
            for (id, mut job) in due {
                let taken_over = job.locked_until.is_some();
                job.locked_until = Some(until_ms);
                job.locked_by = Some(holder.to_owned());
                jobs.insert(id, encode("relay_jobs", &job)?.as_slice())?;
                claimed.push(ClaimedJob {
                    id,
                    job: RelayJob::from(job),
                    taken_over,
                });
            }
            claimed
        };
        txn.commit()?;
        Ok(claimed)
    }

    fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RELAY_JOBS)?;
        let mut next: Option<DateTime<Utc>> = None;
        for entry in table.iter()? {
            let (_, value) = entry?;
            let job: StoredJob = decode("relay_jobs", value.value())?;
            let lease_end = job
                .locked_until
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or(job.next_attempt_at);
            let at = job.next_attempt_at.max(lease_end);
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        Ok(next)
    }

    fn reschedule(
        &self,
        id: RelayJobId,
        next_attempt_at: DateTime<Utc>,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut jobs = txn.open_table(RELAY_JOBS)?;
            let stored: Option<StoredJob> = match jobs.get(id)? {
                Some(value) => Some(decode("relay_jobs", value.value())?),
                None => None,
            };
            if let Some(mut job) = stored {
                job.next_attempt_at = next_attempt_at;
                job.attempts = attempts;
                job.last_error = Some(last_error.to_owned());
                job.locked_until = None;
                job.locked_by = None;
                jobs.insert(id, encode("relay_jobs", &job)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn complete(&self, id: RelayJobId) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(RELAY_JOBS)?.remove(id)?;
        txn.commit()?;
        Ok(())
    }

    fn give_up(&self, id: RelayJobId) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let removed = txn.open_table(RELAY_JOBS)?.remove(id)?.is_some();
            if removed {
                let mut counters = txn.open_table(COUNTERS)?;
                let total = counters
                    .get(GIVEN_UP_TOTAL)?
                    .map(|value| value.value())
                    .unwrap_or(0);
                counters.insert(GIVEN_UP_TOTAL, total.saturating_add(1))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn list_pending(&self) -> Result<Vec<(RelayJobId, RelayJob)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RELAY_JOBS)?;
        let mut pending = Vec::new();
        for entry in table.iter()? {
            let (id, value) = entry?;
            let job: StoredJob = decode("relay_jobs", value.value())?;
            pending.push((id.value(), RelayJob::from(job)));
        }
        pending.sort_by_key(|(id, job)| (job.next_attempt_at, *id));
        Ok(pending)
    }

    fn pending_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(RELAY_JOBS)?.len()?)
    }

    fn given_up_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let counters = txn.open_table(COUNTERS)?;
        Ok(counters
            .get(GIVEN_UP_TOTAL)?
            .map(|value| value.value())
            .unwrap_or(0))
    }

    fn put_session(&self, session_id: &str, session: &SessionRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(SESSIONS)?
            .insert(session_id, encode("sessions", session)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn take_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let txn = self.db.begin_write()?;
        let session = {
            let mut sessions = txn.open_table(SESSIONS)?;
            let removed = sessions.remove(session_id)?;
            match removed {
                Some(value) => Some(decode::<SessionRecord>("sessions", value.value())?),
                None => None,
            }
        };
        txn.commit()?;
        Ok(session.filter(|session| session.expires_at > now))
    }

    fn prune(
        &self,
        now: DateTime<Utc>,
        login_retention: Duration,
    ) -> Result<PruneReport, StoreError> {
        let retention = TimeDelta::from_std(login_retention).unwrap_or(TimeDelta::MAX);
        let oldest_ms = now
            .checked_sub_signed(retention)
            .map_or(i64::MIN, |t| t.timestamp_millis());
        let now_ms = now.timestamp_millis();
        let mut report = PruneReport::default();

        let txn = self.db.begin_write()?;
        {
            // (iss, sub): drop stale external ids inside each entry, then empty entries.
            let mut by_sub = txn.open_table(LOGINS_BY_SUB)?;
            // (iss, sub, new value or `None` to remove)
            let mut rewrites: Vec<(String, String, Option<Vec<u8>>)> = Vec::new();
            for entry in by_sub.iter()? {
                let (key, value) = entry?;
                let ids: BTreeMap<String, i64> = decode("logins_by_sub", value.value())?;
                let before = ids.len();
                let kept: BTreeMap<String, i64> =
                    ids.into_iter().filter(|(_, at)| *at >= oldest_ms).collect();
                if kept.len() != before {
                    report.logins += u64::try_from(before - kept.len()).unwrap_or(u64::MAX);
                    let (iss, sub) = key.value();
                    let value = if kept.is_empty() {
                        None
                    } else {
                        Some(encode("logins_by_sub", &kept)?)
                    };
                    rewrites.push((iss.to_owned(), sub.to_owned(), value));
                }
            }
            for (iss, sub, value) in rewrites {
                match value {
                    Some(value) => by_sub.insert((iss.as_str(), sub.as_str()), value.as_slice())?,
                    None => by_sub.remove((iss.as_str(), sub.as_str()))?,
                };
            }

            let mut by_sid = txn.open_table(LOGINS_BY_SID)?;
            let mut stale_sids: Vec<(String, String)> = Vec::new();
            for entry in by_sid.iter()? {
                let (key, value) = entry?;
                let sid: SidEntry = decode("logins_by_sid", value.value())?;
                if sid.logged_in_at.timestamp_millis() < oldest_ms {
                    let (iss, sid) = key.value();
                    stale_sids.push((iss.to_owned(), sid.to_owned()));
                }
            }
            for (iss, sid) in &stale_sids {
                by_sid.remove((iss.as_str(), sid.as_str()))?;
                report.logins += 1;
            }

            let mut jtis = txn.open_table(SEEN_JTIS)?;
            let before = jtis.len()?;
            jtis.retain(|_, keep_until| keep_until >= now_ms)?;
            report.jtis = before.saturating_sub(jtis.len()?);

            let mut sessions = txn.open_table(SESSIONS)?;
            let mut expired: Vec<String> = Vec::new();
            for entry in sessions.iter()? {
                let (key, value) = entry?;
                let session: SessionRecord = decode("sessions", value.value())?;
                if session.expires_at <= now {
                    expired.push(key.value().to_owned());
                }
            }
            for session_id in &expired {
                sessions.remove(session_id.as_str())?;
                report.sessions += 1;
            }
        }
        txn.commit()?;
        Ok(report)
    }
}

impl Embedded {
    fn scim_get(&self, kind: ScimKind, id: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SCIM)?;
        Ok(table
            .get((kind.as_str(), id))?
            .map(|value| value.value().to_owned()))
    }

    fn scim_list(&self, kind: ScimKind) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SCIM)?;
        let mut out = Vec::new();
        for entry in table.range((kind.as_str(), "")..)? {
            let (key, value) = entry?;
            let (entry_kind, id) = key.value();
            if entry_kind != kind.as_str() {
                break;
            }
            out.push((id.to_owned(), value.value().to_owned()));
        }
        Ok(out)
    }

    fn scim_apply(&self, writes: &[ScimWrite], jobs: &[RelayJob]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SCIM)?;
            for write in writes {
                let key = (write.kind.as_str(), write.id.as_str());
                match &write.record {
                    Some(record) => {
                        table.insert(key, record.as_str())?;
                    }
                    None => {
                        table.remove(key)?;
                    }
                }
            }
        }
        {
            // The job table stays small (jobs leave it once delivered), so a scan is fine.
            let mut table = txn.open_table(RELAY_JOBS)?;
            let mut superseded = Vec::new();
            for entry in table.iter()? {
                let (id, value) = entry?;
                let stored: StoredJob = decode("relay_jobs", value.value())?;
                if jobs.iter().any(|job| {
                    job.external_id == stored.external_id
                        && job.reason.supersedes().contains(&stored.reason)
                }) {
                    superseded.push(id.value());
                }
            }
            for id in superseded {
                table.remove(id)?;
            }
        }
        for job in jobs {
            insert_job(&txn, job)?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// Adds a job under the next id.
fn insert_job(txn: &WriteTransaction, job: &RelayJob) -> Result<RelayJobId, StoreError> {
    let mut counters = txn.open_table(COUNTERS)?;
    let id = counters
        .get(NEXT_JOB_ID)?
        .map(|value| value.value())
        .unwrap_or(1);
    counters.insert(NEXT_JOB_ID, id.saturating_add(1))?;
    let mut table = txn.open_table(RELAY_JOBS)?;
    table.insert(id, encode("relay_jobs", &StoredJob::from(job))?.as_slice())?;
    Ok(id)
}

impl Embedded {
    fn export(&self) -> Result<super::copy::Export, StoreError> {
        let mut export = super::copy::Export::default();
        let txn = self.db.begin_read()?;
        for entry in txn.open_table(LOGINS_BY_SUB)?.iter()? {
            let (key, value) = entry?;
            let (iss, sub) = key.value();
            let ids: BTreeMap<String, i64> = decode("logins_by_sub", value.value())?;
            for (external_id, at) in ids {
                export.by_sub.push(super::copy::LoginEntry {
                    iss: iss.to_owned(),
                    key: sub.to_owned(),
                    external_id,
                    logged_in_at: from_millis("logins_by_sub", at)?,
                });
            }
        }
        for entry in txn.open_table(LOGINS_BY_SID)?.iter()? {
            let (key, value) = entry?;
            let (iss, sid) = key.value();
            let entry: SidEntry = decode("logins_by_sid", value.value())?;
            export.by_sid.push(super::copy::LoginEntry {
                iss: iss.to_owned(),
                key: sid.to_owned(),
                external_id: entry.external_id,
                logged_in_at: entry.logged_in_at,
            });
        }
        for entry in txn.open_table(SEEN_JTIS)?.iter()? {
            let (key, keep_until) = entry?;
            let (iss, jti) = key.value();
            export.jtis.push((
                iss.to_owned(),
                jti.to_owned(),
                from_millis("seen_jtis", keep_until.value())?,
            ));
        }
        for entry in txn.open_table(SESSIONS)?.iter()? {
            let (key, value) = entry?;
            export.sessions.push((
                key.value().to_owned(),
                decode::<SessionRecord>("sessions", value.value())?,
            ));
        }
        for entry in txn.open_table(RELAY_JOBS)?.iter()? {
            let (id, value) = entry?;
            let job: StoredJob = decode("relay_jobs", value.value())?;
            export.jobs.push((id.value(), RelayJob::from(job)));
        }
        Ok(export)
    }
}

fn from_millis(table: &'static str, ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or(StoreError::Corrupt {
        table,
        detail: "timestamp out of range".to_owned(),
    })
}

#[async_trait::async_trait]
impl LogoutStore for RedbStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn record_login(&self, login: &LoginRecord) -> Result<(), StoreError> {
        let login = login.clone();
        self.run(move |db| db.record_login(&login)).await
    }

    async fn record_logins(&self, logins: &[CompletedLogin]) -> Result<(), StoreError> {
        let logins = logins.to_vec();
        self.run(move |db| db.record_logins(&logins)).await
    }

    async fn external_ids_for_sub(&self, iss: &str, sub: &str) -> Result<Vec<String>, StoreError> {
        let (iss, sub) = (iss.to_owned(), sub.to_owned());
        self.run(move |db| db.external_ids_for_sub(&iss, &sub))
            .await
    }

    async fn external_id_for_sid(
        &self,
        iss: &str,
        sid: &str,
    ) -> Result<Option<String>, StoreError> {
        let (iss, sid) = (iss.to_owned(), sid.to_owned());
        self.run(move |db| db.external_id_for_sid(&iss, &sid)).await
    }

    async fn remember_jti(
        &self,
        iss: &str,
        jti: &str,
        keep_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (iss, jti) = (iss.to_owned(), jti.to_owned());
        self.run(move |db| db.remember_jti(&iss, &jti, keep_until))
            .await
    }

    async fn accept_logout(
        &self,
        iss: &str,
        jti: &str,
        keep_until: DateTime<Utc>,
        jobs: &[RelayJob],
    ) -> Result<bool, StoreError> {
        let (iss, jti, jobs) = (iss.to_owned(), jti.to_owned(), jobs.to_vec());
        self.run(move |db| db.accept_logout(&iss, &jti, keep_until, &jobs))
            .await
    }

    async fn mark_login_state_used(
        &self,
        digest: [u8; 32],
        now: DateTime<Utc>,
        keep_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.used_states.mark(digest, now, keep_until))
    }

    async fn scim_get(&self, kind: ScimKind, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_owned();
        self.run(move |db| db.scim_get(kind, &id)).await
    }

    async fn scim_list(&self, kind: ScimKind) -> Result<Vec<(String, String)>, StoreError> {
        self.run(move |db| db.scim_list(kind)).await
    }

    async fn scim_apply(&self, writes: &[ScimWrite], jobs: &[RelayJob]) -> Result<(), StoreError> {
        let (writes, jobs) = (writes.to_vec(), jobs.to_vec());
        self.run(move |db| db.scim_apply(&writes, &jobs)).await
    }

    async fn enqueue(&self, job: &RelayJob) -> Result<RelayJobId, StoreError> {
        let job = job.clone();
        self.run(move |db| db.enqueue(&job)).await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        holder: &str,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let holder = holder.to_owned();
        self.run(move |db| db.claim_due(now, limit, lease, &holder))
            .await
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.run(Embedded::next_due_at).await
    }

    async fn reschedule(
        &self,
        id: RelayJobId,
        next_attempt_at: DateTime<Utc>,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), StoreError> {
        let last_error = last_error.to_owned();
        self.run(move |db| db.reschedule(id, next_attempt_at, attempts, &last_error))
            .await
    }

    async fn complete(&self, id: RelayJobId) -> Result<(), StoreError> {
        self.run(move |db| db.complete(id)).await
    }

    async fn give_up(&self, id: RelayJobId) -> Result<(), StoreError> {
        self.run(move |db| db.give_up(id)).await
    }

    async fn list_pending(&self) -> Result<Vec<(RelayJobId, RelayJob)>, StoreError> {
        self.run(Embedded::list_pending).await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        self.run(Embedded::pending_count).await
    }

    async fn given_up_count(&self) -> Result<u64, StoreError> {
        self.run(Embedded::given_up_count).await
    }

    async fn put_session(
        &self,
        session_id: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        let (session_id, session) = (session_id.to_owned(), session.clone());
        self.run(move |db| db.put_session(&session_id, &session))
            .await
    }

    async fn take_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let session_id = session_id.to_owned();
        self.run(move |db| db.take_session(&session_id, now)).await
    }

    async fn prune(
        &self,
        now: DateTime<Utc>,
        login_retention: Duration,
    ) -> Result<PruneReport, StoreError> {
        let login_states = u64::try_from(self.used_states.sweep(now)).unwrap_or(u64::MAX);
        let mut report = self.run(move |db| db.prune(now, login_retention)).await?;
        report.login_states = login_states;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    //! What only the embedded backend does; the behaviour both backends share is tested once
    //! for both in the end-to-end test binary's store suite.
    use super::*;
    use crate::store::RelayReason;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn open_creates_the_directory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("data").join("store");
        RedbStore::open(&nested).unwrap();
        assert!(nested.join(DATABASE_FILE).is_file());
    }

    #[tokio::test]
    async fn job_ids_are_not_reused_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let job = RelayJob::new("ext-a", RelayReason::BackchannelLogout, at(0));
        let first = store.enqueue(&job).await.unwrap();
        store.complete(first).await.unwrap();
        drop(store);
        let store = RedbStore::open(dir.path()).unwrap();
        assert!(store.enqueue(&job).await.unwrap() > first);
    }

    #[tokio::test]
    async fn two_handles_on_one_directory_see_each_others_commits() {
        // What the admin command does while the server runs.
        let dir = tempfile::tempdir().unwrap();
        let server = RedbStore::open(dir.path()).unwrap();
        let admin = RedbStore::open(dir.path()).unwrap();
        let id = admin
            .enqueue(&RelayJob::new("ext-a", RelayReason::AdminCommand, at(0)))
            .await
            .unwrap();
        let due = server
            .claim_due(at(0), 10, Duration::from_secs(60), "server")
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, id);
        server.complete(id).await.unwrap();
        assert_eq!(admin.pending_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_store_written_before_leases_existed_is_read() {
        // Jobs written by an earlier version carry no lease fields.
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        {
            let txn = store.embedded.db.begin_write().unwrap();
            txn.open_table(RELAY_JOBS)
                .unwrap()
                .insert(
                    7,
                    br#"{"external_id":"ext-old","reason":"admin_command","created_at":0,"attempts":1,"next_attempt_at":0,"last_error":null}"#
                        .as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
        }
        let due = store
            .claim_due(at(0), 10, Duration::from_secs(60), "server")
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].id, due[0].job.attempts), (7, 1));
        assert!(!due[0].taken_over);
    }
}
