//! Durable state of the login and logout paths, behind one async trait with two backends: the
//! embedded [`RedbStore`] (one replica, the default) and the shared [`PgStore`] (PostgreSQL, any
//! number of replicas).
//!
//! What decides correctness lives here: login records `(iss, sub, sid) → external_id`, browser
//! sessions with their ID token (for `id_token_hint`, RP-Initiated Logout 1.0 §2), the `jti`
//! replay set (Back-Channel Logout 1.0 §2.6), the used login states (a replayed callback is
//! refused on every replica) and the relay jobs with their leases. The store never reads the
//! clock: every time is an argument.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub mod copy;
pub mod postgres;
pub mod redb;
mod used_states;

pub use self::postgres::{PgSettings, PgStore};
pub use self::redb::{DATABASE_FILE, RedbStore};
pub use self::used_states::UsedStates;

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
    /// SCIM provisioning: push the signed payload in [`RelayJob::payload`] through
    /// `POST /admin/users/sync_sso`.
    ScimSync,
    /// SCIM provisioning: the user was deactivated, deleted or denied; log them out.
    ScimLogOut,
    /// SCIM provisioning: suspend the user (reason and end in [`RelayJob::payload`]).
    ScimSuspend,
    /// SCIM provisioning: the user is active again; lift the suspension.
    ScimUnsuspend,
}

impl RelayReason {
    /// Stable name for logs, metrics labels and the PostgreSQL `reason` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BackchannelLogout => "backchannel_logout",
            Self::AdminCommand => "admin_command",
            Self::ScimSync => "scim_sync",
            Self::ScimLogOut => "scim_log_out",
            Self::ScimSuspend => "scim_suspend",
            Self::ScimUnsuspend => "scim_unsuspend",
        }
    }

    /// Pending jobs of these kinds for the same `external_id` are dropped when a job of this
    /// kind is queued through [`LogoutStore::scim_apply`]: a newer sync replaces an older one,
    /// and suspending and unsuspending replace each other, so a retried older job can never
    /// land after the newer one and undo it.
    pub fn supersedes(self) -> &'static [RelayReason] {
        match self {
            Self::ScimSync => &[Self::ScimSync],
            Self::ScimSuspend | Self::ScimUnsuspend => &[Self::ScimSuspend, Self::ScimUnsuspend],
            Self::BackchannelLogout | Self::AdminCommand | Self::ScimLogOut => &[],
        }
    }

    /// The reason named by [`Self::as_str`]; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "backchannel_logout" => Some(Self::BackchannelLogout),
            "admin_command" => Some(Self::AdminCommand),
            "scim_sync" => Some(Self::ScimSync),
            "scim_log_out" => Some(Self::ScimLogOut),
            "scim_suspend" => Some(Self::ScimSuspend),
            "scim_unsuspend" => Some(Self::ScimUnsuspend),
            _ => None,
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
    /// What the SCIM kinds deliver (JSON: the signed `sso`/`sig` of a sync, the reason and end
    /// of a suspension); `None` for log-outs.
    pub payload: Option<String>,
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
            payload: None,
        }
    }

    /// The same job carrying `payload` (see [`RelayJob::payload`]).
    pub fn with_payload(mut self, payload: impl Into<String>) -> Self {
        self.payload = Some(payload.into());
        self
    }
}

/// Which SCIM resource type a record belongs to (RFC 7643 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimKind {
    User,
    Group,
    /// What the bridge last did to a Discourse account, keyed by `external_id`.
    Account,
}

impl ScimKind {
    /// Stable name used as the key prefix in both backends.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Account => "account",
        }
    }
}

/// One change to the SCIM records: `record` (JSON owned by [`crate::scim`]) replaces the
/// record under `(kind, id)`, or `None` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimWrite {
    pub kind: ScimKind,
    pub id: String,
    pub record: Option<String>,
}

/// A job claimed by one relay worker until its lease ends (see [`LogoutStore::claim_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub id: RelayJobId,
    pub job: RelayJob,
    /// The job was leased before and its holder never finished it (the holder died or lost the
    /// store mid-delivery): this delivery may repeat a `log_out` that already happened.
    pub taken_over: bool,
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
    /// `(iss, sub, external_id)` and `(iss, sid)` login entries older than the retention.
    pub logins: u64,
    /// Remembered `jti`s past their `keep_until`.
    pub jtis: u64,
    /// Browser sessions past their `expires_at`.
    pub sessions: u64,
    /// Used login states past their `keep_until`.
    pub login_states: u64,
}

/// Failure of the store. The request path maps it to a 5xx (back-channel: the IdP may retry).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store directory {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("embedded store: {0}")]
    Database(#[from] ::redb::Error),
    #[error("unreadable record in table {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// The blocking task running a store call did not finish (runtime shutting down).
    #[error("store call interrupted: {0}")]
    Interrupted(String),
    /// PostgreSQL could not be reached, refused the call or did not answer in time.
    #[error("PostgreSQL store: {0}")]
    Postgres(String),
    /// The database holds a schema this binary does not know (a newer bridge migrated it).
    #[error(
        "the PostgreSQL schema is at version {found}, newer than the newest this binary knows \
         ({known}): a newer bridge has migrated this database; run that version (or newer) of \
         the bridge, never an older one, against it"
    )]
    SchemaTooNew { found: u32, known: u32 },
    /// `[store] url` or `ca_file` cannot be used.
    #[error("store configuration: {0}")]
    Config(String),
}

/// The operations of both backends. Each method is atomic on its own.
#[async_trait::async_trait]
pub trait LogoutStore: Send + Sync + std::fmt::Debug {
    /// `"embedded"` or `"postgres"`, for logs and `/readyz`.
    fn backend(&self) -> &'static str;

    /// Makes the store usable: for PostgreSQL, connects and applies pending migrations (once;
    /// retried on the next call after a failure). Every other method calls it first, so calling
    /// it is only needed to learn early about an unusable database
    /// ([`StoreError::SchemaTooNew`]).
    async fn prepare(&self) -> Result<(), StoreError>;

    /// Records a login: `(iss, sub)` gains `external_id`, and `(iss, sid)` points at it.
    async fn record_login(&self, login: &LoginRecord) -> Result<(), StoreError>;

    /// Records several completed logins (login record and browser session each) in one
    /// transaction: the group commit of [`crate::login_writer`]. Writing the same logins again
    /// changes nothing (a retry after an unclear failure is safe).
    async fn record_logins(&self, logins: &[CompletedLogin]) -> Result<(), StoreError>;

    /// Every `external_id` recorded for `(iss, sub)` within the retention, oldest login first.
    async fn external_ids_for_sub(&self, iss: &str, sub: &str) -> Result<Vec<String>, StoreError>;

    /// The `external_id` of the login whose ID token carried `sid`.
    async fn external_id_for_sid(&self, iss: &str, sid: &str)
    -> Result<Option<String>, StoreError>;

    /// The Discourse users a logout token names (Back-Channel Logout §2.7): the session's user
    /// when `sid` is known, otherwise every `external_id` recorded for `sub`. Empty when the
    /// bridge never saw the login; the caller decides whether to fall back to `sub` itself.
    async fn resolve_external_ids(
        &self,
        iss: &str,
        sub: Option<&str>,
        sid: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(sid) = sid
            && let Some(external_id) = self.external_id_for_sid(iss, sid).await?
        {
            return Ok(vec![external_id]);
        }
        match sub {
            Some(sub) => self.external_ids_for_sub(iss, sub).await,
            None => Ok(Vec::new()),
        }
    }

    /// Remembers `(iss, jti)` until `keep_until`. Returns `true` when it was not yet known
    /// (process the token) and `false` for a replay. Check and insert are one transaction.
    async fn remember_jti(
        &self,
        iss: &str,
        jti: &str,
        keep_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Accepts a logout token: remembers `(iss, jti)` until `keep_until` and queues `jobs`, in
    /// one transaction. Returns `false`, queueing nothing, when the `jti` was already known (a
    /// replay). A failure writes neither, so the IdP's retry is processed in full.
    async fn accept_logout(
        &self,
        iss: &str,
        jti: &str,
        keep_until: DateTime<Utc>,
        jobs: &[RelayJob],
    ) -> Result<bool, StoreError>;

    /// Marks a login `state` (by its SHA-256, [`login_state_digest`]) used until `keep_until`.
    /// Returns `false` when it was already used and that use has not expired at `now`.
    async fn mark_login_state_used(
        &self,
        digest: [u8; 32],
        now: DateTime<Utc>,
        keep_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Persists a relay job (durably, before returning) and returns its id.
    async fn enqueue(&self, job: &RelayJob) -> Result<RelayJobId, StoreError>;

    /// Claims up to `limit` jobs due at `now` (`next_attempt_at <= now`) that nobody holds (no
    /// lease, or a lease that ended), earliest first, for `holder` until `now + lease`. Two
    /// workers never claim the same job while its lease runs.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        holder: &str,
    ) -> Result<Vec<ClaimedJob>, StoreError>;

    /// When the next job becomes claimable (its `next_attempt_at`, or the end of its lease when
    /// later), so a worker knows how long to sleep.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Records a failed attempt and releases the lease. A job that no longer exists is left
    /// alone.
    async fn reschedule(
        &self,
        id: RelayJobId,
        next_attempt_at: DateTime<Utc>,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), StoreError>;

    /// Removes a delivered job (idempotent).
    async fn complete(&self, id: RelayJobId) -> Result<(), StoreError>;

    /// Removes a job that will never be delivered, counting it in [`Self::given_up_count`].
    async fn give_up(&self, id: RelayJobId) -> Result<(), StoreError>;

    /// Every job not yet completed or given up, leased or not, earliest due first (then by id),
    /// for the operator's `store list|retry|drop`. The relay itself uses [`Self::claim_due`].
    async fn list_pending(&self) -> Result<Vec<(RelayJobId, RelayJob)>, StoreError>;

    /// Jobs not yet completed or given up.
    async fn pending_count(&self) -> Result<u64, StoreError>;

    /// Jobs given up over the life of the store.
    async fn given_up_count(&self) -> Result<u64, StoreError>;

    /// Stores (or replaces) a browser session under an unguessable `session_id`.
    async fn put_session(
        &self,
        session_id: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError>;

    /// Removes and returns a session; `None` when unknown or expired at `now`. Taking it makes
    /// the logout single-use.
    async fn take_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// The SCIM record stored under `(kind, id)`.
    async fn scim_get(&self, kind: ScimKind, id: &str) -> Result<Option<String>, StoreError>;

    /// Every SCIM record of `kind` as `(id, record)`, ordered by id.
    async fn scim_list(&self, kind: ScimKind) -> Result<Vec<(String, String)>, StoreError>;

    /// Applies `writes` and queues `jobs` in one transaction: a SCIM change and the Discourse
    /// calls it causes are kept together or not at all. Pending jobs a new job
    /// [supersedes](RelayReason::supersedes) are removed in the same transaction.
    async fn scim_apply(&self, writes: &[ScimWrite], jobs: &[RelayJob]) -> Result<(), StoreError>;

    /// Drops login entries older than `login_retention`, `jti`s and login states past their
    /// `keep_until` and expired sessions. Call it periodically (e.g. hourly).
    async fn prune(
        &self,
        now: DateTime<Utc>,
        login_retention: Duration,
    ) -> Result<PruneReport, StoreError>;
}

/// SHA-256 of a login `state`: what the store keeps of it (the state itself never leaves the
/// browser's cookie and the IdP redirect).
pub fn login_state_digest(state: &str) -> [u8; 32] {
    Sha256::digest(state.as_bytes()).into()
}

/// `[store]`, as the configuration parsed it.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the embedded store.
    pub path: PathBuf,
    /// Longest time a completed login waits to be committed with others (group commit); zero
    /// makes every login wait for its own durable commit before the browser is sent back.
    pub commit_interval: Duration,
    /// The shared PostgreSQL store (`url`/`url_file` set); `None` for the embedded store.
    pub postgres: Option<PgSettings>,
    /// How long a relay worker holds a claimed job before another replica may take it over.
    pub relay_lease: Duration,
    /// How often each relay worker looks for jobs it was not told about (queued by another
    /// replica or the admin command, or whose lease ended).
    pub poll_interval: Duration,
    /// Most completed logins held in memory while the store cannot be written.
    pub login_buffer: usize,
}

/// Opens the store `[store]` configures: PostgreSQL when `url` is set, otherwise the embedded
/// file under `path`. Does not connect to PostgreSQL: the pool connects (and migrates the
/// schema, [`LogoutStore::prepare`]) on first use, so a bridge starts while its database is
/// still coming up.
pub fn open(config: &StoreConfig) -> Result<Arc<dyn LogoutStore>, StoreError> {
    match &config.postgres {
        Some(settings) => Ok(Arc::new(PgStore::new(settings)?)),
        None => Ok(Arc::new(RedbStore::open(&config.path)?)),
    }
}

/// `DateTime<Utc>` as integer milliseconds (chrono's `serde` feature is not enabled).
pub(crate) mod millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(at.timestamp_millis())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let ms = i64::deserialize(d)?;
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| serde::de::Error::custom("timestamp out of range"))
    }
}
