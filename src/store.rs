//! Embedded durable store (redb): relay jobs, replayed `jti`s, login records and ID tokens for logout hints.
//!
//! Everything the logout paths must not lose across a restart lives here, behind the
//! [`LogoutStore`] trait so a shared backend (for several replicas) can replace the embedded
//! [`RedbStore`] later. The store never reads the clock: every time is an argument. Calls are
//! short and synchronous (redb is); async callers may wrap them in `spawn_blocking`.
//!
//! Each operation is one redb write or read transaction, so it is atomic on its own; every
//! write commits durably (redb's default `Durability::Immediate`), which is why there is no
//! separate flush.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;

use redb::{
    Builder, ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    Table, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// File name of the embedded database inside `[store] path`.
pub const DATABASE_FILE: &str = "bridge.redb";

/// Identifier of a relay job, unique for the life of a store.
pub type RelayJobId = u64;

/// Why a relay job exists; kept for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayReason {
    /// The IdP sent a back-channel logout token.
    BackchannelLogout,
    /// An operator ran `discourse-oidc-bridge logout --external-id`.
    AdminCommand,
}

impl RelayReason {
    /// Stable name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BackchannelLogout => "backchannel_logout",
            Self::AdminCommand => "admin_command",
        }
    }
}

/// One pending "log this Discourse user out" delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayJob {
    /// The DiscourseConnect `external_id` the bridge sent for the user.
    pub external_id: String,
    pub reason: RelayReason,
    /// When the job was enqueued; the retry window counts from here.
    pub created_at: DateTime<Utc>,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Not to be attempted before this moment.
    pub next_attempt_at: DateTime<Utc>,
    /// Short description of the last failure, for logs (never contains secrets).
    pub last_error: Option<String>,
}

impl RelayJob {
    /// A fresh job, due at once.
    pub fn new(external_id: impl Into<String>, reason: RelayReason, now: DateTime<Utc>) -> Self {
        Self {
            external_id: external_id.into(),
            reason,
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
        }
    }
}

/// What the login path records for each successful login, so that a later logout token (which
/// may carry only `sid`, and whose `sub` need not be the `external_id`) finds the Discourse user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    pub iss: String,
    pub sub: String,
    /// The ID token's `sid`, when the provider sends one.
    pub sid: Option<String>,
    /// The `external_id` sent to Discourse for this login.
    pub external_id: String,
    pub logged_in_at: DateTime<Utc>,
}

/// Server-side state of a browser session, for RP-initiated logout (`GET /logout`): the raw ID
/// token is the `id_token_hint` and stays here, never in a cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The raw ID token (compact JWT) as received from the IdP.
    pub id_token: String,
    pub iss: String,
    pub sub: String,
    pub sid: Option<String>,
    pub external_id: String,
    /// After this moment the record is dropped and no longer returned.
    #[serde(with = "millis")]
    pub expires_at: DateTime<Utc>,
}

/// Everything one completed login writes: the record that lets back-channel logout find the
/// Discourse user, and the browser's server-side session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedLogin {
    pub login: LoginRecord,
    /// The unguessable id in the browser's `bridge_session` cookie.
    pub session_id: String,
    pub session: SessionRecord,
}

/// How many records a [`LogoutStore::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// `(iss, sub)` and `(iss, sid)` login entries older than the retention.
    pub logins: u64,
    /// Remembered `jti`s past their `keep_until`.
    pub jtis: u64,
    /// Browser sessions past their `expires_at`.
    pub sessions: u64,
}

/// Failure of the store. The request path maps it to a 500 (back-channel: the IdP may retry).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("embedded store: {0}")]
    Database(#[from] redb::Error),
    #[error("unreadable record in table {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// The blocking task running a store call did not finish (runtime shutting down).
    #[error("store call interrupted: {0}")]
    Interrupted(String),
}

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

/// Durable state of the logout paths. Implementations must make each method atomic.
pub trait LogoutStore: Send + Sync + std::fmt::Debug {
    /// Records a login: `(iss, sub)` gains `external_id`, and `(iss, sid)` points at it.
    fn record_login(&self, login: &LoginRecord) -> Result<(), StoreError>;

    /// Records several completed logins (login record and browser session each) in one
    /// transaction: the group commit of [`crate::login_writer`].
    fn record_logins(&self, logins: &[CompletedLogin]) -> Result<(), StoreError>;

    /// Every `external_id` recorded for `(iss, sub)` within the retention, oldest login first.
    fn external_ids_for_sub(&self, iss: &str, sub: &str) -> Result<Vec<String>, StoreError>;

    /// The `external_id` of the login whose ID token carried `sid`.
    fn external_id_for_sid(&self, iss: &str, sid: &str) -> Result<Option<String>, StoreError>;

    /// The Discourse users a logout token names (Back-Channel Logout §2.7): the session's user
    /// when `sid` is known, otherwise every `external_id` recorded for `sub`. Empty when the
    /// bridge never saw the login; the caller decides whether to fall back to `sub` itself.
    fn resolve_external_ids(
        &self,
        iss: &str,
        sub: Option<&str>,
        sid: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(sid) = sid
            && let Some(external_id) = self.external_id_for_sid(iss, sid)?
        {
            return Ok(vec![external_id]);
        }
        match sub {
            Some(sub) => self.external_ids_for_sub(iss, sub),
            None => Ok(Vec::new()),
        }
    }

    /// Remembers `(iss, jti)` until `keep_until`. Returns `true` when it was not yet known
    /// (process the token) and `false` for a replay. Check and insert are one transaction.
    fn remember_jti(
        &self,
        iss: &str,
        jti: &str,
        keep_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Persists a relay job and returns its id.
    fn enqueue(&self, job: &RelayJob) -> Result<RelayJobId, StoreError>;

    /// Up to `limit` jobs whose `next_attempt_at` is at or before `now`, earliest first.
    fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(RelayJobId, RelayJob)>, StoreError>;

    /// The earliest `next_attempt_at` of all pending jobs, so a worker knows how long to sleep.
    fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Records a failed attempt. A job that no longer exists is left alone.
    fn reschedule(
        &self,
        id: RelayJobId,
        next_attempt_at: DateTime<Utc>,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), StoreError>;

    /// Removes a delivered job (idempotent).
    fn complete(&self, id: RelayJobId) -> Result<(), StoreError>;

    /// Removes a job that will never be delivered, counting it in [`Self::given_up_count`].
    fn give_up(&self, id: RelayJobId) -> Result<(), StoreError>;

    /// Jobs not yet completed or given up.
    fn pending_count(&self) -> Result<u64, StoreError>;

    /// Jobs given up over the life of the store.
    fn given_up_count(&self) -> Result<u64, StoreError>;

    /// Stores (or replaces) a browser session under an unguessable `session_id`.
    fn put_session(&self, session_id: &str, session: &SessionRecord) -> Result<(), StoreError>;

    /// Removes and returns a session; `None` when unknown or expired at `now`. Taking it makes
    /// the logout single-use.
    fn take_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Drops login entries older than `login_retention`, `jti`s past `keep_until` and expired
    /// sessions. Call it periodically (e.g. hourly).
    fn prune(
        &self,
        now: DateTime<Utc>,
        login_retention: Duration,
    ) -> Result<PruneReport, StoreError>;
}

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
    external_id: String,
    reason: RelayReason,
    #[serde(with = "millis")]
    created_at: DateTime<Utc>,
    attempts: u32,
    #[serde(with = "millis")]
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
}

impl From<&RelayJob> for StoredJob {
    fn from(job: &RelayJob) -> Self {
        Self {
            external_id: job.external_id.clone(),
            reason: job.reason,
            created_at: job.created_at,
            attempts: job.attempts,
            next_attempt_at: job.next_attempt_at,
            last_error: job.last_error.clone(),
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
        }
    }
}

/// `DateTime<Utc>` as integer milliseconds (chrono's `serde` feature is not enabled).
mod millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(at.timestamp_millis())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let ms = i64::deserialize(d)?;
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| serde::de::Error::custom("timestamp out of range"))
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

/// Runs a store call on tokio's blocking pool, so that an fsync never stalls an async worker
/// thread. For handlers and the relay: `store::blocking(&store, move |s| s.pending_count())`.
pub async fn blocking<T, F>(store: &Arc<dyn LogoutStore>, call: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn LogoutStore) -> Result<T, StoreError> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || call(store.as_ref()))
        .await
        .map_err(|error| StoreError::Interrupted(error.to_string()))?
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
    db: Database,
}

impl RedbStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
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
        }
        txn.commit()?;
        Ok(Self { db })
    }

    fn read_jobs(&self) -> Result<Vec<(RelayJobId, RelayJob)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RELAY_JOBS)?;
        let mut jobs = Vec::new();
        for entry in table.iter()? {
            let (id, value) = entry?;
            let job: StoredJob = decode("relay_jobs", value.value())?;
            jobs.push((id.value(), RelayJob::from(job)));
        }
        Ok(jobs)
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

impl LogoutStore for RedbStore {
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
        let id = {
            let mut counters = txn.open_table(COUNTERS)?;
            let id = counters
                .get(NEXT_JOB_ID)?
                .map(|value| value.value())
                .unwrap_or(1);
            counters.insert(NEXT_JOB_ID, id.saturating_add(1))?;
            let mut jobs = txn.open_table(RELAY_JOBS)?;
            jobs.insert(id, encode("relay_jobs", &StoredJob::from(job))?.as_slice())?;
            id
        };
        txn.commit()?;
        Ok(id)
    }

    fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(RelayJobId, RelayJob)>, StoreError> {
        // The job table stays small (jobs leave it once delivered), so a scan is fine.
        let mut due: Vec<(RelayJobId, RelayJob)> = self
            .read_jobs()?
            .into_iter()
            .filter(|(_, job)| job.next_attempt_at <= now)
            .collect();
        due.sort_by_key(|(id, job)| (job.next_attempt_at, *id));
        due.truncate(limit);
        Ok(due)
    }

    fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .read_jobs()?
            .into_iter()
            .map(|(_, job)| job.next_attempt_at)
            .min())
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

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://idp.example.test";

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn login(sub: &str, sid: Option<&str>, external_id: &str, when: i64) -> LoginRecord {
        LoginRecord {
            iss: ISS.to_owned(),
            sub: sub.to_owned(),
            sid: sid.map(str::to_owned),
            external_id: external_id.to_owned(),
            logged_in_at: at(when),
        }
    }

    fn session(expires_at: DateTime<Utc>) -> SessionRecord {
        SessionRecord {
            id_token: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_owned(),
            iss: ISS.to_owned(),
            sub: "alice".to_owned(),
            sid: Some("sid-1".to_owned()),
            external_id: "ext-alice".to_owned(),
            expires_at,
        }
    }

    fn open(dir: &tempfile::TempDir) -> RedbStore {
        RedbStore::open(dir.path()).unwrap()
    }

    #[test]
    fn open_creates_the_directory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("data").join("store");
        RedbStore::open(&nested).unwrap();
        assert!(nested.join(DATABASE_FILE).is_file());
    }

    #[test]
    fn logins_are_found_by_sub_and_by_sid() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store
            .record_login(&login("alice", Some("sid-1"), "ext-a", 10))
            .unwrap();
        // The mapping changed: the same subject later got another external id.
        store
            .record_login(&login("alice", Some("sid-2"), "ext-b", 20))
            .unwrap();
        store
            .record_login(&login("bob", None, "ext-bob", 30))
            .unwrap();

        assert_eq!(
            store.external_ids_for_sub(ISS, "alice").unwrap(),
            vec!["ext-a", "ext-b"]
        );
        assert_eq!(
            store.external_id_for_sid(ISS, "sid-2").unwrap().as_deref(),
            Some("ext-b")
        );
        assert_eq!(store.external_id_for_sid(ISS, "nope").unwrap(), None);
        assert!(
            store
                .external_ids_for_sub("https://other.example", "alice")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn resolve_prefers_sid_then_falls_back_to_sub() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store
            .record_login(&login("alice", Some("sid-1"), "ext-a", 10))
            .unwrap();
        store
            .record_login(&login("alice", Some("sid-2"), "ext-b", 20))
            .unwrap();

        let resolve = |sub, sid| store.resolve_external_ids(ISS, sub, sid).unwrap();
        assert_eq!(resolve(Some("alice"), Some("sid-1")), vec!["ext-a"]);
        assert_eq!(resolve(None, Some("sid-2")), vec!["ext-b"]);
        assert_eq!(resolve(Some("alice"), None), vec!["ext-a", "ext-b"]);
        assert_eq!(
            resolve(Some("alice"), Some("unknown")),
            vec!["ext-a", "ext-b"]
        );
        assert!(resolve(None, Some("unknown")).is_empty());
        assert!(resolve(Some("carol"), None).is_empty());
    }

    #[test]
    fn jti_is_new_once_per_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        assert!(store.remember_jti(ISS, "j1", at(100)).unwrap());
        assert!(!store.remember_jti(ISS, "j1", at(100)).unwrap());
        assert!(
            store
                .remember_jti("https://other.example", "j1", at(100))
                .unwrap()
        );
        assert!(store.remember_jti(ISS, "j2", at(100)).unwrap());
    }

    #[test]
    fn concurrent_remember_jti_admits_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || store.remember_jti(ISS, "same", at(100)).unwrap())
            })
            .collect();
        let admitted = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|is_new| *is_new)
            .count();
        assert_eq!(admitted, 1);
    }

    #[test]
    fn jobs_go_through_due_reschedule_complete_and_give_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let first = store
            .enqueue(&RelayJob::new(
                "ext-a",
                RelayReason::BackchannelLogout,
                at(0),
            ))
            .unwrap();
        let second = store
            .enqueue(&RelayJob::new("ext-b", RelayReason::AdminCommand, at(5)))
            .unwrap();
        assert_ne!(first, second);
        assert_eq!(store.pending_count().unwrap(), 2);
        assert_eq!(store.next_due_at().unwrap(), Some(at(0)));

        let due = store.due(at(1), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, first);
        assert_eq!(due[0].1.external_id, "ext-a");
        assert_eq!(due[0].1.reason, RelayReason::BackchannelLogout);

        store.reschedule(first, at(30), 1, "HTTP 503").unwrap();
        let due = store.due(at(10), 10).unwrap();
        assert_eq!(
            due.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![second]
        );
        assert_eq!(store.next_due_at().unwrap(), Some(at(5)));

        let due = store.due(at(30), 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].0, second, "earliest next_attempt_at first");
        let rescheduled = &due[1].1;
        assert_eq!(rescheduled.attempts, 1);
        assert_eq!(rescheduled.next_attempt_at, at(30));
        assert_eq!(rescheduled.created_at, at(0));
        assert_eq!(rescheduled.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!(store.due(at(30), 1).unwrap().len(), 1, "limit honoured");

        store.complete(second).unwrap();
        store.complete(second).unwrap();
        store.give_up(first).unwrap();
        store.give_up(first).unwrap();
        assert_eq!(store.pending_count().unwrap(), 0);
        assert_eq!(store.given_up_count().unwrap(), 1);
        assert!(store.due(at(1000), 10).unwrap().is_empty());
        assert_eq!(store.next_due_at().unwrap(), None);

        // Rescheduling a job that is gone does not resurrect it.
        store.reschedule(first, at(40), 2, "late").unwrap();
        assert_eq!(store.pending_count().unwrap(), 0);
    }

    #[test]
    fn job_ids_are_not_reused_after_completion() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let job = RelayJob::new("ext-a", RelayReason::BackchannelLogout, at(0));
        let first = store.enqueue(&job).unwrap();
        store.complete(first).unwrap();
        drop(store);
        let store = open(&dir);
        assert!(store.enqueue(&job).unwrap() > first);
    }

    #[test]
    fn sessions_are_taken_once_and_not_after_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store.put_session("s1", &session(at(100))).unwrap();
        store.put_session("s2", &session(at(100))).unwrap();

        assert_eq!(
            store.take_session("s1", at(50)).unwrap(),
            Some(session(at(100)))
        );
        assert_eq!(store.take_session("s1", at(50)).unwrap(), None);
        assert_eq!(store.take_session("s2", at(100)).unwrap(), None, "expired");
        assert_eq!(store.take_session("never", at(0)).unwrap(), None);
    }

    #[test]
    fn everything_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let job_id = {
            let store = open(&dir);
            store
                .record_login(&login("alice", Some("sid-1"), "ext-a", 10))
                .unwrap();
            assert!(store.remember_jti(ISS, "j1", at(100)).unwrap());
            store.put_session("s1", &session(at(100))).unwrap();
            let id = store
                .enqueue(&RelayJob::new(
                    "ext-a",
                    RelayReason::BackchannelLogout,
                    at(0),
                ))
                .unwrap();
            let other = store
                .enqueue(&RelayJob::new(
                    "ext-b",
                    RelayReason::BackchannelLogout,
                    at(0),
                ))
                .unwrap();
            store.give_up(other).unwrap();
            id
        };

        let store = open(&dir);
        assert_eq!(
            store.external_ids_for_sub(ISS, "alice").unwrap(),
            vec!["ext-a"]
        );
        assert_eq!(
            store.external_id_for_sid(ISS, "sid-1").unwrap().as_deref(),
            Some("ext-a")
        );
        assert!(!store.remember_jti(ISS, "j1", at(100)).unwrap());
        assert_eq!(
            store.take_session("s1", at(0)).unwrap(),
            Some(session(at(100)))
        );
        let due = store.due(at(0), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, job_id);
        assert_eq!(store.given_up_count().unwrap(), 1);
    }

    #[test]
    fn prune_drops_only_what_is_past_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let day = 86_400;
        store
            .record_login(&login("alice", Some("old-sid"), "ext-old", 0))
            .unwrap();
        store
            .record_login(&login("alice", Some("new-sid"), "ext-new", 20 * day))
            .unwrap();
        store
            .record_login(&login("bob", Some("bob-sid"), "ext-bob", 0))
            .unwrap();
        store.remember_jti(ISS, "expired", at(10)).unwrap();
        store.remember_jti(ISS, "live", at(40 * day)).unwrap();
        store.put_session("expired", &session(at(10))).unwrap();
        store.put_session("live", &session(at(40 * day))).unwrap();

        let now = at(35 * day);
        let report = store.prune(now, Duration::from_secs(30 * 86_400)).unwrap();
        assert_eq!(
            report,
            PruneReport {
                // alice's old external id, bob's entry, and two stale sids.
                logins: 4,
                jtis: 1,
                sessions: 1,
            }
        );

        assert_eq!(
            store.external_ids_for_sub(ISS, "alice").unwrap(),
            vec!["ext-new"]
        );
        assert!(store.external_ids_for_sub(ISS, "bob").unwrap().is_empty());
        assert_eq!(store.external_id_for_sid(ISS, "old-sid").unwrap(), None);
        assert_eq!(
            store
                .external_id_for_sid(ISS, "new-sid")
                .unwrap()
                .as_deref(),
            Some("ext-new")
        );
        assert!(store.remember_jti(ISS, "expired", at(50 * day)).unwrap());
        assert!(!store.remember_jti(ISS, "live", at(50 * day)).unwrap());
        assert!(store.take_session("live", now).unwrap().is_some());
        assert_eq!(
            store
                .prune(now, Duration::from_secs(30 * 86_400))
                .unwrap()
                .sessions,
            0
        );
    }

    #[test]
    fn two_handles_on_one_directory_see_each_others_commits() {
        // What the admin command does while the server runs.
        let dir = tempfile::tempdir().unwrap();
        let server = open(&dir);
        let admin = open(&dir);
        let id = admin
            .enqueue(&RelayJob::new("ext-a", RelayReason::AdminCommand, at(0)))
            .unwrap();
        let due = server.due(at(0), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, id);
        server.complete(id).unwrap();
        assert_eq!(admin.pending_count().unwrap(), 0);
    }

    #[tokio::test]
    async fn blocking_runs_calls_off_the_async_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn LogoutStore> = Arc::new(open(&dir));
        let is_new = blocking(&store, |s| s.remember_jti(ISS, "j", at(10)))
            .await
            .unwrap();
        assert!(is_new);
        assert!(
            !blocking(&store, |s| s.remember_jti(ISS, "j", at(10)))
                .await
                .unwrap()
        );
    }

    #[test]
    fn the_store_works_as_a_trait_object() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn LogoutStore> = Arc::new(open(&dir));
        store
            .record_login(&login("alice", Some("sid-1"), "ext-a", 10))
            .unwrap();
        assert_eq!(
            store
                .resolve_external_ids(ISS, None, Some("sid-1"))
                .unwrap(),
            vec!["ext-a"]
        );
    }
}
