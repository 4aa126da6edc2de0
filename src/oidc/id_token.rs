//! ID-token validation per OpenID Connect Core 1.0 §3.1.3.7, on top of openidconnect's verifier,
//! with the pieces it lacks: a clock-skew allowance, `now` as an argument, and a distinct error
//! for an unknown signing key so the caller can refetch the JWKS. Signatures are checked with
//! ring through [`VerifyingKey`](crate::oidc::jwk::VerifyingKey). Pure: no I/O, no clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openidconnect::core::{CoreIdToken, CoreJwsSigningAlgorithm};
use openidconnect::{
    ClaimsVerificationError, ClientId, ClientSecret, IdTokenVerifier, IssuerUrl, Nonce,
    SignatureVerificationError,
};
use serde_json::{Map, Value};

use crate::oidc::jwk::VerifyingKeySet;

/// What an ID token must satisfy, fixed at discovery time.
#[derive(Debug, Clone)]
pub struct IdTokenRules {
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    /// For HS* tokens of confidential clients.
    pub client_secret: Option<ClientSecret>,
    /// What [`acceptable_algs`] made of the configuration and the IdP's advertised list.
    pub allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    /// Allowed clock difference for `exp` and `iat`.
    pub clock_skew: Duration,
}

/// A validated ID token.
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    /// Every claim exactly as the IdP sent it (the token's JSON payload).
    pub claims: Map<String, Value>,
    pub subject: String,
    /// The IdP session id, used to match back-channel logout tokens.
    pub session_id: Option<String>,
    /// The compact JWT, kept (server-side only) as `id_token_hint` for RP-initiated logout.
    pub raw: String,
}

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// No key in the JWKS matches the token's `kid`/`alg`: the IdP may have rotated its keys.
    #[error("no key in the IdP's key set matches the ID token")]
    UnknownKey,
    #[error("ID token rejected: {0}")]
    Invalid(String),
}

/// The algorithms accepted on ID and logout tokens: those the client is registered for
/// (`oidc.signing_algs`) that the IdP also advertises (`id_token_signing_alg_values_supported`),
/// in the configured order, never `none` (OIDC Core §3.1.3.7 steps 6-7; OIDC Registration's
/// `id_token_signed_response_alg`). An IdP that lists `HS256` does not make the bridge accept
/// MACs keyed with the client secret: only the configuration does.
pub fn acceptable_algs(
    advertised: &[CoreJwsSigningAlgorithm],
    configured: &[CoreJwsSigningAlgorithm],
) -> Vec<CoreJwsSigningAlgorithm> {
    configured
        .iter()
        .filter(|alg| **alg != CoreJwsSigningAlgorithm::None && advertised.contains(alg))
        .cloned()
        .collect()
}

/// Validates signature (against `keys`, with the allowed algorithms), `iss`, `aud`/`azp`,
/// `exp` and `iat` (with the skew), and `nonce`, as of `now`.
pub fn validate(
    token: &CoreIdToken,
    keys: &VerifyingKeySet,
    rules: &IdTokenRules,
    expected_nonce: &Nonce,
    now: DateTime<Utc>,
) -> Result<VerifiedIdToken, IdTokenError> {
    let skew = chrono::Duration::from_std(rules.clock_skew)
        .map_err(|_| IdTokenError::Invalid("clock skew out of range".into()))?;
    let verifier = match &rules.client_secret {
        Some(secret) => IdTokenVerifier::new_confidential_client(
            rules.client_id.clone(),
            secret.clone(),
            rules.issuer.clone(),
            keys.clone(),
        ),
        None => IdTokenVerifier::new_public_client(
            rules.client_id.clone(),
            rules.issuer.clone(),
            keys.clone(),
        ),
    }
    .set_allowed_algs(
        rules
            .allowed_algs
            .iter()
            .filter(|alg| **alg != CoreJwsSigningAlgorithm::None)
            .cloned(),
    )
    // `exp` is checked as `now >= exp`; moving "now" back by the skew tolerates a slow clock.
    .set_time_fn(move || now - skew)
    .set_issue_time_verifier_fn(move |iat| {
        if iat > now + skew {
            Err(format!("issued in the future ({iat})"))
        } else {
            Ok(())
        }
    });

    let claims = token
        .claims(&verifier, expected_nonce)
        .map_err(|e| match e {
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => IdTokenError::UnknownKey,
            other => IdTokenError::Invalid(other.to_string()),
        })?;
    let subject = claims.subject().to_string();

    let raw = token.to_string();
    let mut parts = raw.split('.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return Err(IdTokenError::Invalid("not a compact JWS".into()));
    };
    // RFC 7515 §5.2: openidconnect reads the header members it knows and skips the others
    // unread, so a header that is not valid UTF-8 JSON is refused here.
    let header = super::decode_jose_part(header.trim_end_matches('='))
        .ok_or_else(|| IdTokenError::Invalid("the JOSE header is not a JSON object".into()))?;
    // We understand no JWS extension (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(IdTokenError::Invalid(
            "the JOSE header has a crit member".into(),
        ));
    }
    let claims = super::decode_jose_part(payload.trim_end_matches('='))
        .ok_or_else(|| IdTokenError::Invalid("payload is not a JSON object".into()))?;
    let session_id = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
    Ok(VerifiedIdToken {
        claims,
        subject,
        session_id,
        raw,
    })
}
