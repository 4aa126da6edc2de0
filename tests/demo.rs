//! The `demo` subcommand end to end: its three servers (the real bridge, the built-in
//! development IdP and the stand-in forum) started in-process on free loopback ports, and a
//! headless client that keeps cookies and never follows redirects walking every hop:
//! forum `/session/sso` → bridge `/sso` → IdP `/authorize` → bridge `/callback` → forum
//! `/session/sso_login`.

// Test helpers: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use discourse_oidc_bridge::demo::{DEMO_CLIENT_ID, Demo, DemoAddresses, DemoUrls};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

/// A headless browser: one cookie jar, redirects never followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "expected a 302 from {}",
        response.url()
    );
    response
        .headers()
        .get(LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned()
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client.get(url).send().await.unwrap()
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
    client: &reqwest::Client,
    choice: (&str, &str),
) -> reqwest::Response {
    let to_bridge = location(&get(client, &format!("{}/session/sso", demo.urls.forum)).await);
    assert!(
        to_bridge.starts_with(&format!("{}/sso?sso=", demo.urls.bridge)),
        "{to_bridge}"
    );
    let to_idp = location(&get(client, &to_bridge).await);
    assert!(
        to_idp.starts_with(&format!("{}/authorize?", demo.urls.idp)),
        "{to_idp}"
    );
    assert!(to_idp.contains("code_challenge_method=S256"), "{to_idp}");
    let page = get(client, &to_idp).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("Development only"),
        "the IdP page is labelled"
    );
    let form = [
        ("request_ref".to_owned(), request_ref(&page)),
        (choice.0.to_owned(), choice.1.to_owned()),
    ];
    let picked = client
        .post(format!("{}/authorize", demo.urls.idp))
        .form(&form)
        .send()
        .await
        .unwrap();
    let to_callback = location(&picked);
    assert!(
        to_callback.starts_with(&format!("{}/callback?", demo.urls.bridge)),
        "{to_callback}"
    );
    assert!(
        to_callback.contains("&iss="),
        "RFC 9207 iss is sent: {to_callback}"
    );
    get(client, &to_callback).await
}

/// A full login as `user`; returns the forum's `/session/sso_login` URL the bridge sent back.
async fn answer_for(demo: &RunningDemo, client: &reqwest::Client, user: &str) -> String {
    let callback = login_at_idp(demo, client, ("user", user)).await;
    let to_forum = location(&callback);
    assert!(
        to_forum.starts_with(&format!("{}/session/sso_login?sso=", demo.urls.forum)),
        "{to_forum}"
    );
    to_forum
}

async fn forum_page(demo: &RunningDemo, client: &reqwest::Client) -> String {
    let page = get(client, &format!("{}/", demo.urls.forum)).await;
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

#[tokio::test]
async fn a_login_ends_on_the_forum_page_showing_what_discourse_received() {
    let demo = RunningDemo::start().await;
    let client = browser();

    let before = forum_page(&demo, &client).await;
    assert!(
        before.contains("Development only"),
        "the forum page is labelled"
    );
    assert!(!before.contains("Discourse received"));

    let answer = answer_for(&demo, &client, "alice").await;
    let accepted = get(&client, &answer).await;
    assert_eq!(location(&accepted), "/");

    let page = forum_page(&demo, &client).await;
    assert!(page.contains("Discourse received"), "{page}");
    assert!(
        page.contains("demo-0001-alice"),
        "external_id is shown: {page}"
    );
    assert!(page.contains("alice@example.com"), "email is shown: {page}");
    assert!(page.contains("Alice Admin"), "name is shown: {page}");
    assert!(page.contains("staff"), "groups are shown: {page}");
    assert!(
        page.contains("forum_admins") || page.contains("forum-admins"),
        "{page}"
    );

    // Discourse spends the nonce on first use: the same answer again is a 419.
    let replay = get(&client, &answer).await;
    assert_eq!(replay.status().as_u16(), 419);
    assert!(replay.text().await.unwrap().contains("timeout_expired"));

    demo.stop().await;
}

#[tokio::test]
async fn the_answer_only_counts_in_the_browser_that_started_the_login() {
    let demo = RunningDemo::start().await;
    let client = browser();
    let answer = answer_for(&demo, &client, "bob").await;

    let elsewhere = get(&browser(), &answer).await;
    assert_eq!(elsewhere.status().as_u16(), 419);

    // The attempt from elsewhere did not spend the nonce of the browser that owns it.
    let accepted = get(&client, &answer).await;
    assert_eq!(location(&accepted), "/");
    let page = forum_page(&demo, &client).await;
    assert!(page.contains("demo-0002-bob"), "{page}");
    assert!(page.contains("engineering"), "{page}");

    demo.stop().await;
}

#[tokio::test]
async fn a_tampered_answer_is_refused_with_422_and_spends_nothing() {
    let demo = RunningDemo::start().await;
    let client = browser();
    let answer = answer_for(&demo, &client, "dave").await;

    let (base, sig) = answer.rsplit_once("&sig=").unwrap();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    let tampered = format!("{base}&sig={flipped}{}", &sig[1..]);
    let refused = get(&client, &tampered).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("signature_error"));

    let missing = get(&client, base).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);

    // Signature is checked before the nonce, so the genuine answer still works.
    let accepted = get(&client, &answer).await;
    assert_eq!(location(&accepted), "/");
    let page = forum_page(&demo, &client).await;
    assert!(page.contains("demo-0004-dave"), "{page}");

    demo.stop().await;
}

#[tokio::test]
async fn an_unverified_email_is_refused_by_the_bridges_default_policy() {
    let demo = RunningDemo::start().await;
    let client = browser();

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
    let client = browser();

    let callback = login_at_idp(&demo, &client, ("cancel", "1")).await;
    assert_eq!(callback.status(), StatusCode::FORBIDDEN);
    assert!(callback.text().await.unwrap().contains("Login cancelled"));

    demo.stop().await;
}

#[tokio::test]
async fn the_idp_publishes_discovery_and_keys_and_guards_its_token_endpoint() {
    let demo = RunningDemo::start().await;
    let client = browser();
    let idp = &demo.urls.idp;

    let discovery: serde_json::Value =
        get(&client, &format!("{idp}/.well-known/openid-configuration"))
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

    let keys: serde_json::Value = get(&client, &format!("{idp}/jwks"))
        .await
        .json()
        .await
        .unwrap();
    let key = &keys["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert!(key["kid"].as_str().is_some_and(|kid| !kid.is_empty()));
    assert!(key.get("d").is_none(), "no private part is published");

    let wrong_secret = client
        .post(format!("{idp}/token"))
        .basic_auth(DEMO_CLIENT_ID, Some("not-the-secret"))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
    let error: serde_json::Value = wrong_secret.json().await.unwrap();
    assert_eq!(error["error"], "invalid_client");

    let foreign_client = get(
        &client,
        &format!("{idp}/authorize?client_id=someone-else&redirect_uri=https%3A%2F%2Fevil.example%2F&response_type=code&scope=openid"),
    )
    .await;
    assert_eq!(
        foreign_client.status(),
        StatusCode::BAD_REQUEST,
        "no redirect to an unregistered URI"
    );

    let userinfo = get(&client, &format!("{idp}/userinfo")).await;
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);

    demo.stop().await;
}
