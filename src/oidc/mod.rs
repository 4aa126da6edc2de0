//! OpenID Connect relying party: provider metadata and keys, ID-token and logout-token validation.

pub mod authorization;
pub mod client_auth;
pub mod id_token;
pub mod jwk;
pub mod logout_token;
pub mod provider;
