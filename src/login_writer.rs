//! Group commit of completed logins into the store: one writer task, one durable transaction
//! per batch (the classic write-ahead "group commit", here over redb).
//!
//! Every login ends with two records (who logged in, for back-channel logout; the browser's
//! session, for `id_token_hint`). Committing them one login at a time costs a disk sync per
//! login, the largest part of a login's CPU. Instead the callback hands its records to
//! [`LoginWriter::record`] and the writer commits:
//! - at once when the store is idle (no extra delay at low login rates);
//! - otherwise together with every other login queued meanwhile, at most `commit_interval` after
//!   the previous commit started (the sync is shared under load).
//!
//! With a non-zero interval the browser does not wait for the commit: a crash (not a graceful
//! stop, which commits first) loses at most the logins of the last interval. A zero interval
//! makes [`LoginWriter::record`] wait for the commit that holds its login. Readers that must see
//! every finished login (back-channel logout, `GET /logout`) call [`LoginWriter::flush`] first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::store::{self, CompletedLogin, LogoutStore};

/// The `written` value after the writer task has returned: nothing more will be written.
const WRITER_GONE: u64 = u64::MAX;

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
    /// Signalled when somebody waits for the queue to be written: skip the interval.
    flush_requested: Notify,
    /// Sequence number of the last login that was written (or given up on); [`WRITER_GONE`]
    /// once the writer task has returned, so that nobody waits for it any more.
    written: watch::Sender<u64>,
    /// Transactions committed so far.
    commits: AtomicU64,
    /// Sequence number somebody waits for (see [`LoginWriter::flush`]).
    flush_through: AtomicU64,
    interval: Duration,
}

#[derive(Debug, Default)]
struct Queue {
    logins: Vec<CompletedLogin>,
    /// Sequence number of the last login queued.
    last_queued: u64,
}

impl LoginWriter {
    /// A writer over `store` that commits at most every `interval` under load.
    pub fn new(store: Arc<dyn LogoutStore>, interval: Duration) -> (Self, LoginWriterTask) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            queued: Notify::new(),
            flush_requested: Notify::new(),
            written: watch::Sender::new(0),
            commits: AtomicU64::new(0),
            flush_through: AtomicU64::new(0),
            interval,
        });
        (
            Self {
                shared: shared.clone(),
            },
            LoginWriterTask { shared, store },
        )
    }

    /// Queues one completed login. With a zero interval, waits until it is durable.
    pub async fn record(&self, login: CompletedLogin) {
        let sequence = {
            let mut queue = lock(&self.shared.queue);
            queue.logins.push(login);
            queue.last_queued += 1;
            queue.last_queued
        };
        self.shared.queued.notify_one();
        if *self.shared.written.borrow() == WRITER_GONE {
            // Only possible while the process stops: the server drains before the writer does.
            tracing::warn!("a login finished after the login writer stopped and is not recorded");
            return;
        }
        if self.shared.interval.is_zero() {
            self.shared.request_flush(sequence);
            self.wait_until_written(sequence).await;
        }
    }

    /// Waits until every login queued before this call has been written.
    pub async fn flush(&self) {
        let target = lock(&self.shared.queue).last_queued;
        if *self.shared.written.borrow() >= target {
            return;
        }
        self.shared.request_flush(target);
        self.wait_until_written(target).await;
    }

    /// Transactions committed so far (each holds one or more logins).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Logins queued and not yet written.
    pub fn backlog(&self) -> usize {
        lock(&self.shared.queue).logins.len()
    }

    async fn wait_until_written(&self, sequence: u64) {
        let mut written = self.shared.written.subscribe();
        // The sender lives in `shared`, which `self` keeps alive: this cannot fail.
        let _ = written.wait_for(|done| *done >= sequence).await;
    }
}

impl Shared {
    /// Asks the writer to write through `sequence` without waiting for the interval.
    fn request_flush(&self, sequence: u64) {
        self.flush_through.fetch_max(sequence, Ordering::SeqCst);
        self.flush_requested.notify_one();
    }

    /// Whether somebody waits for a login that is not written yet.
    fn flush_wanted(&self) -> bool {
        self.flush_through.load(Ordering::SeqCst) > *self.written.borrow()
    }
}

impl LoginWriterTask {
    /// Commits queued logins until `stop` turns true (or its sender is dropped), then commits
    /// what is left, releases every waiter and returns.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut last_commit: Option<Instant> = None;
        'writing: loop {
            tokio::select! {
                () = self.shared.queued.notified() => {}
                _ = stop.wait_for(|stopping| *stopping) => break 'writing,
            }
            if let Some(due) = last_commit.map(|at| at + self.shared.interval) {
                // A wake-up for a flush that an earlier commit already served is ignored.
                while !self.shared.flush_wanted() && Instant::now() < due {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = self.shared.flush_requested.notified() => {}
                        _ = stop.wait_for(|stopping| *stopping) => break 'writing,
                    }
                }
            }
            let started = Instant::now();
            if self.commit_queued().await {
                last_commit = Some(started);
            }
        }
        self.commit_queued().await;
        self.shared.written.send_replace(WRITER_GONE);
    }

    /// Writes everything queued in one transaction. Returns whether there was anything.
    async fn commit_queued(&self) -> bool {
        let (logins, through) = {
            let mut queue = lock(&self.shared.queue);
            (std::mem::take(&mut queue.logins), queue.last_queued)
        };
        if logins.is_empty() {
            return false;
        }
        let count = logins.len();
        let written = store::blocking(&self.store, move |store| store.record_logins(&logins)).await;
        match written {
            Ok(()) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("bridge_store_login_commits_total").increment(1);
                metrics::counter!("bridge_store_logins_recorded_total")
                    .increment(u64::try_from(count).unwrap_or(u64::MAX));
            }
            Err(error) => {
                metrics::counter!("bridge_store_errors_total", "operation" => "record_logins")
                    .increment(1);
                tracing::error!(
                    %error,
                    logins = count,
                    "could not record logins: back-channel logout will not find these sessions"
                );
            }
        }
        self.shared.written.send_replace(through);
        true
    }
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
        let (writer, task) = LoginWriter::new(store.clone(), interval);
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

    /// Waits (up to 10 s) until `sid` is found in the store.
    async fn until_written(store: &RedbStore, sid: &str) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while store.external_id_for_sid(ISS, sid).unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{sid} was never written"));
    }

    #[tokio::test]
    async fn a_login_on_an_idle_store_is_committed_without_waiting_for_the_interval() {
        let run = running(Duration::from_secs(3600));
        let (store, writer) = (&run.store, &run.writer);
        writer.record(completed(1)).await;
        // Well within the hour-long interval: the first login is committed at once.
        until_written(store, "sid-1").await;
        assert_eq!(writer.commits(), 1);
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
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(writer.commits(), 1, "nothing before the interval");
        assert_eq!(writer.backlog(), 20);
        writer.flush().await;
        assert_eq!(writer.commits(), 2, "one commit for twenty");
        assert_eq!(writer.backlog(), 0);
        for n in 0..=20 {
            assert_eq!(
                store
                    .external_ids_for_sub(ISS, &format!("user-{n}"))
                    .unwrap(),
                vec![format!("ext-{n}")]
            );
            let session = store.take_session(&format!("session-{n}"), at(1)).unwrap();
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
        until_written(store, "sid-1").await;
        assert_eq!(writer.commits(), 2);
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
        assert!(store.external_id_for_sid(ISS, "sid-0").unwrap().is_some());
    }

    #[tokio::test]
    async fn flush_with_nothing_queued_returns_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path()).unwrap());
        // No task runs at all: a flush that had to wait would hang here.
        let (writer, _task) = LoginWriter::new(store.clone(), Duration::from_millis(100));
        tokio::time::timeout(Duration::from_secs(1), writer.flush())
            .await
            .expect("nothing to wait for");
        assert_eq!(writer.commits(), 0);
    }
}
