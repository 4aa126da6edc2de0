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
    Check {
        /// Also reach the identity provider (discovery, keys, client authentication method and
        /// algorithm), the forum and the store (PostgreSQL: server and schema version), and
        /// report certificate and connection problems; changes nothing.
        #[arg(long)]
        online: bool,
    },
    /// Copy an embedded store (login records, sessions, replay set, pending logout jobs) into
    /// the PostgreSQL store of store.url, to move a single-replica deployment to several
    /// replicas. Idempotent: copying again adds nothing already copied.
    CopyStore {
        /// Directory of the embedded store; defaults to store.path.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
    /// Run the whole flow locally for trying things out: the real bridge, a built-in
    /// development identity provider and a stand-in forum, all on 127.0.0.1. Development only.
    /// With --config, only that file's [mapping], [groups] and [access] sections are used.
    #[cfg(feature = "demo")]
    Demo {
        /// Port of the demo forum page (the bridge and the IdP take the next two).
        #[arg(long, default_value_t = 8400)]
        port: u16,
    },
    /// Show what the bridge would send Discourse for a set of claims, and which rule produced
    /// each output. Exit 0 when the login would be allowed, 3 when denied, 2 for a bad config.
    Explain {
        /// JSON file with the merged ID-token + userinfo claims (an object).
        #[arg(long, value_name = "CLAIMS.json")]
        claims: PathBuf,
        /// Print a machine-readable JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Log a user out of Discourse now (for deprovisioning scripts), through the same durable
    /// relay as back-channel logout. Needs discourse.api_key and api_username.
    Logout {
        /// The user's external_id (as the bridge sent it to Discourse).
        #[arg(long, value_name = "ID")]
        external_id: String,
    },
    /// Push a user's mapped payload to Discourse (POST /admin/users/sync_sso), so profile and
    /// group changes apply without waiting for a login. Needs the admin API key.
    Sync {
        /// JSON file with the user's claims, as for `explain`.
        #[arg(long, value_name = "CLAIMS.json")]
        claims: PathBuf,
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
pub fn run(mut cli: Cli) -> ExitCode {
    // An empty BRIDGE_CONFIG means "no file": configure from the environment alone.
    if cli
        .config
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        cli.config = None;
    }
    match cli.command {
        Command::Check { online: false } => check(cli.config),
        Command::Check { online: true } => match check(cli.config.clone()) {
            code if code == ExitCode::SUCCESS => with_runtime(async {
                let peers = check_online(cli.config.clone()).await;
                let store = check_store_online(cli.config).await;
                if peers == ExitCode::SUCCESS {
                    store
                } else {
                    peers
                }
            }),
            code => code,
        },
        Command::CopyStore { from } => with_runtime(copy_store(cli.config, from)),
        Command::Serve => with_runtime(serve(cli.config)),
        #[cfg(feature = "demo")]
        Command::Demo { port } => with_runtime(crate::demo::run(cli.config, port)),
        Command::Healthcheck { url } => with_runtime(healthcheck(cli.config, url)),
        Command::Explain { claims, json } => explain(cli.config, &claims, json),
        Command::Logout { external_id } => with_runtime(logout(cli.config, external_id)),
        Command::Sync { claims } => with_runtime(sync(cli.config, &claims)),
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
    if !report.ends_with('\n') {
        write_out("\n");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `check --online`: discovery at the IdP through the configured trust, proxy and client
/// credentials (which also chooses the `private_key_jwt` algorithm), and a request to the
/// forum's `/srv/status`. Prints one line per peer; exit 1 when one cannot be used.
async fn check_online(path: Option<PathBuf>) -> ExitCode {
    let Ok(config) = load_or_report(path.as_deref()) else {
        return ExitCode::from(2);
    };
    let mut ok = true;
    match config.idp_outbound().client() {
        Ok(http) => {
            match crate::oidc::provider::Provider::discover(
                http,
                &config.oidc,
                &config.logout,
                &config.callback_url(),
            )
            .await
            {
                Ok(provider) => {
                    let mut line = format!(
                        "identity provider: OK, {} (token_auth_method {})",
                        provider.issuer().as_str(),
                        config.oidc.token_auth_method.as_str()
                    );
                    if let Some(alg) = provider.assertion_alg() {
                        line.push_str(&format!(", client assertions signed with {alg}"));
                    }
                    write_out(&format!("{line}\n"));
                }
                Err(e) => {
                    ok = false;
                    let problem =
                        crate::outbound::describe(&e, &config.oidc.issuer, "oidc.ca_file");
                    write_out(&format!("identity provider: {problem}\n"));
                }
            }
        }
        Err(e) => {
            ok = false;
            write_out(&format!(
                "identity provider: cannot build the HTTP client: {e}\n"
            ));
        }
    }
    let mut status = config.discourse.url.clone();
    let prefix = status.path().trim_end_matches('/').to_owned();
    status.set_path(&format!("{prefix}/srv/status"));
    match config.discourse_outbound().client() {
        Ok(http) => match http.get(status.clone()).send().await {
            Ok(response) if response.status().is_success() => {
                write_out(&format!("forum: OK, {status}\n"));
            }
            Ok(response) => {
                ok = false;
                write_out(&format!("forum: {status} answered {}\n", response.status()));
            }
            Err(e) => {
                ok = false;
                let problem = crate::outbound::describe(&e, &status, "discourse.ca_file");
                write_out(&format!("forum: {problem}\n"));
            }
        },
        Err(e) => {
            ok = false;
            write_out(&format!("forum: cannot build the HTTP client: {e}\n"));
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The store part of `check --online`: opens the configured store without changing it and
/// reports on it.
async fn check_store_online(path: Option<PathBuf>) -> ExitCode {
    let run = async || -> Result<ExitCode, ExitCode> {
        let config = load_or_report(path.as_deref())?;
        let Some(settings) = &config.store.postgres else {
            let store = crate::store::RedbStore::open(&config.store.path).map_err(|e| {
                write_err(&format!("store: cannot open the embedded store: {e}\n"));
                ExitCode::FAILURE
            })?;
            let pending = crate::store::LogoutStore::pending_count(&store)
                .await
                .map_err(|e| {
                    write_err(&format!("store: {e}\n"));
                    ExitCode::FAILURE
                })?;
            write_out(&format!(
                "store: embedded at {}, {pending} logout job(s) pending\n",
                config.store.path.display()
            ));
            return Ok(ExitCode::SUCCESS);
        };
        let summary =
            crate::store::postgres::parse_url(secrecy::ExposeSecret::expose_secret(&settings.url))
                .map(|(_, summary)| summary)
                .map_err(|problem| {
                    write_err(&format!("store.url: {problem}\n"));
                    ExitCode::FAILURE
                })?;
        let target = format!(
            "{}:{}/{} as {} (sslmode={})",
            summary.hosts.join(","),
            summary.port,
            summary.dbname,
            summary.user,
            summary.tls.as_str()
        );
        let store = crate::store::PgStore::new(settings).map_err(|e| {
            write_err(&format!("store: {e}\n"));
            ExitCode::FAILURE
        })?;
        let (server, schema) = store.inspect().await.map_err(|e| {
            write_err(&format!("store: cannot use PostgreSQL at {target}: {e}\n"));
            ExitCode::FAILURE
        })?;
        let known = crate::store::postgres::known_schema_version();
        write_out(&format!(
            "store: PostgreSQL {server} at {target}; schema version {schema}, this binary knows \
             {known}\n"
        ));
        if schema > known {
            write_err(&format!(
                "store: {}\n",
                crate::store::StoreError::SchemaTooNew {
                    found: schema,
                    known
                }
            ));
            return Ok(ExitCode::FAILURE);
        }
        if schema < known {
            write_out("store: the bridge applies the missing migrations when it starts\n");
        }
        Ok(ExitCode::SUCCESS)
    };
    run().await.unwrap_or_else(|code| code)
}

/// `copy-store`: embedded store → PostgreSQL.
async fn copy_store(path: Option<PathBuf>, from: Option<PathBuf>) -> ExitCode {
    let run = async || -> Result<ExitCode, ExitCode> {
        let config = load_or_report(path.as_deref())?;
        let Some(settings) = &config.store.postgres else {
            write_err("store.url must name the PostgreSQL store to copy into\n");
            return Err(ExitCode::from(2));
        };
        let from = from.unwrap_or_else(|| config.store.path.clone());
        if !from.join(crate::store::DATABASE_FILE).is_file() {
            write_err(&format!(
                "{} holds no embedded store ({})\n",
                from.display(),
                crate::store::DATABASE_FILE
            ));
            return Err(ExitCode::from(2));
        }
        let source = crate::store::RedbStore::open(&from).map_err(|e| {
            write_err(&format!("cannot open the embedded store: {e}\n"));
            ExitCode::FAILURE
        })?;
        let target = crate::store::PgStore::connect(settings)
            .await
            .map_err(|e| {
                write_err(&format!("cannot use the PostgreSQL store: {e}\n"));
                ExitCode::FAILURE
            })?;
        let report = crate::store::copy::embedded_to_postgres(&source, &target)
            .await
            .map_err(|e| {
                write_err(&format!("copy failed, nothing was written: {e}\n"));
                ExitCode::FAILURE
            })?;
        write_out(&format!(
            "copied into PostgreSQL: {} login entries, {} sessions, {} logout token ids, {} \
             pending logout jobs (entries already there were left alone)\n",
            report.logins, report.sessions, report.jtis, report.jobs
        ));
        Ok(ExitCode::SUCCESS)
    };
    run().await.unwrap_or_else(|code| code)
}

/// Loads the configuration or reports every problem (exit 2).
fn load_or_report(path: Option<&std::path::Path>) -> Result<config::Config, ExitCode> {
    config::load(path).map_err(|errors| {
        write_err(&format!("invalid configuration:\n{errors}\n"));
        ExitCode::from(2)
    })
}

fn read_claims(
    path: &std::path::Path,
) -> Result<serde_json::Map<String, serde_json::Value>, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        write_err(&format!("cannot read {}: {e}\n", path.display()));
        ExitCode::from(2)
    })?;
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(claims)) => Ok(claims),
        Ok(_) => {
            write_err(&format!(
                "{}: claims must be a JSON object\n",
                path.display()
            ));
            Err(ExitCode::from(2))
        }
        Err(e) => {
            write_err(&format!("{}: not JSON: {e}\n", path.display()));
            Err(ExitCode::from(2))
        }
    }
}

fn explain(path: Option<PathBuf>, claims: &std::path::Path, json: bool) -> ExitCode {
    let run = || -> Result<ExitCode, ExitCode> {
        let config = load_or_report(path.as_deref())?;
        let claims = read_claims(claims)?;
        // A SCIM User document is mapped through the claims provisioning would build.
        let claims = if crate::scim::service::is_scim_user(&claims) {
            let scim = config
                .scim
                .clone()
                .unwrap_or_else(|| crate::scim::ScimConfig::with_tokens(Vec::new()));
            let claims = crate::scim::service::explain_claims(
                &scim,
                config.mapper.group_claim(),
                &serde_json::Value::Object(claims),
            );
            if !json {
                write_out("SCIM user; the claims provisioning builds from it:\n");
                write_out(&format!(
                    "{}\n\n",
                    serde_json::to_string_pretty(&claims).unwrap_or_default()
                ));
            }
            claims
        } else {
            claims
        };
        let outcome = config.mapper.map(&claims);
        if json {
            let report = crate::mapping::explain::Report::from(&outcome);
            match serde_json::to_string_pretty(&report) {
                Ok(text) => write_out(&format!("{text}\n")),
                Err(e) => {
                    write_err(&format!("cannot render the report: {e}\n"));
                    return Err(ExitCode::FAILURE);
                }
            }
        } else {
            write_out(&crate::mapping::explain::render_text(&outcome));
        }
        Ok(if outcome.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        })
    };
    run().unwrap_or_else(|code| code)
}

fn admin_api(config: &config::Config) -> Result<crate::discourse::api::DiscourseApi, ExitCode> {
    let Some((key, username)) = config.discourse.admin_api() else {
        write_err("discourse.api_key and discourse.api_username must be set for this command\n");
        return Err(ExitCode::from(2));
    };
    let http = config.discourse_outbound().client().map_err(|e| {
        write_err(&format!("cannot build the HTTP client: {e}\n"));
        ExitCode::FAILURE
    })?;
    Ok(crate::discourse::api::DiscourseApi::new(
        http,
        config.discourse.url.clone(),
        key.clone(),
        username.to_owned(),
    ))
}

async fn logout(path: Option<PathBuf>, external_id: String) -> ExitCode {
    use crate::relay::{JobOutcome, Relay, RelaySettings};
    use crate::store::{RelayJob, RelayReason};
    let run = async || -> Result<ExitCode, ExitCode> {
        let config = load_or_report(path.as_deref())?;
        let api = admin_api(&config)?;
        let store = crate::store::open(&config.store).map_err(|e| {
            write_err(&format!("cannot open the store: {e}\n"));
            ExitCode::FAILURE
        })?;
        let now = chrono::Utc::now();
        let job = RelayJob::new(external_id.clone(), RelayReason::AdminCommand, now);
        let id = store.enqueue(&job).await.map_err(|e| {
            write_err(&format!("cannot queue the log-out: {e}\n"));
            ExitCode::FAILURE
        })?;
        let relay = Relay::new(
            store,
            api,
            RelaySettings::from_config(&config.logout, &config.store),
        );
        let outcomes = relay.run_due(now).await.map_err(|e| {
            write_err(&format!("store error: {e}\n"));
            ExitCode::FAILURE
        })?;
        match outcomes
            .into_iter()
            .find(|(job, _)| *job == id)
            .map(|(_, o)| o)
        {
            Some(JobOutcome::LoggedOut { user_id }) => {
                write_out(&format!(
                    "logged out Discourse user {user_id} ({external_id})\n"
                ));
                Ok(ExitCode::SUCCESS)
            }
            Some(JobOutcome::Applied { user_id }) => {
                write_out(&format!(
                    "applied for Discourse user {user_id} ({external_id})\n"
                ));
                Ok(ExitCode::SUCCESS)
            }
            Some(JobOutcome::NoSuchUser) => {
                write_out(&format!(
                    "no Discourse user has external_id {external_id}\n"
                ));
                Ok(ExitCode::SUCCESS)
            }
            Some(JobOutcome::Retrying { next_attempt_at }) => {
                write_out(&format!(
                    "Discourse is unavailable; the log-out is queued and the running bridge \
                     retries it (next attempt {next_attempt_at})\n"
                ));
                Ok(ExitCode::from(75))
            }
            Some(JobOutcome::GivenUp) => {
                write_err("Discourse refused the log-out (check the API key and username)\n");
                Ok(ExitCode::FAILURE)
            }
            None => {
                write_out("queued; the running bridge delivers it\n");
                Ok(ExitCode::SUCCESS)
            }
        }
    };
    run().await.unwrap_or_else(|code| code)
}

async fn sync(path: Option<PathBuf>, claims: &std::path::Path) -> ExitCode {
    let run = async || -> Result<ExitCode, ExitCode> {
        let config = load_or_report(path.as_deref())?;
        let api = admin_api(&config)?;
        let claims = read_claims(claims)?;
        let payload = match config.mapper.map(&claims) {
            Ok(mapped) => mapped.payload,
            denied @ Err(_) => {
                write_out(&crate::mapping::explain::render_text(&denied));
                return Ok(ExitCode::from(3));
            }
        };
        let secret = crate::discourse::connect::ConnectSecret::new(
            secrecy::ExposeSecret::expose_secret(&config.discourse.connect_secret),
        );
        let signed = payload.sign(&secret);
        match api.sync_sso(&signed.sso, &signed.sig).await {
            Ok(user_id) => {
                write_out(&format!("synced Discourse user {user_id}\n"));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                write_err(&format!("sync_sso failed: {e}\n"));
                Ok(ExitCode::FAILURE)
            }
        }
    };
    run().await.unwrap_or_else(|code| code)
}

async fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match config::load(path.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            write_err(&format!("invalid configuration:\n{errors}\n"));
            return ExitCode::from(2);
        }
    };
    let _log_guard = crate::telemetry::init(config.log.format, &config.log.level);
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
