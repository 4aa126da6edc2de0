//! Shared store on PostgreSQL: the [`LogoutStore`] of several replicas.
//!
//! Connections come from a `deadpool-postgres` pool over `tokio-postgres`, with TLS through
//! rustls (`sslmode=require` or `verify-full`, libpq's meanings, plus `[store] ca_file` for a
//! private CA). The schema is the bridge's own: the SQL files under `migrations/`, embedded at
//! build time and applied by `refinery` on first use, under a session advisory lock so that
//! replicas starting together do not race. A database migrated by a newer bridge is refused
//! ([`StoreError::SchemaTooNew`]).
//!
//! Relay jobs are claimed with `SELECT … FOR UPDATE SKIP LOCKED` and a lease (`locked_until`):
//! two replicas never hold the same job, and a job whose holder died comes back when its lease
//! ends. "First time seen" checks (`jti`, login states) are `INSERT … ON CONFLICT` with the
//! affected row count. Every call is bounded by `query_timeout`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::OnceCell;
use tokio_postgres::config::SslMode;

use super::{
    ClaimedJob, CompletedLogin, LoginRecord, LogoutStore, PruneReport, RelayJob, RelayJobId,
    RelayReason, ScimKind, ScimWrite, SessionRecord, StoreError,
};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Table in which refinery records the applied migrations.
const HISTORY_TABLE: &str = "bridge_schema_history";

/// Key of the session advisory lock held while migrating ("bridge" as ASCII digits).
const MIGRATION_LOCK: i64 = 0x6272_6964_6765;

/// Name of the counter of given-up jobs in `bridge_counters`.
const GIVEN_UP_TOTAL: &str = "given_up_total";

/// The newest schema version this binary knows (the highest `V<n>__*.sql`).
pub fn known_schema_version() -> u32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(refinery::Migration::version)
        .max()
        .unwrap_or(0)
}

/// How the connection is protected, from the URL's `sslmode` (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `sslmode=disable`: plain TCP (a database on the same host or a private network).
    Disable,
    /// `sslmode=require`: encrypted; the certificate is checked only when `ca_file` is set.
    Require,
    /// `sslmode=verify-full`: encrypted, certificate chain and host name verified against
    /// `ca_file` or the public web roots.
    VerifyFull,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A parsed `[store] url`, for `check` (no secret in it).
#[derive(Debug, Clone)]
pub struct UrlSummary {
    pub hosts: Vec<String>,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub tls: TlsMode,
}

/// Checks the form of a `postgres://USER[:PASS]@HOST[:PORT]/DB?sslmode=...` URL without
/// connecting. `sslmode` is required (`disable`, `require` or `verify-full`), so that whether
/// the connection is encrypted is always a decision written down. The error never repeats the
/// URL (it may hold a password).
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, UrlSummary), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "scheme must be postgres:// or postgresql://, not {}://",
            parsed.scheme()
        ));
    }
    let mut tls = None;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "sslmode" => {
                tls = Some(match value.as_ref() {
                    "disable" => TlsMode::Disable,
                    "require" => TlsMode::Require,
                    "verify-full" => TlsMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other} is not supported; use disable, require or \
                             verify-full"
                        ));
                    }
                });
            }
            "sslrootcert" | "sslcert" | "sslkey" => {
                return Err(format!(
                    "{key} in the URL is not supported; set [store] ca_file for a private CA"
                ));
            }
            _ => {
                rest.append_pair(&key, &value);
            }
        }
    }
    let Some(tls) = tls else {
        return Err(
            "needs ?sslmode=verify-full (or require, or disable for a database on a private \
             network)"
                .to_owned(),
        );
    };
    let mut without_ssl = parsed.clone();
    let rest = rest.finish();
    without_ssl.set_query(if rest.is_empty() { None } else { Some(&rest) });
    let mut config: tokio_postgres::Config = without_ssl
        .as_str()
        .parse()
        .map_err(|e| format!("is not a PostgreSQL URL ({e})"))?;
    config.ssl_mode(match tls {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Require | TlsMode::VerifyFull => SslMode::Require,
    });
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if hosts.is_empty() {
        return Err("names no host".to_owned());
    }
    let Some(user) = config.get_user().map(str::to_owned) else {
        return Err("names no user (postgres://USER:PASSWORD@HOST/DB)".to_owned());
    };
    let Some(dbname) = config.get_dbname().map(str::to_owned) else {
        return Err("names no database (postgres://USER:PASSWORD@HOST/DB)".to_owned());
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok((
        config,
        UrlSummary {
            hosts,
            port,
            dbname,
            user,
            tls,
        },
    ))
}

/// `[store]` settings of the PostgreSQL backend, validated by the configuration.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// The connection URL (may hold a password).
    pub url: SecretString,
    /// Most connections this replica opens.
    pub pool_size: usize,
    /// Longest wait for a new connection (TCP + TLS + authentication), and for a free one.
    pub connect_timeout: Duration,
    /// Longest time one store call may take before it fails.
    pub query_timeout: Duration,
    /// PEM file of the CA that signed the server's certificate (a private CA).
    pub ca_file: Option<PathBuf>,
}

/// The PostgreSQL implementation of [`LogoutStore`].
#[derive(Debug)]
pub struct PgStore {
    pool: Pool,
    query_timeout: Duration,
    /// Set once the schema is migrated (and known not to be newer than this binary).
    schema: OnceCell<()>,
}

impl PgStore {
    /// Builds the pool. Connects nothing yet: the first call connects and migrates.
    pub fn new(settings: &PgSettings) -> Result<Self, StoreError> {
        let (mut config, summary) =
            parse_url(settings.url.expose_secret()).map_err(StoreError::Config)?;
        config.connect_timeout(settings.connect_timeout);
        config.application_name("discourse-oidc-bridge");
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match summary.tls {
            TlsMode::Disable => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            mode => {
                let tls = tls_config(mode, settings.ca_file.as_deref())?;
                Manager::from_config(
                    config,
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                    manager_config,
                )
            }
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .wait_timeout(Some(settings.connect_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(format!("connection pool: {e}")))?;
        Ok(Self {
            pool,
            query_timeout: settings.query_timeout,
            schema: OnceCell::new(),
        })
    }

    /// Connects (building the pool as [`Self::new`] does) and migrates at once: for `check
    /// --online` and the copy command, which want to know now.
    pub async fn connect(settings: &PgSettings) -> Result<Self, StoreError> {
        let store = Self::new(settings)?;
        store.prepare().await?;
        Ok(store)
    }

    /// Connects without changing anything and reports the server's version and the schema
    /// version the database is at (0 before the first migration). For `check --online`.
    pub async fn inspect(&self) -> Result<(String, u32), StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let row = client.query_one("SHOW server_version", &[]).await?;
            let version: String = row.try_get(0)?;
            let schema = applied_schema_version(&client).await?;
            Ok((version, schema))
        })
        .await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Postgres(format!("no connection: {e}")))
    }

    /// Runs `call` within the query timeout.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.query_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Postgres(format!(
                "no answer within {} (store.query_timeout)",
                humantime::format_duration(self.query_timeout)
            ))),
        }
    }

    /// Prepares and checks the schema, under the migration lock.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut object = self.client().await?;
        let client: &mut tokio_postgres::Client = &mut object;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let result = run_migrations(client).await;
        // The lock is per session; a failed unlock is released when the connection closes.
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result
    }

    /// Everything the ready-to-serve store needs before a call.
    async fn ready(&self) -> Result<(), StoreError> {
        self.schema
            .get_or_try_init(|| self.bounded(self.migrate()))
            .await
            .map(|_| ())
    }

    /// Copies the contents of an embedded store in (see [`super::copy`]).
    pub async fn import(
        &self,
        export: &super::copy::Export,
    ) -> Result<super::copy::CopyReport, StoreError> {
        self.ready().await?;
        let mut report = super::copy::CopyReport::default();
        let mut object = self.client().await?;
        let txn = object.transaction().await?;
        // Login records keyed by `sub` and by `sid`: the same shape, one table each.
        for (insert, entries) in [
            (
                "INSERT INTO bridge_logins_by_sub (iss, sub, external_id, logged_in_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &export.by_sub,
            ),
            (
                "INSERT INTO bridge_logins_by_sid (iss, sid, external_id, logged_in_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &export.by_sid,
            ),
        ] {
            for entry in entries {
                report.logins += txn
                    .execute(
                        insert,
                        &[
                            &entry.iss,
                            &entry.key,
                            &entry.external_id,
                            &entry.logged_in_at,
                        ],
                    )
                    .await?;
            }
        }
        for (iss, jti, keep_until) in &export.jtis {
            report.jtis += txn
                .execute(
                    "INSERT INTO bridge_seen_jtis (iss, jti, keep_until) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                    &[iss, jti, keep_until],
                )
                .await?;
        }
        for (id, session) in &export.sessions {
            report.sessions += txn
                .execute(
                    "INSERT INTO bridge_sessions (id, id_token, iss, sub, sid, external_id, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    &[
                        id,
                        &session.id_token,
                        &session.iss,
                        &session.sub,
                        &session.sid,
                        &session.external_id,
                        &session.expires_at,
                    ],
                )
                .await?;
        }
        for (id, job) in &export.jobs {
            let source = format!(
                "embedded:{id}:{}:{}",
                job.created_at.timestamp_millis(),
                job.external_id
            );
            let first = txn
                .execute(
                    "INSERT INTO bridge_imported_jobs (source) VALUES ($1) \
                     ON CONFLICT DO NOTHING",
                    &[&source],
                )
                .await?;
            if first == 1 {
                txn.execute(
                    "INSERT INTO bridge_relay_jobs (external_id, reason, created_at, attempts, \
                     next_attempt_at, last_error, payload) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &job.external_id,
                        &job.reason.as_str(),
                        &job.created_at,
                        &i32::try_from(job.attempts).unwrap_or(i32::MAX),
                        &job.next_attempt_at,
                        &job.last_error,
                        &job.payload,
                    ],
                )
                .await?;
                report.jobs += 1;
            }
        }
        txn.commit().await?;
        Ok(report)
    }
}

async fn run_migrations(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    let known = known_schema_version();
    let applied = applied_schema_version(client).await?;
    if applied > known {
        return Err(StoreError::SchemaTooNew {
            found: applied,
            known,
        });
    }
    let report = runner
        .run_async(client)
        .await
        .map_err(|e| StoreError::Postgres(format!("migrating the schema: {e}")))?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "applied a store migration"
        );
    }
    Ok(())
}

/// The newest migration applied to the database; 0 before the first.
async fn applied_schema_version(client: &tokio_postgres::Client) -> Result<u32, StoreError> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await?;
    if !row.try_get::<_, bool>(0)? {
        return Ok(0);
    }
    let row = client
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0) FROM {HISTORY_TABLE}"),
            &[],
        )
        .await?;
    Ok(u32::try_from(row.try_get::<_, i32>(0)?).unwrap_or(0))
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => Self::Postgres(format!("{}: {}", db.code().code(), db.message())),
            None => Self::Postgres(error.to_string()),
        }
    }
}

/// The rustls client configuration for `mode`.
fn tls_config(
    mode: TlsMode,
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS: {e}")))?;
    let config = match (mode, ca_file) {
        (TlsMode::Require, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        (_, ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            match ca_file {
                Some(path) => {
                    let certs = load_ca_file(path)?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(StoreError::Config(format!(
                            "ca_file {} holds no usable certificate",
                            path.display()
                        )));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// The certificates of a PEM file.
pub fn load_ca_file(
    path: &std::path::Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, StoreError> {
    use rustls_pki_types::pem::PemObject as _;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StoreError::Config(format!("ca_file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(StoreError::Config(format!(
            "ca_file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// `sslmode=require` without `ca_file`: libpq's meaning, encryption without identifying the
/// server. Handshake signatures are still checked.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn job_id(id: i64) -> RelayJobId {
    u64::try_from(id).unwrap_or(0)
}

fn row_id(id: RelayJobId) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

fn count(rows: u64) -> u64 {
    rows
}

#[async_trait::async_trait]
impl LogoutStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        self.ready().await
    }

    async fn record_login(&self, login: &LoginRecord) -> Result<(), StoreError> {
        self.ready().await?;
        self.bounded(async {
            let mut object = self.client().await?;
            let txn = object.transaction().await?;
            insert_login(&txn, login).await?;
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    async fn record_logins(&self, logins: &[CompletedLogin]) -> Result<(), StoreError> {
        if logins.is_empty() {
            return Ok(());
        }
        self.ready().await?;
        self.bounded(async {
            let mut object = self.client().await?;
            let txn = object.transaction().await?;
            // Later logins of the same key win, as they would one transaction each; one
            // statement may not touch a row twice, so each key goes in once.
            let mut by_sub = std::collections::HashMap::new();
            let mut by_sid = std::collections::HashMap::new();
            let mut sessions = std::collections::HashMap::new();
            for completed in logins {
                let login = &completed.login;
                by_sub.insert(
                    (&login.iss, &login.sub, &login.external_id),
                    login.logged_in_at,
                );
                if let Some(sid) = &login.sid {
                    by_sid.insert((&login.iss, sid), (&login.external_id, login.logged_in_at));
                }
                sessions.insert(&completed.session_id, &completed.session);
            }
            let mut columns: (Vec<&str>, Vec<&str>, Vec<&str>, Vec<DateTime<Utc>>) =
                Default::default();
            for ((iss, sub, external_id), at) in &by_sub {
                columns.0.push(iss);
                columns.1.push(sub);
                columns.2.push(external_id);
                columns.3.push(*at);
            }
            let statement = txn
                .prepare_cached(
                    "INSERT INTO bridge_logins_by_sub (iss, sub, external_id, logged_in_at) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
                     $4::timestamptz[]) ON CONFLICT (iss, sub, external_id) \
                     DO UPDATE SET logged_in_at = EXCLUDED.logged_in_at",
                )
                .await?;
            txn.execute(
                &statement,
                &[&columns.0, &columns.1, &columns.2, &columns.3],
            )
            .await?;
            if !by_sid.is_empty() {
                let mut columns: (Vec<&str>, Vec<&str>, Vec<&str>, Vec<DateTime<Utc>>) =
                    Default::default();
                for ((iss, sid), (external_id, at)) in &by_sid {
                    columns.0.push(iss);
                    columns.1.push(sid);
                    columns.2.push(external_id);
                    columns.3.push(*at);
                }
                let statement = txn
                    .prepare_cached(
                        "INSERT INTO bridge_logins_by_sid (iss, sid, external_id, logged_in_at) \
                         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
                         $4::timestamptz[]) ON CONFLICT (iss, sid) DO UPDATE SET \
                         external_id = EXCLUDED.external_id, \
                         logged_in_at = EXCLUDED.logged_in_at",
                    )
                    .await?;
                txn.execute(
                    &statement,
                    &[&columns.0, &columns.1, &columns.2, &columns.3],
                )
                .await?;
            }
            let mut ids = Vec::new();
            let mut tokens = Vec::new();
            let mut isss = Vec::new();
            let mut subs = Vec::new();
            let mut sids: Vec<Option<&str>> = Vec::new();
            let mut external_ids = Vec::new();
            let mut expiries = Vec::new();
            for (id, session) in &sessions {
                ids.push(id.as_str());
                tokens.push(session.id_token.as_str());
                isss.push(session.iss.as_str());
                subs.push(session.sub.as_str());
                sids.push(session.sid.as_deref());
                external_ids.push(session.external_id.as_str());
                expiries.push(session.expires_at);
            }
            let statement = txn
                .prepare_cached(
                    "INSERT INTO bridge_sessions (id, id_token, iss, sub, sid, external_id, \
                     expires_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
                     $4::text[], $5::text[], $6::text[], $7::timestamptz[]) \
                     ON CONFLICT (id) DO UPDATE SET id_token = EXCLUDED.id_token, \
                     iss = EXCLUDED.iss, sub = EXCLUDED.sub, sid = EXCLUDED.sid, \
                     external_id = EXCLUDED.external_id, expires_at = EXCLUDED.expires_at",
                )
                .await?;
            txn.execute(
                &statement,
                &[&ids, &tokens, &isss, &subs, &sids, &external_ids, &expiries],
            )
            .await?;
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    async fn external_ids_for_sub(&self, iss: &str, sub: &str) -> Result<Vec<String>, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT external_id FROM bridge_logins_by_sub WHERE iss = $1 AND sub = $2 \
                     ORDER BY logged_in_at, external_id",
                )
                .await?;
            let rows = client.query(&statement, &[&iss, &sub]).await?;
            rows.iter()
                .map(|row| row.try_get::<_, String>(0).map_err(StoreError::from))
                .collect()
        })
        .await
    }

    async fn external_id_for_sid(
        &self,
        iss: &str,
        sid: &str,
    ) -> Result<Option<String>, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT external_id FROM bridge_logins_by_sid WHERE iss = $1 AND sid = $2",
                )
                .await?;
            let row = client.query_opt(&statement, &[&iss, &sid]).await?;
            row.map(|row| row.try_get::<_, String>(0))
                .transpose()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn remember_jti(
        &self,
        iss: &str,
        jti: &str,
        keep_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO bridge_seen_jtis (iss, jti, keep_until) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            Ok(client
                .execute(&statement, &[&iss, &jti, &keep_until])
                .await?
                == 1)
        })
        .await
    }

    async fn accept_logout(
        &self,
        iss: &str,
        jti: &str,
        keep_until: DateTime<Utc>,
        jobs: &[RelayJob],
    ) -> Result<bool, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let mut object = self.client().await?;
            let txn = object.transaction().await?;
            let statement = txn
                .prepare_cached(
                    "INSERT INTO bridge_seen_jtis (iss, jti, keep_until) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            if txn.execute(&statement, &[&iss, &jti, &keep_until]).await? != 1 {
                return Ok(false);
            }
            for job in jobs {
                insert_job(&txn, job).await?;
            }
            txn.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn mark_login_state_used(
        &self,
        digest: [u8; 32],
        now: DateTime<Utc>,
        keep_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO bridge_used_login_states (digest, keep_until) VALUES ($1, $2) \
                     ON CONFLICT (digest) DO UPDATE SET keep_until = EXCLUDED.keep_until \
                     WHERE bridge_used_login_states.keep_until <= $3",
                )
                .await?;
            Ok(client
                .execute(&statement, &[&digest.as_slice(), &keep_until, &now])
                .await?
                == 1)
        })
        .await
    }

    async fn scim_get(&self, kind: ScimKind, id: &str) -> Result<Option<String>, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT record FROM bridge_scim_resources WHERE kind = $1 AND id = $2",
                )
                .await?;
            let row = client.query_opt(&statement, &[&kind.as_str(), &id]).await?;
            Ok(match row {
                Some(row) => Some(row.try_get(0)?),
                None => None,
            })
        })
        .await
    }

    async fn scim_list(&self, kind: ScimKind) -> Result<Vec<(String, String)>, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT id, record FROM bridge_scim_resources WHERE kind = $1 ORDER BY id",
                )
                .await?;
            let rows = client.query(&statement, &[&kind.as_str()]).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push((row.try_get(0)?, row.try_get(1)?));
            }
            Ok(out)
        })
        .await
    }

    async fn scim_apply(&self, writes: &[ScimWrite], jobs: &[RelayJob]) -> Result<(), StoreError> {
        self.ready().await?;
        self.bounded(async {
            let mut object = self.client().await?;
            let txn = object.transaction().await?;
            for write in writes {
                match &write.record {
                    Some(record) => {
                        txn.execute(
                            "INSERT INTO bridge_scim_resources (kind, id, record) \
                             VALUES ($1, $2, $3) \
                             ON CONFLICT (kind, id) DO UPDATE SET record = EXCLUDED.record",
                            &[&write.kind.as_str(), &write.id, record],
                        )
                        .await?;
                    }
                    None => {
                        txn.execute(
                            "DELETE FROM bridge_scim_resources WHERE kind = $1 AND id = $2",
                            &[&write.kind.as_str(), &write.id],
                        )
                        .await?;
                    }
                }
            }
            for job in jobs {
                let superseded: Vec<&str> =
                    job.reason.supersedes().iter().map(|r| r.as_str()).collect();
                if !superseded.is_empty() {
                    txn.execute(
                        "DELETE FROM bridge_relay_jobs WHERE external_id = $1 \
                         AND reason = ANY($2)",
                        &[&job.external_id, &superseded],
                    )
                    .await?;
                }
            }
            for job in jobs {
                insert_job(&txn, job).await?;
            }
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    async fn enqueue(&self, job: &RelayJob) -> Result<RelayJobId, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let mut object = self.client().await?;
            let txn = object.transaction().await?;
            let id = insert_job(&txn, job).await?;
            txn.commit().await?;
            Ok(id)
        })
        .await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        holder: &str,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        self.ready().await?;
        let until = lease_end(now, lease);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "WITH due AS ( \
                       SELECT id, locked_until AS previous_lease FROM bridge_relay_jobs \
                       WHERE next_attempt_at <= $1 \
                         AND (locked_until IS NULL OR locked_until <= $1) \
                       ORDER BY next_attempt_at, id LIMIT $2 \
                       FOR UPDATE SKIP LOCKED) \
                     UPDATE bridge_relay_jobs AS job SET locked_until = $3, locked_by = $4 \
                     FROM due WHERE job.id = due.id \
                     RETURNING job.id, job.external_id, job.reason, job.created_at, \
                       job.attempts, job.next_attempt_at, job.last_error, \
                       due.previous_lease IS NOT NULL, job.payload",
                )
                .await?;
            let rows = client
                .query(&statement, &[&now, &limit, &until, &holder])
                .await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in rows {
                let reason: String = row.try_get(2)?;
                let attempts: i32 = row.try_get(4)?;
                claimed.push(ClaimedJob {
                    id: job_id(row.try_get(0)?),
                    job: RelayJob {
                        external_id: row.try_get(1)?,
                        reason: RelayReason::from_name(&reason).ok_or(StoreError::Corrupt {
                            table: "bridge_relay_jobs",
                            detail: "unknown reason".to_owned(),
                        })?,
                        created_at: row.try_get(3)?,
                        attempts: u32::try_from(attempts).unwrap_or(0),
                        next_attempt_at: row.try_get(5)?,
                        last_error: row.try_get(6)?,
                        payload: row.try_get(8)?,
                    },
                    taken_over: row.try_get(7)?,
                });
            }
            claimed.sort_by_key(|claim| (claim.job.next_attempt_at, claim.id));
            Ok(claimed)
        })
        .await
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT MIN(GREATEST(next_attempt_at, COALESCE(locked_until, \
                     next_attempt_at))) FROM bridge_relay_jobs",
                )
                .await?;
            Ok(client.query_one(&statement, &[]).await?.try_get(0)?)
        })
        .await
    }

    async fn reschedule(
        &self,
        id: RelayJobId,
        next_attempt_at: DateTime<Utc>,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "UPDATE bridge_relay_jobs SET next_attempt_at = $2, attempts = $3, \
                     last_error = $4, locked_until = NULL, locked_by = NULL WHERE id = $1",
                )
                .await?;
            client
                .execute(
                    &statement,
                    &[
                        &row_id(id),
                        &next_attempt_at,
                        &i32::try_from(attempts).unwrap_or(i32::MAX),
                        &last_error,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn complete(&self, id: RelayJobId) -> Result<(), StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("DELETE FROM bridge_relay_jobs WHERE id = $1")
                .await?;
            client.execute(&statement, &[&row_id(id)]).await?;
            Ok(())
        })
        .await
    }

    async fn give_up(&self, id: RelayJobId) -> Result<(), StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "WITH removed AS (DELETE FROM bridge_relay_jobs WHERE id = $1 RETURNING id) \
                     INSERT INTO bridge_counters (name, value) \
                     SELECT $2, COUNT(*) FROM removed HAVING COUNT(*) > 0 \
                     ON CONFLICT (name) DO UPDATE \
                     SET value = bridge_counters.value + EXCLUDED.value",
                )
                .await?;
            client
                .execute(&statement, &[&row_id(id), &GIVEN_UP_TOTAL])
                .await?;
            Ok(())
        })
        .await
    }

    async fn list_pending(&self) -> Result<Vec<(RelayJobId, RelayJob)>, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT id, external_id, reason, created_at, attempts, next_attempt_at, \
                     last_error, payload FROM bridge_relay_jobs ORDER BY next_attempt_at, id",
                )
                .await?;
            let rows = client.query(&statement, &[]).await?;
            let mut pending = Vec::with_capacity(rows.len());
            for row in rows {
                let reason: String = row.try_get(2)?;
                let attempts: i32 = row.try_get(4)?;
                pending.push((
                    job_id(row.try_get(0)?),
                    RelayJob {
                        external_id: row.try_get(1)?,
                        reason: RelayReason::from_name(&reason).ok_or(StoreError::Corrupt {
                            table: "bridge_relay_jobs",
                            detail: "unknown reason".to_owned(),
                        })?,
                        created_at: row.try_get(3)?,
                        attempts: u32::try_from(attempts).unwrap_or(0),
                        next_attempt_at: row.try_get(5)?,
                        last_error: row.try_get(6)?,
                        payload: row.try_get(7)?,
                    },
                ));
            }
            Ok(pending)
        })
        .await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("SELECT COUNT(*) FROM bridge_relay_jobs")
                .await?;
            let count: i64 = client.query_one(&statement, &[]).await?.try_get(0)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn given_up_count(&self) -> Result<u64, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("SELECT value FROM bridge_counters WHERE name = $1")
                .await?;
            let row = client.query_opt(&statement, &[&GIVEN_UP_TOTAL]).await?;
            let value: i64 = match row {
                Some(row) => row.try_get(0)?,
                None => 0,
            };
            Ok(u64::try_from(value).unwrap_or(0))
        })
        .await
    }

    async fn put_session(
        &self,
        session_id: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO bridge_sessions (id, id_token, iss, sub, sid, external_id, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE \
                     SET id_token = EXCLUDED.id_token, iss = EXCLUDED.iss, sub = EXCLUDED.sub, \
                     sid = EXCLUDED.sid, external_id = EXCLUDED.external_id, \
                     expires_at = EXCLUDED.expires_at",
                )
                .await?;
            client
                .execute(
                    &statement,
                    &[
                        &session_id,
                        &session.id_token,
                        &session.iss,
                        &session.sub,
                        &session.sid,
                        &session.external_id,
                        &session.expires_at,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn take_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.ready().await?;
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "DELETE FROM bridge_sessions WHERE id = $1 \
                     RETURNING id_token, iss, sub, sid, external_id, expires_at",
                )
                .await?;
            let Some(row) = client.query_opt(&statement, &[&session_id]).await? else {
                return Ok(None);
            };
            let session = SessionRecord {
                id_token: row.try_get(0)?,
                iss: row.try_get(1)?,
                sub: row.try_get(2)?,
                sid: row.try_get(3)?,
                external_id: row.try_get(4)?,
                expires_at: row.try_get(5)?,
            };
            Ok(Some(session).filter(|session| session.expires_at > now))
        })
        .await
    }

    async fn prune(
        &self,
        now: DateTime<Utc>,
        login_retention: Duration,
    ) -> Result<PruneReport, StoreError> {
        self.ready().await?;
        let oldest = TimeDelta::from_std(login_retention)
            .ok()
            .and_then(|retention| now.checked_sub_signed(retention))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.bounded(async {
            let client = self.client().await?;
            let delete = |sql: &'static str, before: DateTime<Utc>| {
                let client = &client;
                async move { client.execute(sql, &[&before]).await }
            };
            let by_sub = delete(
                "DELETE FROM bridge_logins_by_sub WHERE logged_in_at < $1",
                oldest,
            )
            .await?;
            let by_sid = delete(
                "DELETE FROM bridge_logins_by_sid WHERE logged_in_at < $1",
                oldest,
            )
            .await?;
            let jtis = delete("DELETE FROM bridge_seen_jtis WHERE keep_until < $1", now).await?;
            let sessions =
                delete("DELETE FROM bridge_sessions WHERE expires_at <= $1", now).await?;
            let login_states = delete(
                "DELETE FROM bridge_used_login_states WHERE keep_until <= $1",
                now,
            )
            .await?;
            Ok(PruneReport {
                logins: count(by_sub) + count(by_sid),
                jtis,
                sessions,
                login_states,
            })
        })
        .await
    }
}

/// One relay job inside a transaction; returns its id.
async fn insert_job(
    txn: &deadpool_postgres::Transaction<'_>,
    job: &RelayJob,
) -> Result<RelayJobId, StoreError> {
    let statement = txn
        .prepare_cached(
            "INSERT INTO bridge_relay_jobs (external_id, reason, created_at, attempts, \
             next_attempt_at, last_error, payload) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING id",
        )
        .await?;
    let row = txn
        .query_one(
            &statement,
            &[
                &job.external_id,
                &job.reason.as_str(),
                &job.created_at,
                &i32::try_from(job.attempts).unwrap_or(i32::MAX),
                &job.next_attempt_at,
                &job.last_error,
                &job.payload,
            ],
        )
        .await?;
    Ok(job_id(row.try_get(0)?))
}

/// One login record inside a transaction.
async fn insert_login(
    txn: &deadpool_postgres::Transaction<'_>,
    login: &LoginRecord,
) -> Result<(), StoreError> {
    txn.execute(
        "INSERT INTO bridge_logins_by_sub (iss, sub, external_id, logged_in_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (iss, sub, external_id) \
         DO UPDATE SET logged_in_at = EXCLUDED.logged_in_at",
        &[
            &login.iss,
            &login.sub,
            &login.external_id,
            &login.logged_in_at,
        ],
    )
    .await?;
    if let Some(sid) = &login.sid {
        txn.execute(
            "INSERT INTO bridge_logins_by_sid (iss, sid, external_id, logged_in_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (iss, sid) DO UPDATE SET \
             external_id = EXCLUDED.external_id, logged_in_at = EXCLUDED.logged_in_at",
            &[&login.iss, sid, &login.external_id, &login.logged_in_at],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_connecting() {
        let (_, summary) =
            parse_url("postgres://bridge:pw@db.example:6543/bridge?sslmode=verify-full").unwrap();
        assert_eq!(summary.hosts, ["db.example"]);
        assert_eq!(summary.port, 6543);
        assert_eq!(summary.dbname, "bridge");
        assert_eq!(summary.user, "bridge");
        assert_eq!(summary.tls, TlsMode::VerifyFull);
        let (_, summary) = parse_url(
            "postgresql://bridge@db/bridge?sslmode=require&connect_timeout=3&application_name=x",
        )
        .unwrap();
        assert_eq!((summary.port, summary.tls), (5432, TlsMode::Require));

        for (url, complaint) in [
            ("postgres://bridge:pw@db/bridge", "sslmode"),
            ("postgres://bridge:pw@db/bridge?sslmode=prefer", "prefer"),
            (
                "postgres://bridge:pw@db/bridge?sslmode=verify-ca",
                "verify-ca",
            ),
            ("mysql://bridge:pw@db/bridge?sslmode=disable", "scheme"),
            ("not a url", "not a URL"),
            ("postgres://db/bridge?sslmode=disable", "user"),
            ("postgres://bridge:pw@db?sslmode=disable", "database"),
            (
                "postgres://bridge:pw@db/bridge?sslmode=disable&sslrootcert=/ca.pem",
                "ca_file",
            ),
        ] {
            let error = parse_url(url).unwrap_err();
            assert!(error.contains(complaint), "{url}: {error}");
            assert!(
                !error.contains("pw"),
                "the password is never repeated: {error}"
            );
        }
    }

    #[test]
    fn the_embedded_migrations_are_versioned_from_one() {
        assert!(known_schema_version() >= 1);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        assert!(matches!(load_ca_file(&path), Err(StoreError::Config(_))));
        assert!(matches!(
            tls_config(TlsMode::VerifyFull, Some(&path)),
            Err(StoreError::Config(_))
        ));
        assert!(tls_config(TlsMode::VerifyFull, None).is_ok());
        assert!(tls_config(TlsMode::Require, None).is_ok());
    }
}
