//! Command-line interface (clap): `serve`, `check`, `explain`, `demo` and `healthcheck`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

/// Puts an OpenID Connect identity provider in front of a Discourse forum (DiscourseConnect).
#[derive(Debug, Parser)]
#[command(name = "discourse-oidc-bridge", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Every key can be overridden with BRIDGE_<SECTION>__<KEY>.
    #[arg(long, short, global = true, env = "BRIDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge (HTTP server) until SIGTERM or Ctrl-C.
    Serve,
    /// Validate the configuration: print every problem and exit 1, or print OK and warnings.
    Check,
    /// Run the whole flow locally for trying things out: the real bridge, a built-in
    /// development identity provider and a stand-in forum, all on 127.0.0.1. Development only.
    Demo {
        /// Port of the demo forum page (the bridge and the IdP take the next two).
        #[arg(long, default_value_t = 8400)]
        port: u16,
    },
    /// Ask a running bridge's /healthz (for container health checks; no curl needed).
    Healthcheck {
        /// URL to probe; defaults to /healthz on the configured listen port at 127.0.0.1.
        #[arg(long)]
        url: Option<String>,
    },
}

fn write_out(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn write_err(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check => check(cli.config),
        Command::Serve => with_runtime(serve(cli.config)),
        Command::Demo { port } => with_runtime(crate::demo::run(cli.config, port)),
        Command::Healthcheck { url } => with_runtime(healthcheck(cli.config, url)),
    }
}

fn with_runtime(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            write_err(&format!("cannot start the async runtime: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let result = config::load(path.as_deref());
    let (report, ok) = config::check_report(&result);
    write_out(&report);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match config::load(path.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            write_err(&format!("invalid configuration:\n{errors}\n"));
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(config.log.format, &config.log.level);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config_sha256 = %config.source.sha256,
        listen = %config.server.listen,
        "starting"
    );
    let app = match crate::app::Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "start-up failed");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until(crate::app::shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(path: Option<PathBuf>, url: Option<String>) -> ExitCode {
    let url = match url {
        Some(url) => url,
        None => match config::load(path.as_deref()) {
            Ok(config) => format!("http://127.0.0.1:{}/healthz", config.server.listen.port()),
            Err(errors) => {
                write_err(&format!("invalid configuration:\n{errors}\n"));
                return ExitCode::FAILURE;
            }
        },
    };
    let client = match crate::app::http_client(std::time::Duration::from_secs(3)) {
        Ok(client) => client,
        Err(e) => {
            write_err(&format!("healthcheck: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            write_err(&format!(
                "healthcheck: {url} answered {}\n",
                response.status()
            ));
            ExitCode::FAILURE
        }
        Err(e) => {
            write_err(&format!("healthcheck: {url}: {e}\n"));
            ExitCode::FAILURE
        }
    }
}
