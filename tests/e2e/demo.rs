//! The `demo` subcommand end to end: its three servers (the real bridge, the built-in
//! development IdP and the stand-in forum) started in-process on free loopback ports, and a
//! headless client that keeps cookies and never follows redirects walking every hop:
//! forum `/session/sso` → bridge `/sso` → IdP `/authorize` → bridge `/callback` → forum
//! `/session/sso_login`.

use std::time::Duration;

use discourse_oidc_bridge::demo::{DEMO_CLIENT_ID, Demo, DemoAddresses, DemoUrls};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{Browser, redirect_target};

/// A demo serving in the background until [`RunningDemo::stop`].
struct RunningDemo {
    urls: DemoUrls,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningDemo {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    async fn start_with(mapping_file: Option<&std::path::Path>) -> Self {
        let demo = Demo::start(DemoAddresses::loopback_any_port(), mapping_file)
            .await
            .expect("demo starts");
        let urls = demo.urls().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(demo.run_until(async {
            let _ = stopped.await;
        }));
        let running = Self { urls, stop, task };
        running.wait_until_ready().await;
        running
    }

    /// Polls the bridge's `/readyz` until discovery at the demo IdP has succeeded.
    async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", self.urls.bridge);
        for _ in 0..200 {
            if let Ok(response) = client.get(&url).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the bridge never became ready");
    }

    /// Stops all three servers and checks they shut down cleanly.
    async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the demo stops within 10 s")
            .expect("the demo task did not panic");
        result.expect("the demo servers stopped without error");
    }
}

/// Where a 302 points, resolved against the request URL.
fn location(response: &reqwest::Response) -> String {
    redirect_target(response).to_string()
}

/// The path a 302 points to on the server that sent it.
fn location_path(response: &reqwest::Response) -> String {
    redirect_target(response).path().to_owned()
}

/// The value of `<input name="request_ref" value="...">` on the IdP's page.
fn request_ref(page: &str) -> String {
    let marker = "name=\"request_ref\" value=\"";
    let start = page.find(marker).expect("the IdP page has a request_ref") + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_owned()
}

/// Walks from the forum's "Log in" to the IdP's page, then submits `choice` there
/// (`("user", login)` or `("cancel", "1")`), and returns the bridge's answer to the callback.
async fn login_at_idp(
    demo: &RunningDemo,
    client: &Browser,
    choice: (&str, &str),
) -> reqwest::Response {
    let to_bridge = location(&client.get(format!("{}/session/sso", demo.urls.forum)).await);
    assert!(
        to_bridge.starts_with(&format!("{}/sso?sso=", demo.urls.bridge)),
        "{to_bridge}"
    );
    let to_idp = location(&client.get(&to_bridge).await);
    assert!(
        to_idp.starts_with(&format!("{}/authorize?", demo.urls.idp)),
        "{to_idp}"
    );
    assert!(to_idp.contains("code_challenge_method=S256"), "{to_idp}");
    let page = client.get(&to_idp).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("Development only"),
        "the IdP page is labelled"
    );
    let request_ref = request_ref(&page);
    let picked = client
        .post_form(
            format!("{}/authorize", demo.urls.idp),
            &[("request_ref", request_ref.as_str()), choice],
        )
        .await;
    let to_callback = location(&picked);
    assert!(
        to_callback.starts_with(&format!("{}/callback?", demo.urls.bridge)),
        "{to_callback}"
    );
    assert!(
        to_callback.contains("&iss="),
        "RFC 9207 iss is sent: {to_callback}"
    );
    client.get(&to_callback).await
}

/// A full login as `user`; returns the forum's `/session/sso_login` URL the bridge sent back.
async fn answer_for(demo: &RunningDemo, client: &Browser, user: &str) -> String {
    let callback = login_at_idp(demo, client, ("user", user)).await;
    let to_forum = location(&callback);
    assert!(
        to_forum.starts_with(&format!("{}/session/sso_login?sso=", demo.urls.forum)),
        "{to_forum}"
    );
    to_forum
}

/// The value the forum page shows for a received field; `None` when it says "not sent".
fn field(page: &str, key: &str) -> Option<String> {
    let marker = format!("<tr><td><code>{key}</code></td><td>");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {key}"))
        + marker.len();
    let value = &page[start..start + page[start..].find("</td>").unwrap()];
    (value != "<em>not sent</em>").then(|| value.to_owned())
}

async fn forum_page(demo: &RunningDemo, client: &Browser) -> String {
    let page = client.get(format!("{}/", demo.urls.forum)).await;
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

#[tokio::test]
async fn a_login_ends_on_the_forum_page_showing_what_discourse_received() {
    let demo = RunningDemo::start().await;
    let client = Browser::new();

    let before = forum_page(&demo, &client).await;
    assert!(
        before.contains("Development only"),
        "the forum page is labelled"
    );
    assert!(!before.contains("Discourse received"));

    let answer = answer_for(&demo, &client, "alice").await;
    let accepted = client.get(&answer).await;
    assert_eq!(location_path(&accepted), "/");

    let page = forum_page(&demo, &client).await;
    assert!(page.contains("Discourse received"), "{page}");
    assert_eq!(
        field(&page, "external_id").as_deref(),
        Some("demo-0001-alice")
    );
    assert_eq!(field(&page, "email").as_deref(), Some("alice@example.com"));
    assert_eq!(field(&page, "name").as_deref(), Some("Alice Admin"));
    // The demo mapping: paths flattened, "staff" renamed, role rules, managed groups.
    assert_eq!(
        field(&page, "add_groups").as_deref(),
        Some("forum_admins,moderation,staff_team")
    );
    assert_eq!(
        field(&page, "remove_groups").as_deref(),
        Some("engineering")
    );
    assert_eq!(field(&page, "admin").as_deref(), Some("true"));
    assert_eq!(field(&page, "moderator").as_deref(), Some("true"));
    assert_eq!(field(&page, "require_activation"), None);
    assert!(page.contains("the demo&#x27;s built-in mapping"), "{page}");

    // Discourse spends the nonce on first use: the same answer again is a 419.
    let replay = client.get(&answer).await;
    assert_eq!(replay.status().as_u16(), 419);
    assert!(replay.text().await.unwrap().contains("timeout_expired"));

    demo.stop().await;
}

#[tokio::test]
async fn the_answer_only_counts_in_the_browser_that_started_the_login() {
    let demo = RunningDemo::start().await;
    let client = Browser::new();
    let answer = answer_for(&demo, &client, "bob").await;

    let elsewhere = Browser::new().get(&answer).await;
    assert_eq!(elsewhere.status().as_u16(), 419);

    // The attempt from elsewhere did not spend the nonce of the browser that owns it.
    let accepted = client.get(&answer).await;
    assert_eq!(location_path(&accepted), "/");
    let page = forum_page(&demo, &client).await;
    assert_eq!(
        field(&page, "external_id").as_deref(),
        Some("demo-0002-bob")
    );
    assert_eq!(field(&page, "add_groups").as_deref(), Some("engineering"));
    assert_eq!(
        field(&page, "remove_groups").as_deref(),
        Some("forum_admins,moderation,staff_team")
    );
    assert_eq!(field(&page, "admin").as_deref(), Some("false"));

    demo.stop().await;
}

#[tokio::test]
async fn a_tampered_answer_is_refused_with_422_and_spends_nothing() {
    let demo = RunningDemo::start().await;
    let client = Browser::new();
    let answer = answer_for(&demo, &client, "dave").await;

    let (base, sig) = answer.rsplit_once("&sig=").unwrap();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    let tampered = format!("{base}&sig={flipped}{}", &sig[1..]);
    let refused = client.get(&tampered).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("signature_error"));

    let missing = client.get(base).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);

    // Signature is checked before the nonce, so the genuine answer still works.
    let accepted = client.get(&answer).await;
    assert_eq!(location_path(&accepted), "/");
    let page = forum_page(&demo, &client).await;
    assert_eq!(
        field(&page, "external_id").as_deref(),
        Some("demo-0004-dave")
    );

    demo.stop().await;
}

#[tokio::test]
async fn an_unverified_email_is_refused_by_the_bridges_default_policy() {
    let demo = RunningDemo::start().await;
    let client = Browser::new();

    let callback = login_at_idp(&demo, &client, ("user", "carol")).await;
    assert_eq!(callback.status(), StatusCode::FORBIDDEN);
    assert!(
        callback.headers().get(LOCATION).is_none(),
        "nothing goes to the forum"
    );
    let page = callback.text().await.unwrap();
    assert!(page.contains("Access denied"), "{page}");

    let forum = forum_page(&demo, &client).await;
    assert!(
        !forum.contains("Discourse received"),
        "the forum received nothing"
    );

    demo.stop().await;
}

#[tokio::test]
async fn cancelling_at_the_idp_ends_on_the_bridges_login_cancelled_page() {
    let demo = RunningDemo::start().await;
    let client = Browser::new();

    let callback = login_at_idp(&demo, &client, ("cancel", "1")).await;
    assert_eq!(callback.status(), StatusCode::FORBIDDEN);
    assert!(callback.text().await.unwrap().contains("Login cancelled"));

    demo.stop().await;
}

#[tokio::test]
async fn the_idp_publishes_discovery_and_keys_and_guards_its_token_endpoint() {
    let demo = RunningDemo::start().await;
    let client = Browser::new();
    let idp = &demo.urls.idp;

    let discovery: serde_json::Value = client
        .get(format!("{idp}/.well-known/openid-configuration"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], idp.as_str());
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        discovery["end_session_endpoint"],
        format!("{idp}/end_session")
    );

    let keys: serde_json::Value = client
        .get(format!("{idp}/jwks"))
        .await
        .json()
        .await
        .unwrap();
    let key = &keys["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert!(key["kid"].as_str().is_some_and(|kid| !kid.is_empty()));
    assert!(key.get("d").is_none(), "no private part is published");

    let wrong_secret = client
        .client()
        .post(format!("{idp}/token"))
        .basic_auth(DEMO_CLIENT_ID, Some("not-the-secret"))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
    let error: serde_json::Value = wrong_secret.json().await.unwrap();
    assert_eq!(error["error"], "invalid_client");

    let foreign_client = client.get(
        format!("{idp}/authorize?client_id=someone-else&redirect_uri=https%3A%2F%2Fevil.example%2F&response_type=code&scope=openid"),
    )
    .await;
    assert_eq!(
        foreign_client.status(),
        StatusCode::BAD_REQUEST,
        "no redirect to an unregistered URI"
    );

    let userinfo = client.get(&format!("{idp}/userinfo")).await;
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);

    demo.stop().await;
}

#[tokio::test]
async fn with_a_config_file_its_mapping_sections_are_used_and_the_rest_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bridge.toml");
    std::fs::write(
        &file,
        r#"
# Sections other than the mapping's are ignored by the demo.
[server]
listen = "0.0.0.0:9"
public_url = "https://login.example.com"

[oidc]
issuer = "https://idp.example.com"

[mapping]
email_verified = "activate"

[groups]
unmatched = "keep"

[access]
allowed_groups = ["engineering"]
contact = "the forum team"
"#,
    )
    .unwrap();
    let demo = RunningDemo::start_with(Some(&file)).await;

    // "activate": the unverified address is sent, with require_activation=true.
    let client = Browser::new();
    let answer = answer_for(&demo, &client, "carol").await;
    assert_eq!(location_path(&client.get(&answer).await), "/");
    let page = forum_page(&demo, &client).await;
    assert_eq!(
        field(&page, "external_id").as_deref(),
        Some("demo-0003-carol")
    );
    assert_eq!(field(&page, "email").as_deref(), Some("carol@example.org"));
    assert_eq!(field(&page, "require_activation").as_deref(), Some("true"));
    assert_eq!(field(&page, "add_groups").as_deref(), Some("engineering"));
    assert!(
        page.contains("bridge.toml"),
        "the page names the mapping's file"
    );

    // allowed_groups: someone in no group is refused by the bridge, and the forum gets nothing.
    let other = Browser::new();
    let refused = login_at_idp(&demo, &other, ("user", "dave")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let page = refused.text().await.unwrap();
    assert!(page.contains("the forum team"), "{page}");

    demo.stop().await;
}
