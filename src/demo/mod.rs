//! Development-only demo: a built-in OpenID provider and a stand-in forum around the real bridge, all on loopback.

/// Interim until the demo lands.
pub async fn run(_config: Option<std::path::PathBuf>, _port: u16) -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
