//! The shipped binary run the way the container runs it: as an unprivileged user, configured
//! only through the documented environment variables and a secret file, with the IdP coming up
//! after the bridge. Checks health, readiness before and after discovery, a login, metrics,
//! request ids and that forwarded headers from an untrusted address are ignored.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use url::Url;

use crate::support::bridge::{CLIENT_ID, CLIENT_SECRET};
use crate::support::{Browser, ForumOptions, IdpClient, IdpOptions, TestForum, TestIdp};

/// The unprivileged uid/gid the container image uses.
const NONROOT: &str = "65532";

struct Bridge(Child);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[tokio::test]
async fn the_binary_runs_unprivileged_from_documented_environment_only() {
    let forum = TestForum::start(ForumOptions::default()).await;
    let idp_port = free_port();
    let port = free_port();
    let metrics_port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let secret_file = dir.path().join("connect_secret");
    std::fs::write(&secret_file, format!("{}\n", forum.sso_secret())).unwrap();
    for path in [dir.path(), data.as_path(), secret_file.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }

    // CI points this at the release binary the Dockerfile ships; locally the test build's.
    let binary = std::env::var("BRIDGE_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_discourse-oidc-bridge").to_owned());
    // Run a copy from the (world-readable) temp dir, so the test does not depend on whether the
    // checkout's own path is reachable for the unprivileged user.
    let installed = dir.path().join("discourse-oidc-bridge");
    std::fs::copy(&binary, &installed).unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = installed.to_str().unwrap();
    let mut command = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NONROOT}"),
            &format!("--regid={NONROOT}"),
            "--clear-groups",
            binary,
        ]);
        c
    } else {
        Command::new(binary)
    };
    let env = [
        ("BRIDGE_SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("BRIDGE_SERVER__PUBLIC_URL", base.clone()),
        // Metrics have their own listener by default; this one is free.
        (
            "BRIDGE_SERVER__METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        ),
        ("BRIDGE_DISCOURSE__URL", forum.base_url().to_owned()),
        (
            "BRIDGE_DISCOURSE__CONNECT_SECRET_FILE",
            secret_file.display().to_string(),
        ),
        (
            "BRIDGE_OIDC__ISSUER",
            format!("http://127.0.0.1:{idp_port}"),
        ),
        ("BRIDGE_OIDC__CLIENT_ID", CLIENT_ID.to_owned()),
        ("BRIDGE_OIDC__CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        (
            "BRIDGE_OIDC__SCOPES",
            "openid,email,profile,groups".to_owned(),
        ),
        (
            "BRIDGE_SESSION__SECRET",
            "binary-test-session-secret-0123456789abcdef".to_owned(),
        ),
        ("BRIDGE_STORE__PATH", data.display().to_string()),
        ("BRIDGE_LOG__FORMAT", "json".to_owned()),
    ];
    command
        .arg("serve")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    let _bridge = Bridge(command.spawn().unwrap());
    let client = reqwest::Client::new();

    // Alive at once, not ready while the IdP is down.
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            healthy = r.status().is_success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "/healthz answers");
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let login_too_early = client.get(format!("{base}/sso")).send().await.unwrap();
    assert!(
        login_too_early.status().is_client_error() || login_too_early.status().is_server_error()
    );

    // The IdP comes up; discovery retries with backoff and the bridge turns ready.
    let idp = TestIdp::start(IdpOptions {
        port: idp_port,
        ..IdpOptions::default()
    })
    .await;
    idp.set_client(
        &IdpClient::new(CLIENT_ID, CLIENT_SECRET, &format!("{base}/callback"))
            .backchannel_logout_uri(&format!("{base}/backchannel-logout")),
    )
    .await;
    forum.set_connect_url(Url::parse(&format!("{base}/sso")).unwrap());
    let mut became_ready = false;
    for _ in 0..150 {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status().is_success() {
            became_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(became_ready, "/readyz turns 200 after discovery");

    // A login through the unprivileged binary (its store lives in the writable volume).
    let browser = Browser::new();
    let to_bridge = browser.get(forum.sso_start_url("/")).await;
    let at_bridge = browser.step(&to_bridge).await;
    let authorize = browser.follow(&at_bridge);
    let callback = browser.login_at_idp(&authorize, "alice").await;
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    browser.step(&answer).await;
    assert_eq!(forum.logins().len(), 1);
    assert!(
        data.join("bridge.redb").exists(),
        "the store is in the data volume"
    );

    let public = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(
        public.status(),
        StatusCode::NOT_FOUND,
        "not public by default"
    );
    let metrics = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("bridge_logins_completed_total 1"), "{text}");
    assert!(
        text.contains("bridge_idp_request_duration_seconds"),
        "{text}"
    );

    let traced = client
        .get(format!("{base}/healthz"))
        .header("x-request-id", "ops-check-1")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.headers()["x-request-id"], "ops-check-1");

    // No trusted proxies are configured: a spoofed X-Forwarded-For neither changes the public
    // URL the bridge hands out nor the client the rate limiter sees.
    let spoofed = browser
        .client()
        .get(forum.sso_start_url("/"))
        .send()
        .await
        .unwrap();
    let to_sso = crate::support::redirect_target(&spoofed);
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(to_sso)
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "203.0.113.66")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let authorize = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let redirect_uri = crate::support::query_param(&authorize, "redirect_uri").unwrap();
    assert_eq!(redirect_uri, format!("{base}/callback"));
}
