//! Durable delivery of logout relay jobs into Discourse, with retries, exponential backoff and
//! leases so that any number of replicas can run a worker over one shared store.
//!
//! The back-channel handler must answer the IdP within seconds (oidc-provider gives up after
//! 2.5 s), while Discourse may be slow, restarting or rate-limiting. So the handler only
//! persists a [`RelayJob`] and wakes this worker; the worker claims due jobs (a lease of
//! `store.relay_lease`: no other worker takes them meanwhile), looks the user up by
//! `external_id` and calls `log_out`. Retryable failures (network, 5xx, 408, 429) are retried
//! with exponential backoff and jitter until `relay_retry_for` after the job was created; a
//! permanent failure (bad credentials, unaddressable id...) gives the job up at once. Jobs live
//! in the store, so a restart or an outage loses none; a worker that dies mid-delivery leaves a
//! lease that ends, and another replica delivers the job (counted as a take-over: `log_out` is
//! idempotent, so the one repeated call that may cause is harmless). A delivery whose outcome
//! cannot be written (the store is down) is kept in memory and written before anything else, so
//! a job is not delivered twice just because the database was away.
//!
//! Time comes from a [`Clock`], so that tests drive the worker with a [`ManualClock`] instead of
//! sleeping on the wall clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng as _;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{LogoutConfig, StoreConfig};
use crate::discourse::api::{ApiError, DiscourseApi};
use crate::store::{ClaimedJob, LogoutStore, RelayJob, RelayJobId, RelayReason, StoreError};

/// Where the relay reads the time and waits for it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Completes once [`Self::now`] has reached `at` (at once when it has).
    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The wall clock, with tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]); sleepers wake when it
/// passes their deadline. For tests.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: watch::Sender::new(start),
        }
    }

    /// Moves the clock forward by `by` and wakes every sleeper whose deadline passed.
    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        self.now.send_modify(|now| {
            *now = now
                .checked_add_signed(by)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives in `self`, which outlives this future: this cannot fail.
            let _ = now.wait_for(|now| *now >= at).await;
        })
    }
}

/// Timing of the relay. [`RelaySettings::from_config`] gives the production values; tests
/// shorten them.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// How long after its creation a job is still retried.
    pub retry_for: Duration,
    /// Delay after the first failure; doubled after each further failure.
    pub initial_backoff: Duration,
    /// Upper bound of the doubled delay.
    pub max_backoff: Duration,
    /// Random spread of each delay, as a fraction (0.2 = ±20 %), so that many jobs failing
    /// together do not retry in lockstep.
    pub jitter: f64,
    /// How often the worker looks at the store without being notified: picks up jobs other
    /// processes (other replicas, the admin command) enqueued, and jobs whose lease ended.
    pub poll_interval: Duration,
    /// Most jobs claimed in one pass before the worker checks for shutdown and sleeps.
    pub batch_size: usize,
    /// How long a claimed job stays with this worker; must exceed one delivery (two Discourse
    /// calls).
    pub lease: Duration,
}

impl RelaySettings {
    /// 2 s doubling to at most 10 min, ±20 % jitter; poll interval and lease from `[store]`.
    pub fn from_config(logout: &LogoutConfig, store: &StoreConfig) -> Self {
        Self {
            retry_for: logout.relay_retry_for,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            jitter: 0.2,
            poll_interval: store.poll_interval,
            batch_size: 50,
            lease: store.relay_lease,
        }
    }
}

/// The delay before attempt number `attempts + 1`, given that `attempts` attempts failed.
/// `unit` is a random number in `[0, 1)` spreading the delay by `settings.jitter`. Pure.
pub fn backoff_delay(attempts: u32, settings: &RelaySettings, unit: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let base = settings
        .initial_backoff
        .saturating_mul(1u32 << doublings)
        .min(settings.max_backoff);
    let jitter = settings.jitter.clamp(0.0, 1.0);
    let factor = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
    base.mul_f64(factor).min(settings.max_backoff)
}

/// Totals since the worker started, for health output and tests (the same events also go to
/// the `metrics` counters).
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Jobs whose user was logged out of Discourse.
    pub logged_out: AtomicU64,
    /// Jobs completed without a call because Discourse has no user with that external id.
    pub no_such_user: AtomicU64,
    /// Failed attempts that were rescheduled.
    pub retried: AtomicU64,
    /// Jobs given up (permanent error, or retry window over).
    pub given_up: AtomicU64,
    /// Jobs claimed after another worker's lease on them ended unfinished.
    pub taken_over: AtomicU64,
    /// Passes over the store the worker finished (successful or not).
    pub passes: AtomicU64,
}

/// A plain-number copy of [`RelayStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStatsSnapshot {
    pub logged_out: u64,
    pub no_such_user: u64,
    pub retried: u64,
    pub given_up: u64,
    pub taken_over: u64,
    pub passes: u64,
}

impl RelayStats {
    pub fn snapshot(&self) -> RelayStatsSnapshot {
        RelayStatsSnapshot {
            logged_out: self.logged_out.load(Ordering::SeqCst),
            no_such_user: self.no_such_user.load(Ordering::SeqCst),
            retried: self.retried.load(Ordering::SeqCst),
            given_up: self.given_up.load(Ordering::SeqCst),
            taken_over: self.taken_over.load(Ordering::SeqCst),
            passes: self.passes.load(Ordering::SeqCst),
        }
    }
}

/// Cheap handle to a running relay: enqueue jobs and wake the worker.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    store: Arc<dyn LogoutStore>,
    wake: Arc<Notify>,
    stats: Arc<RelayStats>,
}

impl RelayHandle {
    /// Persists `job` (durably, before returning) and wakes the worker.
    pub async fn enqueue(&self, job: RelayJob) -> Result<RelayJobId, StoreError> {
        let id = self.store.enqueue(&job).await?;
        self.notify();
        Ok(id)
    }

    /// Wakes the worker, e.g. after enqueueing through the store directly. A wake-up sent while
    /// the worker is busy is kept for its next wait, so none is lost.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Counters since the worker started.
    pub fn stats(&self) -> RelayStatsSnapshot {
        self.stats.snapshot()
    }
}

/// What happened to one job in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Discourse logged the user (this id) out.
    LoggedOut { user_id: u64 },
    /// A SCIM job (sync, suspend, unsuspend) took effect for this Discourse user.
    Applied { user_id: u64 },
    /// No Discourse user has the external id: nothing to do.
    NoSuchUser,
    /// A retryable failure; attempted again at `next_attempt_at`.
    Retrying { next_attempt_at: DateTime<Utc> },
    /// Dropped for good.
    GivenUp,
}

/// An attempt's outcome that still has to be written to the store.
#[derive(Debug, Clone)]
enum Bookkeeping {
    Complete(RelayJobId),
    GiveUp(RelayJobId),
    Reschedule {
        id: RelayJobId,
        next_attempt_at: DateTime<Utc>,
        attempts: u32,
        last_error: String,
    },
}

/// The relay worker. Build it, then [`Relay::spawn`] it (server) or call [`Relay::run_due`]
/// (one-shot, e.g. an admin command that wants to try delivering at once).
#[derive(Debug)]
pub struct Relay {
    store: Arc<dyn LogoutStore>,
    api: DiscourseApi,
    settings: RelaySettings,
    wake: Arc<Notify>,
    stats: Arc<RelayStats>,
    clock: Arc<dyn Clock>,
    /// Names this worker in the leases it holds (host, process id and a random suffix).
    holder: String,
    /// Outcomes not yet written because the store failed; written before the next claim.
    unrecorded: Mutex<Vec<Bookkeeping>>,
}

impl Relay {
    /// A worker on the wall clock.
    pub fn new(store: Arc<dyn LogoutStore>, api: DiscourseApi, settings: RelaySettings) -> Self {
        Self::with_clock(store, api, settings, Arc::new(SystemClock))
    }

    /// A worker reading the time from `clock`.
    pub fn with_clock(
        store: Arc<dyn LogoutStore>,
        api: DiscourseApi,
        settings: RelaySettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        Self {
            store,
            api,
            settings,
            wake: Arc::new(Notify::new()),
            stats: Arc::new(RelayStats::default()),
            clock,
            holder: format!(
                "{host}/{}/{}",
                std::process::id(),
                hex::encode(rand::random::<[u8; 4]>())
            ),
            unrecorded: Mutex::new(Vec::new()),
        }
    }

    /// A handle for enqueueing; valid before and after [`Relay::spawn`].
    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            store: Arc::clone(&self.store),
            wake: Arc::clone(&self.wake),
            stats: Arc::clone(&self.stats),
        }
    }

    /// The name this worker writes into the leases it holds (`host/pid/random`).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs the worker as a tokio task until `shutdown` turns `true` (or its sender is
    /// dropped). A pass in progress finishes its current job first.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> (RelayHandle, JoinHandle<()>) {
        let handle = self.handle();
        let task = tokio::spawn(self.run(shutdown));
        (handle, task)
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(holder = %self.holder, "logout relay started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let passed = self.pass(&shutdown).await;
            self.stats.passes.fetch_add(1, Ordering::SeqCst);
            let wake_at = match passed {
                Ok(PassEnd::MoreDue) => continue,
                Ok(PassEnd::Idle) => self.next_wake().await,
                Err(error) => {
                    tracing::error!(error = %error, "logout relay cannot use the store; retrying later");
                    self.after_poll_interval()
                }
            };
            tokio::select! {
                () = self.clock.sleep_until(wake_at) => {}
                () = self.wake.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        // Outcomes the store could not take yet: one last try, so a job is not redelivered.
        if let Err(error) = self.settle().await {
            tracing::warn!(error = %error, "logout relay stopped with outcomes not written; their jobs are delivered again after the lease");
        }
        tracing::info!("logout relay stopped");
    }

    fn after_poll_interval(&self) -> DateTime<Utc> {
        add(self.clock.now(), self.settings.poll_interval)
    }

    /// When to look again: when the earliest pending job is due, at most one poll interval on.
    async fn next_wake(&self) -> DateTime<Utc> {
        let poll = self.after_poll_interval();
        match self.store.next_due_at().await {
            Ok(Some(next)) => next.min(poll),
            Ok(None) => poll,
            Err(error) => {
                tracing::error!(error = %error, "logout relay cannot read the store");
                poll
            }
        }
    }

    /// Writes the outcomes a store failure left in memory. Stops at the first failure.
    async fn settle(&self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut *lock(&self.unrecorded));
        let mut remaining = pending.into_iter();
        while let Some(entry) = remaining.next() {
            if let Err(error) = self.record(&entry).await {
                let mut unrecorded = lock(&self.unrecorded);
                let newer = std::mem::take(&mut *unrecorded);
                unrecorded.push(entry);
                unrecorded.extend(remaining);
                unrecorded.extend(newer);
                return Err(error);
            }
        }
        Ok(())
    }

    async fn record(&self, entry: &Bookkeeping) -> Result<(), StoreError> {
        match entry {
            Bookkeeping::Complete(id) => self.store.complete(*id).await,
            Bookkeeping::GiveUp(id) => self.store.give_up(*id).await,
            Bookkeeping::Reschedule {
                id,
                next_attempt_at,
                attempts,
                last_error,
            } => {
                self.store
                    .reschedule(*id, *next_attempt_at, *attempts, last_error)
                    .await
            }
        }
    }

    /// Writes an outcome, or keeps it for [`Self::settle`] when the store fails.
    async fn book(&self, entry: Bookkeeping) {
        if let Err(error) = self.record(&entry).await {
            metrics::counter!("bridge_store_errors_total", "operation" => "relay_outcome")
                .increment(1);
            tracing::warn!(error = %error, "logout relay could not write an outcome; kept until the store answers");
            lock(&self.unrecorded).push(entry);
        }
    }

    /// Claims and delivers the jobs due now, one batch at most.
    async fn pass(&self, shutdown: &watch::Receiver<bool>) -> Result<PassEnd, StoreError> {
        self.settle().await?;
        let batch = self.settings.batch_size.max(1);
        let claimed = self
            .store
            .claim_due(self.clock.now(), batch, self.settings.lease, &self.holder)
            .await?;
        let full = claimed.len() >= batch;
        let mut claimed = claimed.into_iter();
        while let Some(claim) = claimed.next() {
            if *shutdown.borrow() {
                // Hand the rest back at once rather than after the lease.
                for claim in std::iter::once(claim).chain(claimed) {
                    self.book(Bookkeeping::Reschedule {
                        id: claim.id,
                        next_attempt_at: claim.job.next_attempt_at,
                        attempts: claim.job.attempts,
                        last_error: claim.job.last_error.unwrap_or_default(),
                    })
                    .await;
                }
                return Ok(PassEnd::Idle);
            }
            self.attempt(claim).await;
        }
        let pending = self.store.pending_count().await?;
        metrics::gauge!("bridge_relay_pending_jobs").set(pending as f64);
        Ok(if full {
            PassEnd::MoreDue
        } else {
            PassEnd::Idle
        })
    }

    /// Claims every job due at `now` once, delivers each and reports what happened to each.
    /// For one-shot use outside the worker.
    pub async fn run_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(RelayJobId, JobOutcome)>, StoreError> {
        let batch = self.settings.batch_size.max(1);
        let claimed = self
            .store
            .claim_due(now, batch, self.settings.lease, &self.holder)
            .await?;
        let mut outcomes = Vec::with_capacity(claimed.len());
        for claim in claimed {
            let id = claim.id;
            outcomes.push((id, self.attempt(claim).await));
        }
        self.settle().await?;
        Ok(outcomes)
    }

    /// One delivery attempt of one claimed job, and its bookkeeping in the store.
    async fn attempt(&self, claim: ClaimedJob) -> JobOutcome {
        let ClaimedJob {
            id,
            job,
            taken_over,
        } = claim;
        let reason = job.reason.as_str();
        if taken_over {
            self.stats.taken_over.fetch_add(1, Ordering::SeqCst);
            metrics::counter!("bridge_relay_takeovers_total").increment(1);
            tracing::warn!(
                job = id,
                reason,
                "taking over a logout relay job whose previous holder never finished it; \
                 Discourse may see this log_out twice"
            );
        }
        match self.deliver(&job).await {
            Ok(delivered) => {
                self.book(Bookkeeping::Complete(id)).await;
                match delivered {
                    Delivered::Applied { user_id } => {
                        metrics::counter!("bridge_scim_jobs_delivered_total", "kind" => reason)
                            .increment(1);
                        tracing::info!(
                            job = id,
                            reason,
                            user_id,
                            attempts = job.attempts + 1,
                            "applied a provisioning change in Discourse"
                        );
                        JobOutcome::Applied { user_id }
                    }
                    Delivered::LoggedOut { user_id } => {
                        self.stats.logged_out.fetch_add(1, Ordering::SeqCst);
                        metrics::counter!("bridge_backchannel_relayed_total", "outcome" => "logged_out")
                            .increment(1);
                        tracing::info!(
                            job = id,
                            reason,
                            user_id,
                            attempts = job.attempts + 1,
                            "logged the user out of Discourse"
                        );
                        JobOutcome::LoggedOut { user_id }
                    }
                    Delivered::NoSuchUser => {
                        self.stats.no_such_user.fetch_add(1, Ordering::SeqCst);
                        metrics::counter!("bridge_backchannel_relayed_total", "outcome" => "no_such_user")
                            .increment(1);
                        tracing::info!(
                            job = id,
                            reason,
                            "no Discourse user has this external id; nothing to log out"
                        );
                        JobOutcome::NoSuchUser
                    }
                }
            }
            Err(error) if error.is_retryable() => self.retry_or_give_up(id, &job, &error).await,
            Err(error) => {
                tracing::warn!(job = id, reason, error = %error, "giving up a logout relay job: Discourse refused it");
                self.give_up(id, error.kind()).await;
                JobOutcome::GivenUp
            }
        }
    }

    /// Carries out one job: a SCIM sync, suspension or unsuspension, or else a log-out.
    async fn deliver(&self, job: &RelayJob) -> Result<Delivered, ApiError> {
        let payload = || -> Result<serde_json::Value, ApiError> {
            job.payload
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .ok_or(ApiError::InvalidSettings("the job's payload is unreadable"))
        };
        let text = |value: &serde_json::Value, key: &str| -> Result<String, ApiError> {
            value
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or(ApiError::InvalidSettings("the job's payload is incomplete"))
        };
        match job.reason {
            RelayReason::ScimSync => {
                let payload = payload()?;
                let user_id = self
                    .api
                    .sync_sso(&text(&payload, "sso")?, &text(&payload, "sig")?)
                    .await?;
                Ok(Delivered::Applied { user_id })
            }
            RelayReason::ScimSuspend => {
                let payload = payload()?;
                let until = DateTime::parse_from_rfc3339(&text(&payload, "until")?)
                    .map_err(|_| ApiError::InvalidSettings("the job's payload is unreadable"))?
                    .with_timezone(&Utc);
                let reason = text(&payload, "reason")?;
                match self.api.user_id_by_external_id(&job.external_id).await? {
                    None => Ok(Delivered::NoSuchUser),
                    Some(user_id) => {
                        self.api.suspend(user_id, until, &reason).await?;
                        Ok(Delivered::Applied { user_id })
                    }
                }
            }
            RelayReason::ScimUnsuspend => {
                match self.api.user_id_by_external_id(&job.external_id).await? {
                    None => Ok(Delivered::NoSuchUser),
                    Some(user_id) => {
                        self.api.unsuspend(user_id).await?;
                        Ok(Delivered::Applied { user_id })
                    }
                }
            }
            RelayReason::BackchannelLogout
            | RelayReason::AdminCommand
            | RelayReason::ScimLogOut => self.log_out(&job.external_id).await,
        }
    }

    /// Looks the user up and logs them out.
    async fn log_out(&self, external_id: &str) -> Result<Delivered, ApiError> {
        tracing::debug!(external_id, "relaying a logout into Discourse");
        match self.api.user_id_by_external_id(external_id).await? {
            None => Ok(Delivered::NoSuchUser),
            Some(user_id) => {
                self.api.log_out(user_id).await?;
                Ok(Delivered::LoggedOut { user_id })
            }
        }
    }

    async fn retry_or_give_up(
        &self,
        id: RelayJobId,
        job: &RelayJob,
        error: &ApiError,
    ) -> JobOutcome {
        let now = self.clock.now();
        let deadline = add(job.created_at, self.settings.retry_for);
        if now >= deadline {
            tracing::warn!(
                job = id,
                reason = job.reason.as_str(),
                attempts = job.attempts + 1,
                error = %error,
                "giving up a logout relay job: Discourse stayed unavailable for the whole retry window"
            );
            self.give_up(id, "retry_window_over").await;
            return JobOutcome::GivenUp;
        }

        let attempts = job.attempts.saturating_add(1);
        let backoff = backoff_delay(attempts, &self.settings, rand::thread_rng().r#gen::<f64>());
        // Discourse's own Retry-After wins when it asks for longer.
        let delay = error
            .retry_after()
            .map_or(backoff, |asked| asked.max(backoff));
        // The last attempt happens at the deadline, not after it.
        let next_attempt_at = add(now, delay).min(deadline);
        self.book(Bookkeeping::Reschedule {
            id,
            next_attempt_at,
            attempts,
            last_error: error.to_string(),
        })
        .await;
        self.stats.retried.fetch_add(1, Ordering::SeqCst);
        metrics::counter!("bridge_relay_retries_total", "error" => error.kind()).increment(1);
        tracing::info!(job = id, attempts, error = %error, retry_in_ms = delay.as_millis() as u64, "Discourse unavailable; logout relay will retry");
        JobOutcome::Retrying { next_attempt_at }
    }

    async fn give_up(&self, id: RelayJobId, cause: &'static str) {
        self.book(Bookkeeping::GiveUp(id)).await;
        self.stats.given_up.fetch_add(1, Ordering::SeqCst);
        metrics::counter!("bridge_relay_given_up_total", "cause" => cause).increment(1);
    }
}

/// `at + by`, saturating at the end of time.
fn add(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(by)
        .ok()
        .and_then(|by| at.checked_add_signed(by))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The outcome list's lock; a panic while holding it cannot leave the list inconsistent (a push
/// or a take), so a poisoned lock is simply used.
fn lock(list: &Mutex<Vec<Bookkeeping>>) -> std::sync::MutexGuard<'_, Vec<Bookkeeping>> {
    match list.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A successful delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivered {
    LoggedOut {
        user_id: u64,
    },
    /// A SCIM job (sync, suspend, unsuspend) took effect for this user.
    Applied {
        user_id: u64,
    },
    NoSuchUser,
}

/// Whether a pass left due jobs behind (a full batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassEnd {
    MoreDue,
    Idle,
}

#[cfg(test)]
mod tests {
    //! The worker runs on a [`ManualClock`]: retries, polls and the retry window happen when
    //! the test moves the clock, never on the wall clock.
    use super::*;
    use crate::discourse::api::fake_discourse::FakeDiscourse;
    use crate::store::RedbStore;
    use axum::http::{Method, StatusCode};
    use std::path::Path;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn settings() -> RelaySettings {
        RelaySettings {
            retry_for: Duration::from_secs(600),
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            jitter: 0.0,
            poll_interval: Duration::from_secs(30),
            batch_size: 10,
            lease: Duration::from_secs(120),
        }
    }

    fn open_store(dir: &Path) -> Arc<dyn LogoutStore> {
        Arc::new(RedbStore::open(dir).unwrap())
    }

    /// Waits for an event the worker causes (not for time to pass); fails after 10 s.
    async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    fn job(external_id: &str) -> RelayJob {
        RelayJob::new(external_id, RelayReason::BackchannelLogout, start())
    }

    /// A worker over a fresh store on a manual clock.
    struct Running {
        _dir: tempfile::TempDir,
        store: Arc<dyn LogoutStore>,
        clock: Arc<ManualClock>,
        handle: RelayHandle,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    }

    impl Running {
        fn start(discourse: &FakeDiscourse, settings: RelaySettings) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = open_store(dir.path());
            Self::on(dir, store, discourse, settings)
        }

        fn on(
            dir: tempfile::TempDir,
            store: Arc<dyn LogoutStore>,
            discourse: &FakeDiscourse,
            settings: RelaySettings,
        ) -> Self {
            let clock = Arc::new(ManualClock::new(start()));
            let (stop, shutdown) = watch::channel(false);
            let relay =
                Relay::with_clock(Arc::clone(&store), discourse.api(), settings, clock.clone());
            let (handle, task) = relay.spawn(shutdown);
            Self {
                _dir: dir,
                store,
                clock,
                handle,
                stop,
                task,
            }
        }

        /// Lets the worker finish the pass it is in and go idle `n` more times, moving the
        /// clock a poll interval each time: whatever it would do wrong on later polls, it did.
        async fn idle_polls(&self, n: u64, poll: Duration) {
            for _ in 0..n {
                let passes = self.handle.stats().passes;
                self.clock.advance(poll);
                wait_until("another pass", || self.handle.stats().passes > passes).await;
            }
        }

        /// Waits until the worker finished its first pass (it runs one at start).
        async fn first_pass(&self) {
            wait_until("the first pass", || self.handle.stats().passes >= 1).await;
        }

        /// Moves the clock by `by` (which must reach the worker's next wake-up) and waits for
        /// the pass that causes.
        async fn advance_and_pass(&self, by: Duration) {
            let passes = self.handle.stats().passes;
            self.clock.advance(by);
            wait_until("a pass", || self.handle.stats().passes > passes).await;
        }

        async fn stop(self) -> tempfile::TempDir {
            self.stop.send(true).unwrap();
            self.task.await.unwrap();
            self._dir
        }
    }

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
        let settings = RelaySettings {
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            ..settings()
        };
        let delays: Vec<u64> = (1..=12)
            .map(|n| backoff_delay(n, &settings, 0.5).as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]);
        assert_eq!(backoff_delay(u32::MAX, &settings, 0.5).as_secs(), 600);
    }

    #[test]
    fn jitter_spreads_the_delay_within_bounds() {
        let settings = RelaySettings {
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
            jitter: 0.2,
            ..settings()
        };
        assert_eq!(backoff_delay(1, &settings, 0.0), Duration::from_secs(8));
        assert_eq!(backoff_delay(1, &settings, 0.5), Duration::from_secs(10));
        assert!(backoff_delay(1, &settings, 0.999_999) <= Duration::from_secs(12));
        // Jitter never pushes past the cap.
        assert_eq!(
            backoff_delay(20, &settings, 0.999),
            Duration::from_secs(600)
        );
    }

    #[tokio::test]
    async fn the_manual_clock_wakes_sleepers_only_when_it_passes_their_deadline() {
        let clock = ManualClock::new(start());
        let mut sleeper = clock.sleep_until(start() + TimeDelta::seconds(10));
        assert!(futures_poll_once(&mut sleeper).await.is_none());
        clock.advance(Duration::from_secs(9));
        assert!(futures_poll_once(&mut sleeper).await.is_none());
        clock.advance(Duration::from_secs(1));
        sleeper.await;
        assert_eq!(clock.now(), start() + TimeDelta::seconds(10));
    }

    /// Polls a future once: `Some` when it completed.
    async fn futures_poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match Pin::new(&mut *future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[tokio::test]
    async fn a_job_is_delivered_exactly_once() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let run = Running::start(&discourse, settings());

        run.handle.enqueue(job("ext-alice")).await.unwrap();
        wait_until("the log_out", || discourse.logged_out() == [7]).await;
        run.idle_polls(3, settings().poll_interval).await;
        assert_eq!(run.store.pending_count().await.unwrap(), 0);
        assert_eq!(discourse.logged_out(), vec![7]);

        let requests = discourse.requests();
        let paths: Vec<(Method, &str)> = requests
            .iter()
            .map(|r| (r.method.clone(), r.path.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                (Method::GET, "/u/by-external/ext-alice.json"),
                (Method::POST, "/admin/users/7/log_out"),
            ]
        );
        let stats = run.handle.stats();
        assert_eq!(
            (
                stats.logged_out,
                stats.retried,
                stats.given_up,
                stats.taken_over
            ),
            (1, 0, 0, 0)
        );
        run.stop().await;
    }

    #[tokio::test]
    async fn unavailable_discourse_is_retried_with_backoff_until_it_recovers() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        discourse.fail_next(StatusCode::SERVICE_UNAVAILABLE, 3);
        let run = Running::start(&discourse, settings());

        run.handle.enqueue(job("ext-alice")).await.unwrap();
        // Each failure schedules the next attempt 2, 4, then 8 s later; nothing happens before.
        for (failures, backoff) in [(1, 2), (2, 4), (3, 8)] {
            wait_until("a failed attempt", || {
                run.handle.stats().retried == failures
            })
            .await;
            let requests = discourse.requests().len();
            // Short of the backoff the worker is not even woken.
            run.clock.advance(Duration::from_secs(backoff - 1));
            assert_eq!(discourse.requests().len(), requests);
            run.clock.advance(Duration::from_secs(1));
        }
        wait_until("the log_out", || discourse.logged_out() == [7]).await;
        run.idle_polls(2, settings().poll_interval).await;

        assert_eq!(discourse.logged_out(), vec![7]);
        // Three refused lookups, then the lookup and the log_out.
        assert_eq!(discourse.requests().len(), 5);
        let stats = run.handle.stats();
        assert_eq!((stats.retried, stats.logged_out, stats.given_up), (3, 1, 0));
        assert_eq!(run.store.pending_count().await.unwrap(), 0);
        run.stop().await;
    }

    #[tokio::test]
    async fn a_pending_job_survives_a_restart() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        discourse.fail_next(StatusCode::SERVICE_UNAVAILABLE, 1);
        // A first run meets the outage, schedules a retry, and is stopped.
        let run = Running::start(&discourse, settings());
        run.handle.enqueue(job("ext-alice")).await.unwrap();
        wait_until("the first attempt to fail", || {
            run.handle.stats().retried == 1
        })
        .await;
        let dir = run.stop().await;
        assert!(discourse.logged_out().is_empty());

        // The bridge comes back with a fresh store handle on the same directory.
        let store = open_store(dir.path());
        assert_eq!(store.pending_count().await.unwrap(), 1);
        let run = Running::on(dir, store, &discourse, settings());
        run.clock.advance(Duration::from_secs(2));
        wait_until("the log_out", || discourse.logged_out() == [7]).await;
        run.idle_polls(2, settings().poll_interval).await;
        assert_eq!(discourse.logged_out(), vec![7]);
        assert_eq!(run.store.pending_count().await.unwrap(), 0);
        run.stop().await;
    }

    #[tokio::test]
    async fn an_unknown_user_completes_the_job_without_log_out() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let run = Running::start(&discourse, settings());

        run.handle.enqueue(job("ext-nobody")).await.unwrap();
        wait_until("the job to complete", || {
            run.handle.stats().no_such_user == 1
        })
        .await;
        assert_eq!(run.store.pending_count().await.unwrap(), 0);
        assert_eq!(run.store.given_up_count().await.unwrap(), 0);
        assert!(discourse.logged_out().is_empty());
        assert!(discourse.requests().iter().all(|r| r.method == Method::GET));
        run.stop().await;
    }

    #[tokio::test]
    async fn a_job_is_given_up_when_the_retry_window_is_over() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        discourse.fail_next(StatusCode::BAD_GATEWAY, 10_000);
        let settings = RelaySettings {
            retry_for: Duration::from_secs(20),
            ..settings()
        };
        let run = Running::start(&discourse, settings.clone());

        run.handle.enqueue(job("ext-alice")).await.unwrap();
        // Attempts at 0, 2, 6 and 14 s fail; the next is due at 30 s but the window closes at
        // 20 s, so the last attempt happens at 20 s and gives the job up.
        for (failures, at) in [(1, 2), (2, 6), (3, 14), (4, 20)] {
            wait_until("a failed attempt", || {
                run.handle.stats().retried == failures
            })
            .await;
            let now = run.clock.now();
            run.clock
                .advance((start() + TimeDelta::seconds(at) - now).to_std().unwrap());
        }
        wait_until("the job to be given up", || {
            run.handle.stats().given_up == 1
        })
        .await;
        assert!(run.clock.now() >= start() + TimeDelta::seconds(20));
        assert_eq!(run.store.pending_count().await.unwrap(), 0);
        assert_eq!(run.store.given_up_count().await.unwrap(), 1);
        assert_eq!(run.handle.stats().retried, 4);
        assert!(discourse.logged_out().is_empty());
        run.stop().await;
    }

    #[tokio::test]
    async fn a_permanent_error_gives_the_job_up_at_once() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let api = DiscourseApi::new(
            reqwest::Client::new(),
            discourse.url.clone(),
            secrecy::SecretString::from("revoked key"),
            "system".to_owned(),
        );
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        store.enqueue(&job("ext-alice")).await.unwrap();

        let relay = Relay::new(Arc::clone(&store), api, settings());
        let outcomes = relay.run_due(start()).await.unwrap();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].1, JobOutcome::GivenUp);
        assert_eq!(discourse.requests().len(), 1);
        assert_eq!(store.given_up_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn run_due_reports_each_outcome() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let relay = Relay::with_clock(
            Arc::clone(&store),
            discourse.api(),
            settings(),
            Arc::new(ManualClock::new(start())),
        );
        let alice = store.enqueue(&job("ext-alice")).await.unwrap();
        let nobody = store.enqueue(&job("ext-nobody")).await.unwrap();
        let mut outcomes = relay.run_due(start()).await.unwrap();
        outcomes.sort_by_key(|(id, _)| *id);
        assert_eq!(
            outcomes,
            [
                (alice, JobOutcome::LoggedOut { user_id: 7 }),
                (nobody, JobOutcome::NoSuchUser),
            ]
        );

        discourse.fail_next(StatusCode::TOO_MANY_REQUESTS, 1);
        let throttled = store.enqueue(&job("ext-alice")).await.unwrap();
        let outcomes = relay.run_due(start()).await.unwrap();
        assert!(matches!(
            outcomes.as_slice(),
            [(id, JobOutcome::Retrying { .. })] if *id == throttled
        ));
        assert_eq!(store.pending_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn jobs_enqueued_by_another_process_are_picked_up_by_polling() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        // The admin command opens its own handle and cannot notify the server's worker.
        let admin = open_store(dir.path());
        let run = Running::on(dir, store, &discourse, settings());
        run.first_pass().await;
        admin
            .enqueue(&RelayJob::new(
                "ext-alice",
                RelayReason::AdminCommand,
                start(),
            ))
            .await
            .unwrap();
        assert!(discourse.logged_out().is_empty(), "not before the poll");
        run.clock.advance(settings().poll_interval);
        wait_until("the log_out", || discourse.logged_out() == [7]).await;
        run.stop().await;
    }

    #[tokio::test]
    async fn a_job_held_by_a_dead_worker_is_taken_over_when_its_lease_ends() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        store.enqueue(&job("ext-alice")).await.unwrap();
        // Another worker claimed the job and died before delivering it.
        let held = store
            .claim_due(start(), 10, settings().lease, "dead-worker")
            .await
            .unwrap();
        assert_eq!(held.len(), 1);

        let run = Running::on(dir, store, &discourse, settings());
        run.first_pass().await;
        run.advance_and_pass(settings().lease - Duration::from_secs(1))
            .await;
        assert!(discourse.requests().is_empty(), "not while the lease runs");
        run.clock.advance(Duration::from_secs(1));
        wait_until("the log_out", || discourse.logged_out() == [7]).await;
        assert_eq!(run.handle.stats().taken_over, 1);
        run.stop().await;
    }

    #[tokio::test]
    async fn the_worker_stops_when_the_shutdown_sender_is_dropped() {
        let discourse = FakeDiscourse::start(&[]).await;
        let Running { stop, task, .. } = Running::start(&discourse, settings());
        drop(stop);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
