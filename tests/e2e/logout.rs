//! Logout both ways, end to end: the real OpenID provider's back-channel logout relayed into
//! the Discourse stand-in's admin API (with outages, restarts and replays), and Discourse's
//! logout redirect ending the IdP session through RP-initiated logout.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::bridge::CLIENT_ID;
use crate::support::{
    AdminEndpoint, Browser, ForumOptions, IdpOptions, Signer, TestBridge, TestForum, TestIdp,
    query_param,
};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Logs `user` in through the whole flow and returns the forum's numeric id for them.
async fn log_in(
    idp: &TestIdp,
    forum: &TestForum,
    bridge: &TestBridge,
    browser: &Browser,
    user: &str,
) -> u64 {
    let to_bridge = browser.get(forum.sso_start_url("/")).await;
    let at_bridge = browser.step(&to_bridge).await;
    let authorize = browser.follow(&at_bridge);
    assert!(authorize.as_str().starts_with(idp.issuer()));
    let callback = browser.login_at_idp(&authorize, user).await;
    assert!(callback.as_str().starts_with(&bridge.url("/callback")));
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    browser.step(&answer).await;
    forum
        .user_id(user)
        .expect("the forum knows the user after login")
}

async fn post_logout_token(bridge: &TestBridge, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(bridge.url("/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
}

fn logout_claims(idp: &TestIdp, sub: &str, jti: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": idp.issuer(),
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 120,
        "jti": jti,
        "sub": sub,
        "events": { EVENT: {} },
    })
}

#[tokio::test]
async fn the_idp_ending_a_session_logs_the_user_out_of_discourse() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start(&idp, &forum, "").await;
    let browser = Browser::new();
    let user_id = log_in(&idp, &forum, &bridge, &browser, "alice").await;
    assert_eq!(forum.current_user(&browser).await, Some(user_id));

    let outcomes = idp.backchannel_logout("alice", None).await;
    assert!(!outcomes.is_empty(), "the OP sent a logout token");
    assert!(
        outcomes.iter().all(|o| o.ok),
        "the bridge answered 200: {outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|o| o.sid.is_some()),
        "the OP's token carried the sid"
    );

    assert!(
        forum
            .wait_until(Duration::from_secs(10), |f| f.successful_log_outs()
                == vec![user_id])
            .await,
        "exactly one log_out for the right user: {:?}",
        forum.admin_calls()
    );
    for call in forum.admin_calls() {
        assert_eq!(call.accept.as_deref(), Some("application/json"));
        assert_eq!(call.api_key.as_deref(), Some(forum.api_key().as_str()));
        assert_eq!(
            call.api_username.as_deref(),
            Some(forum.api_username().as_str())
        );
    }
    let lookups = forum.admin_calls_to(AdminEndpoint::ByExternal);
    assert!(
        lookups
            .iter()
            .any(|c| c.path == "/u/by-external/alice.json")
    );
    assert_eq!(
        forum.current_user(&browser).await,
        None,
        "the forum session is gone"
    );
}

#[tokio::test]
async fn a_replayed_logout_token_is_acknowledged_but_acts_once() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start(&idp, &forum, "").await;
    let browser = Browser::new();
    let user_id = log_in(&idp, &forum, &bridge, &browser, "alice").await;

    let token = idp
        .sign(
            json!({"typ": "logout+jwt"}),
            logout_claims(&idp, "alice", "jti-replay-1"),
            Signer::Default,
        )
        .await;
    for _ in 0..2 {
        let resp = post_logout_token(&bridge, &token).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("no-store")
        );
    }
    assert!(
        forum
            .wait_until(Duration::from_secs(10), |f| f.successful_log_outs()
                == vec![user_id])
            .await
    );
    bridge.wait_relay_idle().await;
    assert_eq!(
        forum.successful_log_outs(),
        vec![user_id],
        "no second log_out"
    );
}

#[tokio::test]
async fn invalid_logout_tokens_get_400_json_and_change_nothing() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start(&idp, &forum, "").await;
    let browser = Browser::new();
    log_in(&idp, &forum, &bridge, &browser, "alice").await;

    let good = logout_claims(&idp, "alice", "x");
    let with = |patch: Value| {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let cases = [
        (
            "wrong_audience",
            with(json!({"aud": "another-client", "jti": "a1"})),
            Signer::Default,
        ),
        (
            "nonce_present",
            with(json!({"nonce": "n", "jti": "a2"})),
            Signer::Default,
        ),
        (
            "missing_logout_event",
            with(json!({"events": {}, "jti": "a3"})),
            Signer::Default,
        ),
        (
            "wrong_issuer",
            with(json!({"iss": "https://evil.example", "jti": "a4"})),
            Signer::Default,
        ),
        (
            "expired",
            with(json!({"exp": 1000, "iat": 900, "jti": "a5"})),
            Signer::Default,
        ),
        ("alg_none", with(json!({"jti": "a6"})), Signer::None),
        (
            "unknown_key",
            with(json!({"jti": "a7"})),
            Signer::ForeignKey,
        ),
    ];
    for (expected, claims, signer) in cases {
        let token = idp.sign(json!({"typ": "logout+jwt"}), claims, signer).await;
        let resp = post_logout_token(&bridge, &token).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{expected}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{expected}");
        assert_eq!(body["error_description"], expected);
    }
    let not_form = reqwest::Client::new()
        .post(bridge.url("/backchannel-logout"))
        .json(&json!({"logout_token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_form.status(), StatusCode::BAD_REQUEST);
    bridge.wait_relay_idle().await;
    assert!(forum.admin_calls().is_empty(), "nothing reached Discourse");
}

#[tokio::test]
async fn a_discourse_outage_and_a_bridge_restart_lose_no_logout() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let store = tempfile::tempdir().unwrap();
    let store_path = store.path().display().to_string();
    let env = [("BRIDGE_STORE__PATH", store_path.as_str())];
    let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
    let browser = Browser::new();
    let user_id = log_in(&idp, &forum, &bridge, &browser, "alice").await;

    forum.fail_until_cleared(AdminEndpoint::LogOut, 503);
    let outcomes = idp.backchannel_logout("alice", None).await;
    assert!(
        outcomes.iter().all(|o| o.ok),
        "acknowledged during the outage"
    );
    assert!(
        forum
            .wait_until(Duration::from_secs(10), |f| !f
                .admin_calls_to(AdminEndpoint::LogOut)
                .is_empty())
            .await,
        "the relay tried while Discourse was down"
    );
    bridge.stop().await;
    forum.clear_failures();

    let bridge = TestBridge::start_with_env(&idp, &forum, "", &env).await;
    assert!(
        forum
            .wait_until(Duration::from_secs(20), |f| f.successful_log_outs()
                == vec![user_id])
            .await,
        "delivered after the restart: {:?}",
        forum.admin_calls()
    );
    bridge.wait_relay_idle().await;
    assert_eq!(forum.successful_log_outs(), vec![user_id], "exactly once");
    bridge.stop().await;
}

#[tokio::test]
async fn discourse_logout_ends_the_idp_session_with_an_id_token_hint() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start(&idp, &forum, "").await;
    let browser = Browser::new();
    log_in(&idp, &forum, &bridge, &browser, "alice").await;

    let resp = browser.get(bridge.url("/logout")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let end_session = browser.follow(&resp);
    assert!(end_session.as_str().starts_with(idp.issuer()));
    assert!(query_param(&end_session, "id_token_hint").is_some());
    assert_eq!(
        query_param(&end_session, "client_id").as_deref(),
        Some(CLIENT_ID)
    );
    assert_eq!(
        query_param(&end_session, "post_logout_redirect_uri").as_deref(),
        Some(bridge.url("/logged-out").as_str())
    );
    let state = query_param(&end_session, "state").expect("state sent");

    let back = browser.logout_at_idp(&end_session).await;
    assert!(back.as_str().starts_with(&bridge.url("/logged-out")));
    assert_eq!(query_param(&back, "state").as_deref(), Some(state.as_str()));
    let page = browser.get(&back).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("logged out"));

    // The IdP's own back-channel logout (sent when its session ended) reached Discourse too.
    assert!(
        forum
            .wait_until(Duration::from_secs(10), |f| f.successful_log_outs().len()
                == 1)
            .await
    );

    // A return with a state this browser never got confirms nothing about the IdP (but the
    // page, which only informs, still shows: it can be reloaded and bookmarked).
    let forged = browser.get(bridge.url("/logged-out?state=forged")).await;
    assert_eq!(forged.status(), StatusCode::OK);
    assert!(!forged.text().await.unwrap().contains("identity provider"));
}

#[tokio::test]
async fn logout_without_an_end_session_endpoint_shows_the_logged_out_page() {
    let options = IdpOptions {
        rp_initiated_logout: false,
        ..IdpOptions::default()
    };
    let idp = TestIdp::start(options).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start(&idp, &forum, "").await;
    let browser = Browser::new();
    log_in(&idp, &forum, &bridge, &browser, "alice").await;
    let resp = browser.get(bridge.url("/logout")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains("logged out"));
    // minijinja escapes `/` in attributes (`&#x2f;`), which browsers decode; match the port.
    let port = forum.base_url().rsplit(':').next().unwrap().to_owned();
    assert!(html.contains("Back to the forum") && html.contains(&port));
}
