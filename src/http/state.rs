//! [`AppState`]: the handles every request handler and middleware layer reaches through axum's
//! `State`. Handles only: the services own the flows, `Application` owns the workers.

use std::sync::Arc;

use serde::Serialize;

use crate::clock::Clock;
use crate::config::Config;
use crate::config::live::LiveMapping;
use crate::http::cookies::BridgeCookies;
use crate::http::pages::Pages;
use crate::login::LoginService;
use crate::logout::LogoutService;
use crate::oidc::provider::ProviderSlot;
use crate::store::LogoutStore;

/// Everything a request handler needs. Cheap to clone: one reference count, since every
/// middleware layer and handler takes its own clone on every request.
#[derive(Debug, Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The handles behind [`AppState`].
#[derive(Debug)]
pub struct SharedState {
    /// The configuration the process started with (the mapping part may since have been
    /// reloaded: see `mapping`).
    pub config: Arc<Config>,
    pub login: LoginService,
    pub logout: LogoutService,
    /// Filled once discovery has succeeded.
    pub provider: ProviderSlot,
    /// The active mapping rules; replaced as a whole on reload.
    pub mapping: Arc<LiveMapping>,
    pub cookies: BridgeCookies,
    pub pages: Pages,
    /// Durable store: login records, replayed `jti`s, relay jobs, bridge sessions.
    pub store: Arc<dyn LogoutStore>,
    /// Prometheus exposition, when the recorder could be installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Where the error pages' "back to the forum" link points: a fresh login at the forum.
    pub forum_login_url: String,
    /// The time of every request.
    pub clock: Clock,
    /// SCIM provisioning, when `[scim]` is configured (and the admin API with it).
    pub scim: Option<Arc<crate::scim::ScimService>>,
    /// The per-address budget of refused login requests (`[limits] failures_per_minute`).
    pub failures: Arc<crate::http::rate_limit::FailureBudget>,
}

/// What `/readyz` reports.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// The IdP's discovery document and keys are loaded.
    pub discovery: bool,
    /// Why discovery has not succeeded yet (host and reason, e.g. a refused certificate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_error: Option<String>,
    /// The store answers.
    pub store: bool,
    /// Logout relay jobs waiting for delivery (when the store answers).
    pub relay_pending: Option<u64>,
    /// Identity of the configuration in force (a hash of its settings without secrets, see
    /// [`crate::config::Settings::identity`]): changes when a reload applies something, not
    /// when the file changes only keys that need a restart. `check` prints a file's identity.
    pub config_identity: String,
}

impl AppState {
    /// Wraps the handles.
    pub fn new(shared: SharedState) -> Self {
        Self(Arc::new(shared))
    }

    /// The readiness report.
    pub async fn readiness(&self) -> Readiness {
        let discovery = self.provider.is_ready();
        let pending = self.store.pending_count().await;
        if let Ok(count) = pending {
            metrics::gauge!("bridge_relay_pending_jobs").set(count as f64);
        }
        Readiness {
            ready: discovery && pending.is_ok(),
            discovery,
            discovery_error: self.provider.last_error(),
            store: pending.is_ok(),
            relay_pending: pending.ok(),
            config_identity: self.mapping.config_identity(),
        }
    }
}
