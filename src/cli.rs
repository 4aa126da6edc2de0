//! Command-line interface (clap): `serve`, `check`, `explain`, `demo`, `healthcheck`, `logout`,
//! `sync`, the operator's `store` commands, and the generated `config reference` and
//! `metrics reference`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

/// Puts an OpenID Connect identity provider in front of a Discourse forum (DiscourseConnect).
#[derive(Debug, Parser)]
#[command(name = "discourse-oidc-bridge", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML); without it, BRIDGE_CONFIG names the file, and an empty or
    /// unset BRIDGE_CONFIG means the environment alone. Every key can be overridden with
    /// BRIDGE_<SECTION>__<KEY>.
    #[arg(long, short, global = true, value_name = "FILE")]
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
    /// group changes apply without waiting for a login. Needs the admin API key. Exit 0 when
    /// synced, 3 when the mapping denies the user (nothing is sent), 1 when Discourse refused,
    /// 2 for a bad config or claims file.
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
    /// Operate the store's logout relay queue: list, retry now, or drop pending jobs. Run it
    /// where the bridge runs (same [store] path), e.g. with `docker exec`.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Configuration documentation generated from the code.
    Config {
        #[command(subcommand)]
        command: ReferenceCommand,
    },
    /// Metrics documentation generated from the code.
    Metrics {
        #[command(subcommand)]
        command: ReferenceCommand,
    },
}

/// `config reference` / `metrics reference`.
#[derive(Debug, Subcommand)]
pub enum ReferenceCommand {
    /// Print the reference as Markdown (what docs/configuration.md and docs/metrics.md hold).
    Reference,
}

/// `store ...`: the logout relay queue.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List the pending logout relay jobs, earliest due first.
    List,
    /// Attempt the given jobs (or all) now, from this process; needs the admin API key.
    Retry {
        /// Job ids as `store list` shows them.
        ids: Vec<u64>,
        /// Every pending job.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Give up the given jobs (or all) without delivering them; they count as given up.
    Drop {
        /// Job ids as `store list` shows them.
        ids: Vec<u64>,
        /// Every pending job.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

fn write_out(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn write_err(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The environment variable naming the config file when `--config` is not given.
pub const CONFIG_VARIABLE: &str = "BRIDGE_CONFIG";

/// Runs the parsed command and returns the process exit code.
pub fn run(mut cli: Cli) -> ExitCode {
    // BRIDGE_CONFIG is read here rather than by clap, which refuses an empty value: an empty
    // (or unset) BRIDGE_CONFIG means "no file", configure from the environment alone.
    if cli.config.is_none() {
        cli.config = std::env::var_os(CONFIG_VARIABLE).map(PathBuf::from);
    }
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
        Command::Store { command } => with_runtime(store_command(cli.config, command)),
        Command::Config {
            command: ReferenceCommand::Reference,
        } => {
            write_out(&config::reference::markdown());
            ExitCode::SUCCESS
        }
        Command::Metrics {
            command: ReferenceCommand::Reference,
        } => {
            write_out(&crate::metrics_catalog::markdown());
            ExitCode::SUCCESS
        }
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
    if let Some(sections) = path
        .as_deref()
        .and_then(config::mapping_file::read_mapping_only)
    {
        return check_mapping_only(path.as_deref(), sections);
    }
    // The pages are compiled and rendered in every language, as `serve` does at start.
    let result =
        config::load(path.as_deref()).and_then(
            |config| match crate::http::pages::Pages::from_config(
                &config.pages,
                config.discourse.url.as_str(),
            ) {
                Ok(_) => Ok(config),
                Err(problems) => Err(config::ConfigErrors(
                    problems
                        .into_iter()
                        .map(|problem| match problem.split_once(": ") {
                            Some((key, message)) if key.starts_with("pages.") => {
                                config::ConfigProblem::new(key, message)
                            }
                            _ => config::ConfigProblem::new("pages", problem),
                        })
                        .collect(),
                )),
            },
        );
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

/// `check` of a file holding only `[mapping]`, `[groups]` and `[access]`: compiles the mapping.
fn check_mapping_only(
    path: Option<&std::path::Path>,
    sections: Result<config::mapping_file::MappingSections, String>,
) -> ExitCode {
    let name = path.map(|p| p.display().to_string()).unwrap_or_default();
    let compiled = sections
        .map_err(|e| vec![e])
        .and_then(|(mapping, groups, access)| {
            crate::mapping::Mapper::compile(&mapping, &groups, &access)
                .map_err(|problems| problems.iter().map(ToString::to_string).collect())
        });
    match compiled {
        Ok(mapper) => {
            let mut report = format!(
                "OK: {name} is a mapping-only file ([mapping], [groups], [access]); `explain` \
                 and `demo --config` use it, `serve` needs the full configuration\n"
            );
            for warning in mapper.warnings() {
                report.push_str(&format!("warning: {warning}\n"));
            }
            write_out(&report);
            ExitCode::SUCCESS
        }
        Err(problems) => {
            let mut report = format!("{name}: the mapping is invalid:\n");
            for problem in problems {
                report.push_str(&format!("error: {problem}\n"));
            }
            write_out(&report);
            ExitCode::FAILURE
        }
    }
}

/// The mapping rules of `path`: from a mapping-only file, or from the full configuration.
/// The mapping `explain` uses, and the `[scim]` section when the file is a whole configuration
/// (a mapping-only file has none).
fn load_mapper(
    path: Option<&std::path::Path>,
) -> Result<
    (
        std::sync::Arc<crate::mapping::Mapper>,
        Option<crate::scim::ScimConfig>,
    ),
    ExitCode,
> {
    match path.and_then(config::mapping_file::read_mapping_only) {
        Some(Ok((mapping, groups, access))) => {
            crate::mapping::Mapper::compile(&mapping, &groups, &access)
                .map(|mapper| (std::sync::Arc::new(mapper), None))
                .map_err(|problems| {
                    for problem in problems {
                        write_err(&format!("error: {problem}\n"));
                    }
                    ExitCode::from(2)
                })
        }
        Some(Err(problems)) => {
            write_err(&format!("invalid mapping:\n{problems}\n"));
            Err(ExitCode::from(2))
        }
        None => {
            let config = load_or_report(path)?;
            Ok((config.mapper.clone(), config.scim.clone()))
        }
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
        let (mapper, scim) = load_mapper(path.as_deref())?;
        let claims = read_claims(claims)?;
        // A SCIM User document is mapped through the claims provisioning would build.
        let claims = if crate::scim::service::is_scim_user(&claims) {
            let scim = scim.unwrap_or_else(|| crate::scim::ScimConfig::with_tokens(Vec::new()));
            let claims = crate::scim::service::explain_claims(
                &scim,
                mapper.group_claim(),
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
        let outcome = mapper.map(&claims);
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

/// Opens the configured store (PostgreSQL when `[store] url` is set, else the embedded one),
/// reporting failure (exit 1).
fn open_store(
    config: &config::Config,
) -> Result<std::sync::Arc<dyn crate::store::LogoutStore>, ExitCode> {
    crate::store::open(&config.store).map_err(|e| {
        write_err(&format!("cannot open the store: {e}\n"));
        ExitCode::FAILURE
    })
}

/// Every pending relay job, earliest due first.
async fn pending_jobs(
    store: &dyn crate::store::LogoutStore,
) -> Result<Vec<(crate::store::RelayJobId, crate::store::RelayJob)>, ExitCode> {
    store.list_pending().await.map_err(|e| {
        write_err(&format!("store error: {e}\n"));
        ExitCode::FAILURE
    })
}

/// The pending jobs `ids` names (all with `all`); unknown ids are an error (exit 2).
async fn select_jobs(
    store: &dyn crate::store::LogoutStore,
    ids: &[u64],
    all: bool,
) -> Result<Vec<(crate::store::RelayJobId, crate::store::RelayJob)>, ExitCode> {
    if ids.is_empty() && !all {
        write_err("name the job ids (see `store list`) or give --all\n");
        return Err(ExitCode::from(2));
    }
    let jobs = pending_jobs(store).await?;
    if all {
        return Ok(jobs);
    }
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| !jobs.iter().any(|(job_id, _)| job_id == *id))
        .map(ToString::to_string)
        .collect();
    if !unknown.is_empty() {
        write_err(&format!(
            "no pending job with id {} (delivered, dropped or never queued)\n",
            unknown.join(", ")
        ));
        return Err(ExitCode::from(2));
    }
    Ok(jobs
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .collect())
}

async fn store_command(path: Option<PathBuf>, command: StoreCommand) -> ExitCode {
    use crate::relay::{JobOutcome, Relay, RelaySettings};
    let run = async || -> Result<ExitCode, ExitCode> {
        let config = load_or_report(path.as_deref())?;
        match command {
            StoreCommand::List => {
                let store = open_store(&config)?;
                let jobs = pending_jobs(store.as_ref()).await?;
                let given_up = store.given_up_count().await.unwrap_or_default();
                let mut text = format!(
                    "{} pending logout relay job(s); {given_up} given up over the store's life\n",
                    jobs.len()
                );
                if !jobs.is_empty() {
                    text.push_str(
                        "id\texternal_id\treason\tqueued\tattempts\tnext attempt\tlast error\n",
                    );
                }
                for (id, job) in &jobs {
                    text.push_str(&format!(
                        "{id}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                        job.external_id,
                        job.reason.as_str(),
                        job.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        job.attempts,
                        job.next_attempt_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        job.last_error.as_deref().unwrap_or("-")
                    ));
                }
                write_out(&text);
                Ok(ExitCode::SUCCESS)
            }
            StoreCommand::Drop { ids, all } => {
                let store = open_store(&config)?;
                let jobs = select_jobs(store.as_ref(), &ids, all).await?;
                for (id, job) in &jobs {
                    store.give_up(*id).await.map_err(|e| {
                        write_err(&format!("store error: {e}\n"));
                        ExitCode::FAILURE
                    })?;
                    write_out(&format!("dropped job {id} ({})\n", job.external_id));
                }
                if jobs.is_empty() {
                    write_out("no pending jobs\n");
                }
                Ok(ExitCode::SUCCESS)
            }
            StoreCommand::Retry { ids, all } => {
                let api = admin_api(&config)?;
                let store = open_store(&config)?;
                let jobs = select_jobs(store.as_ref(), &ids, all).await?;
                let now = chrono::Utc::now();
                for (id, job) in &jobs {
                    store
                        .reschedule(
                            *id,
                            now,
                            job.attempts,
                            job.last_error.as_deref().unwrap_or(""),
                        )
                        .await
                        .map_err(|e| {
                            write_err(&format!("store error: {e}\n"));
                            ExitCode::FAILURE
                        })?;
                }
                let relay = Relay::new(
                    store.clone(),
                    api,
                    RelaySettings::from_config(&config.logout, &config.store),
                );
                let outcomes = relay.run_due(now).await.map_err(|e| {
                    write_err(&format!("store error: {e}\n"));
                    ExitCode::FAILURE
                })?;
                let mut failed = false;
                for (id, outcome) in outcomes {
                    let line = match outcome {
                        JobOutcome::LoggedOut { user_id } => {
                            format!("job {id}: logged out Discourse user {user_id}")
                        }
                        JobOutcome::Applied { user_id } => {
                            format!("job {id}: applied to Discourse user {user_id}")
                        }
                        JobOutcome::NoSuchUser => {
                            format!("job {id}: no Discourse user has this external_id; done")
                        }
                        JobOutcome::Retrying { next_attempt_at } => {
                            failed = true;
                            format!("job {id}: failed again; next attempt {next_attempt_at}")
                        }
                        JobOutcome::GivenUp => {
                            failed = true;
                            format!("job {id}: given up (refused by Discourse or too old)")
                        }
                    };
                    write_out(&format!("{line}\n"));
                }
                if jobs.is_empty() {
                    write_out("no pending jobs\n");
                }
                Ok(if failed {
                    ExitCode::from(75)
                } else {
                    ExitCode::SUCCESS
                })
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
                write_err("not synced: the mapping denies this user (exit code 3)\n");
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
        config_identity = %config.source.identity(),
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
