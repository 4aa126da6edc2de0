//! Logout in both directions: `POST /backchannel-logout` (OpenID Connect Back-Channel Logout
//! 1.0 §2.5–§2.8: the IdP ends a session, the bridge relays it into Discourse's admin API) and
//! `GET /logout` + `GET /logged-out` (RP-Initiated Logout 1.0: Discourse's `logout_redirect`
//! sends the browser here and the bridge ends the IdP session too).

use std::str::FromStr as _;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openidconnect::core::CoreIdToken;
use openidconnect::{ClientId, CsrfToken, LogoutRequest, PostLogoutRedirectUrl};
use serde::Deserialize;
use tower_cookies::Cookies;

use crate::app::AppState;
use crate::error::AppError;
use crate::flow;
use crate::http::found;
use crate::oidc::logout_token::{self, LogoutTokenError, LogoutTokenRules};
use crate::store::{self, RelayJob, RelayReason};

/// A back-channel answer: JSON, never cached (§2.8).
fn backchannel_answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store"),
            ),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        axum::Json(body),
    )
        .into_response()
}

/// The store failed: 500, so the IdP may try again later (§2.8).
fn store_unavailable(error: &store::StoreError) -> Response {
    tracing::error!(error = %error, "store unavailable for back-channel logout");
    backchannel_answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        serde_json::json!({ "error": "temporarily_unavailable" }),
    )
}

fn invalid_request(description: &str) -> Response {
    metrics::counter!("bridge_backchannel_rejected_total", "reason" => description.to_owned())
        .increment(1);
    tracing::warn!(reason = description, "back-channel logout rejected");
    backchannel_answer(
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": "invalid_request", "error_description": description }),
    )
}

/// Reads exactly one `logout_token` from a form body.
fn logout_token_param(body: &[u8]) -> Result<String, &'static str> {
    let mut found = None;
    for (key, value) in url::form_urlencoded::parse(body) {
        if key == "logout_token" {
            if found.is_some() {
                return Err("repeated_logout_token");
            }
            found = Some(value.into_owned());
        }
    }
    found.ok_or("missing_logout_token")
}

/// `POST /backchannel-logout`: validate the logout token, remember its `jti`, find the Discourse
/// users of that IdP session and queue their log-out. Answers fast; delivery is in the background.
pub async fn backchannel(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    metrics::counter!("bridge_backchannel_received_total").increment(1);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return invalid_request("content_type_not_form");
    }
    let token = match logout_token_param(&body) {
        Ok(token) => token,
        Err(reason) => return invalid_request(reason),
    };
    let Ok(provider) = state.provider() else {
        return backchannel_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "temporarily_unavailable" }),
        );
    };
    let config = &state.config;
    let rules = LogoutTokenRules::from_config(
        provider.issuer().as_str(),
        provider.signing_algs().to_vec(),
        &config.oidc,
        &config.logout,
    );
    let now = chrono::Utc::now();
    let keys = provider.keys().await;
    let validated = match logout_token::validate(&token, &keys, &rules, now) {
        Err(LogoutTokenError::UnknownKey) => match provider.refresh_keys().await {
            Ok(true) => logout_token::validate(&token, &*provider.keys().await, &rules, now),
            _ => Err(LogoutTokenError::UnknownKey),
        },
        other => other,
    };
    let logout = match validated {
        Ok(logout) => logout,
        Err(e) => return invalid_request(e.code()),
    };
    let horizon = logout.replay_horizon(&rules);
    let (iss, jti) = (logout.iss.clone(), logout.jti.clone());
    let fresh = store::blocking(&state.store, move |s| s.remember_jti(&iss, &jti, horizon)).await;
    match fresh {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(jti = %logout.jti, "replayed logout token ignored");
            return backchannel_answer(StatusCode::OK, serde_json::json!({}));
        }
        Err(e) => return store_unavailable(&e),
    }
    // Logins still in the group commit's queue must be found too.
    state.logins.flush().await;
    let (iss, sub, sid) = (logout.iss.clone(), logout.sub.clone(), logout.sid.clone());
    let external_ids = match store::blocking(&state.store, move |s| {
        s.resolve_external_ids(&iss, sub.as_deref(), sid.as_deref())
    })
    .await
    {
        Ok(ids) => ids,
        Err(e) => return store_unavailable(&e),
    };
    tracing::info!(
        sub = logout.sub.as_deref().unwrap_or(""),
        sid_present = logout.sid.is_some(),
        users = external_ids.len(),
        "back-channel logout accepted"
    );
    match &state.relay {
        Some(relay) => {
            for external_id in external_ids {
                let job = RelayJob::new(external_id, RelayReason::BackchannelLogout, now);
                if let Err(e) = relay.enqueue(job).await {
                    return store_unavailable(&e);
                }
            }
        }
        None if !external_ids.is_empty() => {
            tracing::warn!(
                "logout relay is off (no discourse.api_key/api_username): Discourse sessions stay"
            );
        }
        None => {}
    }
    backchannel_answer(StatusCode::OK, serde_json::json!({}))
}

/// Name of the cookie carrying the RP-initiated logout `state` to `/logged-out`.
const LOGOUT_STATE_COOKIE: &str = "bridge_logout_state";
/// Name of the cookie telling `/logged-out` to start a new login ("Use another account").
const SWITCH_ACCOUNT_COOKIE: &str = "bridge_switch_account";
/// "Use another account" on the access-denied page.
pub const SWITCH_ACCOUNT_PATH: &str = "/switch-account";

/// What the logged-out page says.
#[derive(Debug, Clone, Copy)]
enum LoggedOut {
    /// The IdP confirmed the end of its session (our `state` came back).
    Everywhere,
    /// Only the forum (the IdP has no end-session endpoint).
    ForumOnly,
    /// A reload or a bookmark: nothing to confirm, nothing claimed beyond the forum.
    Unconfirmed,
    /// "Use another account" without an end-session endpoint: the person must log out at the
    /// IdP themselves.
    SwitchManually,
}

fn logged_out_page(state: &AppState, headers: &HeaderMap, what: LoggedOut) -> Response {
    let message = match what {
        LoggedOut::Everywhere => "logged-out-everywhere",
        LoggedOut::ForumOnly => "logged-out-forum",
        LoggedOut::Unconfirmed => "logged-out-unconfirmed",
        LoggedOut::SwitchManually => "switch-account-manual",
    };
    let lang = state.pages.language(headers);
    state.pages.respond(
        "logged_out.html",
        StatusCode::OK,
        &lang,
        minijinja::context! { message => message },
    )
}

/// `GET /logout` (Discourse's `logout_redirect`): forget the bridge session and, when the IdP
/// supports it, send the browser to its `end_session_endpoint` with `id_token_hint`.
pub async fn start(
    State(state): State<AppState>,
    cookies: Cookies,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    end_sessions(&state, &cookies, &headers, false).await
}

/// `GET /switch-account` ("Use another account" on the access-denied page): like `/logout`,
/// and once the IdP has ended its session `/logged-out` starts a new login at the forum, so the
/// IdP asks which account to use instead of logging the same one in silently again.
pub async fn switch_account(
    State(state): State<AppState>,
    cookies: Cookies,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    end_sessions(&state, &cookies, &headers, true).await
}

async fn end_sessions(
    state: &AppState,
    cookies: &Cookies,
    headers: &HeaderMap,
    then_log_in: bool,
) -> Result<Response, AppError> {
    let cookies = cookies.clone();
    let now = chrono::Utc::now();
    let session = match flow::take_session_id(&cookies, &state.cookie_key) {
        Some(id) => {
            state.logins.flush().await;
            store::blocking(&state.store, move |s| s.take_session(&id, now))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not read the bridge session");
                    None
                })
        }
        None => None,
    };
    let provider = state.provider().ok();
    let end_session = provider
        .as_ref()
        .filter(|_| state.config.logout.rp_initiated)
        .and_then(|p| p.end_session_endpoint().cloned());
    let Some(end_session) = end_session else {
        tracing::info!("logged out (no IdP end-session endpoint)");
        let what = if then_log_in {
            LoggedOut::SwitchManually
        } else {
            LoggedOut::ForumOnly
        };
        return Ok(logged_out_page(state, headers, what));
    };
    let post_logout = PostLogoutRedirectUrl::new(state.config.post_logout_url().to_string())
        .map_err(|e| AppError::Internal(format!("post-logout URL: {e}")))?;
    let logout_state = CsrfToken::new_random();
    let mut request = LogoutRequest::from(end_session)
        .set_client_id(ClientId::new(state.config.oidc.client_id.clone()))
        .set_post_logout_redirect_uri(post_logout)
        .set_state(logout_state.clone());
    if let Some(hint) = session
        .as_ref()
        .and_then(|s| CoreIdToken::from_str(&s.id_token).ok())
    {
        request = request.set_id_token_hint(&hint);
    }
    flow::store_logout_state(
        &cookies,
        &state.cookie_key,
        &state.cookie_policy,
        LOGOUT_STATE_COOKIE,
        logout_state.secret(),
    );
    if then_log_in {
        flow::store_logout_state(
            &cookies,
            &state.cookie_key,
            &state.cookie_policy,
            SWITCH_ACCOUNT_COOKIE,
            "1",
        );
    }
    tracing::info!(
        sub = session.as_ref().map_or("", |s| s.sub.as_str()),
        hint = session.is_some(),
        "logging out at the identity provider"
    );
    found(request.http_get_url().as_str())
}

/// The IdP's return from RP-initiated logout.
#[derive(Debug, Deserialize)]
pub struct LoggedOutParams {
    state: Option<String>,
}

/// `GET /logged-out`: when the `state` we sent comes back, confirm the logout at the IdP (or,
/// for "Use another account", start a new login at the forum). Without it (a reload, a
/// bookmark, a forged link) the page still shows, claiming nothing about the IdP: there is
/// nothing to refuse on a page that only informs.
pub async fn finished(
    State(state): State<AppState>,
    cookies: Cookies,
    headers: HeaderMap,
    Query(params): Query<LoggedOutParams>,
) -> Result<Response, AppError> {
    let expected = flow::take_logout_state(&cookies, &state.cookie_key, LOGOUT_STATE_COOKIE);
    let switch = flow::take_logout_state(&cookies, &state.cookie_key, SWITCH_ACCOUNT_COOKIE);
    let matches = match (expected.as_deref(), params.state.as_deref()) {
        (Some(expected), Some(returned)) => flow::constant_time_eq(expected, returned),
        _ => false,
    };
    if !matches {
        if params.state.is_some() {
            tracing::info!("logout return without this browser's state: nothing confirmed");
        }
        return Ok(logged_out_page(&state, &headers, LoggedOut::Unconfirmed));
    }
    if switch.is_some() {
        tracing::info!("identity provider session ended: starting a login with another account");
        return found(&state.forum_login_url());
    }
    Ok(logged_out_page(&state, &headers, LoggedOut::Everywhere))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_logout_token_is_read_from_the_form() {
        assert_eq!(
            logout_token_param(b"logout_token=abc").as_deref(),
            Ok("abc")
        );
        assert_eq!(
            logout_token_param(b"a=1&logout_token=x%2By&b=2").as_deref(),
            Ok("x+y")
        );
        assert_eq!(logout_token_param(b""), Err("missing_logout_token"));
        assert_eq!(
            logout_token_param(b"logout_token=a&logout_token=b"),
            Err("repeated_logout_token")
        );
    }
}
