//! OpenID Connect Back-Channel Logout 1.0 §2.4/§2.6: validation of `logout_token`s. Pure: `now` is an argument.
//!
//! The token is a compact JWS signed with the same keys as ID tokens. openidconnect 4 has no
//! logout-token type and keeps its JWT verifier private, so this module parses the JWS itself
//! and verifies with the bridge's keys ([`VerifyingKey`], ring underneath), whose
//! [`JsonWebKey::verify_signature`] also enforces that a key's `use`, `kty` and `alg` fit the
//! token's algorithm. Checks follow §2.6 in order, with the interop slack real providers
//! need (Keycloak before 25 sends `typ: JWT`; Hydra, LemonLDAP and older Keycloak send no `exp`;
//! Keycloak adds `revoke_offline_access` beside the logout event). Replay (`jti`) is the
//! caller's job, through the store, because it needs state.
//!
//! Every input is handled without panicking: the validator is the first thing an
//! unauthenticated POST reaches.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use openidconnect::core::CoreJwsSigningAlgorithm;
use openidconnect::{JsonWebKey, JwsSigningAlgorithm};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::config::{LogoutConfig, OidcConfig};
use crate::oidc::jwk::{self, VerifyingKey, VerifyingKeySet};

/// The member of `events` that marks a JWT as a back-channel logout token (§2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a logout token must satisfy. Built once at startup from discovery and configuration.
#[derive(Debug, Clone)]
pub struct LogoutTokenRules {
    /// The issuer exactly as the provider spells it in its tokens (take it from discovery:
    /// `Url` would add a trailing slash to a bare origin).
    pub issuer: String,
    /// Our client id, which `aud` must contain.
    pub client_id: String,
    /// Algorithms the provider advertises for ID tokens
    /// (`id_token_signing_alg_values_supported`). `none` is refused even when listed.
    pub allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    /// The client secret, the key for `HS*` tokens. Without it `HS*` tokens are refused.
    pub client_secret: Option<SecretString>,
    /// Require `typ: logout+jwt`; otherwise an absent `typ` or `JWT` is tolerated.
    pub strict_typ: bool,
    /// Accept tokens without `exp`, bounding their age by `iat` instead.
    pub allow_missing_exp: bool,
    /// Oldest `iat` accepted when `exp` is missing (and `allow_missing_exp` is on).
    pub max_token_age: Duration,
    /// Tolerated clock difference with the provider, applied to `iat` and `exp`.
    pub clock_skew: Duration,
}

impl LogoutTokenRules {
    /// Rules from configuration. `issuer` and `allowed_algs` come from the discovered provider
    /// metadata, because the token must match what the provider says, not how we parsed our
    /// configuration.
    pub fn from_config(
        issuer: impl Into<String>,
        allowed_algs: Vec<CoreJwsSigningAlgorithm>,
        oidc: &OidcConfig,
        logout: &LogoutConfig,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: oidc.client_id.clone(),
            allowed_algs,
            client_secret: oidc.client_secret.clone(),
            strict_typ: logout.strict_typ,
            allow_missing_exp: logout.allow_missing_exp,
            max_token_age: logout.max_token_age,
            clock_skew: oidc.clock_skew,
        }
    }
}

/// The claims of a valid logout token that the bridge acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    pub iss: String,
    /// The user, when the provider names one (all of the user's sessions are meant when `sid`
    /// is absent).
    pub sub: Option<String>,
    /// The provider session that ended (the `sid` of the ID tokens of that session).
    pub sid: Option<String>,
    pub jti: String,
    pub iat: DateTime<Utc>,
    pub exp: Option<DateTime<Utc>>,
}

impl LogoutToken {
    /// Until when this token's `jti` must be remembered to refuse a replay: after that moment
    /// [`validate`] rejects the token anyway (expired, or too old when it has no `exp`).
    pub fn replay_horizon(&self, rules: &LogoutTokenRules) -> DateTime<Utc> {
        let skew = to_delta(rules.clock_skew);
        let until = match self.exp {
            Some(exp) => exp.checked_add_signed(skew),
            None => self
                .iat
                .checked_add_signed(to_delta(rules.max_token_age))
                .and_then(|t| t.checked_add_signed(skew)),
        };
        until.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Why a logout token was refused. [`LogoutTokenError::code`] is the short, stable text for the
/// `error_description` of the 400 answer; neither it nor `Display` ever contains token content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    #[error("the logout token is not a compact JWS")]
    NotCompactJws,
    #[error("the logout token is encrypted (JWE), which is not supported")]
    Encrypted,
    #[error("the JOSE header is not valid JSON with a string alg")]
    MalformedHeader,
    #[error("the token is unsigned (alg none)")]
    AlgNone,
    #[error("the signing algorithm is not allowed")]
    AlgNotAllowed,
    #[error("the JOSE header has a crit member")]
    CriticalHeader,
    #[error("the JOSE typ is not logout+jwt")]
    WrongType,
    /// No key of the JWKS fits the token's `kid` and algorithm. The caller should refetch the
    /// JWKS (rate-limited) and validate once more: the provider may have rotated its keys.
    #[error("no key of the provider's JWKS matches the token")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the claims are not a JSON object of the expected types")]
    MalformedClaims,
    #[error("iss is not the configured issuer")]
    WrongIssuer,
    #[error("aud is not the client id alone")]
    WrongAudience,
    #[error("iat is missing")]
    MissingIat,
    #[error("iat is in the future")]
    IatInFuture,
    #[error("exp is missing")]
    MissingExp,
    #[error("the token has expired")]
    Expired,
    #[error("the token has no exp and its iat is too old")]
    TooOld,
    #[error("jti is missing")]
    MissingJti,
    #[error("events has no back-channel logout member")]
    MissingLogoutEvent,
    #[error("a logout token must not contain a nonce")]
    NoncePresent,
    #[error("the token has neither sub nor sid")]
    MissingSubjectAndSession,
}

impl LogoutTokenError {
    /// Short stable code for the JSON error body and for logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotCompactJws => "not_compact_jws",
            Self::Encrypted => "encrypted_token_unsupported",
            Self::MalformedHeader => "malformed_header",
            Self::AlgNone => "alg_none",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::CriticalHeader => "crit_unsupported",
            Self::WrongType => "wrong_typ",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::MalformedClaims => "malformed_claims",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingIat => "missing_iat",
            Self::IatInFuture => "iat_in_future",
            Self::MissingExp => "missing_exp",
            Self::Expired => "expired",
            Self::TooOld => "too_old",
            Self::MissingJti => "missing_jti",
            Self::MissingLogoutEvent => "missing_logout_event",
            Self::NoncePresent => "nonce_present",
            Self::MissingSubjectAndSession => "missing_sub_and_sid",
        }
    }
}

/// Validates `token` (the raw `logout_token` form value) against the provider's `keys`.
///
/// On [`LogoutTokenError::UnknownKey`] refetch the JWKS once and call again. The `jti` is not
/// checked for replay here; see [`LogoutToken::replay_horizon`].
pub fn validate(
    token: &str,
    keys: &VerifyingKeySet,
    rules: &LogoutTokenRules,
    now: DateTime<Utc>,
) -> Result<LogoutToken, LogoutTokenError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return Err(if parts.len() == 5 {
            LogoutTokenError::Encrypted
        } else {
            LogoutTokenError::NotCompactJws
        });
    };

    let header = super::decode_jose_part(header_b64).ok_or(LogoutTokenError::MalformedHeader)?;
    let alg = check_header(&header, rules)?;

    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| LogoutTokenError::NotCompactJws)?;
    // The JWS signing input is the two encoded parts as sent, not a re-encoding.
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token
        .trim()
        .get(..signing_input_len)
        .ok_or(LogoutTokenError::NotCompactJws)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(LogoutTokenError::MalformedHeader),
    };
    verify_signature(keys, rules, &alg, kid, signing_input.as_bytes(), &signature)?;

    let claims = super::decode_jose_part(payload_b64).ok_or(LogoutTokenError::MalformedClaims)?;
    check_claims(&claims, rules, now)
}

/// Header checks of §2.6 step 3 plus RFC 7515 `crit` and the logout token's explicit type
/// (§2.4, §4.1 cross-JWT confusion). Returns the algorithm to verify with.
fn check_header(
    header: &Map<String, Value>,
    rules: &LogoutTokenRules,
) -> Result<CoreJwsSigningAlgorithm, LogoutTokenError> {
    let Some(Value::String(alg_name)) = header.get("alg") else {
        return Err(LogoutTokenError::MalformedHeader);
    };
    // An algorithm name openidconnect does not know cannot be in the allow-list either.
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(Value::String(alg_name.clone()))
        .map_err(|_| LogoutTokenError::AlgNotAllowed)?;
    if alg == CoreJwsSigningAlgorithm::None {
        return Err(LogoutTokenError::AlgNone);
    }
    if !rules.allowed_algs.contains(&alg) {
        return Err(LogoutTokenError::AlgNotAllowed);
    }
    // We understand no JWS extension, so any `crit` makes the token unprocessable (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(LogoutTokenError::CriticalHeader);
    }
    match header.get("typ") {
        None if !rules.strict_typ => {}
        None => return Err(LogoutTokenError::WrongType),
        Some(Value::String(typ)) => check_typ(typ, rules.strict_typ)?,
        Some(_) => return Err(LogoutTokenError::MalformedHeader),
    }
    Ok(alg)
}

/// `typ` is a media type, compared case-insensitively, with `application/` optional
/// (RFC 7515 §4.1.9).
fn check_typ(typ: &str, strict: bool) -> Result<(), LogoutTokenError> {
    let typ = typ.to_ascii_lowercase();
    let short = typ.strip_prefix("application/").unwrap_or(&typ);
    match short {
        "logout+jwt" => Ok(()),
        "jwt" if !strict => Ok(()),
        _ => Err(LogoutTokenError::WrongType),
    }
}

/// Picks the candidate keys the way openidconnect does for ID tokens (same `kid` when the token
/// names one, a key usable for this algorithm) and accepts the token when one verifies it.
fn verify_signature(
    keys: &VerifyingKeySet,
    rules: &LogoutTokenRules,
    alg: &CoreJwsSigningAlgorithm,
    kid: Option<&str>,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), LogoutTokenError> {
    if alg.uses_shared_secret() {
        // HS* tokens are MACed with the client secret (OIDC Core §10.1); `kid` means nothing.
        let Some(secret) = &rules.client_secret else {
            return Err(LogoutTokenError::AlgNotAllowed);
        };
        let key = VerifyingKey::new_symmetric(secret.expose_secret().as_bytes().to_vec());
        return key
            .verify_signature(alg, signing_input, signature)
            .map_err(|_| LogoutTokenError::BadSignature);
    }

    let candidates: Vec<&VerifyingKey> = keys
        .keys()
        .iter()
        .filter(|key| kid.is_none() || key.key_id().map(|id| id.as_str()) == kid)
        // Checked up front (verify_signature checks it again) so that "no such key" can be told
        // apart from "a wrong signature".
        .filter(|key| jwk::fits_signing_alg(*key, alg))
        .collect();
    if candidates.is_empty() {
        return Err(LogoutTokenError::UnknownKey);
    }
    if candidates
        .iter()
        .any(|key| key.verify_signature(alg, signing_input, signature).is_ok())
    {
        Ok(())
    } else {
        Err(LogoutTokenError::BadSignature)
    }
}

/// Claim checks of §2.6 steps 4-7 (and §2.4's `jti`).
fn check_claims(
    claims: &Map<String, Value>,
    rules: &LogoutTokenRules,
    now: DateTime<Utc>,
) -> Result<LogoutToken, LogoutTokenError> {
    let iss = optional_string(claims, "iss")?.ok_or(LogoutTokenError::WrongIssuer)?;
    if iss != rules.issuer {
        return Err(LogoutTokenError::WrongIssuer);
    }

    // §2.6 step 4 validates `aud` as for ID tokens, and OIDC Core §3.1.3.7 step 3 rejects a
    // token that "contains additional audiences not trusted by the Client": the bridge trusts
    // no other audience, so every member must be the client id.
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == rules.client_id,
        Some(Value::Array(auds)) => {
            let mut only_us = !auds.is_empty();
            for aud in auds {
                let Value::String(aud) = aud else {
                    return Err(LogoutTokenError::MalformedClaims);
                };
                only_us &= *aud == rules.client_id;
            }
            only_us
        }
        None => false,
        Some(_) => return Err(LogoutTokenError::MalformedClaims),
    };
    if !audience_ok {
        return Err(LogoutTokenError::WrongAudience);
    }

    let skew = to_delta(rules.clock_skew);
    let iat = numeric_date(claims, "iat")?.ok_or(LogoutTokenError::MissingIat)?;
    if now
        .checked_add_signed(skew)
        .is_some_and(|latest| iat > latest)
    {
        return Err(LogoutTokenError::IatInFuture);
    }
    let exp = numeric_date(claims, "exp")?;
    match exp {
        Some(exp) => {
            if now.checked_sub_signed(skew).is_some_and(|t| t >= exp) {
                return Err(LogoutTokenError::Expired);
            }
        }
        None if rules.allow_missing_exp => {
            let oldest = now
                .checked_sub_signed(to_delta(rules.max_token_age))
                .and_then(|t| t.checked_sub_signed(skew));
            if oldest.is_some_and(|oldest| iat < oldest) {
                return Err(LogoutTokenError::TooOld);
            }
        }
        None => return Err(LogoutTokenError::MissingExp),
    }

    let jti = optional_string(claims, "jti")?.ok_or(LogoutTokenError::MissingJti)?;

    let has_logout_event = match claims.get("events") {
        Some(Value::Object(events)) => {
            matches!(events.get(BACKCHANNEL_LOGOUT_EVENT), Some(Value::Object(_)))
        }
        _ => false,
    };
    if !has_logout_event {
        return Err(LogoutTokenError::MissingLogoutEvent);
    }

    // Even `"nonce": null` is refused: the claim must be absent (§2.4).
    if claims.contains_key("nonce") {
        return Err(LogoutTokenError::NoncePresent);
    }

    let sub = optional_string(claims, "sub")?;
    let sid = optional_string(claims, "sid")?;
    if sub.is_none() && sid.is_none() {
        return Err(LogoutTokenError::MissingSubjectAndSession);
    }

    Ok(LogoutToken {
        iss,
        sub,
        sid,
        jti,
        iat,
        exp,
    })
}

/// A string claim; an empty string counts as absent, any other type is malformed.
fn optional_string(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, LogoutTokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(LogoutTokenError::MalformedClaims),
    }
}

/// An RFC 7519 NumericDate (seconds, possibly fractional); out-of-range values are malformed.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, LogoutTokenError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(LogoutTokenError::MalformedClaims);
    };
    let seconds = match number.as_i64() {
        Some(seconds) => seconds,
        None => {
            let float = number.as_f64().ok_or(LogoutTokenError::MalformedClaims)?;
            if !float.is_finite() || float.abs() > 1e15 {
                return Err(LogoutTokenError::MalformedClaims);
            }
            // Whole seconds are precise enough for every comparison made here.
            float.floor() as i64
        }
    };
    DateTime::from_timestamp(seconds, 0)
        .map(Some)
        .ok_or(LogoutTokenError::MalformedClaims)
}

/// A configured duration as a chrono delta; absurdly large values saturate.
fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::jwk::key_set_from_core;
    use hmac::{Hmac, Mac};
    use openidconnect::core::{CoreJsonWebKeySet, CoreRsaPrivateSigningKey};
    use openidconnect::{JsonWebKeyId, PrivateSigningKey};
    use proptest::prelude::*;
    use serde_json::json;
    use sha2::Sha256;

    /// Test-only RSA key (generated once with `openssl genrsa -traditional 2048`).
    const TEST_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAr0rGnjKB++bsSu3ZjYxdggM2qfc1TvIfddZF5778HG6ozzBJ
ib2EBR5xZrPA+O1+0NMybxwFvhwTnjvcfixYaEcGEWz2n/sCV5iq9qoZ3iRHM11o
gs1kPY0EoBBwyb06Y4CGcUJ2GG/HCV9hgzkxPKxPPbooSTN1C7hcBmQeehPfzg88
MDM9mOSBl1Fs0EInaqfsJ9e51O/2H+EamGutLGn6rH4barbq+KSRE7yiAJ56Z7Hx
/1Ufxc5uC/EK4O7fzW/xcw2RfgXGKUPZIv5S2yC0eU1yOQvuzpJUrdJDmTtzEgeQ
lOWUnD6US4gMzm3Q+TdBCAYc51U77s0Yk+iQiQIDAQABAoIBAAe1qSQqklskViwF
J4keors14yODvv65+UZrFkKB0h/5rFIxLGl9jMRWiS7MRPZofagiGH5YtBZJ26wH
3nlXKnaVpG+Y7wTsxYwu57AMcwb5P1TD7OA54ojZfloANxxhsU3QiI6L2YVWyeEr
O9mevEAP+mE7jODhUup2dpJaY25uMBRrIY8XIAKUnyQSJwA47eKBYMD50/jMt3Mt
IGbX12li0Yxym4vf2tg6BaqFA4iXm8J61yyA57CJWyWEva82qYK9NZayWLOxUnWL
5UByCIZEFDULoQE8iCMfbAWEK70PL85Beb1nJjsVI0Eq7lvu5Jc7wJ6Bwe6CHUUT
Ld+5n/0CgYEA7ji4JOulFTGyQ3VFYEr0jmJ+5JT/f+b9Vnt4aXm137uooD3ilQNh
XtoI2LNyGBxourokNHQkz9Kyr6eP7pFmeJRvQnUHChL9nECNPexiLgJoKdqaXPSB
mFyXW9pA15OY1jrTZ7VhVlQcj5iIui+1x9P96ALdtd6YyKjbdYwuFD0CgYEAvF/G
GJZ2etlXMw0VQcxaeUd2Kf6ocuR+lnHUbJZq8GBIL8jwp3ObUjhcic++nycvggSk
XfTPxMwqp9oPmvqSxGXP6uYFk2l18Igl4uw/O2Lgkc2G06zsccG5FqijiidviqVt
jIa2SSQUGpCYS7J3EN5R1iqJlAgxFzUtZCh6lj0CgYEA6kGAY14OYj8Sa1+gr0ZG
ItYcri8O6Pl+2lJkYGQ9QxvIgHsamypNz/ZciKw9YBRfsG9nNuWXZX5uFGmUEieN
OrnMhu+J0pBGMCcSPXh8O35GbBH5hbsyzV8PwFVpOhR8UP5b8Tnd1AS2aUa3/U75
VN3UaxiWaUfRulDCLl+A2IkCgYANHZH6VkeLiCRlHo0TVroZ5ZrZk6yAy13w9Z33
rYVmlR2RjikLT6ZJ1DjFM5yvEhhhshcLn6bzqc9yfmFFxhp/6CLQ1REgUWBvzdrt
cMt6RAkkva2cgVa5GObdKAKy9Mn0Wk5FUX/Rmdx4eQbRhmx51TDXe4C2uNdKKV6u
sY7PdQKBgQDTm6yBrqOqZzONVKitna62LWFgSIN74j0g6YS9NDKnOrcosVAlTtCe
wlNJzCYpdLLFUGaWULxJHgGww8aTvXVHe/KvoanpqagpFUEgSU+rkE1Lps9gODza
Tl1tqDtf6uaPqyebCzXPpCuDFL5rMIZv1FZjMw6gUj8xOYOSVrnzyg==
-----END RSA PRIVATE KEY-----
";

    /// A second test-only key, to sign with a key the JWKS does not hold under the same `kid`.
    const OTHER_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAwoKwtNTM9Em+gsvh2V5y1mu4BVpRc5J2GcSTi8ZztzijJNEM
F3HNYxeOX/SUQ3e2gfDMDhHnwW8L7Ph29mKaeGMHyKaaVHB6U+p2EeHqcsY5u/nm
aoYjTqzOnv2HOE0AYJlZixL1RYj6ughMBssWRo4aKwYqQNydQJ6fOpQNBzoXypu9
RpRZuzf+g+NkbULx3ilEzAShalhJr5LDL/JiPrVzsnlTnug8peAxeAcP8sMqLTWQ
gsBSPCoLRq0hRbJQcmIXkHfJecyS/NDqUoulK7hhtdIbf9ECCnc+7KF0WFgbHBIX
2gdNLU0TT8JUYrIStKVCUFA/k1nQyZP1wrotGQIDAQABAoIBAFrToQUHu161Er9L
yf3xAwnKCgeB2bfwY7J7nvQtanpbeZ7m+ND3xJLpfIOlFxh8DZ6WnQpS5RfnrTdt
/Ern1z6w64EP/s/AJ/cIbDLEffAzTOFQe34xfcoumlsWgu5Q0oTJBs2QwDREluOI
nUusyI2QrHp7qf5Ypht3Fl5JpN3Cu7DaRChjAbJP8WAh1VnOlI+52CbFHUPDRXZ6
wOpb+XK6kg1oo/mvi1YPopO/YvVefhIOTPg5z4PIMvRHtWv7zPbKBEbpbo8myqos
UAWA6O6kSqbbRQ6p0jkCEXDfaHDtC4sYXSiJpTBrNc43GITMfW4JLi4/1RpO/Wg3
gLKMa2MCgYEA51/jULCbfO36mytlHQaAsaWOSL+aLKPKz6DyBm5kxZSupIWFa1DA
VpafO4j7g3WV834kTPsUuGG6Y2VJdsGbVGTkeghBXMFzdrC30xBs6rKilmL6E+Rr
7TZDdGnRt81yN6YoCwVt+T4RDZMqyrkC7Rstx4HhTP07TgB/q5wxF1cCgYEA1zZk
NdZwKwtOITReuq28KXklDAeNqU6EqoyB7tFDoW9Uw3BwPgfMkNl18x++gr/lC+Ha
u/LbbG7UxQzt85+Hx2ivfBaNFedt7d/IroJYbcZofuA0v2CLt7QMOCOdgzqZbOw2
nakFeiWUprUI4b8XSgSJr17aMlEFUjGXniAeSQ8CgYAUef/8HCUmoUkUgnqoXvL0
xdoZxhs26CgCyBOjThHNCqOKG+b64GKlRx9AfZcEw1tJ+VftGCt1RfDg6w3dXLUK
ewNdaW2fb99wGaOrIkEBZF3PQWMwb369t5ewrczJn30EP8g7cXeSH1QTB3s6BbWk
lksu5OezkJW3CYRDA8e0cQKBgEXVfnsB1HADQR0BM2P8EDyc9OqMYOl5cw8sfNUT
zpBJ4gVxLNrUCQtPpTh5Koae4iIS7bljOtRaumwen/AX6iVI0PjBEJL0//TaUvJd
lXg5k5roAfW/zFaV9AkbdXcpwrNXivlp6T8ThsL5p6IpMdNw2YSwkLkXFVTwhrRm
06z9AoGBAKZKF0yy45ohsPivUHTOdCtJ9rI1LIKU6Tz32JbUULkjjzADd97hD2np
5zF6LB+RcPQyNLfM9zaqKfRKcG9hZ8KDcJyJPZtrOFnHwJfTq3cOfk8oDAfHKA8n
+FnzJwEhaTA3yhksp8b44H8/teSw4X95odjiA2/Av/RVdoUH9peJ
-----END RSA PRIVATE KEY-----
";

    const ISSUER: &str = "https://idp.example.test/realms/forum";
    const CLIENT_ID: &str = "bridge";
    const KID: &str = "test-rs256";
    const CLIENT_SECRET: &str = "a client secret for HS256 tests";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn signing_key(pem: &str, kid: Option<&str>) -> CoreRsaPrivateSigningKey {
        CoreRsaPrivateSigningKey::from_pem(pem, kid.map(|k| JsonWebKeyId::new(k.to_owned())))
            .unwrap()
    }

    fn jwks() -> VerifyingKeySet {
        key_set_from_core(&CoreJsonWebKeySet::new(vec![
            signing_key(TEST_KEY_PEM, Some(KID)).as_verification_key(),
        ]))
    }

    fn rules() -> LogoutTokenRules {
        LogoutTokenRules {
            issuer: ISSUER.to_owned(),
            client_id: CLIENT_ID.to_owned(),
            allowed_algs: vec![
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            ],
            client_secret: None,
            strict_typ: false,
            allow_missing_exp: false,
            max_token_age: Duration::from_secs(300),
            clock_skew: Duration::from_secs(60),
        }
    }

    fn header() -> Value {
        json!({"alg": "RS256", "typ": "logout+jwt", "kid": KID})
    }

    /// Claims as oidc-provider sends them.
    fn claims() -> Value {
        let iat = now().timestamp() - 5;
        json!({
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "iat": iat,
            "exp": iat + 120,
            "jti": "jti-1",
            "sub": "alice",
            "sid": "session-1",
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        })
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    fn sign_with(key: &CoreRsaPrivateSigningKey, header: &Value, claims: &Value) -> String {
        let alg: CoreJwsSigningAlgorithm = serde_json::from_value(header["alg"].clone()).unwrap();
        let input = format!("{}.{}", b64(header), b64(claims));
        let signature = key.sign(&alg, input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn sign(header: &Value, claims: &Value) -> String {
        sign_with(&signing_key(TEST_KEY_PEM, Some(KID)), header, claims)
    }

    fn check(token: &str) -> Result<LogoutToken, LogoutTokenError> {
        validate(token, &jwks(), &rules(), now())
    }

    fn check_with(token: &str, rules: &LogoutTokenRules) -> Result<LogoutToken, LogoutTokenError> {
        validate(token, &jwks(), rules, now())
    }

    fn with_claim(name: &str, value: Value) -> Value {
        let mut c = claims();
        c[name] = value;
        c
    }

    fn without_claim(name: &str) -> Value {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(name);
        c
    }

    fn with_header(name: &str, value: Value) -> Value {
        let mut h = header();
        h[name] = value;
        h
    }

    fn without_header(name: &str) -> Value {
        let mut h = header();
        h.as_object_mut().unwrap().remove(name);
        h
    }

    #[test]
    fn accepts_a_token_as_oidc_provider_sends_it() {
        let token = check(&sign(&header(), &claims())).unwrap();
        assert_eq!(
            token,
            LogoutToken {
                iss: ISSUER.to_owned(),
                sub: Some("alice".to_owned()),
                sid: Some("session-1".to_owned()),
                jti: "jti-1".to_owned(),
                iat: DateTime::from_timestamp(now().timestamp() - 5, 0).unwrap(),
                exp: DateTime::from_timestamp(now().timestamp() + 115, 0),
            }
        );
    }

    #[test]
    fn accepts_application_logout_jwt_typ_in_any_case() {
        let h = with_header("typ", json!("Application/Logout+JWT"));
        assert!(check(&sign(&h, &claims())).is_ok());
    }

    #[test]
    fn accepts_array_aud_of_the_client_id_alone() {
        let c = with_claim("aud", json!([CLIENT_ID]));
        assert!(check(&sign(&header(), &c)).is_ok());
        let c = with_claim("aud", json!([CLIENT_ID, CLIENT_ID]));
        assert!(check(&sign(&header(), &c)).is_ok());
    }

    /// OIDC Core §3.1.3.7 step 3, which Back-Channel Logout §2.6 step 4 applies to logout
    /// tokens: additional audiences the client does not trust make the token invalid.
    #[test]
    fn rejects_array_aud_with_another_audience_beside_the_client_id() {
        for aud in [
            json!(["other", CLIENT_ID]),
            json!([CLIENT_ID, "other"]),
            json!([]),
        ] {
            let c = with_claim("aud", aud);
            assert_eq!(
                check(&sign(&header(), &c)),
                Err(LogoutTokenError::WrongAudience)
            );
        }
    }

    #[test]
    fn rejects_array_aud_without_the_client_id() {
        let c = with_claim("aud", json!(["other", "another"]));
        assert_eq!(
            check(&sign(&header(), &c)),
            Err(LogoutTokenError::WrongAudience)
        );
    }

    #[test]
    fn rejects_wrong_or_missing_aud() {
        let c = with_claim("aud", json!("someone-else"));
        assert_eq!(
            check(&sign(&header(), &c)),
            Err(LogoutTokenError::WrongAudience)
        );
        assert_eq!(
            check(&sign(&header(), &without_claim("aud"))),
            Err(LogoutTokenError::WrongAudience)
        );
    }

    #[test]
    fn rejects_wrong_or_missing_issuer() {
        // Exact match: a trailing slash is a different issuer.
        let c = with_claim("iss", json!(format!("{ISSUER}/")));
        assert_eq!(
            check(&sign(&header(), &c)),
            Err(LogoutTokenError::WrongIssuer)
        );
        assert_eq!(
            check(&sign(&header(), &without_claim("iss"))),
            Err(LogoutTokenError::WrongIssuer)
        );
    }

    #[test]
    fn missing_exp_is_refused_by_default() {
        assert_eq!(
            check(&sign(&header(), &without_claim("exp"))),
            Err(LogoutTokenError::MissingExp)
        );
    }

    #[test]
    fn missing_exp_is_tolerated_with_the_switch_while_iat_is_recent() {
        let mut r = rules();
        r.allow_missing_exp = true;
        let token = check_with(&sign(&header(), &without_claim("exp")), &r).unwrap();
        assert_eq!(token.exp, None);
    }

    #[test]
    fn missing_exp_with_the_switch_still_bounds_iat_age() {
        let mut r = rules();
        r.allow_missing_exp = true;
        // max_token_age 300 s + skew 60 s.
        let mut c = without_claim("exp");
        c["iat"] = json!(now().timestamp() - 361);
        assert_eq!(
            check_with(&sign(&header(), &c), &r),
            Err(LogoutTokenError::TooOld)
        );
        c["iat"] = json!(now().timestamp() - 359);
        assert!(check_with(&sign(&header(), &c), &r).is_ok());
    }

    #[test]
    fn typ_jwt_is_tolerated_unless_strict() {
        let h = with_header("typ", json!("JWT"));
        let token = sign(&h, &claims());
        assert!(check(&token).is_ok());
        let mut strict = rules();
        strict.strict_typ = true;
        assert_eq!(
            check_with(&token, &strict),
            Err(LogoutTokenError::WrongType)
        );
    }

    #[test]
    fn absent_typ_is_tolerated_unless_strict() {
        let token = sign(&without_header("typ"), &claims());
        assert!(check(&token).is_ok());
        let mut strict = rules();
        strict.strict_typ = true;
        assert_eq!(
            check_with(&token, &strict),
            Err(LogoutTokenError::WrongType)
        );
    }

    #[test]
    fn strict_typ_accepts_logout_jwt() {
        let mut strict = rules();
        strict.strict_typ = true;
        assert!(check_with(&sign(&header(), &claims()), &strict).is_ok());
    }

    #[test]
    fn other_typ_is_refused_even_when_lenient() {
        // An access token (RFC 9068) must never pass as a logout token.
        let h = with_header("typ", json!("at+jwt"));
        assert_eq!(
            check(&sign(&h, &claims())),
            Err(LogoutTokenError::WrongType)
        );
    }

    #[test]
    fn keycloak_extra_events_member_is_ignored() {
        let c = with_claim(
            "events",
            json!({BACKCHANNEL_LOGOUT_EVENT: {}, "revoke_offline_access": true}),
        );
        assert!(check(&sign(&header(), &c)).is_ok());
    }

    #[test]
    fn keycloak_payload_typ_claim_is_ignored() {
        let c = with_claim("typ", json!("Logout"));
        assert!(check(&sign(&header(), &c)).is_ok());
    }

    #[test]
    fn sid_only_token_is_accepted() {
        let token = check(&sign(&header(), &without_claim("sub"))).unwrap();
        assert_eq!(token.sub, None);
        assert_eq!(token.sid.as_deref(), Some("session-1"));
    }

    #[test]
    fn sub_only_token_is_accepted() {
        let token = check(&sign(&header(), &without_claim("sid"))).unwrap();
        assert_eq!(token.sub.as_deref(), Some("alice"));
        assert_eq!(token.sid, None);
    }

    #[test]
    fn token_without_sub_and_sid_is_refused() {
        let mut c = without_claim("sub");
        c.as_object_mut().unwrap().remove("sid");
        assert_eq!(
            check(&sign(&header(), &c)),
            Err(LogoutTokenError::MissingSubjectAndSession)
        );
    }

    #[test]
    fn expired_beyond_skew_is_refused_and_within_skew_accepted() {
        let c = with_claim("exp", json!(now().timestamp() - 61));
        assert_eq!(check(&sign(&header(), &c)), Err(LogoutTokenError::Expired));
        let c = with_claim("exp", json!(now().timestamp() - 59));
        assert!(check(&sign(&header(), &c)).is_ok());
    }

    #[test]
    fn iat_in_the_future_beyond_skew_is_refused_and_within_skew_accepted() {
        let c = with_claim("iat", json!(now().timestamp() + 61));
        assert_eq!(
            check(&sign(&header(), &c)),
            Err(LogoutTokenError::IatInFuture)
        );
        let c = with_claim("iat", json!(now().timestamp() + 59));
        assert!(check(&sign(&header(), &c)).is_ok());
    }

    #[test]
    fn fractional_numeric_dates_are_accepted() {
        let c = with_claim("iat", json!(now().timestamp() as f64 - 1.5));
        assert!(check(&sign(&header(), &c)).is_ok());
    }

    #[test]
    fn missing_iat_and_jti_are_refused() {
        assert_eq!(
            check(&sign(&header(), &without_claim("iat"))),
            Err(LogoutTokenError::MissingIat)
        );
        assert_eq!(
            check(&sign(&header(), &without_claim("jti"))),
            Err(LogoutTokenError::MissingJti)
        );
    }

    #[test]
    fn events_without_the_logout_member_or_with_a_non_object_value_are_refused() {
        for events in [
            json!({"revoke_offline_access": true}),
            json!({BACKCHANNEL_LOGOUT_EVENT: true}),
            json!([BACKCHANNEL_LOGOUT_EVENT]),
            json!(BACKCHANNEL_LOGOUT_EVENT),
        ] {
            let c = with_claim("events", events);
            assert_eq!(
                check(&sign(&header(), &c)),
                Err(LogoutTokenError::MissingLogoutEvent)
            );
        }
        assert_eq!(
            check(&sign(&header(), &without_claim("events"))),
            Err(LogoutTokenError::MissingLogoutEvent)
        );
    }

    #[test]
    fn a_nonce_is_refused_even_when_null() {
        for nonce in [json!("n-0S6_WzA2Mj"), Value::Null] {
            let c = with_claim("nonce", nonce);
            assert_eq!(
                check(&sign(&header(), &c)),
                Err(LogoutTokenError::NoncePresent)
            );
        }
    }

    #[test]
    fn claims_of_the_wrong_type_are_malformed() {
        for (name, value) in [
            ("iat", json!("1700000000")),
            ("exp", json!(1e300)),
            ("sub", json!(42)),
            ("aud", json!([CLIENT_ID, 7])),
            ("aud", json!({"client": CLIENT_ID})),
        ] {
            let c = with_claim(name, value);
            assert_eq!(
                check(&sign(&header(), &c)),
                Err(LogoutTokenError::MalformedClaims),
                "{name}"
            );
        }
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let token = sign(&header(), &claims());
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[0] ^= 0x01;
        let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(check(&tampered), Err(LogoutTokenError::BadSignature));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let token = sign(&header(), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&with_claim("sub", json!("mallory"))),
            parts[2]
        );
        assert_eq!(check(&forged), Err(LogoutTokenError::BadSignature));
    }

    #[test]
    fn a_token_signed_by_another_key_under_the_known_kid_is_refused() {
        let token = sign_with(&signing_key(OTHER_KEY_PEM, Some(KID)), &header(), &claims());
        assert_eq!(check(&token), Err(LogoutTokenError::BadSignature));
    }

    #[test]
    fn an_unknown_kid_is_its_own_error_and_passes_once_the_jwks_has_the_key() {
        let other = signing_key(OTHER_KEY_PEM, Some("rotated"));
        let h = with_header("kid", json!("rotated"));
        let token = sign_with(&other, &h, &claims());
        assert_eq!(check(&token), Err(LogoutTokenError::UnknownKey));

        let refetched = key_set_from_core(&CoreJsonWebKeySet::new(vec![
            signing_key(TEST_KEY_PEM, Some(KID)).as_verification_key(),
            other.as_verification_key(),
        ]));
        assert!(validate(&token, &refetched, &rules(), now()).is_ok());
    }

    #[test]
    fn without_kid_every_compatible_key_is_tried() {
        let keys = key_set_from_core(&CoreJsonWebKeySet::new(vec![
            signing_key(OTHER_KEY_PEM, Some("a")).as_verification_key(),
            signing_key(TEST_KEY_PEM, Some("b")).as_verification_key(),
        ]));
        let token = sign(&without_header("kid"), &claims());
        assert!(validate(&token, &keys, &rules(), now()).is_ok());
    }

    #[test]
    fn a_key_of_the_wrong_type_or_pinned_alg_is_not_a_candidate() {
        // The JWKS key is pinned to RS256, so a PS256 token finds no usable key.
        let mut jwk =
            serde_json::to_value(signing_key(TEST_KEY_PEM, Some(KID)).as_verification_key())
                .unwrap();
        jwk["alg"] = json!("RS256");
        let keys = VerifyingKeySet::new(vec![serde_json::from_value(jwk).unwrap()]);
        let token = sign(&with_header("alg", json!("PS256")), &claims());
        assert_eq!(
            validate(&token, &keys, &rules(), now()),
            Err(LogoutTokenError::UnknownKey)
        );
        // The same token verifies against the unpinned key.
        assert!(check(&token).is_ok());
    }

    #[test]
    fn alg_none_is_refused_even_when_listed() {
        let mut r = rules();
        r.allowed_algs.push(CoreJwsSigningAlgorithm::None);
        let h = with_header("alg", json!("none"));
        let token = format!("{}.{}.", b64(&h), b64(&claims()));
        assert_eq!(check_with(&token, &r), Err(LogoutTokenError::AlgNone));
    }

    #[test]
    fn alg_outside_the_allow_list_or_unknown_is_refused() {
        let token = sign(&with_header("alg", json!("RS512")), &claims());
        assert_eq!(check(&token), Err(LogoutTokenError::AlgNotAllowed));
        let h = with_header("alg", json!("XS999"));
        let token = format!("{}.{}.c2ln", b64(&h), b64(&claims()));
        assert_eq!(check(&token), Err(LogoutTokenError::AlgNotAllowed));
    }

    fn hs256(header: &Value, claims: &Value, secret: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn hs256_is_verified_with_the_client_secret_only_when_there_is_one() {
        let h = json!({"alg": "HS256", "typ": "logout+jwt"});
        let token = hs256(&h, &claims(), CLIENT_SECRET);
        let mut r = rules();
        r.allowed_algs.push(CoreJwsSigningAlgorithm::HmacSha256);
        assert_eq!(check_with(&token, &r), Err(LogoutTokenError::AlgNotAllowed));

        r.client_secret = Some(SecretString::from(CLIENT_SECRET));
        assert!(check_with(&token, &r).is_ok());
        let forged = hs256(&h, &claims(), "some other secret");
        assert_eq!(check_with(&forged, &r), Err(LogoutTokenError::BadSignature));
    }

    /// Issue 15, fault 1: an HS256 header, an empty payload and a 2-byte MAC panicked inside
    /// openidconnect's HMAC check when HS256 was allowed and a client secret configured.
    #[test]
    fn a_two_byte_hs256_mac_is_a_bad_signature_not_a_panic() {
        let token = "eyJhbGciOiAiSFMyNTYifQ..h4g";
        let mut r = rules();
        r.allowed_algs.push(CoreJwsSigningAlgorithm::HmacSha256);
        r.client_secret = Some(SecretString::from(CLIENT_SECRET));
        assert_eq!(check_with(token, &r), Err(LogoutTokenError::BadSignature));
        for alg in ["HS256", "HS384", "HS512"] {
            let h = json!({"alg": alg});
            r.allowed_algs = crate::oidc::id_token::acceptable_algs(
                &[serde_json::from_value(json!(alg)).unwrap()],
                &[serde_json::from_value(json!(alg)).unwrap()],
            );
            for mac in ["", "h4g", "AAAA", &"A".repeat(200)] {
                let token = format!("{}.{}.{mac}", b64(&h), b64(&claims()));
                assert_eq!(check_with(&token, &r), Err(LogoutTokenError::BadSignature));
            }
        }
    }

    /// Issue 15, fault 2: an IdP that advertises HS256 (published Keycloak documents do) no
    /// longer makes the bridge accept logout tokens MACed with the client secret; only
    /// `oidc.signing_algs` does.
    #[test]
    fn hs256_advertised_by_the_idp_is_refused_under_the_default_policy() {
        let defaults: Vec<CoreJwsSigningAlgorithm> = crate::config::DEFAULT_SIGNING_ALGS
            .iter()
            .map(|name| serde_json::from_value(json!(name)).unwrap())
            .collect();
        assert!(defaults.iter().all(|alg| !alg.uses_shared_secret()));
        let advertised = [
            CoreJwsSigningAlgorithm::HmacSha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::None,
        ];
        let mut r = rules();
        r.allowed_algs = crate::oidc::id_token::acceptable_algs(&advertised, &defaults);
        assert_eq!(
            r.allowed_algs,
            [CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        );
        r.client_secret = Some(SecretString::from(CLIENT_SECRET));
        let h = json!({"alg": "HS256", "typ": "logout+jwt"});
        let token = hs256(&h, &claims(), CLIENT_SECRET);
        assert_eq!(check_with(&token, &r), Err(LogoutTokenError::AlgNotAllowed));
        assert_eq!(
            check_with("eyJhbGciOiAiSFMyNTYifQ..h4g", &r),
            Err(LogoutTokenError::AlgNotAllowed)
        );
        // The RS256 token the IdP's key signed still passes.
        assert!(check_with(&sign(&header(), &claims()), &r).is_ok());

        // Listed explicitly (and advertised), HS256 is accepted again.
        let mut opted_in = defaults.clone();
        opted_in.push(CoreJwsSigningAlgorithm::HmacSha256);
        r.allowed_algs = crate::oidc::id_token::acceptable_algs(&advertised, &opted_in);
        assert!(check_with(&token, &r).is_ok());
    }

    #[test]
    fn crit_header_is_refused() {
        let h = with_header("crit", json!(["exp"]));
        assert_eq!(
            check(&sign(&h, &claims())),
            Err(LogoutTokenError::CriticalHeader)
        );
    }

    #[test]
    fn jwe_and_other_shapes_are_refused() {
        assert_eq!(check("a.b.c.d.e"), Err(LogoutTokenError::Encrypted));
        for token in ["", "abc", "a.b", "a.b.c.d", "...", "a..b.c"] {
            assert_eq!(
                check(token),
                Err(LogoutTokenError::NotCompactJws),
                "{token}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let payload = b64(&claims());
        for header in [
            "not base64!".to_owned(),
            URL_SAFE_NO_PAD.encode(b"not json"),
            b64(&json!(["alg", "RS256"])),
            b64(&json!({"typ": "logout+jwt"})),
            b64(&json!({"alg": 256})),
        ] {
            let token = format!("{header}.{payload}.c2ln");
            assert_eq!(check(&token), Err(LogoutTokenError::MalformedHeader));
        }
    }

    #[test]
    fn codes_and_messages_never_echo_the_token() {
        let token = sign(&header(), &with_claim("aud", json!("x")));
        let error = check(&token).unwrap_err();
        assert_eq!(error.code(), "wrong_audience");
        assert!(!error.to_string().contains(&token[..20]));
    }

    #[test]
    fn replay_horizon_is_exp_plus_skew_or_iat_age_bound() {
        let r = rules();
        let token = check(&sign(&header(), &claims())).unwrap();
        assert_eq!(
            token.replay_horizon(&r),
            token.exp.unwrap() + TimeDelta::seconds(60)
        );
        let no_exp = LogoutToken { exp: None, ..token };
        assert_eq!(
            no_exp.replay_horizon(&r),
            no_exp.iat + TimeDelta::seconds(360)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(token in ".{0,400}") {
            let _ = check(&token);
        }

        #[test]
        fn arbitrary_three_part_tokens_never_panic(
            header in prop::collection::vec(any::<u8>(), 0..64),
            payload in prop::collection::vec(any::<u8>(), 0..128),
            signature in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let token = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload),
                URL_SAFE_NO_PAD.encode(signature)
            );
            prop_assert!(check(&token).is_err());
        }
    }

    proptest! {
        // Each case signs with RSA; a few dozen cases cover the number edge cases.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn arbitrary_claim_values_never_panic(
            iat in any::<i64>(),
            exp in any::<f64>(),
            sub in ".{0,20}",
        ) {
            let mut c = claims();
            c["iat"] = json!(iat);
            c["exp"] = json!(exp);
            c["sub"] = json!(sub);
            let _ = check(&sign(&header(), &c));
        }
    }
}
