//! The login: `GET /sso` (Discourse's signed request in, authorization request out) and
//! `GET /callback` (authorization response in, signed DiscourseConnect answer out), following
//! DiscourseConnect and OpenID Connect Core §3.1 (authorization code flow with PKCE).

use axum::extract::{Query, RawQuery, State};
use axum::response::Response;
use openidconnect::Nonce;
use serde::Deserialize;
use tower_cookies::Cookies;

use crate::app::AppState;
use crate::config::UserinfoMode;
use crate::discourse::connect::{Field, SsoRequest};
use crate::error::AppError;
use crate::flow::{self, LoginInFlight};
use crate::http::found;
use crate::mapping::Outcome;
use crate::oidc::provider::{ProviderError, merge_claims};

/// True when `url` is exactly the forum's `/session/sso_login` (same scheme, host, port and
/// path; no user info, query or fragment). Anything else would make the bridge an open redirect.
pub fn is_forum_sso_login(url: &str, expected: &url::Url) -> bool {
    // Discourse sends the URL in the serialization `Url` itself produces: skip the parse then.
    if url == expected.as_str() {
        return true;
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    parsed.scheme() == expected.scheme()
        && parsed.host_str() == expected.host_str()
        && parsed.port_or_known_default() == expected.port_or_known_default()
        && parsed.path() == expected.path()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none()
}

/// `GET /sso?sso=..&sig=..`: verify Discourse's request, remember the login in a cookie and
/// send the browser to the IdP.
pub async fn start(
    State(state): State<AppState>,
    cookies: Cookies,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let request = SsoRequest::verify(query.as_deref().unwrap_or(""), &state.connect_secret)?;
    if !is_forum_sso_login(&request.return_sso_url, &state.sso_login_url) {
        return Err(AppError::ForeignReturnUrl);
    }
    let provider = state.provider()?;
    let authorization = provider.authorization_request();
    let login = LoginInFlight {
        discourse_nonce: request.nonce,
        return_sso_url: request.return_sso_url,
        state: authorization.state.secret().clone(),
        oidc_nonce: authorization.nonce.secret().clone(),
        pkce_verifier: authorization.pkce_verifier.secret().clone(),
        created_at: chrono::Utc::now().timestamp(),
    };
    flow::store(&cookies, &state.cookie_key, &state.cookie_policy, &login);
    metrics::counter!("bridge_logins_started_total").increment(1);
    // The request line (`/sso` → 302) already records the start at `info`.
    tracing::debug!("login started");
    found(authorization.url.as_str())
}

/// The IdP's answer to the authorization request (RFC 6749 §4.1.2, RFC 9207 `iss`).
#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

impl From<ProviderError> for AppError {
    fn from(err: ProviderError) -> Self {
        match err {
            ProviderError::Unavailable(cause) => AppError::IdpUnavailable(cause),
            ProviderError::Invalid(cause) => AppError::IdpInvalid(cause),
        }
    }
}

/// Keeps an IdP-supplied error code printable and short before it reaches a page or a log.
fn sanitize_error_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// `GET /callback?code=..&state=..`: check the state against this browser's login cookie, redeem
/// the code, validate the ID token, map the claims and answer Discourse.
#[tracing::instrument(name = "callback", skip_all, fields(sub, external_id))]
pub async fn callback(
    State(state): State<AppState>,
    cookies: Cookies,
    Query(params): Query<CallbackParams>,
) -> Result<Response, AppError> {
    let now = chrono::Utc::now();
    let returned_state = params
        .state
        .as_deref()
        .ok_or(AppError::BadCallback("no state"))?;
    let login = flow::take(&cookies, &state.cookie_key, returned_state)
        .ok_or(AppError::UnknownLoginState)?;
    let timeout = state.config.session.login_timeout;
    let valid_until = login.created_at + i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
    if !state
        .used_states
        .mark_used(&login.state, now.timestamp(), valid_until)
    {
        return Err(AppError::UnknownLoginState);
    }
    if login.is_expired(now.timestamp(), timeout) {
        return Err(AppError::LoginExpired);
    }
    if let Some(error) = params.error.as_deref() {
        return Err(AppError::IdpRefused {
            code: sanitize_error_code(error),
        });
    }
    let provider = state.provider()?;
    if let Some(iss) = params.iss.as_deref()
        && iss != provider.issuer().as_str()
    {
        return Err(AppError::IdpInvalid(
            "authorization response names another issuer".into(),
        ));
    }
    let code = params.code.ok_or(AppError::BadCallback("no code"))?;

    let tokens = provider.exchange_code(code, login.pkce_verifier).await?;
    let mut verified = provider
        .verify_id_token(&tokens.id_token, &Nonce::new(login.oidc_nonce), now)
        .await?;
    tracing::Span::current().record("sub", verified.subject.as_str());
    let mapper = state.mapper();
    let fetch_userinfo = match provider.userinfo_mode() {
        UserinfoMode::Always => true,
        UserinfoMode::Never => false,
        UserinfoMode::Auto => match mapper.first_absent_claim(&verified.claims) {
            Some(claim) => {
                tracing::debug!(
                    claim,
                    "the ID token lacks a mapped claim: fetching userinfo"
                );
                true
            }
            None => false,
        },
    };
    let claims = if fetch_userinfo {
        let userinfo = provider
            .userinfo(tokens.access_token, &verified.subject)
            .await?;
        merge_claims(&verified.claims, userinfo)
    } else {
        std::mem::take(&mut verified.claims)
    };

    let mapped = match mapper.map(&claims) {
        Outcome::Allowed(mapped) => mapped,
        Outcome::Denied(denial) => {
            metrics::counter!("bridge_logins_denied_total", "rule" => denial.rule.clone())
                .increment(1);
            return Err(AppError::Denied {
                rule: denial.rule,
                message: denial.message,
                contact: denial.contact,
            });
        }
    };
    let mut payload = mapped.payload;
    payload.set(Field::Nonce, login.discourse_nonce);
    let external_id = payload
        .get(Field::ExternalId)
        .unwrap_or_default()
        .to_owned();
    tracing::Span::current().record("external_id", external_id.as_str());
    state
        .record_login(
            provider.issuer().as_str(),
            &verified,
            &external_id,
            &cookies,
            now,
        )
        .await;

    let signed = payload.sign(&state.connect_secret);
    metrics::counter!("bridge_logins_completed_total").increment(1);
    tracing::info!("login completed");
    found(&signed.redirect_url(&login.return_sso_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_forums_exact_sso_login_url_is_accepted() {
        let expected = url::Url::parse("https://forum.example.com/session/sso_login").unwrap();
        let ok = [
            "https://forum.example.com/session/sso_login",
            "https://forum.example.com:443/session/sso_login",
        ];
        for url in ok {
            assert!(is_forum_sso_login(url, &expected), "{url}");
        }
        let bad = [
            "http://forum.example.com/session/sso_login",
            "https://evil.example.com/session/sso_login",
            "https://forum.example.com.evil.com/session/sso_login",
            "https://forum.example.com:8443/session/sso_login",
            "https://forum.example.com/session/sso_login/../x",
            "https://forum.example.com/session/sso_loginx",
            "https://forum.example.com/other",
            "https://user@forum.example.com/session/sso_login",
            "https://forum.example.com/session/sso_login?next=https://evil",
            "https://forum.example.com/session/sso_login#x",
            "//evil.example.com/session/sso_login",
            "/session/sso_login",
            "",
        ];
        for url in bad {
            assert!(!is_forum_sso_login(url, &expected), "{url}");
        }
    }

    #[test]
    fn idp_error_codes_are_sanitized() {
        assert_eq!(sanitize_error_code("access_denied"), "access_denied");
        assert_eq!(sanitize_error_code("<script>x"), "scriptx");
        assert_eq!(sanitize_error_code(&"a".repeat(100)).len(), 64);
    }
}
