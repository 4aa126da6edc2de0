//! OpenID Connect relying party: provider metadata and keys, ID-token and logout-token validation.

pub mod authorization;
pub mod client_auth;
pub mod graph;
pub mod id_token;
pub mod issuer_id;
pub mod jwk;
pub mod logout_token;
pub mod provider;
