//! The mapping rules in force while the bridge runs, and their live reload: on SIGHUP or when
//! the configuration file's content changes, the file is loaded (and its mapping compiled) once,
//! and on success its `[mapping]`, `[groups]` and `[access]` rules are swapped in atomically.
//! Other sections need a restart: a reload that finds one of their keys changed logs the key
//! and keeps the running value. A broken file is reported and the active rules stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use secrecy::{ExposeSecret as _, SecretString};

use super::{Config, Settings, reference};
use crate::mapping::Mapper;

/// How often the configuration file is checked for changes.
pub const CONFIG_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The mapping rules in force, and the identity of the settings in force: the restart-only keys
/// as started, the live keys as last reloaded.
#[derive(Debug)]
pub struct ActiveMapping {
    pub mapper: Arc<Mapper>,
    /// [`Settings::identity`] of the settings in force, shown on `/readyz`.
    pub config_identity: String,
}

/// The active mapping, shared by every login and replaced as a whole on reload.
#[derive(Debug)]
pub struct LiveMapping {
    active: ArcSwap<ActiveMapping>,
    /// The configuration file to reload from; `None` when everything came from the environment.
    path: Option<PathBuf>,
    /// The settings the bridge started with (their restart-only keys stay in force).
    started: Settings,
    /// The secrets the bridge started with, only to tell that a reloaded file changed one.
    started_secrets: Secrets,
    /// SHA-256 of the file as started, so the first poll does not reload an unchanged file.
    started_file_sha256: String,
}

/// The four secrets of a configuration (never shown, never logged).
struct Secrets([(&'static str, Option<SecretString>); 4]);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([REDACTED])")
    }
}

impl Secrets {
    fn of(config: &Config) -> Self {
        Self([
            (
                "discourse.connect_secret",
                Some(config.discourse.connect_secret.clone()),
            ),
            ("discourse.api_key", config.discourse.api_key.clone()),
            ("oidc.client_secret", config.oidc.client_secret.clone()),
            ("session.secret", Some(config.session.secret.clone())),
        ])
    }

    /// The keys whose value differs between `self` and `other` (compared in constant time).
    fn changed(&self, other: &Secrets) -> Vec<&'static str> {
        use subtle::ConstantTimeEq as _;
        self.0
            .iter()
            .zip(other.0.iter())
            .filter(|((_, a), (_, b))| match (a, b) {
                (Some(a), Some(b)) => !bool::from(
                    a.expose_secret()
                        .as_bytes()
                        .ct_eq(b.expose_secret().as_bytes()),
                ),
                (None, None) => false,
                _ => true,
            })
            .map(|((key, _), _)| *key)
            .collect()
    }
}

impl LiveMapping {
    /// Starts with the mapping compiled when `config` was loaded.
    pub fn new(config: &Config) -> Self {
        Self {
            active: ArcSwap::from_pointee(ActiveMapping {
                mapper: config.mapper.clone(),
                config_identity: config.source.identity(),
            }),
            path: config.source.path.clone(),
            started: config.source.settings.clone(),
            started_secrets: Secrets::of(config),
            started_file_sha256: config.source.sha256.clone(),
        }
    }

    /// The rules in force right now.
    pub fn current(&self) -> Arc<ActiveMapping> {
        self.active.load_full()
    }

    /// The active mapper.
    pub fn mapper(&self) -> Arc<Mapper> {
        self.active.load().mapper.clone()
    }

    /// Identity of the settings in force (see [`ActiveMapping::config_identity`]).
    pub fn config_identity(&self) -> String {
        self.active.load().config_identity.clone()
    }

    /// The keys that differ between the running configuration and `reloaded` but are applied
    /// only at start: every changed setting outside the live sections, and each changed secret.
    fn restart_keys_changed(&self, reloaded: &Config) -> Vec<String> {
        let mut keys: Vec<String> = self
            .started
            .changed_keys(&reloaded.source.settings)
            .into_iter()
            .filter(|key| !reference::is_live(key))
            .collect();
        for key in self.started_secrets.changed(&Secrets::of(reloaded)) {
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_owned());
            }
        }
        keys.sort();
        keys
    }

    /// Re-reads the configuration file and, if it is valid, swaps in its mapping rules; a
    /// changed key that needs a restart is logged (a warning) and keeps its running value.
    /// Returns whether new rules were activated.
    pub fn reload(&self) -> bool {
        let Some(path) = self.path.as_deref() else {
            return false;
        };
        match super::load(Some(path)) {
            Ok(config) => {
                let needs_restart = self.restart_keys_changed(&config);
                let identity = self
                    .started
                    .with_live_from(&config.source.settings)
                    .identity();
                self.active.store(Arc::new(ActiveMapping {
                    mapper: config.mapper,
                    config_identity: identity.clone(),
                }));
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

    /// Reloads on SIGHUP and whenever the file's content changes (polled every
    /// [`CONFIG_POLL_INTERVAL`], which also works for Kubernetes ConfigMap symlink swaps where
    /// file events are unreliable), until `stop` is cancelled.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let Some(path) = self.path.clone() else {
            return;
        };
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        // The content last looked at: a rejected edit is reported once, not on every tick.
        let mut last_seen = self.started_file_sha256.clone();
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
                () = stop.cancelled() => return,
                () = signalled => true,
                _ = tick.tick() => false,
            };
            if forced {
                tracing::info!("SIGHUP: reloading the mapping");
                self.reload();
                continue;
            }
            if let Some(digest) = file_sha256(&path).await
                && digest != last_seen
            {
                last_seen = digest;
                self.reload();
            }
        }
    }
}

/// Lowercase hex SHA-256 of the file at `path`, `None` while it cannot be read.
async fn file_sha256(path: &Path) -> Option<String> {
    let bytes = tokio::fs::read(path).await.ok()?;
    Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)))
}
