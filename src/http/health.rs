//! The operational endpoints: `/healthz` (liveness), `/readyz` (readiness, JSON) and
//! `/metrics` (Prometheus text exposition format 0.0.4).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::state::AppState;

/// Liveness: the process is up and serving.
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: discovery succeeded and the store answers.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let report = state.readiness().await;
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
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
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
