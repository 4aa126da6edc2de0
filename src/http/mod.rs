//! HTTP surface of the bridge: the router (paths from [`crate::routes`]), the middleware stack
//! (request ids, tracing, error pages, security headers, limits), the cookies, the pages and
//! the small health endpoints. Handlers stay thin: extract, call a service, respond.
//!
//! The stack, outermost first: drop an implausible incoming request id, set or keep the request
//! id, return it, open the request span and log one line per request (tower-http), bound the
//! handling time and the body, turn errors into pages and add security headers, manage cookies.

pub mod client_ip;
pub mod cookies;
mod health;
pub mod login;
pub mod logout;
pub mod middleware;
pub mod pages;
pub mod rate_limit;
pub mod serve;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_cookies::CookieManagerLayer;
use tower_governor::GovernorError;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

use crate::error::AppError;
use crate::routes;
pub use state::AppState;

/// The rate limiters' state, which must be swept of idle clients now and then
/// ([`RateLimiters::retain_recent`]); `Application` runs the sweep and stops it.
#[derive(Default)]
pub struct RateLimiters(Vec<Box<dyn Fn() + Send + Sync>>);

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateLimiters({})", self.0.len())
    }
}

impl RateLimiters {
    /// How often idle clients should be forgotten.
    pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

    /// Forgets clients whose limit has fully refilled.
    pub fn retain_recent(&self) {
        for sweep in &self.0 {
            sweep();
        }
    }
}

/// Builds the bridge's service (the router with every layer applied) and the rate limiters it
/// uses.
///
/// With a path in `server.public_url` (`https://example.com/login`), every route is served
/// under that prefix (`/login/sso`, ...) and also at the root, so the bridge works both behind
/// a proxy that passes the path through and behind one that strips the prefix; the URLs it
/// hands out (redirect URI, logout return, cookie paths) always carry the prefix.
pub fn router(
    state: AppState,
) -> (
    impl tower::Service<
        axum::extract::Request,
        Response = axum::http::Response<
            impl axum::body::HttpBody<Data = axum::body::Bytes, Error = axum::Error> + Send + 'static,
        >,
        Error = std::convert::Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static,
    RateLimiters,
) {
    let limits = &state.config.limits;
    let timeout = limits.request_timeout;
    let max_body = limits.max_body_bytes;
    let mut limiters = RateLimiters::default();
    let trusted_proxies: Arc<[ipnet::IpNet]> = state.config.server.trusted_proxies.clone().into();
    let client_ip = ClientIpKey;
    // A login costs one unit, at /sso; /callback is charged only for refusals (rate_limit).
    limiters.0.push(Box::new({
        let failures = state.failures.clone();
        move || failures.retain_recent()
    }));
    let login_routes = rate_limited(
        Router::new().route(routes::SSO, get(login::start)),
        limits.login_per_minute,
        client_ip,
        &mut limiters,
    )
    .route(routes::CALLBACK, get(login::callback));
    let backchannel_routes = rate_limited(
        Router::new().route(routes::BACKCHANNEL_LOGOUT, post(logout::backchannel)),
        limits.backchannel_per_minute,
        client_ip,
        &mut limiters,
    );
    let mut router = Router::new();
    // `/metrics` is on the public listener only when `metrics_public` asks for it.
    if state.config.server.metrics_listen.is_none() {
        router = router.route(routes::METRICS, get(health::metrics));
    }
    let router = router
        .merge(login_routes)
        .merge(backchannel_routes)
        .route(routes::LOGOUT, get(logout::start))
        .route(routes::LOGGED_OUT, get(logout::finished))
        .route(routes::SWITCH_ACCOUNT, get(logout::switch_account))
        .route(routes::HEALTHZ, get(health::healthz))
        .route(routes::READYZ, get(health::readyz));
    let prefix = state.config.server.path_prefix.as_str();
    let router = if prefix.is_empty() {
        router
    } else {
        Router::new().nest(prefix, router.clone()).merge(router)
    };
    // One `Router::layer` call with the three layers composed: each call wraps every route
    // in another boxed service, cloned again for every request.
    let router = router
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(RequestBodyLimitLayer::new(max_body))
                .map_request(|request: axum::http::Request<_>| request.map(axum::body::Body::new))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    middleware::finish_response,
                ))
                .layer(CookieManagerLayer::new()),
        )
        // SCIM answers every error (oversized bodies included) in its own format and sets its
        // own body limit, so it joins below the bridge's page and body-limit layers.
        .merge(scim_routes(&state))
        .with_state(state);
    // The layers every request passes, routed or not, wrap the router once instead of being
    // added with `Router::layer`, which wraps each route apart and so clones and boxes every
    // layer again for each request (measured: `cargo bench --bench entry_hop`).
    let service = ServiceBuilder::new()
        .map_request(middleware::drop_unacceptable_request_id)
        .layer(SetRequestIdLayer::new(
            middleware::REQUEST_ID_HEADER,
            middleware::NewRequestId,
        ))
        .layer(PropagateRequestIdLayer::new(middleware::REQUEST_ID_HEADER))
        .map_request(client_ip::annotate(trusted_proxies))
        .layer(middleware::trace_layer())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout.max(Duration::from_secs(1)),
        ))
        .service(router);
    (service, limiters)
}

/// `/scim/v2` when `[scim]` is configured, otherwise no routes.
fn scim_routes(state: &AppState) -> Router<AppState> {
    match &state.scim {
        Some(service) => crate::scim::router(service.clone()).with_state(()),
        None => Router::new(),
    }
}

/// The router of the separate metrics listener (`[server] metrics_listen`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(routes::METRICS, get(health::metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

/// Rate-limit key: the client address [`client_ip::annotate`] resolved from the TCP peer and,
/// behind a trusted proxy, its forwarding headers.
#[derive(Debug, Clone, Copy)]
struct ClientIpKey;

impl KeyExtractor for ClientIpKey {
    type Key = std::net::IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<Self::Key, GovernorError> {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
        Ok(request
            .extensions()
            .get::<client_ip::ClientAddr>()
            .map_or(peer, |client| client.0))
    }
}

/// Limits `routes` to `per_minute` requests per client, refilled evenly, with a minute's burst.
/// Over the limit the client gets the 429 error page with a `Retry-After` it can rely on: the
/// limiter's wait rounded up to whole seconds (its own header rounds down, to 0 for waits under
/// a second). The limiter's sweep joins `limiters`.
fn rate_limited(
    routes: Router<AppState>,
    per_minute: u32,
    client_ip: ClientIpKey,
    limiters: &mut RateLimiters,
) -> Router<AppState> {
    let per_minute = per_minute.max(1);
    let mut builder = GovernorConfigBuilder::default().key_extractor(client_ip);
    builder
        .period(rate_limit::replenish_period(per_minute))
        .burst_size(per_minute);
    // Only a zero period or burst makes `finish` fail, which the clamps above rule out.
    let Some(config) = builder.finish() else {
        tracing::error!("rate limit configuration rejected; serving without a limit");
        return routes;
    };
    let config = Arc::new(config);
    let limiter = config.limiter().clone();
    limiters.0.push(Box::new(move || limiter.retain_recent()));
    routes.route_layer(GovernorLayer::new(config).error_handler(|error| {
        match error {
            GovernorError::TooManyRequests { wait_time, .. } => AppError::RateLimited {
                retry_after: wait_time.saturating_add(1),
            }
            .into_response(),
            other => AppError::internal("rate limiter", Some(other.into())).into_response(),
        }
    }))
}

/// A 302 that no cache keeps (the target URL holds one-time values).
pub(crate) fn found(location: &str) -> Result<Response, AppError> {
    let location = axum::http::HeaderValue::from_str(location)
        .map_err(|e| AppError::internal("redirect target is not a valid header", Some(e.into())))?;
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

/// Every unknown path (including `/`): the styled 404 page.
async fn not_found() -> AppError {
    AppError::NotFound
}
