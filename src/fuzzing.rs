//! Property checks for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer) and for the stable
//! replay test `tests/fuzz_replay.rs`, which runs every committed corpus file and every past
//! crash input through the same functions. Not part of the bridge's API.
//!
//! Each function takes the raw bytes libFuzzer produces, never panics on its own account, and
//! asserts properties rather than mere survival: a token accepted was signed by the key the test
//! IdP holds (checked independently with ring) in an algorithm the policy allows; an accepted
//! DiscourseConnect request round-trips through signing and verification; a mapped payload
//! reaches Discourse unchanged. A failed assertion is a finding, exactly like a panic inside the
//! code under test. `docs/security.md` describes the targets, their input layouts and the
//! campaign figures.
#![allow(clippy::panic)]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use openidconnect::core::{CoreIdToken, CoreJwsSigningAlgorithm};
use openidconnect::{ClientId, ClientSecret, IssuerUrl, Nonce};
use ring::signature::{self as ring_sig, KeyPair as _};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use crate::discourse::connect::{
    ConnectError, ConnectSecret, MAX_SSO_LEN, Payload, SignedPayload, SsoRequest, is_canonical_url,
};
use crate::mapping::{AccessConfig, GroupsConfig, Mapper, MappingConfig};
use crate::oidc::jwk::VerifyingKeySet;
use crate::oidc::{id_token, logout_token};
use crate::scim;
use crate::scim::schema::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, Resource, USER_SCHEMA};

/// The DiscourseConnect secret of the fuzzed codec.
const CONNECT_SECRET: &str = "fuzzing discourse connect secret";
/// The client secret HS* tokens are MACed with when the policy allows them.
pub const CLIENT_SECRET: &str = "fuzzing client secret, long enough";
/// The issuer of every fuzzed token.
pub const ISSUER: &str = "https://idp.fuzz.example";
/// The client id every fuzzed token must name.
pub const CLIENT_ID: &str = "bridge";
/// The nonce the fuzzed ID token must carry.
pub const NONCE: &str = "fuzz-nonce";
/// "Now" for every fuzzed validation (2023-11-14T22:13:20Z).
pub const NOW: i64 = 1_700_000_000;
/// Seed of the Ed25519 key the fuzzing IdP signs with (test material, no secret).
const ED25519_SEED: [u8; 32] = [7; 32];
/// Public halves of keys whose private halves nobody has: a token verifying under them would
/// be a forgery.
const RSA_N: &str = "nv-d7lX5SEQK-8bYsOXbhrPe28vvCWS6Em_7n8VgvjqMH08uShfpWotRSelVXoRfiGBQYJfCFtoARB9rgAH9ARIG02ChpYppi5FrCo_6G1UEnyHQIZmYa0maS5XN44icdAtMnZgRJRyPFNg5dAQvTWRtcbgpuiHhf7vYS7kJnpf_Q5aowp7c6EEYs_A2DJUEubJEbXEjQWB1MMIOF63edlzVxLjf-56TI6GiGyfe4_cdF8xVqKAHCjpV1ixHdQdZcm03AqNjltEIVTAGB6mkMarH4XiD-3eIMLQ2waG2TDcF0-43QVJc0Fafs9dyvQe5xMl2VBhgb3f1AS6V-OyNXw";
const P256_X: &str = "2ksiKVnkt4IxqHSdpYIBgkHp4MR3Wygf-1DZTUbxmLg";
const P256_Y: &str = "XByocHBUfTGvMFKAQBdq8wSaLhU3OpoRRkMvXjrDvRk";

/// How a token input is laid out: a flags byte, then `header JSON \0 payload JSON \0 signature`.
///
/// Flags: bit 0 signs the input with the IdP's Ed25519 key, bit 1 MACs it (HS256) with the
/// client secret, bit 2 adds HS256 to the accepted algorithms, bit 3 takes everything after the
/// flags byte as the token text instead. Without bits 0 and 1 the signature bytes are used as
/// given.
#[derive(Debug)]
pub struct TokenInput {
    /// The compact JWS text handed to the validator.
    pub token: String,
    /// Whether the policy allows HS256 (with the client secret).
    pub allow_hs256: bool,
}

impl TokenInput {
    /// Builds the token text from fuzzer bytes (see the type's documentation).
    pub fn from_bytes(data: &[u8]) -> Option<TokenInput> {
        let (&flags, rest) = data.split_first()?;
        let allow_hs256 = flags & 4 != 0;
        if flags & 8 != 0 {
            return Some(TokenInput {
                token: String::from_utf8_lossy(rest).into_owned(),
                allow_hs256,
            });
        }
        let mut parts = rest.splitn(3, |b| *b == 0);
        let header = parts.next().unwrap_or_default();
        let payload = parts.next().unwrap_or_default();
        let signature = parts.next().unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = if flags & 1 != 0 {
            fixture()
                .ed25519
                .sign(signing_input.as_bytes())
                .as_ref()
                .to_vec()
        } else if flags & 2 != 0 {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, CLIENT_SECRET.as_bytes());
            ring::hmac::sign(&key, signing_input.as_bytes())
                .as_ref()
                .to_vec()
        } else {
            signature.to_vec()
        };
        Some(TokenInput {
            token: format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)),
            allow_hs256,
        })
    }

    /// The accepted algorithms for this input: the default asymmetric policy as the IdP
    /// advertises it, plus HS256 when bit 2 asked for it.
    pub fn allowed_algs(&self) -> Vec<CoreJwsSigningAlgorithm> {
        let mut configured: Vec<CoreJwsSigningAlgorithm> = crate::config::DEFAULT_SIGNING_ALGS
            .iter()
            .filter_map(|name| serde_json::from_value(json!(name)).ok())
            .collect();
        if self.allow_hs256 {
            configured.push(CoreJwsSigningAlgorithm::HmacSha256);
        }
        // The fuzzing IdP advertises everything, `none` and HS* included, as some do.
        let advertised = [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
            "EdDSA", "HS256", "HS384", "HS512", "none",
        ]
        .iter()
        .filter_map(|name| serde_json::from_value(json!(name)).ok())
        .collect::<Vec<_>>();
        id_token::acceptable_algs(&advertised, &configured)
    }
}

struct Fixture {
    ed25519: ring_sig::Ed25519KeyPair,
    keys: VerifyingKeySet,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let Ok(ed25519) = ring_sig::Ed25519KeyPair::from_seed_unchecked(&ED25519_SEED) else {
            panic!("a 32-byte seed is an Ed25519 key");
        };
        let x = URL_SAFE_NO_PAD.encode(ed25519.public_key().as_ref());
        let document = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed", "use": "sig"},
            {"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "rsa", "alg": "RS256"},
            {"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "kid": "ec"},
        ]});
        let Ok(keys) = serde_json::from_value(document) else {
            panic!("the fuzzing key set is a JWKS");
        };
        Fixture { ed25519, keys }
    })
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap_or_default()
}

/// Splits a compact JWS and decodes its header; `None` when it is not three parts.
fn jws_parts(token: &str) -> Option<(Map<String, Value>, String, Vec<u8>)> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header_bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let header: Map<String, Value> = serde_json::from_slice(&header_bytes).ok()?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    Some((
        header,
        format!("{}.{payload}", token.split('.').next()?),
        signature,
    ))
}

/// The property every accepted token must have: its `alg` is allowed, and the fuzzing IdP's
/// Ed25519 key (or, for HS256 when allowed, the client secret) really signed it, as ring
/// verifies it independently of the code under test.
fn assert_signed_by_the_idp(token: &str, allowed: &[CoreJwsSigningAlgorithm]) {
    let Some((header, signing_input, signature)) = jws_parts(token) else {
        panic!("accepted a token that is not a compact JWS: {token:?}");
    };
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let parsed: Option<CoreJwsSigningAlgorithm> = serde_json::from_value(json!(alg)).ok();
    assert!(
        parsed.as_ref().is_some_and(|alg| allowed.contains(alg)),
        "accepted alg {alg:?} outside {allowed:?}"
    );
    let verified = match alg {
        "EdDSA" => ring_sig::UnparsedPublicKey::new(
            &ring_sig::ED25519,
            fixture().ed25519.public_key().as_ref(),
        )
        .verify(signing_input.as_bytes(), &signature)
        .is_ok(),
        "HS256" => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, CLIENT_SECRET.as_bytes());
            ring::hmac::verify(&key, signing_input.as_bytes(), &signature).is_ok()
        }
        // Nobody holds the RSA or P-256 private key: acceptance would be a forgery.
        _ => false,
    };
    assert!(verified, "accepted a token the IdP did not sign: {token:?}");
}

/// Fuzz target `id_token`: OpenID Connect Core §3.1.3.7 validation of arbitrary ID tokens
/// (input layout: [`TokenInput`]). Returns whether the token was accepted.
pub fn id_token(data: &[u8]) -> bool {
    let Some(input) = TokenInput::from_bytes(data) else {
        return false;
    };
    let allowed = input.allowed_algs();
    let rules = id_token::IdTokenRules {
        issuer: IssuerUrl::new(ISSUER.to_owned()).unwrap_or_else(|_| panic!("issuer")),
        client_id: ClientId::new(CLIENT_ID.to_owned()),
        client_secret: Some(ClientSecret::new(CLIENT_SECRET.to_owned())),
        allowed_algs: allowed.clone(),
        clock_skew: std::time::Duration::from_secs(60),
    };
    let Ok(token) = input.token.parse::<CoreIdToken>() else {
        return false;
    };
    let nonce = Nonce::new(NONCE.to_owned());
    let Ok(verified) = id_token::validate(&token, &fixture().keys, &rules, &nonce, now()) else {
        return false;
    };
    assert_signed_by_the_idp(&input.token, &allowed);
    assert_eq!(verified.claims.get("iss"), Some(&json!(ISSUER)));
    assert_eq!(verified.claims.get("nonce"), Some(&json!(NONCE)));
    assert!(!verified.subject.is_empty(), "accepted an empty sub");
    true
}

/// Fuzz target `logout_token`: Back-Channel Logout §2.6 validation of arbitrary logout tokens
/// (input layout: [`TokenInput`]). Returns whether the token was accepted.
pub fn logout_token(data: &[u8]) -> bool {
    let Some(input) = TokenInput::from_bytes(data) else {
        return false;
    };
    let allowed = input.allowed_algs();
    let rules = logout_token::LogoutTokenRules {
        issuer: ISSUER.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        allowed_algs: allowed.clone(),
        client_secret: Some(SecretString::from(CLIENT_SECRET)),
        strict_typ: false,
        allow_missing_exp: data.len().is_multiple_of(2),
        max_token_age: std::time::Duration::from_secs(300),
        clock_skew: std::time::Duration::from_secs(60),
    };
    let Ok(token) = logout_token::validate(&input.token, &fixture().keys, &rules, now()) else {
        return false;
    };
    assert_signed_by_the_idp(&input.token, &allowed);
    assert_eq!(token.iss, ISSUER);
    assert!(!token.jti.is_empty());
    assert!(token.sub.is_some() || token.sid.is_some());
    assert!(token.replay_horizon(&rules) > now() - chrono::Duration::seconds(60));
    true
}

/// Fuzz target `connect`: the DiscourseConnect codec. The input is tried as the raw query of
/// `GET /sso`, as a signed inner payload, and as a payload to encode and decode again. Returns
/// whether a login request was accepted in either form.
pub fn connect(data: &[u8]) -> bool {
    let secret = ConnectSecret::new(CONNECT_SECRET);
    let text = String::from_utf8_lossy(data);

    let mut accepted = false;
    // As an attacker sends it: accepted only with the secret's own signature.
    if let Ok(request) = SsoRequest::verify(&text, &secret) {
        let other = ConnectSecret::new("another secret");
        assert!(
            SsoRequest::verify(&text, &other).is_err(),
            "signature ignored"
        );
        assert_request_round_trips(&request, &secret);
        accepted = true;
    }

    // As Discourse would sign it: reaches Base64, UTF-8 and field parsing.
    let signed = SignedPayload::from_query(&text, &secret);
    if let Ok(request) = SsoRequest::verify(&signed.query_string(), &secret) {
        assert_request_round_trips(&request, &secret);
        accepted = true;
    }
    let _ = Payload::decode(&text, &signed.sig, &secret);

    // Parsing is the inverse of encoding, and signing then decoding changes nothing.
    if let Ok(payload) = Payload::from_query(&text) {
        assert_payload_round_trips(&payload, &secret);
    }
    accepted
}

fn assert_request_round_trips(request: &SsoRequest, secret: &ConnectSecret) {
    assert!(!request.nonce.is_empty());
    assert!(is_canonical_url(&request.return_sso_url));
    let again = SsoRequest::verify(&request.sign(secret).query_string(), secret);
    assert_eq!(again.as_ref(), Ok(request), "request does not round-trip");
}

fn assert_payload_round_trips(payload: &Payload, secret: &ConnectSecret) {
    let reparsed = Payload::from_query(&payload.encode_query());
    assert_eq!(
        reparsed.as_ref(),
        Ok(payload),
        "payload does not round-trip"
    );
    let signed = payload.sign(secret);
    let decoded = Payload::decode(&signed.sso, &signed.sig, secret);
    if payload.encode_query().is_empty() {
        // Nothing to say encodes to an empty `sso`, which no receiver takes.
        assert_eq!(decoded, Err(ConnectError::EmptyPayload));
        return;
    }
    if signed.sso.len() > MAX_SSO_LEN {
        // The receiving side's size limit (the bridge's own, `MAX_SSO_LEN`) refuses it before
        // the signature is even checked; the limit is on what is received, not what is built.
        assert_eq!(
            decoded,
            Err(ConnectError::PayloadTooLong {
                len: signed.sso.len()
            })
        );
        return;
    }
    assert_eq!(
        decoded.as_ref(),
        Ok(payload),
        "signed payload does not decode"
    );
    let url = signed.redirect_url("https://forum.example/session/sso_login");
    assert!(url.starts_with("https://forum.example/session/sso_login?sso="));
}

/// Fuzz target `mapping`: the claim mapping over arbitrary JSON. The input is a JSON object
/// `{"mapping": …, "groups": …, "access": …, "claims": …}`; a missing section takes its
/// default. Any configuration that compiles must map any claims without panicking, the same
/// way twice, and an allowed login's payload must reach Discourse unchanged. Returns whether
/// the login was allowed.
pub fn mapping(data: &[u8]) -> bool {
    let Ok(Value::Object(mut input)) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    let mut section = |name: &str| input.remove(name).unwrap_or_else(|| json!({}));
    let (mapping, groups, access) = (section("mapping"), section("groups"), section("access"));
    let claims = match section("claims") {
        Value::Object(claims) => claims,
        _ => return false,
    };
    let (Ok(mapping), Ok(groups), Ok(access)) = (
        serde_json::from_value::<MappingConfig>(mapping),
        serde_json::from_value::<GroupsConfig>(groups),
        serde_json::from_value::<AccessConfig>(access),
    ) else {
        return false;
    };
    let Ok(mapper) = Mapper::compile(&mapping, &groups, &access) else {
        return false;
    };
    let _ = mapper.first_absent_claim(&claims);
    let outcome = mapper.map(&claims);
    assert_eq!(outcome, mapper.map(&claims), "mapping is not deterministic");
    if let Ok(mapped) = &outcome {
        let secret = ConnectSecret::new(CONNECT_SECRET);
        let external_id = mapped
            .payload
            .get(crate::discourse::connect::Field::ExternalId);
        assert!(
            external_id.is_some_and(|id| !id.is_empty()),
            "allowed without an external_id"
        );
        assert_payload_round_trips(&mapped.payload, &secret);
    }
    outcome.is_ok()
}

/// Fuzz target `config`: the configuration loader over arbitrary TOML text (no environment).
/// A configuration that loads must satisfy the invariants the rest of the bridge relies on,
/// and `check`'s report and warnings must render. Returns whether the configuration loaded.
pub fn config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let result = crate::config::load_from_str(text, std::iter::empty());
    let (_report, ok) = crate::config::check_report(&result);
    assert_eq!(ok, result.is_ok());
    match result {
        Ok(config) => {
            assert!(config.oidc.scopes.iter().any(|s| s == "openid"));
            assert!(!config.oidc.signing_algs.is_empty());
            assert!(
                !config
                    .oidc
                    .signing_algs
                    .contains(&CoreJwsSigningAlgorithm::None)
            );
            assert!(config.session.login_timeout <= crate::config::MAX_LOGIN_TIMEOUT);
            let _ = config.warnings();
            let _ = (config.callback_url(), config.post_logout_url());
            true
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without a reason");
            false
        }
    }
}

/// The resources a fuzzed SCIM filter or PATCH is tried on: a User as Entra ID and Okta send
/// one (with the enterprise extension) and a Group with members.
fn scim_fixtures() -> [(Resource, Map<String, Value>); 2] {
    let user = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "userName": "Alice@Example.com",
        "externalId": "00u1",
        "active": true,
        "displayName": "Alice Smith",
        "name": {"givenName": "Alice", "familyName": "Smith"},
        "emails": [
            {"value": "alice@example.com", "type": "work", "primary": true},
            {"value": "a@home.example", "type": "home"}
        ],
        ENTERPRISE_SCHEMA: {"department": "R&D", "manager": {"value": "00u2"}}
    });
    let group = json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": "Engineering",
        "externalId": "g1",
        "members": [{"value": "u1"}, {"value": "u2", "display": "Bob"}]
    });
    [(Resource::User, user), (Resource::Group, group)].map(|(resource, body)| {
        let canonical = scim::schema::canonical_resource(resource, &body)
            .unwrap_or_else(|e| panic!("the {resource:?} fixture is refused: {e:?}"));
        (resource, canonical)
    })
}

/// Fuzz target `scim`: the SCIM parsers (RFC 7644 §3.4.2.2 filters, §3.5.2 PATCH paths and
/// messages) and the schema's canonical form. The input is tried as a `filter` query value, as
/// a PATCH `path`, and (when it is JSON) as a PATCH body for a User and a Group and as a full
/// resource body. A filter that parses evaluates the same way twice and `not (…)` negates it;
/// a PATCH that applies leaves a resource whose canonical form is a fixed point, exactly what
/// the service stores. Returns whether a filter parsed or a PATCH applied.
pub fn scim(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let fixtures = scim_fixtures();
    let mut accepted = false;

    if let Ok(filter) = scim::filter::parse_filter(&text) {
        accepted = true;
        for (_, resource) in &fixtures {
            let resource = Value::Object(resource.clone());
            let verdict = scim::filter::matches(&filter, &resource);
            assert_eq!(verdict, scim::filter::matches(&filter, &resource));
            if let Ok(negated) = scim::filter::parse_filter(&format!("not ({text})")) {
                assert_eq!(
                    scim::filter::matches(&negated, &resource),
                    !verdict,
                    "not (…) does not negate the filter"
                );
            }
        }
    }
    if let Ok(path) = scim::filter::parse_path(&text)
        && let Some(filter) = &path.filter
    {
        let (_, user) = &fixtures[0];
        for email in user
            .get("emails")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let _ = scim::filter::matches_element(filter, email, "emails");
        }
    }

    let Ok(body) = serde_json::from_str::<Value>(&text) else {
        return accepted;
    };
    for (resource, before) in fixtures {
        if let Ok(canonical) = scim::schema::canonical_resource(resource, &body) {
            assert_canonical_is_fixed_point(resource, &canonical);
        }
        let Ok(operations) = scim::patch::parse_request(resource, &body) else {
            continue;
        };
        let mut after = before.clone();
        if scim::patch::apply(resource, &mut after, &operations).is_err() {
            continue;
        }
        let mut again = before.clone();
        assert!(
            scim::patch::apply(resource, &mut again, &operations).is_ok() && again == after,
            "PATCH is not deterministic"
        );
        // What the service does next: the result must be a valid resource, as a PUT body.
        let mut full = after.clone();
        full.insert("schemas".into(), scim::schema::schemas_of(resource, &after));
        if let Ok(canonical) = scim::schema::canonical_resource(resource, &Value::Object(full)) {
            assert_canonical_is_fixed_point(resource, &canonical);
            accepted = true;
        }
    }
    accepted
}

/// A canonical resource, sent back as a body, canonicalises to itself.
fn assert_canonical_is_fixed_point(resource: Resource, canonical: &Map<String, Value>) {
    let mut body = canonical.clone();
    body.insert(
        "schemas".into(),
        scim::schema::schemas_of(resource, canonical),
    );
    let again = scim::schema::canonical_resource(resource, &Value::Object(body));
    assert_eq!(
        again.as_ref().ok(),
        Some(canonical),
        "the canonical form is not a fixed point: {again:?}"
    );
}

/// A target's property function: takes the fuzzer's bytes, returns whether the input was
/// accepted (so that the replay test can tell the seeds still reach the properties).
pub type Property = fn(&[u8]) -> bool;

/// Every fuzz target by name, for the replay test.
pub const TARGETS: [(&str, Property); 6] = [
    ("connect", connect),
    ("mapping", mapping),
    ("id_token", id_token),
    ("logout_token", logout_token),
    ("config", config),
    ("scim", scim),
];
