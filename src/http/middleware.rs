//! Middleware, in two layers: the request context (client address per RFC 7239, request id, span,
//! one log line) outside, and the response finish (the single place errors become pages,
//! security headers) inside. Two layers rather than one per concern keeps the per-request cost
//! of the entry hop low.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use rand::Rng as _;
use tracing::Instrument as _;

use crate::app::AppState;
use crate::error::{ErrorPage, NextStep};
use crate::http::client_ip::{self, ClientIp};
use crate::http::logout::SWITCH_ACCOUNT_PATH;

/// The request id of the current request, in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Header carrying the request id in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Accepts a caller's id only if it is short and plain, so it cannot forge log lines.
fn acceptable_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| text.to_owned())
}

fn new_request_id() -> String {
    let bytes: [u8; 12] = rand::thread_rng().r#gen();
    hex::encode(bytes)
}

/// Resolves the client address ([`ClientIp`], for rate limits), assigns the request id (from
/// `X-Request-Id` or new), opens the request span, logs one line per request with route, status
/// and latency, and returns the id in the response.
pub async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
    let client = client_ip::resolve(
        peer,
        request.headers(),
        &state.config.server.trusted_proxies,
    );
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(acceptable_request_id)
        .unwrap_or_else(new_request_id);
    let header_value = HeaderValue::from_str(&id).ok();
    let extensions = request.extensions_mut();
    extensions.insert(ClientIp(client));
    extensions.insert(RequestId(id));
    let method = request.method().clone();
    // The path only: query strings carry sso/sig, codes and states.
    let span = tracing::info_span!(
        "request",
        request_id = header_value.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
        %method,
        path = request.uri().path(),
    );
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(status, latency_ms, "request handled"));
    if let Some(value) = header_value {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
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
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let lang = state.pages.language(request.headers());
    let mut response = next.run(request).await;
    let page = match response.extensions_mut().remove::<ErrorPage>() {
        Some(page) => Some(page),
        None if response.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED => {
            Some(crate::error::AppError::MethodNotAllowed.page())
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
        tracing::error!(reason = page.reason_code, cause = %page.cause, "request failed");
    } else {
        tracing::warn!(reason = page.reason_code, cause = %page.cause, "request refused");
    }
    metrics::counter!("bridge_request_errors_total", "reason" => page.reason_code).increment(1);
    let login_url = state.forum_login_url();
    let context = minijinja::context! {
        kind => page.kind,
        reason => page.reason,
        contact => page.contact,
        minutes => page.minutes,
        retry_after => page.retry_after,
        status => page.status.as_u16(),
        request_id => request_id,
        try_again_url => (page.next == NextStep::TryAgain).then_some(login_url.as_str()),
        log_in_again_url => (page.next == NextStep::LogInAgain).then_some(login_url.as_str()),
        switch_account_url => (page.next == NextStep::SwitchAccount).then_some(SWITCH_ACCOUNT_PATH),
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
    if state.cookie_policy.secure {
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
