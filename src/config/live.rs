//! The mapping rules in force while the bridge runs, and their live reload: on SIGHUP or when
//! the configuration file's content changes, the file is loaded (and its mapping compiled) once,
//! and on success its `[mapping]`, `[groups]` and `[access]` rules are swapped in atomically.
//! Other sections need a restart. A broken file is reported and the active rules stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::Config;
use crate::mapping::Mapper;

/// How often the configuration file is checked for changes.
pub const CONFIG_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The mapping rules in force and the SHA-256 of the configuration file they came from.
#[derive(Debug)]
pub struct ActiveMapping {
    pub mapper: Arc<Mapper>,
    /// Lowercase hex SHA-256 of the configuration file (see [`super::ConfigSource`]).
    pub config_sha256: String,
}

/// The active mapping, shared by every login and replaced as a whole on reload.
#[derive(Debug)]
pub struct LiveMapping {
    active: ArcSwap<ActiveMapping>,
    /// The configuration file to reload from; `None` when everything came from the environment.
    path: Option<PathBuf>,
}

impl LiveMapping {
    /// Starts with the mapping compiled when `config` was loaded.
    pub fn new(config: &Config) -> Self {
        Self {
            active: ArcSwap::from_pointee(ActiveMapping {
                mapper: config.mapper.clone(),
                config_sha256: config.source.sha256.clone(),
            }),
            path: config.source.path.clone(),
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

    /// SHA-256 of the configuration file whose mapping rules are active.
    pub fn config_sha256(&self) -> String {
        self.active.load().config_sha256.clone()
    }

    /// Re-reads the configuration file and, if it is valid, swaps in its mapping rules.
    /// Returns whether new rules were activated.
    pub fn reload(&self) -> bool {
        let Some(path) = self.path.as_deref() else {
            return false;
        };
        match super::load(Some(path)) {
            Ok(config) => {
                let sha256 = config.source.sha256.clone();
                self.active.store(Arc::new(ActiveMapping {
                    mapper: config.mapper,
                    config_sha256: sha256.clone(),
                }));
                metrics::counter!("bridge_config_reloads_total", "outcome" => "applied")
                    .increment(1);
                tracing::info!(config_sha256 = %sha256, "mapping reloaded");
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
        let mut last_seen = self.config_sha256();
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
