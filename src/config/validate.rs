//! Turns the raw configuration into the validated [`Config`], checking what each value means and
//! how values relate, and collecting every problem instead of stopping at the first.
//! Secret files (`<key>_file`) are read here.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use openidconnect::JwsSigningAlgorithm as _;
use openidconnect::core::CoreJwsSigningAlgorithm;
use secrecy::{ExposeSecret, SecretString};
use url::{Host, Url};

use super::layers::env_var_name;
use super::raw::{RawConfig, RawDiscourse, RawLimits, RawLog, RawLogout, RawOidc, RawSecret};
use super::raw::{RawServer, RawSession, RawStore};
use super::{
    Config, ConfigProblem, ConfigSource, DiscourseConfig, LimitsConfig, LogConfig, LogoutConfig,
    OidcConfig, ServerConfig, SessionConfig, StoreConfig, TokenAuthMethod, TrustStore,
};
use crate::mapping::Mapper;
use crate::oidc::client_auth::ClientKey;
use crate::outbound::ClientIdentity;

/// Discourse forgets a DiscourseConnect nonce 30 minutes after issuing it (10 minutes in versions
/// from before March 2024), so a login that takes longer can never be completed.
pub const MAX_LOGIN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Discourse refuses a `discourse_connect_secret` shorter than this.
pub(crate) const MIN_CONNECT_SECRET_CHARS: usize = 10;
/// The cookie keys are derived from `session.secret`; fewer bytes than one SHA-256 block of key
/// material would make them guessable.
pub(crate) const MIN_SESSION_SECRET_BYTES: usize = 32;
/// A back-channel logout request carries one signed JWT; with a 4096-bit RSA signature it is
/// about 2 KiB, so a smaller body limit would reject legitimate logouts.
pub(crate) const MIN_BODY_BYTES: usize = 4096;
/// Parameters the bridge sets on every authorization request itself; letting `auth_params`
/// override them would break state, nonce or PKCE protection or the redirect.
pub(crate) const RESERVED_AUTH_PARAMS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// Collects problems for one validation run.
struct Problems<'a>(&'a mut Vec<ConfigProblem>);

impl Problems<'_> {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem::new(key, message));
    }

    fn required(&mut self, key: &str) {
        self.add(
            key,
            format!(
                "is required; set it in the config file or with {}",
                env_var_name(key)
            ),
        );
    }
}

/// Validates `raw`, reading secret files. Returns the configuration only when no problem was
/// found; every problem is appended to `problems` either way.
pub(crate) fn validate(
    raw: RawConfig,
    source: ConfigSource,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Config> {
    let problems_before = problems.len();
    let mut found = Problems(problems);

    let server = server(raw.server, &mut found);
    let discourse = discourse(raw.discourse, &mut found);
    let oidc = oidc(raw.oidc, &mut found);
    let session = session(raw.session, discourse.as_ref(), &mut found);
    let logout = logout(raw.logout, &mut found);
    let store = store(raw.store, &mut found);
    let log = log(raw.log, &mut found);
    let limits = limits(raw.limits, oidc.as_ref(), &mut found);
    let scim = raw
        .scim
        .map(|raw| scim(raw, discourse.as_ref(), &mut found));
    let pages = match super::pages::validate(raw.pages) {
        Ok(pages) => Some(pages),
        Err(problems) => {
            for (key, message) in problems {
                found.add(key, message);
            }
            None
        }
    };

    // The mapping sections are compiled only when they deserialized cleanly: after a key was
    // dropped for being malformed, the compiler would report its absence as a second problem.
    let mapping_sections_clean = !found.0[problems_before..]
        .iter()
        .any(|p| ["mapping", "groups", "access"].contains(&section_of(&p.key)));
    let mapper = if mapping_sections_clean {
        match Mapper::compile(&raw.mapping, &raw.groups, &raw.access) {
            Ok(mapper) => Some(Arc::new(mapper)),
            Err(mapping_problems) => {
                found.0.extend(mapping_problems);
                None
            }
        }
    } else {
        None
    };

    if found.0.len() > problems_before {
        return None;
    }
    Some(Config {
        server: server?,
        discourse: discourse?,
        oidc: oidc?,
        session: session?,
        logout: logout?,
        store: store?,
        log: log?,
        limits: limits?,
        pages: pages?,
        mapper: mapper?,
        scim: match scim {
            Some(section) => Some(section?),
            None => None,
        },
        source,
    })
}

/// Shortest accepted SCIM bearer token: 32 characters (`openssl rand -hex 16` and up).
const MIN_SCIM_TOKEN_CHARS: usize = 32;

fn scim(
    raw: super::raw::RawScim,
    discourse: Option<&DiscourseConfig>,
    found: &mut Problems<'_>,
) -> Option<crate::scim::ScimConfig> {
    let mut ok = true;
    let mut tokens: Vec<SecretString> = Vec::new();
    if let Some(super::raw::RawSecret(token)) = raw.token
        && !token.expose_secret().is_empty()
    {
        tokens.push(token);
    }
    if let Some(path) = raw.token_file.filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::read_to_string(&path) {
            Ok(text) => tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(|line| SecretString::from(line.to_owned())),
            ),
            Err(error) => {
                found.add(
                    "scim.token_file",
                    format!("cannot read {}: {error}", path.display()),
                );
                ok = false;
            }
        }
    }
    if ok && tokens.is_empty() {
        found.add(
            "scim.token",
            format!(
                "is required when [scim] is present; set it, or scim.token_file (one token per \
                 line, several during a rotation), in the config file or with {} / {}",
                env_var_name("scim.token"),
                env_var_name("scim.token_file")
            ),
        );
        ok = false;
    }
    if tokens
        .iter()
        .any(|t| t.expose_secret().chars().count() < MIN_SCIM_TOKEN_CHARS)
    {
        found.add(
            "scim.token",
            format!(
                "every token must have at least {MIN_SCIM_TOKEN_CHARS} characters (e.g. `openssl \
                 rand -hex 32`)"
            ),
        );
        ok = false;
    }
    if discourse.is_some_and(|d| d.admin_api().is_none()) {
        found.add(
            "scim",
            "needs discourse.api_key and discourse.api_username: provisioning changes reach \
             Discourse through its admin API",
        );
        ok = false;
    }
    if let Err(error) = crate::scim::filter::parse_attr_path(&raw.subject_attribute) {
        found.add(
            "scim.subject_attribute",
            format!("is not a SCIM attribute path: {error}"),
        );
        ok = false;
    }
    if raw.subject_claim.trim().is_empty() {
        found.add("scim.subject_claim", "must name a claim, e.g. sub or oid");
        ok = false;
    }
    let suspend_for = duration("scim.suspend_for", &raw.suspend_for, Bound::Positive, found);
    if raw.suspend_reason.trim().is_empty() {
        found.add("scim.suspend_reason", "must not be empty");
        ok = false;
    }
    if raw.max_body_bytes < 1024 {
        found.add("scim.max_body_bytes", "must be at least 1024");
        ok = false;
    }
    if !(1..=10_000).contains(&raw.max_results) {
        found.add("scim.max_results", "must be between 1 and 10000");
        ok = false;
    }
    let suspend_for = suspend_for?;
    ok.then(|| crate::scim::ScimConfig {
        tokens,
        subject_attribute: raw.subject_attribute,
        subject_claim: raw.subject_claim.trim().to_owned(),
        email_verified: raw.email_verified,
        on_deactivate: raw.on_deactivate,
        suspend_for,
        suspend_reason: raw.suspend_reason,
        max_body_bytes: raw.max_body_bytes,
        max_results: raw.max_results,
    })
}

fn section_of(key: &str) -> &str {
    key.split(['.', '[']).next().unwrap_or(key)
}

fn server(raw: RawServer, found: &mut Problems<'_>) -> Option<ServerConfig> {
    let listen = socket_addr("server.listen", &raw.listen, found);
    let public_url = match given(raw.public_url) {
        Some(text) => base_url("server.public_url", &text, found),
        None => {
            found.required("server.public_url");
            None
        }
    };

    let mut trusted_proxies = Vec::with_capacity(raw.trusted_proxies.len());
    for (index, text) in raw.trusted_proxies.iter().enumerate() {
        match ip_net(text) {
            Some(net) => trusted_proxies.push(net),
            None => found.add(
                format!("server.trusted_proxies[{index}]"),
                format!(
                    "\"{text}\" is neither an IP network (e.g. 10.0.0.0/8, fd00::/8) nor an IP \
                     address"
                ),
            ),
        }
    }

    let metrics_listen = match (given(raw.metrics_listen), raw.metrics_public) {
        (Some(_), true) => {
            found.add(
                "server.metrics_listen",
                "is set together with server.metrics_public = true; set one: metrics_listen for \
                 a separate address, metrics_public to serve /metrics on the public listener",
            );
            return None;
        }
        (None, true) => None,
        (text, false) => {
            let explicit = text.is_some();
            let text = text.unwrap_or_else(|| super::raw::DEFAULT_METRICS_LISTEN.to_owned());
            let metrics = socket_addr("server.metrics_listen", &text, found)?;
            if let Some(listen) = listen
                && binds_same_port(listen, metrics)
            {
                let hint = if explicit {
                    "choose another port, or set metrics_public = true to serve /metrics on the \
                     public listener"
                } else {
                    "set metrics_listen to a free address, or metrics_public = true"
                };
                found.add(
                    "server.metrics_listen",
                    format!(
                        "{metrics} would bind the same port as server.listen ({listen}); {hint}"
                    ),
                );
                return None;
            }
            Some(metrics)
        }
    };

    let header_read_timeout = duration(
        "server.header_read_timeout",
        &raw.header_read_timeout,
        Bound::Positive,
        found,
    )
    .filter(|timeout| {
        let ok = *timeout <= super::MAX_HEADER_READ_TIMEOUT;
        if !ok {
            found.add(
                "server.header_read_timeout",
                "must be at most 60s: every slow or idle client holds a socket this long",
            );
        }
        ok
    });
    let max_connections = if (1..=super::MAX_CONNECTIONS).contains(&raw.max_connections) {
        Some(raw.max_connections)
    } else {
        found.add(
            "server.max_connections",
            format!("must be from 1 to {}", super::MAX_CONNECTIONS),
        );
        None
    };

    let outbound_proxy = match given(raw.outbound_proxy) {
        Some(text) => match Url::parse(text.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") => {
                if url.scheme().starts_with("socks") {
                    found.add(
                        "server.outbound_proxy",
                        "SOCKS proxies are not supported; give an http:// (CONNECT) proxy",
                    );
                    None
                } else if url.host().is_none() {
                    found.add("server.outbound_proxy", "must name a host");
                    None
                } else {
                    Some(Some(url))
                }
            }
            Ok(url) => {
                found.add(
                    "server.outbound_proxy",
                    format!(
                        "must be an http:// or https:// proxy URL, not {}:",
                        url.scheme()
                    ),
                );
                None
            }
            Err(error) => {
                found.add(
                    "server.outbound_proxy",
                    format!("\"{text}\" is not a URL ({error}); write e.g. http://proxy:3128"),
                );
                None
            }
        },
        None => Some(None),
    };

    let os_roots = match raw.trust_store {
        TrustStore::Builtin => Some(Vec::new()),
        TrustStore::Os => match crate::outbound::load_os_roots() {
            Ok(certs) => Some(certs),
            Err(problem) => {
                found.add("server.trust_store", problem);
                None
            }
        },
    };

    let public_url = public_url?;
    Some(ServerConfig {
        trust_store: raw.trust_store,
        os_roots: os_roots?,
        listen: listen?,
        path_prefix: public_url.path().trim_end_matches('/').to_owned(),
        public_url,
        trusted_proxies,
        metrics_listen,
        header_read_timeout: header_read_timeout?,
        max_connections: max_connections?,
        outbound_proxy: outbound_proxy?,
    })
}

fn discourse(raw: RawDiscourse, found: &mut Problems<'_>) -> Option<DiscourseConfig> {
    let url = match given(raw.url) {
        Some(text) => base_url("discourse.url", &text, found),
        None => {
            found.required("discourse.url");
            None
        }
    };

    let connect_secret = match secret(
        "discourse.connect_secret",
        raw.connect_secret,
        raw.connect_secret_file,
        found,
    ) {
        SecretInput::Given(secret) => {
            if secret.expose_secret().chars().count() < MIN_CONNECT_SECRET_CHARS {
                found.add(
                    "discourse.connect_secret",
                    format!(
                        "must be at least {MIN_CONNECT_SECRET_CHARS} characters, as Discourse \
                         requires for discourse_connect_secret"
                    ),
                );
                None
            } else {
                Some(secret)
            }
        }
        SecretInput::Missing => {
            found.required_secret("discourse.connect_secret");
            None
        }
        SecretInput::Broken => None,
    };

    let api_key = secret("discourse.api_key", raw.api_key, raw.api_key_file, found);
    let api_username = given(raw.api_username);
    let (api_key, api_username) = match (api_key, api_username) {
        (SecretInput::Broken, _) => return None,
        (SecretInput::Given(key), Some(username)) => (Some(key), Some(username)),
        (SecretInput::Missing, None) => (None, None),
        (SecretInput::Given(_), None) => {
            found.add(
                "discourse.api_username",
                "is required when discourse.api_key is set: admin API calls are made as this \
                 user (e.g. system)",
            );
            return None;
        }
        (SecretInput::Missing, Some(_)) => {
            found.add(
                "discourse.api_key",
                "is required when discourse.api_username is set (an admin API key, or \
                 api_key_file)",
            );
            return None;
        }
    };

    let ca_certs = ca_file("discourse.ca_file", raw.ca_file.as_deref(), found);

    Some(DiscourseConfig {
        url: url?,
        connect_secret: connect_secret?,
        api_key,
        api_username,
        ca_certs: ca_certs?,
    })
}

fn oidc(raw: RawOidc, found: &mut Problems<'_>) -> Option<OidcConfig> {
    let (issuer, issuer_exact) = match given(raw.issuer) {
        Some(text) => {
            let text = text.trim().to_owned();
            (web_url("oidc.issuer", &text, found), Some(text))
        }
        None => {
            found.required("oidc.issuer");
            (None, None)
        }
    };

    let client_id = given(raw.client_id);
    if client_id.is_none() {
        found.required("oidc.client_id");
    }

    let client_secret = match secret(
        "oidc.client_secret",
        raw.client_secret,
        raw.client_secret_file,
        found,
    ) {
        SecretInput::Given(secret) => Some(Some(secret)),
        SecretInput::Missing if raw.token_auth_method.uses_secret() => {
            found.add(
                "oidc.client_secret",
                format!(
                    "is required unless oidc.token_auth_method is \"private_key_jwt\", \
                     \"tls_client_auth\" or \"none\" (a public client that relies on PKCE \
                     alone); set it, or client_secret_file, in the config file or with {} / \
                     {}_FILE",
                    env_var_name("oidc.client_secret"),
                    env_var_name("oidc.client_secret"),
                ),
            );
            None
        }
        SecretInput::Missing => Some(None),
        SecretInput::Broken => None,
    };

    let scopes = scopes(&raw.scopes, found);
    let auth_params = auth_params(raw.auth_params, found);
    let clock_skew = duration(
        "oidc.clock_skew",
        &raw.clock_skew,
        Bound::ZeroAllowed,
        found,
    );
    let http_timeout = duration(
        "oidc.http_timeout",
        &raw.http_timeout,
        Bound::Positive,
        found,
    );
    let jwks_min_refresh_interval = duration(
        "oidc.jwks_min_refresh_interval",
        &raw.jwks_min_refresh_interval,
        Bound::ZeroAllowed,
        found,
    );

    let signing_algs = signing_algs(
        &raw.signing_algs,
        matches!(client_secret, Some(Some(_))),
        found,
    );
    let ca_certs = ca_file("oidc.ca_file", raw.ca_file.as_deref(), found);
    let (client_key, client_identity) = client_credentials(
        raw.token_auth_method,
        raw.client_key_file.as_deref(),
        raw.client_cert_file.as_deref(),
        given(raw.client_key_id),
        found,
    );

    Some(OidcConfig {
        ca_certs: ca_certs?,
        client_key: client_key?,
        client_identity: client_identity?,
        issuer: issuer?,
        issuer_exact: issuer_exact?,
        client_id: client_id?,
        client_secret: client_secret?,
        scopes: scopes?,
        auth_params: auth_params?,
        userinfo: raw.userinfo,
        token_auth_method: raw.token_auth_method,
        clock_skew: clock_skew?,
        http_timeout: http_timeout?,
        jwks_min_refresh_interval: jwks_min_refresh_interval?,
        signing_algs: signing_algs?,
    })
}

/// The certificates of an optional `ca_file` (`Some(vec![])` when unset).
fn ca_file(
    key: &str,
    path: Option<&Path>,
    found: &mut Problems<'_>,
) -> Option<Vec<rustls_pki_types::CertificateDer<'static>>> {
    let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
        return Some(Vec::new());
    };
    match crate::outbound::load_ca_file(path) {
        Ok(certs) => Some(certs),
        Err(error) => {
            found.add(key, error.to_string());
            None
        }
    }
}

type Credentials = (Option<Option<ClientKey>>, Option<Option<ClientIdentity>>);

/// The key a client certificate or key file problem belongs to: a file without a
/// certificate is `oidc.client_cert_file`'s, everything else `oidc.client_key_file`'s.
fn pem_problem_key(error: &crate::outbound::PemFileError) -> &'static str {
    if matches!(error, crate::outbound::PemFileError::NoCertificate { .. }) {
        "oidc.client_cert_file"
    } else {
        "oidc.client_key_file"
    }
}
/// The key for `private_key_jwt` and the certificate + key for `tls_client_auth`, read and
/// checked here so `check` reports a missing, unreadable or mismatched file.
fn client_credentials(
    method: TokenAuthMethod,
    key_file: Option<&Path>,
    cert_file: Option<&Path>,
    kid: Option<String>,
    found: &mut Problems<'_>,
) -> Credentials {
    let key_file = key_file.filter(|p| !p.as_os_str().is_empty());
    let cert_file = cert_file.filter(|p| !p.as_os_str().is_empty());
    let needs_key = matches!(
        method,
        TokenAuthMethod::PrivateKeyJwt | TokenAuthMethod::TlsClientAuth
    );
    if needs_key && key_file.is_none() {
        found.add(
            "oidc.client_key_file",
            format!(
                "is required with oidc.token_auth_method = \"{}\" (a PEM private key, RSA or \
                 EC); set it in the config file or with {}",
                method.as_str(),
                env_var_name("oidc.client_key_file")
            ),
        );
    }
    if method == TokenAuthMethod::TlsClientAuth && cert_file.is_none() {
        found.add(
            "oidc.client_cert_file",
            format!(
                "is required with oidc.token_auth_method = \"tls_client_auth\" (the PEM client \
                 certificate registered at the identity provider); set it in the config file or \
                 with {}",
                env_var_name("oidc.client_cert_file")
            ),
        );
    }
    if !needs_key && (key_file.is_some() || cert_file.is_some()) {
        found.add(
            "oidc.token_auth_method",
            format!(
                "is \"{}\", which uses neither oidc.client_key_file nor oidc.client_cert_file; \
                 set it to \"private_key_jwt\" or \"tls_client_auth\", or remove those keys",
                method.as_str()
            ),
        );
        return (None, None);
    }
    let client_key = match (method, key_file) {
        (TokenAuthMethod::PrivateKeyJwt, Some(path)) => {
            let loaded = ClientKey::load(path, kid).and_then(|key| match cert_file {
                Some(cert) => key.with_certificate(cert, path),
                None => Ok(key),
            });
            match loaded {
                Ok(key) => Some(Some(key)),
                Err(error) => {
                    found.add(pem_problem_key(&error), error.to_string());
                    None
                }
            }
        }
        (TokenAuthMethod::PrivateKeyJwt, None) => None,
        _ => Some(None),
    };
    let identity = match (method, cert_file, key_file) {
        (TokenAuthMethod::TlsClientAuth, Some(cert), Some(key)) => {
            match ClientIdentity::load(cert, key) {
                Ok(identity) => Some(Some(identity)),
                Err(error) => {
                    found.add(pem_problem_key(&error), error.to_string());
                    None
                }
            }
        }
        (TokenAuthMethod::TlsClientAuth, _, _) => None,
        _ => Some(None),
    };
    (client_key, identity)
}

/// Scope tokens are space-separated on the wire, so one with a space in it would silently turn
/// into two; duplicates are dropped, keeping the first occurrence's position.
/// `oidc.signing_algs`: JWS algorithm names (RFC 7518 §3.1, case-sensitive), at least one,
/// never `none`, `HS*` only with a client secret (the MAC key).
fn signing_algs(
    raw: &[String],
    has_client_secret: bool,
    found: &mut Problems<'_>,
) -> Option<Vec<CoreJwsSigningAlgorithm>> {
    let mut algs: Vec<CoreJwsSigningAlgorithm> = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (index, name) in raw.iter().enumerate() {
        let parsed: Option<CoreJwsSigningAlgorithm> =
            serde_json::from_value(serde_json::Value::String(name.trim().to_owned())).ok();
        let problem = match &parsed {
            None => Some(format!(
                "\"{name}\" is not a JWS algorithm (RS256, PS256, ES256, EdDSA, HS256, ...)"
            )),
            Some(CoreJwsSigningAlgorithm::None) => {
                Some("\"none\" would accept unsigned tokens".to_owned())
            }
            Some(alg) if alg.uses_shared_secret() && !has_client_secret => Some(format!(
                "\"{name}\" tokens are MACed with the client secret, and oidc.client_secret is \
                 not set"
            )),
            Some(_) => None,
        };
        match (problem, parsed) {
            (Some(problem), _) => {
                found.add(format!("oidc.signing_algs[{index}]"), problem);
                ok = false;
            }
            (None, Some(alg)) if !algs.contains(&alg) => algs.push(alg),
            (None, _) => {}
        }
    }
    if raw.is_empty() {
        found.add(
            "oidc.signing_algs",
            "must list at least one algorithm, e.g. \"RS256\"",
        );
        ok = false;
    }
    ok.then_some(algs)
}

fn scopes(raw: &[String], found: &mut Problems<'_>) -> Option<Vec<String>> {
    let mut scopes: Vec<String> = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (index, scope) in raw.iter().enumerate() {
        if scope.is_empty()
            || scope
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\')
        {
            found.add(
                format!("oidc.scopes[{index}]"),
                format!("\"{scope}\" is not a scope name; list each scope as its own item"),
            );
            ok = false;
        } else if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    if !scopes.iter().any(|scope| scope == "openid") {
        found.add(
            "oidc.scopes",
            "must include \"openid\": without it the identity provider runs plain OAuth and \
             returns no ID token",
        );
        ok = false;
    }
    ok.then_some(scopes)
}

fn auth_params(
    raw: BTreeMap<String, String>,
    found: &mut Problems<'_>,
) -> Option<BTreeMap<String, String>> {
    let mut ok = true;
    for name in raw.keys() {
        let lower = name.to_ascii_lowercase();
        if RESERVED_AUTH_PARAMS.contains(&lower.as_str()) {
            let hint = match lower.as_str() {
                "scope" => "; list scopes in oidc.scopes instead",
                "client_id" => "; it comes from oidc.client_id",
                "redirect_uri" => "; it is server.public_url + /callback",
                _ => "",
            };
            found.add(
                format!("oidc.auth_params.{name}"),
                format!("is set by the bridge itself and cannot be overridden{hint}"),
            );
            ok = false;
        } else if name.is_empty() {
            found.add("oidc.auth_params", "has a parameter with an empty name");
            ok = false;
        }
    }
    ok.then_some(raw)
}

fn session(
    raw: RawSession,
    discourse: Option<&DiscourseConfig>,
    found: &mut Problems<'_>,
) -> Option<SessionConfig> {
    let secret = match secret("session.secret", raw.secret, raw.secret_file, found) {
        SecretInput::Given(secret) => {
            let bytes = secret.expose_secret().len();
            if bytes < MIN_SESSION_SECRET_BYTES {
                found.add(
                    "session.secret",
                    format!(
                        "must be at least {MIN_SESSION_SECRET_BYTES} bytes (it is {bytes}); \
                         generate one with `openssl rand -hex 32`"
                    ),
                );
                None
            } else if discourse
                .is_some_and(|d| d.connect_secret.expose_secret() == secret.expose_secret())
            {
                found.add(
                    "session.secret",
                    "must differ from discourse.connect_secret: the forum's admins know that \
                     one, and must not be able to forge the bridge's cookies; generate one with \
                     `openssl rand -hex 32`",
                );
                None
            } else {
                Some(secret)
            }
        }
        SecretInput::Missing => {
            found.add(
                "session.secret",
                format!(
                    "is required (it protects the bridge's cookies); generate one with `openssl \
                     rand -hex 32` and set it, or secret_file, in the config file or with {} / \
                     {}_FILE",
                    env_var_name("session.secret"),
                    env_var_name("session.secret")
                ),
            );
            None
        }
        SecretInput::Broken => None,
    };

    let login_timeout = duration(
        "session.login_timeout",
        &raw.login_timeout,
        Bound::Positive,
        found,
    );
    if let Some(timeout) = login_timeout
        && timeout > MAX_LOGIN_TIMEOUT
    {
        found.add(
            "session.login_timeout",
            format!(
                "{} is longer than 30m: Discourse forgets its login nonce after 30 minutes, so \
                 a slower login could never finish",
                humantime::format_duration(timeout)
            ),
        );
        return None;
    }

    Some(SessionConfig {
        secret: secret?,
        login_timeout: login_timeout?,
    })
}

fn logout(raw: RawLogout, found: &mut Problems<'_>) -> Option<LogoutConfig> {
    let max_token_age = duration(
        "logout.max_token_age",
        &raw.max_token_age,
        Bound::Positive,
        found,
    );
    let relay_retry_for = duration(
        "logout.relay_retry_for",
        &raw.relay_retry_for,
        Bound::Positive,
        found,
    );
    Some(LogoutConfig {
        strict_typ: raw.strict_typ,
        allow_missing_exp: raw.allow_missing_exp,
        max_token_age: max_token_age?,
        relay_retry_for: relay_retry_for?,
        rp_initiated: raw.rp_initiated,
    })
}

/// Longest accepted `store.commit_interval`.
const MAX_COMMIT_INTERVAL: Duration = Duration::from_secs(10);

fn store(raw: RawStore, found: &mut Problems<'_>) -> Option<StoreConfig> {
    let commit_interval = duration(
        "store.commit_interval",
        &raw.commit_interval,
        Bound::ZeroAllowed,
        found,
    );
    if let Some(interval) = commit_interval
        && interval > MAX_COMMIT_INTERVAL
    {
        found.add(
            "store.commit_interval",
            format!(
                "{} is longer than 10s: a crash would lose every login of that long, and \
                 back-channel logout could not find those sessions",
                humantime::format_duration(interval)
            ),
        );
        return None;
    }
    if raw.path.as_os_str().is_empty() {
        found.add("store.path", "must not be empty");
        return None;
    }
    let connect_timeout = duration(
        "store.connect_timeout",
        &raw.connect_timeout,
        Bound::Positive,
        found,
    );
    let query_timeout = duration(
        "store.query_timeout",
        &raw.query_timeout,
        Bound::Positive,
        found,
    );
    let relay_lease = duration(
        "store.relay_lease",
        &raw.relay_lease,
        Bound::Positive,
        found,
    );
    let poll_interval = duration(
        "store.poll_interval",
        &raw.poll_interval,
        Bound::Positive,
        found,
    );
    if raw.pool_size == 0 || raw.pool_size > 1000 {
        found.add("store.pool_size", "must be between 1 and 1000");
        return None;
    }
    if raw.login_buffer == 0 {
        found.add("store.login_buffer", "must be at least 1");
        return None;
    }
    if let Some(lease) = relay_lease
        && lease < Duration::from_secs(1)
    {
        found.add(
            "store.relay_lease",
            "must be at least 1s: a lease shorter than one delivery would let two replicas \
             deliver the same job",
        );
        return None;
    }
    let postgres = match secret("store.url", raw.url, raw.url_file, found) {
        SecretInput::Broken => return None,
        SecretInput::Missing => {
            if raw.ca_file.is_some() {
                found.add("store.ca_file", "is only used with store.url (PostgreSQL)");
                return None;
            }
            None
        }
        SecretInput::Given(url) => {
            if let Err(problem) = crate::store::postgres::parse_url(url.expose_secret()) {
                found.add("store.url", problem);
                return None;
            }
            if let Some(path) = &raw.ca_file
                && let Err(error) = crate::store::postgres::load_ca_file(path)
            {
                found.add("store.ca_file", error.to_string());
                return None;
            }
            Some(crate::store::PgSettings {
                url,
                pool_size: raw.pool_size,
                connect_timeout: connect_timeout?,
                query_timeout: query_timeout?,
                ca_file: raw.ca_file,
            })
        }
    };
    Some(StoreConfig {
        path: raw.path,
        commit_interval: commit_interval?,
        postgres,
        relay_lease: relay_lease?,
        poll_interval: poll_interval?,
        login_buffer: raw.login_buffer,
    })
}

fn log(raw: RawLog, found: &mut Problems<'_>) -> Option<LogConfig> {
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&raw.level) {
        found.add(
            "log.level",
            format!(
                "\"{}\" is not a log filter ({error}); use e.g. info, debug or \
                 discourse_oidc_bridge=debug,info",
                raw.level
            ),
        );
        return None;
    }
    Some(LogConfig {
        format: raw.format,
        level: raw.level,
    })
}

fn limits(
    raw: RawLimits,
    oidc: Option<&OidcConfig>,
    found: &mut Problems<'_>,
) -> Option<LimitsConfig> {
    let mut ok = true;
    for (key, value) in [
        ("limits.login_per_minute", raw.login_per_minute),
        ("limits.failures_per_minute", raw.failures_per_minute),
        ("limits.backchannel_per_minute", raw.backchannel_per_minute),
    ] {
        if value == 0 {
            found.add(key, "must be at least 1");
            ok = false;
        }
    }
    if raw.max_body_bytes < MIN_BODY_BYTES {
        found.add(
            "limits.max_body_bytes",
            format!(
                "must be at least {MIN_BODY_BYTES}: a back-channel logout token alone can take \
                 about 2 KiB"
            ),
        );
        ok = false;
    }
    let request_timeout = duration(
        "limits.request_timeout",
        &raw.request_timeout,
        Bound::Positive,
        found,
    );
    if let (Some(timeout), Some(oidc)) = (request_timeout, oidc)
        && timeout <= oidc.http_timeout
    {
        found.add(
            "limits.request_timeout",
            format!(
                "{} must be longer than oidc.http_timeout ({}): the callback makes several \
                 requests to the identity provider within one request",
                humantime::format_duration(timeout),
                humantime::format_duration(oidc.http_timeout)
            ),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(LimitsConfig {
        login_per_minute: raw.login_per_minute,
        failures_per_minute: raw.failures_per_minute,
        backchannel_per_minute: raw.backchannel_per_minute,
        max_body_bytes: raw.max_body_bytes,
        request_timeout: request_timeout?,
    })
}

/// An optional string, with an empty one counting as unset so that an environment variable
/// set to `""` clears a key written in the file.
fn given(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.trim().is_empty())
}

fn socket_addr(key: &str, text: &str, found: &mut Problems<'_>) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            found.add(
                key,
                format!(
                    "\"{text}\" is not an IP address with a port (e.g. 0.0.0.0:8080, \
                     127.0.0.1:8080 or [::]:8080); host names are not accepted"
                ),
            );
            None
        }
    }
}

/// Two listeners conflict on the same port when their addresses are equal or either is the
/// wildcard address.
fn binds_same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A CIDR network, or a single address taken as a network of one.
fn ip_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// An absolute http(s) URL with a host and without credentials, query or fragment.
fn web_url(key: &str, text: &str, found: &mut Problems<'_>) -> Option<Url> {
    let url = match Url::parse(text.trim()) {
        Ok(url) => url,
        Err(error) => {
            found.add(key, format!("\"{text}\" is not a URL ({error})"));
            return None;
        }
    };
    let mut ok = true;
    if !matches!(url.scheme(), "https" | "http") {
        found.add(
            key,
            format!(
                "must be an https:// (or http://) URL, not {}:",
                url.scheme()
            ),
        );
        ok = false;
    }
    if url.host().is_none() {
        found.add(key, "must name a host");
        ok = false;
    }
    if !url.username().is_empty() || url.password().is_some() {
        found.add(key, "must not contain a user name or password");
        ok = false;
    }
    if url.query().is_some() {
        found.add(key, "must not have a query (?...)");
        ok = false;
    }
    if url.fragment().is_some() {
        found.add(key, "must not have a fragment (#...)");
        ok = false;
    }
    ok.then_some(url)
}

/// A site's base address: a [`web_url`] at the root (`/`) or under a path prefix such as
/// `/forum`, returned without a trailing slash. Every prefix segment must be plain (letters,
/// digits, `-`, `_`, `.`, `~`; no `.`/`..`, no percent-escapes such as an encoded slash), so the
/// URLs built from it mean one thing to every server and proxy on the way.
fn base_url(key: &str, text: &str, found: &mut Problems<'_>) -> Option<Url> {
    let mut url = web_url(key, text, found)?;
    let path = url.path();
    let path = path.strip_suffix('/').unwrap_or(path).to_owned();
    if path.is_empty() {
        url.set_path("/");
        return Some(url);
    }
    // `Url` already resolved `.` and `..`; what remains must be plain segments.
    let plain = path.split('/').skip(1).all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
    });
    if !plain || text.contains("..") {
        found.add(
            key,
            format!(
                "has the path {path}, which may only consist of plain segments (letters, digits, \
                 -, _, ., ~) separated by single slashes"
            ),
        );
        return None;
    }
    url.set_path(&path);
    Some(url)
}

/// Whether a duration may be zero.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    ZeroAllowed,
    Positive,
}

fn duration(key: &str, text: &str, bound: Bound, found: &mut Problems<'_>) -> Option<Duration> {
    match humantime::parse_duration(text.trim()) {
        Ok(duration) if bound == Bound::Positive && duration.is_zero() => {
            found.add(key, "must be longer than zero");
            None
        }
        Ok(duration) => Some(duration),
        Err(error) => {
            found.add(
                key,
                format!(
                    "\"{text}\" is not a duration ({error}); write e.g. \"90s\", \"10m\" or \"24h\""
                ),
            );
            None
        }
    }
}

/// A secret as configured: given (directly or through its file), not given, or given in a way
/// that is already reported as a problem.
enum SecretInput {
    Given(SecretString),
    Missing,
    Broken,
}

impl Problems<'_> {
    fn required_secret(&mut self, key: &str) {
        let var = env_var_name(key);
        let short = key.rsplit('.').next().unwrap_or(key);
        self.add(
            key,
            format!(
                "is required; set it, or {short}_file, in the config file or with {var} / \
                 {var}_FILE"
            ),
        );
    }
}

/// Resolves `key` from its inline value or its `<key>_file`. The file's content is used with one
/// trailing newline removed (files written by `echo` or editors end with one). Messages name the
/// key and the path, never the content.
fn secret(
    key: &str,
    inline: Option<RawSecret>,
    file: Option<PathBuf>,
    found: &mut Problems<'_>,
) -> SecretInput {
    let file = file.filter(|path| !path.as_os_str().is_empty());
    let inline = inline.filter(|secret| !secret.0.expose_secret().is_empty());
    let given = match (inline, file) {
        (Some(_), Some(_)) => {
            let short = key.rsplit('.').next().unwrap_or(key);
            found.add(
                key,
                format!("is set both directly and as {short}_file; set only one of them"),
            );
            return SecretInput::Broken;
        }
        (Some(RawSecret(secret)), None) => SecretInput::Given(secret),
        (None, Some(path)) => read_secret_file(key, &path, found),
        (None, None) => SecretInput::Missing,
    };
    match given {
        SecretInput::Given(secret) if is_placeholder(secret.expose_secret()) => {
            found.add(
                key,
                format!(
                    "is a placeholder (a value from an example or template), not a real \
                     secret; {}",
                    secret_hint(key)
                ),
            );
            SecretInput::Broken
        }
        other => other,
    }
}

/// Values written in examples and templates to be replaced: refused wherever a secret is read,
/// so a copied example can never run with a published secret.
const PLACEHOLDER_PREFIXES: [&str; 7] = [
    "change-me",
    "change_me",
    "changeme",
    "replace-me",
    "replace_me",
    "placeholder",
    "example-",
];
/// Whole values refused for the same reason (compared ignoring case).
const PLACEHOLDER_VALUES: [&str; 6] = ["secret", "password", "changeit", "todo", "xxx", "none"];

/// Whether `value` is a known placeholder: one of the values or prefixes above, or one
/// character repeated (`xxxxxxxxxx`, `0000000000`).
pub(crate) fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    let mut chars = lower.chars();
    let repeated = chars
        .next()
        .is_some_and(|first| lower.chars().count() > 1 && chars.all(|c| c == first));
    repeated
        || PLACEHOLDER_VALUES.contains(&lower.as_str())
        || PLACEHOLDER_PREFIXES
            .iter()
            .any(|prefix| lower.starts_with(prefix))
}

/// Where the real value of a secret comes from.
fn secret_hint(key: &str) -> &'static str {
    match key {
        "discourse.connect_secret" => {
            "use the value of Discourse's discourse_connect_secret setting (generate one with \
             `openssl rand -hex 32` and set it on both sides)"
        }
        "discourse.api_key" => "create an admin API key in Discourse (Admin > API > New key)",
        "oidc.client_secret" => "copy the client secret from the identity provider",
        _ => "generate one with `openssl rand -hex 32`",
    }
}

fn read_secret_file(key: &str, path: &Path, found: &mut Problems<'_>) -> SecretInput {
    let file_key = format!("{key}_file");
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            found.add(file_key, format!("cannot read {}: {error}", path.display()));
            return SecretInput::Broken;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => {
            found.add(file_key, format!("{} is not UTF-8 text", path.display()));
            return SecretInput::Broken;
        }
    };
    let secret = SecretString::from(strip_one_newline(text));
    if secret.expose_secret().is_empty() {
        found.add(file_key, format!("{} is empty", path.display()));
        return SecretInput::Broken;
    }
    SecretInput::Given(secret)
}

/// Removes one trailing `\n` or `\r\n`, leaving any other whitespace: a secret may legitimately
/// end in spaces, but not in the newline an editor appends.
fn strip_one_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// True for `localhost`, `*.localhost` and loopback addresses, where plain http is acceptable.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.');
            domain.eq_ignore_ascii_case("localhost")
                || domain.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T>(run: impl FnOnce(&mut Problems<'_>) -> Option<T>) -> (Option<T>, Vec<String>) {
        let mut problems = Vec::new();
        let value = run(&mut Problems(&mut problems));
        (value, problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn base_urls_keep_a_plain_path_prefix_without_its_trailing_slash() {
        for (text, stored) in [
            ("https://forum.example.com/", "https://forum.example.com/"),
            ("https://forum.example.com", "https://forum.example.com/"),
            ("https://example.com/forum", "https://example.com/forum"),
            ("https://example.com/forum/", "https://example.com/forum"),
            (
                "https://example.com/a/b-c_d.e~f",
                "https://example.com/a/b-c_d.e~f",
            ),
        ] {
            let (url, problems) = check(|f| base_url("k", text, f));
            assert!(problems.is_empty(), "{text}: {problems:?}");
            assert_eq!(url.map(String::from).as_deref(), Some(stored), "{text}");
        }
        for text in [
            "https://example.com//",
            "https://example.com/forum//",
            "https://example.com/a//b",
            "https://example.com/forum/../x",
            "https://example.com/forum%2Fx",
            "https://example.com/for%20um",
            "https://example.com/forum;x",
        ] {
            let (url, problems) = check(|f| base_url("k", text, f));
            assert!(url.is_none(), "{text}");
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
        }
    }

    #[test]
    fn web_urls_report_every_defect() {
        let (_, problems) = check(|f| web_url("k", "ftp://u:p@host/?q#f", f));
        assert_eq!(
            problems,
            [
                "k: must be an https:// (or http://) URL, not ftp:",
                "k: must not contain a user name or password",
                "k: must not have a query (?...)",
                "k: must not have a fragment (#...)",
            ]
        );
        let (_, problems) = check(|f| web_url("k", "forum.example.com", f));
        assert_eq!(
            problems,
            ["k: \"forum.example.com\" is not a URL (relative URL without a base)"]
        );
    }

    #[test]
    fn durations_are_human_and_bounded() {
        let (d, _) = check(|f| duration("k", "10m", Bound::Positive, f));
        assert_eq!(d, Some(Duration::from_secs(600)));
        let (d, _) = check(|f| duration("k", "1h 30m", Bound::Positive, f));
        assert_eq!(d, Some(Duration::from_secs(5400)));
        let (d, problems) = check(|f| duration("k", "0s", Bound::Positive, f));
        assert_eq!((d, problems.len()), (None, 1));
        let (d, _) = check(|f| duration("k", "0s", Bound::ZeroAllowed, f));
        assert_eq!(d, Some(Duration::ZERO));
        let (_, problems) = check(|f| duration("k", "10 minutez", Bound::Positive, f));
        assert!(
            problems[0].starts_with("k: \"10 minutez\" is not a duration"),
            "{problems:?}"
        );
        let (_, problems) = check(|f| duration("k", "600", Bound::Positive, f));
        assert_eq!(problems.len(), 1, "a bare number has no unit");
    }

    #[test]
    fn proxies_accept_networks_and_single_addresses() {
        assert_eq!(
            ip_net("10.0.0.0/8").map(|n| n.to_string()).as_deref(),
            Some("10.0.0.0/8")
        );
        assert_eq!(
            ip_net("192.0.2.7").map(|n| n.to_string()).as_deref(),
            Some("192.0.2.7/32")
        );
        assert_eq!(
            ip_net("::1").map(|n| n.to_string()).as_deref(),
            Some("::1/128")
        );
        assert_eq!(ip_net("10.0.0.0/33"), None);
        assert_eq!(ip_net("proxy.internal"), None);
    }

    #[test]
    fn listeners_conflict_on_wildcards() {
        let addr = |s: &str| s.parse::<SocketAddr>().ok();
        let pairs = [
            ("0.0.0.0:8080", "127.0.0.1:8080", true),
            ("127.0.0.1:8080", "127.0.0.1:8080", true),
            ("127.0.0.1:8080", "127.0.0.2:8080", false),
            ("0.0.0.0:8080", "0.0.0.0:9090", false),
        ];
        for (a, b, conflict) in pairs {
            let (Some(a), Some(b)) = (addr(a), addr(b)) else {
                unreachable!("test addresses parse");
            };
            assert_eq!(binds_same_port(a, b), conflict, "{a} {b}");
        }
    }

    #[test]
    fn secret_files_lose_exactly_one_newline() {
        assert_eq!(strip_one_newline("abc\n".to_owned()), "abc");
        assert_eq!(strip_one_newline("abc\r\n".to_owned()), "abc");
        assert_eq!(strip_one_newline("abc\n\n".to_owned()), "abc\n");
        assert_eq!(strip_one_newline("abc ".to_owned()), "abc ");
        assert_eq!(strip_one_newline("abc".to_owned()), "abc");
    }

    #[test]
    fn signing_algs_refuse_none_unknown_names_and_hs_without_a_client_secret() {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (kept, problems) =
            check(|f| signing_algs(&list(&["RS256", "ES256", "RS256"]), false, f));
        assert!(problems.is_empty());
        assert_eq!(
            kept,
            Some(vec![
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256
            ])
        );
        let (_, problems) = check(|f| signing_algs(&list(&["none", "rs256", "HS256"]), false, f));
        assert_eq!(problems.len(), 3, "{problems:?}");
        let (kept, problems) = check(|f| signing_algs(&list(&["HS256"]), true, f));
        assert!(problems.is_empty());
        assert_eq!(kept, Some(vec![CoreJwsSigningAlgorithm::HmacSha256]));
        let (_, problems) = check(|f| signing_algs(&[], true, f));
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn scopes_need_openid_and_no_spaces_and_lose_duplicates() {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (kept, problems) = check(|f| scopes(&list(&["openid", "email", "openid"]), f));
        assert!(problems.is_empty());
        assert_eq!(kept, Some(list(&["openid", "email"])));

        let (_, problems) = check(|f| scopes(&list(&["email", "openid profile"]), f));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("oidc.scopes[1]: \"openid profile\""));
        assert!(problems[1].starts_with("oidc.scopes: must include \"openid\""));
    }

    #[test]
    fn reserved_auth_params_are_rejected_in_any_case() {
        let params = BTreeMap::from([
            ("prompt".to_owned(), "login".to_owned()),
            ("Nonce".to_owned(), "x".to_owned()),
            ("scope".to_owned(), "openid".to_owned()),
        ]);
        let (kept, problems) = check(|f| auth_params(params, f));
        assert_eq!(kept, None);
        assert_eq!(
            problems,
            [
                "oidc.auth_params.Nonce: is set by the bridge itself and cannot be overridden",
                "oidc.auth_params.scope: is set by the bridge itself and cannot be overridden; \
                 list scopes in oidc.scopes instead",
            ]
        );
    }

    #[test]
    fn placeholders_are_recognised_and_real_secrets_are_not() {
        for placeholder in [
            "change-me-to-the-discourse-connect-secret",
            "CHANGEME",
            "placeholder-replaced-by-compose",
            "example-discourse-admin-api-key",
            "xxxxxxxxxxxxxxxx",
            "0000000000",
            " secret ",
        ] {
            assert!(is_placeholder(placeholder), "{placeholder}");
        }
        for real in [
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "discourse-connect-secret-0123",
            "a",
        ] {
            assert!(!is_placeholder(real), "{real}");
        }
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for (url, loopback) in [
            ("http://localhost:3000", true),
            ("http://idp.localhost", true),
            ("http://127.0.0.1:9000", true),
            ("http://[::1]:9000", true),
            ("http://login.example.com", false),
            ("http://10.0.0.1", false),
        ] {
            let parsed = Url::parse(url).ok();
            assert_eq!(parsed.as_ref().map(is_loopback), Some(loopback), "{url}");
        }
    }
}
