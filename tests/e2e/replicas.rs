//! Several replicas on one PostgreSQL store, end to end: three bridge processes (the shipped
//! binary, configured through the environment) behind a small round-robin proxy, with the real
//! OpenID provider, the in-test Discourse and a throwaway PostgreSQL cluster. Covers a login
//! split across replicas, a replayed callback, cross-replica back-channel logout, a Discourse
//! outage, a replica killed while it holds a relay job, a PostgreSQL restart, and the command
//! that copies an embedded store into PostgreSQL.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use reqwest::StatusCode;
use serde_json::json;
use url::Url;

use crate::support::bridge::{CLIENT_ID, CLIENT_SECRET};
use crate::support::postgres::TestPostgres;
use crate::support::{
    AdminEndpoint, Browser, ForumOptions, IdpClient, IdpOptions, Signer, TestForum, TestIdp,
};

const SESSION_SECRET: &str = "replica-test-session-secret-0123456789abcdef";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Generous bound for anything the test waits for; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// A small HTTP proxy: each request goes to the next upstream in turn (round robin).
struct Proxy {
    base: String,
    shared: Arc<ProxyShared>,
    task: tokio::task::JoinHandle<()>,
}

struct ProxyShared {
    upstreams: Vec<String>,
    next: AtomicUsize,
    /// `(path, upstream index)` of every request forwarded, in order.
    served: Mutex<Vec<(String, usize)>>,
    client: reqwest::Client,
}

impl Proxy {
    async fn start(upstreams: Vec<String>) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(ProxyShared {
            upstreams,
            next: AtomicUsize::new(0),
            served: Mutex::new(Vec::new()),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { base, shared, task }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Which upstream served the last request whose path starts with `prefix`.
    fn served_last(&self, prefix: &str) -> usize {
        self.shared
            .served
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(path, _)| path.starts_with(prefix))
            .map(|(_, upstream)| *upstream)
            .unwrap_or_else(|| panic!("no request to {prefix} went through the proxy"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(proxy): State<Arc<ProxyShared>>, request: Request) -> Response {
    let index = proxy.next.fetch_add(1, Ordering::SeqCst) % proxy.upstreams.len();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    proxy
        .served
        .lock()
        .unwrap()
        .push((request.uri().path().to_owned(), index));
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut outgoing = proxy.client.request(
        parts.method.clone(),
        format!("{}{path}", proxy.upstreams[index]),
    );
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.body(body).send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if name != axum::http::header::CONTENT_LENGTH
                    && name != axum::http::header::TRANSFER_ENCODING
                {
                    response = response.header(name, value);
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).unwrap()
        }
        Err(_) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::empty())
            .unwrap(),
    }
}

/// One bridge process.
struct Replica {
    child: Child,
    base: String,
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no graceful anything.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> String {
    std::env::var("BRIDGE_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_discourse-oidc-bridge").to_owned())
}

/// The environment a replica is configured with, as an operator would set it.
fn replica_env(
    listen: u16,
    public: &str,
    discourse: &str,
    forum: &TestForum,
    idp: &TestIdp,
    store_url: &str,
    data: &std::path::Path,
) -> Vec<(String, String)> {
    [
        ("BRIDGE_SERVER__LISTEN", format!("127.0.0.1:{listen}")),
        ("BRIDGE_SERVER__PUBLIC_URL", public.to_owned()),
        ("BRIDGE_DISCOURSE__URL", discourse.to_owned()),
        ("BRIDGE_DISCOURSE__CONNECT_SECRET", forum.sso_secret()),
        ("BRIDGE_DISCOURSE__API_KEY", forum.api_key()),
        ("BRIDGE_DISCOURSE__API_USERNAME", forum.api_username()),
        ("BRIDGE_OIDC__ISSUER", idp.issuer().to_owned()),
        ("BRIDGE_OIDC__CLIENT_ID", CLIENT_ID.to_owned()),
        ("BRIDGE_OIDC__CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        (
            "BRIDGE_OIDC__SCOPES",
            "openid,email,profile,groups".to_owned(),
        ),
        ("BRIDGE_OIDC__HTTP_TIMEOUT", "2s".to_owned()),
        ("BRIDGE_SESSION__SECRET", SESSION_SECRET.to_owned()),
        ("BRIDGE_STORE__URL", store_url.to_owned()),
        ("BRIDGE_STORE__PATH", data.display().to_string()),
        ("BRIDGE_STORE__RELAY_LEASE", "5s".to_owned()),
        ("BRIDGE_STORE__POLL_INTERVAL", "250ms".to_owned()),
        ("BRIDGE_STORE__CONNECT_TIMEOUT", "2s".to_owned()),
        ("BRIDGE_STORE__QUERY_TIMEOUT", "5s".to_owned()),
        ("BRIDGE_LOG__FORMAT", "json".to_owned()),
        // Three replicas on one host cannot all take the default metrics address.
        ("BRIDGE_SERVER__METRICS_PUBLIC", "true".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn spawn_bridge(args: &[&str], env: &[(String, String)]) -> Child {
    Command::new(binary())
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap()
}

/// Three replicas behind a round-robin proxy, sharing one PostgreSQL database.
struct Cluster {
    proxy: Proxy,
    replicas: Vec<Replica>,
    _data: tempfile::TempDir,
}

impl Cluster {
    async fn start(n: usize, idp: &TestIdp, forum: &TestForum, store_url: &str) -> Cluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let bases: Vec<String> = ports
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .collect();
        let proxy = Proxy::start(bases.clone()).await;
        let data = tempfile::tempdir().unwrap();
        idp.set_client(
            &IdpClient::new(CLIENT_ID, CLIENT_SECRET, &proxy.url("/callback"))
                .backchannel_logout_uri(&proxy.url("/backchannel-logout"))
                .post_logout_redirect_uri(&proxy.url("/logged-out")),
        )
        .await;
        forum.set_connect_url(Url::parse(&proxy.url("/sso")).unwrap());
        let replicas: Vec<Replica> = ports
            .iter()
            .zip(&bases)
            .map(|(port, base)| {
                let env = replica_env(
                    *port,
                    &proxy.base,
                    forum.base_url(),
                    forum,
                    idp,
                    store_url,
                    data.path(),
                );
                Replica {
                    child: spawn_bridge(&["serve"], &env),
                    base: base.clone(),
                }
            })
            .collect();
        for replica in &replicas {
            wait_ready(&replica.base).await;
        }
        Cluster {
            proxy,
            replicas,
            _data: data,
        }
    }
}

/// The test OP with alice, and bob and carol as verified users too.
fn idp_options() -> IdpOptions {
    let mut options = IdpOptions::default();
    for user in ["bob", "carol"] {
        options = options.user(
            user,
            json!({
                "email": format!("{user}@example.test"),
                "email_verified": true,
                "name": user,
                "preferred_username": user,
                "groups": [],
            }),
        );
    }
    options
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let ready = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "{base} never became ready");
}

async fn until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let reached = tokio::time::timeout(PATIENCE, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "timed out waiting for {what}");
}

/// Walks a browser through the forum's login up to the callback URL (not yet requested).
async fn to_callback(forum: &TestForum, browser: &Browser, user: &str) -> Url {
    let to_bridge = browser.get(forum.sso_start_url("/")).await;
    let at_bridge = browser.step(&to_bridge).await;
    let authorize = browser.follow(&at_bridge);
    browser.login_at_idp(&authorize, user).await
}

/// A whole login through the proxy; returns the forum's id for the user.
async fn log_in(forum: &TestForum, browser: &Browser, user: &str) -> u64 {
    let callback = to_callback(forum, browser, user).await;
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    browser.step(&answer).await;
    forum.user_id(user).expect("the forum knows the user")
}

async fn pending_jobs(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM bridge_relay_jobs", &[])
        .await
        .unwrap()
        .get(0)
}

fn logout_token_claims(idp: &TestIdp, sub: &str, jti: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": idp.issuer(),
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "jti": jti,
        "sub": sub,
        "events": { EVENT: {} },
    })
}

async fn post_logout_token(url: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(url)
        .form(&[("logout_token", token)])
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_and_its_logout_may_each_touch_any_replica() {
    let test = "a_login_and_its_logout_may_each_touch_any_replica";
    let Some(pg) = TestPostgres::start(test).await else {
        return;
    };
    let store_url = pg.create_database("replicas").await;
    let idp = TestIdp::start(idp_options()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let cluster = Cluster::start(3, &idp, &forum, &store_url).await;
    let db = pg.connect("replicas").await;

    // /sso on one replica, /callback on the next: the login completes.
    let browser = Browser::new();
    let callback = to_callback(&forum, &browser, "alice").await;
    let copied_cookies = browser.cookie_header(&callback).expect("login cookie");
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    browser.step(&answer).await;
    let alice = forum.user_id("alice").expect("alice logged in");
    let sso_at = cluster.proxy.served_last("/sso");
    let callback_at = cluster.proxy.served_last("/callback");
    assert_ne!(sso_at, callback_at, "the login crossed replicas");
    assert_eq!(forum.logins().len(), 1);

    // The same callback, with the cookie copied, replayed on another replica: refused by the
    // shared used-state check (400), before the IdP is asked again.
    let other = (callback_at + 1) % 3;
    let replay_url = callback
        .as_str()
        .replace(&cluster.proxy.base, &cluster.replicas[other].base);
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(replay_url)
        .header("cookie", copied_cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(forum.logins().len(), 1, "no second login");

    // The OP's back-channel logout reaches a replica that did not record the login.
    let receiver = (callback_at + 2) % 3;
    idp.set_client(
        &IdpClient::new(CLIENT_ID, CLIENT_SECRET, &cluster.proxy.url("/callback"))
            .backchannel_logout_uri(&cluster.replicas[receiver].url("/backchannel-logout")),
    )
    .await;
    let outcomes = idp.backchannel_logout("alice", None).await;
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| o.ok),
        "{outcomes:?}"
    );
    until("the log_out", async || {
        forum.successful_log_outs() == [alice]
    })
    .await;
    until("the job to complete", async || pending_jobs(&db).await == 0).await;
    assert_eq!(
        forum.successful_log_outs(),
        [alice],
        "exactly one log_out for the right user"
    );
    for call in forum.admin_calls() {
        assert_eq!(call.api_key.as_deref(), Some(forum.api_key().as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logouts_during_a_discourse_outage_are_each_delivered_once_after_it() {
    let test = "logouts_during_a_discourse_outage_are_each_delivered_once_after_it";
    let Some(pg) = TestPostgres::start(test).await else {
        return;
    };
    let store_url = pg.create_database("replicas").await;
    let idp = TestIdp::start(idp_options()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let _cluster = Cluster::start(3, &idp, &forum, &store_url).await;
    let db = pg.connect("replicas").await;

    let users = ["alice", "bob", "carol"];
    let mut ids = Vec::new();
    for user in users {
        ids.push(log_in(&forum, &Browser::new(), user).await);
    }
    forum.fail_until_cleared(AdminEndpoint::Any, 503);
    for user in users {
        let outcomes = idp.backchannel_logout(user, None).await;
        assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
    }
    // Every job met the outage at least once (on whichever replica claimed it).
    until("every job to have failed once", async || {
        let failed: i64 = db
            .query_one(
                "SELECT count(*) FROM bridge_relay_jobs WHERE attempts >= 1",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        failed == 3
    })
    .await;
    assert!(forum.successful_log_outs().is_empty());

    forum.clear_failures();
    until("every job to complete", async || {
        pending_jobs(&db).await == 0
    })
    .await;
    let mut delivered = forum.successful_log_outs();
    delivered.sort_unstable();
    ids.sort_unstable();
    assert_eq!(delivered, ids, "each logout delivered exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_a_killed_replica_is_delivered_by_a_survivor() {
    let test = "a_job_held_by_a_killed_replica_is_delivered_by_a_survivor";
    let Some(pg) = TestPostgres::start(test).await else {
        return;
    };
    let store_url = pg.create_database("replicas").await;
    let idp = TestIdp::start(idp_options()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let mut cluster = Cluster::start(3, &idp, &forum, &store_url).await;
    let db = pg.connect("replicas").await;
    let alice = log_in(&forum, &Browser::new(), "alice").await;

    // Discourse stops answering: the replica that claims the job hangs mid-delivery.
    forum.hold_admin_calls(true);
    let outcomes = idp.backchannel_logout("alice", None).await;
    assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
    until("a replica to hold the job mid-delivery", async || {
        forum.held_admin_calls() >= 1
    })
    .await;
    let holder: String = db
        .query_one("SELECT locked_by FROM bridge_relay_jobs", &[])
        .await
        .unwrap()
        .get(0);
    let pid: u32 = holder.split('/').nth(1).unwrap().parse().unwrap();
    let victim = cluster
        .replicas
        .iter()
        .position(|r| r.child.id() == pid)
        .unwrap_or_else(|| panic!("no replica has pid {pid} ({holder})"));
    cluster.replicas[victim].kill();

    // Discourse recovers; the dead holder's lease ends and a survivor delivers.
    forum.hold_admin_calls(false);
    until("the log_out", async || {
        forum.successful_log_outs() == [alice]
    })
    .await;
    until("the job to complete", async || pending_jobs(&db).await == 0).await;
    assert_eq!(forum.successful_log_outs(), [alice]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_postgres_restarts() {
    let test = "nothing_is_lost_while_postgres_restarts";
    let Some(mut pg) = TestPostgres::start(test).await else {
        return;
    };
    let store_url = pg.create_database("replicas").await;
    let idp = TestIdp::start(idp_options()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let cluster = Cluster::start(3, &idp, &forum, &store_url).await;
    let alice = log_in(&forum, &Browser::new(), "alice").await;
    let token = idp
        .sign(
            json!({"typ": "logout+jwt"}),
            logout_token_claims(&idp, "alice", "restart-alice"),
            Signer::Default,
        )
        .await;

    pg.stop();
    // The store is down: not ready, but logins still complete.
    let readiness = reqwest::get(cluster.replicas[0].url("/readyz"))
        .await
        .unwrap();
    assert_eq!(readiness.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = readiness.json().await.unwrap();
    assert_eq!(body["store"], json!(false));
    let bob = log_in(&forum, &Browser::new(), "bob").await;
    // A back-channel logout cannot be made safe: 5xx, so the IdP retries.
    let status = post_logout_token(&cluster.replicas[1].url("/backchannel-logout"), &token).await;
    assert!(status.is_server_error(), "{status}");

    pg.restart().await;
    let db = pg.connect("replicas").await;
    // Bob's login, held in memory during the outage, reaches the database.
    until("the buffered login to be written", async || {
        let rows: i64 = db
            .query_one(
                "SELECT count(*) FROM bridge_logins_by_sub WHERE sub = 'bob'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        rows == 1
    })
    .await;
    for replica in &cluster.replicas {
        wait_ready(&replica.base).await;
    }
    // The IdP's retry is processed in full (the failed attempt did not consume the jti).
    let status = post_logout_token(&cluster.replicas[2].url("/backchannel-logout"), &token).await;
    assert_eq!(status, StatusCode::OK);
    let bob_token = idp
        .sign(
            json!({"typ": "logout+jwt"}),
            logout_token_claims(&idp, "bob", "restart-bob"),
            Signer::Default,
        )
        .await;
    let status =
        post_logout_token(&cluster.replicas[0].url("/backchannel-logout"), &bob_token).await;
    assert_eq!(status, StatusCode::OK);
    until("both log_outs", async || {
        forum.successful_log_outs().len() >= 2
    })
    .await;
    until("the jobs to complete", async || {
        pending_jobs(&db).await == 0
    })
    .await;
    let mut delivered = forum.successful_log_outs();
    delivered.sort_unstable();
    let mut expected = vec![alice, bob];
    expected.sort_unstable();
    assert_eq!(delivered, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_command_moves_an_embedded_store_and_its_pending_jobs() {
    use discourse_oidc_bridge::store::{
        LoginRecord, LogoutStore as _, RedbStore, RelayJob, RelayReason,
    };
    let test = "the_copy_command_moves_an_embedded_store_and_its_pending_jobs";
    let Some(pg) = TestPostgres::start(test).await else {
        return;
    };
    let store_url = pg.create_database("copied").await;
    let idp = TestIdp::start(idp_options()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let carol = forum.seed_user("ext-carol", "carol");

    // A single-replica deployment's embedded store: a login record and a pending logout.
    let data = tempfile::tempdir().unwrap();
    {
        let embedded = RedbStore::open(data.path()).unwrap();
        embedded
            .record_login(&LoginRecord {
                iss: idp.issuer().to_owned(),
                sub: "dave".to_owned(),
                sid: Some("dave-sid".to_owned()),
                external_id: "ext-dave".to_owned(),
                logged_in_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        embedded
            .enqueue(&RelayJob::new(
                "ext-carol",
                RelayReason::BackchannelLogout,
                chrono::Utc::now(),
            ))
            .await
            .unwrap();
    }
    let env = replica_env(
        free_port(),
        "http://127.0.0.1:1",
        forum.base_url(),
        &forum,
        &idp,
        &store_url,
        data.path(),
    );
    // Twice: the second copy adds nothing.
    for _ in 0..2 {
        let status = spawn_bridge(&["copy-store"], &env).wait().unwrap();
        assert!(status.success());
    }
    let db = pg.connect("copied").await;
    assert_eq!(pending_jobs(&db).await, 1);
    // `check --online` connects and reports what it found, changing nothing.
    let checked = Command::new(binary())
        .args(["check", "--online"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{report}");
    assert!(report.contains("store: PostgreSQL"), "{report}");
    assert!(report.contains("schema version 2,"), "{report}");
    assert!(
        !report.contains(&store_url),
        "the URL is not printed: {report}"
    );
    let sid: String = db
        .query_one(
            "SELECT external_id FROM bridge_logins_by_sid WHERE sid = 'dave-sid'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sid, "ext-dave");

    // A replica on PostgreSQL delivers the copied job.
    let cluster = Cluster::start(1, &idp, &forum, &store_url).await;
    until("the copied job's log_out", async || {
        forum.successful_log_outs() == [carol]
    })
    .await;
    until("the job to complete", async || pending_jobs(&db).await == 0).await;
    drop(cluster);
    // Copying again after delivery does not queue the logout a second time.
    let status = spawn_bridge(&["copy-store"], &env).wait().unwrap();
    assert!(status.success());
    assert_eq!(pending_jobs(&db).await, 0);
}
