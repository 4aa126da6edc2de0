//! Criterion benchmark of what recording one login costs the bridge's store (redb on the local
//! disk), in CPU time of the calling thread (kernel time of `fdatasync` included, time waiting
//! for the disk not): the group commit the login writer does (`record_logins`, one login alone
//! and 30 together), the two write transactions per login the callback used to make in redb's
//! multi-writer mode, and the same records written in one transaction, in multi-writer and
//! in the default exclusive-writer mode (with and without syncing). The latter are what the
//! store could do instead; they use the store's table layout and JSON values, written here
//! directly with redb.
//!
//! Run with `cargo bench --bench store`. The files go to a temporary directory; set `TMPDIR` to
//! measure another disk.

// Benchmark set-up fails loudly on purpose: a half-built fixture would measure nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/cpu_time.rs"]
mod cpu_time;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main};
use discourse_oidc_bridge::store::{CompletedLogin, LoginRecord, RedbStore, SessionRecord};
use redb::{Builder, ConcurrencyMode, Database, Durability, ReadableTable, TableDefinition};
use serde_json::json;

use cpu_time::{CpuCriterion, cpu_criterion, cpu_group};

const ISSUER: &str = "https://sso.example.com/realms/acme";

/// The store's tables, as `src/store/redb.rs` defines them.
const LOGINS_BY_SUB: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("logins_by_sub");
const LOGINS_BY_SID: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("logins_by_sid");
const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");

/// One login's records: a user among a few hundred, a new IdP session, a new bridge session
/// holding a Keycloak-sized ID token (about 1.2 KB).
fn records(n: u64, now: DateTime<Utc>) -> (String, LoginRecord, SessionRecord) {
    let sub = format!("f4c3b2a1-0d9e-4c8b-a7f6-{:012}", n % 500);
    let sid = format!("0c3e6b1f-5a7d-4e2b-9f8a-{n:012}");
    let login = LoginRecord {
        iss: ISSUER.to_owned(),
        sub: sub.clone(),
        sid: Some(sid.clone()),
        external_id: sub.clone(),
        logged_in_at: now,
    };
    let session = SessionRecord {
        id_token: "e".repeat(1200),
        iss: ISSUER.to_owned(),
        sub: sub.clone(),
        sid: Some(sid),
        external_id: sub,
        expires_at: now + chrono::Duration::days(30),
    };
    (hex::encode(n.to_be_bytes()), login, session)
}

/// The same records written in one transaction, the way the store writes each of them.
fn write_in_one_transaction(
    db: &Database,
    durability: Durability,
    session_id: &str,
    login: &LoginRecord,
    session: &SessionRecord,
) {
    let mut txn = db.begin_write().unwrap();
    txn.set_durability(durability).unwrap();
    {
        let mut by_sub = txn.open_table(LOGINS_BY_SUB).unwrap();
        let key = (login.iss.as_str(), login.sub.as_str());
        let mut ids: BTreeMap<String, i64> = match by_sub.get(key).unwrap() {
            Some(value) => serde_json::from_slice(value.value()).unwrap(),
            None => BTreeMap::new(),
        };
        ids.insert(
            login.external_id.clone(),
            login.logged_in_at.timestamp_millis(),
        );
        by_sub
            .insert(key, serde_json::to_vec(&ids).unwrap().as_slice())
            .unwrap();
        let mut by_sid = txn.open_table(LOGINS_BY_SID).unwrap();
        let entry = json!({
            "external_id": login.external_id,
            "logged_in_at": login.logged_in_at.timestamp_millis(),
        });
        by_sid
            .insert(
                (login.iss.as_str(), login.sid.as_deref().unwrap_or_default()),
                serde_json::to_vec(&entry).unwrap().as_slice(),
            )
            .unwrap();
        txn.open_table(SESSIONS)
            .unwrap()
            .insert(session_id, serde_json::to_vec(session).unwrap().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

fn open_raw(dir: &Path, mode: ConcurrencyMode) -> Database {
    let db = Builder::new()
        .set_cache_size(16 * 1024 * 1024)
        .set_concurrency_mode(mode)
        .create(dir.join("bench.redb"))
        .unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(LOGINS_BY_SUB).unwrap();
    txn.open_table(LOGINS_BY_SID).unwrap();
    txn.open_table(SESSIONS).unwrap();
    txn.commit().unwrap();
    db
}

fn bench_store(c: &mut CpuCriterion) {
    let now = Utc::now();
    let mut group = cpu_group(c, "store_one_login");

    let dir = work_dir();
    let store = RedbStore::open(dir.path()).unwrap();
    let mut n = 0u64;
    group.bench_function("bridge_store_two_transactions_multi_writer", |b| {
        b.iter(|| {
            n += 1;
            let (id, login, session) = records(n, now);
            store
                .record_login_and_session_blocking(&login, &id, &session)
                .unwrap();
        })
    });

    // What the login writer does now: every login finished in one `commit_interval` goes into
    // one transaction (`record_logins`). One login alone (an idle bridge), and a batch of 30
    // (about 300 logins/s at the default 100 ms); divide the batch's time by 30 for one login.
    for (name, batch) in [
        ("bridge_record_logins_batch_of_1", 1u64),
        ("bridge_record_logins_batch_of_30", 30u64),
    ] {
        let dir = work_dir();
        let store = RedbStore::open(dir.path()).unwrap();
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let logins: Vec<CompletedLogin> = (0..batch)
                    .map(|_| {
                        n += 1;
                        let (session_id, login, session) = records(n, now);
                        CompletedLogin {
                            login,
                            session_id,
                            session,
                        }
                    })
                    .collect();
                store.record_logins_blocking(&logins).unwrap();
            })
        });
    }

    // The last one does not sync: it shows how much of the cost is the `fdatasync`.
    for (name, mode, durability) in [
        (
            "one_transaction_multi_writer",
            ConcurrencyMode::MultiWriter,
            Durability::Immediate,
        ),
        (
            "one_transaction_exclusive_writer",
            ConcurrencyMode::ExclusiveWriter,
            Durability::Immediate,
        ),
        (
            "one_transaction_exclusive_writer_without_sync",
            ConcurrencyMode::ExclusiveWriter,
            Durability::None,
        ),
    ] {
        let dir = work_dir();
        let db = open_raw(dir.path(), mode);
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let (id, login, session) = records(n, now);
                write_in_one_transaction(&db, durability, &id, &login, &session);
            })
        });
    }
    group.finish();
}

criterion_group!(
    name = benches;
    config = cpu_criterion();
    targets = bench_store
);
criterion_main!(benches);

/// A fresh directory for one store, removed when dropped.
fn work_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("store-bench-")
        .tempdir()
        .expect("temporary directory")
}
