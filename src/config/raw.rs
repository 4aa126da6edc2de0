//! The configuration exactly as written: serde structs that mirror `config/bridge.example.toml`
//! key for key, with the documented defaults and no interpretation beyond the TOML types.
//! Meaning (URLs, addresses, durations, cross-key rules) is checked in `validate`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{LogFormat, TokenAuthMethod, TrustStore, UserinfoMode};
use crate::mapping::{AccessConfig, GroupsConfig, MappingConfig};

/// The whole file. Every section may be left out; required keys are reported by validation so
/// that a missing section and a missing key give the same kind of message.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    pub(crate) server: RawServer,
    pub(crate) discourse: RawDiscourse,
    pub(crate) oidc: RawOidc,
    pub(crate) session: RawSession,
    pub(crate) logout: RawLogout,
    pub(crate) store: RawStore,
    pub(crate) log: RawLog,
    pub(crate) limits: RawLimits,
    pub(crate) pages: super::pages::RawPages,
    pub(crate) mapping: MappingConfig,
    pub(crate) groups: GroupsConfig,
    pub(crate) access: AccessConfig,
    /// `[scim]`: SCIM provisioning, off when the section is absent.
    pub(crate) scim: Option<RawScim>,
}

/// `[server]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawServer {
    pub(crate) listen: String,
    pub(crate) public_url: Option<String>,
    #[serde(deserialize_with = "list_or_separated_string")]
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) metrics_listen: Option<String>,
    pub(crate) metrics_public: bool,
    pub(crate) header_read_timeout: String,
    pub(crate) max_connections: usize,
    pub(crate) outbound_proxy: Option<String>,
    pub(crate) trust_store: TrustStore,
}

/// All interfaces, because the bridge usually runs in a container whose port is published by
/// the runtime; a bare-metal install behind a local proxy should set `127.0.0.1:8080`.
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// `/metrics` is served on its own loopback address unless `metrics_public` asks for the public
/// listener: the counters tell outsiders about logins and failures.
pub(crate) const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            public_url: None,
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            metrics_public: false,
            header_read_timeout: "5s".to_owned(),
            max_connections: 512,
            outbound_proxy: None,
            trust_store: TrustStore::Builtin,
        }
    }
}

/// `[discourse]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawDiscourse {
    pub(crate) url: Option<String>,
    pub(crate) connect_secret: Option<RawSecret>,
    pub(crate) connect_secret_file: Option<PathBuf>,
    pub(crate) api_key: Option<RawSecret>,
    pub(crate) api_key_file: Option<PathBuf>,
    pub(crate) api_username: Option<String>,
    pub(crate) ca_file: Option<PathBuf>,
}

/// `[oidc]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawOidc {
    pub(crate) issuer: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<RawSecret>,
    pub(crate) client_secret_file: Option<PathBuf>,
    #[serde(deserialize_with = "list_or_separated_string")]
    pub(crate) scopes: Vec<String>,
    pub(crate) auth_params: BTreeMap<String, String>,
    pub(crate) userinfo: UserinfoMode,
    pub(crate) token_auth_method: TokenAuthMethod,
    pub(crate) clock_skew: String,
    pub(crate) http_timeout: String,
    pub(crate) jwks_min_refresh_interval: String,
    #[serde(deserialize_with = "list_or_separated_string")]
    pub(crate) signing_algs: Vec<String>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) client_key_file: Option<PathBuf>,
    pub(crate) client_key_id: Option<String>,
    pub(crate) client_cert_file: Option<PathBuf>,
}

impl Default for RawOidc {
    fn default() -> Self {
        Self {
            issuer: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            scopes: ["openid", "email", "profile"].map(str::to_owned).to_vec(),
            auth_params: BTreeMap::new(),
            userinfo: UserinfoMode::Auto,
            token_auth_method: TokenAuthMethod::Auto,
            clock_skew: "60s".to_owned(),
            http_timeout: "10s".to_owned(),
            jwks_min_refresh_interval: "60s".to_owned(),
            signing_algs: crate::config::DEFAULT_SIGNING_ALGS
                .map(str::to_owned)
                .to_vec(),
            ca_file: None,
            client_key_file: None,
            client_key_id: None,
            client_cert_file: None,
        }
    }
}

/// `[session]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSession {
    pub(crate) secret: Option<RawSecret>,
    pub(crate) secret_file: Option<PathBuf>,
    pub(crate) login_timeout: String,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            secret: None,
            secret_file: None,
            login_timeout: "10m".to_owned(),
        }
    }
}

/// `[logout]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLogout {
    pub(crate) strict_typ: bool,
    pub(crate) allow_missing_exp: bool,
    pub(crate) max_token_age: String,
    pub(crate) relay_retry_for: String,
    pub(crate) rp_initiated: bool,
}

impl Default for RawLogout {
    fn default() -> Self {
        Self {
            strict_typ: false,
            allow_missing_exp: false,
            max_token_age: "5m".to_owned(),
            relay_retry_for: "24h".to_owned(),
            rp_initiated: true,
        }
    }
}

/// `[store]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawStore {
    pub(crate) path: PathBuf,
    pub(crate) commit_interval: String,
    pub(crate) url: Option<RawSecret>,
    pub(crate) url_file: Option<PathBuf>,
    pub(crate) pool_size: usize,
    pub(crate) connect_timeout: String,
    pub(crate) query_timeout: String,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) relay_lease: String,
    pub(crate) poll_interval: String,
    pub(crate) login_buffer: usize,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data"),
            commit_interval: "100ms".to_owned(),
            url: None,
            url_file: None,
            pool_size: 8,
            connect_timeout: "5s".to_owned(),
            query_timeout: "10s".to_owned(),
            ca_file: None,
            relay_lease: "2m".to_owned(),
            poll_interval: "1s".to_owned(),
            login_buffer: 10_000,
        }
    }
}

/// `[log]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLog {
    pub(crate) format: LogFormat,
    pub(crate) level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// `[limits]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLimits {
    pub(crate) login_per_minute: u32,
    pub(crate) failures_per_minute: u32,
    pub(crate) backchannel_per_minute: u32,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            login_per_minute: 600,
            failures_per_minute: 60,
            backchannel_per_minute: 600,
            max_body_bytes: 16 * 1024,
            request_timeout: "30s".to_owned(),
        }
    }
}

/// `[scim]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawScim {
    pub(crate) token: Option<RawSecret>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) subject_attribute: String,
    pub(crate) subject_claim: String,
    pub(crate) email_verified: bool,
    pub(crate) on_deactivate: crate::scim::OnDeactivate,
    pub(crate) suspend_for: String,
    pub(crate) suspend_reason: String,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_results: usize,
}

impl Default for RawScim {
    fn default() -> Self {
        use crate::scim::ScimConfig as D;
        Self {
            token: None,
            token_file: None,
            subject_attribute: D::DEFAULT_SUBJECT_ATTRIBUTE.to_owned(),
            subject_claim: D::DEFAULT_SUBJECT_CLAIM.to_owned(),
            email_verified: true,
            on_deactivate: crate::scim::OnDeactivate::LogOut,
            suspend_for: "36500d".to_owned(),
            suspend_reason: D::DEFAULT_SUSPEND_REASON.to_owned(),
            max_body_bytes: D::DEFAULT_MAX_BODY_BYTES,
            max_results: D::DEFAULT_MAX_RESULTS,
        }
    }
}

/// A secret as read from the file or environment, wrapped at once so that the raw structs'
/// `Debug` output (and anything built from it) never shows it.
pub(crate) struct RawSecret(pub(crate) SecretString);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawSecret([REDACTED])")
    }
}

/// A secret serializes as a fixed marker, so that nothing built from the raw configuration (the
/// settings listing, the configuration identity) ever holds or hashes its value.
impl Serialize for RawSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(SECRET_MARKER)
    }
}

/// What a secret's value is shown as.
pub(crate) const SECRET_MARKER: &str = "(secret)";

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| RawSecret(SecretString::from(text)))
    }
}

/// Reads a list either as a TOML array of strings or as one string whose items are separated
/// by commas and/or whitespace. The string form exists for environment variables
/// (`BRIDGE_OIDC__SCOPES="openid email groups"`), and it also accepts OAuth's own
/// space-separated `scope` notation in the file.
fn list_or_separated_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    struct ListVisitor;

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings, or one string of items separated by commas or spaces")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(split_list(text))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_any(ListVisitor)
}

/// Splits `"a, b c"` into `["a", "b", "c"]`, dropping empty items.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_list_accepts_commas_spaces_and_both() {
        assert_eq!(split_list("openid,email"), ["openid", "email"]);
        assert_eq!(
            split_list("openid email  groups"),
            ["openid", "email", "groups"]
        );
        assert_eq!(split_list(" 10.0.0.0/8 , ::1 ,"), ["10.0.0.0/8", "::1"]);
        assert!(split_list("  , ").is_empty());
    }

    #[test]
    fn raw_secret_debug_is_redacted() {
        let secret = RawSecret(SecretString::from("hunter2-hunter2".to_owned()));
        assert_eq!(format!("{secret:?}"), "RawSecret([REDACTED])");
    }
}
