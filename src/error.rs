//! The one error type of the browser-facing request path ([`AppError`]) and its single
//! conversion into a response.
//!
//! Handlers return [`AppError`]. Its `IntoResponse` sets the status and attaches an
//! [`ErrorPage`] extension; `http::middleware::finish_response` then logs the cause once, with
//! the request id, and renders `templates/error.html`. Keeping the rendering in the middleware
//! gives it the request id and the templates without threading them through every handler, and
//! keeps the cause (which may name internal details) out of the page. [`AppError::describe`] is
//! the one place that says, per error, the status, the reason and what the page shows.

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
    /// The signed `return_sso_url` points somewhere other than the configured forum.
    #[error("return_sso_url is not the configured forum's /session/sso_login")]
    ForeignReturnUrl,
    /// The callback's `state` has no live login cookie in this browser, or was used already.
    #[error("login state unknown, already used, or started in another browser")]
    UnknownLoginState,
    /// The login took longer than `session.login_timeout`.
    #[error("login started more than the allowed time ago")]
    LoginExpired,
    /// The IdP's return from RP-initiated logout carries no or the wrong `state`.
    #[error("logout return without the state this browser was sent with")]
    LogoutStateMismatch,
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

/// What the error page shows. Attached to the response so the middleware can render it.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    /// Short headline for the person in front of the browser.
    pub title: &'static str,
    /// What happened and what to do next; never contains secrets or internal detail.
    pub message: String,
    /// Whom to ask, when the operator configured it.
    pub contact: Option<String>,
    /// Machine-readable reason, used in logs and metrics.
    pub reason: &'static str,
    /// The full cause with its sources, for the log line only.
    pub cause: String,
}

/// Page texts shared by several errors.
const TRY_AGAIN: &str =
    "This login link is not valid. Please go back to the forum and log in again.";
const IDP_UNAVAILABLE: &str = "The identity provider could not be reached or gave an invalid \
     answer. Please try again in a moment.";

impl AppError {
    /// An internal error with what failed and, when there is one, why.
    pub fn internal(what: &'static str, source: impl Into<Option<BoxError>>) -> Self {
        AppError::Internal {
            what,
            source: source.into(),
        }
    }

    /// The HTTP status, the stable low-cardinality reason (for logs and metrics) and the page,
    /// all from one match.
    pub fn describe(&self) -> ErrorPage {
        use StatusCode as S;
        let (status, reason, title, message, contact): (_, _, _, String, _) = match self {
            AppError::Connect(e) if e.is_bad_signature() => (
                S::FORBIDDEN,
                "bad_signature",
                "Login request not trusted",
                "The forum's login request carried a signature this login service does not \
                 accept. The forum and the login service are probably configured with \
                 different secrets; please tell the forum's administrators."
                    .into(),
                None,
            ),
            AppError::Connect(_) => (
                S::BAD_REQUEST,
                "malformed_request",
                "Invalid login request",
                TRY_AGAIN.into(),
                None,
            ),
            AppError::ForeignReturnUrl => (
                S::BAD_REQUEST,
                "foreign_return_url",
                "Invalid login request",
                TRY_AGAIN.into(),
                None,
            ),
            AppError::UnknownLoginState => (
                S::BAD_REQUEST,
                "unknown_state",
                "Login could not be completed",
                "This login was already completed, was started in another browser, or its \
                 cookies were blocked. Please go back to the forum and log in again."
                    .into(),
                None,
            ),
            AppError::LoginExpired => (
                S::BAD_REQUEST,
                "login_expired",
                "Login expired",
                "The login took too long and has expired. Please go back to the forum and log \
                 in again."
                    .into(),
                None,
            ),
            AppError::LogoutStateMismatch => (
                S::BAD_REQUEST,
                "logout_state_mismatch",
                "Logout could not be confirmed",
                "This logout confirmation does not belong to a logout started in this browser. \
                 You may already be logged out; go back to the forum to check."
                    .into(),
                None,
            ),
            AppError::BadCallback(_) => (
                S::BAD_REQUEST,
                "malformed_callback",
                "Invalid login response",
                "The answer from the identity provider was incomplete. Please go back to the \
                 forum and log in again."
                    .into(),
                None,
            ),
            AppError::IdpRefused { code } if code == "access_denied" => (
                S::FORBIDDEN,
                "idp_refused",
                "Login cancelled",
                "The identity provider did not grant access (the login was cancelled or \
                 refused). You can go back to the forum and try again."
                    .into(),
                None,
            ),
            AppError::IdpRefused { .. } => (
                S::FORBIDDEN,
                "idp_refused",
                "Login refused",
                "The identity provider refused the login. You can go back to the forum and try \
                 again; if this keeps happening, please tell the forum's administrators."
                    .into(),
                None,
            ),
            AppError::Denied(denial) => (
                S::FORBIDDEN,
                "denied",
                "Access denied",
                denial.message.clone(),
                denial.contact.clone(),
            ),
            AppError::Idp(e) if e.is_unavailable() => (
                S::BAD_GATEWAY,
                "idp_unavailable",
                "Identity provider unavailable",
                IDP_UNAVAILABLE.into(),
                None,
            ),
            AppError::Idp(_) | AppError::IssuerMismatch => (
                S::BAD_GATEWAY,
                "idp_invalid",
                "Identity provider unavailable",
                IDP_UNAVAILABLE.into(),
                None,
            ),
            AppError::NotReady => (
                S::SERVICE_UNAVAILABLE,
                "not_ready",
                "Identity provider unavailable",
                IDP_UNAVAILABLE.into(),
                None,
            ),
            AppError::Internal { .. } => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong",
                "The login service hit an internal error. Please try again; if it keeps \
                 happening, tell the forum's administrators and quote the request id below."
                    .into(),
                None,
            ),
        };
        ErrorPage {
            status,
            title,
            message,
            contact,
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
        assert!(!page.message.contains("refused"));
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
