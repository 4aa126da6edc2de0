//! Durable delivery of logout relay jobs into Discourse, with retries and exponential backoff.
//!
//! The back-channel handler must answer the IdP within seconds (oidc-provider gives up after
//! 2.5 s), while Discourse may be slow, restarting or rate-limiting. So the handler only
//! persists a [`RelayJob`] and wakes this worker; the worker looks the user up by
//! `external_id` and calls `log_out`. Retryable failures (network, 5xx, 408, 429) are retried
//! with exponential backoff and jitter until `relay_retry_for` after the job was created; a
//! permanent failure (bad credentials, unaddressable id...) gives the job up at once. Jobs live
//! in the store, so a restart or an outage loses none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng as _;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::LogoutConfig;
use crate::discourse::api::{ApiError, DiscourseApi};
use crate::store::{self, LogoutStore, RelayJob, RelayJobId, StoreError};

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
    /// processes (the admin command) enqueued.
    pub poll_interval: Duration,
    /// Most jobs delivered in one pass before the worker checks for shutdown and sleeps.
    pub batch_size: usize,
}

impl RelaySettings {
    /// 2 s doubling to at most 10 min, ±20 % jitter, a poll every 30 s.
    pub fn from_config(logout: &LogoutConfig) -> Self {
        Self {
            retry_for: logout.relay_retry_for,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            jitter: 0.2,
            poll_interval: Duration::from_secs(30),
            batch_size: 50,
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
}

/// A plain-number copy of [`RelayStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStatsSnapshot {
    pub logged_out: u64,
    pub no_such_user: u64,
    pub retried: u64,
    pub given_up: u64,
}

impl RelayStats {
    pub fn snapshot(&self) -> RelayStatsSnapshot {
        RelayStatsSnapshot {
            logged_out: self.logged_out.load(Ordering::Relaxed),
            no_such_user: self.no_such_user.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            given_up: self.given_up.load(Ordering::Relaxed),
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
        let id = store::blocking(&self.store, move |s| s.enqueue(&job)).await?;
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
    /// No Discourse user has the external id: nothing to do.
    NoSuchUser,
    /// A retryable failure; attempted again at `next_attempt_at`.
    Retrying { next_attempt_at: DateTime<Utc> },
    /// Dropped for good.
    GivenUp,
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
}

impl Relay {
    pub fn new(store: Arc<dyn LogoutStore>, api: DiscourseApi, settings: RelaySettings) -> Self {
        Self {
            store,
            api,
            settings,
            wake: Arc::new(Notify::new()),
            stats: Arc::new(RelayStats::default()),
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

    /// Runs the worker as a tokio task until `shutdown` turns `true` (or its sender is
    /// dropped). A pass in progress finishes its current job first.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> (RelayHandle, JoinHandle<()>) {
        let handle = self.handle();
        let task = tokio::spawn(self.run(shutdown));
        (handle, task)
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!("logout relay started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.pass(&shutdown).await {
                Ok(PassEnd::MoreDue) => continue,
                Ok(PassEnd::Idle) => self.time_to_next_job().await,
                Err(error) => {
                    tracing::error!(error = %error, "logout relay cannot use the store; retrying later");
                    self.settings.poll_interval
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!("logout relay stopped");
    }

    /// How long to sleep: until the earliest pending job is due, at most one poll interval.
    async fn time_to_next_job(&self) -> Duration {
        let poll = self.settings.poll_interval;
        match store::blocking(&self.store, |s| s.next_due_at()).await {
            Ok(Some(next)) => (next - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll),
            Ok(None) => poll,
            Err(error) => {
                tracing::error!(error = %error, "logout relay cannot read the store");
                poll
            }
        }
    }

    /// Delivers every job due now, one batch at most.
    async fn pass(&self, shutdown: &watch::Receiver<bool>) -> Result<PassEnd, StoreError> {
        let batch = self.settings.batch_size.max(1);
        let due = store::blocking(&self.store, move |s| s.due(Utc::now(), batch)).await?;
        let full = due.len() >= batch;
        for (id, job) in due {
            if *shutdown.borrow() {
                return Ok(PassEnd::Idle);
            }
            self.attempt(id, job).await?;
        }
        let pending = store::blocking(&self.store, |s| s.pending_count()).await?;
        metrics::gauge!("bridge_relay_pending_jobs").set(pending as f64);
        Ok(if full {
            PassEnd::MoreDue
        } else {
            PassEnd::Idle
        })
    }

    /// Delivers every job due at `now` once and reports what happened to each. For one-shot
    /// use outside the worker.
    pub async fn run_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(RelayJobId, JobOutcome)>, StoreError> {
        let batch = self.settings.batch_size.max(1);
        let due = store::blocking(&self.store, move |s| s.due(now, batch)).await?;
        let mut outcomes = Vec::with_capacity(due.len());
        for (id, job) in due {
            outcomes.push((id, self.attempt(id, job).await?));
        }
        Ok(outcomes)
    }

    /// One delivery attempt of one job, and its bookkeeping in the store.
    async fn attempt(&self, id: RelayJobId, job: RelayJob) -> Result<JobOutcome, StoreError> {
        let reason = job.reason.as_str();
        match self.deliver(&job.external_id).await {
            Ok(delivered) => {
                store::blocking(&self.store, move |s| s.complete(id)).await?;
                Ok(match delivered {
                    Delivered::LoggedOut { user_id } => {
                        self.stats.logged_out.fetch_add(1, Ordering::Relaxed);
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
                        self.stats.no_such_user.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("bridge_backchannel_relayed_total", "outcome" => "no_such_user")
                            .increment(1);
                        tracing::info!(
                            job = id,
                            reason,
                            "no Discourse user has this external id; nothing to log out"
                        );
                        JobOutcome::NoSuchUser
                    }
                })
            }
            Err(error) if error.is_retryable() => self.retry_or_give_up(id, &job, &error).await,
            Err(error) => {
                tracing::warn!(job = id, reason, error = %error, "giving up a logout relay job: Discourse refused it");
                self.give_up(id, error.kind()).await?;
                Ok(JobOutcome::GivenUp)
            }
        }
    }

    /// Looks the user up and logs them out.
    async fn deliver(&self, external_id: &str) -> Result<Delivered, ApiError> {
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
    ) -> Result<JobOutcome, StoreError> {
        let now = Utc::now();
        let window = TimeDelta::from_std(self.settings.retry_for).unwrap_or(TimeDelta::MAX);
        let deadline = job
            .created_at
            .checked_add_signed(window)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if now >= deadline {
            tracing::warn!(
                job = id,
                reason = job.reason.as_str(),
                attempts = job.attempts + 1,
                error = %error,
                "giving up a logout relay job: Discourse stayed unavailable for the whole retry window"
            );
            self.give_up(id, "retry_window_over").await?;
            return Ok(JobOutcome::GivenUp);
        }

        let attempts = job.attempts.saturating_add(1);
        let backoff = backoff_delay(attempts, &self.settings, rand::thread_rng().r#gen::<f64>());
        // Discourse's own Retry-After wins when it asks for longer.
        let delay = error
            .retry_after()
            .map_or(backoff, |asked| asked.max(backoff));
        let next_attempt_at = TimeDelta::from_std(delay)
            .ok()
            .and_then(|delay| now.checked_add_signed(delay))
            .unwrap_or(deadline)
            // The last attempt happens at the deadline, not after it.
            .min(deadline);
        let last_error = error.to_string();
        store::blocking(&self.store, move |s| {
            s.reschedule(id, next_attempt_at, attempts, &last_error)
        })
        .await?;
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("bridge_relay_retries_total", "error" => error.kind()).increment(1);
        tracing::info!(job = id, attempts, error = %error, retry_in_ms = delay.as_millis() as u64, "Discourse unavailable; logout relay will retry");
        Ok(JobOutcome::Retrying { next_attempt_at })
    }

    async fn give_up(&self, id: RelayJobId, cause: &'static str) -> Result<(), StoreError> {
        store::blocking(&self.store, move |s| s.give_up(id)).await?;
        self.stats.given_up.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("bridge_relay_given_up_total", "cause" => cause).increment(1);
        Ok(())
    }
}

/// A successful delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivered {
    LoggedOut { user_id: u64 },
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
    use super::*;
    use crate::discourse::api::fake_discourse::FakeDiscourse;
    use crate::store::{RedbStore, RelayReason};
    use axum::http::{Method, StatusCode};
    use std::path::Path;
    use std::time::Instant;

    fn fast_settings() -> RelaySettings {
        RelaySettings {
            retry_for: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            jitter: 0.2,
            poll_interval: Duration::from_millis(200),
            batch_size: 10,
        }
    }

    fn open_store(dir: &Path) -> Arc<dyn LogoutStore> {
        Arc::new(RedbStore::open(dir).unwrap())
    }

    async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let start = Instant::now();
        while !condition() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn job(external_id: &str) -> RelayJob {
        RelayJob::new(external_id, RelayReason::BackchannelLogout, Utc::now())
    }

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
        let settings = RelaySettings {
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            jitter: 0.0,
            ..fast_settings()
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
            ..fast_settings()
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
    async fn a_job_is_delivered_exactly_once() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let (stop, shutdown) = watch::channel(false);
        let (handle, task) =
            Relay::new(Arc::clone(&store), discourse.api(), fast_settings()).spawn(shutdown);

        handle.enqueue(job("ext-alice")).await.unwrap();
        wait_until("the log_out", || discourse.logged_out() == [7]).await;
        wait_until("the job to complete", || {
            store.pending_count().unwrap() == 0
        })
        .await;
        // Give the worker a few more polls to do something wrong.
        tokio::time::sleep(Duration::from_millis(500)).await;
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
        assert_eq!(
            handle.stats(),
            RelayStatsSnapshot {
                logged_out: 1,
                ..RelayStatsSnapshot::default()
            }
        );

        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn unavailable_discourse_is_retried_until_it_recovers() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        discourse.fail_next(StatusCode::SERVICE_UNAVAILABLE, 3);
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let (stop, shutdown) = watch::channel(false);
        let (handle, task) =
            Relay::new(Arc::clone(&store), discourse.api(), fast_settings()).spawn(shutdown);

        handle.enqueue(job("ext-alice")).await.unwrap();
        wait_until("the log_out", || discourse.logged_out() == [7]).await;
        wait_until("the job to complete", || {
            store.pending_count().unwrap() == 0
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        assert_eq!(discourse.logged_out(), vec![7]);
        // Three refused lookups, then the lookup and the log_out.
        assert_eq!(discourse.requests().len(), 5);
        let stats = handle.stats();
        assert_eq!((stats.retried, stats.logged_out, stats.given_up), (3, 1, 0));

        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_pending_job_survives_a_restart() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        discourse.fail_next(StatusCode::SERVICE_UNAVAILABLE, 1);
        let dir = tempfile::tempdir().unwrap();
        // A first run meets the outage, schedules a retry well in the future, and is stopped.
        let slow_retry = RelaySettings {
            initial_backoff: Duration::from_millis(700),
            max_backoff: Duration::from_millis(700),
            jitter: 0.0,
            ..fast_settings()
        };
        {
            let store = open_store(dir.path());
            let (stop, shutdown) = watch::channel(false);
            let (handle, task) =
                Relay::new(Arc::clone(&store), discourse.api(), slow_retry).spawn(shutdown);
            handle.enqueue(job("ext-alice")).await.unwrap();
            wait_until("the first attempt to fail", || handle.stats().retried == 1).await;
            stop.send(true).unwrap();
            task.await.unwrap();
        }
        assert!(discourse.logged_out().is_empty());

        // The bridge comes back with a fresh store handle on the same directory.
        let store = open_store(dir.path());
        assert_eq!(store.pending_count().unwrap(), 1);
        let (stop, shutdown) = watch::channel(false);
        let (_handle, task) =
            Relay::new(Arc::clone(&store), discourse.api(), fast_settings()).spawn(shutdown);
        wait_until("the log_out", || discourse.logged_out() == [7]).await;
        wait_until("the job to complete", || {
            store.pending_count().unwrap() == 0
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(discourse.logged_out(), vec![7]);

        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn an_unknown_user_completes_the_job_without_log_out() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let (stop, shutdown) = watch::channel(false);
        let (handle, task) =
            Relay::new(Arc::clone(&store), discourse.api(), fast_settings()).spawn(shutdown);

        handle.enqueue(job("ext-nobody")).await.unwrap();
        wait_until("the job to complete", || handle.stats().no_such_user == 1).await;
        assert_eq!(store.pending_count().unwrap(), 0);
        assert_eq!(store.given_up_count().unwrap(), 0);
        assert!(discourse.logged_out().is_empty());
        assert!(discourse.requests().iter().all(|r| r.method == Method::GET));

        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_job_is_given_up_when_the_retry_window_is_over() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        discourse.fail_next(StatusCode::BAD_GATEWAY, 10_000);
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let settings = RelaySettings {
            retry_for: Duration::from_millis(300),
            ..fast_settings()
        };
        let (stop, shutdown) = watch::channel(false);
        let (handle, task) =
            Relay::new(Arc::clone(&store), discourse.api(), settings).spawn(shutdown);

        let started = Instant::now();
        handle.enqueue(job("ext-alice")).await.unwrap();
        wait_until("the job to be given up", || handle.stats().given_up == 1).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(store.pending_count().unwrap(), 0);
        assert_eq!(store.given_up_count().unwrap(), 1);
        assert!(handle.stats().retried >= 2);
        assert!(discourse.logged_out().is_empty());

        stop.send(true).unwrap();
        task.await.unwrap();
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
        store.enqueue(&job("ext-alice")).unwrap();

        let relay = Relay::new(Arc::clone(&store), api, fast_settings());
        let outcomes = relay.run_due(Utc::now()).await.unwrap();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].1, JobOutcome::GivenUp);
        assert_eq!(discourse.requests().len(), 1);
        assert_eq!(store.given_up_count().unwrap(), 1);
    }

    #[tokio::test]
    async fn run_due_reports_each_outcome() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let relay = Relay::new(Arc::clone(&store), discourse.api(), fast_settings());
        let alice = store.enqueue(&job("ext-alice")).unwrap();
        let nobody = store.enqueue(&job("ext-nobody")).unwrap();
        let mut outcomes = relay.run_due(Utc::now()).await.unwrap();
        outcomes.sort_by_key(|(id, _)| *id);
        assert_eq!(
            outcomes,
            [
                (alice, JobOutcome::LoggedOut { user_id: 7 }),
                (nobody, JobOutcome::NoSuchUser),
            ]
        );

        discourse.fail_next(StatusCode::TOO_MANY_REQUESTS, 1);
        let throttled = store.enqueue(&job("ext-alice")).unwrap();
        let outcomes = relay.run_due(Utc::now()).await.unwrap();
        assert!(matches!(
            outcomes.as_slice(),
            [(id, JobOutcome::Retrying { .. })] if *id == throttled
        ));
        assert_eq!(store.pending_count().unwrap(), 1);
    }

    #[tokio::test]
    async fn jobs_enqueued_by_another_process_are_picked_up_by_polling() {
        let discourse = FakeDiscourse::start(&[("ext-alice", 7)]).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let (stop, shutdown) = watch::channel(false);
        let (_handle, task) =
            Relay::new(Arc::clone(&store), discourse.api(), fast_settings()).spawn(shutdown);

        // The admin command opens its own handle and cannot notify the server's worker.
        let admin = open_store(dir.path());
        admin
            .enqueue(&RelayJob::new(
                "ext-alice",
                RelayReason::AdminCommand,
                Utc::now(),
            ))
            .unwrap();
        wait_until("the log_out", || discourse.logged_out() == [7]).await;

        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_worker_stops_when_the_shutdown_sender_is_dropped() {
        let discourse = FakeDiscourse::start(&[]).await;
        let dir = tempfile::tempdir().unwrap();
        let settings = RelaySettings {
            poll_interval: Duration::from_secs(3600),
            ..fast_settings()
        };
        let (stop, shutdown) = watch::channel(false);
        let (_handle, task) =
            Relay::new(open_store(dir.path()), discourse.api(), settings).spawn(shutdown);
        drop(stop);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
