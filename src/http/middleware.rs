//! Middleware: request ids and the request span with its one log line come from tower-http
//! (`SetRequestId`, `PropagateRequestId`, `Trace`); what is the bridge's own is which incoming
//! request ids are believed, and the response finish (the single place errors become pages,
//! security headers).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use rand::Rng as _;
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::{MakeSpan, OnResponse};

use crate::error::{AppError, ErrorPage, NextStep};
use crate::http::state::AppState;

/// Header carrying the request id in and out.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts a caller's id only if it is short and plain, so it cannot forge log lines.
fn acceptable_request_id(value: &HeaderValue) -> bool {
    let text = value.as_bytes();
    !text.is_empty()
        && text.len() <= 64
        && text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Drops an incoming `X-Request-Id` that is not [acceptable](acceptable_request_id), so that
/// [`NewRequestId`] makes a fresh one instead. Runs before tower-http's `SetRequestId`.
pub fn drop_unacceptable_request_id(mut request: Request) -> Request {
    if request
        .headers()
        .get(REQUEST_ID_HEADER)
        .is_some_and(|value| !acceptable_request_id(value))
    {
        request.headers_mut().remove(REQUEST_ID_HEADER);
    }
    request
}

/// Makes request ids: 96 random bits, hex.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let bytes: [u8; 12] = rand::thread_rng().r#gen();
        HeaderValue::from_str(&hex::encode(bytes))
            .ok()
            .map(RequestId::new)
    }
}

/// The request span: request id, method and path. The path only: query strings carry sso/sig,
/// codes and states.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!(
            "request",
            request_id,
            method = %request.method(),
            path = request.uri().path(),
        )
    }
}

/// The one log line per request: status and latency, in the request span.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(
        self,
        response: &axum::http::Response<B>,
        latency: std::time::Duration,
        _span: &tracing::Span,
    ) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        tracing::info!(status, latency_ms, "request handled");
    }
}

/// Turns an error into its page (in the language `Accept-Language` asks for), then adds the
/// security headers. A bare 405 from the router becomes the same page as every other error.
pub async fn finish_response(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let lang = state.pages.language(request.headers());
    let mut response = next.run(request).await;
    let page = match response.extensions_mut().remove::<ErrorPage>() {
        Some(page) => Some(page),
        None if response.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED => {
            Some(AppError::MethodNotAllowed.describe())
        }
        None => None,
    };
    if let Some(page) = page {
        // The page replaces the response, but not what it says to the browser: the cookies
        // the handler set or removed (a spent login, a kept denial) and `Allow` for 405.
        let kept: Vec<(header::HeaderName, HeaderValue)> = response
            .headers()
            .iter()
            .filter(|(name, _)| **name == header::SET_COOKIE || **name == header::ALLOW)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        response = error_page(&state, page, &request_id, &lang);
        for (name, value) in kept {
            response.headers_mut().append(name, value);
        }
    }
    add_security_headers(&state, &mut response);
    response
}

/// Renders the [`ErrorPage`] attached by `AppError` as HTML, logging the cause exactly once.
fn error_page(state: &AppState, page: ErrorPage, request_id: &str, lang: &str) -> Response {
    if page.status.is_server_error() {
        tracing::error!(reason = page.reason, cause = %page.cause, "request failed");
    } else {
        tracing::warn!(reason = page.reason, cause = %page.cause, "request refused");
    }
    metrics::counter!("bridge_request_errors_total", "reason" => page.reason).increment(1);
    let login_url = state.forum_login_url.as_str();
    let switch_account_url = state.config.switch_account_url();
    let context = minijinja::context! {
        kind => page.kind,
        reason => page.refusal,
        contact => page.contact,
        minutes => page.minutes,
        retry_after => page.retry_after,
        status => page.status.as_u16(),
        request_id => request_id,
        try_again_url => (page.next == NextStep::TryAgain).then_some(login_url),
        log_in_again_url => (page.next == NextStep::LogInAgain).then_some(login_url),
        switch_account_url => (page.next == NextStep::SwitchAccount)
            .then_some(switch_account_url.as_str()),
    };
    let body = match state.pages.render("error.html", lang, context) {
        Ok(html) => Html(html).into_response().into_body(),
        Err(e) => {
            tracing::error!(error = %e, "error page template failed");
            Body::from(format!("{} (request id {request_id})\n", page.status))
        }
    };
    let mut rendered = Response::new(body);
    *rendered.status_mut() = page.status;
    let headers = rendered.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-language"));
    if let Some(seconds) = page.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    rendered
}

/// Security headers: no referrer on every response (URLs carry one-time codes), HSTS when
/// served over https, and for responses with a document (not redirects) no framing, no MIME
/// sniffing and a strict content policy for our own pages.
fn add_security_headers(state: &AppState, response: &mut Response) {
    let is_redirect = response.status().is_redirection();
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if state.cookies.secure() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if is_redirect {
        return;
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}
