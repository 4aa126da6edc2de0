//! Logout's HTTP edge: `POST /backchannel-logout` (Back-Channel Logout 1.0 §2.5, answers per
//! §2.8), `GET /logout`, `GET /switch-account` and `GET /logged-out` (RP-Initiated Logout 1.0).
//! Each handler extracts, calls the logout service ([`crate::logout`]) once and responds.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_cookies::Cookies;

use crate::error::AppError;
use crate::http::found;
use crate::http::state::AppState;
use crate::logout::{BackchannelError, LogoutStart};
use crate::telemetry::Chain;

/// `POST /backchannel-logout`: accept the form's logout token and answer `200 {}`.
pub async fn backchannel(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BackchannelError> {
    metrics::counter!("bridge_backchannel_received_total").increment(1);
    let token = logout_token_from_form(&headers, &body)?;
    state
        .logout
        .accept_backchannel(&token, state.clock.now())
        .await?;
    Ok(backchannel_answer(StatusCode::OK, serde_json::json!({})))
}

/// Reads exactly one `logout_token` from an `application/x-www-form-urlencoded` body (§2.5).
fn logout_token_from_form(headers: &HeaderMap, body: &[u8]) -> Result<String, BackchannelError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(BackchannelError::Invalid("content_type_not_form"));
    }
    let mut found = None;
    for (key, value) in url::form_urlencoded::parse(body) {
        if key == "logout_token" && found.replace(value.into_owned()).is_some() {
            return Err(BackchannelError::Invalid("repeated_logout_token"));
        }
    }
    found.ok_or(BackchannelError::Invalid("missing_logout_token"))
}

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

/// §2.8: 400 `invalid_request` for a request that is wrong, 5xx `temporarily_unavailable` when
/// the IdP may try again later. Logged and counted here, once.
impl IntoResponse for BackchannelError {
    fn into_response(self) -> Response {
        match &self {
            BackchannelError::Invalid(reason) => {
                metrics::counter!("bridge_backchannel_rejected_total", "reason" => *reason)
                    .increment(1);
                tracing::warn!(reason, "back-channel logout rejected");
                backchannel_answer(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": "invalid_request", "error_description": reason }),
                )
            }
            BackchannelError::NotReady => backchannel_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "error": "temporarily_unavailable" }),
            ),
            BackchannelError::Store(_) => {
                tracing::error!(error = %Chain(&self), "store unavailable for back-channel logout");
                backchannel_answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serde_json::json!({ "error": "temporarily_unavailable" }),
                )
            }
        }
    }
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
    let session_id = state.cookies.take_session(cookies);
    match state.logout.start(session_id, state.clock.now()).await? {
        LogoutStart::AtIdp {
            redirect,
            state: logout_state,
        } => {
            state.cookies.set_logout_state(cookies, &logout_state);
            if then_log_in {
                state.cookies.set_switch_account(cookies);
            }
            found(redirect.as_str())
        }
        LogoutStart::Done if then_log_in => {
            Ok(logged_out_page(state, headers, LoggedOut::SwitchManually))
        }
        LogoutStart::Done => Ok(logged_out_page(state, headers, LoggedOut::ForumOnly)),
    }
}

/// The IdP's return from RP-initiated logout.
#[derive(Debug, Deserialize)]
pub struct LoggedOutParams {
    state: Option<String>,
}

/// `GET /logged-out`: when the `state` we sent comes back, confirm the logout at the IdP (or,
/// for "Use another account", start a new login at the forum). Without it (a reload, a
/// bookmark, a forged link) the page still shows, claiming nothing about the IdP.
pub async fn finished(
    State(state): State<AppState>,
    cookies: Cookies,
    headers: HeaderMap,
    Query(params): Query<LoggedOutParams>,
) -> Result<Response, AppError> {
    let expected = state.cookies.take_logout_state(&cookies);
    let switch = state.cookies.take_switch_account(&cookies);
    if !state
        .logout
        .finished(expected.as_deref(), params.state.as_deref())
    {
        if params.state.is_some() {
            tracing::info!("logout return without this browser's state: nothing confirmed");
        }
        return Ok(logged_out_page(&state, &headers, LoggedOut::Unconfirmed));
    }
    if switch {
        tracing::info!("identity provider session ended: starting a login with another account");
        return found(state.forum_login_url.as_str());
    }
    Ok(logged_out_page(&state, &headers, LoggedOut::Everywhere))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Result<String, &'static str> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        logout_token_from_form(&headers, body.as_bytes()).map_err(|e| match e {
            BackchannelError::Invalid(reason) => reason,
            _ => "other",
        })
    }

    #[test]
    fn exactly_one_logout_token_is_read_from_the_form() {
        assert_eq!(form("logout_token=abc").as_deref(), Ok("abc"));
        assert_eq!(form("a=1&logout_token=x%2By&b=2").as_deref(), Ok("x+y"));
        assert_eq!(form(""), Err("missing_logout_token"));
        assert_eq!(
            form("logout_token=a&logout_token=b"),
            Err("repeated_logout_token")
        );
    }

    #[test]
    fn only_a_form_is_read() {
        let json = logout_token_from_form(&HeaderMap::new(), b"logout_token=abc");
        assert!(matches!(
            json,
            Err(BackchannelError::Invalid("content_type_not_form"))
        ));
    }
}
