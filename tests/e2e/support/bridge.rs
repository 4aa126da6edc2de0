//! Starts the real bridge in-process on a free loopback port, wired to a `TestIdp` and a
//! `TestForum`, with a configuration written as TOML like an operator would.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use discourse_oidc_bridge::app::Application;
use discourse_oidc_bridge::clock::Clock;
use discourse_oidc_bridge::config;
use tokio::sync::oneshot;
use url::Url;

use super::forum::TestForum;
use super::idp::{IdpClient, TestIdp};

pub const CLIENT_ID: &str = "bridge";
pub const CLIENT_SECRET: &str = "bridge-client-secret-for-tests-0001";
pub const SESSION_SECRET: &str = "session-secret-for-tests-0123456789abcdef";

/// A running bridge; stops when dropped.
pub struct TestBridge {
    pub base: String,
    pub store_dir: tempfile::TempDir,
    /// How far the bridge's clock runs ahead of the system clock, in milliseconds.
    clock_offset_ms: Arc<AtomicI64>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestBridge {
    /// Starts a bridge for `idp` and `forum`. `extra_toml` is appended to the generated file
    /// (e.g. a `[mapping]` section); `env` are `BRIDGE_*` overrides.
    pub async fn start(idp: &TestIdp, forum: &TestForum, extra_toml: &str) -> TestBridge {
        Self::start_with_env(idp, forum, extra_toml, &[]).await
    }

    /// `env` values may contain `{base}`, replaced by the bridge's root URL (`http://127.0.0.1:PORT`),
    /// e.g. `BRIDGE_SERVER__PUBLIC_URL = "{base}/login"`.
    pub async fn start_with_env(
        idp: &TestIdp,
        forum: &TestForum,
        extra_toml: &str,
        env: &[(&str, &str)],
    ) -> TestBridge {
        let bridge = Self::launch(idp, forum, extra_toml, env, false).await;
        bridge.wait_ready().await;
        bridge
    }

    /// Starts a bridge without waiting for it to become ready (discovery expected to fail).
    pub async fn start_unready(idp: &TestIdp, forum: &TestForum) -> TestBridge {
        Self::launch(idp, forum, "", &[], false).await
    }

    /// Like `start`, but the configuration is a real file (`config_path()`), so the running
    /// bridge can reload it.
    pub async fn start_from_file(idp: &TestIdp, forum: &TestForum, extra_toml: &str) -> TestBridge {
        let bridge = Self::launch(idp, forum, extra_toml, &[], true).await;
        bridge.wait_ready().await;
        bridge
    }

    /// The configuration file of a bridge started with `start_from_file`.
    pub fn config_path(&self) -> std::path::PathBuf {
        self.store_dir.path().join("bridge.toml")
    }

    async fn launch(
        idp: &TestIdp,
        forum: &TestForum,
        extra_toml: &str,
        env: &[(&str, &str)],
        from_file: bool,
    ) -> TestBridge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let store_dir = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{base}"
metrics_public = true

[discourse]
url = "{forum_url}"
connect_secret = "{connect_secret}"
api_key = "{api_key}"
api_username = "{api_username}"

[oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
scopes = ["openid", "email", "profile", "groups"]
http_timeout = "2s"
clock_skew = "30s"

[session]
secret = "{SESSION_SECRET}"

[store]
path = "{store}"

[limits]
request_timeout = "10s"

{extra_toml}
"#,
            forum_url = forum.base_url(),
            connect_secret = forum.sso_secret(),
            api_key = forum.api_key(),
            api_username = forum.api_username(),
            issuer = idp.issuer(),
            store = store_dir.path().display(),
        );
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.replace("{base}", &base)))
            .collect();
        let config = if from_file {
            let path = store_dir.path().join("bridge.toml");
            std::fs::write(&path, &toml).unwrap();
            config::load_from(Some(&path), env)
        } else {
            config::load_from_str(&toml, env)
        }
        .unwrap_or_else(|e| panic!("test bridge config rejected:\n{e}\n{toml}"));
        idp.set_client(
            &IdpClient::new(CLIENT_ID, CLIENT_SECRET, &format!("{base}/callback"))
                .backchannel_logout_uri(&format!("{base}/backchannel-logout"))
                .post_logout_redirect_uri(&format!("{base}/logged-out")),
        )
        .await;
        forum.set_connect_url(Url::parse(&format!("{base}/sso")).unwrap());

        let clock_offset_ms = Arc::new(AtomicI64::new(0));
        let offset = clock_offset_ms.clone();
        let clock = Clock::from_fn(move || {
            chrono::Utc::now() + chrono::Duration::milliseconds(offset.load(Ordering::SeqCst))
        });
        let app = Application::with_clock(config, listener, clock).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestBridge {
            base,
            store_dir,
            clock_offset_ms,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Waits until `/readyz` answers 200 (discovery done).
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bridge never became ready");
    }

    /// Moves the bridge's clock `by` into the future (the time its requests see).
    pub fn advance_clock(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap();
        self.clock_offset_ms.fetch_add(by, Ordering::SeqCst);
    }

    /// Waits until the logout relay has no job left (delivered or given up), as `/readyz`
    /// reports it. A job exists from the moment the request that queued it was answered, so
    /// once this returns, no delivery of anything asked for so far is still to come.
    pub async fn wait_relay_idle(&self) {
        let client = reqwest::Client::new();
        for _ in 0..400 {
            let report: serde_json::Value = client
                .get(self.url("/readyz"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if report["relay_pending"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the logout relay never emptied");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
