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
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};

use crate::error::{AppError, ErrorPage, NextStep};
use crate::http::client_ip::ClientAddr;
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

/// Paths polled by probes and scrapers, whose request lines are logged at `debug`: at `info`
/// they drown the log (one line per probe, per scrape, per load-balancer check).
const QUIET_PATHS: [&str; 3] = [
    crate::routes::HEALTHZ,
    crate::routes::READYZ,
    crate::routes::METRICS,
];

/// Name of the request span of a [quiet](QUIET_PATHS) path.
const QUIET_SPAN: &str = "probe";

/// The request span: request id, client address (after trusted-proxy resolution, see
/// [`ClientAddr`]), method and path. The path only: query strings carry sso/sig, codes and
/// states. Probes get a `debug` span named `probe`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // Always set by `client_ip::annotate`, which runs first; formatted only if logged.
        let client = request
            .extensions()
            .get::<ClientAddr>()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |client| client.0);
        let path = request.uri().path();
        if QUIET_PATHS.contains(&path) {
            tracing::debug_span!(
                QUIET_SPAN,
                request_id,
                client = %client,
                method = %request.method(),
                path,
            )
        } else {
            tracing::info_span!(
                "request",
                request_id,
                client = %client,
                method = %request.method(),
                path,
            )
        }
    }
}

/// The one log line per request: status and latency, in the request span; at `debug` for
/// probes (a disabled span means the line would not be wanted either).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(
        self,
        response: &axum::http::Response<B>,
        latency: std::time::Duration,
        span: &tracing::Span,
    ) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let quiet = span
            .metadata()
            .is_none_or(|metadata| metadata.name() == QUIET_SPAN);
        if quiet && response.status().is_success() {
            tracing::debug!(status, latency_ms, "request handled");
        } else {
            tracing::info!(status, latency_ms, "request handled");
        }
    }
}

/// tower-http's trace layer as the bridge uses it: one [`RequestSpan`] per request and one
/// [`LogResponse`] line when it is answered, nothing per request start, body chunk or failure
/// (the error page logs its own cause once).
pub fn trace_layer()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), LogResponse, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(LogResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
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
    // Only an error page needs the language, so only then is `Accept-Language` negotiated.
    let accept_language = request.headers().get(header::ACCEPT_LANGUAGE).cloned();
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
        let lang = state.pages.language_of(accept_language.as_ref());
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The log lines `paths` produce through the bridge's trace layer, at `level`, as JSON.
    async fn log_lines(level: &str, paths: &[&str]) -> Vec<Value> {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(level)
            .with_writer(move || sink.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let router = Router::new()
            .route(crate::routes::HEALTHZ, get(|| async { "ok" }))
            .route(
                crate::routes::READYZ,
                get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            )
            .route(crate::routes::SSO, get(|| async { "login" }))
            .layer(trace_layer())
            .layer(axum::middleware::map_request(
                |mut request: Request| async {
                    let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
                    request.extensions_mut().insert(ClientAddr(client));
                    request
                },
            ));
        for path in paths {
            let request = Request::get(*path).body(Body::empty()).unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn probe_request_lines_are_debug_and_the_rest_info_with_the_client_address() {
        let at_info = log_lines("info", &["/healthz", "/healthz", "/sso"]).await;
        assert_eq!(at_info.len(), 1, "probes are silent at info: {at_info:?}");
        let line = &at_info[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["message"], "request handled");
        assert_eq!(line["fields"]["status"], 200);
        assert_eq!(line["span"]["name"], "request");
        assert_eq!(line["span"]["path"], "/sso");
        assert_eq!(line["span"]["client"], "203.0.113.7");

        let at_debug = log_lines("debug", &["/healthz"]).await;
        assert_eq!(at_debug.len(), 1, "{at_debug:?}");
        assert_eq!(at_debug[0]["level"], "DEBUG");
        assert_eq!(at_debug[0]["span"]["name"], QUIET_SPAN);
        assert_eq!(at_debug[0]["span"]["client"], "203.0.113.7");
    }

    #[tokio::test]
    async fn a_failing_probe_is_logged_at_info() {
        let lines = log_lines("info", &["/readyz"]).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["fields"]["status"], 503);
    }
}
