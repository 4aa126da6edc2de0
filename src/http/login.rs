//! The login's HTTP edge: `GET /sso` and `GET /callback`. Each handler extracts, calls the
//! login service ([`crate::login`]) once and responds; the cookies are set here.

use axum::extract::{Query, RawQuery, State};
use axum::response::Response;
use tower_cookies::Cookies;

use crate::error::AppError;
use crate::http::found;
use crate::http::state::AppState;
use crate::login::CallbackParams;

/// `GET /sso?sso=..&sig=..`: verify Discourse's request, remember the login in a cookie and
/// send the browser to the IdP.
pub async fn start(
    State(state): State<AppState>,
    cookies: Cookies,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let started = state
        .login
        .start(query.as_deref().unwrap_or(""), state.clock.now())?;
    state.cookies.store_login(&cookies, &started.login);
    found(started.redirect.as_str())
}

/// `GET /callback?code=..&state=..`: finish the login this browser's cookie holds for the
/// returned `state` and send the signed answer to Discourse. A refusal is kept in the browser
/// for that `state`, so reloading the (spent) callback URL shows the same reason again.
pub async fn callback(
    State(state): State<AppState>,
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
        Err(other) => return Err(other),
    };
    state
        .cookies
        .set_session(&cookies, &finished.session_id, finished.session_lifetime);
    found(&finished.redirect)
}
