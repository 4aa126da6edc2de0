//! OpenID Connect relying party: provider metadata and keys, ID-token and logout-token validation.

pub mod authorization;
pub mod client_auth;
pub mod graph;
pub mod id_token;
pub mod issuer_id;
pub mod jwk;
pub mod logout_token;
pub mod provider;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Decodes one part of a compact JWS (the JOSE header or the payload) as RFC 7515 §5.2 steps
/// 2–4 require: base64url without padding, then UTF-8 text that is a complete JSON object
/// (RFC 8259). `None` for anything else, including invalid UTF-8 inside a member nobody reads,
/// which a validator that skips unknown members would never look at.
pub fn decode_jose_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}
