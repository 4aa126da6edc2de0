//! OpenID Connect relying party: provider metadata and keys, ID-token and logout-token validation.

pub mod logout_token;
