//! One behaviour suite for both store backends: every case below runs against the embedded
//! store (redb in a temporary directory) and against PostgreSQL (a fresh database in a
//! throwaway cluster), with the same body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use discourse_oidc_bridge::store::{
    CompletedLogin, LoginRecord, LogoutStore, PgSettings, PgStore, PruneReport, RedbStore,
    RelayJob, RelayReason, ScimKind, ScimWrite, SessionRecord, login_state_digest,
};

use crate::support::postgres::TestPostgres;

const ISS: &str = "https://idp.example.test";
const LEASE: Duration = Duration::from_secs(60);

type Store = Arc<dyn LogoutStore>;
type Case = fn(Store) -> Pin<Box<dyn Future<Output = ()> + Send>>;

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

fn job(external_id: &str, when: i64) -> RelayJob {
    RelayJob::new(external_id, RelayReason::BackchannelLogout, at(when))
}

async fn logins_are_found_by_sub_and_by_sid(store: Store) {
    store
        .record_login(&login("alice", Some("sid-1"), "ext-a", 10))
        .await
        .unwrap();
    // The mapping changed: the same subject later got another external id.
    store
        .record_login(&login("alice", Some("sid-2"), "ext-b", 20))
        .await
        .unwrap();
    store
        .record_login(&login("bob", None, "ext-bob", 30))
        .await
        .unwrap();
    assert_eq!(
        store.external_ids_for_sub(ISS, "alice").await.unwrap(),
        vec!["ext-a", "ext-b"]
    );
    assert_eq!(
        store.external_id_for_sid(ISS, "sid-2").await.unwrap(),
        Some("ext-b".to_owned())
    );
    assert_eq!(store.external_id_for_sid(ISS, "nope").await.unwrap(), None);
    assert!(
        store
            .external_ids_for_sub("https://other.example", "alice")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn resolve_prefers_sid_then_falls_back_to_sub(store: Store) {
    store
        .record_login(&login("alice", Some("sid-1"), "ext-a", 10))
        .await
        .unwrap();
    store
        .record_login(&login("alice", Some("sid-2"), "ext-b", 20))
        .await
        .unwrap();
    let resolve = async |sub, sid| store.resolve_external_ids(ISS, sub, sid).await.unwrap();
    assert_eq!(resolve(Some("alice"), Some("sid-1")).await, vec!["ext-a"]);
    assert_eq!(resolve(None, Some("sid-2")).await, vec!["ext-b"]);
    assert_eq!(resolve(Some("alice"), None).await, vec!["ext-a", "ext-b"]);
    assert_eq!(
        resolve(Some("alice"), Some("unknown")).await,
        vec!["ext-a", "ext-b"]
    );
    assert!(resolve(None, Some("unknown")).await.is_empty());
    assert!(resolve(Some("carol"), None).await.is_empty());
}

async fn a_batch_of_logins_is_written_whole_and_again_harmlessly(store: Store) {
    let completed = |n: usize, sub: &str| CompletedLogin {
        login: login(
            sub,
            Some(&format!("sid-{n}")),
            &format!("ext-{sub}"),
            n as i64,
        ),
        session_id: format!("session-{n}"),
        session: SessionRecord {
            external_id: format!("ext-{sub}"),
            ..session(at(3600))
        },
    };
    // The same user twice in one batch, as two logins within one commit interval.
    let batch = vec![
        completed(1, "alice"),
        completed(2, "bob"),
        completed(3, "alice"),
    ];
    store.record_logins(&batch).await.unwrap();
    store.record_logins(&batch).await.unwrap();
    store.record_logins(&[]).await.unwrap();
    assert_eq!(
        store.external_ids_for_sub(ISS, "alice").await.unwrap(),
        vec!["ext-alice"]
    );
    for (sid, external_id) in [
        ("sid-1", "ext-alice"),
        ("sid-2", "ext-bob"),
        ("sid-3", "ext-alice"),
    ] {
        assert_eq!(
            store
                .external_id_for_sid(ISS, sid)
                .await
                .unwrap()
                .as_deref(),
            Some(external_id)
        );
    }
    let taken = store.take_session("session-2", at(0)).await.unwrap();
    assert_eq!(taken.unwrap().external_id, "ext-bob");
}

async fn jti_is_new_once_per_issuer(store: Store) {
    assert!(store.remember_jti(ISS, "j1", at(100)).await.unwrap());
    assert!(!store.remember_jti(ISS, "j1", at(100)).await.unwrap());
    assert!(
        store
            .remember_jti("https://other.example", "j1", at(100))
            .await
            .unwrap()
    );
    assert!(store.remember_jti(ISS, "j2", at(100)).await.unwrap());
}

async fn concurrent_remember_jti_admits_exactly_one(store: Store) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.remember_jti(ISS, "same", at(100)).await.unwrap() })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        if task.await.unwrap() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 1);
}

async fn accepting_a_logout_remembers_its_jti_and_queues_its_jobs_together(store: Store) {
    let jobs = [job("ext-a", 0), job("ext-b", 0)];
    assert!(
        store
            .accept_logout(ISS, "j1", at(100), &jobs)
            .await
            .unwrap()
    );
    assert_eq!(store.pending_count().await.unwrap(), 2);
    // A replay queues nothing.
    assert!(
        !store
            .accept_logout(ISS, "j1", at(100), &jobs)
            .await
            .unwrap()
    );
    assert_eq!(store.pending_count().await.unwrap(), 2);
    assert!(!store.remember_jti(ISS, "j1", at(100)).await.unwrap());
    // A token naming nobody is still remembered.
    assert!(store.accept_logout(ISS, "j2", at(100), &[]).await.unwrap());
    assert!(!store.remember_jti(ISS, "j2", at(100)).await.unwrap());
}

async fn a_login_state_is_used_once_until_it_expires(store: Store) {
    let state = login_state_digest("state-1");
    assert!(
        store
            .mark_login_state_used(state, at(0), at(600))
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_login_state_used(state, at(1), at(600))
            .await
            .unwrap()
    );
    assert!(
        store
            .mark_login_state_used(login_state_digest("state-2"), at(1), at(600))
            .await
            .unwrap()
    );
    // Past its lifetime the state could not be valid anyway; it is forgotten.
    assert!(
        store
            .mark_login_state_used(state, at(600), at(1200))
            .await
            .unwrap()
    );
}

async fn jobs_go_through_claim_reschedule_complete_and_give_up(store: Store) {
    let first = store.enqueue(&job("ext-a", 0)).await.unwrap();
    let second = store
        .enqueue(&RelayJob::new("ext-b", RelayReason::AdminCommand, at(5)))
        .await
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(store.pending_count().await.unwrap(), 2);
    assert_eq!(store.next_due_at().await.unwrap(), Some(at(0)));

    let claimed = store.claim_due(at(1), 10, LEASE, "w1").await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, first);
    assert_eq!(claimed[0].job.external_id, "ext-a");
    assert_eq!(claimed[0].job.reason, RelayReason::BackchannelLogout);
    assert!(!claimed[0].taken_over);

    store
        .reschedule(first, at(30), 1, "HTTP 503")
        .await
        .unwrap();
    let claimed = store.claim_due(at(10), 10, LEASE, "w1").await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![second]
    );
    // `second` is leased until 70 s; `first` is due at 30 s.
    assert_eq!(store.next_due_at().await.unwrap(), Some(at(30)));
    let claimed = store.claim_due(at(30), 10, LEASE, "w2").await.unwrap();
    assert_eq!(claimed.len(), 1, "the leased job is not claimed again");
    let rescheduled = &claimed[0].job;
    assert_eq!(claimed[0].id, first);
    assert_eq!(rescheduled.attempts, 1);
    assert_eq!(rescheduled.next_attempt_at, at(30));
    assert_eq!(rescheduled.created_at, at(0));
    assert_eq!(rescheduled.last_error.as_deref(), Some("HTTP 503"));
    assert!(!claimed[0].taken_over, "a rescheduled job was released");

    store.complete(second).await.unwrap();
    store.complete(second).await.unwrap();
    store.give_up(first).await.unwrap();
    store.give_up(first).await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(store.given_up_count().await.unwrap(), 1);
    assert!(
        store
            .claim_due(at(1000), 10, LEASE, "w1")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_due_at().await.unwrap(), None);
    // Rescheduling a job that is gone does not resurrect it.
    store.reschedule(first, at(40), 2, "late").await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 0);
}

async fn pending_jobs_are_listed_earliest_first_leased_or_not(store: Store) {
    assert!(store.list_pending().await.unwrap().is_empty());
    let late = store.enqueue(&job("ext-late", 50)).await.unwrap();
    let early = store
        .enqueue(&RelayJob::new(
            "ext-early",
            RelayReason::AdminCommand,
            at(10),
        ))
        .await
        .unwrap();
    // A leased job is still pending, and listing claims nothing.
    let claimed = store.claim_due(at(10), 1, LEASE, "w1").await.unwrap();
    assert_eq!(claimed[0].id, early);
    store.reschedule(late, at(60), 2, "HTTP 502").await.unwrap();
    let listed = store.list_pending().await.unwrap();
    assert_eq!(
        listed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![early, late]
    );
    assert_eq!(listed[0].1.reason, RelayReason::AdminCommand);
    assert_eq!(listed[1].1.external_id, "ext-late");
    assert_eq!(listed[1].1.attempts, 2);
    assert_eq!(listed[1].1.next_attempt_at, at(60));
    assert_eq!(listed[1].1.created_at, at(50));
    assert_eq!(listed[1].1.last_error.as_deref(), Some("HTTP 502"));
    assert_eq!(store.pending_count().await.unwrap(), 2);
    store.give_up(early).await.unwrap();
    assert_eq!(
        store
            .list_pending()
            .await
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![late]
    );
}

async fn a_lease_keeps_a_job_until_it_ends_and_then_lets_another_worker_take_it(store: Store) {
    let id = store.enqueue(&job("ext-a", 0)).await.unwrap();
    let held = store.claim_due(at(0), 10, LEASE, "dies").await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(
        store
            .claim_due(at(59), 10, LEASE, "other")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_due_at().await.unwrap(), Some(at(60)));
    let taken = store.claim_due(at(60), 10, LEASE, "other").await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, id);
    assert!(taken[0].taken_over);
    assert_eq!(store.pending_count().await.unwrap(), 1);
}

async fn concurrent_claims_never_share_a_job(store: Store) {
    for n in 0..20 {
        store.enqueue(&job(&format!("ext-{n}"), 0)).await.unwrap();
    }
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_due(at(0), 3, LEASE, &format!("w{w}"))
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|c| c.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all.sort_unstable();
    let claimed = all.len();
    all.dedup();
    assert_eq!((claimed, all.len()), (20, 20));
}

async fn sessions_are_taken_once_and_not_after_expiry(store: Store) {
    store.put_session("s1", &session(at(100))).await.unwrap();
    store.put_session("s2", &session(at(100))).await.unwrap();
    assert_eq!(
        store.take_session("s1", at(50)).await.unwrap(),
        Some(session(at(100)))
    );
    assert_eq!(store.take_session("s1", at(50)).await.unwrap(), None);
    assert_eq!(
        store.take_session("s2", at(100)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.take_session("never", at(0)).await.unwrap(), None);
}

async fn prune_drops_only_what_is_past_its_time(store: Store) {
    let day = 86_400;
    store
        .record_login(&login("alice", Some("old-sid"), "ext-old", 0))
        .await
        .unwrap();
    store
        .record_login(&login("alice", Some("new-sid"), "ext-new", 20 * day))
        .await
        .unwrap();
    store
        .record_login(&login("bob", Some("bob-sid"), "ext-bob", 0))
        .await
        .unwrap();
    store.remember_jti(ISS, "expired", at(10)).await.unwrap();
    store.remember_jti(ISS, "live", at(40 * day)).await.unwrap();
    store
        .put_session("expired", &session(at(10)))
        .await
        .unwrap();
    store
        .put_session("live", &session(at(40 * day)))
        .await
        .unwrap();
    store
        .mark_login_state_used(login_state_digest("old"), at(0), at(10))
        .await
        .unwrap();

    let now = at(35 * day);
    let retention = Duration::from_secs(30 * 86_400);
    let report = store.prune(now, retention).await.unwrap();
    assert_eq!(
        report,
        PruneReport {
            // alice's old external id, bob's entry, and two stale sids.
            logins: 4,
            jtis: 1,
            sessions: 1,
            login_states: 1,
        }
    );
    assert_eq!(
        store.external_ids_for_sub(ISS, "alice").await.unwrap(),
        vec!["ext-new"]
    );
    assert!(
        store
            .external_ids_for_sub(ISS, "bob")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.external_id_for_sid(ISS, "old-sid").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .external_id_for_sid(ISS, "new-sid")
            .await
            .unwrap()
            .as_deref(),
        Some("ext-new")
    );
    assert!(
        store
            .remember_jti(ISS, "expired", at(50 * day))
            .await
            .unwrap()
    );
    assert!(!store.remember_jti(ISS, "live", at(50 * day)).await.unwrap());
    assert!(store.take_session("live", now).await.unwrap().is_some());
    assert_eq!(store.prune(now, retention).await.unwrap().sessions, 0);
}

async fn scim_records_are_written_with_their_jobs(store: Store) {
    let write = |kind, id: &str, record: Option<&str>| ScimWrite {
        kind,
        id: id.to_owned(),
        record: record.map(str::to_owned),
    };
    let sync = RelayJob::new("ext-a", RelayReason::ScimSync, at(0))
        .with_payload(r#"{"sso":"c3Nv","sig":"00"}"#);
    store
        .scim_apply(
            &[
                write(ScimKind::User, "u2", Some(r#"{"n":2}"#)),
                write(ScimKind::User, "u1", Some(r#"{"n":1}"#)),
                write(ScimKind::Group, "g1", Some(r#"{"g":1}"#)),
            ],
            std::slice::from_ref(&sync),
        )
        .await
        .unwrap();
    assert_eq!(
        store.scim_list(ScimKind::User).await.unwrap(),
        vec![
            ("u1".to_owned(), r#"{"n":1}"#.to_owned()),
            ("u2".to_owned(), r#"{"n":2}"#.to_owned())
        ]
    );
    assert_eq!(
        store
            .scim_get(ScimKind::Group, "g1")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"g":1}"#)
    );
    assert_eq!(store.scim_get(ScimKind::Group, "u1").await.unwrap(), None);
    let claimed = store.claim_due(at(0), 10, LEASE, "w").await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job, sync, "the payload travels with the job");

    store
        .scim_apply(
            &[
                write(ScimKind::User, "u1", None),
                write(ScimKind::User, "u2", Some(r#"{"n":3}"#)),
            ],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        store.scim_list(ScimKind::User).await.unwrap(),
        vec![("u2".to_owned(), r#"{"n":3}"#.to_owned())]
    );
    assert!(store.scim_list(ScimKind::Account).await.unwrap().is_empty());

    // A newer sync replaces a queued older one; unsuspend replaces a queued suspend; other
    // users' jobs and log-outs stay.
    let queued = |reason, external_id: &str| RelayJob::new(external_id, reason, at(5));
    store
        .scim_apply(
            &[],
            &[
                queued(RelayReason::ScimSync, "ext-b"),
                queued(RelayReason::ScimSuspend, "ext-b"),
                queued(RelayReason::ScimLogOut, "ext-b"),
                queued(RelayReason::ScimSync, "ext-c"),
            ],
        )
        .await
        .unwrap();
    store
        .scim_apply(
            &[],
            &[
                queued(RelayReason::ScimUnsuspend, "ext-b"),
                queued(RelayReason::ScimSync, "ext-b"),
            ],
        )
        .await
        .unwrap();
    let mut pending: Vec<(String, &str)> = store
        .claim_due(at(10), 50, LEASE, "w2")
        .await
        .unwrap()
        .into_iter()
        .map(|claim| (claim.job.external_id, claim.job.reason.as_str()))
        .collect();
    pending.sort();
    assert_eq!(
        pending,
        vec![
            ("ext-b".to_owned(), "scim_log_out"),
            ("ext-b".to_owned(), "scim_sync"),
            ("ext-b".to_owned(), "scim_unsuspend"),
            ("ext-c".to_owned(), "scim_sync"),
        ]
    );
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        [$((stringify!($case), (|store| Box::pin($case(store))) as Case)),*]
    };
}

fn cases() -> [(&'static str, Case); 14] {
    cases![
        logins_are_found_by_sub_and_by_sid,
        resolve_prefers_sid_then_falls_back_to_sub,
        a_batch_of_logins_is_written_whole_and_again_harmlessly,
        jti_is_new_once_per_issuer,
        concurrent_remember_jti_admits_exactly_one,
        accepting_a_logout_remembers_its_jti_and_queues_its_jobs_together,
        a_login_state_is_used_once_until_it_expires,
        jobs_go_through_claim_reschedule_complete_and_give_up,
        pending_jobs_are_listed_earliest_first_leased_or_not,
        a_lease_keeps_a_job_until_it_ends_and_then_lets_another_worker_take_it,
        concurrent_claims_never_share_a_job,
        sessions_are_taken_once_and_not_after_expiry,
        prune_drops_only_what_is_past_its_time,
        scim_records_are_written_with_their_jobs,
    ]
}

async fn run_case(name: &str, case: Case, store: Store) {
    if let Err(error) = tokio::spawn(case(store)).await {
        panic!("store case {name} failed: {error}");
    }
}

pub fn pg_settings(url: String) -> PgSettings {
    PgSettings {
        url: url.into(),
        pool_size: 8,
        connect_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(10),
        ca_file: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_suite_passes_on_the_embedded_store() {
    for (name, case) in cases() {
        let dir = tempfile::tempdir().unwrap();
        let store: Store = Arc::new(RedbStore::open(dir.path()).unwrap());
        run_case(name, case, store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_suite_passes_on_postgres() {
    let Some(pg) = TestPostgres::start("the_store_suite_passes_on_postgres").await else {
        return;
    };
    for (n, (name, case)) in cases().into_iter().enumerate() {
        let url = pg.create_database(&format!("suite_{n}")).await;
        let store: Store = Arc::new(PgStore::connect(&pg_settings(url)).await.unwrap());
        run_case(name, case, store).await;
    }
}

/// What a store holds outlives the handle: a second handle (a restarted replica) sees it.
async fn reopen_check(first: Store, second: impl AsyncFnOnce() -> Store) {
    first
        .record_login(&login("alice", Some("sid-1"), "ext-a", 10))
        .await
        .unwrap();
    assert!(first.remember_jti(ISS, "j1", at(100)).await.unwrap());
    first.put_session("s1", &session(at(100))).await.unwrap();
    let id = first.enqueue(&job("ext-a", 0)).await.unwrap();
    let other = first.enqueue(&job("ext-b", 0)).await.unwrap();
    first.give_up(other).await.unwrap();
    drop(first);

    let store = second().await;
    assert_eq!(
        store.external_ids_for_sub(ISS, "alice").await.unwrap(),
        vec!["ext-a"]
    );
    assert!(!store.remember_jti(ISS, "j1", at(100)).await.unwrap());
    assert_eq!(
        store.take_session("s1", at(0)).await.unwrap(),
        Some(session(at(100)))
    );
    let due = store.claim_due(at(0), 10, LEASE, "w").await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, id);
    assert_eq!(store.given_up_count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_reopen_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    reopen_check(Arc::new(RedbStore::open(&path).unwrap()), async || {
        Arc::new(RedbStore::open(&path).unwrap()) as Store
    })
    .await;

    let Some(pg) = TestPostgres::start("everything_survives_a_reopen_on_both_backends").await
    else {
        return;
    };
    let url = pg.create_database("reopen").await;
    let first = Arc::new(PgStore::connect(&pg_settings(url.clone())).await.unwrap());
    reopen_check(first, async || {
        Arc::new(PgStore::connect(&pg_settings(url)).await.unwrap()) as Store
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused_clearly() {
    let Some(pg) = TestPostgres::start("a_schema_newer_than_the_binary_is_refused_clearly").await
    else {
        return;
    };
    let url = pg.create_database("newer").await;
    PgStore::connect(&pg_settings(url.clone())).await.unwrap();
    // A later bridge applied a migration this one does not have.
    let client = pg.connect("newer").await;
    client
        .batch_execute(
            "INSERT INTO bridge_schema_history (version, name, applied_on, checksum) \
             VALUES (999, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
        )
        .await
        .unwrap();
    let error = PgStore::connect(&pg_settings(url)).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("version 999"), "{message}");
    assert!(message.contains("newer"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(pg) = TestPostgres::start("replicas_starting_together_migrate_once").await else {
        return;
    };
    let url = pg.create_database("together").await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&pg_settings(url)).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let client = pg.connect("together").await;
    let rows = client
        .query("SELECT version FROM bridge_schema_history", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.len() as u32,
        discourse_oidc_bridge::store::postgres::known_schema_version()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_verifies_the_server_against_the_ca_file() {
    let test = "tls_to_postgres_verifies_the_server_against_the_ca_file";
    let Some((pg, ca)) = TestPostgres::start_with_tls(test).await else {
        return;
    };
    let plain = pg.create_database("tls").await;
    let with = |mode: &str| plain.replace("sslmode=disable", &format!("sslmode={mode}"));

    // verify-full with the private CA: connects, host name (127.0.0.1) checked.
    let verified = PgStore::connect(&PgSettings {
        ca_file: Some(ca.clone()),
        ..pg_settings(with("verify-full"))
    })
    .await
    .unwrap();
    assert_eq!(verified.pending_count().await.unwrap(), 0);

    // verify-full against the public roots: the private CA is unknown, so no connection.
    let refused = PgStore::connect(&pg_settings(with("verify-full"))).await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA is refused"
    );

    // require: encrypted without identifying the server (libpq's meaning).
    let encrypted = PgStore::connect(&pg_settings(with("require")))
        .await
        .unwrap();
    assert_eq!(encrypted.pending_count().await.unwrap(), 0);

    // The sessions really are encrypted.
    let client = pg.connect("tls").await;
    let encrypted_sessions: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND datname = 'tls'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted_sessions >= 2, "{encrypted_sessions}");
}
