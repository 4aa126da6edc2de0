//! Bridge configuration: one TOML file, `BRIDGE_<SECTION>__<KEY>` environment overrides and
//! `<key>_file` secret files, parsed into a raw form and then validated into [`Config`] with
//! every problem reported at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use url::Url;

use crate::mapping::{AccessConfig, GroupsConfig, MappingConfig};

/// One thing wrong with a configuration: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `discourse.connect_secret`.
    pub key: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl ConfigProblem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

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
    pub mapping: MappingConfig,
    pub groups: GroupsConfig,
    pub access: AccessConfig,
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// The bridge's own public base URL (no trailing slash); fixes every URL it hands out.
    pub public_url: Url,
    /// Proxies whose `X-Forwarded-*` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Optional separate address for `/metrics`; `None` serves it on `listen`.
    pub metrics_listen: Option<SocketAddr>,
}

/// `[discourse]`
#[derive(Debug, Clone)]
pub struct DiscourseConfig {
    /// The forum's base URL (no trailing slash).
    pub url: Url,
    /// The `discourse_connect_secret` (at least 10 characters, as Discourse requires).
    pub connect_secret: SecretString,
    /// Admin API key for the logout relay and `sync`; the relay is active when both are set.
    pub api_key: Option<SecretString>,
    pub api_username: Option<String>,
}

/// How the bridge authenticates to the IdP's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuthMethod {
    /// Pick from discovery (`token_endpoint_auth_methods_supported`), preferring basic.
    Auto,
    ClientSecretBasic,
    ClientSecretPost,
    /// Public client: PKCE only.
    None,
}

/// `[oidc]`
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: Url,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub scopes: Vec<String>,
    pub auth_params: BTreeMap<String, String>,
    /// Fetch userinfo and merge it over the ID token's claims.
    pub userinfo: bool,
    pub token_auth_method: TokenAuthMethod,
    /// Allowed clock difference for `exp` / `iat`.
    pub clock_skew: Duration,
    /// Timeout of every request to the IdP.
    pub http_timeout: Duration,
    /// Minimum time between two JWKS refetches triggered by an unknown `kid`.
    pub jwks_min_refresh_interval: Duration,
}

/// `[session]`
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Master secret the cookie keys are derived from (HKDF).
    pub secret: SecretString,
    /// How long a login may take from `/sso` to `/callback`.
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

/// `[store]`
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the embedded store.
    pub path: PathBuf,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]`
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `discourse_oidc_bridge=debug,info`.
    pub level: String,
}

/// `[limits]`
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Requests per minute per client address on `/sso` and `/callback`.
    pub login_per_minute: u32,
    /// Requests per minute per client address on `/backchannel-logout`.
    pub backchannel_per_minute: u32,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Bound on handling one request.
    pub request_timeout: Duration,
}
