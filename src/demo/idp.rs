//! The demo's built-in OpenID Provider, for development only: discovery (OpenID Connect
//! Discovery 1.0), JWKS, the authorization code flow with PKCE S256 (OpenID Connect Core 1.0
//! §3.1, RFC 7636) and the `iss` response parameter (RFC 9207), the token endpoint with
//! `client_secret_basic` / `client_secret_post` (RFC 6749 §2.3.1), userinfo (Core §5.3) and an
//! RP-initiated logout endpoint. ID tokens are RS256, signed with openidconnect's own signing key
//! type from a key generated at start-up.
//!
//! It has no passwords and no browser session: the authorization page lets anyone pick one of a
//! few sample users. That is the point of a demo, and the reason it only ever listens on
//! loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{
    AccessToken, AdditionalClaims, Audience, EndUserEmail, EndUserName, EndUserUsername, IdToken,
    IdTokenClaims, IssuerUrl, JsonWebKeyId, LocalizedClaim, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, PrivateSigningKey as _, StandardClaims, SubjectIdentifier, UserInfoClaims,
};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use super::{DEVELOPMENT_ONLY, found, random_hex};
use crate::http::pages::Pages;

/// How long a shown authorization page stays usable.
const AUTHORIZATION_PAGE_LIFETIME: Duration = Duration::minutes(10);
/// How long an authorization code can be redeemed (RFC 6749 §4.1.2 recommends at most 10 min).
const CODE_LIFETIME: Duration = Duration::seconds(60);
/// Lifetime of ID tokens and access tokens.
const TOKEN_LIFETIME: Duration = Duration::minutes(10);

/// One of the demo's made-up people.
#[derive(Debug, Clone, Copy)]
pub struct SampleUser {
    /// What the authorization form submits to pick this user.
    pub login: &'static str,
    /// The stable `sub` claim.
    pub subject: &'static str,
    pub name: &'static str,
    pub preferred_username: &'static str,
    pub email: &'static str,
    pub email_verified: bool,
    /// The `groups` claim (Keycloak-style full paths for some).
    pub groups: &'static [&'static str],
    /// What this user demonstrates, shown on the authorization page.
    pub about: &'static str,
}

/// The people one can log in as. Each shows a different path through the mapping.
pub const SAMPLE_USERS: [SampleUser; 4] = [
    SampleUser {
        login: "alice",
        subject: "demo-0001-alice",
        name: "Alice Admin",
        preferred_username: "alice",
        email: "alice@example.com",
        email_verified: true,
        groups: &["/staff", "/staff/moderators", "forum-admins"],
        about: "Staff: Keycloak-style group paths and an admin group, verified email.",
    },
    SampleUser {
        login: "bob",
        subject: "demo-0002-bob",
        name: "Bob Builder",
        preferred_username: "bob",
        email: "bob@example.com",
        email_verified: true,
        groups: &["engineering"],
        about: "A regular member of one team, verified email.",
    },
    SampleUser {
        login: "carol",
        subject: "demo-0003-carol",
        name: "Carol Unverified",
        preferred_username: "carol",
        email: "carol@example.org",
        email_verified: false,
        groups: &["engineering"],
        about: "Her email address is NOT verified: the default policy refuses her.",
    },
    SampleUser {
        login: "dave",
        subject: "demo-0004-dave",
        name: "Dave Newcomer",
        preferred_username: "dave",
        email: "dave@example.net",
        email_verified: true,
        groups: &[],
        about: "Belongs to no group at all, verified email.",
    },
];

/// Finds a sample user by the value the authorization form submits.
pub fn sample_user(login: &str) -> Option<&'static SampleUser> {
    SAMPLE_USERS.iter().find(|user| user.login == login)
}

/// The claims openidconnect's standard structs do not cover: `groups` (in ID token and
/// userinfo) and the IdP session id `sid` (ID token only, as Back-Channel Logout §2.1 uses it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DemoClaims {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl AdditionalClaims for DemoClaims {}

type DemoIdToken = IdToken<
    DemoClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The single relying party this IdP knows: the demo's bridge.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    pub client_id: String,
    pub client_secret: SecretString,
    /// The bridge's `/callback`, compared exactly (OAuth 2.0 Security BCP §4.1.3).
    pub redirect_uri: String,
    /// Where RP-initiated logout may send the browser back to.
    pub post_logout_redirect_uri: String,
}

/// The RSA key ID tokens are signed with, and the key set that publishes its public half.
pub struct SigningKey {
    key: CoreRsaPrivateSigningKey,
    key_set: CoreJsonWebKeySet,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_set", &self.key_set)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh 2048-bit RSA key with a random `kid`. Nothing is written to disk, so
    /// every run of the demo has its own key. CPU-bound (about a second): call it off the
    /// async worker threads.
    pub fn generate() -> anyhow::Result<Self> {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
        let pem = private.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)?;
        let kid = JsonWebKeyId::new(format!("demo-{}", random_hex(8)));
        let key = CoreRsaPrivateSigningKey::from_pem(&pem, Some(kid))
            .map_err(|e| anyhow::anyhow!("loading the generated key: {e}"))?;
        let public: CoreJsonWebKey = key.as_verification_key();
        Ok(Self {
            key,
            key_set: CoreJsonWebKeySet::new(vec![public]),
        })
    }
}

/// An authorization request that was checked and is waiting for the user to pick someone.
#[derive(Debug, Clone)]
struct PendingAuthorization {
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    expires_at: DateTime<Utc>,
}

/// An issued authorization code and everything it is bound to.
#[derive(Debug, Clone)]
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: String,
    user: &'static SampleUser,
    session_id: String,
    expires_at: DateTime<Utc>,
}

/// What an access token grants: the user's claims at userinfo.
#[derive(Debug, Clone)]
struct AccessGrant {
    user: &'static SampleUser,
    expires_at: DateTime<Utc>,
}

/// One-time values kept in memory, each dropped once used or expired.
#[derive(Debug, Default)]
struct Grants {
    pending: HashMap<String, PendingAuthorization>,
    codes: HashMap<String, IssuedCode>,
    access_tokens: HashMap<String, AccessGrant>,
}

impl Grants {
    fn prune(&mut self, now: DateTime<Utc>) {
        self.pending.retain(|_, p| p.expires_at > now);
        self.codes.retain(|_, c| c.expires_at > now);
        self.access_tokens.retain(|_, t| t.expires_at > now);
    }
}

#[derive(Debug)]
struct Idp {
    issuer: String,
    client: ClientRegistration,
    signing_key: SigningKey,
    pages: Arc<Pages>,
    grants: Mutex<Grants>,
}

impl Idp {
    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Runs `f` on the grant tables (pruned first). A poisoned lock only means another request
    /// panicked mid-update; the tables stay usable.
    fn with_grants<T>(&self, now: DateTime<Utc>, f: impl FnOnce(&mut Grants) -> T) -> T {
        let mut guard = match self.grants.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.prune(now);
        f(&mut guard)
    }
}

/// Builds the IdP's router. `issuer` is its base URL without a trailing slash, exactly as it
/// appears in discovery and in the `iss` claim.
pub fn router(
    issuer: String,
    client: ClientRegistration,
    signing_key: SigningKey,
    pages: Arc<Pages>,
) -> Router {
    let idp = Arc::new(Idp {
        issuer,
        client,
        signing_key,
        pages,
        grants: Mutex::new(Grants::default()),
    });
    Router::new()
        .route("/", get(home))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize_page).post(authorize_decision))
        .route("/token", axum::routing::post(token))
        .route("/userinfo", get(userinfo))
        .route("/end_session", get(end_session))
        .with_state(idp)
}

/// Renders the IdP's page template; `message` alone shows an information or error page.
fn page(idp: &Idp, status: StatusCode, context: minijinja::Value) -> Response {
    let lang = idp.pages.default_language().to_owned();
    idp.pages
        .respond("demo_idp_login.html", status, &lang, context)
}

fn message_page(idp: &Idp, status: StatusCode, title: &str, message: &str) -> Response {
    page(
        idp,
        status,
        minijinja::context! {
            development_only => DEVELOPMENT_ONLY,
            title => title,
            message => message,
        },
    )
}

async fn home(State(idp): State<Arc<Idp>>) -> Response {
    message_page(
        &idp,
        StatusCode::OK,
        "Demo identity provider",
        &format!(
            "This is the demo's built-in OpenID provider. Its configuration is at {}. Start a \
             login from the demo forum instead of here.",
            idp.endpoint("/.well-known/openid-configuration")
        ),
    )
}

/// OpenID Connect Discovery 1.0 §3.
async fn discovery(State(idp): State<Arc<Idp>>) -> Response {
    let document = serde_json::json!({
        "issuer": idp.issuer,
        "authorization_endpoint": idp.endpoint("/authorize"),
        "token_endpoint": idp.endpoint("/token"),
        "userinfo_endpoint": idp.endpoint("/userinfo"),
        "jwks_uri": idp.endpoint("/jwks"),
        "end_session_endpoint": idp.endpoint("/end_session"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "nonce", "sid", "name", "preferred_username",
            "email", "email_verified", "groups"
        ],
        "authorization_response_iss_parameter_supported": true,
    });
    axum::Json(document).into_response()
}

/// The public key set (RFC 7517 §5).
async fn jwks(State(idp): State<Arc<Idp>>) -> Response {
    axum::Json(&idp.signing_key.key_set).into_response()
}

/// The query of an authorization request (Core §3.1.2.1). Everything optional so that the
/// checks below, not the extractor, decide what is missing.
#[derive(Debug, Deserialize)]
struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
}

/// Sends an authorization error back to the client (RFC 6749 §4.1.2.1), with `iss` (RFC 9207).
fn authorization_error(idp: &Idp, error: &str, description: &str, state: Option<&str>) -> Response {
    let mut location = match url::Url::parse(&idp.client.redirect_uri) {
        Ok(url) => url,
        Err(_) => {
            return message_page(
                idp,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Misconfigured client",
                "The registered redirect URI is not a URL.",
            );
        }
    };
    {
        let mut query = location.query_pairs_mut();
        query.append_pair("error", error);
        query.append_pair("error_description", description);
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &idp.issuer);
    }
    found(location.as_str())
}

/// `GET /authorize`: checks the request and shows the page to pick a sample user. The checked
/// request is kept here, so the page's form carries only an opaque reference to it.
async fn authorize_page(
    State(idp): State<Arc<Idp>>,
    params: Result<Query<AuthorizeParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return message_page(
            &idp,
            StatusCode::BAD_REQUEST,
            "Invalid authorization request",
            "The request's parameters could not be read.",
        );
    };
    // Without a known client and its exact redirect URI nothing may be redirected (§4.1.2.1).
    if params.client_id.as_deref() != Some(idp.client.client_id.as_str())
        || params.redirect_uri.as_deref() != Some(idp.client.redirect_uri.as_str())
    {
        return message_page(
            &idp,
            StatusCode::BAD_REQUEST,
            "Unknown client",
            "The client_id or redirect_uri of this request is not the one registered with the \
             demo identity provider.",
        );
    }
    let state = params.state.as_deref();
    if params.response_type.as_deref() != Some("code") {
        return authorization_error(
            &idp,
            "unsupported_response_type",
            "only response_type=code is supported",
            state,
        );
    }
    let has_openid = params
        .scope
        .as_deref()
        .is_some_and(|scope| scope.split(' ').any(|s| s == "openid"));
    if !has_openid {
        return authorization_error(&idp, "invalid_scope", "the openid scope is required", state);
    }
    let challenge = match (
        params.code_challenge.as_deref(),
        params.code_challenge_method.as_deref(),
    ) {
        (Some(challenge), Some("S256")) if !challenge.is_empty() => challenge.to_owned(),
        _ => {
            return authorization_error(
                &idp,
                "invalid_request",
                "PKCE with code_challenge_method=S256 is required",
                state,
            );
        }
    };
    // There is no session to log in silently with.
    if params.prompt.as_deref() == Some("none") {
        return authorization_error(
            &idp,
            "login_required",
            "the demo identity provider keeps no session",
            state,
        );
    }

    let now = Utc::now();
    let request_ref = random_hex(16);
    idp.with_grants(now, |grants| {
        grants.pending.insert(
            request_ref.clone(),
            PendingAuthorization {
                state: params.state.clone(),
                nonce: params.nonce.clone(),
                code_challenge: challenge,
                expires_at: now + AUTHORIZATION_PAGE_LIFETIME,
            },
        );
    });
    let users: Vec<_> = SAMPLE_USERS
        .iter()
        .map(|u| {
            minijinja::context! {
                login => u.login,
                name => u.name,
                email => u.email,
                email_verified => u.email_verified,
                groups => minijinja::Value::from(minijinja::value::Serde(u.groups)),
                about => u.about,
            }
        })
        .collect();
    page(
        &idp,
        StatusCode::OK,
        minijinja::context! {
            development_only => DEVELOPMENT_ONLY,
            title => "Demo identity provider: choose a user",
            client_id => idp.client.client_id.as_str(),
            request_ref => request_ref,
            users => users,
        },
    )
}

/// The authorization page's form.
#[derive(Debug, Deserialize)]
struct AuthorizeDecision {
    request_ref: String,
    /// The chosen sample user, or absent when `cancel` was pressed.
    user: Option<String>,
    cancel: Option<String>,
}

/// `POST /authorize`: issues a one-time code for the chosen user and redirects to the client
/// with `code`, `state` and `iss`; "cancel" answers `access_denied`.
async fn authorize_decision(
    State(idp): State<Arc<Idp>>,
    form: Result<Form<AuthorizeDecision>, FormRejection>,
) -> Response {
    let now = Utc::now();
    let Ok(Form(decision)) = form else {
        return message_page(
            &idp,
            StatusCode::BAD_REQUEST,
            "Invalid form",
            "The form could not be read.",
        );
    };
    let Some(pending) = idp.with_grants(now, |grants| grants.pending.remove(&decision.request_ref))
    else {
        return message_page(
            &idp,
            StatusCode::BAD_REQUEST,
            "Login page expired",
            "This login page was already used or is too old. Go back to the demo forum and \
             log in again.",
        );
    };
    if decision.cancel.is_some() {
        return authorization_error(
            &idp,
            "access_denied",
            "the user cancelled the login",
            pending.state.as_deref(),
        );
    }
    let Some(user) = decision.user.as_deref().and_then(sample_user) else {
        return message_page(
            &idp,
            StatusCode::BAD_REQUEST,
            "Unknown user",
            "Pick one of the sample users.",
        );
    };
    let code = random_hex(32);
    idp.with_grants(now, |grants| {
        grants.codes.insert(
            code.clone(),
            IssuedCode {
                client_id: idp.client.client_id.clone(),
                redirect_uri: idp.client.redirect_uri.clone(),
                nonce: pending.nonce.clone(),
                code_challenge: pending.code_challenge.clone(),
                user,
                session_id: random_hex(16),
                expires_at: now + CODE_LIFETIME,
            },
        );
    });
    tracing::info!(user = user.login, "demo IdP: issued an authorization code");
    let mut location = match url::Url::parse(&idp.client.redirect_uri) {
        Ok(url) => url,
        Err(_) => {
            return message_page(
                &idp,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Misconfigured client",
                "The registered redirect URI is not a URL.",
            );
        }
    };
    {
        let mut query = location.query_pairs_mut();
        query.append_pair("code", &code);
        if let Some(state) = &pending.state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &idp.issuer);
    }
    found(location.as_str())
}

/// A token request (RFC 6749 §4.1.3, RFC 7636 §4.5), client credentials possibly in the body.
#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Token endpoint errors (RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenError {
    InvalidRequest(&'static str),
    /// Bad or missing client credentials; `basic` when the client tried HTTP Basic.
    InvalidClient {
        basic: bool,
    },
    InvalidGrant(&'static str),
    UnsupportedGrantType,
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let (status, error, description) = match self {
            TokenError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            TokenError::InvalidClient { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            ),
            TokenError::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", d),
            TokenError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only authorization_code is supported",
            ),
        };
        let mut response = (
            status,
            [
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            axum::Json(serde_json::json!({
                "error": error,
                "error_description": description,
            })),
        )
            .into_response();
        if let TokenError::InvalidClient { basic: true } = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"demo-idp\""),
            );
        }
        response
    }
}

/// Undoes the form-encoding RFC 6749 §2.3.1 applies to Basic credentials.
fn form_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("v={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// Client credentials from the `Authorization: Basic` header, if it is present.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), TokenError>> {
    let value = headers.get(header::AUTHORIZATION)?;
    let invalid = TokenError::InvalidClient { basic: true };
    let parsed = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            text.split_once(':')
                .map(|(id, secret)| (form_decode(id), form_decode(secret)))
        });
    Some(parsed.ok_or(invalid))
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Authenticates the client with exactly one method: Basic or the request body.
fn authenticate_client(
    client: &ClientRegistration,
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Result<(), TokenError> {
    let (basic, id, secret) = match basic_credentials(headers) {
        Some(credentials) => {
            if request.client_secret.is_some() {
                return Err(TokenError::InvalidRequest(
                    "use one client authentication method, not two",
                ));
            }
            let (id, secret) = credentials?;
            (true, id, secret)
        }
        None => match (&request.client_id, &request.client_secret) {
            (Some(id), Some(secret)) => (false, id.clone(), secret.clone()),
            _ => return Err(TokenError::InvalidClient { basic: false }),
        },
    };
    let id_ok = constant_time_eq(&id, &client.client_id);
    let secret_ok = constant_time_eq(&secret, client.client_secret.expose_secret());
    if id_ok && secret_ok {
        Ok(())
    } else {
        Err(TokenError::InvalidClient { basic })
    }
}

/// Checks a PKCE S256 verifier against the stored challenge (RFC 7636 §4.1 and §4.6).
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.to_owned()));
    constant_time_eq(computed.as_str(), challenge)
}

/// Redeems `code` as of `now`: it is removed whatever the outcome, so it works at most once.
fn redeem_code(
    idp: &Idp,
    request: &TokenRequest,
    now: DateTime<Utc>,
) -> Result<IssuedCode, TokenError> {
    let code = request
        .code
        .as_deref()
        .ok_or(TokenError::InvalidRequest("code is missing"))?;
    let issued = idp
        .with_grants(now, |grants| grants.codes.remove(code))
        .ok_or(TokenError::InvalidGrant(
            "unknown, expired or already used code",
        ))?;
    if issued.client_id != idp.client.client_id {
        return Err(TokenError::InvalidGrant(
            "code was issued to another client",
        ));
    }
    if request.redirect_uri.as_deref() != Some(issued.redirect_uri.as_str()) {
        return Err(TokenError::InvalidGrant("redirect_uri does not match"));
    }
    let verifier = request
        .code_verifier
        .as_deref()
        .ok_or(TokenError::InvalidGrant("code_verifier is missing"))?;
    if !pkce_matches(verifier, &issued.code_challenge) {
        return Err(TokenError::InvalidGrant("code_verifier does not match"));
    }
    Ok(issued)
}

/// The standard claims of a sample user.
fn standard_claims(user: &SampleUser) -> StandardClaims<CoreGenderClaim> {
    StandardClaims::new(SubjectIdentifier::new(user.subject.to_owned()))
        .set_name(Some(LocalizedClaim::from(EndUserName::new(
            user.name.to_owned(),
        ))))
        .set_preferred_username(Some(EndUserUsername::new(
            user.preferred_username.to_owned(),
        )))
        .set_email(Some(EndUserEmail::new(user.email.to_owned())))
        .set_email_verified(Some(user.email_verified))
}

fn user_groups(user: &SampleUser) -> Vec<String> {
    user.groups.iter().map(|g| (*g).to_owned()).collect()
}

/// Builds and signs the ID token for a redeemed code (Core §2, §3.1.3.6 `at_hash`).
fn id_token(
    idp: &Idp,
    issued: &IssuedCode,
    access_token: &AccessToken,
    now: DateTime<Utc>,
) -> anyhow::Result<DemoIdToken> {
    let issuer = IssuerUrl::new(idp.issuer.clone())?;
    let claims = IdTokenClaims::new(
        issuer,
        vec![Audience::new(issued.client_id.clone())],
        now + TOKEN_LIFETIME,
        now,
        standard_claims(issued.user),
        DemoClaims {
            groups: user_groups(issued.user),
            sid: Some(issued.session_id.clone()),
        },
    )
    .set_nonce(issued.nonce.clone().map(Nonce::new))
    .set_auth_time(Some(now));
    let token = DemoIdToken::new(
        claims,
        &idp.signing_key.key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Some(access_token),
        None,
    )?;
    Ok(token)
}

/// `POST /token`: authenticates the client, redeems the code once and answers with an ID token
/// and an access token for userinfo.
async fn token(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let Ok(Form(request)) = form else {
        return TokenError::InvalidRequest("expected an application/x-www-form-urlencoded body")
            .into_response();
    };
    if let Err(e) = authenticate_client(&idp.client, &headers, &request) {
        return e.into_response();
    }
    if request.grant_type.as_deref() != Some("authorization_code") {
        return TokenError::UnsupportedGrantType.into_response();
    }
    let now = Utc::now();
    let issued = match redeem_code(&idp, &request, now) {
        Ok(issued) => issued,
        Err(e) => {
            tracing::warn!(error = ?e, "demo IdP: token request refused");
            return e.into_response();
        }
    };
    let access_token = AccessToken::new(random_hex(32));
    let id_token = match id_token(&idp, &issued, &access_token, now) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "demo IdP: signing the ID token failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed\n").into_response();
        }
    };
    idp.with_grants(now, |grants| {
        grants.access_tokens.insert(
            access_token.secret().clone(),
            AccessGrant {
                user: issued.user,
                expires_at: now + TOKEN_LIFETIME,
            },
        );
    });
    tracing::info!(user = issued.user.login, "demo IdP: issued tokens");
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        axum::Json(serde_json::json!({
            "access_token": access_token.secret(),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME.num_seconds(),
            "id_token": id_token.to_string(),
            "scope": "openid email profile groups",
        })),
    )
        .into_response()
}

/// `GET /userinfo` with a Bearer access token (Core §5.3, RFC 6750 §3 for errors).
async fn userinfo(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let now = Utc::now();
    let grant = token
        .and_then(|token| idp.with_grants(now, |grants| grants.access_tokens.get(token).cloned()));
    let Some(grant) = grant else {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            )],
        )
            .into_response();
    };
    let claims: UserInfoClaims<DemoClaims, CoreGenderClaim> = UserInfoClaims::new(
        standard_claims(grant.user),
        DemoClaims {
            groups: user_groups(grant.user),
            sid: None,
        },
    );
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(claims),
    )
        .into_response()
}

/// The query of an RP-initiated logout request (RP-Initiated Logout 1.0 §2).
#[derive(Debug, Deserialize)]
struct EndSessionParams {
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// `GET /end_session`: the demo IdP keeps no session, so there is nothing to end; it only sends
/// the browser back to the registered post-logout URI (with `state`), or shows a page.
async fn end_session(
    State(idp): State<Arc<Idp>>,
    params: Result<Query<EndSessionParams>, QueryRejection>,
) -> Response {
    let params = params.ok().map(|Query(p)| p);
    let registered = &idp.client.post_logout_redirect_uri;
    let back_to = params
        .as_ref()
        .and_then(|p| p.post_logout_redirect_uri.as_deref())
        .filter(|uri| *uri == registered.as_str());
    match (back_to, url::Url::parse(registered)) {
        (Some(_), Ok(mut location)) => {
            if let Some(state) = params.as_ref().and_then(|p| p.state.as_deref()) {
                location.query_pairs_mut().append_pair("state", state);
            }
            found(location.as_str())
        }
        _ => message_page(
            &idp,
            StatusCode::OK,
            "Signed out",
            "You are signed out of the demo identity provider (it keeps no session anyway).",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_verifier_must_hash_to_the_challenge() {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        assert!(pkce_matches(verifier.secret(), challenge.as_str()));
        let (_, other) = PkceCodeChallenge::new_random_sha256();
        assert!(!pkce_matches(other.secret(), challenge.as_str()));
        assert!(!pkce_matches("short", challenge.as_str()));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let encoded = STANDARD.encode("my%20client:s%3Acret");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        let (id, secret) = basic_credentials(&headers).unwrap().unwrap();
        assert_eq!(id, "my client");
        assert_eq!(secret, "s:cret");
    }

    #[test]
    fn sample_users_cover_the_interesting_cases() {
        assert!(SAMPLE_USERS.iter().any(|u| !u.email_verified));
        assert!(SAMPLE_USERS.iter().any(|u| u.groups.is_empty()));
        assert!(
            SAMPLE_USERS
                .iter()
                .any(|u| u.groups.contains(&"forum-admins"))
        );
        let logins: std::collections::HashSet<_> = SAMPLE_USERS.iter().map(|u| u.login).collect();
        assert_eq!(logins.len(), SAMPLE_USERS.len());
    }
}
