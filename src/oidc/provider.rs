//! The upstream OpenID Provider as the bridge sees it: discovery (OpenID Connect Discovery 1.0),
//! the authorization request (Core §3.1.2, with PKCE per RFC 7636), the code exchange, userinfo
//! (Core §5.3), and a shared JWKS cache that is refetched, at most once per interval, when a
//! token names a key it does not hold (openidconnect itself never refreshes keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreClient, CoreClientAuthMethod, CoreGenderClaim, CoreIdToken, CoreJwsSigningAlgorithm,
    CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AuthType, AuthorizationCode, ClientId, ClientSecret,
    EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeVerifier, RedirectUrl, SubjectIdentifier, TokenResponse,
    UserInfoClaims,
};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::config::{OidcConfig, TokenAuthMethod, UserinfoMode};
use crate::oidc::authorization::AuthorizationEndpoint;
pub use crate::oidc::authorization::AuthorizationRequest;
use crate::oidc::id_token::{self, IdTokenError, IdTokenRules, VerifiedIdToken};
use crate::oidc::issuer_id::BridgeProviderMetadata;
use crate::oidc::jwk::{self, VerifyingKeySet};

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

/// Why talking to the IdP failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Network failure, timeout or 5xx: worth retrying later.
    #[error("identity provider unreachable: {0}")]
    Unavailable(String),
    /// The IdP answered with something unacceptable.
    #[error("identity provider answer rejected: {0}")]
    Invalid(String),
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
    metadata: BridgeProviderMetadata,
    rules: IdTokenRules,
    authorization: AuthorizationEndpoint,
    userinfo: UserinfoMode,
    jwks_min_refresh_interval: Duration,
    keys: RwLock<KeyCache>,
    http: reqwest::Client,
}

fn classify_request_error<E: std::error::Error + 'static>(context: &str, err: E) -> ProviderError {
    // openidconnect wraps transport errors ("Request failed"); the whole source chain says why
    // (DNS, refused, timeout, certificate), and a reqwest error anywhere in it is retryable.
    let mut text = format!("{context}: {err}");
    let mut transport = false;
    let mut source = err.source();
    while let Some(e) = source {
        transport |= e.downcast_ref::<reqwest::Error>().is_some();
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    if transport {
        ProviderError::Unavailable(text)
    } else {
        ProviderError::Invalid(text)
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
        redirect_url: &url::Url,
    ) -> Result<Self, ProviderError> {
        // The issuer exactly as configured: discovery and `iss` checks compare it byte for byte.
        let issuer = IssuerUrl::new(cfg.issuer_exact.clone())
            .map_err(|e| ProviderError::Invalid(format!("issuer: {e}")))?;
        let started = Instant::now();
        let metadata = BridgeProviderMetadata::discover_async(issuer.clone(), &http).await;
        observe("discovery", started);
        let metadata = metadata.map_err(|e| classify_request_error("discovery", e))?;

        let client_id = ClientId::new(cfg.client_id.clone());
        let client_secret = cfg
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose_secret().to_owned()));
        let auth_type = match cfg.token_auth_method {
            TokenAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            TokenAuthMethod::ClientSecretPost | TokenAuthMethod::None => AuthType::RequestBody,
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
            .map_err(|e| ProviderError::Invalid(format!("redirect url: {e}")))?;
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
                &cfg.signing_algs,
            ),
            clock_skew: cfg.clock_skew,
        };
        if rules.allowed_algs.is_empty() {
            return Err(ProviderError::Invalid(format!(
                "the provider signs ID tokens with none of oidc.signing_algs (it advertises {}); \
                 list the algorithm the client is registered for",
                metadata
                    .id_token_signing_alg_values_supported()
                    .iter()
                    .filter_map(|alg| serde_json::to_value(alg).ok())
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
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
        })
    }

    /// The issuer exactly as the IdP states it.
    pub fn issuer(&self) -> &IssuerUrl {
        &self.rules.issuer
    }

    /// Whether the provider announces that every authorization response carries `iss`
    /// (RFC 9207 §3), which makes a response without it unacceptable.
    pub fn sends_response_issuer(&self) -> bool {
        self.metadata
            .additional_metadata()
            .additional_metadata
            .authorization_response_iss_parameter_supported
            == Some(true)
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
        let started = Instant::now();
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| ProviderError::Invalid(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&self.http)
            .await;
        observe("token", started);
        let response: CoreTokenResponse = response.map_err(|e| match &e {
            openidconnect::RequestTokenError::ServerResponse(resp) => {
                ProviderError::Invalid(format!("token endpoint refused: {}", resp.error()))
            }
            openidconnect::RequestTokenError::Request(_) => {
                ProviderError::Unavailable(format!("token endpoint: {e}"))
            }
            _ => ProviderError::Invalid(format!("token endpoint: {e}")),
        })?;
        let id_token = response
            .id_token()
            .cloned()
            .ok_or_else(|| ProviderError::Invalid("token response has no id_token".into()))?;
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

    /// Validates an ID token as of `now`, refetching the keys once if its key is unknown.
    pub async fn verify_id_token(
        &self,
        token: &CoreIdToken,
        nonce: &Nonce,
        now: DateTime<Utc>,
    ) -> Result<VerifiedIdToken, ProviderError> {
        let keys = self.keys().await;
        match id_token::validate(token, &keys, &self.rules, nonce, now) {
            Err(IdTokenError::UnknownKey) => {
                if !self.refresh_keys().await? {
                    return Err(ProviderError::Invalid(
                        "ID token signed with an unknown key (key set refreshed too recently)"
                            .into(),
                    ));
                }
                let keys = self.keys().await;
                id_token::validate(token, &keys, &self.rules, nonce, now)
                    .map_err(|e| ProviderError::Invalid(e.to_string()))
            }
            other => other.map_err(|e| ProviderError::Invalid(e.to_string())),
        }
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
            .map_err(|e| ProviderError::Invalid(format!("userinfo: {e}")))?;
        let started = Instant::now();
        let claims = request.request_async(&self.http).await;
        observe("userinfo", started);
        let claims: UserInfoClaims<ExtraClaims, CoreGenderClaim> =
            claims.map_err(|e| match &e {
                openidconnect::UserInfoError::Request(_) => {
                    ProviderError::Unavailable(format!("userinfo: {e}"))
                }
                _ => ProviderError::Invalid(format!("userinfo: {e}")),
            })?;
        match serde_json::to_value(&claims) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(ProviderError::Invalid(
                "userinfo is not a JSON object".into(),
            )),
        }
    }
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
