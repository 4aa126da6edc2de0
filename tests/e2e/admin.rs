//! The admin commands as deprovisioning scripts use them, run as the real binary against the
//! Discourse stand-in: `logout --external-id` (through the durable relay) and `sync --claims`
//! (`POST /admin/users/sync_sso` with a strictly encoded payload), and the `store` commands that
//! list, retry and drop pending logout relay jobs.

use std::process::Command;

use serde_json::json;

use crate::support::{AdminEndpoint, ForumOptions, TestForum};

#[tokio::test]
async fn logout_command_logs_the_user_out_of_discourse() {
    let forum = TestForum::start(ForumOptions::default()).await;
    let user_id = forum.seed_user("employee-42", "ann");
    let store = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let store = store.path().to_owned();
        let forum = TestForumHandle::from(&forum);
        move || forum.run(&store, &["logout", "--external-id", "employee-42"])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&user_id.to_string()));
    assert_eq!(forum.successful_log_outs(), vec![user_id]);
    let lookup = &forum.admin_calls_to(AdminEndpoint::ByExternal)[0];
    assert_eq!(lookup.path, "/u/by-external/employee-42.json");

    // Unknown users are not an error for a deprovisioning script.
    let out = tokio::task::spawn_blocking({
        let store = store.path().to_owned();
        let forum = TestForumHandle::from(&forum);
        move || forum.run(&store, &["logout", "--external-id", "nobody"])
    })
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(forum.successful_log_outs(), vec![user_id]);
}

#[tokio::test]
async fn sync_command_pushes_the_mapped_payload() {
    let forum = TestForum::start(ForumOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("claims.json");
    std::fs::write(
        &claims,
        json!({
            "sub": "employee-7",
            "email": "grace+forum@example.test",
            "email_verified": true,
            "name": "Grace Hopper ~ COBOL",
            "preferred_username": "grace",
        })
        .to_string(),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking({
        let store = dir.path().to_owned();
        let claims = claims.display().to_string();
        let forum = TestForumHandle::from(&forum);
        move || forum.run(&store, &["sync", "--claims", &claims])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let syncs = forum.syncs();
    assert_eq!(syncs.len(), 1, "{:?}", forum.admin_calls());
    assert_eq!(
        syncs[0].get("external_id").map(String::as_str),
        Some("employee-7")
    );
    // `+` and `~` survive: the body is strictly form-encoded, which sync_sso needs.
    assert_eq!(
        syncs[0].get("email").map(String::as_str),
        Some("grace+forum@example.test")
    );
    assert_eq!(
        syncs[0].get("name").map(String::as_str),
        Some("Grace Hopper ~ COBOL")
    );
}

#[tokio::test]
async fn store_commands_list_retry_and_drop_pending_relay_jobs() {
    use discourse_oidc_bridge::store::{LogoutStore, RedbStore, RelayJob, RelayReason};

    let forum = TestForum::start(ForumOptions::default()).await;
    let user_id = forum.seed_user("employee-9", "bea");
    let store = tempfile::tempdir().unwrap();
    // Two jobs waiting for a retry far in the future, as after Discourse was unreachable.
    let (first, second) = {
        let db = RedbStore::open(store.path()).unwrap();
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        let mut ids = Vec::new();
        for external_id in ["employee-9", "employee-10"] {
            let mut job = RelayJob::new(external_id, RelayReason::BackchannelLogout, later);
            job.next_attempt_at = later;
            job.attempts = 3;
            job.last_error = Some("discourse unavailable".to_owned());
            ids.push(db.enqueue(&job).await.unwrap());
        }
        (ids[0], ids[1])
    };
    let run = |args: Vec<String>| {
        let store = store.path().to_owned();
        let forum = TestForumHandle::from(&forum);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            forum.run(&store, &args)
        })
    };
    let args = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();

    let out = run(args(&["store", "list"])).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listing.starts_with("2 pending"), "{listing}");
    assert!(listing.contains(&format!("{first}\temployee-9\tbackchannel_logout")));
    assert!(listing.contains("discourse unavailable"), "{listing}");

    // Retry one now: delivered from the command, the other stays queued.
    let out = run(args(&["store", "retry", &first.to_string()]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(forum.successful_log_outs(), vec![user_id]);

    // An id that is no longer pending is a usage error; dropping the other empties the queue.
    let out = run(args(&["store", "drop", &first.to_string()]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = run(args(&["store", "drop", &second.to_string()]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(args(&["store", "list"])).await.unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listing.starts_with("0 pending logout relay job(s); 1 given up"),
        "{listing}"
    );
}

/// What the blocking command runner needs from the forum (the forum itself stays on the
/// async side).
struct TestForumHandle {
    base_url: String,
    sso_secret: String,
    api_key: String,
    api_username: String,
}

impl From<&TestForum> for TestForumHandle {
    fn from(forum: &TestForum) -> Self {
        Self {
            base_url: forum.base_url().to_owned(),
            sso_secret: forum.sso_secret(),
            api_key: forum.api_key(),
            api_username: forum.api_username(),
        }
    }
}

impl TestForumHandle {
    fn run(&self, store: &std::path::Path, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_discourse-oidc-bridge"))
            .args(args)
            .env_clear()
            .env("BRIDGE_SERVER__PUBLIC_URL", "https://login.example.com")
            .env("BRIDGE_DISCOURSE__URL", &self.base_url)
            .env("BRIDGE_DISCOURSE__CONNECT_SECRET", &self.sso_secret)
            .env("BRIDGE_DISCOURSE__API_KEY", &self.api_key)
            .env("BRIDGE_DISCOURSE__API_USERNAME", &self.api_username)
            .env("BRIDGE_OIDC__ISSUER", "https://idp.example.com")
            .env("BRIDGE_OIDC__CLIENT_ID", "discourse")
            .env("BRIDGE_OIDC__CLIENT_SECRET", "an-example-client-secret")
            .env(
                "BRIDGE_SESSION__SECRET",
                "admin-command-session-secret-0123456789",
            )
            .env("BRIDGE_STORE__PATH", store)
            .output()
            .unwrap()
    }
}
