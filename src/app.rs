//! The running service: the shared [`AppState`], start-up (HTTP client, cookie key, discovery
//! with retry and backoff) and the HTTP server with graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use serde::Serialize;
use tokio::net::TcpListener;
use tower_cookies::{Cookies, Key};

use crate::config::{Config, Settings};
use crate::discourse::api::DiscourseApi;
use crate::discourse::connect::ConnectSecret;
use crate::error::AppError;
use crate::flow::{CookiePolicy, UsedStates, derive_cookie_key};
use crate::login_writer::{LoginWriter, LoginWriterTask};
use crate::mapping::Mapper;
use crate::oidc::id_token::VerifiedIdToken;
use crate::oidc::provider::Provider;
use crate::pages::Pages;
use crate::relay::{Relay, RelayHandle, RelaySettings};
use crate::store::{self, CompletedLogin, LoginRecord, LogoutStore, RedbStore, SessionRecord};

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

/// The fields behind [`AppState`].
#[derive(Debug)]
pub struct SharedState {
    pub config: Arc<Config>,
    pub connect_secret: Arc<ConnectSecret>,
    /// The one HTTP client: timeouts set, redirects never followed.
    pub http: reqwest::Client,
    /// Set once discovery has succeeded.
    provider: Arc<OnceLock<Arc<Provider>>>,
    pub cookie_key: Key,
    pub cookie_policy: CookiePolicy,
    pub used_states: Arc<UsedStates>,
    pub pages: Arc<Pages>,
    /// The active mapping and the file it came from; replaced as a whole on reload.
    mapping: Arc<RwLock<Arc<ActiveMapping>>>,
    /// The forum's `/session/sso_login`, the only allowed `return_sso_url`.
    pub sso_login_url: url::Url,
    /// Durable store: login records, replayed `jti`s, relay jobs, bridge sessions.
    pub store: Arc<dyn LogoutStore>,
    /// The logout relay into Discourse, when `api_key` and `api_username` are set.
    pub relay: Option<RelayHandle>,
    /// Group commit of completed logins into `store`.
    pub logins: LoginWriter,
    /// The login writer's task, taken by the server when it starts.
    login_writer_task: std::sync::Mutex<Option<LoginWriterTask>>,
    /// The relay worker, taken by the server when it starts.
    relay_worker: std::sync::Mutex<Option<Relay>>,
    /// Prometheus exposition, when the recorder could be installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// The mapping rules in force, and the identity of the settings in force: the restart-only keys
/// as started, the live keys as last reloaded.
#[derive(Debug)]
struct ActiveMapping {
    mapper: Arc<Mapper>,
    identity: String,
}

/// What `/readyz` reports.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// The IdP's discovery document and keys are loaded.
    pub discovery: bool,
    /// The embedded store answers.
    pub store: bool,
    /// Logout relay jobs waiting for delivery (when the store answers).
    pub relay_pending: Option<u64>,
    /// Identity of the configuration in force (a hash of its settings without secrets, see
    /// [`Settings::identity`]): changes when a reload applies something, not when the file
    /// changes only keys that need a restart. `check` prints the identity of a file.
    pub config_identity: String,
}

/// How long the bridge keeps a browser's session record (for `id_token_hint` at logout).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often the configuration file is checked for changes.
pub const CONFIG_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How long login records are kept for matching back-channel logout tokens.
pub const LOGIN_RETENTION: Duration = Duration::from_secs(60 * 24 * 3600);

/// Builds the shared HTTP client: bounded timeouts, no redirects (SSRF and token leakage).
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("discourse-oidc-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl AppState {
    /// Prepares the state from a validated configuration (no network access yet).
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let http = http_client(config.oidc.http_timeout).context("building the HTTP client")?;
        let cookie_key = derive_cookie_key(&config.session.secret)
            .map_err(|_| anyhow::anyhow!("deriving the cookie key"))?;
        let mapper = Mapper::compile(&config.mapping, &config.groups, &config.access).map_err(
            |problems| {
                anyhow::anyhow!(
                    "invalid mapping: {}",
                    problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            },
        )?;
        let sso_login_url = config.sso_login_prefix();
        let store: Arc<dyn LogoutStore> =
            Arc::new(RedbStore::open(&config.store.path).with_context(|| {
                format!("opening the store at {}", config.store.path.display())
            })?);
        let relay_worker = config.discourse.admin_api().map(|(key, username)| {
            Relay::new(
                store.clone(),
                DiscourseApi::new(
                    http.clone(),
                    config.discourse.url.clone(),
                    key.clone(),
                    username.to_owned(),
                ),
                RelaySettings::from_config(&config.logout),
            )
        });
        let relay = relay_worker.as_ref().map(Relay::handle);
        let (logins, login_writer_task) =
            LoginWriter::new(store.clone(), config.store.commit_interval);
        Ok(Self(Arc::new(SharedState {
            store,
            logins,
            login_writer_task: std::sync::Mutex::new(Some(login_writer_task)),
            relay,
            relay_worker: std::sync::Mutex::new(relay_worker),
            connect_secret: Arc::new(ConnectSecret::new(
                config.discourse.connect_secret.expose_secret(),
            )),
            http,
            provider: Arc::new(OnceLock::new()),
            cookie_key,
            cookie_policy: CookiePolicy {
                secure: config.server.public_url.scheme() == "https",
                max_age: config.session.login_timeout,
            },
            used_states: Arc::new(UsedStates::default()),
            pages: Arc::new(Pages::new().context("compiling the page templates")?),
            mapping: Arc::new(RwLock::new(Arc::new(ActiveMapping {
                mapper: Arc::new(mapper),
                identity: config.source.identity(),
            }))),
            sso_login_url,
            metrics: crate::telemetry::metrics_handle(),
            config: Arc::new(config),
        })))
    }

    /// The discovered provider, or "not ready" (503) while discovery is still running.
    pub fn provider(&self) -> Result<Arc<Provider>, AppError> {
        self.provider.get().cloned().ok_or(AppError::NotReady)
    }

    /// The active mapping rules.
    pub fn mapper(&self) -> Arc<Mapper> {
        self.active_mapping().mapper.clone()
    }

    fn active_mapping(&self) -> Arc<ActiveMapping> {
        match self.mapping.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in new mapping rules and the settings now in force (live reload).
    fn replace_mapping(&self, mapper: Mapper, settings: Settings) {
        let active = Arc::new(ActiveMapping {
            mapper: Arc::new(mapper),
            identity: settings.identity(),
        });
        match self.mapping.write() {
            Ok(mut guard) => *guard = active,
            Err(poisoned) => *poisoned.into_inner() = active,
        }
    }

    /// Where the error pages' "back to the forum" link points: a fresh login at the forum.
    pub fn forum_login_url(&self) -> String {
        format!(
            "{}/session/sso",
            self.config.discourse.url.as_str().trim_end_matches('/')
        )
    }

    /// The readiness report.
    pub async fn readiness(&self) -> Readiness {
        let discovery = self.provider.get().is_some();
        let pending = store::blocking(&self.store, |s| s.pending_count()).await;
        if let Ok(count) = pending {
            metrics::gauge!("bridge_relay_pending_jobs").set(count as f64);
        }
        Readiness {
            ready: discovery && pending.is_ok(),
            discovery,
            store: pending.is_ok(),
            relay_pending: pending.ok(),
            config_identity: self.active_config_identity(),
        }
    }

    /// Identity of the configuration in force (see [`Readiness::config_identity`]).
    pub fn active_config_identity(&self) -> String {
        self.active_mapping().identity.clone()
    }

    /// Re-reads the configuration file and, if it is valid, swaps in its `[mapping]`,
    /// `[groups]` and `[access]` rules. Other sections need a restart: a changed key there is
    /// logged by name (a warning) and stays as started. A broken file is reported and the
    /// active rules stay. Returns whether new rules were activated.
    pub fn reload_mapping(&self) -> bool {
        let Some(path) = self.config.source.path.as_deref() else {
            return false;
        };
        let reloaded = crate::config::load(Some(path)).and_then(|config| {
            Mapper::compile(&config.mapping, &config.groups, &config.access)
                .map(|mapper| (config, mapper))
                .map_err(crate::config::ConfigErrors)
        });
        match reloaded {
            Ok((config, mapper)) => {
                let started = &self.config.source.settings;
                let needs_restart = restart_keys_changed(&self.config, &config);
                let active = started.with_live_from(&config.source.settings);
                let identity = active.identity();
                self.replace_mapping(mapper, active);
                metrics::counter!("bridge_config_reloads_total", "outcome" => "applied")
                    .increment(1);
                tracing::info!(
                    config_identity = %identity,
                    "configuration reloaded: [mapping], [groups] and [access] applied"
                );
                if !needs_restart.is_empty() {
                    tracing::warn!(
                        keys = %needs_restart.join(", "),
                        "changed keys that take effect only after a restart; the running \
                         bridge keeps their previous values"
                    );
                }
                true
            }
            Err(errors) => {
                metrics::counter!("bridge_config_reloads_total", "outcome" => "rejected")
                    .increment(1);
                tracing::error!(
                    problems = %errors,
                    "configuration change rejected; the previous mapping stays active"
                );
                false
            }
        }
    }

    /// Reloads on SIGHUP and whenever the file's content changes (polled, which also works
    /// for Kubernetes ConfigMap symlink swaps where file events are unreliable).
    async fn watch_config(self) {
        let Some(path) = self.config.source.path.clone() else {
            return;
        };
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        // The content last looked at: a rejected edit is reported once, not on every tick.
        let mut last_seen = self.config.source.sha256.clone();
        let mut tick = tokio::time::interval(CONFIG_POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<()>();
            let forced = tokio::select! {
                () = signalled => true,
                _ = tick.tick() => false,
            };
            if forced {
                tracing::info!("SIGHUP: reloading the mapping");
                self.reload_mapping();
                continue;
            }
            let Ok(bytes) = tokio::fs::read(&path).await else {
                continue;
            };
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if digest != last_seen {
                last_seen = digest;
                self.reload_mapping();
            }
        }
    }

    /// Remembers what a back-channel logout will need to find this login again (`iss`, `sub`,
    /// `sid` → `external_id`), and keeps the ID token server-side for `id_token_hint`, keyed by
    /// a fresh bridge session cookie. The records go through the group commit
    /// ([`LoginWriter`]); a store failure is logged there, not fatal: the login goes on.
    pub async fn record_login(
        &self,
        issuer: &str,
        id_token: &VerifiedIdToken,
        external_id: &str,
        cookies: &Cookies,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let session_id = hex::encode(rand::random::<[u8; 16]>());
        let lifetime = SESSION_LIFETIME;
        let login = LoginRecord {
            iss: issuer.to_owned(),
            sub: id_token.subject.clone(),
            sid: id_token.session_id.clone(),
            external_id: external_id.to_owned(),
            logged_in_at: now,
        };
        let session = SessionRecord {
            id_token: id_token.raw.clone(),
            iss: issuer.to_owned(),
            sub: id_token.subject.clone(),
            sid: id_token.session_id.clone(),
            external_id: external_id.to_owned(),
            expires_at: now
                + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::days(1)),
        };
        crate::flow::store_session_id(
            cookies,
            &self.cookie_key,
            self.cookie_policy.secure,
            &session_id,
            lifetime,
        );
        self.logins
            .record(CompletedLogin {
                login,
                session_id,
                session,
            })
            .await;
    }

    /// Runs discovery until it succeeds, backing off exponentially (1 s doubling, capped at
    /// 60 s), and publishes the provider.
    pub async fn discover_until_ready(&self) {
        let mut delay = Duration::from_secs(1);
        loop {
            match Provider::discover(
                self.http.clone(),
                &self.config.oidc,
                &self.config.callback_url(),
            )
            .await
            {
                Ok(provider) => {
                    tracing::info!(issuer = %provider.issuer().as_str(), "discovery succeeded");
                    let _ = self.provider.set(Arc::new(provider));
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "discovery failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

/// The keys that differ between the running and the reloaded configuration but are applied
/// only at start: every changed setting outside the live sections, and each secret whose value
/// changed (secrets are not in the settings, so they are compared here, never logged).
fn restart_keys_changed(running: &Config, reloaded: &Config) -> Vec<String> {
    let mut keys: Vec<String> = running
        .source
        .settings
        .changed_keys(&reloaded.source.settings)
        .into_iter()
        .filter(|key| !crate::config::reference::is_live(key))
        .collect();
    let same = |a: &secrecy::SecretString, b: &secrecy::SecretString| {
        use subtle::ConstantTimeEq as _;
        bool::from(
            a.expose_secret()
                .as_bytes()
                .ct_eq(b.expose_secret().as_bytes()),
        )
    };
    let same_optional =
        |a: Option<&secrecy::SecretString>, b: Option<&secrecy::SecretString>| match (a, b) {
            (Some(a), Some(b)) => same(a, b),
            (None, None) => true,
            _ => false,
        };
    for (key, unchanged) in [
        (
            "discourse.connect_secret",
            same(
                &running.discourse.connect_secret,
                &reloaded.discourse.connect_secret,
            ),
        ),
        (
            "discourse.api_key",
            same_optional(
                running.discourse.api_key.as_ref(),
                reloaded.discourse.api_key.as_ref(),
            ),
        ),
        (
            "oidc.client_secret",
            same_optional(
                running.oidc.client_secret.as_ref(),
                reloaded.oidc.client_secret.as_ref(),
            ),
        ),
        (
            "session.secret",
            same(&running.session.secret, &reloaded.session.secret),
        ),
    ] {
        if !unchanged && !keys.iter().any(|k| k == key) {
            keys.push(key.to_owned());
        }
    }
    keys.sort();
    keys
}

/// Takes what a slot holds for the one server that runs it (background workers are started
/// once, however many clones of the state exist).
fn take_once<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    slot.lock().ok().and_then(|mut slot| slot.take())
}

/// A bound, not yet serving bridge. Binding first lets callers (tests, `demo`) learn the port.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Prepares the state and binds the listen address from the config.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listen = config.server.listen;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        Self::with_listener(config, listener)
    }

    /// Prepares the state around an already bound listener (tests and `demo` bind port 0
    /// first so they know the public URL before the configuration is built).
    pub fn with_listener(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let state = AppState::new(config)?;
        Ok(Self { listener, state })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let discovery = tokio::spawn({
            let state = state.clone();
            async move { state.discover_until_ready().await }
        });
        let upkeep = state.metrics.clone().map(|handle| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    handle.run_upkeep();
                }
            })
        });
        let (stop_relay, relay_stopped) = tokio::sync::watch::channel(false);
        let relay_task = take_once(&state.relay_worker).map(|relay| relay.spawn(relay_stopped).1);
        let (stop_login_writer, login_writer_stopped) = tokio::sync::watch::channel(false);
        let login_writer = take_once(&state.login_writer_task)
            .map(|task| tokio::spawn(task.run(login_writer_stopped)));
        let pruning = tokio::spawn({
            let store = state.store.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tick.tick().await;
                    let now = chrono::Utc::now();
                    match store::blocking(&store, move |s| s.prune(now, LOGIN_RETENTION)).await {
                        Ok(report) => tracing::debug!(?report, "store pruned"),
                        Err(e) => tracing::warn!(error = %e, "store pruning failed"),
                    }
                }
            }
        });
        let watcher = tokio::spawn(state.clone().watch_config());
        let metrics_server = match state.config.server.metrics_listen {
            Some(address) => {
                let listener = TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding the metrics address {address}"))?;
                let router = crate::http::metrics_router(state.clone());
                Some(tokio::spawn(
                    async move { axum::serve(listener, router).await },
                ))
            }
            None => None,
        };
        let router = crate::http::router(state);
        let served = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        discovery.abort();
        pruning.abort();
        watcher.abort();
        if let Some(server) = metrics_server {
            server.abort();
        }
        // Requests have drained: write the logins still queued before the process ends.
        let _ = stop_login_writer.send(true);
        if let Some(task) = login_writer {
            let _ = task.await;
        }
        let _ = stop_relay.send(true);
        if let Some(task) = relay_task {
            let _ = task.await;
        }
        if let Some(upkeep) = upkeep {
            upkeep.abort();
        }
        served.context("serving HTTP")
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
