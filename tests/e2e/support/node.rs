//! Locates Node.js and makes sure the pinned test peers in `tests/node` are installed.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// `tests/node` with its `node_modules` installed from the lockfile (`npm ci`, once per run).
pub fn node_dir() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
            let installed = dir.join("node_modules/.package-lock.json");
            let lock = dir.join("package-lock.json");
            let fresh = match (installed.metadata(), lock.metadata()) {
                (Ok(i), Ok(l)) => i.modified().ok() >= l.modified().ok(),
                _ => false,
            };
            if !fresh {
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .status()
                    .expect("npm must be installed to run the integration tests");
                assert!(status.success(), "npm ci in tests/node failed");
            }
            dir
        })
        .clone()
}
