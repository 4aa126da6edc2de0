//! The upstream OpenID Provider as the bridge sees it: discovery (OpenID Connect Discovery 1.0),
//! the authorization request (Core §3.1.2, with PKCE per RFC 7636), the code exchange, userinfo
//! (Core §5.3), and a shared JWKS cache that is refetched, at most once per interval, when a
//! token names a key it does not hold (openidconnect itself never refreshes keys). One
//! [`Provider::verify_with_key_refresh`] serves ID tokens (Core §3.1.3.7) and logout tokens
//! (Back-Channel Logout 1.0 §2.6).

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreClient, CoreClientAuthMethod, CoreGenderClaim, CoreIdToken, CoreJwsSigningAlgorithm,
    CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AuthType, AuthorizationCode, ClientId, ClientSecret,
    EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl,
    SubjectIdentifier, TokenResponse, UserInfoClaims,
};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::config::{LogoutConfig, OidcConfig, TokenAuthMethod, UserinfoMode};
use crate::oidc::authorization::AuthorizationEndpoint;
pub use crate::oidc::authorization::AuthorizationRequest;
use crate::oidc::client_auth::{self, ClientKey, SigningAlg};
use crate::oidc::id_token::{self, IdTokenError, IdTokenRules, VerifiedIdToken};
use crate::oidc::jwk::{self, VerifyingKeySet};
use crate::oidc::logout_token::{self, LogoutToken, LogoutTokenError, LogoutTokenRules};

/// The openidconnect client as built from discovery: auth URL set, token and userinfo URLs
/// present if the IdP advertised them.
type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Claims beyond the standard ones (groups, roles, `hd`, ...), kept as raw JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ExtraClaims {
    #[serde(flatten)]
    extra: Map<String, Value>,
}
impl AdditionalClaims for ExtraClaims {}

/// A boxed error from a dependency, kept as the typed source of a [`ProviderError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why talking to the IdP failed. `during` names the step (`discovery`, `token endpoint`, ...);
/// the source says why, and is logged with the request (never shown on a page).
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Network failure, timeout or 5xx: worth retrying later.
    #[error("identity provider unreachable during {during}")]
    Unavailable {
        during: &'static str,
        #[source]
        source: BoxError,
    },
    /// The IdP answered with something the bridge must not accept.
    #[error("identity provider answer rejected during {during}")]
    Rejected {
        during: &'static str,
        #[source]
        source: BoxError,
    },
    /// The IdP's answer lacks something the bridge needs (no `id_token`, not an object, ...).
    #[error("identity provider answer rejected during {during}: {problem}")]
    Invalid {
        during: &'static str,
        problem: Cow<'static, str>,
    },
    /// The token endpoint refused the authorization code with `invalid_grant` (RFC 6749 §5.2:
    /// expired, already used, or not issued for this client and redirect): a property of this
    /// login, not an outage, and a new login can succeed.
    #[error("identity provider refused the authorization code (invalid_grant)")]
    CodeRejected {
        #[source]
        source: BoxError,
    },
}

impl ProviderError {
    /// True when trying again later may help (the IdP was not reached).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ProviderError::Unavailable { .. })
    }

    fn invalid(during: &'static str, problem: impl Into<Cow<'static, str>>) -> Self {
        ProviderError::Invalid {
            during,
            problem: problem.into(),
        }
    }

    fn rejected(during: &'static str, source: impl Into<BoxError>) -> Self {
        ProviderError::Rejected {
            during,
            source: source.into(),
        }
    }
}

/// The discovered provider, shared by everything that talks to the IdP; empty until discovery
/// has succeeded, and until then holding why the last attempt failed. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ProviderSlot {
    provider: Arc<OnceLock<Arc<Provider>>>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl ProviderSlot {
    /// The provider, once discovered.
    pub fn get(&self) -> Option<Arc<Provider>> {
        self.provider.get().cloned()
    }

    /// Whether discovery has succeeded.
    pub fn is_ready(&self) -> bool {
        self.provider.get().is_some()
    }

    /// Why the last discovery attempt failed, for `/readyz` (`None` once ready or before the
    /// first attempt ended). Names the host and, for a refused certificate, the reason.
    pub fn last_error(&self) -> Option<String> {
        if self.is_ready() {
            return None;
        }
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Runs discovery until it succeeds, backing off exponentially (1 s doubling, capped at
    /// 60 s), and publishes the provider.
    pub async fn discover_until_ready(
        &self,
        http: reqwest::Client,
        oidc: &OidcConfig,
        logout: &LogoutConfig,
        redirect_url: &url::Url,
    ) {
        let mut delay = Duration::from_secs(1);
        loop {
            match Provider::discover(http.clone(), oidc, logout, redirect_url).await {
                Ok(provider) => {
                    tracing::info!(issuer = %provider.issuer().as_str(), "discovery succeeded");
                    let _ = self.provider.set(Arc::new(provider));
                    return;
                }
                Err(e) => {
                    let problem = crate::outbound::describe(&e, &oidc.issuer, "oidc.ca_file");
                    tracing::warn!(error = %problem, retry_in = ?delay, "discovery failed");
                    if let Ok(mut last) = self.last_error.lock() {
                        *last = Some(problem);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

/// How a token check with key refresh ended when it did not end with a valid token.
#[derive(Debug)]
pub enum KeyRefreshError<E> {
    /// The token is invalid (after a refetch, when its key was unknown).
    Token(E),
    /// The token names an unknown key and the key set was refetched too recently to try again.
    UnknownKeyRefreshedRecently(E),
    /// The key set could not be refetched.
    Refetch(ProviderError),
}

/// The result of a completed code exchange.
#[derive(Debug)]
pub struct Tokens {
    pub id_token: CoreIdToken,
    pub access_token: AccessToken,
}

#[derive(Debug)]
struct KeyCache {
    keys: Arc<VerifyingKeySet>,
    /// When an unknown key last caused a refetch; the first one is always allowed.
    last_refetch: Option<Instant>,
}

/// The discovered provider. Shared by every request; cheap to use concurrently.
#[derive(Debug)]
pub struct Provider {
    client: DiscoveredClient,
    metadata: ProviderMetadataWithLogout,
    rules: IdTokenRules,
    /// Built once from the configuration and the discovered metadata.
    logout_rules: LogoutTokenRules,
    authorization: AuthorizationEndpoint,
    userinfo: UserinfoMode,
    jwks_min_refresh_interval: Duration,
    keys: RwLock<KeyCache>,
    http: reqwest::Client,
    /// `private_key_jwt`: the key and the algorithm chosen from discovery.
    assertion: Option<(ClientKey, SigningAlg)>,
    client_id: String,
}

/// A failed request to the IdP: unavailable when a transport error (DNS, refused, timeout,
/// certificate) is anywhere in its source chain, which openidconnect wraps ("Request failed"),
/// rejected otherwise. The error itself is kept as the source.
fn classify_request_error<E>(during: &'static str, err: E) -> ProviderError
where
    E: std::error::Error + Send + Sync + 'static,
{
    if crate::outbound::is_transport_error(&err) {
        ProviderError::Unavailable {
            during,
            source: Box::new(err),
        }
    } else {
        ProviderError::rejected(during, err)
    }
}

/// Records how long one request to the IdP took, by endpoint.
fn observe(endpoint: &'static str, started: Instant) {
    metrics::histogram!("bridge_idp_request_duration_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
}

impl Provider {
    /// Runs discovery and fetches the key set once.
    pub async fn discover(
        http: reqwest::Client,
        cfg: &OidcConfig,
        logout: &LogoutConfig,
        redirect_url: &url::Url,
    ) -> Result<Self, ProviderError> {
        // The issuer exactly as configured: discovery and `iss` checks compare it byte for byte.
        let issuer = IssuerUrl::new(cfg.issuer_exact.clone())
            .map_err(|e| ProviderError::rejected("issuer", e))?;
        let started = Instant::now();
        let metadata = ProviderMetadataWithLogout::discover_async(issuer.clone(), &http).await;
        observe("discovery", started);
        let mut metadata = metadata.map_err(|e| classify_request_error("discovery", e))?;
        if cfg.token_auth_method == TokenAuthMethod::TlsClientAuth {
            metadata = with_mtls_aliases(metadata, &http).await?;
        }

        let client_id = ClientId::new(cfg.client_id.clone());
        let client_secret = cfg
            .client_secret
            .as_ref()
            .filter(|_| cfg.token_auth_method.uses_secret())
            .map(|s| ClientSecret::new(s.expose_secret().to_owned()));
        let advertised_methods: Option<Vec<String>> = metadata
            .token_endpoint_auth_methods_supported()
            .map(|methods| methods.iter().filter_map(json_name).collect());
        if let Some(methods) = &advertised_methods
            && cfg.token_auth_method != TokenAuthMethod::Auto
            && !methods.iter().any(|m| m == cfg.token_auth_method.as_str())
        {
            tracing::warn!(
                method = cfg.token_auth_method.as_str(),
                advertised = %methods.join(" "),
                "the identity provider does not list oidc.token_auth_method among its \
                 token_endpoint_auth_methods_supported"
            );
        }
        let assertion = match (&cfg.token_auth_method, &cfg.client_key) {
            (TokenAuthMethod::PrivateKeyJwt, Some(key)) => {
                let advertised = signing_alg_names(&metadata);
                let alg = key
                    .choose_alg(advertised.as_deref())
                    .map_err(|e| ProviderError::rejected("client authentication", e))?;
                Some((key.clone(), alg))
            }
            (TokenAuthMethod::PrivateKeyJwt, None) => {
                return Err(ProviderError::invalid(
                    "client authentication",
                    "private_key_jwt without oidc.client_key_file",
                ));
            }
            _ => None,
        };
        let auth_type = match cfg.token_auth_method {
            TokenAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            TokenAuthMethod::ClientSecretPost
            | TokenAuthMethod::PrivateKeyJwt
            | TokenAuthMethod::TlsClientAuth
            | TokenAuthMethod::None => AuthType::RequestBody,
            TokenAuthMethod::Auto => {
                let supported = metadata.token_endpoint_auth_methods_supported();
                // Absent means client_secret_basic (Discovery §3).
                let basic =
                    supported.is_none_or(|m| m.contains(&CoreClientAuthMethod::ClientSecretBasic));
                if basic {
                    AuthType::BasicAuth
                } else {
                    AuthType::RequestBody
                }
            }
        };
        let redirect = RedirectUrl::new(redirect_url.to_string())
            .map_err(|e| ProviderError::rejected("redirect url", e))?;
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            client_id.clone(),
            client_secret.clone(),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(auth_type);

        let rules = IdTokenRules {
            issuer: metadata.issuer().clone(),
            client_id,
            client_secret,
            allowed_algs: id_token::acceptable_algs(
                metadata.id_token_signing_alg_values_supported(),
            ),
            clock_skew: cfg.clock_skew,
        };
        let logout_rules = LogoutTokenRules::from_config(
            rules.issuer.as_str(),
            rules.allowed_algs.clone(),
            cfg,
            logout,
        );
        let keys = KeyCache {
            keys: Arc::new(jwk::key_set_from_core(metadata.jwks())),
            last_refetch: None,
        };
        let authorization = AuthorizationEndpoint::new(
            metadata.authorization_endpoint().url(),
            &cfg.client_id,
            redirect_url,
            &cfg.scopes,
            cfg.auth_params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Ok(Self {
            client,
            rules,
            logout_rules,
            authorization,
            userinfo: if metadata.userinfo_endpoint().is_some() {
                cfg.userinfo
            } else {
                UserinfoMode::Never
            },
            jwks_min_refresh_interval: cfg.jwks_min_refresh_interval,
            keys: RwLock::new(keys),
            metadata,
            http,
            assertion,
            client_id: cfg.client_id.clone(),
        })
    }

    /// The `private_key_jwt` algorithm in use, when that method is configured.
    pub fn assertion_alg(&self) -> Option<&'static str> {
        self.assertion.as_ref().map(|(_, alg)| alg.name)
    }

    /// The issuer exactly as the IdP states it.
    pub fn issuer(&self) -> &IssuerUrl {
        &self.rules.issuer
    }

    /// The signing algorithms accepted for ID and logout tokens.
    pub fn signing_algs(&self) -> &[CoreJwsSigningAlgorithm] {
        &self.rules.allowed_algs
    }

    /// The client secret, if the client is confidential (for HS* logout tokens).
    pub fn client_secret(&self) -> Option<&ClientSecret> {
        self.rules.client_secret.as_ref()
    }

    /// RP-initiated logout endpoint, when the IdP advertises one.
    pub fn end_session_endpoint(&self) -> Option<&EndSessionUrl> {
        self.metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
    }

    /// Builds a fresh authorization request with new `state`, `nonce` and PKCE S256 challenge.
    pub fn authorization_request(&self) -> AuthorizationRequest {
        self.authorization.request()
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        code: String,
        pkce_verifier: String,
    ) -> Result<Tokens, ProviderError> {
        let mut request = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| ProviderError::rejected("token endpoint", e))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier));
        if let Some((key, alg)) = &self.assertion {
            let token_endpoint = self
                .metadata
                .token_endpoint()
                .ok_or_else(|| ProviderError::invalid("token endpoint", "none advertised"))?;
            let assertion = key
                .assertion(*alg, &self.client_id, token_endpoint.as_str(), Utc::now())
                .map_err(|e| ProviderError::rejected("client authentication", e))?;
            request = request
                .add_extra_param("client_assertion_type", client_auth::ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        let started = Instant::now();
        let response = request.request_async(&self.http).await;
        observe("token", started);
        let response: CoreTokenResponse = response.map_err(|e| match &e {
            openidconnect::RequestTokenError::Request(_) => ProviderError::Unavailable {
                during: "token endpoint",
                source: Box::new(e),
            },
            openidconnect::RequestTokenError::ServerResponse(answer)
                if *answer.error() == openidconnect::core::CoreErrorResponseType::InvalidGrant =>
            {
                ProviderError::CodeRejected {
                    source: Box::new(e),
                }
            }
            _ => ProviderError::rejected("token endpoint", e),
        })?;
        let id_token = response
            .id_token()
            .cloned()
            .ok_or_else(|| ProviderError::invalid("token endpoint", "no id_token"))?;
        Ok(Tokens {
            id_token,
            access_token: response.access_token().clone(),
        })
    }

    /// The current key set.
    pub async fn keys(&self) -> Arc<VerifyingKeySet> {
        self.keys.read().await.keys.clone()
    }

    /// Refetches the JWKS unless an unknown key already caused a refetch less than the minimum
    /// interval ago (so forged `kid`s cannot make the bridge hammer the IdP).
    /// Returns whether a refetch happened.
    pub async fn refresh_keys(&self) -> Result<bool, ProviderError> {
        let mut cache = self.keys.write().await;
        if cache
            .last_refetch
            .is_some_and(|at| at.elapsed() < self.jwks_min_refresh_interval)
        {
            return Ok(false);
        }
        // Record the attempt first so a failing JWKS endpoint is not hammered either.
        cache.last_refetch = Some(Instant::now());
        let started = Instant::now();
        let fresh = VerifyingKeySet::fetch_async(self.metadata.jwks_uri(), &self.http).await;
        observe("jwks", started);
        let fresh = fresh.map_err(|e| classify_request_error("jwks", e))?;
        cache.keys = Arc::new(fresh);
        metrics::counter!("bridge_jwks_refreshes_total").increment(1);
        tracing::info!(
            keys = cache.keys.keys().len(),
            "refetched the IdP's signing keys"
        );
        Ok(true)
    }

    /// Runs `validate` against the current keys and, when it reports a key the set does not
    /// hold (`is_unknown_key`), refetches the set (at most once per
    /// `oidc.jwks_min_refresh_interval`) and runs it once more.
    pub async fn verify_with_key_refresh<T, E>(
        &self,
        validate: impl Fn(&VerifyingKeySet) -> Result<T, E>,
        is_unknown_key: impl Fn(&E) -> bool,
    ) -> Result<T, KeyRefreshError<E>> {
        let keys = self.keys().await;
        match validate(&keys) {
            Err(e) if is_unknown_key(&e) => match self.refresh_keys().await {
                Ok(true) => validate(&*self.keys().await).map_err(KeyRefreshError::Token),
                Ok(false) => Err(KeyRefreshError::UnknownKeyRefreshedRecently(e)),
                Err(refetch) => Err(KeyRefreshError::Refetch(refetch)),
            },
            other => other.map_err(KeyRefreshError::Token),
        }
    }

    /// Validates an ID token as of `now` (Core §3.1.3.7), refetching the keys once if its key
    /// is unknown.
    pub async fn verify_id_token(
        &self,
        token: &CoreIdToken,
        nonce: &Nonce,
        now: DateTime<Utc>,
    ) -> Result<VerifiedIdToken, ProviderError> {
        self.verify_with_key_refresh(
            |keys| id_token::validate(token, keys, &self.rules, nonce, now),
            |e| matches!(e, IdTokenError::UnknownKey),
        )
        .await
        .map_err(|e| match e {
            KeyRefreshError::Token(e) | KeyRefreshError::UnknownKeyRefreshedRecently(e) => {
                ProviderError::rejected("ID token validation", e)
            }
            KeyRefreshError::Refetch(e) => e,
        })
    }

    /// The rules logout tokens are checked against (built once at discovery).
    pub fn logout_rules(&self) -> &LogoutTokenRules {
        &self.logout_rules
    }

    /// Validates a logout token as of `now` (Back-Channel Logout 1.0 §2.6), refetching the keys
    /// once if its key is unknown; a failed refetch leaves it an unknown key.
    pub async fn verify_logout_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<LogoutToken, LogoutTokenError> {
        self.verify_with_key_refresh(
            |keys| logout_token::validate(token, keys, &self.logout_rules, now),
            |e| matches!(e, LogoutTokenError::UnknownKey),
        )
        .await
        .map_err(|e| match e {
            KeyRefreshError::Token(e) | KeyRefreshError::UnknownKeyRefreshedRecently(e) => e,
            KeyRefreshError::Refetch(_) => LogoutTokenError::UnknownKey,
        })
    }

    /// When userinfo is fetched: as configured, and never when the IdP advertises no endpoint.
    pub fn userinfo_mode(&self) -> UserinfoMode {
        self.userinfo
    }

    /// Fetches userinfo for `subject`; openidconnect checks its `sub` matches.
    pub async fn userinfo(
        &self,
        access_token: AccessToken,
        subject: &str,
    ) -> Result<Map<String, Value>, ProviderError> {
        let request = self
            .client
            .user_info(
                access_token,
                Some(SubjectIdentifier::new(subject.to_owned())),
            )
            .map_err(|e| ProviderError::rejected("userinfo", e))?;
        let started = Instant::now();
        let claims = request.request_async(&self.http).await;
        observe("userinfo", started);
        let claims: UserInfoClaims<ExtraClaims, CoreGenderClaim> =
            claims.map_err(|e| match &e {
                openidconnect::UserInfoError::Request(_) => ProviderError::Unavailable {
                    during: "userinfo",
                    source: Box::new(e),
                },
                _ => ProviderError::rejected("userinfo", e),
            })?;
        match serde_json::to_value(&claims) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(ProviderError::invalid("userinfo", "not a JSON object")),
        }
    }
}

/// RFC 8705 §5: with mutual TLS, the token and userinfo requests go to the endpoints listed in
/// the discovery document's `mtls_endpoint_aliases`, when it has them (IdPs that ask for client
/// certificates on a separate host or port). openidconnect drops unknown metadata, so the
/// document is read once more as JSON; aliases must be https URLs.
async fn with_mtls_aliases(
    metadata: ProviderMetadataWithLogout,
    http: &reqwest::Client,
) -> Result<ProviderMetadataWithLogout, ProviderError> {
    const DURING: &str = "discovery (mtls_endpoint_aliases)";
    let url = format!(
        "{}/.well-known/openid-configuration",
        metadata.issuer().as_str().trim_end_matches('/')
    );
    let document: Value = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| classify_request_error(DURING, e))?
        .json()
        .await
        .map_err(|e| classify_request_error(DURING, e))?;
    let Some(aliases) = document.get("mtls_endpoint_aliases") else {
        return Ok(metadata);
    };
    let alias = |name: &str| -> Result<Option<String>, ProviderError> {
        match aliases.get(name) {
            None => Ok(None),
            Some(Value::String(url)) if url.starts_with("https://") => Ok(Some(url.clone())),
            Some(_) => Err(ProviderError::invalid(
                DURING,
                format!("{name} is not an https URL"),
            )),
        }
    };
    let mut metadata = metadata;
    if let Some(token) = alias("token_endpoint")? {
        let token =
            openidconnect::TokenUrl::new(token).map_err(|e| ProviderError::rejected(DURING, e))?;
        metadata = metadata.set_token_endpoint(Some(token));
    }
    if let Some(userinfo) = alias("userinfo_endpoint")? {
        let userinfo = openidconnect::UserInfoUrl::new(userinfo)
            .map_err(|e| ProviderError::rejected(DURING, e))?;
        metadata = metadata.set_userinfo_endpoint(Some(userinfo));
    }
    Ok(metadata)
}

/// The name a discovery enum value has in the JSON document.
fn json_name(value: &impl serde::Serialize) -> Option<String> {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => Some(name),
        _ => None,
    }
}

/// The IdP's `token_endpoint_auth_signing_alg_values_supported`, as JWS names.
fn signing_alg_names(metadata: &ProviderMetadataWithLogout) -> Option<Vec<String>> {
    metadata
        .token_endpoint_auth_signing_alg_values_supported()
        .map(|algs| algs.iter().filter_map(json_name).collect())
}

/// Merges userinfo over the ID token's claims (userinfo wins, per the mapping's contract).
pub fn merge_claims(
    id_token: &Map<String, Value>,
    userinfo: Map<String, Value>,
) -> Map<String, Value> {
    let mut merged = id_token.clone();
    for (key, value) in userinfo {
        if !value.is_null() {
            merged.insert(key, value);
        }
    }
    merged
}
