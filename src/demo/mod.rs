//! Development-only demo: the real bridge between a built-in OpenID provider and a stand-in
//! forum, all on loopback, so the whole DiscourseConnect + OpenID Connect login can be tried on a
//! fresh machine with nothing else running. `discourse-oidc-bridge demo [--config FILE]`.
//!
//! Three HTTP servers run in one process: the forum on the given port, the bridge (built from an
//! in-code configuration with secrets generated at start-up) on the next one, the IdP on the one
//! after. With `--config FILE` the bridge takes that file's `[mapping]`, `[groups]` and `[access]`
//! sections and keeps the demo values for everything else, so an admin can try a mapping
//! against the sample users. Nothing here is fit for production: no passwords, throwaway keys.

pub mod forum;
pub mod idp;

use std::future::Future;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngCore as _;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::Application;
use crate::config::mapping_file::{MappingSections, mapping_sections};
use crate::config::{self, Config, LogFormat};
use crate::http::pages::Pages;
use crate::mapping::Mapper;

/// The warning every demo page, log and banner carries.
pub const DEVELOPMENT_ONLY: &str = "Development only: a local demo with made-up users, no \
    passwords and throwaway keys. Never expose it to a network or use it for a real forum.";

/// The demo's pages: the bridge's layout with the demo forum and the demo IdP's login form. The
/// production [`Pages`] never holds these.
const DEMO_TEMPLATES: &[(&str, &str)] = &[
    crate::http::pages::BASE_TEMPLATE,
    (
        "demo_forum.html",
        include_str!("../../templates/demo_forum.html"),
    ),
    (
        "demo_idp_login.html",
        include_str!("../../templates/demo_idp_login.html"),
    ),
];

/// The OAuth client id the demo's bridge is registered under at the demo IdP.
pub const DEMO_CLIENT_ID: &str = "discourse-demo";

/// The mapping the demo uses without `--config`, in the TOML an admin would put in the bridge's
/// config file. `[mapping]` and `[access]` keep their defaults (so an unverified email is
/// refused); `[groups]` shows paths, a rename, role rules and managed groups on the sample users.
const DEMO_MAPPING: &str = r#"
[groups]
sources = ["groups"]
# Keycloak-style paths: "/staff/moderators" becomes "staff-moderators".
paths = "flatten"
# Groups no rename or rule mentions are sent under their own name ("engineering").
unmatched = "keep"
# The groups the IdP owns: a user no longer in one is removed from it.
managed = ["staff_team", "moderation", "engineering", "forum_admins"]

[groups.rename]
# "staff" is one of Discourse's automatic groups and cannot be sent.
staff = "staff_team"

[[groups.rules]]
group = "staff-moderators"
to = "moderation"
moderator = true

[[groups.rules]]
group = "forum-admins"
to = "forum_admins"
admin = true
"#;

/// Where the three servers listen. Port 0 picks a free port (used by the tests).
#[derive(Debug, Clone, Copy)]
pub struct DemoAddresses {
    pub forum: SocketAddr,
    pub bridge: SocketAddr,
    pub idp: SocketAddr,
}

impl DemoAddresses {
    /// `127.0.0.1` on `port` (forum), `port + 1` (bridge) and `port + 2` (IdP); `None` when
    /// `port` is 0 or those ports do not exist.
    pub fn loopback(port: u16) -> Option<Self> {
        let at = |offset: u16| {
            port.checked_add(offset)
                .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
        };
        if port == 0 {
            return None;
        }
        Some(Self {
            forum: at(0)?,
            bridge: at(1)?,
            idp: at(2)?,
        })
    }

    /// Free ports on `127.0.0.1` for all three.
    pub fn loopback_any_port() -> Self {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        Self {
            forum: any,
            bridge: any,
            idp: any,
        }
    }
}

/// The base URLs of the three servers, without a trailing slash.
#[derive(Debug, Clone)]
pub struct DemoUrls {
    pub forum: String,
    pub bridge: String,
    pub idp: String,
}

/// A scratch directory for the bridge's store, removed when the demo ends.
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> std::io::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("discourse-oidc-bridge-demo-{}", random_hex(8)));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path)?;
        Ok(Self(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The three servers, bound and ready to serve.
#[derive(Debug)]
pub struct Demo {
    urls: DemoUrls,
    forum: (TcpListener, Router),
    idp: (TcpListener, Router),
    bridge: Application,
    _scratch: ScratchDir,
}

impl Demo {
    /// Binds the three servers, generates the demo secrets and the IdP's signing key, and builds
    /// the bridge from the demo configuration, with the mapping sections of `mapping_file` when
    /// one is given.
    pub async fn start(
        addresses: DemoAddresses,
        mapping_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let (mapping, mapping_source) = match mapping_file {
            Some(path) => (
                mapping_sections_from_file(path)?,
                format!(
                    "the [mapping], [groups] and [access] sections of {}",
                    path.display()
                ),
            ),
            None => (
                mapping_sections(DEMO_MAPPING)
                    .map_err(|e| anyhow::anyhow!("the built-in demo mapping: {e}"))?,
                "the demo's built-in mapping".to_owned(),
            ),
        };

        let forum_listener = bind(addresses.forum).await?;
        let idp_listener = bind(addresses.idp).await?;
        let bridge_address = if addresses.bridge.port() == 0 {
            free_port(addresses.bridge.ip())?
        } else {
            addresses.bridge
        };
        let urls = DemoUrls {
            forum: origin(forum_listener.local_addr()?),
            bridge: origin(bridge_address),
            idp: origin(idp_listener.local_addr()?),
        };

        let scratch = ScratchDir::create().context("creating the demo's store directory")?;
        let connect_secret = random_hex(32);
        let client_secret = random_hex(32);
        let mut config = demo_config(
            &urls,
            bridge_address,
            &connect_secret,
            &client_secret,
            &scratch.0,
        )?;
        apply_mapping(&mut config, mapping)?;

        let signing_key = tokio::task::spawn_blocking(idp::SigningKey::generate)
            .await
            .context("generating the demo IdP's key")??;
        let pages = Arc::new(
            Pages::with_templates(DEMO_TEMPLATES).context("compiling the demo page templates")?,
        );
        let idp_router = idp::router(
            urls.idp.clone(),
            idp::ClientRegistration {
                client_id: DEMO_CLIENT_ID.to_owned(),
                client_secret: SecretString::from(client_secret),
                redirect_uri: config.callback_url().to_string(),
                post_logout_redirect_uri: config.post_logout_url().to_string(),
            },
            signing_key,
            pages.clone(),
        );
        let forum_router = forum::router(
            forum::ForumSettings {
                base_url: urls.forum.clone(),
                bridge_sso_url: format!("{}/sso", urls.bridge),
                bridge_url: urls.bridge.clone(),
                idp_url: urls.idp.clone(),
                connect_secret: SecretString::from(connect_secret),
                mapping_source,
            },
            pages,
        );
        let bridge = Application::build(config).await?;
        Ok(Self {
            urls,
            forum: (forum_listener, forum_router),
            idp: (idp_listener, idp_router),
            bridge,
            _scratch: scratch,
        })
    }

    /// Where the three servers are.
    pub fn urls(&self) -> &DemoUrls {
        &self.urls
    }

    /// Serves all three until `shutdown` completes (or one of them fails), then stops them all
    /// and removes the scratch directory.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let signal = |mut receiver: watch::Receiver<bool>| async move {
            let _ = receiver.wait_for(|stop| *stop).await;
        };
        let (forum_listener, forum_router) = self.forum;
        let (idp_listener, idp_router) = self.idp;
        let forum = async {
            axum::serve(forum_listener, forum_router)
                .with_graceful_shutdown(signal(stopped.clone()))
                .await
                .context("serving the demo forum")
        };
        let idp = async {
            axum::serve(idp_listener, idp_router)
                .with_graceful_shutdown(signal(stopped.clone()))
                .await
                .context("serving the demo IdP")
        };
        let bridge = self.bridge.run_until(signal(stopped.clone()));
        let servers = async { tokio::try_join!(forum, idp, bridge).map(|_| ()) };
        tokio::pin!(servers);
        let result = tokio::select! {
            result = &mut servers => result,
            () = shutdown => {
                let _ = stop.send(true);
                servers.await
            }
        };
        let _ = stop.send(true);
        drop(self._scratch);
        result
    }

    /// The bridge's shared state (to watch its readiness).
    pub fn bridge_state(&self) -> &crate::http::AppState {
        self.bridge.state()
    }
}

/// Resolves once the bridge has loaded the IdP's configuration (its `/readyz` would say ready),
/// or after `limit`; returns whether it is ready.
async fn wait_for_discovery(state: &crate::http::AppState, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if state.readiness().await.ready {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address} (is another demo or program using it?)"))
}

/// Finds a free port by binding one and letting it go. Another process could take it before
/// the bridge binds it, which only matters for tests on a busy machine.
fn free_port(ip: IpAddr) -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .context("finding a free port for the bridge")?;
    Ok(probe.local_addr()?)
}

fn origin(address: SocketAddr) -> String {
    format!("http://{address}")
}

/// The bridge's configuration for the demo, through the same loader and validation as a real
/// one (environment-style pairs; the process environment is not read).
fn demo_config(
    urls: &DemoUrls,
    bridge_address: SocketAddr,
    connect_secret: &str,
    client_secret: &str,
    store_path: &Path,
) -> anyhow::Result<Config> {
    let pairs = [
        ("BRIDGE_SERVER__LISTEN", bridge_address.to_string()),
        ("BRIDGE_SERVER__PUBLIC_URL", urls.bridge.clone()),
        // A local demo: its metrics may share the bridge's listener.
        ("BRIDGE_SERVER__METRICS_PUBLIC", "true".to_owned()),
        ("BRIDGE_DISCOURSE__URL", urls.forum.clone()),
        (
            "BRIDGE_DISCOURSE__CONNECT_SECRET",
            connect_secret.to_owned(),
        ),
        ("BRIDGE_OIDC__ISSUER", urls.idp.clone()),
        ("BRIDGE_OIDC__CLIENT_ID", DEMO_CLIENT_ID.to_owned()),
        ("BRIDGE_OIDC__CLIENT_SECRET", client_secret.to_owned()),
        (
            "BRIDGE_OIDC__SCOPES",
            "openid email profile groups".to_owned(),
        ),
        ("BRIDGE_OIDC__USERINFO", "true".to_owned()),
        ("BRIDGE_SESSION__SECRET", random_hex(32)),
        ("BRIDGE_STORE__PATH", store_path.display().to_string()),
    ];
    config::load_from(None, pairs.map(|(k, v)| (k.to_owned(), v)))
        .map_err(|errors| anyhow::anyhow!("the demo configuration is invalid:\n{errors}"))
}

fn mapping_sections_from_file(path: &Path) -> anyhow::Result<MappingSections> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    mapping_sections(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Puts the mapping sections into the demo configuration, compiling them first so that a
/// broken mapping is reported with every problem before anything starts.
fn apply_mapping(
    config: &mut Config,
    (mapping, groups, access): MappingSections,
) -> anyhow::Result<()> {
    let mapper = Mapper::compile(&mapping, &groups, &access).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the mapping is invalid:\n{}", lines.join("\n"))
    })?;
    config.mapper = Arc::new(mapper);
    Ok(())
}

/// `bytes` random bytes as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// A 302 no cache keeps (the demo's redirects carry one-time values).
pub(crate) fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "bad redirect target\n").into_response(),
    }
}

fn write_out(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn write_err(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// `discourse-oidc-bridge demo`: starts the three servers on `127.0.0.1:port..=port+2`, prints
/// the URL to open and runs until Ctrl-C or SIGTERM.
pub async fn run(config_path: Option<PathBuf>, port: u16) -> ExitCode {
    let _log_guard = crate::telemetry::init(LogFormat::Text, "info");
    let Some(addresses) = DemoAddresses::loopback(port) else {
        write_err("demo: --port must be between 1 and 65533 (the demo uses it and the next two)\n");
        return ExitCode::from(2);
    };
    let demo = match Demo::start(addresses, config_path.as_deref()).await {
        Ok(demo) => demo,
        Err(e) => {
            write_err(&format!("demo: {e:#}\n"));
            return ExitCode::FAILURE;
        }
    };
    tracing::warn!("{DEVELOPMENT_ONLY}");
    // Only the mapping's warnings: the rest (no logout relay, plain http) is how a demo is.
    for warning in demo.bridge_state().config.mapper.warnings() {
        tracing::warn!("mapping: {warning}");
    }
    let urls = demo.urls().clone();
    let state = demo.bridge_state().clone();
    let announce = tokio::spawn(async move {
        if !wait_for_discovery(&state, Duration::from_secs(10)).await {
            tracing::warn!("the bridge has not loaded the demo IdP's configuration yet");
        }
        write_out(&format!(
            "\n  DEVELOPMENT ONLY - do not expose this demo or use it for a real forum.\n\n  \
             Open the demo forum:  {forum}/\n\n  \
             bridge (real code):   {bridge}\n  \
             demo OpenID provider: {idp}\n\n  \
             Press Ctrl-C to stop.\n\n",
            forum = urls.forum,
            bridge = urls.bridge,
            idp = urls.idp,
        ));
    });
    let result = demo.run_until(crate::app::shutdown_signal()).await;
    announce.abort();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "demo failed");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_consecutive_on_loopback() {
        let addresses = DemoAddresses::loopback(8400).unwrap();
        assert_eq!(addresses.forum.to_string(), "127.0.0.1:8400");
        assert_eq!(addresses.bridge.to_string(), "127.0.0.1:8401");
        assert_eq!(addresses.idp.to_string(), "127.0.0.1:8402");
        assert!(DemoAddresses::loopback(0).is_none());
        assert!(DemoAddresses::loopback(65534).is_none());
        assert!(DemoAddresses::loopback(65533).is_some());
    }

    #[test]
    fn other_sections_of_a_mapping_file_are_ignored() {
        let sections = mapping_sections("[server]\nlisten = \"0.0.0.0:1\"\n[oidc]\nissuer = 3\n");
        assert!(sections.is_ok(), "{sections:?}");
    }

    #[test]
    fn the_built_in_demo_mapping_compiles() {
        let (mapping, groups, access) = mapping_sections(DEMO_MAPPING).unwrap();
        assert!(Mapper::compile(&mapping, &groups, &access).is_ok());
    }
}
