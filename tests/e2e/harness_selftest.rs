//! Self-tests of the end-to-end harness: each piece (the oidc-provider OP and its `/__test/`
//! hooks, the headless browser, the in-test Discourse) works on its own, checked against
//! independent code written here (HMAC, Base64, RS256 against the JWKS).

// The helpers below are test code too: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use reqwest::Client;
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use crate::support::{
    AdminEndpoint, Browser, ForumOptions, IdTokenMutation, IdpClient, IdpOptions, Signer,
    TestForum, TestIdp, query_param,
};

const CLIENT_ID: &str = "bridge";
const CLIENT_SECRET: &str = "bridge-client-secret-for-tests";
/// Registered at the OP but never requested: the tests stop at the redirect.
const CALLBACK: &str = "http://127.0.0.1:9/oidc/callback";

fn http() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The parts of one authorization request the test needs again at the token endpoint.
struct AuthRequest {
    url: Url,
    state: String,
    nonce: String,
    verifier: String,
}

fn auth_request(idp: &TestIdp, scope: &str) -> AuthRequest {
    let (state, nonce, verifier) = (random_b64(16), random_b64(16), random_b64(32));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut url = idp.url("/auth");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    AuthRequest {
        url,
        state,
        nonce,
        verifier,
    }
}

/// Logs `login` in at the OP and exchanges the code; returns the token response.
async fn login_and_exchange(idp: &TestIdp, browser: &Browser, login: &str) -> (AuthRequest, Value) {
    let request = auth_request(idp, "openid email profile groups");
    let callback = browser.login_at_idp(&request.url, login).await;
    assert!(
        callback.as_str().starts_with(CALLBACK),
        "redirected to {callback}"
    );
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some(request.state.as_str())
    );
    let code = query_param(&callback, "code").unwrap_or_else(|| panic!("no code in {callback}"));
    let tokens = exchange(idp, &code, &request.verifier).await;
    (request, tokens)
}

async fn exchange(idp: &TestIdp, code: &str, verifier: &str) -> Value {
    let resp = http()
        .post(idp.url("/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), StatusCode::OK, "token endpoint");
    resp.json().await.expect("token JSON")
}

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

async fn userinfo(idp: &TestIdp, access_token: &str) -> reqwest::Response {
    http()
        .get(idp.url("/me"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo")
}

async fn jwks(idp: &TestIdp) -> Value {
    http()
        .get(idp.url("/jwks"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks JSON")
}

fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

/// RS256 check of a compact JWS against the JWK with the token's kid, done here with `rsa`.
fn rs256_verifies(token: &str, jwks: &Value) -> bool {
    // DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2 note 1).
    const SHA256_PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let header = jwt_part(token, 0);
    if header["alg"] != "RS256" {
        return false;
    }
    let Some(jwk) = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == header["kid"]))
    else {
        return false;
    };
    let number = |name: &str| {
        BigUint::from_bytes_be(
            &URL_SAFE_NO_PAD
                .decode(jwk[name].as_str().expect("n/e"))
                .expect("b64"),
        )
    };
    let key = RsaPublicKey::new(number("n"), number("e")).expect("RSA key");
    let (input, signature) = token.rsplit_once('.').expect("JWS");
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let mut digest_info = SHA256_PREFIX.to_vec();
    digest_info.extend_from_slice(&Sha256::digest(input.as_bytes()));
    key.verify(Pkcs1v15Sign::new_unprefixed(), &digest_info, &signature)
        .is_ok()
}

/// The bridge as a client; with a back-channel URI (never called here), since oidc-provider puts
/// `sid` in ID tokens only for clients that registered one with the session requirement.
fn op_with_bridge_client() -> IdpOptions {
    IdpOptions::default().client(
        IdpClient::new(CLIENT_ID, CLIENT_SECRET, CALLBACK)
            .backchannel_logout_uri("http://127.0.0.1:9/backchannel-logout"),
    )
}

#[tokio::test]
async fn op_starts_fast_and_serves_discovery() {
    let idp = TestIdp::start(op_with_bridge_client()).await;

    let discovery: Value = http()
        .get(idp.discovery_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], idp.issuer());
    assert!(idp.issuer().starts_with("http://127.0.0.1:") && !idp.issuer().ends_with('/'));
    assert_eq!(
        discovery["authorization_endpoint"],
        format!("{}/auth", idp.issuer())
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);
    assert_eq!(
        discovery["end_session_endpoint"],
        format!("{}/session/end", idp.issuer())
    );
    assert!(
        discovery["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("groups"))
    );
    assert!(
        discovery["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("groups"))
    );
    assert!(
        discovery["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("RS256"))
    );

    let keys = jwks(&idp).await;
    assert_eq!(jwks_kids(&keys), vec!["test-rs256"]);
    assert_eq!(keys["keys"][0]["alg"], "RS256");
    assert!(keys["keys"][0].get("d").is_none(), "private part published");

    let no_logout = TestIdp::start(IdpOptions {
        rp_initiated_logout: false,
        ..op_with_bridge_client()
    })
    .await;
    let discovery: Value = http()
        .get(no_logout.discovery_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(discovery.get("end_session_endpoint").is_none());
}

#[tokio::test]
async fn op_pkce_login_yields_id_token_with_groups_and_sid() {
    let idp = TestIdp::start(op_with_bridge_client()).await;
    let browser = Browser::new();

    // PKCE is required: no code_challenge, no code.
    let mut without_pkce = idp.url("/auth");
    without_pkce
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("scope", "openid")
        .append_pair("state", "s1");
    let refused = browser.follow(&browser.get(&without_pkce).await);
    assert_eq!(
        query_param(&refused, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(query_param(&refused, "code").is_none());

    let request = auth_request(&idp, "openid email profile groups");
    let callback = browser.login_at_idp(&request.url, "alice").await;
    assert_eq!(callback.origin(), Url::parse(CALLBACK).unwrap().origin());
    assert_eq!(callback.path(), "/oidc/callback");
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some(request.state.as_str())
    );
    assert_eq!(query_param(&callback, "iss").as_deref(), Some(idp.issuer()));
    let code = query_param(&callback, "code").expect("code");

    let tokens = exchange(&idp, &code, &request.verifier).await;
    let id_token = tokens["id_token"].as_str().expect("id_token");
    assert!(
        rs256_verifies(id_token, &jwks(&idp).await),
        "ID token signature"
    );
    assert_eq!(jwt_part(id_token, 0)["kid"], "test-rs256");
    let claims = jwt_part(id_token, 1);
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], request.nonce.as_str());
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(
        claims["groups"],
        json!(["/staff", "/staff/moderators", "forum-admins"])
    );
    assert!(
        claims["sid"].as_str().is_some_and(|sid| !sid.is_empty()),
        "sid in {claims}"
    );

    let access_token = tokens["access_token"].as_str().expect("access_token");
    let answer: Value = userinfo(&idp, access_token).await.json().await.unwrap();
    assert_eq!(answer["sub"], "alice");
    assert_eq!(answer["groups"], claims["groups"]);

    // The code is single-use; replaying it also revokes what it issued (RFC 6749 §4.1.2).
    let replay = http()
        .post(idp.url("/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", request.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        userinfo(&idp, access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn op_conform_mode_and_consent_page() {
    // Scope claims only in userinfo; the consent page shown and accepted by the browser.
    let idp = TestIdp::start(IdpOptions {
        conform_id_token_claims: true,
        auto_consent: false,
        ..op_with_bridge_client()
    })
    .await;
    let (_, tokens) = login_and_exchange(&idp, &Browser::new(), "bob").await;
    let claims = jwt_part(tokens["id_token"].as_str().unwrap(), 1);
    assert_eq!(claims["sub"], "bob");
    assert!(
        claims.get("groups").is_none() && claims.get("email").is_none(),
        "{claims}"
    );
    let userinfo: Value = userinfo(&idp, tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["email_verified"], false);
    assert_eq!(userinfo["groups"], json!([]));
}

#[tokio::test]
async fn op_rotate_keys_changes_the_jwks_kid() {
    let idp = TestIdp::start(op_with_bridge_client()).await;
    assert_eq!(jwks_kids(&jwks(&idp).await), vec!["test-rs256"]);

    let new_kid = idp.rotate_keys().await;
    assert_ne!(new_kid, "test-rs256");
    let keys = jwks(&idp).await;
    assert_eq!(
        jwks_kids(&keys),
        vec![new_kid.clone()],
        "old key must leave the JWKS"
    );

    let (_, tokens) = login_and_exchange(&idp, &Browser::new(), "alice").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(jwt_part(id_token, 0)["kid"], new_kid.as_str());
    assert!(rs256_verifies(id_token, &keys));
}

#[tokio::test]
async fn op_mutate_next_id_token_rewrites_only_the_next_token() {
    let idp = TestIdp::start(op_with_bridge_client()).await;
    let browser = Browser::new();
    let keys = jwks(&idp).await;

    // Claims changed and removed, re-signed with the OP's own key.
    idp.mutate_next_id_token(IdTokenMutation::claims(
        json!({ "aud": "someone-else", "nonce": null, "exp": 1_000_000 }),
    ))
    .await;
    let (_, tokens) = login_and_exchange(&idp, &browser, "alice").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let claims = jwt_part(id_token, 1);
    assert_eq!(claims["aud"], "someone-else");
    assert_eq!(claims["exp"], 1_000_000);
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims["sub"], "alice", "other claims kept");
    assert!(rs256_verifies(id_token, &keys), "still validly signed");

    // alg none.
    idp.mutate_next_id_token(IdTokenMutation::claims(json!({})).signed_by(Signer::None))
        .await;
    let (_, tokens) = login_and_exchange(&idp, &browser, "alice").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(jwt_part(id_token, 0)["alg"], "none");
    assert!(id_token.ends_with('.'));
    assert!(!rs256_verifies(id_token, &keys));

    // A key the JWKS does not have.
    idp.mutate_next_id_token(IdTokenMutation::claims(json!({})).signed_by(Signer::ForeignKey))
        .await;
    let (_, tokens) = login_and_exchange(&idp, &browser, "alice").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let kid = jwt_part(id_token, 0)["kid"].as_str().unwrap().to_owned();
    assert!(kid.starts_with("foreign-") && !jwks_kids(&keys).contains(&kid));
    assert!(!rs256_verifies(id_token, &keys));

    // A header change: the OP's key under a kid the JWKS does not list.
    idp.mutate_next_id_token(
        IdTokenMutation::claims(json!({})).header(json!({ "kid": "unknown-kid" })),
    )
    .await;
    let (_, tokens) = login_and_exchange(&idp, &browser, "alice").await;
    assert_eq!(
        jwt_part(tokens["id_token"].as_str().unwrap(), 0)["kid"],
        "unknown-kid"
    );

    // The queue is empty again: an untouched token.
    let (request, tokens) = login_and_exchange(&idp, &browser, "alice").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(jwt_part(id_token, 1)["nonce"], request.nonce.as_str());
    assert!(rs256_verifies(id_token, &keys));

    // Userinfo mutation.
    idp.mutate_next_userinfo(json!({ "sub": "mallory", "groups": null }))
        .await;
    let userinfo: Value = userinfo(&idp, tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], "mallory");
    assert!(userinfo.get("groups").is_none());

    // Hand-crafted tokens signed with the OP's key.
    let crafted = idp
        .sign(
            json!({ "typ": "logout+jwt" }),
            json!({ "iss": idp.issuer(), "sub": "alice" }),
            Signer::Default,
        )
        .await;
    assert_eq!(jwt_part(&crafted, 0)["typ"], "logout+jwt");
    assert_eq!(jwt_part(&crafted, 1)["sub"], "alice");
    assert!(rs256_verifies(&crafted, &keys));
}

#[tokio::test]
async fn op_deny_next_redirects_with_access_denied() {
    let idp = TestIdp::start(op_with_bridge_client()).await;
    idp.deny_next().await;
    let request = auth_request(&idp, "openid");
    let callback = Browser::new().login_at_idp(&request.url, "alice").await;
    assert!(callback.as_str().starts_with(CALLBACK));
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some(request.state.as_str())
    );
    assert!(query_param(&callback, "code").is_none());

    // Only the next one: a fresh browser logs in normally afterwards.
    let (_, tokens) = login_and_exchange(&idp, &Browser::new(), "alice").await;
    assert!(tokens["id_token"].is_string());
}

/// A relying party's back-channel logout endpoint: records `(content type, form body)`.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(String, String)>>>);

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    receiver.0.lock().unwrap().push((content_type, body));
    StatusCode::OK
}

async fn start_receiver() -> (String, Receiver) {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/backchannel-logout", post(receive))
        .route(
            "/broken",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, receiver)
}

fn logout_token(receiver: &Receiver, index: usize) -> String {
    let received = receiver.0.lock().unwrap();
    let (content_type, body) = received.get(index).expect("a back-channel POST").clone();
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("logout_token field")
}

#[tokio::test]
async fn op_backchannel_logout_reaches_a_loopback_receiver() {
    let (base, receiver) = start_receiver().await;
    // Started without clients: the relying party is registered afterwards.
    let idp = TestIdp::start(IdpOptions::default()).await;
    let client = IdpClient::new(CLIENT_ID, CLIENT_SECRET, CALLBACK)
        .backchannel_logout_uri(&format!("{base}/backchannel-logout"))
        .post_logout_redirect_uri(&format!("{base}/logged-out"));
    idp.set_client(&client).await;
    idp.set_client(
        &IdpClient::new("broken", CLIENT_SECRET, CALLBACK)
            .backchannel_logout_uri(&format!("{base}/broken")),
    )
    .await;

    let browser = Browser::new();
    let (_, tokens) = login_and_exchange(&idp, &browser, "alice").await;
    let sid = jwt_part(tokens["id_token"].as_str().unwrap(), 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned();

    // Admin-style logout through the hook: one token for alice's one session.
    let outcomes = idp.backchannel_logout("alice", None).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert!(
        outcomes[0].ok && outcomes[0].client_id == CLIENT_ID,
        "{outcomes:?}"
    );
    assert_eq!(outcomes[0].sid.as_deref(), Some(sid.as_str()));

    let token = logout_token(&receiver, 0);
    assert!(rs256_verifies(&token, &jwks(&idp).await));
    let header = jwt_part(&token, 0);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(header["kid"], "test-rs256");
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(
        claims["events"],
        json!({ "http://schemas.openid.net/event/backchannel-logout": {} })
    );
    assert!(claims["jti"].is_string() && claims["iat"].is_number() && claims["exp"].is_number());
    assert!(claims.get("nonce").is_none());

    // The hook ended the OP session: the same browser is asked to log in again.
    let again = browser.get(auth_request(&idp, "openid").url).await;
    let next = browser.follow(&again);
    assert!(
        next.as_str().starts_with(idp.issuer()),
        "expected the OP's login page, got {next}"
    );

    // A real RP-initiated logout makes the OP post on its own.
    let (_, tokens) = login_and_exchange(&idp, &browser, "alice").await;
    let second_sid = jwt_part(tokens["id_token"].as_str().unwrap(), 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second_sid, sid);
    let mut end_session = idp.url("/session/end");
    end_session
        .query_pairs_mut()
        .append_pair("id_token_hint", tokens["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", &format!("{base}/logged-out"))
        .append_pair("state", "bye");
    let back = browser.logout_at_idp(&end_session).await;
    assert_eq!(back.as_str(), format!("{base}/logged-out?state=bye"));
    assert_eq!(
        jwt_part(&logout_token(&receiver, 1), 1)["sid"],
        second_sid.as_str()
    );

    // A relying party answering 500 is reported, not hidden.
    let failed = idp
        .backchannel_logout_with(
            json!({ "sub": "alice", "sid": "some-sid", "client_id": "broken" }),
        )
        .await;
    assert_eq!(failed.len(), 1);
    assert!(
        !failed[0].ok && failed[0].error.as_deref().unwrap_or("").contains("500"),
        "{failed:?}"
    );

    let log = idp.backchannel_log().await;
    assert_eq!(log.iter().filter(|o| o.ok).count(), 2, "{log:?}");
    assert_eq!(log.iter().filter(|o| !o.ok).count(), 1, "{log:?}");
}

#[tokio::test]
async fn op_stop_restart_and_delay() {
    let mut idp = TestIdp::start(op_with_bridge_client()).await;
    let discovery = idp.discovery_url();
    idp.stop();
    assert!(
        http().get(discovery.clone()).send().await.is_err(),
        "OP still answering"
    );
    idp.restart().await;
    let resp = http().get(discovery).send().await.expect("OP back");
    assert_eq!(resp.status(), StatusCode::OK);

    // A hanging endpoint: the next /jwks is held at least that long (a lower bound, which no
    // scheduling can break), and the one after is answered.
    idp.delay_next("/jwks", Duration::from_millis(400)).await;
    let started = Instant::now();
    jwks(&idp).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(!jwks_kids(&jwks(&idp).await).is_empty());
}

// ---------------------------------------------------------------------------------------------
// The in-test forum, checked against DiscourseConnect computed here.

fn hmac_hex(secret: &str, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// An answer as a provider sends it: strict Base64 of the form-encoded fields, escaped.
fn answer_query(secret: &str, inner: &str) -> String {
    let sso = STANDARD.encode(inner);
    let sig = hmac_hex(secret, &sso);
    let sso: String = url::form_urlencoded::byte_serialize(sso.as_bytes()).collect();
    format!("sso={sso}&sig={sig}")
}

/// Starts a login at the forum; returns the nonce of the signed request it sent.
async fn forum_nonce(forum: &TestForum, browser: &Browser) -> String {
    let to_bridge = browser.follow(&browser.get(forum.sso_start_url("/t/welcome/1")).await);
    let sso = query_param(&to_bridge, "sso").unwrap();
    let inner = String::from_utf8(STANDARD.decode(sso).unwrap()).unwrap();
    url::form_urlencoded::parse(inner.as_bytes())
        .find(|(k, _)| k == "nonce")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn sso_login_url(forum: &TestForum, query: &str) -> String {
    format!("{}/session/sso_login?{query}", forum.base_url())
}

#[tokio::test]
async fn forum_signs_its_request_like_discourse() {
    let forum = TestForum::start(ForumOptions::default()).await;
    forum.set_connect_url(Url::parse("http://127.0.0.1:9/sso?tenant=a").unwrap());
    let browser = Browser::new();
    let resp = browser
        .get(forum.sso_start_url("/t/welcome/1?page=2"))
        .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(
        browser
            .cookie_header(&forum.url("/"))
            .is_some_and(|c| c.contains("_forum_session="))
    );
    let to_bridge = browser.follow(&resp);
    assert_eq!(to_bridge.host_str(), Some("127.0.0.1"));
    assert_eq!(to_bridge.path(), "/sso");
    let raw = to_bridge.query().unwrap();
    assert!(
        raw.starts_with("tenant=a&sso="),
        "appended with & to an existing query: {raw}"
    );

    let sso = query_param(&to_bridge, "sso").unwrap();
    let sig = query_param(&to_bridge, "sig").unwrap();
    assert_eq!(sig, hmac_hex(&forum.sso_secret(), &sso), "independent HMAC");
    assert!(!raw.contains('+') && !sso.contains('\n'));
    let inner = String::from_utf8(STANDARD.decode(&sso).unwrap()).unwrap();
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(inner.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(fields.len(), 2, "{inner}");
    assert_eq!(fields[0].0, "nonce");
    assert!(
        fields[0].1.len() == 32
            && fields[0]
                .1
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(
        fields[1],
        ("return_sso_url".to_owned(), forum.return_sso_url())
    );
    assert!(
        inner.contains("return_sso_url=http%3A%2F%2F127.0.0.1%3A"),
        "form-encoded: {inner}"
    );
}

#[tokio::test]
async fn forum_sso_login_accepts_once_and_rejects_like_discourse() {
    let forum = TestForum::start(ForumOptions::default()).await;
    forum.set_connect_url(Url::parse("http://127.0.0.1:9/sso").unwrap());
    let secret = forum.sso_secret();
    let browser = Browser::new();
    let nonce = forum_nonce(&forum, &browser).await;
    let inner = format!(
        "nonce={nonce}&email=alice%40example.test&external_id=alice&username=alice&name=Alice+Liddell&groups=staff%2Cmods&return_sso_url={}",
        url::form_urlencoded::byte_serialize(forum.return_sso_url().as_bytes()).collect::<String>()
    );
    let good = answer_query(&secret, &inner);

    // Malformed answers, each before the nonce is spent.
    let status = |q: String| {
        let browser = &browser;
        async move { browser.get(q).await.status().as_u16() }
    };
    assert_eq!(
        status(sso_login_url(&forum, "sig=abc")).await,
        400,
        "sso missing"
    );
    assert_eq!(
        status(sso_login_url(&forum, &good.replace("&sig=", "&x="))).await,
        400,
        "sig missing"
    );
    let (sso_part, sig) = good.split_once("&sig=").unwrap();
    let bad_sig = format!("{sso_part}&sig={}", "0".repeat(64));
    assert_eq!(
        status(sso_login_url(&forum, &bad_sig)).await,
        422,
        "bad sig"
    );
    let upper_sig = format!("{sso_part}&sig={}", sig.to_uppercase());
    assert_eq!(
        status(sso_login_url(&forum, &upper_sig)).await,
        422,
        "uppercase hex sig"
    );
    let url_safe = format!("sso=abc-_&sig={}", hmac_hex(&secret, "abc-_"));
    assert_eq!(
        status(sso_login_url(&forum, &url_safe)).await,
        422,
        "URL-safe Base64"
    );
    let other_browser = Browser::new();
    assert_eq!(
        other_browser
            .get(sso_login_url(&forum, &good))
            .await
            .status(),
        419,
        "another browser"
    );
    assert!(forum.logins().is_empty());

    // Accepted once, with the payload recorded and the user logged in.
    let resp = browser.get(sso_login_url(&forum, &good)).await;
    assert_eq!(browser.follow(&resp), forum.url("/t/welcome/1"));
    let logins = forum.logins();
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].payload["email"], "alice@example.test");
    assert_eq!(logins[0].payload["name"], "Alice Liddell");
    assert_eq!(logins[0].payload["groups"], "staff,mods");
    assert_eq!(forum.user_id("alice"), Some(logins[0].user_id));
    assert_eq!(forum.current_user(&browser).await, Some(logins[0].user_id));
    assert_eq!(forum.current_user(&other_browser).await, None);

    // Replay: the nonce is spent.
    assert_eq!(
        browser.get(sso_login_url(&forum, &good)).await.status(),
        419
    );
    assert_eq!(forum.logins().len(), 1);

    // An expired nonce.
    let nonce = forum_nonce(&forum, &browser).await;
    forum.expire_nonces();
    let late = answer_query(
        &secret,
        &format!("nonce={nonce}&external_id=alice&email=alice%40example.test"),
    );
    assert_eq!(
        browser.get(sso_login_url(&forum, &late)).await.status(),
        419
    );

    // Newlines in the Base64 (Ruby's encode64) are fine when the sig covers them.
    let nonce = forum_nonce(&forum, &browser).await;
    let inner =
        format!("nonce={nonce}&external_id=carol&email=carol%40example.test&username=carol");
    let wrapped = STANDARD
        .encode(&inner)
        .as_bytes()
        .chunks(20)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let query = format!(
        "sso={}&sig={}",
        url::form_urlencoded::byte_serialize(wrapped.as_bytes()).collect::<String>(),
        hmac_hex(&secret, &wrapped)
    );
    assert_eq!(
        browser.get(sso_login_url(&forum, &query)).await.status(),
        302
    );

    // A blank external_id spends the nonce, then fails.
    let nonce = forum_nonce(&forum, &browser).await;
    let blank = answer_query(&secret, &format!("nonce={nonce}&email=x%40example.test"));
    assert_eq!(
        browser.get(sso_login_url(&forum, &blank)).await.status(),
        500
    );
    assert_eq!(
        browser.get(sso_login_url(&forum, &blank)).await.status(),
        419
    );

    let attempts = forum.sso_login_attempts();
    assert_eq!(attempts.iter().filter(|a| a.status == 302).count(), 2);
    assert!(attempts.iter().any(|a| a.error == "signature_error"));
    assert!(attempts.iter().any(|a| a.error == "payload_parse_error"));
    assert!(
        attempts.iter().any(|a| a.status == 500
            && a.payload
                .as_ref()
                .is_some_and(|p| p.get("email").map(String::as_str) == Some("x@example.test"))),
        "a payload that was decoded is kept with its attempt"
    );
}

#[tokio::test]
async fn forum_admin_api_checks_headers_and_follows_the_failure_schedule() {
    let forum = TestForum::start(ForumOptions::default()).await;
    let id = forum.seed_user("alice", "alice");
    let odd = forum.seed_user("a b/c", "odd");
    let (key, username) = (forum.api_key(), forum.api_username());
    let client = http();
    let call = |method: reqwest::Method, path: &str, auth: Option<(&str, &str)>| {
        let mut request = client
            .request(method, forum.url(path))
            .header("Accept", "application/json");
        if let Some((key, user)) = auth {
            request = request.header("Api-Key", key).header("Api-Username", user);
        }
        request.send()
    };
    let ok = Some((key.as_str(), username.as_str()));

    let resp = call(reqwest::Method::GET, "/u/by-external/alice.json", None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = call(
        reqwest::Method::GET,
        "/u/by-external/alice.json",
        Some(("wrong", "system")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = call(
        reqwest::Method::GET,
        "/u/by-external/alice.json",
        Some((&key, "someone")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = call(reqwest::Method::GET, "/u/by-external/alice.json", ok)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["id"], id);
    let resp = call(reqwest::Method::GET, "/u/by-external/a%20b%2Fc.json", ok)
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["user"]["id"], odd);
    let resp = call(reqwest::Method::GET, "/u/by-external/nobody.json", ok)
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let log_out = format!("/admin/users/{id}/log_out");
    forum.fail_next(AdminEndpoint::LogOut, 503, 2);
    assert_eq!(
        call(reqwest::Method::POST, &log_out, ok)
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        call(reqwest::Method::POST, &log_out, ok)
            .await
            .unwrap()
            .status(),
        503
    );
    let resp = call(reqwest::Method::POST, &log_out, ok).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "success": "OK" })
    );
    forum.fail_next(AdminEndpoint::Any, 429, 1);
    let resp = call(reqwest::Method::POST, &log_out, ok).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    forum.fail_until_cleared(AdminEndpoint::LogOut, 503);
    assert_eq!(
        call(reqwest::Method::POST, &log_out, ok)
            .await
            .unwrap()
            .status(),
        503
    );
    forum.clear_failures();
    assert_eq!(
        call(reqwest::Method::POST, "/admin/users/99999/log_out", ok)
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        call(reqwest::Method::POST, &log_out, None)
            .await
            .unwrap()
            .status(),
        403
    );

    assert_eq!(forum.successful_log_outs(), vec![id]);
    let calls = forum.admin_calls_to(AdminEndpoint::LogOut);
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![503, 503, 200, 429, 503, 404, 403]
    );
    assert_eq!(calls[2].api_key.as_deref(), Some(key.as_str()));
    assert_eq!(calls[2].api_username.as_deref(), Some(username.as_str()));
    assert_eq!(calls[2].path, log_out);
    assert_eq!(forum.admin_calls_to(AdminEndpoint::ByExternal).len(), 6);

    // sync_sso: a strictly encoded payload works; a Base64 `+` turns into a space and fails.
    let secret = forum.sso_secret();
    let sync = |inner: &str| {
        let sso = STANDARD.encode(inner);
        let sig = hmac_hex(&secret, &sso);
        client
            .post(forum.url("/admin/users/sync_sso"))
            .header("Api-Key", &key)
            .header("Api-Username", &username)
            .form(&[("sso", sso), ("sig", sig)])
            .send()
    };
    let resp = sync("external_id=alice&email=alice%40example.test&groups=staff")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["id"], id);
    assert_eq!(forum.syncs()[0]["groups"], "staff");
    let loose = "external_id=alice&name=a>>>";
    assert!(STANDARD.encode(loose).contains('+'));
    assert_eq!(sync(loose).await.unwrap().status(), 422);
    assert_eq!(forum.syncs().len(), 1);
}

#[tokio::test]
async fn forum_admin_log_out_ends_the_forum_session() {
    let forum = TestForum::start(ForumOptions::default()).await;
    forum.set_connect_url(Url::parse("http://127.0.0.1:9/sso").unwrap());
    let browser = Browser::new();
    let nonce = forum_nonce(&forum, &browser).await;
    let answer = answer_query(
        &forum.sso_secret(),
        &format!("nonce={nonce}&external_id=dave&email=dave%40example.test"),
    );
    assert_eq!(
        browser.get(sso_login_url(&forum, &answer)).await.status(),
        302
    );
    let id = forum.current_user(&browser).await.expect("logged in");

    let resp = http()
        .post(forum.url(&format!("/admin/users/{id}/log_out")))
        .header("Api-Key", forum.api_key())
        .header("Api-Username", forum.api_username())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        forum
            .wait_until(Duration::from_secs(1), |f| f.successful_log_outs()
                == vec![id])
            .await
    );
    assert_eq!(forum.current_user(&browser).await, None);
}
