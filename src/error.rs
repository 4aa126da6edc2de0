//! The one error type of the browser-facing request path ([`AppError`]) and its single
//! conversion into a response.
//!
//! Handlers return [`AppError`]. Its `IntoResponse` sets the status and attaches an
//! [`ErrorPage`] extension; `http::middleware::finish_response` then logs the cause once, with
//! the request id, and renders `templates/error.html`. Keeping the rendering in the middleware
//! gives it the request id and the templates without threading them through every handler, and
//! keeps the cause (which may name internal details) out of the page. [`AppError::describe`] is
//! the one place that says, per error, the status, the reason, the page's messages (by id, in
//! `locales/*.ftl`) and the next step it offers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::discourse::connect::ConnectError;
use crate::mapping::Denial;
use crate::oidc::provider::{BoxError, ProviderError};
use crate::telemetry::Chain;

/// Everything that can go wrong while handling a browser request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Discourse's signed request is malformed or its signature does not match.
    #[error("DiscourseConnect request rejected")]
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
    /// The authorization response names another issuer than the discovered one (RFC 9207).
    #[error("authorization response names another issuer")]
    IssuerMismatch,
    /// The mapping or access policy refused this user.
    #[error("denied by {}", .0.rule)]
    Denied(Denial),
    /// The IdP could not be reached, or answered with something the bridge must not accept.
    #[error(transparent)]
    Idp(#[from] ProviderError),
    /// Discovery has not succeeded yet.
    #[error("identity provider discovery has not succeeded yet")]
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
    #[error("internal error: {what}")]
    Internal {
        what: &'static str,
        #[source]
        source: Option<BoxError>,
    },
}

impl From<Denial> for AppError {
    fn from(denial: Denial) -> Self {
        AppError::Denied(denial)
    }
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
    pub refusal: Option<String>,
    /// Whom to ask, when the operator configured it.
    pub contact: Option<String>,
    /// Minutes a login may take, for the "took too long" page.
    pub minutes: Option<u64>,
    /// Seconds until a retry can succeed (`Retry-After`), for 429.
    pub retry_after: Option<u64>,
    /// The next step the page offers.
    pub next: NextStep,
    /// Machine-readable reason, used in logs and metrics.
    pub reason: &'static str,
    /// The full cause with its sources, for the log line only.
    pub cause: String,
}

impl AppError {
    /// An internal error with what failed and, when there is one, why.
    pub fn internal(what: &'static str, source: impl Into<Option<BoxError>>) -> Self {
        AppError::Internal {
            what,
            source: source.into(),
        }
    }

    /// The HTTP status, the stable low-cardinality reason (for logs and metrics), the page's
    /// message stem and its next step, all from one match.
    pub fn describe(&self) -> ErrorPage {
        use NextStep as N;
        use StatusCode as S;
        let (status, reason, kind, next) = match self {
            AppError::Connect(e) if e.is_bad_signature() => {
                (S::FORBIDDEN, "bad_signature", "bad-signature", N::BackOnly)
            }
            AppError::Connect(_) => (
                S::BAD_REQUEST,
                "malformed_request",
                "bad-request",
                N::BackOnly,
            ),
            AppError::ForeignReturnUrl { .. } => (
                S::BAD_REQUEST,
                "foreign_return_url",
                "forum-mismatch",
                N::BackOnly,
            ),
            AppError::UnknownLoginState => (
                S::BAD_REQUEST,
                "unknown_state",
                "login-unknown",
                N::LogInAgain,
            ),
            AppError::LoginExpired { .. } => (
                S::BAD_REQUEST,
                "login_expired",
                "login-expired",
                N::LogInAgain,
            ),
            AppError::BadCallback(_) => (
                S::BAD_REQUEST,
                "malformed_callback",
                "bad-callback",
                N::LogInAgain,
            ),
            AppError::IdpRefused { code } if code == "access_denied" => {
                (S::FORBIDDEN, "idp_refused", "login-cancelled", N::BackOnly)
            }
            AppError::IdpRefused { .. } => {
                (S::FORBIDDEN, "idp_refused", "login-refused", N::BackOnly)
            }
            AppError::Denied(_) => (S::FORBIDDEN, "denied", "denied", N::SwitchAccount),
            AppError::Idp(ProviderError::CodeRejected { .. }) => (
                S::BAD_REQUEST,
                "code_rejected",
                "login-rejected",
                N::LogInAgain,
            ),
            AppError::Idp(e) if e.is_unavailable() => (
                S::BAD_GATEWAY,
                "idp_unavailable",
                "idp-unavailable",
                N::TryAgain,
            ),
            AppError::Idp(_) | AppError::IssuerMismatch => (
                S::BAD_GATEWAY,
                "idp_invalid",
                "idp-unavailable",
                N::TryAgain,
            ),
            AppError::NotReady => (
                S::SERVICE_UNAVAILABLE,
                "not_ready",
                "not-ready",
                N::TryAgain,
            ),
            AppError::NotFound => (S::NOT_FOUND, "not_found", "not-found", N::BackOnly),
            AppError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method-not-allowed",
                N::BackOnly,
            ),
            AppError::RateLimited { .. } => (
                S::TOO_MANY_REQUESTS,
                "rate_limited",
                "rate-limited",
                N::BackOnly,
            ),
            AppError::Internal { .. } => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "internal",
                N::TryAgain,
            ),
        };
        let (refusal, contact) = match self {
            AppError::Denied(denial) => (Some(denial.message.clone()), denial.contact.clone()),
            _ => (None, None),
        };
        ErrorPage {
            status,
            kind,
            refusal,
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
            reason,
            cause: Chain(self).to_string(),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.describe().status
    }

    /// A stable, low-cardinality reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        self.describe().reason
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let page = self.describe();
        let mut response = page.status.into_response();
        response.extensions_mut().insert(page);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_names_every_source_and_the_page_none() {
        let error = AppError::Idp(ProviderError::Unavailable {
            during: "token endpoint",
            source: "connection refused".into(),
        });
        let page = error.describe();
        assert_eq!(page.status, StatusCode::BAD_GATEWAY);
        assert_eq!(page.reason, "idp_unavailable");
        assert!(
            page.cause.ends_with(": connection refused"),
            "{}",
            page.cause
        );
        assert_eq!(page.kind, "idp-unavailable");
        assert_eq!(page.next, NextStep::TryAgain);
    }

    #[test]
    fn every_page_kind_has_messages_in_every_bundled_language() {
        let localizer = crate::i18n::Localizer::bundled().unwrap();
        for kind in crate::http::pages::ERROR_KINDS {
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
        let denial = Denial {
            rule: "access.allowed_groups".into(),
            message: "no".into(),
            contact: None,
            trace: Vec::new(),
            dropped_groups: Vec::new(),
        };
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
                AppError::Idp(ProviderError::CodeRejected {
                    source: "invalid_grant".into(),
                }),
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
            (AppError::Denied(denial), 403, NextStep::SwitchAccount),
            (
                AppError::ForeignReturnUrl {
                    expected: "https://a/session/sso_login".into(),
                    received: "https://b/session/sso_login".into(),
                },
                400,
                NextStep::BackOnly,
            ),
            (AppError::NotFound, 404, NextStep::BackOnly),
            (AppError::MethodNotAllowed, 405, NextStep::BackOnly),
            (
                AppError::RateLimited { retry_after: 2 },
                429,
                NextStep::BackOnly,
            ),
            (AppError::NotReady, 503, NextStep::TryAgain),
        ];
        for (error, status, next) in cases {
            let page = error.describe();
            assert_eq!(page.status.as_u16(), status, "{error}");
            assert_eq!(page.next, next, "{error}");
        }
        let page = AppError::LoginExpired {
            timeout: Duration::from_secs(20),
        }
        .describe();
        assert_eq!(page.minutes, Some(1));
    }

    #[test]
    fn a_bad_signature_is_403_and_other_connect_errors_400() {
        assert_eq!(
            AppError::Connect(ConnectError::SignatureMismatch).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            AppError::Connect(ConnectError::MissingSso).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
