//! HTTP surface of the bridge: routes, the middleware stack (request ids, tracing, error pages,
//! security headers, limits) and the small health endpoints. Handlers live in submodules and
//! stay thin: extract, call the protocol core, map the result.

pub mod client_ip;
mod denial;
pub mod login;
pub mod logout;
pub mod middleware;

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

use tower_cookies::CookieManagerLayer;
use tower_governor::GovernorError;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::app::AppState;
use crate::error::AppError;

/// Builds the bridge's router with every layer applied.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let timeout = limits.request_timeout;
    let max_body = limits.max_body_bytes;
    let login_routes = rate_limited(
        Router::new()
            .route("/sso", get(login::start))
            .route("/callback", get(login::callback)),
        limits.login_per_minute,
    );
    let backchannel_routes = rate_limited(
        Router::new().route("/backchannel-logout", post(logout::backchannel)),
        limits.backchannel_per_minute,
    );
    let mut router = Router::new();
    // `/metrics` is on the public listener only when `metrics_public` asks for it.
    if state.config.server.metrics_listen.is_none() {
        router = router.route("/metrics", get(metrics));
    }
    router
        .merge(login_routes)
        .merge(backchannel_routes)
        .route("/logout", get(logout::start))
        .route("/logged-out", get(logout::finished))
        .route(logout::SWITCH_ACCOUNT_PATH, get(logout::switch_account))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(CookieManagerLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::finish_response,
        ))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout.max(Duration::from_secs(1)),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_context,
        ))
        .with_state(state)
}

/// Rate-limit key: the resolved client address (see [`client_ip`]).
#[derive(Debug, Clone, Copy)]
struct ClientIpKey;

impl KeyExtractor for ClientIpKey {
    type Key = std::net::IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<Self::Key, GovernorError> {
        request
            .extensions()
            .get::<client_ip::ClientIp>()
            .map(|ip| ip.0)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// Limits `routes` to `per_minute` requests per client, refilled evenly, with a minute's burst.
/// Over the limit the client gets the 429 error page with a `Retry-After` it can rely on: the
/// limiter's wait rounded up to whole seconds (its own header rounds down, to 0 for waits
/// under a second).
fn rate_limited(routes: Router<AppState>, per_minute: u32) -> Router<AppState> {
    let per_minute = per_minute.max(1);
    let period =
        Duration::from_millis(60_000 / u64::from(per_minute)).max(Duration::from_millis(1));
    let mut builder = GovernorConfigBuilder::default().key_extractor(ClientIpKey);
    builder.period(period).burst_size(per_minute);
    // Only a zero period or burst makes `finish` fail, which the clamps above rule out.
    let Some(config) = builder.finish() else {
        tracing::error!("rate limit configuration rejected; serving without a limit");
        return routes;
    };
    let config = Arc::new(config);
    let limiter = config.limiter().clone();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.retain_recent();
            }
        });
    }
    routes.route_layer(GovernorLayer::new(config).error_handler(|error| {
        match error {
            GovernorError::TooManyRequests { wait_time, .. } => AppError::RateLimited {
                retry_after: wait_time.saturating_add(1),
            }
            .into_response(),
            other => AppError::Internal(format!("rate limiter: {other}")).into_response(),
        }
    }))
}

/// A 302 that no cache keeps (the target URL holds one-time values).
pub(crate) fn found(location: &str) -> Result<Response, crate::error::AppError> {
    let location = axum::http::HeaderValue::from_str(location).map_err(|_| {
        crate::error::AppError::Internal("redirect target is not a valid header".into())
    })?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            ),
        ],
    )
        .into_response())
}

/// Liveness: the process is up and serving.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: discovery succeeded (and, when configured, the store is writable).
async fn readyz(State(state): State<AppState>) -> Response {
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

/// The router of the separate metrics listener (`[server] metrics_listen`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
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

/// Every unknown path (including `/`): the styled 404 page.
async fn not_found() -> AppError {
    AppError::NotFound
}
