//! The IdP's public keys (RFC 7517 JWKs) as the bridge verifies with them: openidconnect's
//! [`CoreJsonWebKey`], but with JWS signatures (RFC 7515, algorithms of RFC 7518 §3 and RFC 8037)
//! checked by ring instead of the `rsa`/`p256`/`ed25519-dalek` crates openidconnect uses.
//!
//! Why: an RS256 check with the `rsa` crate costs about 180 µs of CPU, nearly all of an ID
//! token's validation; ring does the same check in about a tenth of that (docs/benchmarks.md).
//!
//! [`VerifyingKey`] deserializes and serializes exactly as [`CoreJsonWebKey`] (it wraps one) and
//! answers every [`JsonWebKey`] question from it. Only [`JsonWebKey::verify_signature`] differs:
//! it first applies openidconnect's fitness rules (`use` must allow signatures, `kty` must be
//! the algorithm's, a pinned `alg` must be the token's, the curve must be the algorithm's), then
//! verifies with ring for RS256/384/512, PS256/384/512, ES256, ES384 (fixed-size `r||s`) and
//! EdDSA over Ed25519. Everything else goes to the wrapped key unchanged, so nothing that
//! verified before stops verifying:
//! - HS256/384/512 (the client secret), ES512 (P-521, which openidconnect refuses anyway).
//! - RSA keys outside what ring accepts: moduli under 2048 bits (the `rsa` crate sets no lower
//!   bound, so IdPs with 1024-bit keys keep working, at the old cost), and public exponents that
//!   are even, below 3 or above 2³³−1. The bridge does not judge the IdP's key size: refusing
//!   such a key would break logins that work today, for a property the IdP owner controls.
//! - Malformed key material (wrong coordinate lengths, missing `n`/`e`/`x`/`y`), so the error
//!   is openidconnect's own.
//!
//! Two deliberate differences from openidconnect, both about keys, never about signatures:
//! - RSA moduli of 4097–8192 bits verify (ring's limit); the `rsa` crate refused them as "modulus
//!   too large".
//! - An EC point that is not on its curve, or an Ed25519 key that does not decode, is refused as
//!   [`SignatureVerificationError::CryptoError`] rather than `InvalidKey`: ring does not tell a
//!   bad key from a bad signature. Both refuse; callers treat both as "does not verify".
//!
//! PSS signatures use a salt as long as the hash, as RFC 7518 §3.5 requires and as both
//! libraries enforce.
//!
//! Before any signature reaches a library, its length is checked against the one the algorithm
//! and key produce (RFC 7518 §3.2: the full HMAC output; §3.3/§3.5: the modulus length; §3.4:
//! `2 × ceil(curve bits / 8)`; RFC 8037 §3.1: 64 bytes). A signature of another length is refused
//! as [`SignatureVerificationError::CryptoError`] without a library seeing it: openidconnect's
//! HMAC check panics on a MAC shorter or longer than the hash (a slice-to-array conversion), and
//! the bridge's validators are the first code an unauthenticated request reaches.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJsonWebKeyType, CoreJsonWebKeyUse,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeySet, JsonWebKeyUse,
    JwsSigningAlgorithm, SignatureVerificationError,
};
use ring::signature::{self as ring_sig, RsaParameters, RsaPublicKeyComponents};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The IdP's key set, with keys that verify through ring.
pub type VerifyingKeySet = JsonWebKeySet<VerifyingKey>;

/// One public key of the IdP's JWKS. See the module documentation for what ring verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    jwk: CoreJsonWebKey,
    /// The key material in the form ring takes, decoded once when the key set is loaded;
    /// `None` when ring cannot use this key. Shared because openidconnect clones key sets.
    ring: Option<Arc<RingPublicKey>>,
    /// Length in bytes of an RSA key's modulus (leading zero bytes removed), which is the length
    /// of every RS*/PS* signature it makes; `None` for other keys or an unreadable `n`.
    rsa_modulus_len: Option<usize>,
}

/// Public key material ring can verify with.
#[derive(Debug)]
enum RingPublicKey {
    /// Modulus and exponent without leading zero bytes, within ring's limits.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point (`04 || x || y`).
    P256(Vec<u8>),
    /// Uncompressed SEC1 point (`04 || x || y`).
    P384(Vec<u8>),
    /// The 32-byte public key.
    Ed25519(Vec<u8>),
}

/// The ring check for one signature: RSA takes components, the others an encoded key.
enum RingCheck<'a> {
    Rsa(&'static RsaParameters, &'a [u8], &'a [u8]),
    Encoded(&'static dyn ring_sig::VerificationAlgorithm, &'a [u8]),
}

impl VerifyingKey {
    /// The wrapped openidconnect key.
    pub fn as_core(&self) -> &CoreJsonWebKey {
        &self.jwk
    }

    /// Whether a signature with `alg` is checked by ring (rather than by openidconnect's own
    /// code), given that the key fits the algorithm.
    pub fn verifies_with_ring(&self, alg: &CoreJwsSigningAlgorithm) -> bool {
        fits_signing_alg(self, alg) && self.ring_check(alg).is_some()
    }

    fn ring_check(&self, alg: &CoreJwsSigningAlgorithm) -> Option<RingCheck<'_>> {
        use CoreJwsSigningAlgorithm as Alg;
        let check = match (alg, self.ring.as_deref()?) {
            (Alg::RsaSsaPkcs1V15Sha256, RingPublicKey::Rsa { n, e }) => {
                RingCheck::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA256, n, e)
            }
            (Alg::RsaSsaPkcs1V15Sha384, RingPublicKey::Rsa { n, e }) => {
                RingCheck::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA384, n, e)
            }
            (Alg::RsaSsaPkcs1V15Sha512, RingPublicKey::Rsa { n, e }) => {
                RingCheck::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA512, n, e)
            }
            (Alg::RsaSsaPssSha256, RingPublicKey::Rsa { n, e }) => {
                RingCheck::Rsa(&ring_sig::RSA_PSS_2048_8192_SHA256, n, e)
            }
            (Alg::RsaSsaPssSha384, RingPublicKey::Rsa { n, e }) => {
                RingCheck::Rsa(&ring_sig::RSA_PSS_2048_8192_SHA384, n, e)
            }
            (Alg::RsaSsaPssSha512, RingPublicKey::Rsa { n, e }) => {
                RingCheck::Rsa(&ring_sig::RSA_PSS_2048_8192_SHA512, n, e)
            }
            (Alg::EcdsaP256Sha256, RingPublicKey::P256(point)) => {
                RingCheck::Encoded(&ring_sig::ECDSA_P256_SHA256_FIXED, point)
            }
            (Alg::EcdsaP384Sha384, RingPublicKey::P384(point)) => {
                RingCheck::Encoded(&ring_sig::ECDSA_P384_SHA384_FIXED, point)
            }
            (Alg::EdDsa, RingPublicKey::Ed25519(key)) => {
                RingCheck::Encoded(&ring_sig::ED25519, key)
            }
            _ => return None,
        };
        Some(check)
    }
}

impl From<CoreJsonWebKey> for VerifyingKey {
    fn from(jwk: CoreJsonWebKey) -> Self {
        let ring = ring_public_key(&jwk).map(Arc::new);
        let rsa_modulus_len = rsa_modulus_len(&jwk);
        Self {
            jwk,
            ring,
            rsa_modulus_len,
        }
    }
}

/// The only signature length `alg` can produce with `key` (RFC 7518 §3, RFC 8037 §3.1), or
/// `None` when the key does not say: an RSA key without a readable modulus or an EC key ring
/// cannot use (both refused by openidconnect without a panic), ES512 (unsupported) and `none`.
pub fn signature_len(key: &VerifyingKey, alg: &CoreJwsSigningAlgorithm) -> Option<usize> {
    use CoreJwsSigningAlgorithm as Alg;
    match alg {
        Alg::HmacSha256 => Some(32),
        Alg::HmacSha384 => Some(48),
        Alg::HmacSha512 => Some(64),
        // On a key of another curve openidconnect answers `InvalidKey` before it reads the
        // signature (and its EC checks take any length without panicking).
        Alg::EcdsaP256Sha256 => {
            matches!(key.ring.as_deref(), Some(RingPublicKey::P256(_))).then_some(64)
        }
        Alg::EcdsaP384Sha384 => {
            matches!(key.ring.as_deref(), Some(RingPublicKey::P384(_))).then_some(96)
        }
        Alg::EdDsa => Some(64),
        Alg::RsaSsaPkcs1V15Sha256
        | Alg::RsaSsaPkcs1V15Sha384
        | Alg::RsaSsaPkcs1V15Sha512
        | Alg::RsaSsaPssSha256
        | Alg::RsaSsaPssSha384
        | Alg::RsaSsaPssSha512 => key.rsa_modulus_len,
        _ => None,
    }
}

/// The same key set with keys that verify through ring (discovery documents carry
/// openidconnect's own key type).
pub fn key_set_from_core(keys: &CoreJsonWebKeySet) -> VerifyingKeySet {
    VerifyingKeySet::new(
        keys.keys()
            .iter()
            .cloned()
            .map(VerifyingKey::from)
            .collect(),
    )
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("jwk", &self.jwk)
            .field("ring", &self.ring.is_some())
            .finish()
    }
}

/// Two keys are equal when their JWKs are: the ring form is derived from the JWK.
impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.jwk == other.jwk
    }
}
impl Eq for VerifyingKey {}

impl Serialize for VerifyingKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.jwk.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for VerifyingKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CoreJsonWebKey::deserialize(deserializer).map(Self::from)
    }
}

impl JsonWebKey for VerifyingKey {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.jwk.key_id()
    }

    fn key_type(&self) -> &CoreJsonWebKeyType {
        self.jwk.key_type()
    }

    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.jwk.key_use()
    }

    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.jwk.signing_alg()
    }

    fn new_symmetric(key: Vec<u8>) -> Self {
        Self::from(CoreJsonWebKey::new_symmetric(key))
    }

    fn verify_signature(
        &self,
        signature_alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        // Attacker-chosen lengths never reach a library (see the module documentation). A key
        // that does not fit the algorithm is refused by openidconnect before it reads the
        // signature, with its own error.
        let fits = fits_signing_alg(self, signature_alg);
        if fits && signature_len(self, signature_alg).is_some_and(|len| len != signature.len()) {
            return Err(SignatureVerificationError::CryptoError(
                "the signature has the wrong length for its algorithm".to_owned(),
            ));
        }
        // A key that does not fit goes to openidconnect, which refuses it with its own message.
        let check = if fits {
            self.ring_check(signature_alg)
        } else {
            None
        };
        let verified = match check {
            None => return self.jwk.verify_signature(signature_alg, message, signature),
            Some(RingCheck::Rsa(params, n, e)) => {
                RsaPublicKeyComponents { n, e }.verify(params, message, signature)
            }
            Some(RingCheck::Encoded(algorithm, key)) => {
                ring_sig::UnparsedPublicKey::new(algorithm, key).verify(message, signature)
            }
        };
        verified.map_err(|ring::error::Unspecified| {
            SignatureVerificationError::CryptoError("bad signature".to_owned())
        })
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.jwk.hash_bytes(bytes, alg)
    }
}

/// Whether `key` may verify `alg` signatures: openidconnect's rule (its own check is private).
/// `use`, when present, must allow signatures; `kty` must be the algorithm's; an `alg` on the
/// key must be this algorithm (and not an encryption algorithm).
pub fn fits_signing_alg<K>(key: &K, alg: &CoreJwsSigningAlgorithm) -> bool
where
    K: JsonWebKey<SigningAlgorithm = CoreJwsSigningAlgorithm>,
{
    let use_ok = key
        .key_use()
        .is_none_or(|key_use| key_use.allows_signature());
    let kty_ok = alg.key_type().as_ref() == Some(key.key_type());
    let alg_ok = match key.signing_alg() {
        JsonWebKeyAlgorithm::Unspecified => true,
        JsonWebKeyAlgorithm::Algorithm(key_alg) => key_alg == alg,
        JsonWebKeyAlgorithm::Unsupported => false,
    };
    use_ok && kty_ok && alg_ok
}

/// Decodes the key material ring needs, exactly as openidconnect holds it. The JWK's fields are
/// private to openidconnect, so they are read back from its serialization (once per key).
fn ring_public_key(jwk: &CoreJsonWebKey) -> Option<RingPublicKey> {
    let Ok(Value::Object(fields)) = serde_json::to_value(jwk) else {
        return None;
    };
    let bytes = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
    };
    let curve = fields.get("crv").and_then(Value::as_str);
    match jwk.key_type() {
        CoreJsonWebKeyType::RSA => rsa_public_key(&bytes("n")?, &bytes("e")?),
        CoreJsonWebKeyType::EllipticCurve => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            let point = |len: usize| {
                (x.len() == len && y.len() == len).then(|| [&[0x04][..], &x, &y].concat())
            };
            match curve? {
                "P-256" => point(32).map(RingPublicKey::P256),
                "P-384" => point(48).map(RingPublicKey::P384),
                _ => None,
            }
        }
        CoreJsonWebKeyType::OctetKeyPair => {
            let x = bytes("x")?;
            (curve? == "Ed25519" && x.len() == 32).then_some(RingPublicKey::Ed25519(x))
        }
        _ => None,
    }
}

/// The modulus length of an RSA JWK, read like [`ring_public_key`] reads it.
fn rsa_modulus_len(jwk: &CoreJsonWebKey) -> Option<usize> {
    if *jwk.key_type() != CoreJsonWebKeyType::RSA {
        return None;
    }
    let Ok(Value::Object(fields)) = serde_json::to_value(jwk) else {
        return None;
    };
    let n = fields
        .get("n")
        .and_then(Value::as_str)
        .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())?;
    Some(strip_leading_zeros(&n).len())
}

/// RSA components ring will take for its `*_2048_8192_*` algorithms (checked here so that a
/// key ring would refuse falls back to openidconnect instead of failing as a bad signature):
/// an odd modulus of 256 to 1024 bytes and an odd exponent from 3 to 2³³−1.
fn rsa_public_key(n: &[u8], e: &[u8]) -> Option<RingPublicKey> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let n_ok = (256..=1024).contains(&n.len()) && n.last().is_some_and(|b| b & 1 == 1);
    let e_value = (e.len() <= 5).then(|| e.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)));
    let e_ok = e_value.is_some_and(|v| (3..=(1u64 << 33) - 1).contains(&v) && v & 1 == 1);
    (n_ok && e_ok).then(|| RingPublicKey::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(test)]
mod tests {
    use std::mem::discriminant;

    use openidconnect::PrivateSigningKey;
    use openidconnect::core::{
        CoreEdDsaPrivateSigningKey, CoreHmacKey, CoreJsonCurveType, CoreRsaPrivateSigningKey,
    };
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair as _};
    use serde_json::json;

    use super::*;
    use CoreJwsSigningAlgorithm as Alg;

    /// Test-only RSA-2048 key (generated once with `openssl genrsa -traditional 2048`).
    const RSA_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAqwG5gWKZppATR3RKdS947DhVGw6ofEUKOoKmKkVelHzqUybH
s/4+J31Q9cnQcFot3/lujacDgxkInDYXtq/XvtpXXTH71aB2qQ3KNwioEjI89hrD
7PFHH727ytanMnBDFRnjZYi6nIvmh70kldOPx3UPkDfEsAjSNEQ9lyxng5RynJs9
rL1JWeT85Vrjxoq2MZA7coUHbOGgXVFWCP/3jF2McNNr+Tryy0IGOy28TYJmNh01
fhAOwHlWvcZqDj8fCoVDqsTCw2UBZbLQRU/0MHdfpAFoEg399vgusV3eTq+OCHqC
wPW9W+vUTxxMR6eXDY6wY4pEh2ggxOX0vDp7jQIDAQABAoIBAAEXDwKRs+f9SR/j
0E/Jrt84U1/j3/uMtzXtsy4g8aVBt4r1lEcTHd4Gq5IQ9Kbb1jU3VuwqbZJNpoBB
8Pe1fT7qWLmmW8ZeH+siVqezP7ZC7z682EYGiBetXzs50yhzGqdRo1s1Vd6fBkBd
QibffXdIjHXZUJZGfXP3jd6rKSzPND8TBTHKRIYns8wrYdDoadR9vpuaZdzn0VX4
a1FESNxmz8VQa/TB3f19ZWdfZZ2Rjlk8HMDKEXg9NsPDzqoNkC92cdFUi0N6gveO
TpaJPicyrhRQxtVadDiFn89bNBZM/0OnrTDbdXOML3423t8n0H4oLRcuVRupnO9n
sXYxMb0CgYEA2bcVnuqVUf3RaLrUNTPQ9hEcJY3KtE20rK+tWrimSFwZGO77E7qQ
Y0YBy3E9Z78z4jCxzGSgS/bb81Ogsh6QvCvjWPAHeegvFwcy+FGxgEK+0vfnvFJ+
uFMnUnVmPjj1WmyVHMlu91BCmUsZQvV7bS6VFPSVzzs3OpeALBKCVhcCgYEAyRP1
rvP5yQ3K4+DLNNvi4WSAE4zcrSHwbfyT7mAH163TxHbXxUUbUps/6l0DetycAui+
nIRnosrja0b0lArazHUyZH3Sixx6p3mz5pvcPkIgHbOon0RUYl5B0ZDut1qKpDIu
tN1crm9Fq9DPkVgdB7ffMW97y4dk2ncDnW3vZfsCgYAMgeUfFRDw/ejq4FjSmaB2
knMQgT3U7+XiSdFmtdbvr0LN2OTZtE0ZNutheabyb9yWMP/14w4Gby8hontH4FOm
S8sqz9dOHJWf+AzokSDmYm8+BXntqruW8UgAB7iQ+Iq34CcM2VGjqZu53MOdwiaO
FjAAXTDCD//TQOLfJU0RjwKBgQDDFfpno43U4uzV6mM9BZk51KfuT9xKnYMHMubT
f5gcSSoMksEFQ+ceXkHEwDmAGknDCMzmTg++gdnjWxQwDdf6Rjp+BRUgoqDdm9ZP
ByjHvqAqMQSIgWLdjVWOXW89tTqN06I9GAeztYGDETRRb4u60UpaTC9vaA0RaCa5
ts9twQKBgBfu0efPg/UPDEEFghCXLYk9/us3+wvr3cIsZIAYKwuIO0T3TDe6Bzk8
DOo54KgedxFjGGeQ5IA6HVNxIkmLcyeKRWwBYT4txEnZprco+DFfeFjQtgnXpxnn
f/XedpYdogM7NhwZhlQwQKnzR7yQGpnb4jRmp1PrniD51PwYz785
-----END RSA PRIVATE KEY-----
";

    /// A second test-only RSA-2048 key, for "signed by another key".
    const OTHER_RSA_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEA3fEw5fWi6DEvwOWcSvdXDizmVINSXTUYZg8L6FYzZYXXCF7F
dO5WRBDT+yrO7UHCBr3WsxsZT4HiJ1aP/oYs8W6CAh0SaQQaaqmpEQv0mhnV4Ol4
KVQGGU5tSxLwzppqmWW8fBpBCgAxMGoFj5QYlBw8lOzRfwtGCZSQOsE+ddp2M7q4
6kidGo1hjm+t3WIP4tv51AyafgphcirfkMeFG6g+29cvbuckh9X3LihvgWtYNQ8s
/PWvDfZEMma6FFRzdfZCxBYOdR3TdqaxFdRF/JFtJBrzcKacgXtHTGh5Tbrch0Rp
i7B+1UBx4nXULR3I4D4n4lNHJ+dz8x6xzE1l2QIDAQABAoIBAAiqhU1FZSIJ4aJ3
lL28oLKWADxmkE3BZ/18MuvUidc5/aZ/BNjHAalQuuZAyqmq+qeGvB5sPXXETY9Z
qu+2T4Tx2rO4bOKa3WkyzL40qE1oGtjYZO/ALyjHzi6zQ6Hdl7H7rftujwGT9le8
nBD6KGeIHrl18cwzJX30Rhl1ODojxgI0E9MukVRpQGdbmlwvnTnhJsfxoP4/xS2V
M2FLueGHmHF0p9vARidkiCkI+VekpHWfS/VkoZl2ZKOyKYVPxLQqeMfU5DongG57
h80fEa58pM8v8qgPMNGUQ5B7+AHVsxmwErcuRnGQGktT+pLBnOYrNRzN6/YxQVxu
MXVt1DECgYEA8GcVfAoU6iRTcnoiNO4rTFko6qia2xBXs+TPHTlP1WjPjQ5rFvMG
m/+MPMVamqbKQAJh9ceapuuzt7U2XcjEi1XloGxmM36UeAT35jI6p82zIb/Dk3cZ
9ACO4uU4NCpYjZzA7d8pPFJbj7udBge6F37pUClCfRaElDUSPN6xZc0CgYEA7Fd9
uDKx5a8KVXVXARvVfA+DkxyY+Cmx71ezGNNnwy4/PMBoQ0KKm/kp3EQThVx7RP0u
G6DwSnNK14JpKTpTlOY5jjROT7Q83mWU9D1yuPAcfTpzAFYzb4Edfz0eafjlkOcx
6TD7JIQKNldwRjgtmzGAiBcy7RH2+fvq2s5EtD0CgYBQSDyWhc9iOetcKYlO39K5
1nShmNjOG3EOdHTuL3uHq07UrmH48gPdCMRObyHIz7ZvFdyc9aGh6MjFqtCTFT79
wRvELS8cN0NhqVcYGuIXs8wEk0O+9WFHaQBOqXnRgeq8sAKF7aaZrG9DWsYfg2kT
+5/y0zSPDXwM+oQyq7PWaQKBgCyyFxqAq9gOFFw5Bq01AFin7nAh1mQILphe84Xc
ZSEqW9c3ZABkUyZQJrR7Q13TMZTIdLHQ6+CIkTzUcuLTHv9n0rar+atlIKXGfDb8
b/e9oQWlyh3kL3IE7vkjK99KrM+MiYnaM4SiW/QO8TK2aRmScQZLrNvcq+J22+Fp
ZODZAoGBAJWtOyh0oSVfSMfeWpNUN5IZ7qiFYKNzqx6cLw9wNLWP5ctuuZ+e6yw0
DTlbrvmGMoCQoG3MF4XT3tP3C1dvDc8tOc0JMEe1z/zdgUMSmGlwRJmayrObTDVd
95RlzADyM765+oXGusGUa2urI0rLIPM2/jHOuAUnuEKRpXCKMRRI
-----END RSA PRIVATE KEY-----
";

    /// A test-only RSA-1024 key (`openssl genrsa -traditional 1024`): below ring's minimum.
    const SMALL_RSA_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXAIBAAKBgQCv3iMOMo7MdyzZgsn7TMbgwtBaMUMkwyn745CT6ijqDirqkdT7
LqhoPymG5hXhluPJMHCJKNkqOODV357w0tvk/1HEk/ZfQwGIEp5FyUcYMCshd+7a
z5ajM/GfkUSNw76HSvpghPM+PGGDg7V/QK7mtARNnjn+UzN2Ox4aULum+QIDAQAB
AoGAdu3yqOQ5uz2Qf9s5eg7WoyI7QfL0ZATy/FtM5yo/1uAT16Mc82v/CNhF3er0
uySOD/0I7UhJa4shSKC73EHL33ZqO9gF7oHAWDZDN3PjFmpLUybftASvQRv2pGcw
/0ev/BRNDy7BGgLOBrSbmFu9eaN0oPEto+t7Te032CjjLwECQQDU2E6abpJPBkX+
k+YDc9EAiqUSv7q8SUGD5WPzv2NDGASY2AcqvrO7KErbFplovNWZ7p0V2MiYni4T
q5R6pw1hAkEA04aH92f1Y5YXlw5g9M/6YdGWc3VKadjYiiag4u0J37/9vDgDXgz1
FvTm65nZevWoUHqHrZTfYM/zDH2ccj2omQJALBFxDNZx4ny5B0GV8QcMseEC1oPt
5MgCEY3wCOqKYbzaTs8DhN0hF1H7VaszLhVS4GEgEwLkXXz6q0XuIwrtYQJAe9/R
SIZNIuEHN6NoDHav/xEqtrr9tTcUuPMeTUbb/XkGM2/qKO4VqjgJ8/fJcUTkKR1Y
z8LbfmrJv4rgT9bkIQJBAK6+fdZ1lfuqZenN871gGNUzMf0laJJRcJRIbGv1zY24
ecyXxN07mrGKkg+esBpAo9LPh8Jrsw7VEyetCDjodog=
-----END RSA PRIVATE KEY-----
";

    /// Test-only Ed25519 keys (`openssl genpkey -algorithm ed25519`).
    const ED25519_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICC/wFB02jCXhOctwsZdVwyW99B1WWImbYOLBjzT80g0
-----END PRIVATE KEY-----
";
    const OTHER_ED25519_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOW1tVPjtIKsupZj2MMdU3RrfnMLeK9VN6cMPyVxXOoc
-----END PRIVATE KEY-----
";

    /// A JWS signing input, as the signature covers it.
    const MESSAGE: &[u8] =
        b"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJtYXJpYSIsIm5vbmNlIjoibiJ9";

    /// Every algorithm ring checks.
    const RING_ALGS: [Alg; 9] = [
        Alg::RsaSsaPkcs1V15Sha256,
        Alg::RsaSsaPkcs1V15Sha384,
        Alg::RsaSsaPkcs1V15Sha512,
        Alg::RsaSsaPssSha256,
        Alg::RsaSsaPssSha384,
        Alg::RsaSsaPssSha512,
        Alg::EcdsaP256Sha256,
        Alg::EcdsaP384Sha384,
        Alg::EdDsa,
    ];

    /// Which of the two test keys of a kind signs.
    #[derive(Clone, Copy)]
    enum Signer {
        Main,
        Other,
    }

    fn rsa_key(pem: &str) -> CoreRsaPrivateSigningKey {
        CoreRsaPrivateSigningKey::from_pem(pem, None).unwrap()
    }

    /// An ECDSA key pair made by ring (openidconnect has no ECDSA signing key), as a signature
    /// over `message` and the public JWK, which openidconnect verifies with the `p256`/`p384`
    /// crates.
    fn ecdsa_signed(alg: &Alg, message: &[u8]) -> (CoreJsonWebKey, Vec<u8>) {
        let rng = SystemRandom::new();
        let (signing, crv) = match alg {
            Alg::EcdsaP256Sha256 => (
                &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                CoreJsonCurveType::P256,
            ),
            _ => (
                &ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                CoreJsonCurveType::P384,
            ),
        };
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let half = (point.len() - 1) / 2;
        let jwk = CoreJsonWebKey::new_ec(
            point[1..=half].to_vec(),
            point[half + 1..].to_vec(),
            crv,
            None,
        );
        let signature = pair.sign(&rng, message).unwrap().as_ref().to_vec();
        (jwk, signature)
    }

    /// A signature over `message` with `alg` and the public JWK of the key that made it.
    fn signed_by(signer: Signer, alg: &Alg, message: &[u8]) -> (CoreJsonWebKey, Vec<u8>) {
        let (rsa_pem, ed_pem) = match signer {
            Signer::Main => (RSA_KEY_PEM, ED25519_KEY_PEM),
            Signer::Other => (OTHER_RSA_KEY_PEM, OTHER_ED25519_KEY_PEM),
        };
        match alg {
            Alg::EcdsaP256Sha256 | Alg::EcdsaP384Sha384 => ecdsa_signed(alg, message),
            Alg::EdDsa => {
                let key = CoreEdDsaPrivateSigningKey::from_ed25519_pem(ed_pem, None).unwrap();
                (key.as_verification_key(), key.sign(alg, message).unwrap())
            }
            _ => {
                let key = rsa_key(rsa_pem);
                (key.as_verification_key(), key.sign(alg, message).unwrap())
            }
        }
    }

    fn signed(alg: &Alg) -> (CoreJsonWebKey, Vec<u8>) {
        signed_by(Signer::Main, alg, MESSAGE)
    }

    /// openidconnect's verdict and ours on the same key, algorithm, message and signature.
    fn verdicts(
        jwk: &CoreJsonWebKey,
        alg: &Alg,
        message: &[u8],
        signature: &[u8],
    ) -> [Result<(), SignatureVerificationError>; 2] {
        [
            jwk.verify_signature(alg, message, signature),
            VerifyingKey::from(jwk.clone()).verify_signature(alg, message, signature),
        ]
    }

    fn assert_both_accept(jwk: &CoreJsonWebKey, alg: &Alg, message: &[u8], signature: &[u8]) {
        let [theirs, ours] = verdicts(jwk, alg, message, signature);
        assert!(theirs.is_ok(), "openidconnect refused {alg:?}: {theirs:?}");
        assert!(ours.is_ok(), "ring refused {alg:?}: {ours:?}");
    }

    /// Both refuse, with the same error variant.
    fn assert_both_refuse(jwk: &CoreJsonWebKey, alg: &Alg, message: &[u8], signature: &[u8]) {
        let [theirs, ours] = verdicts(jwk, alg, message, signature);
        let (Err(theirs), Err(ours)) = (theirs, ours) else {
            panic!("{alg:?}: expected both to refuse");
        };
        assert_eq!(
            discriminant(&theirs),
            discriminant(&ours),
            "{alg:?}: openidconnect said {theirs:?}, we said {ours:?}"
        );
    }

    /// The JWK as JSON with `edit` applied, read back as openidconnect's key.
    fn edited(jwk: &CoreJsonWebKey, edit: impl FnOnce(&mut Value)) -> CoreJsonWebKey {
        let mut value = serde_json::to_value(jwk).unwrap();
        edit(&mut value);
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_ring_algorithm_verifies_with_ring_and_with_openidconnect() {
        for alg in &RING_ALGS {
            let (jwk, signature) = signed(alg);
            assert!(
                VerifyingKey::from(jwk.clone()).verifies_with_ring(alg),
                "{alg:?}"
            );
            assert_both_accept(&jwk, alg, MESSAGE, &signature);
        }
    }

    #[test]
    fn a_tampered_message_fails_with_both() {
        for alg in &RING_ALGS {
            let (jwk, signature) = signed(alg);
            let mut message = MESSAGE.to_vec();
            message[40] ^= 0x01;
            assert_both_refuse(&jwk, alg, &message, &signature);
            assert_both_refuse(&jwk, alg, &MESSAGE[..MESSAGE.len() - 1], &signature);
        }
    }

    #[test]
    fn a_tampered_or_truncated_signature_fails_with_both() {
        for alg in &RING_ALGS {
            let (jwk, signature) = signed(alg);
            for index in [0, signature.len() / 2, signature.len() - 1] {
                let mut tampered = signature.clone();
                tampered[index] ^= 0x40;
                assert_both_refuse(&jwk, alg, MESSAGE, &tampered);
            }
            assert_both_refuse(&jwk, alg, MESSAGE, &signature[..signature.len() - 1]);
            assert_both_refuse(&jwk, alg, MESSAGE, &[]);
        }
    }

    #[test]
    fn a_signature_by_another_key_fails_with_both() {
        for alg in &RING_ALGS {
            let (jwk, _) = signed(alg);
            let (_, signature) = signed_by(Signer::Other, alg, MESSAGE);
            assert_both_refuse(&jwk, alg, MESSAGE, &signature);
        }
    }

    #[test]
    fn a_signature_of_another_algorithm_fails_with_both() {
        // RS256 signature presented as RS512, PS256 as RS256: same key, wrong padding or hash.
        let (jwk, rs256) = signed(&Alg::RsaSsaPkcs1V15Sha256);
        assert_both_refuse(&jwk, &Alg::RsaSsaPkcs1V15Sha512, MESSAGE, &rs256);
        assert_both_refuse(&jwk, &Alg::RsaSsaPssSha256, MESSAGE, &rs256);
        let (_, ps256) = signed(&Alg::RsaSsaPssSha256);
        assert_both_refuse(&jwk, &Alg::RsaSsaPkcs1V15Sha256, MESSAGE, &ps256);
    }

    #[test]
    fn a_key_of_another_type_or_curve_is_refused_like_openidconnect() {
        let (rsa, rs256) = signed(&Alg::RsaSsaPkcs1V15Sha256);
        let (p256, es256) = signed(&Alg::EcdsaP256Sha256);
        let (p384, _) = signed(&Alg::EcdsaP384Sha384);
        let (ed25519, eddsa) = signed(&Alg::EdDsa);
        let mismatches = [
            (&p256, Alg::RsaSsaPkcs1V15Sha256, &rs256),
            (&ed25519, Alg::RsaSsaPssSha256, &rs256),
            (&rsa, Alg::EcdsaP256Sha256, &es256),
            (&p384, Alg::EcdsaP256Sha256, &es256),
            (&p256, Alg::EcdsaP384Sha384, &es256),
            (&p256, Alg::EdDsa, &eddsa),
            (&ed25519, Alg::EcdsaP256Sha256, &es256),
        ];
        for (jwk, alg, signature) in mismatches {
            assert!(!VerifyingKey::from(jwk.clone()).verifies_with_ring(&alg));
            assert_both_refuse(jwk, &alg, MESSAGE, signature);
            let [theirs, _] = verdicts(jwk, &alg, MESSAGE, signature);
            assert!(matches!(
                theirs,
                Err(SignatureVerificationError::InvalidKey(_))
            ));
        }
    }

    #[test]
    fn a_key_for_encryption_is_refused_like_openidconnect() {
        for alg in &RING_ALGS {
            let (jwk, signature) = signed(alg);
            for key_use in ["enc", "something-else"] {
                let jwk = edited(&jwk, |v| v["use"] = json!(key_use));
                assert!(!VerifyingKey::from(jwk.clone()).verifies_with_ring(alg));
                assert_both_refuse(&jwk, alg, MESSAGE, &signature);
            }
            // Without `use` the key may sign.
            let jwk = edited(&jwk, |v| {
                v.as_object_mut().unwrap().remove("use");
            });
            assert_both_accept(&jwk, alg, MESSAGE, &signature);
        }
    }

    #[test]
    fn a_key_pinned_to_another_alg_is_refused_like_openidconnect() {
        let (jwk, ps256) = signed(&Alg::RsaSsaPssSha256);
        let pinned = edited(&jwk, |v| v["alg"] = json!("RS256"));
        assert!(!VerifyingKey::from(pinned.clone()).verifies_with_ring(&Alg::RsaSsaPssSha256));
        assert_both_refuse(&pinned, &Alg::RsaSsaPssSha256, MESSAGE, &ps256);
        // A content-encryption algorithm is no signing algorithm.
        let for_encryption = edited(&jwk, |v| v["alg"] = json!("A128GCM"));
        assert_both_refuse(&for_encryption, &Alg::RsaSsaPssSha256, MESSAGE, &ps256);
        // Pinned to the token's algorithm, it verifies, with ring.
        let fitting = edited(&jwk, |v| v["alg"] = json!("PS256"));
        assert!(VerifyingKey::from(fitting.clone()).verifies_with_ring(&Alg::RsaSsaPssSha256));
        assert_both_accept(&fitting, &Alg::RsaSsaPssSha256, MESSAGE, &ps256);

        let (p256, es256) = signed(&Alg::EcdsaP256Sha256);
        let pinned = edited(&p256, |v| v["alg"] = json!("ES384"));
        assert_both_refuse(&pinned, &Alg::EcdsaP256Sha256, MESSAGE, &es256);
    }

    #[test]
    fn a_modulus_with_a_leading_zero_byte_verifies_with_ring() {
        let (jwk, signature) = signed(&Alg::RsaSsaPkcs1V15Sha256);
        let padded = edited(&jwk, |v| {
            let n = URL_SAFE_NO_PAD.decode(v["n"].as_str().unwrap()).unwrap();
            v["n"] = json!(URL_SAFE_NO_PAD.encode([&[0u8][..], &n].concat()));
        });
        assert!(VerifyingKey::from(padded.clone()).verifies_with_ring(&Alg::RsaSsaPkcs1V15Sha256));
        assert_both_accept(&padded, &Alg::RsaSsaPkcs1V15Sha256, MESSAGE, &signature);
    }

    #[test]
    fn rsa_keys_under_2048_bits_keep_verifying_through_openidconnect() {
        let key = rsa_key(SMALL_RSA_KEY_PEM);
        let jwk = key.as_verification_key();
        for alg in [Alg::RsaSsaPkcs1V15Sha256, Alg::RsaSsaPssSha256] {
            let signature = key.sign(&alg, MESSAGE).unwrap();
            assert!(!VerifyingKey::from(jwk.clone()).verifies_with_ring(&alg));
            assert_both_accept(&jwk, &alg, MESSAGE, &signature);
            let mut tampered = signature.clone();
            tampered[3] ^= 0x01;
            assert_both_refuse(&jwk, &alg, MESSAGE, &tampered);
        }
    }

    #[test]
    fn rsa_exponents_ring_refuses_go_to_openidconnect() {
        // e = 2^33 + 1 is within neither library's range: openidconnect's error, not ring's.
        let (jwk, signature) = signed(&Alg::RsaSsaPkcs1V15Sha256);
        let huge_e = edited(&jwk, |v| {
            v["e"] = json!(URL_SAFE_NO_PAD.encode([2, 0, 0, 0, 1]))
        });
        assert!(!VerifyingKey::from(huge_e.clone()).verifies_with_ring(&Alg::RsaSsaPkcs1V15Sha256));
        assert_both_refuse(&huge_e, &Alg::RsaSsaPkcs1V15Sha256, MESSAGE, &signature);
        let [theirs, _] = verdicts(&huge_e, &Alg::RsaSsaPkcs1V15Sha256, MESSAGE, &signature);
        assert!(matches!(
            theirs,
            Err(SignatureVerificationError::InvalidKey(_))
        ));
        // An even exponent: ring refuses the key, so openidconnect decides.
        let even_e = edited(&jwk, |v| v["e"] = json!(URL_SAFE_NO_PAD.encode([1, 0, 0])));
        assert!(!VerifyingKey::from(even_e.clone()).verifies_with_ring(&Alg::RsaSsaPkcs1V15Sha256));
        assert_both_refuse(&even_e, &Alg::RsaSsaPkcs1V15Sha256, MESSAGE, &signature);
    }

    #[test]
    fn hmac_and_p521_are_left_to_openidconnect() {
        let secret = b"a client secret for HS256 tests".to_vec();
        let signature = CoreHmacKey::new(secret.clone())
            .sign(&Alg::HmacSha256, MESSAGE)
            .unwrap();
        let jwk = CoreJsonWebKey::new_symmetric(secret);
        assert!(!VerifyingKey::new_symmetric(b"x".to_vec()).verifies_with_ring(&Alg::HmacSha256));
        assert_both_accept(&jwk, &Alg::HmacSha256, MESSAGE, &signature);
        let mut tampered = signature.clone();
        tampered[0] ^= 0x01;
        assert_both_refuse(&jwk, &Alg::HmacSha256, MESSAGE, &tampered);

        let p521 = CoreJsonWebKey::new_ec(vec![1; 66], vec![2; 66], CoreJsonCurveType::P521, None);
        assert!(!VerifyingKey::from(p521.clone()).verifies_with_ring(&Alg::EcdsaP521Sha512));
        assert_both_refuse(&p521, &Alg::EcdsaP521Sha512, MESSAGE, &[7; 132]);
    }

    #[test]
    fn a_mac_of_the_wrong_length_is_refused_without_reaching_openidconnect() {
        // openidconnect converts the MAC to a fixed-size array and panics when its length is
        // not the hash's: a 2-byte MAC under HS256 took down a worker (issue 15, fault 1).
        let key = VerifyingKey::new_symmetric(b"a client secret for HS256 tests".to_vec());
        for (alg, len) in [
            (Alg::HmacSha256, 32),
            (Alg::HmacSha384, 48),
            (Alg::HmacSha512, 64),
        ] {
            for wrong in [0, 1, 2, len - 1, len + 1, 2 * len] {
                let result = key.verify_signature(&alg, MESSAGE, &vec![0x87; wrong]);
                assert!(
                    matches!(result, Err(SignatureVerificationError::CryptoError(_))),
                    "{alg:?} with {wrong} bytes: {result:?}"
                );
            }
            assert!(key.verify_signature(&alg, MESSAGE, &vec![0; len]).is_err());
        }
    }

    #[test]
    fn every_signature_length_but_the_algorithms_is_refused_up_front() {
        for alg in &RING_ALGS {
            let (jwk, signature) = signed(alg);
            let key = VerifyingKey::from(jwk);
            assert_eq!(signature_len(&key, alg), Some(signature.len()), "{alg:?}");
            for len in [0, 1, signature.len() - 1, signature.len() + 1] {
                let mut resized = signature.clone();
                resized.resize(len, 0);
                assert!(matches!(
                    key.verify_signature(alg, MESSAGE, &resized),
                    Err(SignatureVerificationError::CryptoError(_))
                ));
            }
        }
        // Keys below ring's RSA range are measured too.
        let small = rsa_key(SMALL_RSA_KEY_PEM);
        let signature = small.sign(&Alg::RsaSsaPkcs1V15Sha256, MESSAGE).unwrap();
        let key = VerifyingKey::from(small.as_verification_key());
        assert_eq!(
            signature_len(&key, &Alg::RsaSsaPkcs1V15Sha256),
            Some(signature.len())
        );
    }

    #[test]
    fn malformed_key_material_is_left_to_openidconnect() {
        let (p256, es256) = signed(&Alg::EcdsaP256Sha256);
        let short_x = edited(&p256, |v| v["x"] = json!(URL_SAFE_NO_PAD.encode([9; 31])));
        let no_y = edited(&p256, |v| {
            v.as_object_mut().unwrap().remove("y");
        });
        let (rsa, rs256) = signed(&Alg::RsaSsaPkcs1V15Sha256);
        let no_n = edited(&rsa, |v| {
            v.as_object_mut().unwrap().remove("n");
        });
        for (jwk, alg, signature) in [
            (&short_x, Alg::EcdsaP256Sha256, &es256),
            (&no_y, Alg::EcdsaP256Sha256, &es256),
            (&no_n, Alg::RsaSsaPkcs1V15Sha256, &rs256),
        ] {
            assert!(!VerifyingKey::from(jwk.clone()).verifies_with_ring(&alg));
            assert_both_refuse(jwk, &alg, MESSAGE, signature);
        }
    }

    #[test]
    fn a_key_set_reads_and_writes_like_openidconnects() {
        let (rsa, _) = signed(&Alg::RsaSsaPkcs1V15Sha256);
        let (p256, _) = signed(&Alg::EcdsaP256Sha256);
        let (ed25519, _) = signed(&Alg::EdDsa);
        let document = json!({"keys": [
            edited(&rsa, |v| { v["kid"] = json!("rsa"); v["alg"] = json!("RS256"); }),
            edited(&p256, |v| v["kid"] = json!("ec")),
            edited(&ed25519, |v| v["kid"] = json!("okp")),
            edited(&rsa, |v| { v["kid"] = json!("enc"); v["use"] = json!("enc"); }),
            // Unknown key type and junk: skipped by both.
            {"kty": "XYZ", "kid": "unknown"},
            {"kid": "no-kty"},
            "not an object",
            // Unknown members are ignored, a malformed `n` reads as absent.
            {"kty": "RSA", "kid": "odd", "n": 17, "e": "AQAB", "x5t": "abc"},
        ]});
        let theirs: CoreJsonWebKeySet = serde_json::from_value(document.clone()).unwrap();
        let ours: VerifyingKeySet = serde_json::from_value(document).unwrap();
        assert_eq!(ours.keys().len(), 5);
        assert_eq!(
            serde_json::to_value(&ours).unwrap(),
            serde_json::to_value(&theirs).unwrap()
        );
        assert_eq!(ours, key_set_from_core(&theirs));
        for (our_key, their_key) in ours.keys().iter().zip(theirs.keys()) {
            assert_eq!(our_key.as_core(), their_key);
            assert_eq!(our_key.key_id(), their_key.key_id());
        }
        let ring_kinds: Vec<bool> = ours.keys().iter().map(|k| k.ring.is_some()).collect();
        assert_eq!(ring_kinds, [true, true, true, true, false]);
    }

    #[test]
    fn hash_bytes_is_openidconnects() {
        // Used for `at_hash`/`c_hash`; must not change.
        for alg in &RING_ALGS {
            let (jwk, _) = signed(alg);
            let ours = VerifyingKey::from(jwk.clone());
            assert_eq!(ours.hash_bytes(MESSAGE, alg), jwk.hash_bytes(MESSAGE, alg));
        }
    }
}
