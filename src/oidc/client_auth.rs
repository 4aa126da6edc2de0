//! Client authentication at the token endpoint with a signed JWT, `private_key_jwt` (OpenID
//! Connect Core §9, RFC 7523 §2.2 and §3): the key from `[oidc] client_key_file` (RSA or EC
//! P-256/P-384, PEM), its `kid` from `[oidc] client_key_id` or the key's RFC 7638 thumbprint,
//! the algorithm chosen from the IdP's `token_endpoint_auth_signing_alg_values_supported`, and a
//! fresh assertion (new `jti`, `exp` one minute ahead, `aud` the token endpoint) per request.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use rustls::SignatureScheme;
use rustls::sign::SigningKey;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::outbound::{self, PemFileError};

/// The `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for one request and clock differences the IdP
/// tolerates, short enough that a captured one is useless soon.
pub const ASSERTION_LIFETIME: chrono::Duration = chrono::Duration::seconds(60);

/// The key family, which fixes the algorithms it can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
}

/// A JWS algorithm the bridge can sign assertions with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningAlg {
    /// The JWS `alg` name (RFC 7518 §3.1).
    pub name: &'static str,
    scheme: SignatureScheme,
    /// ECDSA signatures are produced in DER and sent as fixed-width `R || S` (RFC 7518 §3.4).
    ecdsa_width: Option<usize>,
}

const RSA_ALGS: [SigningAlg; 6] = [
    SigningAlg::plain("RS256", SignatureScheme::RSA_PKCS1_SHA256),
    SigningAlg::plain("PS256", SignatureScheme::RSA_PSS_SHA256),
    SigningAlg::plain("RS384", SignatureScheme::RSA_PKCS1_SHA384),
    SigningAlg::plain("PS384", SignatureScheme::RSA_PSS_SHA384),
    SigningAlg::plain("RS512", SignatureScheme::RSA_PKCS1_SHA512),
    SigningAlg::plain("PS512", SignatureScheme::RSA_PSS_SHA512),
];

impl SigningAlg {
    const fn plain(name: &'static str, scheme: SignatureScheme) -> Self {
        Self {
            name,
            scheme,
            ecdsa_width: None,
        }
    }
}

/// Why an assertion could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error(
        "the identity provider accepts signed client assertions only with {advertised}, none of \
         which the {kind:?} key in oidc.client_key_file can make (it can: {possible})"
    )]
    NoCommonAlgorithm {
        kind: KeyKind,
        advertised: String,
        possible: String,
    },
    #[error("signing the client assertion failed")]
    Signing,
}

/// The loaded client key. Cheap to clone.
#[derive(Clone)]
pub struct ClientKey {
    key: Arc<dyn SigningKey>,
    kind: KeyKind,
    /// The `kid` header: configured, or the RFC 7638 thumbprint.
    pub kid: String,
    /// The public key as a JWK (for the IdP's client registration), without `kid`.
    pub public_jwk: serde_json::Value,
    /// `x5t` and `x5t#S256` header values (SHA-1 and SHA-256 of the certificate, base64url),
    /// when a certificate for the key is configured: Entra ID finds certificate credentials by
    /// them rather than by `kid`.
    x5t: Option<(String, String)>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("kind", &self.kind)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Reads the key from `path`; `kid` defaults to the RFC 7638 SHA-256 thumbprint.
    pub fn load(path: &Path, kid: Option<String>) -> Result<Self, PemFileError> {
        let key = outbound::load_signing_key(path)?;
        let unsupported = || PemFileError::UnsupportedKey {
            path: path.display().to_string(),
        };
        let spki = key.public_key().ok_or_else(unsupported)?;
        let (kind, public_jwk) = match key.algorithm() {
            rustls::SignatureAlgorithm::RSA => {
                let public = rsa::RsaPublicKey::from_public_key_der(spki.as_ref())
                    .map_err(|_| unsupported())?;
                let jwk = json!({
                    "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                });
                (KeyKind::Rsa, jwk)
            }
            rustls::SignatureAlgorithm::ECDSA => {
                let info = rsa::pkcs8::spki::SubjectPublicKeyInfoRef::try_from(spki.as_ref())
                    .map_err(|_| unsupported())?;
                let point = info.subject_public_key.raw_bytes();
                let (kind, crv, width) = match point.len() {
                    65 => (KeyKind::P256, "P-256", 32),
                    97 => (KeyKind::P384, "P-384", 48),
                    _ => return Err(unsupported()),
                };
                let (x, y) = point
                    .get(1..=width)
                    .zip(point.get(width + 1..))
                    .ok_or_else(unsupported)?;
                let jwk = json!({
                    "crv": crv,
                    "kty": "EC",
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                });
                (kind, jwk)
            }
            _ => return Err(unsupported()),
        };
        let kid = kid.unwrap_or_else(|| thumbprint(&public_jwk));
        Ok(Self {
            key,
            kind,
            kid,
            public_jwk,
            x5t: None,
        })
    }

    /// Adds the `x5t` / `x5t#S256` headers of the certificate in `cert_file` (its first one),
    /// after checking the key belongs to it.
    pub fn with_certificate(
        mut self,
        cert_file: &Path,
        key_file: &Path,
    ) -> Result<Self, PemFileError> {
        outbound::ClientIdentity::load(cert_file, key_file)?;
        let certs = outbound::load_certs(cert_file)?;
        if let Some(leaf) = certs.first() {
            let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf.as_ref());
            self.x5t = Some((
                URL_SAFE_NO_PAD.encode(sha1.as_ref()),
                URL_SAFE_NO_PAD.encode(Sha256::digest(leaf.as_ref())),
            ));
        }
        Ok(self)
    }

    /// The key family.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The algorithms this key can sign with, preferred first.
    pub fn possible_algs(&self) -> Vec<SigningAlg> {
        match self.kind {
            KeyKind::Rsa => RSA_ALGS.to_vec(),
            KeyKind::P256 => vec![SigningAlg {
                name: "ES256",
                scheme: SignatureScheme::ECDSA_NISTP256_SHA256,
                ecdsa_width: Some(32),
            }],
            KeyKind::P384 => vec![SigningAlg {
                name: "ES384",
                scheme: SignatureScheme::ECDSA_NISTP384_SHA384,
                ecdsa_width: Some(48),
            }],
        }
    }

    /// The first algorithm this key can sign with that the IdP advertises. With no
    /// `token_endpoint_auth_signing_alg_values_supported` in discovery, the key's first one
    /// (RS256 or ES256/ES384), which every IdP implementing `private_key_jwt` accepts.
    pub fn choose_alg(&self, advertised: Option<&[String]>) -> Result<SigningAlg, ClientAuthError> {
        let possible = self.possible_algs();
        let chosen = match advertised {
            None => possible.first().copied(),
            Some(names) => possible
                .iter()
                .find(|alg| names.iter().any(|name| name == alg.name))
                .copied(),
        };
        chosen.ok_or_else(|| ClientAuthError::NoCommonAlgorithm {
            kind: self.kind,
            advertised: advertised.unwrap_or_default().join(", "),
            possible: possible
                .iter()
                .map(|alg| alg.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// A fresh client assertion (RFC 7523 §3): `iss` = `sub` = `client_id`, `aud` = the token
    /// endpoint, a random `jti`, `iat` = `now`, `exp` = `now` + [`ASSERTION_LIFETIME`].
    pub fn assertion(
        &self,
        alg: SigningAlg,
        client_id: &str,
        token_endpoint: &str,
        now: DateTime<Utc>,
    ) -> Result<String, ClientAuthError> {
        let mut jti = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut jti);
        let mut header = json!({ "alg": alg.name, "typ": "JWT", "kid": self.kid });
        if let (Some((sha1, sha256)), Some(fields)) = (&self.x5t, header.as_object_mut()) {
            fields.insert("x5t".to_owned(), json!(sha1));
            fields.insert("x5t#S256".to_owned(), json!(sha256));
        }
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": token_endpoint,
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "iat": now.timestamp(),
            "exp": (now + ASSERTION_LIFETIME).timestamp(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signer = self
            .key
            .choose_scheme(&[alg.scheme])
            .ok_or(ClientAuthError::Signing)?;
        let signature = signer
            .sign(signing_input.as_bytes())
            .map_err(|_| ClientAuthError::Signing)?;
        let signature = match alg.ecdsa_width {
            Some(width) => ecdsa_der_to_fixed(&signature, width).ok_or(ClientAuthError::Signing)?,
            None => signature,
        };
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order, no
/// whitespace (serde_json's map is ordered and compact), base64url.
fn thumbprint(jwk: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.to_string().as_bytes()))
}

/// An ECDSA signature `SEQUENCE { INTEGER r, INTEGER s }` (DER) as `r || s`, each left-padded to
/// `width` bytes (RFC 7518 §3.4). `None` for anything malformed.
fn ecdsa_der_to_fixed(der: &[u8], width: usize) -> Option<Vec<u8>> {
    fn read_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
        let (&first, rest) = bytes.split_first()?;
        if first < 0x80 {
            return Some((usize::from(first), rest));
        }
        if first == 0x81 {
            let (&len, rest) = rest.split_first()?;
            return Some((usize::from(len), rest));
        }
        None
    }
    fn read_int(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = bytes.split_first()?;
        if tag != 0x02 {
            return None;
        }
        let (len, rest) = read_len(rest)?;
        let int = rest.get(..len)?;
        Some((int, rest.get(len..)?))
    }
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (len, body) = read_len(rest)?;
    if body.len() != len {
        return None;
    }
    let (r, rest) = read_int(body)?;
    let (s, rest) = read_int(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = vec![0u8; 2 * width];
    for (int, offset) in [(r, 0), (s, width)] {
        let int = match int.iter().position(|&b| b != 0) {
            Some(start) => &int[start..],
            None => &[],
        };
        if int.len() > width {
            return None;
        }
        out.get_mut(offset + width - int.len()..offset + width)?
            .copy_from_slice(int);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(pem: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.pem");
        std::fs::write(&path, pem).unwrap();
        (dir, path)
    }

    fn parts(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>) {
        let mut it = jwt.split('.');
        let header = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
        let claims = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
        let sig = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
        (
            serde_json::from_slice(&header).unwrap(),
            serde_json::from_slice(&claims).unwrap(),
            sig,
        )
    }

    #[test]
    fn ec_assertions_verify_with_the_public_key_and_carry_the_rfc7523_claims() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (_dir, path) = key_file(&pair.serialize_pem());
        let key = ClientKey::load(&path, None).unwrap();
        assert_eq!(key.kind(), KeyKind::P256);
        let alg = key
            .choose_alg(Some(&["RS256".to_owned(), "ES256".to_owned()]))
            .unwrap();
        assert_eq!(alg.name, "ES256");
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let jwt = key
            .assertion(alg, "bridge", "https://idp.example/token", now)
            .unwrap();
        let (header, claims, sig) = parts(&jwt);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid.as_str());
        assert_eq!(claims["iss"], "bridge");
        assert_eq!(claims["sub"], "bridge");
        assert_eq!(claims["aud"], "https://idp.example/token");
        assert_eq!(claims["exp"], 1_800_000_060);
        assert_eq!(sig.len(), 64);
        let input = jwt.rsplit_once('.').unwrap().0;
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            pair.public_key_raw(),
        );
        public.verify(input.as_bytes(), &sig).unwrap();
        let again = key
            .assertion(alg, "bridge", "https://idp.example/token", now)
            .unwrap();
        assert_ne!(
            parts(&again).1["jti"],
            claims["jti"],
            "every assertion has a fresh jti"
        );
    }

    #[test]
    fn rsa_keys_sign_rs256_and_refuse_an_ec_only_idp() {
        // rcgen cannot generate RSA keys with ring: a fixed test key, used nowhere else.
        let pem = include_str!("../../tests/fixtures/keys/rsa-client.pem");
        let (_dir, path) = key_file(pem);
        let key = ClientKey::load(&path, Some("configured".to_owned())).unwrap();
        assert_eq!(key.kid, "configured");
        assert_eq!(key.choose_alg(None).unwrap().name, "RS256");
        assert_eq!(
            key.choose_alg(Some(&["PS256".to_owned()])).unwrap().name,
            "PS256"
        );
        let error = key.choose_alg(Some(&["ES256".to_owned()])).unwrap_err();
        assert!(error.to_string().contains("ES256"), "{error}");
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let alg = key.choose_alg(None).unwrap();
        let jwt = key.assertion(alg, "c", "https://idp/token", now).unwrap();
        let (header, _, sig) = parts(&jwt);
        assert_eq!(header["alg"], "RS256");
        let public =
            rsa::RsaPublicKey::from_public_key_der(key.key.public_key().unwrap().as_ref()).unwrap();
        let input = jwt.rsplit_once('.').unwrap().0;
        let digest = Sha256::digest(input.as_bytes());
        public
            .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
            .unwrap();
    }

    #[test]
    fn the_default_kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 §3.1's example key and thumbprint.
        let jwk = json!({
            "e": "AQAB",
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn malformed_ecdsa_signatures_are_refused_not_panicked_on() {
        for der in [
            &[][..],
            &[0x30],
            &[0x30, 0x02, 0x02, 0x00],
            &[0x31, 0x00],
            &[0x30, 0x81],
        ] {
            assert_eq!(ecdsa_der_to_fixed(der, 32), None, "{der:?}");
        }
        let ok = [0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07];
        let fixed = ecdsa_der_to_fixed(&ok, 2).unwrap();
        assert_eq!(fixed, [0, 5, 0, 7]);
        let too_long = [0x30, 0x07, 0x02, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07];
        assert_eq!(ecdsa_der_to_fixed(&too_long, 1), None);
    }
}
