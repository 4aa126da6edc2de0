//! HTTP surface of the bridge: routes, the middleware stack (request ids, tracing, error pages,
//! security headers, limits) and the small health endpoints. Handlers live in submodules and
//! stay thin: extract, call the protocol core, map the result.

pub mod login;
pub mod logout;
pub mod middleware;

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_cookies::CookieManagerLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::app::AppState;

/// Builds the bridge's router with every layer applied.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let timeout = limits.request_timeout;
    let max_body = limits.max_body_bytes;
    Router::new()
        .route("/sso", get(login::start))
        .route("/callback", get(login::callback))
        .route("/backchannel-logout", post(logout::backchannel))
        .route("/logout", get(logout::start))
        .route("/logged-out", get(logout::finished))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(CookieManagerLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::error_pages,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout.max(Duration::from_secs(1)),
        ))
        .layer(axum::middleware::from_fn(middleware::trace_request))
        .with_state(state)
}

/// Liveness: the process is up and serving.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: discovery succeeded (and, when configured, the store is writable).
async fn readyz(State(state): State<AppState>) -> Response {
    let report = state.readiness();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(report),
    )
        .into_response()
}

/// Prometheus text exposition of the bridge's counters and histograms.
async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
