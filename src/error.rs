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
    /// A bug or an environment failure on our side.
    #[error("internal error: {0}")]
    Internal(String),
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
    /// The full cause, for the log line only.
    pub cause: String,
}

impl AppError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Connect(e) if e.is_bad_signature() => StatusCode::FORBIDDEN,
            AppError::Connect(_)
            | AppError::ForeignReturnUrl
            | AppError::UnknownLoginState
            | AppError::LoginExpired
            | AppError::LogoutStateMismatch
            | AppError::BadCallback(_) => StatusCode::BAD_REQUEST,
            AppError::IdpRefused { .. } | AppError::Denied { .. } => StatusCode::FORBIDDEN,
            AppError::IdpUnavailable(_) | AppError::IdpInvalid(_) => StatusCode::BAD_GATEWAY,
            AppError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, low-cardinality reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AppError::Connect(e) if e.is_bad_signature() => "bad_signature",
            AppError::Connect(_) => "malformed_request",
            AppError::ForeignReturnUrl => "foreign_return_url",
            AppError::UnknownLoginState => "unknown_state",
            AppError::LoginExpired => "login_expired",
            AppError::LogoutStateMismatch => "logout_state_mismatch",
            AppError::BadCallback(_) => "malformed_callback",
            AppError::IdpRefused { .. } => "idp_refused",
            AppError::Denied { .. } => "denied",
            AppError::IdpUnavailable(_) => "idp_unavailable",
            AppError::IdpInvalid(_) => "idp_invalid",
            AppError::NotReady => "not_ready",
            AppError::Internal(_) => "internal",
        }
    }

    fn page(&self) -> ErrorPage {
        let (title, message, contact) = match self {
            AppError::Connect(e) if e.is_bad_signature() => (
                "Login request not trusted",
                "The forum's login request carried a signature this login service does not \
                 accept. The forum and the login service are probably configured with \
                 different secrets; please tell the forum's administrators."
                    .to_owned(),
                None,
            ),
            AppError::Connect(_) | AppError::ForeignReturnUrl => (
                "Invalid login request",
                "This login link is not valid. Please go back to the forum and log in again."
                    .to_owned(),
                None,
            ),
            AppError::UnknownLoginState => (
                "Login could not be completed",
                "This login was already completed, was started in another browser, or its \
                 cookies were blocked. Please go back to the forum and log in again."
                    .to_owned(),
                None,
            ),
            AppError::LoginExpired => (
                "Login expired",
                "The login took too long and has expired. Please go back to the forum and log \
                 in again."
                    .to_owned(),
                None,
            ),
            AppError::LogoutStateMismatch => (
                "Logout could not be confirmed",
                "This logout confirmation does not belong to a logout started in this browser. \
                 You may already be logged out; go back to the forum to check."
                    .to_owned(),
                None,
            ),
            AppError::BadCallback(_) => (
                "Invalid login response",
                "The answer from the identity provider was incomplete. Please go back to the \
                 forum and log in again."
                    .to_owned(),
                None,
            ),
            AppError::IdpRefused { code } if code == "access_denied" => (
                "Login cancelled",
                "The identity provider did not grant access (the login was cancelled or \
                 refused). You can go back to the forum and try again."
                    .to_owned(),
                None,
            ),
            AppError::IdpRefused { .. } => (
                "Login refused",
                "The identity provider refused the login. You can go back to the forum and try \
                 again; if this keeps happening, please tell the forum's administrators."
                    .to_owned(),
                None,
            ),
            AppError::Denied {
                message, contact, ..
            } => ("Access denied", message.clone(), contact.clone()),
            AppError::IdpUnavailable(_) | AppError::IdpInvalid(_) | AppError::NotReady => (
                "Identity provider unavailable",
                "The identity provider could not be reached or gave an invalid answer. Please \
                 try again in a moment."
                    .to_owned(),
                None,
            ),
            AppError::Internal(_) => (
                "Something went wrong",
                "The login service hit an internal error. Please try again; if it keeps \
                 happening, tell the forum's administrators and quote the request id below."
                    .to_owned(),
                None,
            ),
        };
        ErrorPage {
            status: self.status(),
            title,
            message,
            contact,
            reason: self.reason(),
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
