//! Bridge configuration: one TOML file, `BRIDGE_<SECTION>__<KEY>` environment overrides and
//! `<key>_file` secret files, parsed into a raw form and then validated into [`Config`] with
//! every problem reported at once. `config/bridge.example.toml` documents every key.
//!
//! Layering: the file is read first; every environment variable named
//! `BRIDGE_<SECTION>__<KEY>` (deeper tables add more `__<NAME>` parts, e.g.
//! `BRIDGE_OIDC__AUTH_PARAMS__PROMPT`) then replaces that key. Names are matched
//! case-insensitively against the lowercase keys. Variables starting with `BRIDGE_` but without a
//! `__` (such as `BRIDGE_CONFIG`, the config file's path) are not keys and are ignored; a variable
//! naming a key that does not exist is reported like an unknown key in the file.
//!
//! Values from the environment are strings, read as a boolean (`true/false`, `yes/no`, `on/off`,
//! `1/0`) or number where the key needs one. A list is given either as a TOML-style array
//! (`[openid, email]`) or as one string of items separated by commas or spaces
//! (`openid,email groups`). An empty value unsets the key: the file's value is dropped and the
//! default applies (a required key is then reported missing). Secrets are taken verbatim.
//!
//! Secrets (`discourse.connect_secret`, `discourse.api_key`, `oidc.client_secret`, `store.url`,
//! `session.secret`) may instead be read from a file named by `<key>_file`, with one trailing
//! newline removed. Giving both forms in the same layer is a problem; setting either form from the
//! environment replaces both forms from the file. Relative paths (secret files, `store.path`) are
//! resolved against the working directory.

mod layers;
pub mod live;
pub mod mapping_file;
mod pages;
mod raw;
pub mod reference;
mod settings;
mod validate;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use openidconnect::core::CoreJwsSigningAlgorithm;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use rustls_pki_types::CertificateDer;

use crate::mapping::Mapper;
use crate::oidc::client_auth::ClientKey;
use crate::outbound::{ClientIdentity, OutboundSettings};
use crate::routes;

pub use crate::problem::ConfigProblem;
pub use crate::store::StoreConfig;
pub use crate::telemetry::LogFormat;
pub use layers::{EnvOverride, env_var_name};
pub use pages::{MAX_FORUM_NAME_CHARS, PagesConfig, Rgb};
pub use settings::Settings;
pub use validate::MAX_LOGIN_TIMEOUT;

/// The validated configuration the running bridge uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub discourse: DiscourseConfig,
    pub oidc: OidcConfig,
    pub session: SessionConfig,
    pub logout: LogoutConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    /// `[pages]`: the look and language of the pages people see.
    pub pages: PagesConfig,
    /// The `[mapping]`, `[groups]` and `[access]` sections, compiled once while the
    /// configuration is loaded; its warnings are part of [`Config::warnings`].
    pub mapper: Arc<Mapper>,
    /// `[scim]`: SCIM provisioning (docs/scim.md); `None` keeps `/scim/v2` off.
    pub scim: Option<crate::scim::ScimConfig>,
    /// Which file this configuration came from, for `/readyz` and reload logs.
    pub source: ConfigSource,
}

/// Where a configuration was loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The config file, `None` when everything came from the environment.
    pub path: Option<PathBuf>,
    /// Lowercase hex SHA-256 of the file's bytes (of no bytes when there is no file), used to
    /// notice that the file changed. Never shown: the file may hold secrets. What identifies a
    /// configuration to operators is [`Settings::identity`].
    pub sha256: String,
    /// Every key's value after layering, secrets masked.
    pub settings: Settings,
    /// Keys written in the file whose value an environment variable replaced.
    pub env_overrides: Vec<EnvOverride>,
}

impl ConfigSource {
    /// The identity of these settings (see [`Settings::identity`]).
    pub fn identity(&self) -> String {
        self.settings.identity()
    }
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the HTTP server binds (default `0.0.0.0:8080`, all interfaces, because the bridge
    /// usually runs in a container).
    pub listen: SocketAddr,
    /// The bridge's own public base URL; fixes every URL it hands out. An origin, optionally with
    /// a path prefix (`https://example.com/login`, stored without a trailing slash; the root is
    /// `/`). Build URLs with [`Config::callback_url`] and friends rather than by string
    /// concatenation.
    pub public_url: Url,
    /// The path prefix of `public_url` without a trailing slash: `""` at the root, else e.g.
    /// `"/login"`. Routes are served under it and cookie paths carry it.
    pub path_prefix: String,
    /// Proxies whose `X-Forwarded-*` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where `/metrics` is served: its own address (default `127.0.0.1:9090`), or `None` when
    /// `metrics_public = true` asks for the public `listen` address instead.
    pub metrics_listen: Option<SocketAddr>,
    /// Longest wait for a complete request head, from accept and between keep-alive requests
    /// (default 5 s, at most [`MAX_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// Most client connections open at once (default 512, 1 to [`MAX_CONNECTIONS`]); more wait
    /// in the kernel's accept queue.
    pub max_connections: usize,
    /// Proxy for every outbound request (IdP and Discourse); `None` follows the `HTTPS_PROXY`,
    /// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` environment variables. `NO_PROXY` applies either way.
    pub outbound_proxy: Option<Url>,
    /// Which certificate authorities outgoing HTTPS trusts before any `ca_file`.
    pub trust_store: TrustStore,
    /// The operating system's certificates, loaded once when `trust_store` is `os`.
    pub os_roots: Vec<CertificateDer<'static>>,
}

/// The base list of trusted certificate authorities (`server.trust_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustStore {
    /// The Mozilla root list built into the binary (webpki-roots).
    Builtin,
    /// The operating system's store instead (rustls-native-certs: `/etc/ssl/certs` on Linux, or
    /// the files named by `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    Os,
}

/// Upper bound of `server.header_read_timeout`: a slow client may hold a socket this long.
pub const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound of `server.max_connections`.
pub const MAX_CONNECTIONS: usize = 65_536;

/// `[discourse]`
#[derive(Debug, Clone)]
pub struct DiscourseConfig {
    /// The forum's base URL: an origin, optionally with the subfolder Discourse is installed in
    /// (`https://example.com/forum`, stored without a trailing slash; the root is `/`).
    pub url: Url,
    /// The `discourse_connect_secret` (at least 10 characters, as Discourse requires).
    pub connect_secret: SecretString,
    /// Admin API key for the logout relay and `sync`; the relay is active when both are set.
    pub api_key: Option<SecretString>,
    /// The user admin API calls are made as; set exactly when `api_key` is.
    pub api_username: Option<String>,
    /// Certificate authorities trusted for the forum besides the built-in roots (`ca_file`).
    pub ca_certs: Vec<CertificateDer<'static>>,
}

impl DiscourseConfig {
    /// The admin API key and user name, when the logout relay and `sync` can run.
    pub fn admin_api(&self) -> Option<(&SecretString, &str)> {
        Some((self.api_key.as_ref()?, self.api_username.as_deref()?))
    }
}

/// How the bridge authenticates to the IdP's token endpoint (`oidc.token_auth_method`:
/// `auto`, `client_secret_basic`, `client_secret_post`, `private_key_jwt`, `tls_client_auth` or
/// `none`; OpenID Connect Core §9, RFC 8705 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    /// Pick from discovery (`token_endpoint_auth_methods_supported`), preferring basic. Needs a
    /// `client_secret`, like the two explicit secret methods.
    Auto,
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with `client_key_file` (RFC 7523); no secret.
    PrivateKeyJwt,
    /// Mutual TLS with `client_cert_file` + `client_key_file` (RFC 8705 §2.1.1); no secret.
    TlsClientAuth,
    /// Public client: PKCE only.
    None,
}

impl TokenAuthMethod {
    /// Whether the method sends `client_secret` (the automatic choice always does).
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            TokenAuthMethod::Auto
                | TokenAuthMethod::ClientSecretBasic
                | TokenAuthMethod::ClientSecretPost
        )
    }

    /// The name used in configuration and discovery.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAuthMethod::Auto => "auto",
            TokenAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenAuthMethod::ClientSecretPost => "client_secret_post",
            TokenAuthMethod::PrivateKeyJwt => "private_key_jwt",
            TokenAuthMethod::TlsClientAuth => "tls_client_auth",
            TokenAuthMethod::None => "none",
        }
    }
}

/// When the userinfo endpoint is called after a login (`oidc.userinfo`: `true`, `false` or
/// `"auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserinfoMode {
    /// On every login.
    Always,
    /// Never: the ID token's claims are all there is.
    Never,
    /// Only when a claim the mapping reads is absent from the ID token: a request less when
    /// the ID token has every claim the rules read (not with the default `avatar_url =
    /// "picture"` at Keycloak or Entra ID, whose ID tokens lack `picture`).
    Auto,
}

/// Written back the way it is read: `true`, `false` or `"auto"`.
impl Serialize for UserinfoMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            UserinfoMode::Always => serializer.serialize_bool(true),
            UserinfoMode::Never => serializer.serialize_bool(false),
            UserinfoMode::Auto => serializer.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for UserinfoMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;

        impl serde::de::Visitor<'_> for ModeVisitor {
            type Value = UserinfoMode;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or \"auto\"")
            }

            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<UserinfoMode, E> {
                Ok(if value {
                    UserinfoMode::Always
                } else {
                    UserinfoMode::Never
                })
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<UserinfoMode, E> {
                match value.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(UserinfoMode::Always),
                    "false" => Ok(UserinfoMode::Never),
                    "auto" => Ok(UserinfoMode::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(value), &self)),
                }
            }
        }

        deserializer.deserialize_any(ModeVisitor)
    }
}

/// `[oidc]`
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer, parsed. Do not compare `iss` claims or the discovery document's `issuer`
    /// against its string form: `Url` adds a `/` to a bare origin. Use `issuer_exact`.
    pub issuer: Url,
    /// The issuer exactly as configured (surrounding whitespace removed). OpenID Connect
    /// compares issuers as exact strings, and IdPs differ on a trailing slash (Auth0 has one,
    /// Keycloak does not), so this is the form to build `IssuerUrl` from and compare with.
    pub issuer_exact: String,
    pub client_id: String,
    /// Present when `token_auth_method` sends it (validation requires it then).
    pub client_secret: Option<SecretString>,
    /// Requested scopes, `openid` always among them, without duplicates.
    pub scopes: Vec<String>,
    /// Extra authorization request parameters (e.g. `prompt`, `kc_idp_hint`, `hd`); never one
    /// the bridge sets itself.
    pub auth_params: BTreeMap<String, String>,
    /// When to fetch userinfo and merge it over the ID token's claims.
    pub userinfo: UserinfoMode,
    pub token_auth_method: TokenAuthMethod,
    /// Allowed clock difference for `exp` / `iat`.
    pub clock_skew: Duration,
    /// Timeout of every request to the IdP.
    pub http_timeout: Duration,
    /// Minimum time between two JWKS refetches triggered by an unknown `kid`.
    pub jwks_min_refresh_interval: Duration,
    /// The JWS algorithms (RFC 7518 §3.1) the client is registered for: the only ones accepted
    /// on ID tokens and logout tokens, further narrowed to what the IdP advertises. Never
    /// `none`; `HS*` only when listed explicitly and a client secret is set.
    pub signing_algs: Vec<CoreJwsSigningAlgorithm>,
    /// Certificate authorities trusted for the IdP besides the built-in roots (`ca_file`).
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// The `private_key_jwt` signing key (`client_key_file`, `client_key_id`).
    pub client_key: Option<ClientKey>,
    /// The `tls_client_auth` certificate and key (`client_cert_file`, `client_key_file`).
    pub client_identity: Option<ClientIdentity>,
}

/// `oidc.signing_algs` by default: every asymmetric algorithm the bridge verifies. `HS*` (MACs
/// keyed with the client secret, which every replica and deploy pipeline holds) must be listed
/// explicitly.
pub const DEFAULT_SIGNING_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// `[session]`
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Master secret the cookie keys are derived from (HKDF); at least 32 bytes and different
    /// from the DiscourseConnect secret.
    pub secret: SecretString,
    /// How long a login may take from `/sso` to `/callback`; at most [`MAX_LOGIN_TIMEOUT`].
    pub login_timeout: Duration,
}

/// `[logout]`
#[derive(Debug, Clone)]
pub struct LogoutConfig {
    /// Require `typ: logout+jwt` on logout tokens.
    pub strict_typ: bool,
    /// Accept logout tokens without `exp` (Hydra, LemonLDAP, older Keycloak), bounding `iat` age.
    pub allow_missing_exp: bool,
    /// Oldest `iat` accepted when `exp` is missing.
    pub max_token_age: Duration,
    /// How long a relay job is retried before it is given up.
    pub relay_retry_for: Duration,
    /// Send the browser to the IdP's `end_session_endpoint` on `/logout`.
    pub rp_initiated: bool,
}

/// `[log]`
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `discourse_oidc_bridge=debug,info`; checked to
    /// parse as an `EnvFilter`.
    pub level: String,
}

/// `[limits]`
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Logins started per minute per client address (at `/sso`; `/callback` is not counted),
    /// with a minute's worth as burst.
    pub login_per_minute: u32,
    /// Refused login requests (bad signature, unknown `state`) per minute per client address
    /// before further refused ones get 429.
    pub failures_per_minute: u32,
    /// Requests per minute per client address on `/backchannel-logout`.
    pub backchannel_per_minute: u32,
    /// Largest request body accepted (at least 4096).
    pub max_body_bytes: usize,
    /// Bound on handling one request; longer than `oidc.http_timeout`.
    pub request_timeout: Duration,
}

/// Every problem found in a configuration. Displays one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads the configuration from `path` (if any) and the process environment.
///
/// The caller decides the path (the CLI takes it from `--config` or `BRIDGE_CONFIG`); with
/// `None` every key must come from the environment.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    let mut unreadable = Vec::new();
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => env.push((name, value)),
            (name, _) => {
                let name = name.unwrap_or_else(|raw| lossy(&raw));
                if is_config_variable(&name) {
                    unreadable.push(ConfigProblem::new(name, "is not valid UTF-8"));
                }
            }
        }
    }
    match load_from(path, env) {
        Ok(config) if unreadable.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(unreadable)),
        Err(ConfigErrors(mut problems)) => {
            problems.extend(unreadable);
            Err(ConfigErrors(problems))
        }
    }
}

fn lossy(text: &OsString) -> String {
    text.to_string_lossy().into_owned()
}

fn is_config_variable(name: &str) -> bool {
    name.strip_prefix(layers::ENV_PREFIX)
        .is_some_and(|rest| rest.contains(layers::ENV_SEPARATOR))
}

/// Loads the configuration from `path` (if any) and the given environment variables, which
/// stand in for the process environment (tests pass their own pairs instead of mutating it).
pub fn load_from(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let Some(path) = path else {
        return load_layers(None, env);
    };
    let bytes = std::fs::read(path).map_err(|error| {
        ConfigErrors(vec![ConfigProblem::new(
            path.display().to_string(),
            format!("cannot read the config file: {error}"),
        )])
    })?;
    load_layers(Some((path, &bytes)), env)
}

/// Loads the configuration from TOML text instead of a file, e.g. for tests and tools that
/// build one. `source.path` is `None` and `source.sha256` covers `toml`.
pub fn load_from_str(
    toml: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let label = Path::new("<config text>");
    let mut config = load_layers(Some((label, toml.as_bytes())), env)?;
    config.source.path = None;
    Ok(config)
}

fn load_layers(
    file: Option<(&Path, &[u8])>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let file_problem = |path: &Path, message: &str| {
        ConfigErrors(vec![ConfigProblem::new(
            path.display().to_string(),
            message,
        )])
    };
    let (mut source, file_table) = match file {
        Some((path, bytes)) => {
            let text =
                std::str::from_utf8(bytes).map_err(|_| file_problem(path, "is not UTF-8 text"))?;
            let table = layers::parse_file(path, text).map_err(|p| ConfigErrors(vec![p]))?;
            let source = ConfigSource {
                path: Some(path.to_path_buf()),
                sha256: hex::encode(Sha256::digest(bytes)),
                settings: Settings::default(),
                env_overrides: Vec::new(),
            };
            (source, Some((path, table)))
        }
        None => (
            ConfigSource {
                path: None,
                sha256: hex::encode(Sha256::digest([])),
                settings: Settings::default(),
                env_overrides: Vec::new(),
            },
            None,
        ),
    };

    let mut problems = Vec::new();
    let merged = layers::merge(file_table, env, &mut problems);
    source.env_overrides = merged.overrides.clone();
    let raw = layers::deserialize(merged.table, &mut problems);
    if let Some(raw) = &raw {
        source.settings = Settings::from_raw(raw);
    }
    // A key that could not be read was dropped and took its default; what validation then says
    // about that key (usually "is required") is a consequence, not a second problem.
    // An unreadable `<secret>_file` key likewise leaves its secret "missing".
    let unreadable: Vec<Vec<String>> = problems
        .iter()
        .map(|p| layers::key_path(p.key.strip_suffix("_file").unwrap_or(&p.key)))
        .collect();
    let checked_from = problems.len();
    let config = raw.and_then(|raw| validate::validate(raw, source, &mut problems));
    let mut index = 0;
    problems.retain(|problem| {
        index += 1;
        let path = layers::key_path(&problem.key);
        index <= checked_from || !unreadable.iter().any(|bad| path.starts_with(bad))
    });
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            if problems.is_empty() {
                problems.push(ConfigProblem::new(
                    "(configuration)",
                    "could not be read for a reason that names no key",
                ));
            }
            // In the order of the sections in the file; within a section, as found.
            problems.sort_by_key(|problem| section_rank(&problem.key));
            let annotated = problems
                .into_iter()
                .map(|problem| merged.provenance.annotate(problem))
                .collect();
            Err(ConfigErrors(annotated))
        }
    }
}

/// Sections in the order `config/bridge.example.toml` lists them; problems with other keys
/// (unknown sections, variable names, the file itself) come first.
const SECTION_ORDER: [&str; 13] = [
    "server",
    "discourse",
    "oidc",
    "session",
    "logout",
    "store",
    "log",
    "limits",
    "pages",
    "mapping",
    "groups",
    "access",
    "scim",
];

fn section_rank(key: &str) -> usize {
    let section = layers::key_path(key).into_iter().next().unwrap_or_default();
    SECTION_ORDER
        .iter()
        .position(|known| *known == section)
        .map_or(0, |position| position + 1)
}

/// Longest clock skew accepted without a warning: more makes expired tokens usable for longer.
const SKEW_WARNING_THRESHOLD: Duration = Duration::from_secs(5 * 60);

impl Config {
    /// The OIDC redirect URI: `public_url` + `/callback`.
    pub fn callback_url(&self) -> Url {
        self.public_path(routes::CALLBACK)
    }

    /// Where the IdP returns the browser after RP-initiated logout: `public_url` + `/logged-out`.
    pub fn post_logout_url(&self) -> Url {
        self.public_path(routes::LOGGED_OUT)
    }

    /// "Use another account" on the access-denied page: `public_url` + `/switch-account`.
    pub fn switch_account_url(&self) -> Url {
        self.public_path(routes::SWITCH_ACCOUNT)
    }

    /// Discourse's DiscourseConnect endpoint, the forum URL (subfolder included) +
    /// `/session/sso_login`. A received `return_sso_url` must point here; compare parsed URLs
    /// (origin and path), not string prefixes, so that `.../sso_login.evil`, `/forum2/...` or
    /// another port cannot pass.
    pub fn sso_login_prefix(&self) -> Url {
        under(&self.discourse.url, routes::DISCOURSE_SSO_LOGIN)
    }

    /// Where error pages send the user back: the forum's own login start, the forum URL +
    /// `/session/sso`.
    pub fn forum_login_url(&self) -> Url {
        under(&self.discourse.url, routes::DISCOURSE_SSO)
    }

    fn public_path(&self, path: &str) -> Url {
        under(&self.server.public_url, path)
    }

    /// How requests to the IdP are made: `oidc.ca_file`, the `tls_client_auth` identity,
    /// `oidc.http_timeout`, the proxy.
    pub fn idp_outbound(&self) -> OutboundSettings {
        OutboundSettings {
            timeout: self.oidc.http_timeout,
            builtin_roots: self.server.trust_store == TrustStore::Builtin,
            extra_roots: [&self.server.os_roots[..], &self.oidc.ca_certs[..]].concat(),
            identity: self.oidc.client_identity.clone(),
            proxy: self.server.outbound_proxy.clone(),
        }
    }

    /// How requests to Discourse's admin API are made: `discourse.ca_file`, the proxy, the
    /// same timeout as the IdP's.
    pub fn discourse_outbound(&self) -> OutboundSettings {
        OutboundSettings {
            timeout: self.oidc.http_timeout,
            builtin_roots: self.server.trust_store == TrustStore::Builtin,
            extra_roots: [&self.server.os_roots[..], &self.discourse.ca_certs[..]].concat(),
            identity: None,
            proxy: self.server.outbound_proxy.clone(),
        }
    }

    /// Things that are allowed but probably wrong, for `check` and the startup log.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for overridden in &self.source.env_overrides {
            warnings.push(format!(
                "{} in the config file is replaced by environment variable {}: the file's value \
                 is not used",
                overridden.key, overridden.variable
            ));
        }
        for (key, url, consequence) in [
            (
                "server.public_url",
                &self.server.public_url,
                "browsers send the bridge's cookies unencrypted",
            ),
            (
                "discourse.url",
                &self.discourse.url,
                "logins travel to the forum unencrypted",
            ),
            (
                "oidc.issuer",
                &self.oidc.issuer,
                "tokens and keys are fetched unencrypted and can be forged on the way",
            ),
        ] {
            if url.scheme() == "http" && !validate::is_loopback(url) {
                warnings.push(format!(
                    "{key} uses http:// on a host that is not loopback: {consequence}"
                ));
            }
        }
        if self.discourse.admin_api().is_none() {
            warnings.push(
                "the logout relay is off because discourse.api_key and discourse.api_username \
                 are not set: back-channel logouts from the identity provider will not end \
                 Discourse sessions"
                    .to_owned(),
            );
        }
        if !self.oidc.token_auth_method.uses_secret() && self.oidc.client_secret.is_some() {
            warnings.push(format!(
                "oidc.client_secret is set but oidc.token_auth_method = \"{}\" never sends it",
                self.oidc.token_auth_method.as_str()
            ));
        }
        if self.oidc.clock_skew > SKEW_WARNING_THRESHOLD {
            warnings.push(format!(
                "oidc.clock_skew is {}: tokens stay usable that long after they expire; fix the \
                 clocks (NTP) instead",
                humantime::format_duration(self.oidc.clock_skew)
            ));
        }
        if self
            .server
            .trusted_proxies
            .iter()
            .any(|net| net.prefix_len() == 0)
        {
            warnings.push(
                "server.trusted_proxies trusts every address: any client can forge its address \
                 in X-Forwarded-For and evade the rate limits"
                    .to_owned(),
            );
        }
        if self.server.trusted_proxies.is_empty() && !self.server.listen.ip().is_loopback() {
            warnings.push(format!(
                "server.trusted_proxies is empty while the bridge listens on {}: behind a \
                 reverse proxy or load balancer every user then has the proxy's address, and \
                 one office's logins share one rate limit; list the proxy's address (or its \
                 narrowest network)",
                self.server.listen
            ));
        }
        warnings.extend(self.mapper.warnings().iter().cloned());
        warnings
    }
}

/// `base` (path stored without a trailing slash, or `/`) with `path` (starting with `/`)
/// appended.
fn under(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url
}

/// The text `check` prints and whether the configuration is usable: `OK` with the source and
/// any warnings, or one line per problem.
pub fn check_report(result: &Result<Config, ConfigErrors>) -> (String, bool) {
    match result {
        Ok(config) => {
            let source = match &config.source.path {
                Some(path) => path.display().to_string(),
                None => "environment only".to_owned(),
            };
            let mut report = format!(
                "OK: {source} (config identity {})",
                config.source.identity()
            );
            if let Some(key) = &config.oidc.client_key {
                let mut jwk = key.public_jwk.clone();
                if let Some(fields) = jwk.as_object_mut() {
                    fields.insert("kid".to_owned(), key.kid.clone().into());
                    fields.insert("use".to_owned(), "sig".into());
                }
                report.push_str(&format!(
                    "\ninfo: private_key_jwt signs with the {:?} key of oidc.client_key_file, kid \
                     \"{}\"; its public JWK for the identity provider: {}",
                    key.kind(),
                    key.kid,
                    serde_json::json!({ "keys": [jwk] })
                ));
            }
            for warning in config.warnings() {
                report.push_str("\nwarning: ");
                report.push_str(&warning);
            }
            (report, true)
        }
        Err(errors) => {
            let count = errors.0.len();
            let noun = if count == 1 { "problem" } else { "problems" };
            let mut report = format!("{count} configuration {noun}:");
            for problem in &errors.0 {
                report.push_str("\nerror: ");
                report.push_str(&problem.to_string());
            }
            (report, false)
        }
    }
}
