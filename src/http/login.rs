//! The login's HTTP edge: `GET /sso` and `GET /callback`. Each handler extracts, calls the
//! login service ([`crate::login`]) once and responds; the cookies are set here.

use axum::extract::{Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use tower_cookies::Cookies;

use crate::error::AppError;
use crate::http::client_ip::ClientAddr;
use crate::http::found;
use crate::http::rate_limit::FailureBudget;
use crate::http::state::AppState;
use crate::login::CallbackParams;

/// Whether a refusal is of the kind abuse produces (forged or replayed requests), which the
/// [`FailureBudget`] counts; an expired login, the IdP's own refusal and a `return_sso_url`
/// the forum signed for another host (a misconfigured forum, not a forgery) are not.
fn is_abuse_kind(error: &AppError) -> bool {
    matches!(
        error,
        AppError::Connect(_) | AppError::UnknownLoginState | AppError::BadCallback(_)
    )
}

/// Charges an abuse-kind refusal to the client's budget; past the budget the answer is 429.
fn refuse(
    error: AppError,
    budget: &FailureBudget,
    client: ClientAddr,
) -> Result<Response, AppError> {
    if is_abuse_kind(&error) && !budget.charge(client.0) {
        metrics::counter!("bridge_rate_limited_total", "limit" => "failures").increment(1);
        return Ok((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            "Too many refused requests from this address; try again in a minute.\n",
        )
            .into_response());
    }
    Err(error)
}

/// `GET /sso?sso=..&sig=..`: verify Discourse's request, remember the login in a cookie and
/// send the browser to the IdP.
pub async fn start(
    State(state): State<AppState>,
    client: ClientAddr,
    cookies: Cookies,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let started = match state
        .login
        .start(query.as_deref().unwrap_or(""), state.clock.now())
    {
        Ok(started) => started,
        Err(error) => return refuse(error, &state.failures, client),
    };
    state.cookies.store_login(&cookies, &started.login);
    found(started.redirect.as_str())
}

/// `GET /callback?code=..&state=..`: finish the login this browser's cookie holds for the
/// returned `state` and send the signed answer to Discourse. Not rate limited: only a refusal
/// for a missing or unknown login is charged to the [`FailureBudget`]. A refusal is kept in the
/// browser for that `state`, so reloading the (spent) callback URL shows the same reason again.
pub async fn callback(
    State(state): State<AppState>,
    client: ClientAddr,
    cookies: Cookies,
    Query(params): Query<CallbackParams>,
) -> Result<Response, AppError> {
    let returned = params.state.clone();
    let in_flight = returned
        .as_deref()
        .and_then(|returned| state.cookies.take_login(&cookies, returned));
    if in_flight.is_none()
        && let Some(denial) = returned
            .as_deref()
            .and_then(|returned| state.cookies.kept_denial(&cookies, returned))
    {
        tracing::debug!("access-denied page shown again");
        return Err(AppError::Denied(denial));
    }
    let finished = match state
        .login
        .finish(in_flight, params, state.clock.now())
        .await
    {
        Ok(finished) => finished,
        Err(AppError::Denied(denial)) => {
            if let Some(returned) = returned.as_deref() {
                state.cookies.keep_denial(&cookies, returned, &denial);
            }
            return Err(AppError::Denied(denial));
        }
        Err(error) => return refuse(error, &state.failures, client),
    };
    state
        .cookies
        .set_session(&cookies, &finished.session_id, finished.session_lifetime);
    found(&finished.redirect)
}
