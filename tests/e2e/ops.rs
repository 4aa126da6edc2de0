//! Operations end to end: rate limits keyed by the real client address (forwarded headers only
//! from trusted proxies), request ids, readiness and metrics, and a scan of the bridge's logs
//! for every secret and token a full login and logout handled.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::StatusCode;

use crate::support::bridge::{CLIENT_SECRET, SESSION_SECRET};
use crate::support::{
    Browser, ForumOptions, IdpOptions, TestBridge, TestForum, TestIdp, query_param,
};

async fn sso_status(bridge: &TestBridge, forwarded_for: Option<&str>) -> StatusCode {
    let mut request = reqwest::Client::new().get(bridge.url("/sso?sso=x&sig=y"));
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn rate_limits_key_on_the_client_and_ignore_untrusted_forwarded_headers() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let env = [("BRIDGE_LIMITS__LOGIN_PER_MINUTE", "3")];
    let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
    // A client rotating X-Forwarded-For values is still one client when it is not a proxy.
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(sso_status(&bridge, Some(&format!("198.51.100.{i}"))).await);
    }
    assert_eq!(&statuses[..3], &[StatusCode::BAD_REQUEST; 3]);
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS);
    drop(bridge);

    // Behind a trusted proxy (loopback here) each forwarded client has its own budget.
    let env = [
        ("BRIDGE_LIMITS__LOGIN_PER_MINUTE", "3"),
        ("BRIDGE_SERVER__TRUSTED_PROXIES", "127.0.0.0/8"),
    ];
    let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
    for i in 0..5 {
        let status = sso_status(&bridge, Some(&format!("198.51.100.{i}"))).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "client {i} has its own budget"
        );
    }
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_returned() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start(&idp, &forum, "").await;
    let client = reqwest::Client::new();
    let given = client
        .get(bridge.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
    let forged = client
        .get(bridge.url("/healthz"))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    let made = forged.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 24, "a fresh id replaces an unsafe one: {made}");

    let page = client.get(bridge.url("/sso")).send().await.unwrap();
    let id = page.headers()["x-request-id"].to_str().unwrap().to_owned();
    for header in [
        "content-security-policy",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(page.headers().contains_key(header), "{header}");
    }
    assert!(
        page.text().await.unwrap().contains(&id),
        "the error page shows the request id"
    );

    let metrics = client.get(bridge.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("bridge_request_errors_total"), "{text}");
}

/// Every log line of this test binary, as the operator's collector would receive it.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter("discourse_oidc_bridge=debug,info")
            .with_writer(move || SharedWriter(sink.clone()))
            .try_init();
        buffer
    })
    .clone()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_of_a_full_login_and_logout_hold_no_secret_or_token() {
    let logs = captured_logs();
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let _bridge = TestBridge::start(&idp, &forum, "").await;
    let browser = Browser::new();

    let to_bridge = browser.get(forum.sso_start_url("/")).await;
    let sso_url = browser.follow(&to_bridge);
    let at_bridge = browser.get(&sso_url).await;
    let authorize = browser.follow(&at_bridge);
    let callback = browser.login_at_idp(&authorize, "alice").await;
    let answer = browser.get(&callback).await;
    let to_forum = browser.follow(&answer);
    browser.get(&to_forum).await;
    assert_eq!(forum.logins().len(), 1);
    let outcomes = idp.backchannel_logout("alice", None).await;
    assert!(outcomes.iter().all(|o| o.ok));
    assert!(
        forum
            .wait_until(std::time::Duration::from_secs(10), |f| f
                .successful_log_outs()
                .len()
                == 1)
            .await
    );

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("login completed"),
        "the login was logged at all"
    );
    let mut secrets: Vec<(&str, String)> = vec![
        ("client secret", CLIENT_SECRET.to_owned()),
        ("session secret", SESSION_SECRET.to_owned()),
        ("connect secret", forum.sso_secret()),
        ("api key", forum.api_key()),
    ];
    for (what, url, param) in [
        ("request sso", &sso_url, "sso"),
        ("request sig", &sso_url, "sig"),
        ("state", &callback, "state"),
        ("code", &callback, "code"),
        ("nonce", &authorize, "nonce"),
        ("code challenge", &authorize, "code_challenge"),
        ("answer sso", &to_forum, "sso"),
        ("answer sig", &to_forum, "sig"),
    ] {
        secrets.push((what, query_param(url, param).unwrap()));
    }
    for (what, value) in secrets {
        assert!(!text.contains(&value), "the {what} appears in the logs");
    }
    assert!(
        !text.contains("eyJ"),
        "a JWT (ID, access or logout token) appears in the logs"
    );
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let env = [
        ("BRIDGE_SERVER__METRICS_LISTEN", address.as_str()),
        ("BRIDGE_SERVER__METRICS_PUBLIC", "false"),
    ];
    let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
    let client = reqwest::Client::new();
    let public = client.get(bridge.url("/metrics")).send().await.unwrap();
    assert_eq!(
        public.status(),
        StatusCode::NOT_FOUND,
        "not on the public listener"
    );
    let private = client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), StatusCode::OK);
    assert!(private.text().await.unwrap().contains("bridge_build_info"));
}

/// A reload applies [mapping], [groups] and [access] and nothing else: `/readyz`'s identity
/// follows what is in force, not the file, and a secret never enters it.
#[tokio::test]
async fn a_reload_changes_the_identity_only_for_what_it_applies() {
    use discourse_oidc_bridge::app::Application;
    use discourse_oidc_bridge::config::load_from;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let base = format!(
        r#"
[server]
public_url = "https://login.example.com"
[discourse]
url = "https://forum.example.com"
connect_secret = "reload-test-connect-secret-0123"
[oidc]
issuer = "https://idp.example.com"
client_id = "bridge"
client_secret = "reload-test-client-secret-0123"
[session]
secret = "{SESSION_SECRET}"
[store]
path = "{}"
"#,
        dir.path().join("data").display()
    );
    std::fs::write(&path, &base).unwrap();
    let config = load_from(Some(&path), Vec::new()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::with_listener(config, listener).unwrap();
    let state = app.state();
    let started = state.readiness().await.config_identity;
    assert_eq!(
        started,
        load_from(Some(&path), Vec::new())
            .unwrap()
            .source
            .identity()
    );

    // Only restart keys (a limit, a secret) changed: applied nothing, identity unchanged.
    let restart_only = format!("{base}[limits]\nlogin_per_minute = 7\n").replace(
        "reload-test-client-secret-0123",
        "another-client-secret-4567",
    );
    std::fs::write(&path, &restart_only).unwrap();
    assert!(state.mapping.reload());
    assert_eq!(state.readiness().await.config_identity, started);

    // A live key changed: the identity is that of the running settings plus the new rules,
    // which is the file's identity once the restart keys are back as they started.
    let live = format!("{base}[access]\ncontact = \"it-help@example.com\"\n");
    std::fs::write(&path, format!("{live}[limits]\nlogin_per_minute = 7\n")).unwrap();
    assert!(state.mapping.reload());
    let reloaded = state.readiness().await.config_identity;
    assert_ne!(reloaded, started);
    std::fs::write(&path, &live).unwrap();
    assert_eq!(
        reloaded,
        load_from(Some(&path), Vec::new())
            .unwrap()
            .source
            .identity()
    );
}
