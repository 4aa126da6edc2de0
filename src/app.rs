//! The running service: [`Application`] assembles the state from a loaded configuration (HTTP
//! client, cookie key, store, services), owns every background worker (discovery with retry,
//! the login writer, the logout relay, store pruning, config reload, the rate limiters' sweep,
//! metrics upkeep and the metrics listener), serves HTTP with graceful shutdown, and then stops
//! every worker it started.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::Config;
use crate::config::live::LiveMapping;
use crate::discourse::api::DiscourseApi;
use crate::discourse::connect::ConnectSecret;
use crate::http::RateLimiters;
use crate::http::cookies::BridgeCookies;
use crate::http::pages::Pages;
use crate::http::state::{AppState, SharedState};
use crate::login::{LoginService, LoginSettings};
use crate::login_writer::{LoginWriter, LoginWriterTask};
use crate::logout::{LogoutService, LogoutSettings};
use crate::oidc::provider::ProviderSlot;
use crate::relay::{Relay, RelaySettings};
use crate::store::{self, LogoutStore};

/// How long login records are kept for matching back-channel logout tokens.
pub const LOGIN_RETENTION: Duration = Duration::from_secs(60 * 24 * 3600);

/// How often the store drops what is past its time.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// How often the Prometheus recorder's histograms are maintained.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Builds a plain outbound HTTP client: bounded timeouts, no redirects (SSRF and token
/// leakage), the built-in roots, the environment's proxy. The running bridge uses
/// [`Config::idp_outbound`] and [`Config::discourse_outbound`] instead.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    crate::outbound::OutboundSettings {
        timeout,
        ..Default::default()
    }
    .client()
}

/// A bound, not yet serving bridge. Binding first lets callers (tests, `demo`) learn the port.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    http: reqwest::Client,
    /// The workers the state's handles talk to, started by [`Application::run_until`].
    login_writer: LoginWriterTask,
    relay: Option<Relay>,
}

impl Application {
    /// Prepares the state and binds the listen address from the config.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listen = config.server.listen;
        let listener =
            crate::http::serve::bind(listen).with_context(|| format!("binding {listen}"))?;
        let app = Self::with_listener(config, listener)?;
        // A database this binary must not use is refused now; one that is merely down is
        // retried on use (the bridge reports not ready until it answers).
        match app.state.store.prepare().await {
            Err(error @ store::StoreError::SchemaTooNew { .. }) => {
                return Err(anyhow::Error::new(error).context("refusing the PostgreSQL store"));
            }
            Err(error) => tracing::warn!(%error, "the store is not available yet"),
            Ok(()) => {}
        }
        Ok(app)
    }

    /// Prepares the state around an already bound listener (tests and `demo` bind port 0
    /// first so they know the public URL before the configuration is built).
    pub fn with_listener(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        Self::with_clock(config, listener, Clock::system())
    }

    /// Like [`Application::with_listener`], reading the time of every request from `clock`.
    pub fn with_clock(config: Config, listener: TcpListener, clock: Clock) -> anyhow::Result<Self> {
        let http = config
            .idp_outbound()
            .client()
            .context("building the HTTP client for the identity provider")?;
        let discourse_http = config
            .discourse_outbound()
            .client()
            .context("building the HTTP client for Discourse")?;
        let cookies = BridgeCookies::new(
            &config.session.secret,
            config.server.public_url.scheme() == "https",
            config.session.login_timeout,
            &config.server.path_prefix,
        )
        .map_err(|_| anyhow::anyhow!("deriving the cookie key"))?;
        let store = store::open(&config.store).with_context(|| match &config.store.postgres {
            Some(_) => "preparing the PostgreSQL store".to_owned(),
            None => format!("opening the store at {}", config.store.path.display()),
        })?;
        let relay = config.discourse.admin_api().map(|(key, username)| {
            Relay::new(
                store.clone(),
                DiscourseApi::new(
                    discourse_http,
                    config.discourse.url.clone(),
                    key.clone(),
                    username.to_owned(),
                ),
                RelaySettings::from_config(&config.logout, &config.store),
            )
        });
        let (logins, login_writer) = LoginWriter::new(
            store.clone(),
            config.store.commit_interval,
            config.store.login_buffer,
        );
        let provider = ProviderSlot::default();
        let mapping = Arc::new(LiveMapping::new(&config));
        let login = LoginService::new(
            LoginSettings {
                connect_secret: ConnectSecret::new(config.discourse.connect_secret.expose_secret()),
                sso_login_url: config.sso_login_prefix(),
                login_timeout: config.session.login_timeout,
            },
            provider.clone(),
            mapping.clone(),
            store.clone(),
            logins.clone(),
        );
        let logout = LogoutService::new(
            LogoutSettings {
                rp_initiated: config.logout.rp_initiated,
                client_id: config.oidc.client_id.clone(),
                post_logout_url: config.post_logout_url(),
            },
            provider.clone(),
            store.clone(),
            relay.as_ref().map(Relay::handle),
            logins,
        );
        let scim = match (&config.scim, relay.as_ref()) {
            (Some(scim_config), Some(relay)) => {
                let live = mapping.clone();
                let handle = relay.handle();
                let now = clock.clone();
                Some(Arc::new(crate::scim::ScimService::new(
                    scim_config.clone(),
                    store.clone(),
                    Arc::new(move || live.current().mapper.clone()),
                    Arc::new(ConnectSecret::new(
                        config.discourse.connect_secret.expose_secret(),
                    )),
                    Arc::new(move || handle.notify()),
                    Arc::new(move || now.now()),
                    &config.server.public_url,
                )))
            }
            _ => None,
        };
        let state = AppState::new(SharedState {
            scim,
            login,
            logout,
            provider,
            mapping,
            cookies,
            pages: Pages::from_config(&config.pages, config.discourse.url.as_str()).map_err(
                |problems| anyhow::anyhow!("[pages] is invalid:\n{}", problems.join("\n")),
            )?,
            store,
            metrics: crate::telemetry::metrics_handle(),
            forum_login_url: config.forum_login_url().to_string(),
            clock,
            failures: Arc::new(crate::http::rate_limit::FailureBudget::new(
                config.limits.failures_per_minute,
            )),
            config: Arc::new(config),
        });
        Ok(Self {
            listener,
            state,
            http,
            login_writer,
            relay,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Starts the workers, serves until `shutdown` completes, drains the requests in flight,
    /// then stops every worker: the login writer first (it commits what is queued), then the
    /// relay, then the rest, and waits for all of them.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            http,
            login_writer,
            relay,
        } = self;
        let config = state.config.clone();
        // Bound before anything starts, so a failure leaves nothing running.
        let metrics_listener = match config.server.metrics_listen {
            Some(address) => Some(
                crate::http::serve::bind(address)
                    .with_context(|| format!("binding the metrics address {address}"))?,
            ),
            None => None,
        };
        let (router, limiters) = crate::http::router(state.clone());

        let stop = CancellationToken::new();
        let workers = TaskTracker::new();
        workers.spawn(until_cancelled(stop.clone(), {
            let (provider, config) = (state.provider.clone(), config.clone());
            async move {
                provider
                    .discover_until_ready(
                        http,
                        &config.oidc,
                        &config.logout,
                        &config.callback_url(),
                    )
                    .await;
            }
        }));
        if let Some(handle) = state.metrics.clone() {
            workers.spawn(every(stop.clone(), METRICS_UPKEEP_INTERVAL, move || {
                handle.run_upkeep();
            }));
        }
        workers.spawn(every(
            stop.clone(),
            RateLimiters::SWEEP_INTERVAL,
            move || {
                limiters.retain_recent();
            },
        ));
        workers.spawn(prune_store(state.store.clone(), stop.clone()));
        workers.spawn(state.mapping.clone().watch(stop.clone()));
        if let Some(listener) = metrics_listener {
            let router = crate::http::metrics_router(state.clone());
            let stopped = stop.clone().cancelled_owned();
            workers.spawn(async move {
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        }
        let (stop_login_writer, login_writer_stopped) = watch::channel(false);
        let login_writer = workers.spawn(login_writer.run(login_writer_stopped));
        let (stop_relay, relay_stopped) = watch::channel(false);
        let relay = relay.map(|relay| relay.spawn(relay_stopped).1);

        let limits = crate::http::serve::ConnectionLimits {
            header_read_timeout: config.server.header_read_timeout,
            max_connections: config.server.max_connections,
        };
        // On a worker thread, not the thread that blocks on the runtime: accepted connections
        // are then spawned onto the accepting worker's own queue, with no cross-thread wake-up
        // per connection (measured: `cargo bench --bench full_login`). Aborted if this future
        // is dropped, as the loop itself would have been.
        let serving = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
            crate::http::serve::serve(listener, router, limits, shutdown),
        ));
        let served = match serving.await {
            Ok(served) => served,
            Err(e) => Err(std::io::Error::other(e)),
        };

        // Requests have drained: write the logins still queued, then stop the relay.
        let _ = stop_login_writer.send(true);
        let _ = login_writer.await;
        let _ = stop_relay.send(true);
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        stop.cancel();
        workers.close();
        workers.wait().await;
        served.context("serving HTTP")
    }
}

/// Runs `work` until it ends or `stop` is cancelled.
async fn until_cancelled(stop: CancellationToken, work: impl std::future::Future<Output = ()>) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = work => {}
    }
}

/// Calls `tick` every `period` (the first time at once) until `stop` is cancelled.
async fn every(stop: CancellationToken, period: Duration, mut tick: impl FnMut()) {
    let mut interval = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => tick(),
        }
    }
}

/// Drops what is past its time from the store every [`PRUNE_INTERVAL`] until `stop`.
async fn prune_store(store: Arc<dyn LogoutStore>, stop: CancellationToken) {
    let mut interval = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = chrono::Utc::now();
        match store.prune(now, LOGIN_RETENTION).await {
            Ok(report) => tracing::debug!(?report, "store pruned"),
            Err(e) => tracing::warn!(error = %e, "store pruning failed"),
        }
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
