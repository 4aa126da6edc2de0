//! Corporate networks end to end: the real OP served over HTTPS by a certificate authority the
//! test makes (trusted through `[oidc] ca_file`, or not), client authentication with
//! `private_key_jwt`, `tls_client_auth` and `none` against an OP configured to require each,
//! a forum in a subfolder with the bridge under a path prefix, and a login through a CONNECT
//! proxy with `NO_PROXY` honoured for the forum.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::bridge::{CLIENT_ID, CLIENT_SECRET};
use crate::support::idp::IdpTls;
use crate::support::proxy::ConnectProxy;
use crate::support::tls::TestCa;
use crate::support::{
    AdminEndpoint, Browser, ForumOptions, IdpClient, IdpOptions, TestBridge, TestForum, TestIdp,
    query_param,
};

/// An OP on HTTPS with a certificate from `ca` for 127.0.0.1 and localhost; client
/// certificates are verified against the same CA.
async fn https_idp(ca: &TestCa, host: Option<&str>) -> TestIdp {
    let server = ca.issue("op", &["127.0.0.1", "localhost"]);
    TestIdp::start(IdpOptions {
        tls: Some(IdpTls {
            cert: server.cert_file,
            key: server.key_file,
            client_ca: Some(ca.ca_file.clone()),
        }),
        host: host.map(str::to_owned),
        trust_pem: Some(ca.pem.clone()),
        ..IdpOptions::default()
    })
    .await
}

/// The whole login from the forum's button to the forum's session, returning the final
/// response of the bridge's callback.
async fn full_login(
    forum: &TestForum,
    browser: &Browser,
    issuer: &str,
    callback_prefix: &str,
) -> reqwest::Response {
    let to_bridge = browser.get(forum.sso_start_url("/")).await;
    let at_bridge = browser.step(&to_bridge).await;
    assert_eq!(
        at_bridge.status(),
        StatusCode::FOUND,
        "bridge /sso must 302"
    );
    let authorize = browser.follow(&at_bridge);
    assert!(authorize.as_str().starts_with(issuer), "{authorize}");
    let callback = browser.login_at_idp(&authorize, "alice").await;
    assert!(
        callback.as_str().starts_with(callback_prefix),
        "{callback} under {callback_prefix}"
    );
    browser.get(&callback).await
}

async fn lands_at_forum(forum: &TestForum, browser: &Browser, answer: reqwest::Response) {
    assert_eq!(
        answer.status(),
        StatusCode::FOUND,
        "bridge answered the callback"
    );
    assert!(
        browser
            .follow(&answer)
            .as_str()
            .starts_with(&forum.return_sso_url())
    );
    browser.step(&answer).await;
    assert_eq!(forum.logins().len(), 1, "the forum accepted one login");
}

#[tokio::test]
async fn an_idp_behind_a_private_ca_works_with_ca_file() {
    let ca = TestCa::new("corp-root");
    let idp = https_idp(&ca, None).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start_with_env(
        &idp,
        &forum,
        "",
        &[("BRIDGE_OIDC__CA_FILE", &ca.ca_file.display().to_string())],
    )
    .await;
    let browser = Browser::trusting(Some(&ca.pem));
    let answer = full_login(&forum, &browser, idp.issuer(), &bridge.url("/callback")).await;
    lands_at_forum(&forum, &browser, answer).await;
}

#[tokio::test]
async fn without_ca_file_readiness_names_the_certificate_problem_and_no_login_starts() {
    let ca = TestCa::new("corp-root");
    let idp = https_idp(&ca, None).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start_unready(&idp, &forum).await;

    let client = reqwest::Client::new();
    let mut report = serde_json::Value::Null;
    // Wait for the first discovery attempt to end (an event the report shows), never a fixed time.
    for _ in 0..200 {
        let resp = client.get(bridge.url("/readyz")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        report = resp.json().await.unwrap();
        if report.get("discovery_error").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let problem = report["discovery_error"].as_str().unwrap_or_default();
    assert!(problem.contains("127.0.0.1"), "names the host: {report}");
    assert!(
        problem.contains("UnknownIssuer") && problem.contains("oidc.ca_file"),
        "names the reason and the fix: {report}"
    );
    assert_eq!(report["ready"], false);

    // A login cannot start: the bridge answers with its unavailable page, nothing reaches the
    // IdP or the forum.
    let browser = Browser::trusting(Some(&ca.pem));
    let to_bridge = browser.get(forum.sso_start_url("/")).await;
    let at_bridge = browser.step(&to_bridge).await;
    assert_eq!(at_bridge.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(forum.logins().is_empty());
}

/// Registers `client` (replacing the test bridge's default one) with the bridge's URIs.
fn client_for(bridge: &TestBridge, method: &str) -> IdpClient {
    let mut client = IdpClient::new(CLIENT_ID, CLIENT_SECRET, &bridge.url("/callback"))
        .backchannel_logout_uri(&bridge.url("/backchannel-logout"))
        .post_logout_redirect_uri(&bridge.url("/logged-out"));
    client.token_endpoint_auth_method = method.to_owned();
    client.client_secret = None;
    client
}

fn write_key(dir: &tempfile::TempDir, name: &str, pem: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

/// The public JWK of a P-256 key as the IdP registration needs it, with the `kid` the bridge
/// derives when none is configured: the RFC 7638 thumbprint, computed here independently.
fn public_jwk(pair: &rcgen::KeyPair) -> serde_json::Value {
    use base64::Engine as _;
    use sha2::Digest as _;
    let raw = pair.public_key_raw();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (x, y) = (b64.encode(&raw[1..33]), b64.encode(&raw[33..65]));
    let members = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = b64.encode(sha2::Sha256::digest(members.as_bytes()));
    json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y, "use": "sig", "kid": kid })
}

#[tokio::test]
async fn private_key_jwt_logs_in_and_a_wrong_key_gets_the_idp_error_page() {
    let ca = TestCa::new("corp-root");
    let idp = https_idp(&ca, None).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let keys = tempfile::tempdir().unwrap();
    let registered = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_file = write_key(&keys, "client.pem", &registered.serialize_pem());
    let ca_file = ca.ca_file.display().to_string();
    let env = [
        ("BRIDGE_OIDC__CA_FILE", ca_file.as_str()),
        ("BRIDGE_OIDC__TOKEN_AUTH_METHOD", "private_key_jwt"),
        ("BRIDGE_OIDC__CLIENT_SECRET", ""),
        ("BRIDGE_OIDC__CLIENT_KEY_FILE", key_file.as_str()),
    ];
    let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
    let mut client = client_for(&bridge, "private_key_jwt");
    client.extra.insert(
        "jwks".to_owned(),
        json!({ "keys": [public_jwk(&registered)] }),
    );
    client
        .extra
        .insert("token_endpoint_auth_signing_alg".to_owned(), json!("ES256"));
    idp.set_client(&client).await;
    let browser = Browser::trusting(Some(&ca.pem));
    let answer = full_login(&forum, &browser, idp.issuer(), &bridge.url("/callback")).await;
    lands_at_forum(&forum, &browser, answer).await;
    bridge.stop().await;

    // Another key than the registered one: the OP refuses the assertion (invalid_client) and
    // the user gets the IdP-error page at once.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let wrong_file = write_key(&keys, "wrong.pem", &other.serialize_pem());
    let env = [
        ("BRIDGE_OIDC__CA_FILE", ca_file.as_str()),
        ("BRIDGE_OIDC__TOKEN_AUTH_METHOD", "private_key_jwt"),
        ("BRIDGE_OIDC__CLIENT_SECRET", ""),
        ("BRIDGE_OIDC__CLIENT_KEY_FILE", wrong_file.as_str()),
    ];
    let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
    let mut client = client_for(&bridge, "private_key_jwt");
    client.extra.insert(
        "jwks".to_owned(),
        json!({ "keys": [public_jwk(&registered)] }),
    );
    idp.set_client(&client).await;
    let browser = Browser::trusting(Some(&ca.pem));
    let answer = full_login(&forum, &browser, idp.issuer(), &bridge.url("/callback")).await;
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    let page = answer.text().await.unwrap();
    assert!(page.to_lowercase().contains("identity provider"), "{page}");
    assert_eq!(forum.logins().len(), 1, "nothing more reached the forum");
}

#[tokio::test]
async fn tls_client_auth_logs_in_and_an_unregistered_certificate_is_refused() {
    let ca = TestCa::new("corp-root");
    let idp = https_idp(&ca, None).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let client_cert = ca.issue("bridge-client", &["bridge-client.example"]);
    let other_cert = ca.issue("someone-else", &["someone-else.example"]);
    let ca_file = ca.ca_file.display().to_string();

    for (cert, accepted) in [(&client_cert, true), (&other_cert, false)] {
        let cert_file = cert.cert_file.display().to_string();
        let key_file = cert.key_file.display().to_string();
        let env = [
            ("BRIDGE_OIDC__CA_FILE", ca_file.as_str()),
            ("BRIDGE_OIDC__TOKEN_AUTH_METHOD", "tls_client_auth"),
            ("BRIDGE_OIDC__CLIENT_SECRET", ""),
            ("BRIDGE_OIDC__CLIENT_CERT_FILE", cert_file.as_str()),
            ("BRIDGE_OIDC__CLIENT_KEY_FILE", key_file.as_str()),
        ];
        let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
        let mut client = client_for(&bridge, "tls_client_auth");
        client.extra.insert(
            "tls_client_auth_san_dns".to_owned(),
            json!("bridge-client.example"),
        );
        idp.set_client(&client).await;
        let browser = Browser::trusting(Some(&ca.pem));
        let before = forum.logins().len();
        let answer = full_login(&forum, &browser, idp.issuer(), &bridge.url("/callback")).await;
        if accepted {
            lands_at_forum(&forum, &browser, answer).await;
        } else {
            assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
            assert_eq!(forum.logins().len(), before, "nothing reached the forum");
        }
        bridge.stop().await;
    }
}

#[tokio::test]
async fn tls_client_auth_uses_the_mtls_endpoint_aliases_from_discovery() {
    let ca = TestCa::new("corp-root");
    let server = ca.issue("op", &["127.0.0.1", "localhost"]);
    // Only the alias listener hands the OP a client certificate: a token request sent to the
    // ordinary endpoint would fail client authentication.
    let idp = TestIdp::start(IdpOptions {
        tls: Some(IdpTls {
            cert: server.cert_file,
            key: server.key_file,
            client_ca: Some(ca.ca_file.clone()),
        }),
        mtls_aliases: true,
        trust_pem: Some(ca.pem.clone()),
        ..IdpOptions::default()
    })
    .await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let client_cert = ca.issue("bridge-client", &["bridge-client.example"]);
    let (cert_file, key_file, ca_file) = (
        client_cert.cert_file.display().to_string(),
        client_cert.key_file.display().to_string(),
        ca.ca_file.display().to_string(),
    );
    let env = [
        ("BRIDGE_OIDC__CA_FILE", ca_file.as_str()),
        ("BRIDGE_OIDC__TOKEN_AUTH_METHOD", "tls_client_auth"),
        ("BRIDGE_OIDC__CLIENT_SECRET", ""),
        ("BRIDGE_OIDC__CLIENT_CERT_FILE", cert_file.as_str()),
        ("BRIDGE_OIDC__CLIENT_KEY_FILE", key_file.as_str()),
        ("BRIDGE_OIDC__USERINFO", "true"),
    ];
    let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
    let mut client = client_for(&bridge, "tls_client_auth");
    client.extra.insert(
        "tls_client_auth_san_dns".to_owned(),
        json!("bridge-client.example"),
    );
    idp.set_client(&client).await;
    let browser = Browser::trusting(Some(&ca.pem));
    let answer = full_login(&forum, &browser, idp.issuer(), &bridge.url("/callback")).await;
    lands_at_forum(&forum, &browser, answer).await;
}

#[tokio::test]
async fn a_public_client_logs_in_with_pkce_alone() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let env = [
        ("BRIDGE_OIDC__TOKEN_AUTH_METHOD", "none"),
        ("BRIDGE_OIDC__CLIENT_SECRET", ""),
    ];
    let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
    idp.set_client(&client_for(&bridge, "none")).await;
    let browser = Browser::new();
    let answer = full_login(&forum, &browser, idp.issuer(), &bridge.url("/callback")).await;
    lands_at_forum(&forum, &browser, answer).await;
}

#[tokio::test]
async fn a_subfolder_forum_and_a_prefixed_bridge_log_in_and_out_end_to_end() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions {
        subfolder: Some("/forum".to_owned()),
        ..ForumOptions::default()
    })
    .await;
    assert!(forum.base_url().ends_with("/forum"));
    let bridge = TestBridge::start_with_env(
        &idp,
        &forum,
        "",
        &[("BRIDGE_SERVER__PUBLIC_URL", "{base}/login")],
    )
    .await;
    let public = bridge.url("/login");
    let mut client = IdpClient::new(CLIENT_ID, CLIENT_SECRET, &format!("{public}/callback"))
        .backchannel_logout_uri(&format!("{public}/backchannel-logout"))
        .post_logout_redirect_uri(&format!("{public}/logged-out"));
    client.backchannel_logout_session_required = true;
    idp.set_client(&client).await;
    forum.set_connect_url(url::Url::parse(&format!("{public}/sso")).unwrap());

    let browser = Browser::new();
    let to_bridge = browser.get(forum.sso_start_url("/")).await;
    let at_bridge = browser.step(&to_bridge).await;
    let authorize = browser.follow(&at_bridge);
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some(format!("{public}/callback").as_str())
    );
    let login_cookie = at_bridge
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("bridge_login_"))
        .expect("a login cookie");
    assert!(login_cookie.contains("Path=/login;"), "{login_cookie}");
    let callback = browser.login_at_idp(&authorize, "alice").await;
    assert!(callback.as_str().starts_with(&format!("{public}/callback")));
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    let to_forum = browser.follow(&answer);
    assert_eq!(
        to_forum.path(),
        "/forum/session/sso_login",
        "return_sso_url pinned to the subfolder"
    );
    browser.step(&answer).await;
    let user_id = forum.user_id("alice").expect("logged in at the forum");

    // RP-initiated logout under the prefix; the OP's own back-channel logout then reaches the
    // bridge under the prefix and the relay calls the forum's API inside the subfolder.
    let resp = browser.get(format!("{public}/logout")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let end_session = browser.follow(&resp);
    assert_eq!(
        query_param(&end_session, "post_logout_redirect_uri").as_deref(),
        Some(format!("{public}/logged-out").as_str())
    );
    let back = browser.logout_at_idp(&end_session).await;
    assert!(back.as_str().starts_with(&format!("{public}/logged-out")));
    let page = browser.get(&back).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        forum
            .wait_until(Duration::from_secs(10), |f| f.successful_log_outs()
                == vec![user_id])
            .await,
        "the relay logged the user out through /forum/admin/...: {:?}",
        forum.admin_calls()
    );
    assert!(!forum.admin_calls_to(AdminEndpoint::ByExternal).is_empty());
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Also: `trust_store = "os"` with `SSL_CERT_FILE` naming the test CA (no `ca_file`).
#[tokio::test]
async fn a_login_goes_through_a_connect_proxy_and_no_proxy_hosts_go_direct() {
    let ca = TestCa::new("corp-root");
    // The IdP is reached as "localhost" (through the proxy), the forum as 127.0.0.1 (NO_PROXY).
    let idp = https_idp(&ca, Some("localhost")).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let proxy = ConnectProxy::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let binary = std::env::var("BRIDGE_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_discourse-oidc-bridge").to_owned());
    let child = Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("HTTPS_PROXY", &proxy.url)
        .env("HTTP_PROXY", &proxy.url)
        .env("NO_PROXY", "127.0.0.1")
        .env("BRIDGE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("BRIDGE_SERVER__PUBLIC_URL", &base)
        // Not the default metrics address, which a parallel test may hold.
        .env("BRIDGE_SERVER__METRICS_PUBLIC", "true")
        .env("BRIDGE_DISCOURSE__URL", forum.base_url())
        .env("BRIDGE_DISCOURSE__CONNECT_SECRET", forum.sso_secret())
        .env("BRIDGE_DISCOURSE__API_KEY", forum.api_key())
        .env("BRIDGE_DISCOURSE__API_USERNAME", forum.api_username())
        .env("BRIDGE_OIDC__ISSUER", idp.issuer())
        .env("BRIDGE_OIDC__CLIENT_ID", CLIENT_ID)
        .env("BRIDGE_OIDC__CLIENT_SECRET", CLIENT_SECRET)
        // The operating system's trust store instead of the built-in list, pointed at the
        // test CA the way an operator would point it at a company bundle.
        .env("BRIDGE_SERVER__TRUST_STORE", "os")
        .env("SSL_CERT_FILE", &ca.ca_file)
        .env("BRIDGE_OIDC__SCOPES", "openid email profile groups")
        .env(
            "BRIDGE_SESSION__SECRET",
            crate::support::bridge::SESSION_SECRET,
        )
        .env("BRIDGE_STORE__PATH", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _bridge = Process(child);
    idp.set_client(
        &IdpClient::new(CLIENT_ID, CLIENT_SECRET, &format!("{base}/callback"))
            .backchannel_logout_uri(&format!("{base}/backchannel-logout")),
    )
    .await;
    forum.set_connect_url(url::Url::parse(&format!("{base}/sso")).unwrap());

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut ready = false;
    for _ in 0..400 {
        if let Ok(resp) = client.get(format!("{base}/readyz")).send().await
            && resp.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the bridge became ready through the proxy");

    let browser = Browser::trusting(Some(&ca.pem));
    let answer = full_login(&forum, &browser, idp.issuer(), &format!("{base}/callback")).await;
    lands_at_forum(&forum, &browser, answer).await;
    let user_id = forum.user_id("alice").unwrap();

    // The relay to the forum (127.0.0.1, in NO_PROXY) goes direct: the proxy would refuse a
    // plain-HTTP request, so a delivered log_out proves it did not pass through it.
    let outcomes = idp.backchannel_logout("alice", None).await;
    assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
    assert!(
        forum
            .wait_until(Duration::from_secs(10), |f| f.successful_log_outs()
                == vec![user_id])
            .await,
        "{:?}",
        forum.admin_calls()
    );
    let targets = proxy.targets();
    let idp_port = url::Url::parse(idp.issuer()).unwrap().port().unwrap();
    assert!(!targets.is_empty(), "the IdP calls went through the proxy");
    assert!(
        targets
            .iter()
            .all(|t| *t == format!("localhost:{idp_port}")),
        "only the IdP went through the proxy: {targets:?}"
    );
}
