//! The one error type of the request path and its single conversion into a response.
//!
//! Handlers return [`AppError`]. Its `IntoResponse` sets the status and attaches an
//! [`ErrorPage`] extension; the `error_pages` middleware (in `http`) then logs the cause once,
//! with the request id, and renders `templates/error.html`. Keeping the rendering in the
//! middleware gives it the request id and the templates without threading them through every
//! handler, and keeps the cause (which may name internal details) out of the page.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::discourse::connect::ConnectError;

/// Everything that can go wrong while handling a browser request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Discourse's signed request is malformed or its signature does not match.
    #[error("DiscourseConnect request rejected: {0}")]
    Connect(#[from] ConnectError),
    /// The signed `return_sso_url` points somewhere other than the configured forum: the
    /// forum's and the bridge's idea of the forum's address differ (`discourse.url`).
    #[error("return_sso_url {received:?} is not the configured forum's {expected}")]
    ForeignReturnUrl { expected: String, received: String },
    /// The callback's `state` has no live login cookie in this browser, or was used already.
    #[error("login state unknown, already used, or started in another browser")]
    UnknownLoginState,
    /// The login took longer than `session.login_timeout`.
    #[error("login started more than the allowed {} s ago", .timeout.as_secs())]
    LoginExpired { timeout: std::time::Duration },
    /// The callback request itself is malformed (no code, no state, ...).
    #[error("malformed callback: {0}")]
    BadCallback(&'static str),
    /// The IdP answered the authorization request with an error (e.g. `access_denied`).
    #[error("identity provider returned error `{code}`")]
    IdpRefused { code: String },
    /// The IdP's token endpoint refused the code (`invalid_grant`: expired, already used or
    /// issued for another client, RFC 6749 §5.2): this login cannot finish, a new one can.
    #[error("identity provider refused the authorization code: {0}")]
    CodeRejected(String),
    /// The mapping or access policy refused this user.
    #[error("denied by {rule}")]
    Denied {
        rule: String,
        message: String,
        contact: Option<String>,
    },
    /// The IdP could not be reached or timed out.
    #[error("identity provider unreachable: {0}")]
    IdpUnavailable(String),
    /// The IdP answered, but with something the bridge must not accept (bad token, bad JSON).
    #[error("identity provider answered with an invalid response: {0}")]
    IdpInvalid(String),
    /// Discovery has not succeeded yet.
    #[error("the identity provider's configuration has not been loaded yet")]
    NotReady,
    /// No route for this path.
    #[error("no page at this path")]
    NotFound,
    /// The path exists, not for this method.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// The client's rate limit is used up; it may try again after `retry_after` seconds.
    #[error("rate limit exceeded")]
    RateLimited { retry_after: u64 },
    /// A bug or an environment failure on our side.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a person may do next from an error page, besides going back to the forum's home page
/// (which every page offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Only back to the forum: logging in again would not help (or would loop).
    BackOnly,
    /// "Try again": the failure is temporary.
    TryAgain,
    /// "Log in again": this login cannot finish, a fresh one can.
    LogInAgain,
    /// "Use another account": end the IdP session, then log in again.
    SwitchAccount,
}

/// What the error page shows. Attached to the response so the middleware can render it.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    /// The page's message stem in `locales/*.ftl` (`<kind>-title`, `<kind>-message`).
    pub kind: &'static str,
    /// The mapping's refusal reason (configured text, shown as is), for denials.
    pub reason: Option<String>,
    /// Whom to ask, when the operator configured it.
    pub contact: Option<String>,
    /// Minutes a login may take, for the "took too long" page.
    pub minutes: Option<u64>,
    /// Seconds until a retry can succeed (`Retry-After`), for 429.
    pub retry_after: Option<u64>,
    /// The next step the page offers.
    pub next: NextStep,
    /// Machine-readable reason, used in logs and metrics.
    pub reason_code: &'static str,
    /// The full cause, for the log line only.
    pub cause: String,
}

impl AppError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Connect(e) if e.is_bad_signature() => StatusCode::FORBIDDEN,
            AppError::Connect(_)
            | AppError::ForeignReturnUrl { .. }
            | AppError::UnknownLoginState
            | AppError::LoginExpired { .. }
            | AppError::BadCallback(_)
            | AppError::CodeRejected(_) => StatusCode::BAD_REQUEST,
            AppError::IdpRefused { .. } | AppError::Denied { .. } => StatusCode::FORBIDDEN,
            AppError::IdpUnavailable(_) | AppError::IdpInvalid(_) => StatusCode::BAD_GATEWAY,
            AppError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, low-cardinality reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AppError::Connect(e) if e.is_bad_signature() => "bad_signature",
            AppError::Connect(_) => "malformed_request",
            AppError::ForeignReturnUrl { .. } => "foreign_return_url",
            AppError::UnknownLoginState => "unknown_state",
            AppError::LoginExpired { .. } => "login_expired",
            AppError::BadCallback(_) => "malformed_callback",
            AppError::IdpRefused { .. } => "idp_refused",
            AppError::CodeRejected(_) => "code_rejected",
            AppError::Denied { .. } => "denied",
            AppError::IdpUnavailable(_) => "idp_unavailable",
            AppError::IdpInvalid(_) => "idp_invalid",
            AppError::NotReady => "not_ready",
            AppError::NotFound => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Internal(_) => "internal",
        }
    }

    /// The page's message stem and next step.
    fn kind(&self) -> (&'static str, NextStep) {
        match self {
            AppError::Connect(e) if e.is_bad_signature() => ("bad-signature", NextStep::BackOnly),
            AppError::Connect(_) => ("bad-request", NextStep::BackOnly),
            AppError::ForeignReturnUrl { .. } => ("forum-mismatch", NextStep::BackOnly),
            AppError::UnknownLoginState => ("login-unknown", NextStep::LogInAgain),
            AppError::LoginExpired { .. } => ("login-expired", NextStep::LogInAgain),
            AppError::BadCallback(_) => ("bad-callback", NextStep::LogInAgain),
            AppError::CodeRejected(_) => ("login-rejected", NextStep::LogInAgain),
            AppError::IdpRefused { code } if code == "access_denied" => {
                ("login-cancelled", NextStep::BackOnly)
            }
            AppError::IdpRefused { .. } => ("login-refused", NextStep::BackOnly),
            AppError::Denied { .. } => ("denied", NextStep::SwitchAccount),
            AppError::IdpUnavailable(_) | AppError::IdpInvalid(_) => {
                ("idp-unavailable", NextStep::TryAgain)
            }
            AppError::NotReady => ("not-ready", NextStep::TryAgain),
            AppError::NotFound => ("not-found", NextStep::BackOnly),
            AppError::MethodNotAllowed => ("method-not-allowed", NextStep::BackOnly),
            AppError::RateLimited { .. } => ("rate-limited", NextStep::BackOnly),
            AppError::Internal(_) => ("internal", NextStep::TryAgain),
        }
    }

    /// What the error page shows for this error.
    pub fn page(&self) -> ErrorPage {
        let (kind, next) = self.kind();
        let (reason, contact) = match self {
            AppError::Denied {
                message, contact, ..
            } => (Some(message.clone()), contact.clone()),
            _ => (None, None),
        };
        ErrorPage {
            status: self.status(),
            kind,
            reason,
            contact,
            minutes: match self {
                AppError::LoginExpired { timeout } => Some(timeout.as_secs().div_ceil(60).max(1)),
                _ => None,
            },
            retry_after: match self {
                AppError::RateLimited { retry_after } => Some(*retry_after),
                _ => None,
            },
            next,
            reason_code: self.reason(),
            cause: self.to_string(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let page = self.page();
        let mut response = page.status.into_response();
        response.extensions_mut().insert(page);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_kind_has_messages_in_every_bundled_language() {
        let localizer = crate::i18n::Localizer::bundled().unwrap();
        for kind in crate::pages::ERROR_KINDS {
            for language in ["en", "de", "es", "fr"] {
                for suffix in ["-title", "-message"] {
                    let id = format!("{kind}{suffix}");
                    assert!(localizer.has_message(language, &id), "{language} {id}");
                }
            }
        }
    }

    #[test]
    fn only_temporary_failures_offer_try_again_and_only_denials_switch_accounts() {
        use std::time::Duration;
        let cases = [
            (AppError::UnknownLoginState, 400, NextStep::LogInAgain),
            (
                AppError::LoginExpired {
                    timeout: Duration::from_secs(20),
                },
                400,
                NextStep::LogInAgain,
            ),
            (
                AppError::CodeRejected("invalid_grant".into()),
                400,
                NextStep::LogInAgain,
            ),
            (
                AppError::IdpRefused {
                    code: "access_denied".into(),
                },
                403,
                NextStep::BackOnly,
            ),
            (
                AppError::Denied {
                    rule: "access.allowed_groups".into(),
                    message: "no".into(),
                    contact: None,
                },
                403,
                NextStep::SwitchAccount,
            ),
            (
                AppError::ForeignReturnUrl {
                    expected: "https://a/session/sso_login".into(),
                    received: "https://b/session/sso_login".into(),
                },
                400,
                NextStep::BackOnly,
            ),
            (
                AppError::IdpUnavailable("timeout".into()),
                502,
                NextStep::TryAgain,
            ),
            (AppError::NotFound, 404, NextStep::BackOnly),
            (AppError::MethodNotAllowed, 405, NextStep::BackOnly),
            (
                AppError::RateLimited { retry_after: 2 },
                429,
                NextStep::BackOnly,
            ),
        ];
        for (error, status, next) in cases {
            let page = error.page();
            assert_eq!(page.status.as_u16(), status, "{error}");
            assert_eq!(page.next, next, "{error}");
        }
        let page = AppError::LoginExpired {
            timeout: Duration::from_secs(20),
        }
        .page();
        assert_eq!(page.minutes, Some(1));
    }
}
