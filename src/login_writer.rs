//! Group commit of completed logins into the store: one writer task, one durable transaction
//! per batch (the classic write-ahead "group commit"), and a bounded buffer while the store is
//! unavailable.
//!
//! Every login ends with two records (who logged in, for back-channel logout; the browser's
//! session, for `id_token_hint`). Committing them one login at a time costs a disk sync (or a
//! database round trip) per login, the largest part of a login's CPU. Instead the callback
//! hands its records to [`LoginWriter::record`] and the writer commits:
//! - at once when the store is idle (no extra delay at low login rates);
//! - otherwise together with every other login queued meanwhile, at most `commit_interval` after
//!   the previous commit started (the sync is shared under load).
//!
//! With a non-zero interval on the embedded store the browser does not wait for the commit: a
//! crash (not a graceful stop, which commits first) loses at most the logins of the last
//! interval. A zero interval, or the shared PostgreSQL store (where the next request may reach
//! another replica), makes [`LoginWriter::record`] wait for the commit attempt that holds its
//! login; logins arriving during one attempt still share the next. Readers that must see every
//! finished login (back-channel logout, `GET /logout`) call [`LoginWriter::flush`] first.
//!
//! When the store fails (PostgreSQL restarting), logins still complete: their records stay
//! queued, at most `capacity` of them (the oldest are dropped beyond that, counted in
//! `bridge_store_logins_dropped_total`; `bridge_store_logins_buffered` shows the backlog), and
//! are written with backoff (0.1 s doubling to 5 s) once the store answers again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::store::{CompletedLogin, LogoutStore};

/// The `finished` value after the writer task has returned: nobody waits for it any more.
const WRITER_GONE: u64 = u64::MAX;

/// First pause after a failed commit; doubled after each further failure.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest pause between attempts while the store fails.
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Handle for recording logins; cheap to clone.
#[derive(Debug, Clone)]
pub struct LoginWriter {
    shared: Arc<Shared>,
}

/// The writer task's half: owned by the server, which runs it.
#[derive(Debug)]
pub struct LoginWriterTask {
    shared: Arc<Shared>,
    store: Arc<dyn LogoutStore>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a login is queued.
    queued: Notify,
    /// Signalled when somebody waits for the queue to be written: skip the pause.
    flush_requested: Notify,
    /// Somebody waits for an attempt (set by a flush, cleared when an attempt starts).
    flush_pending: AtomicBool,
    /// Commit attempts finished (successful or not); [`WRITER_GONE`] once the writer task has
    /// returned, so that nobody waits for it any more.
    finished: watch::Sender<u64>,
    /// Transactions committed so far.
    commits: AtomicU64,
    interval: Duration,
    /// `record` waits for the attempt that holds its login (zero interval, or a shared store).
    wait_for_commit: bool,
    /// Most logins kept while the store fails.
    capacity: usize,
}

#[derive(Debug, Default)]
struct Queue {
    /// Logins not yet written, oldest first (a failed attempt puts its logins back in front).
    logins: Vec<CompletedLogin>,
    /// Commit attempts started; the attempt numbered `started` takes everything queued at its
    /// start.
    started: u64,
}

impl LoginWriter {
    /// A writer over `store` that commits at most every `interval` under load and keeps at most
    /// `capacity` logins while the store fails.
    pub fn new(
        store: Arc<dyn LogoutStore>,
        interval: Duration,
        capacity: usize,
    ) -> (Self, LoginWriterTask) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            queued: Notify::new(),
            flush_requested: Notify::new(),
            flush_pending: AtomicBool::new(false),
            finished: watch::Sender::new(0),
            commits: AtomicU64::new(0),
            interval,
            wait_for_commit: interval.is_zero() || store.backend() == "postgres",
            capacity: capacity.max(1),
        });
        (
            Self {
                shared: shared.clone(),
            },
            LoginWriterTask { shared, store },
        )
    }

    /// Queues one completed login. With a zero interval, or on a shared (PostgreSQL) store,
    /// waits until an attempt to write it finished (durable unless the store failed, in which
    /// case it stays queued): a logout reaching another replica right after the login must
    /// find it, and that replica cannot flush this one's queue.
    pub async fn record(&self, login: CompletedLogin) {
        let started = {
            let mut queue = lock(&self.shared.queue);
            queue.logins.push(login);
            queue.started
        };
        self.shared.queued.notify_one();
        if *self.shared.finished.borrow() == WRITER_GONE {
            // Only possible while the process stops: the server drains before the writer does.
            tracing::warn!("a login finished after the login writer stopped and is not recorded");
            return;
        }
        if self.shared.wait_for_commit {
            self.shared.request_flush();
            self.wait_for_attempt(started + 1).await;
        }
    }

    /// Waits until every login queued before this call has been written, or an attempt to
    /// write them failed (the store is down; they stay queued).
    pub async fn flush(&self) {
        let (started, empty) = {
            let queue = lock(&self.shared.queue);
            (queue.started, queue.logins.is_empty())
        };
        if empty {
            // Only an attempt in progress may still hold them.
            self.wait_for_attempt(started).await;
            return;
        }
        self.shared.request_flush();
        self.wait_for_attempt(started + 1).await;
    }

    /// Transactions committed so far (each holds one or more logins).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::SeqCst)
    }

    /// Logins queued and not yet written.
    pub fn backlog(&self) -> usize {
        lock(&self.shared.queue).logins.len()
    }

    /// Waits until `attempt` commit attempts have finished.
    async fn wait_for_attempt(&self, attempt: u64) {
        let mut finished = self.shared.finished.subscribe();
        // The sender lives in `shared`, which `self` keeps alive: this cannot fail.
        let _ = finished.wait_for(|done| *done >= attempt).await;
    }
}

impl Shared {
    /// Asks the writer to attempt a commit without waiting for the interval or the backoff.
    fn request_flush(&self) {
        self.flush_pending.store(true, Ordering::SeqCst);
        self.flush_requested.notify_one();
    }
}

impl LoginWriterTask {
    /// Commits queued logins until `stop` turns true (or its sender is dropped), then tries once
    /// more to commit what is left, releases every waiter and returns.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut last_attempt: Option<Instant> = None;
        let mut failures: u32 = 0;
        'writing: loop {
            let backlog = !lock(&self.shared.queue).logins.is_empty();
            if !backlog {
                tokio::select! {
                    () = self.shared.queued.notified() => {}
                    _ = stop.wait_for(|stopping| *stopping) => break 'writing,
                }
            }
            let pause = if failures == 0 {
                self.shared.interval
            } else {
                FIRST_RETRY
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(LAST_RETRY)
            };
            if let Some(due) = last_attempt.map(|at| at + pause) {
                // A wake-up for a flush that an earlier attempt already served is ignored.
                while !self.shared.flush_pending.load(Ordering::SeqCst) && Instant::now() < due {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = self.shared.flush_requested.notified() => {}
                        _ = stop.wait_for(|stopping| *stopping) => break 'writing,
                    }
                }
            }
            let started = Instant::now();
            match self.attempt().await {
                Attempt::Nothing => {}
                Attempt::Written => {
                    last_attempt = Some(started);
                    failures = 0;
                }
                Attempt::Failed => {
                    last_attempt = Some(started);
                    failures = failures.saturating_add(1);
                }
            }
        }
        if let Attempt::Failed = self.attempt().await {
            let lost = self.shared_backlog();
            metrics::counter!("bridge_store_logins_dropped_total").increment(lost as u64);
            tracing::error!(
                logins = lost,
                "stopping with logins the store did not take: back-channel logout will not find \
                 these sessions"
            );
        }
        self.shared.finished.send_replace(WRITER_GONE);
    }

    fn shared_backlog(&self) -> usize {
        lock(&self.shared.queue).logins.len()
    }

    /// Writes everything queued in one transaction; on failure puts it back, bounded.
    async fn attempt(&self) -> Attempt {
        let logins = {
            let mut queue = lock(&self.shared.queue);
            if queue.logins.is_empty() {
                return Attempt::Nothing;
            }
            queue.started += 1;
            self.shared.flush_pending.store(false, Ordering::SeqCst);
            std::mem::take(&mut queue.logins)
        };
        let count = logins.len();
        let outcome = match self.store.record_logins(&logins).await {
            Ok(()) => {
                self.shared.commits.fetch_add(1, Ordering::SeqCst);
                metrics::counter!("bridge_store_login_commits_total").increment(1);
                metrics::counter!("bridge_store_logins_recorded_total")
                    .increment(u64::try_from(count).unwrap_or(u64::MAX));
                metrics::gauge!("bridge_store_logins_buffered").set(0.0);
                Attempt::Written
            }
            Err(error) => {
                metrics::counter!("bridge_store_errors_total", "operation" => "record_logins")
                    .increment(1);
                let mut queue = lock(&self.shared.queue);
                let newer = std::mem::replace(&mut queue.logins, logins);
                queue.logins.extend(newer);
                let excess = queue.logins.len().saturating_sub(self.shared.capacity);
                if excess > 0 {
                    queue.logins.drain(..excess);
                    metrics::counter!("bridge_store_logins_dropped_total")
                        .increment(u64::try_from(excess).unwrap_or(u64::MAX));
                    tracing::error!(
                        dropped = excess,
                        capacity = self.shared.capacity,
                        "the login buffer is full: the oldest logins are dropped and \
                         back-channel logout will not find those sessions"
                    );
                }
                let buffered = queue.logins.len();
                drop(queue);
                metrics::gauge!("bridge_store_logins_buffered").set(buffered as f64);
                tracing::warn!(
                    %error,
                    buffered,
                    "could not record logins; they are kept and written when the store answers"
                );
                Attempt::Failed
            }
        };
        self.shared.finished.send_modify(|finished| {
            if *finished != WRITER_GONE {
                *finished += 1;
            }
        });
        outcome
    }
}

/// How one commit attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Nothing,
    Written,
    Failed,
}

/// The queue's lock; a panic while holding it cannot leave the queue inconsistent (a push or a
/// take), so a poisoned lock is simply used.
fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    match queue.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LoginRecord, RedbStore, SessionRecord};
    use chrono::{DateTime, Utc};
    use std::sync::atomic::Ordering;

    const ISS: &str = "https://idp.example.test";

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn completed(n: usize) -> CompletedLogin {
        let sub = format!("user-{n}");
        CompletedLogin {
            login: LoginRecord {
                iss: ISS.into(),
                sub: sub.clone(),
                sid: Some(format!("sid-{n}")),
                external_id: format!("ext-{n}"),
                logged_in_at: at(0),
            },
            session_id: format!("session-{n}"),
            session: SessionRecord {
                id_token: "header.payload.signature".into(),
                iss: ISS.into(),
                sub,
                sid: Some(format!("sid-{n}")),
                external_id: format!("ext-{n}"),
                expires_at: at(3600),
            },
        }
    }

    /// A store in a fresh directory and a running writer over it. Keep `dir` and
    /// `stop` alive: dropping them deletes the store or stops the writer.
    struct Running {
        dir: tempfile::TempDir,
        store: Arc<RedbStore>,
        writer: LoginWriter,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    fn running(interval: Duration) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path()).unwrap());
        let (writer, task) = LoginWriter::new(store.clone(), interval, 1000);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(task.run(stopped));
        Running {
            dir,
            store,
            writer,
            stop,
            task,
        }
    }

    /// Waits (up to 10 s) until the writer has committed `n` transactions. The commit count,
    /// not the store's content, is the event: the writer counts a commit after the store call
    /// returned, so a reader of the store could see the rows before the count.
    async fn until_commits(writer: &LoginWriter, n: u64) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while writer.commits() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("commit {n} never happened"));
    }

    #[tokio::test]
    async fn a_login_on_an_idle_store_is_committed_without_waiting_for_the_interval() {
        let run = running(Duration::from_secs(3600));
        let (store, writer) = (&run.store, &run.writer);
        writer.record(completed(1)).await;
        // Well within the hour-long interval: the first login is committed at once.
        until_commits(writer, 1).await;
        assert!(
            store
                .external_id_for_sid(ISS, "sid-1")
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn logins_queued_within_the_interval_share_one_commit() {
        let run = running(Duration::from_secs(3600));
        let (store, writer) = (&run.store, &run.writer);
        writer.record(completed(0)).await;
        writer.flush().await;
        assert_eq!(writer.commits(), 1);
        // The interval (an hour) has not passed: these wait, together, for a flush.
        for n in 1..=20 {
            writer.record(completed(n)).await;
        }
        // The interval runs from the first commit: the writer waits, whatever it was doing.
        assert_eq!(writer.commits(), 1, "nothing before the interval");
        assert_eq!(writer.backlog(), 20);
        writer.flush().await;
        assert_eq!(writer.commits(), 2, "one commit for twenty");
        assert_eq!(writer.backlog(), 0);
        for n in 0..=20 {
            assert_eq!(
                store
                    .external_ids_for_sub(ISS, &format!("user-{n}"))
                    .await
                    .unwrap(),
                vec![format!("ext-{n}")]
            );
            let session = store
                .take_session(&format!("session-{n}"), at(1))
                .await
                .unwrap();
            assert_eq!(session.unwrap().external_id, format!("ext-{n}"));
        }
    }

    #[tokio::test]
    async fn under_load_the_interval_bounds_the_wait() {
        let run = running(Duration::from_millis(50));
        let (store, writer) = (&run.store, &run.writer);
        writer.record(completed(0)).await;
        writer.flush().await;
        writer.record(completed(1)).await;
        // Nobody flushes: the writer commits by itself once the interval has passed.
        until_commits(writer, 2).await;
        assert!(
            store
                .external_id_for_sid(ISS, "sid-1")
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(writer.backlog(), 0);
    }

    #[tokio::test]
    async fn a_zero_interval_makes_record_wait_for_durability() {
        let run = running(Duration::ZERO);
        let (store, writer) = (&run.store, &run.writer);
        for n in 0..5 {
            writer.record(completed(n)).await;
            // Already written when `record` returns, without a flush.
            assert_eq!(
                store
                    .external_id_for_sid(ISS, &format!("sid-{n}"))
                    .await
                    .unwrap()
                    .as_deref(),
                Some(format!("ext-{n}").as_str())
            );
        }
    }

    #[tokio::test]
    async fn concurrent_waiting_logins_share_commits() {
        let run = running(Duration::ZERO);
        let (store, writer) = (&run.store, &run.writer);
        let logins: Vec<_> = (0..64)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.record(completed(n)).await })
            })
            .collect();
        for login in logins {
            login.await.unwrap();
        }
        for n in 0..64 {
            assert!(
                store
                    .external_id_for_sid(ISS, &format!("sid-{n}"))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        assert!(writer.commits() <= 64);
    }

    #[tokio::test]
    async fn stopping_commits_what_is_queued_and_survives_a_reopen() {
        let Running {
            dir,
            store,
            writer,
            stop,
            task,
        } = running(Duration::from_secs(3600));
        writer.record(completed(0)).await;
        writer.flush().await;
        writer.record(completed(1)).await;
        writer.record(completed(2)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        drop(writer);
        drop(store);
        let reopened = RedbStore::open(dir.path()).unwrap();
        for n in 0..3 {
            assert_eq!(
                reopened
                    .external_id_for_sid(ISS, &format!("sid-{n}"))
                    .await
                    .unwrap(),
                Some(format!("ext-{n}"))
            );
        }
    }

    #[tokio::test]
    async fn a_dropped_stop_sender_stops_the_writer_without_leaving_anybody_waiting() {
        let Running {
            store,
            writer,
            dir: _dir,
            stop,
            task,
        } = running(Duration::ZERO);
        writer.record(completed(0)).await;
        drop(stop);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the writer returns")
            .unwrap();
        // Neither a late login nor a flush waits for a writer that is gone.
        tokio::time::timeout(Duration::from_secs(1), async {
            writer.record(completed(1)).await;
            writer.flush().await;
        })
        .await
        .expect("nobody waits for a stopped writer");
        assert!(
            store
                .external_id_for_sid(ISS, "sid-0")
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn flush_with_nothing_queued_returns_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path()).unwrap());
        // No task runs at all: a flush that had to wait would hang here.
        let (writer, _task) = LoginWriter::new(store.clone(), Duration::from_millis(100), 1000);
        tokio::time::timeout(Duration::from_secs(1), writer.flush())
            .await
            .expect("nothing to wait for");
        assert_eq!(writer.commits(), 0);
    }

    /// The real embedded store, with its login writes failing while `down` is set (what a
    /// PostgreSQL restart does to the writer).
    #[derive(Debug)]
    struct Interrupted {
        store: RedbStore,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl crate::store::LogoutStore for Interrupted {
        fn backend(&self) -> &'static str {
            "embedded"
        }
        async fn prepare(&self) -> Result<(), crate::store::StoreError> {
            Ok(())
        }
        async fn record_login(&self, login: &LoginRecord) -> Result<(), crate::store::StoreError> {
            self.store.record_login(login).await
        }
        async fn record_logins(
            &self,
            logins: &[CompletedLogin],
        ) -> Result<(), crate::store::StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(crate::store::StoreError::Postgres(
                    "connection refused".into(),
                ));
            }
            self.store.record_logins(logins).await
        }
        async fn external_ids_for_sub(
            &self,
            iss: &str,
            sub: &str,
        ) -> Result<Vec<String>, crate::store::StoreError> {
            self.store.external_ids_for_sub(iss, sub).await
        }
        async fn external_id_for_sid(
            &self,
            iss: &str,
            sid: &str,
        ) -> Result<Option<String>, crate::store::StoreError> {
            self.store.external_id_for_sid(iss, sid).await
        }
        async fn remember_jti(
            &self,
            iss: &str,
            jti: &str,
            keep_until: DateTime<Utc>,
        ) -> Result<bool, crate::store::StoreError> {
            self.store.remember_jti(iss, jti, keep_until).await
        }
        async fn accept_logout(
            &self,
            iss: &str,
            jti: &str,
            keep_until: DateTime<Utc>,
            jobs: &[crate::store::RelayJob],
        ) -> Result<bool, crate::store::StoreError> {
            self.store.accept_logout(iss, jti, keep_until, jobs).await
        }
        async fn mark_login_state_used(
            &self,
            digest: [u8; 32],
            now: DateTime<Utc>,
            keep_until: DateTime<Utc>,
        ) -> Result<bool, crate::store::StoreError> {
            self.store
                .mark_login_state_used(digest, now, keep_until)
                .await
        }
        async fn scim_get(
            &self,
            kind: crate::store::ScimKind,
            id: &str,
        ) -> Result<Option<String>, crate::store::StoreError> {
            self.store.scim_get(kind, id).await
        }
        async fn scim_list(
            &self,
            kind: crate::store::ScimKind,
        ) -> Result<Vec<(String, String)>, crate::store::StoreError> {
            self.store.scim_list(kind).await
        }
        async fn scim_apply(
            &self,
            writes: &[crate::store::ScimWrite],
            jobs: &[crate::store::RelayJob],
        ) -> Result<(), crate::store::StoreError> {
            self.store.scim_apply(writes, jobs).await
        }
        async fn enqueue(
            &self,
            job: &crate::store::RelayJob,
        ) -> Result<crate::store::RelayJobId, crate::store::StoreError> {
            self.store.enqueue(job).await
        }
        async fn claim_due(
            &self,
            now: DateTime<Utc>,
            limit: usize,
            lease: Duration,
            holder: &str,
        ) -> Result<Vec<crate::store::ClaimedJob>, crate::store::StoreError> {
            self.store.claim_due(now, limit, lease, holder).await
        }
        async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, crate::store::StoreError> {
            self.store.next_due_at().await
        }
        async fn reschedule(
            &self,
            id: crate::store::RelayJobId,
            next_attempt_at: DateTime<Utc>,
            attempts: u32,
            last_error: &str,
        ) -> Result<(), crate::store::StoreError> {
            self.store
                .reschedule(id, next_attempt_at, attempts, last_error)
                .await
        }
        async fn complete(
            &self,
            id: crate::store::RelayJobId,
        ) -> Result<(), crate::store::StoreError> {
            self.store.complete(id).await
        }
        async fn give_up(
            &self,
            id: crate::store::RelayJobId,
        ) -> Result<(), crate::store::StoreError> {
            self.store.give_up(id).await
        }
        async fn list_pending(
            &self,
        ) -> Result<Vec<(crate::store::RelayJobId, crate::store::RelayJob)>, crate::store::StoreError>
        {
            self.store.list_pending().await
        }
        async fn pending_count(&self) -> Result<u64, crate::store::StoreError> {
            self.store.pending_count().await
        }
        async fn given_up_count(&self) -> Result<u64, crate::store::StoreError> {
            self.store.given_up_count().await
        }
        async fn put_session(
            &self,
            session_id: &str,
            session: &SessionRecord,
        ) -> Result<(), crate::store::StoreError> {
            self.store.put_session(session_id, session).await
        }
        async fn take_session(
            &self,
            session_id: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<SessionRecord>, crate::store::StoreError> {
            self.store.take_session(session_id, now).await
        }
        async fn prune(
            &self,
            now: DateTime<Utc>,
            login_retention: Duration,
        ) -> Result<crate::store::PruneReport, crate::store::StoreError> {
            self.store.prune(now, login_retention).await
        }
    }

    #[tokio::test]
    async fn logins_are_kept_while_the_store_fails_and_written_when_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Interrupted {
            store: RedbStore::open(dir.path()).unwrap(),
            down: std::sync::atomic::AtomicBool::new(true),
        });
        // Room for three: the oldest of four is dropped.
        let (writer, task) = LoginWriter::new(store.clone(), Duration::ZERO, 3);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(task.run(stopped));
        for n in 0..4 {
            // Returns although the store refuses the write: the login goes on.
            writer.record(completed(n)).await;
        }
        writer.flush().await;
        assert_eq!(writer.commits(), 0);
        assert_eq!(writer.backlog(), 3);

        store.down.store(false, Ordering::SeqCst);
        writer.flush().await;
        assert_eq!(writer.backlog(), 0);
        assert_eq!(writer.commits(), 1);
        assert_eq!(store.external_id_for_sid(ISS, "sid-0").await.unwrap(), None);
        for n in 1..4 {
            assert_eq!(
                store
                    .external_id_for_sid(ISS, &format!("sid-{n}"))
                    .await
                    .unwrap(),
                Some(format!("ext-{n}"))
            );
        }
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
