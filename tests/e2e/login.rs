//! The login end to end, through the real OpenID provider: forum → bridge → IdP → bridge →
//! forum, and every way it must refuse, each time checking that nothing reached the forum.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    Browser, ForumOptions, IdTokenMutation, IdpOptions, Signer, TestBridge, TestForum, TestIdp,
    query_param,
};

struct Setup {
    idp: TestIdp,
    forum: TestForum,
    bridge: TestBridge,
}

async fn setup(extra_toml: &str) -> Setup {
    setup_with(IdpOptions::default(), extra_toml).await
}

async fn setup_with(options: IdpOptions, extra_toml: &str) -> Setup {
    let idp = TestIdp::start(options).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start(&idp, &forum, extra_toml).await;
    Setup { idp, forum, bridge }
}

/// Forum → bridge `/sso` → the IdP's authorize URL (not yet requested).
async fn start_login(s: &Setup, browser: &Browser) -> url::Url {
    let to_bridge = browser.get(s.forum.sso_start_url("/t/welcome/1")).await;
    let at_bridge = browser.step(&to_bridge).await;
    assert_eq!(
        at_bridge.status(),
        StatusCode::FOUND,
        "bridge /sso must 302"
    );
    browser.follow(&at_bridge)
}

/// Delivers the IdP's redirect to the bridge and returns the bridge's response.
async fn finish_at_bridge(browser: &Browser, callback: &url::Url) -> reqwest::Response {
    browser.get(callback).await
}

async fn body(resp: reqwest::Response) -> String {
    resp.text().await.unwrap()
}

#[tokio::test]
async fn alice_logs_in_and_the_forum_receives_her_verified_claims() {
    let s = setup("").await;
    let browser = Browser::new();
    let authorize = start_login(&s, &browser).await;

    assert!(authorize.as_str().starts_with(s.idp.issuer()));
    assert_eq!(
        query_param(&authorize, "response_type").as_deref(),
        Some("code")
    );
    assert_eq!(
        query_param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    for param in [
        "state",
        "nonce",
        "code_challenge",
        "redirect_uri",
        "client_id",
    ] {
        assert!(query_param(&authorize, param).is_some(), "{param} missing");
    }
    let scope = query_param(&authorize, "scope").unwrap();
    assert!(scope.split(' ').any(|s| s == "openid") && scope.contains("groups"));

    let callback = browser.login_at_idp(&authorize, "alice").await;
    assert!(callback.as_str().starts_with(&s.bridge.url("/callback")));
    let answer = finish_at_bridge(&browser, &callback).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    let to_forum = browser.follow(&answer);
    assert!(to_forum.as_str().starts_with(&s.forum.return_sso_url()));
    let landed = browser.step(&answer).await;
    assert!(
        landed.status().is_redirection(),
        "forum accepted the answer"
    );

    let logins = s.forum.logins();
    assert_eq!(logins.len(), 1);
    let payload = &logins[0].payload;
    assert_eq!(
        payload.get("external_id").map(String::as_str),
        Some("alice")
    );
    assert_eq!(
        payload.get("email").map(String::as_str),
        Some("alice@example.test")
    );
    assert_eq!(payload.get("username").map(String::as_str), Some("alice"));
    assert_eq!(
        payload.get("name").map(String::as_str),
        Some("Alice Liddell")
    );
    assert_eq!(
        payload.get("avatar_url").map(String::as_str),
        Some("https://avatars.example.test/alice.png")
    );
    assert!(!payload.contains_key("require_activation"));
    assert_eq!(
        s.forum.current_user(&browser).await,
        logins[0].user_id.into()
    );

    // The same callback a second time is refused and nothing more reaches the forum.
    let replay = finish_at_bridge(&browser, &callback).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.forum.logins().len(), 1);
}

#[tokio::test]
async fn two_tabs_log_in_at_once_without_clobbering_each_other() {
    let s = setup("").await;
    let browser = Browser::new();
    let first = start_login(&s, &browser).await;
    let second = start_login(&s, &browser).await;
    let first_cb = browser.login_at_idp(&first, "alice").await;
    let second_cb = browser.login_at_idp(&second, "alice").await;
    for callback in [second_cb, first_cb] {
        let answer = finish_at_bridge(&browser, &callback).await;
        assert_eq!(answer.status(), StatusCode::FOUND);
        browser.step(&answer).await;
    }
    assert_eq!(s.forum.logins().len(), 2);
}

#[tokio::test]
async fn a_tampered_signature_is_refused_with_403() {
    let s = setup("").await;
    let query = s.forum.signed_query(&[
        ("nonce", "cb68251eefb5211e58c00ff1395f0c0b"),
        ("return_sso_url", &s.forum.return_sso_url()),
    ]);
    let (sso, sig) = query.split_once("&sig=").unwrap();
    let mut tampered = sig.to_owned();
    let last = if tampered.ends_with('0') { "1" } else { "0" };
    tampered.replace_range(tampered.len() - 1.., last);
    let resp = Browser::new()
        .get(s.bridge.url(&format!("/sso?{sso}&sig={tampered}")))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let html = body(resp).await;
    assert!(
        html.contains("request id"),
        "error page shows the request id"
    );
    assert!(!html.contains(&tampered), "the page never echoes the sig");
    assert!(s.forum.logins().is_empty());
}

#[tokio::test]
async fn malformed_and_foreign_requests_are_refused_with_400() {
    let s = setup("").await;
    let browser = Browser::new();
    let foreign = s.forum.signed_query(&[
        ("nonce", "cb68251eefb5211e58c00ff1395f0c0b"),
        ("return_sso_url", "https://evil.example/session/sso_login"),
    ]);
    let resp = browser.get(s.bridge.url(&format!("/sso?{foreign}"))).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.headers().get("location").is_none(),
        "no redirect anywhere"
    );

    for query in ["", "sso=", "sso=abc", "sso=a%2Bb&sig=00", "sig=00"] {
        let resp = browser.get(s.bridge.url(&format!("/sso?{query}"))).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "query {query:?}");
    }
    assert!(s.forum.logins().is_empty());
}

#[tokio::test]
async fn callbacks_without_a_live_login_cookie_are_refused_before_the_idp_is_asked() {
    let s = setup("").await;
    let browser = Browser::new();
    for query in ["code=abc&state=unknown", "code=abc", "state=x"] {
        let resp = browser
            .get(s.bridge.url(&format!("/callback?{query}")))
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
    }

    // A callback carried to another browser (no cookie there) is refused.
    let authorize = start_login(&s, &browser).await;
    let callback = browser.login_at_idp(&authorize, "alice").await;
    let other = Browser::new();
    let resp = finish_at_bridge(&other, &callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(s.forum.logins().is_empty());
}

#[tokio::test]
async fn an_expired_login_is_refused() {
    let s = setup("").await;
    drop(s.bridge);
    let bridge = TestBridge::start_with_env(
        &s.idp,
        &s.forum,
        "",
        &[("BRIDGE_SESSION__LOGIN_TIMEOUT", "1s")],
    )
    .await;
    let s = Setup { bridge, ..s };
    let browser = Browser::new();
    let authorize = start_login(&s, &browser).await;
    let callback = browser.login_at_idp(&authorize, "alice").await;
    s.bridge.advance_clock(Duration::from_secs(2));
    let resp = finish_at_bridge(&browser, &callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(s.forum.logins().is_empty());
}

#[tokio::test]
async fn the_idp_refusing_access_shows_a_403_page() {
    let s = setup("").await;
    let browser = Browser::new();
    let authorize = start_login(&s, &browser).await;
    s.idp.deny_next().await;
    let callback = browser.login_at_idp(&authorize, "alice").await;
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    let resp = finish_at_bridge(&browser, &callback).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(body(resp).await.contains("Login cancelled"));
    assert!(s.forum.logins().is_empty());
}

/// Runs a login whose ID token the IdP corrupts, expecting a 502 and nothing at the forum.
async fn login_with_bad_id_token(mutation: IdTokenMutation) {
    let s = setup("").await;
    let browser = Browser::new();
    let authorize = start_login(&s, &browser).await;
    let callback = browser.login_at_idp(&authorize, "alice").await;
    s.idp.mutate_next_id_token(mutation).await;
    let resp = finish_at_bridge(&browser, &callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(s.forum.logins().is_empty());
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    login_with_bad_id_token(IdTokenMutation::claims(json!({"aud": "someone-else"}))).await;
}

#[tokio::test]
async fn an_id_token_from_another_issuer_is_refused() {
    login_with_bad_id_token(IdTokenMutation::claims(
        json!({"iss": "https://evil.example"}),
    ))
    .await;
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    let past = chrono::Utc::now().timestamp() - 3600;
    login_with_bad_id_token(IdTokenMutation::claims(
        json!({"exp": past, "iat": past - 60}),
    ))
    .await;
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    login_with_bad_id_token(IdTokenMutation::claims(
        json!({"nonce": "not-the-one-we-sent"}),
    ))
    .await;
}

#[tokio::test]
async fn an_unsigned_id_token_is_refused() {
    login_with_bad_id_token(IdTokenMutation::claims(json!({})).signed_by(Signer::None)).await;
}

#[tokio::test]
async fn an_id_token_signed_by_an_unknown_key_is_refused_after_one_refetch() {
    login_with_bad_id_token(IdTokenMutation::claims(json!({})).signed_by(Signer::ForeignKey)).await;
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_without_a_restart() {
    let s = setup("").await;
    let new_kid = s.idp.rotate_keys().await;
    assert!(!new_kid.is_empty());
    let browser = Browser::new();
    let authorize = start_login(&s, &browser).await;
    let callback = browser.login_at_idp(&authorize, "alice").await;
    let resp = finish_at_bridge(&browser, &callback).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    browser.step(&resp).await;
    assert_eq!(s.forum.logins().len(), 1);
}

#[tokio::test]
async fn an_unverified_email_is_refused_by_default() {
    let s = setup("").await;
    let browser = Browser::new();
    let authorize = start_login(&s, &browser).await;
    let callback = browser.login_at_idp(&authorize, "bob").await;
    let resp = finish_at_bridge(&browser, &callback).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(s.forum.logins().is_empty());
}

#[tokio::test]
async fn a_hanging_idp_gives_a_502_within_the_configured_timeout() {
    let s = setup("").await;
    let browser = Browser::new();
    let authorize = start_login(&s, &browser).await;
    let callback = browser.login_at_idp(&authorize, "alice").await;
    // The OP holds the token request for 20 s; the browser gives up after 15 s. A 502 can
    // only come from the bridge's own 2 s `http_timeout`: no clock is read here.
    s.idp.delay_next("/token", Duration::from_secs(20)).await;
    let resp = finish_at_bridge(&browser, &callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(s.forum.logins().is_empty());
}

#[tokio::test]
async fn an_idp_that_is_down_gives_a_502() {
    let mut s = setup("").await;
    let browser = Browser::new();
    let authorize = start_login(&s, &browser).await;
    let callback = browser.login_at_idp(&authorize, "alice").await;
    s.idp.stop();
    let resp = finish_at_bridge(&browser, &callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(s.forum.logins().is_empty());
}

/// A whole login of `user` through the current bridge; returns what the forum received.
async fn complete_login(s: &Setup, user: &str) -> std::collections::BTreeMap<String, String> {
    let browser = Browser::new();
    let authorize = start_login(s, &browser).await;
    let callback = browser.login_at_idp(&authorize, user).await;
    let answer = finish_at_bridge(&browser, &callback).await;
    assert_eq!(answer.status(), StatusCode::FOUND, "{}", body(answer).await);
    let landed = browser.step(&answer).await;
    assert!(
        landed.status().is_redirection(),
        "forum accepted the answer"
    );
    s.forum.logins().last().expect("a login").payload.clone()
}

#[tokio::test]
async fn userinfo_is_requested_only_when_the_id_token_lacks_a_mapped_claim() {
    // Default ("auto"), and the ID token carries every claim the mapping reads: userinfo is not
    // requested, so a change queued for the next userinfo answer stays queued.
    let s = setup("").await;
    s.idp
        .mutate_next_userinfo(json!({ "name": "Name From Userinfo" }))
        .await;
    let payload = complete_login(&s, "alice").await;
    assert_eq!(
        payload.get("name").map(String::as_str),
        Some("Alice Liddell")
    );

    // `userinfo = true`: requested on every login, and its claims win over the ID token's.
    let Setup { idp, forum, bridge } = s;
    bridge.stop().await;
    let always =
        TestBridge::start_with_env(&idp, &forum, "", &[("BRIDGE_OIDC__USERINFO", "true")]).await;
    let s = Setup {
        idp,
        forum,
        bridge: always,
    };
    let payload = complete_login(&s, "alice").await;
    assert_eq!(
        payload.get("name").map(String::as_str),
        Some("Name From Userinfo"),
        "the queued userinfo answer was the next one, so auto never asked"
    );
}

#[tokio::test]
async fn with_a_thin_id_token_auto_mode_takes_the_claims_from_userinfo() {
    // The OP's own default: scope claims (email, profile) only at userinfo.
    let s = setup_with(
        IdpOptions {
            conform_id_token_claims: true,
            ..IdpOptions::default()
        },
        "",
    )
    .await;
    let payload = complete_login(&s, "alice").await;
    assert_eq!(
        payload.get("email").map(String::as_str),
        Some("alice@example.test")
    );
    assert_eq!(
        payload.get("name").map(String::as_str),
        Some("Alice Liddell")
    );
    assert_eq!(payload.get("username").map(String::as_str), Some("alice"));
}
