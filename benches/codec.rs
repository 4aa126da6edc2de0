//! Criterion benchmarks of the CPU-only work of a login, without any I/O: the DiscourseConnect
//! codec (verify Discourse's request, sign and encode the answer, decode an answer), RS256
//! ID-token validation (OpenID Connect Core §3.1.3.7) and its signature check alone, with ring
//! (what the bridge uses) and with the `rsa` crate (what openidconnect uses), claim mapping with
//! the Keycloak example config, the authorization request (state, nonce, PKCE, URL) beside
//! openidconnect's builder, and sealing/opening the login cookie (tower-cookies private jar).
//!
//! Times are the benchmark thread's own CPU time (see `support/cpu_time.rs`), not wall time:
//! the machines these run on are shared, and CPU time is what the bridge pays per login.
//!
//! Run with `cargo bench --bench codec`; figures and their reading are in docs/benchmarks.md.

// Benchmark set-up fails loudly on purpose: a half-built fixture would measure nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/cpu_time.rs"]
mod cpu_time;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main};
use discourse_oidc_bridge::discourse::connect::{
    ConnectSecret, Field, Payload, SignedPayload, SsoRequest,
};
use discourse_oidc_bridge::http::cookies::BridgeCookies;
use discourse_oidc_bridge::login::LoginInFlight;
use discourse_oidc_bridge::mapping::{AccessConfig, GroupsConfig, Mapper, MappingConfig};
use discourse_oidc_bridge::oidc::authorization::AuthorizationEndpoint;
use discourse_oidc_bridge::oidc::id_token::{self, IdTokenRules};
use discourse_oidc_bridge::oidc::jwk::key_set_from_core;
use figment::Figment;
use figment::providers::{Format, Toml};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdToken, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{
    AdditionalClaims, AuthUrl, ClientId, ClientSecret, CsrfToken, IdToken, IdTokenClaims,
    IssuerUrl, JsonWebKey, JsonWebKeyId, Nonce, PkceCodeChallenge, PrivateSigningKey, RedirectUrl,
    Scope,
};
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use tower_cookies::{Cookie, Cookies};

use cpu_time::{CpuCriterion, cpu_criterion, cpu_group};

const CONNECT_SECRET: &str = "discourse-connect-secret-for-benchmarks";
const RETURN_SSO_URL: &str = "https://forum.example.com/session/sso_login";
/// Discourse's nonce is `SecureRandom.hex` (32 hex characters).
const DISCOURSE_NONCE: &str = "cb68251eefb5211e58c00ff1395f0c0b";
const ISSUER: &str = "https://sso.example.com/realms/acme";
const CLIENT_ID: &str = "discourse";
const OIDC_NONCE: &str = "Wq9T3xY0bS5vJ2mN8kL1cA";

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The Keycloak fixture: a realistic claim set (nested roles, group paths, accents).
fn keycloak_claims() -> Map<String, Value> {
    let text = std::fs::read_to_string(manifest_path(
        "tests/fixtures/claims/keycloak/member.claims.json",
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// What Discourse sends when a login starts, as the raw query of `GET /sso`.
fn discourse_request_query(secret: &ConnectSecret) -> String {
    SsoRequest {
        nonce: DISCOURSE_NONCE.to_owned(),
        return_sso_url: RETURN_SSO_URL.to_owned(),
    }
    .sign(secret)
    .query_string()
}

/// A realistic answer: ten fields (five groups among them) and two custom fields.
fn realistic_answer() -> Payload {
    let mut payload = Payload::new();
    payload
        .set(Field::Nonce, DISCOURSE_NONCE)
        .set(Field::ExternalId, "f4c3b2a1-0d9e-4c8b-a7f6-5e4d3c2b1a09")
        .set(Field::Email, "maria.garcia@example.com")
        .set(Field::Username, "maria.garcia")
        .set(Field::Name, "María García")
        .set(
            Field::AvatarUrl,
            "https://sso.example.com/avatars/f4c3b2a1.png?size=240",
        )
        .set_groups(
            Field::Groups,
            &[
                "all_staff",
                "engineering",
                "backend_devs",
                "team_platform",
                "members",
            ],
        )
        .set_bool(Field::Admin, true)
        .set_bool(Field::Moderator, false)
        .set(Field::Locale, "es")
        .set_custom("department", "Platform Engineering")
        .set_custom("employee_number", "004217");
    payload
}

fn bench_connect(c: &mut CpuCriterion) {
    let secret = ConnectSecret::new(CONNECT_SECRET);
    let mut group = cpu_group(c, "connect");

    let request = discourse_request_query(&secret);
    assert!(SsoRequest::verify(&request, &secret).is_ok());
    group.bench_function("verify_discourse_request", |b| {
        b.iter(|| SsoRequest::verify(black_box(&request), &secret))
    });

    let answer = realistic_answer();
    group.bench_function("sign_answer_and_redirect_url", |b| {
        b.iter(|| {
            black_box(&answer)
                .sign(&secret)
                .redirect_url(black_box(RETURN_SSO_URL))
        })
    });

    let SignedPayload { sso, sig } = answer.sign(&secret);
    assert_eq!(Payload::decode(&sso, &sig, &secret).unwrap(), answer);
    group.bench_function("decode_answer", |b| {
        b.iter(|| Payload::decode(black_box(&sso), black_box(&sig), &secret))
    });
    group.finish();
}

/// The claims beyond the standard ones that a Keycloak ID token carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeycloakClaims {
    typ: String,
    sid: String,
    groups: Vec<String>,
    realm_access: Value,
    resource_access: Value,
}
impl AdditionalClaims for KeycloakClaims {}

type KeycloakIdToken = IdToken<
    KeycloakClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// A fresh RSA-2048 key as openidconnect's signing key, with its public half.
fn new_rsa_signing_key(kid: &str) -> (CoreRsaPrivateSigningKey, RsaPublicKey) {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = key.to_pkcs1_pem(LineEnding::LF).unwrap();
    let signing =
        CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.to_owned()))).unwrap();
    (signing, key.to_public_key())
}

/// A Keycloak-like RS256 ID token issued at `now`, and the IdP's key set: the signing key and
/// the previous one (IdPs keep the old key published for a while after a rotation).
fn rs256_id_token(now: DateTime<Utc>) -> (CoreIdToken, CoreJsonWebKeySet, RsaPublicKey) {
    let (signing, public) = new_rsa_signing_key("acme-2025-06");
    let (previous, _) = new_rsa_signing_key("acme-2025-01");
    let mut claims = keycloak_claims();
    claims.insert("iss".into(), json!(ISSUER));
    claims.insert("aud".into(), json!(CLIENT_ID));
    claims.insert("azp".into(), json!(CLIENT_ID));
    claims.insert("nonce".into(), json!(OIDC_NONCE));
    claims.insert("iat".into(), json!(now.timestamp()));
    claims.insert("auth_time".into(), json!(now.timestamp() - 10));
    claims.insert("exp".into(), json!(now.timestamp() + 300));
    let claims: IdTokenClaims<KeycloakClaims, CoreGenderClaim> =
        serde_json::from_value(Value::Object(claims)).unwrap();
    let token = KeycloakIdToken::new(
        claims,
        &signing,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .unwrap();
    // The bridge reads every ID token as a `CoreIdToken` and takes extra claims from the JSON.
    let token: CoreIdToken = token.to_string().parse().unwrap();
    let keys = CoreJsonWebKeySet::new(vec![
        previous.as_verification_key(),
        signing.as_verification_key(),
    ]);
    (token, keys, public)
}

fn bench_id_token(c: &mut CpuCriterion) {
    let now = Utc::now();
    let (token, core_keys, public) = rs256_id_token(now);
    // As the bridge holds them: keys that verify with ring.
    let keys = key_set_from_core(&core_keys);
    let rules = IdTokenRules {
        issuer: IssuerUrl::new(ISSUER.to_owned()).unwrap(),
        client_id: ClientId::new(CLIENT_ID.to_owned()),
        client_secret: Some(ClientSecret::new("client-secret-for-benchmarks".to_owned())),
        allowed_algs: vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        clock_skew: Duration::from_secs(60),
    };
    let nonce = Nonce::new(OIDC_NONCE.to_owned());
    let verified = id_token::validate(&token, &keys, &rules, &nonce, now).unwrap();
    assert_eq!(verified.subject, "f4c3b2a1-0d9e-4c8b-a7f6-5e4d3c2b1a09");
    assert!(verified.claims.contains_key("realm_access"));

    let mut group = cpu_group(c, "oidc");
    group.bench_function("validate_rs256_id_token", |b| {
        b.iter(|| id_token::validate(black_box(&token), &keys, &rules, &nonce, now))
    });

    // The floor under the above: the RS256 signature check alone (SHA-256 of the signing input,
    // then the RSA public-key operation), as the bridge does it: ring, through the JWKS key.
    let compact = token.to_string();
    let (signing_input, signature) = compact.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
    let signing_key = &keys.keys()[1];
    assert!(signing_key.verifies_with_ring(&rs256));
    assert!(
        signing_key
            .verify_signature(&rs256, signing_input.as_bytes(), &signature)
            .is_ok()
    );
    group.bench_function("rs256_signature_check_ring", |b| {
        b.iter(|| {
            signing_key.verify_signature(&rs256, black_box(signing_input).as_bytes(), &signature)
        })
    });

    // The in-run baseline: the same check with the `rsa` crate, as openidconnect does it, with
    // the key already parsed.
    group.bench_function("rs256_signature_check_rsa_crate", |b| {
        b.iter(|| {
            let digest = Sha256::digest(black_box(signing_input).as_bytes());
            public.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
        })
    });
    group.finish();
}

/// The authorization request of `GET /sso`: fresh state, nonce and PKCE S256, and the URL with
/// the scopes and an extra parameter, as the bridge builds it and as openidconnect's builder did.
fn bench_authorization_request(c: &mut CpuCriterion) {
    const AUTH_URL: &str = "https://sso.example.com/realms/acme/protocol/openid-connect/auth";
    const REDIRECT: &str = "https://bridge.example.com/callback";
    let scopes = ["openid", "email", "profile", "groups"].map(str::to_owned);
    let endpoint = AuthorizationEndpoint::new(
        &url::Url::parse(AUTH_URL).unwrap(),
        CLIENT_ID,
        &url::Url::parse(REDIRECT).unwrap(),
        &scopes,
        [("prompt", "login")],
    );
    let client = CoreClient::new(
        ClientId::new(CLIENT_ID.to_owned()),
        IssuerUrl::new(ISSUER.to_owned()).unwrap(),
        CoreJsonWebKeySet::new(Vec::new()),
    )
    .set_auth_uri(AuthUrl::new(AUTH_URL.to_owned()).unwrap())
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap());
    let builder_request = || {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.add_extra_param("prompt", "login").url();
        (url, state, nonce, verifier)
    };
    assert_eq!(
        endpoint.request().url.query_pairs().count(),
        builder_request().0.query_pairs().count()
    );

    let mut group = cpu_group(c, "oidc");
    group.bench_function("authorization_request", |b| b.iter(|| endpoint.request()));
    group.bench_function("authorization_request_openidconnect_builder", |b| {
        b.iter(builder_request)
    });
    group.finish();
}

#[derive(Deserialize)]
struct MappingSections {
    #[serde(default)]
    mapping: MappingConfig,
    #[serde(default)]
    groups: GroupsConfig,
    #[serde(default)]
    access: AccessConfig,
}

fn bench_mapping(c: &mut CpuCriterion) {
    let sections: MappingSections = Figment::from(Toml::file(manifest_path(
        "tests/fixtures/claims/keycloak/config.toml",
    )))
    .extract()
    .unwrap();
    let mapper = Mapper::compile(&sections.mapping, &sections.groups, &sections.access).unwrap();
    let claims = keycloak_claims();
    assert!(mapper.map(&claims).is_ok());

    let mut group = cpu_group(c, "mapping");
    group.bench_function("map_keycloak_member", |b| {
        b.iter(|| mapper.map(black_box(&claims)))
    });
    group.finish();
}

fn bench_login_cookie(c: &mut CpuCriterion) {
    let jar = BridgeCookies::new(
        &SecretString::from("session-secret-for-benchmarks-0123456789abcdef"),
        true,
        Duration::from_secs(600),
        "",
    )
    .unwrap();
    // Sizes as the bridge makes them: 16 random bytes in base64url for state and nonce, a
    // 32-byte PKCE verifier.
    let login = LoginInFlight {
        discourse_nonce: DISCOURSE_NONCE.to_owned(),
        return_sso_url: RETURN_SSO_URL.to_owned(),
        state: "h7Gq2LxV9pRk0sWm3NbE4A".to_owned(),
        oidc_nonce: OIDC_NONCE.to_owned(),
        pkce_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned(),
        created_at: Utc::now().timestamp(),
    };
    let name = BridgeCookies::login_cookie_name(&login.state);

    let mut group = cpu_group(c, "login_cookie");
    group.bench_function("seal", |b| {
        b.iter(|| {
            let cookies = Cookies::default();
            jar.store_login(&cookies, black_box(&login));
            cookies.get(&name).map(|c| c.value().len())
        })
    });

    let sealed = {
        let cookies = Cookies::default();
        jar.store_login(&cookies, &login);
        cookies.get(&name).unwrap().value().to_owned()
    };
    let opened = {
        let cookies = Cookies::default();
        cookies.add(Cookie::new(name.clone(), sealed.clone()));
        jar.take_login(&cookies, &login.state)
    };
    assert_eq!(opened.as_ref(), Some(&login));
    group.bench_function("open", |b| {
        b.iter(|| {
            let cookies = Cookies::default();
            cookies.add(Cookie::new(name.clone(), black_box(&sealed).clone()));
            jar.take_login(&cookies, &login.state)
        })
    });
    group.finish();
}

criterion_group!(
    name = benches;
    config = cpu_criterion();
    targets = bench_connect, bench_id_token, bench_authorization_request, bench_mapping, bench_login_cookie
);
criterion_main!(benches);
