//! SCIM 2.0 service provider (RFC 7643 schemas, RFC 7644 protocol) under `/scim/v2`: identity
//! providers push users and group memberships, and the bridge turns each change into
//! Discourse admin API calls through the login's mapping and the durable relay.
//!
//! [`filter`] parses filters and PATCH paths, [`patch`] applies PATCH operations, [`schema`]
//! holds the attribute table and discovery documents, [`service`] the operations and their
//! effects, [`handlers`] the HTTP surface and bearer-token check. Off unless `[scim]` is
//! configured. Set-up per identity provider: docs/scim.md.

pub mod error;
pub mod filter;
pub mod handlers;
pub mod patch;
pub mod schema;
pub mod service;

use std::time::Duration;

use secrecy::SecretString;

pub use handlers::router;
pub use service::ScimService;

/// What deactivation (`active: false`, `DELETE`, or an access-policy denial) does besides
/// logging the user out of Discourse (`scim.on_deactivate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDeactivate {
    /// Log out only (`POST /admin/users/{id}/log_out`).
    #[default]
    LogOut,
    /// Log out and suspend (`PUT /admin/users/{id}/suspend`) until `suspend_for` from now;
    /// lifted when the user is active again.
    Suspend,
}

/// `[scim]`, validated. Present only when SCIM is on.
#[derive(Debug, Clone)]
pub struct ScimConfig {
    /// Accepted bearer tokens (several during a rotation); compared in constant time.
    pub tokens: Vec<SecretString>,
    /// The SCIM attribute whose value is the login's subject (default `externalId`).
    pub subject_attribute: String,
    /// The claim that value is put under, the one `[mapping] external_id` reads (default
    /// `sub`; `oid` for Entra ID).
    pub subject_claim: String,
    /// Whether pushed email addresses count as verified (`email_verified` claim).
    pub email_verified: bool,
    pub on_deactivate: OnDeactivate,
    /// Length of a suspension (`on_deactivate = "suspend"`).
    pub suspend_for: Duration,
    /// Reason recorded with a suspension (shown to staff and the user).
    pub suspend_reason: String,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest page of a list (`ServiceProviderConfig` `filter.maxResults`).
    pub max_results: usize,
}

/// Defaults of the optional keys, shared by the configuration and tests.
impl ScimConfig {
    pub const DEFAULT_SUBJECT_ATTRIBUTE: &'static str = "externalId";
    pub const DEFAULT_SUBJECT_CLAIM: &'static str = "sub";
    pub const DEFAULT_SUSPEND_REASON: &'static str = "Deactivated in the identity provider";
    pub const DEFAULT_SUSPEND_FOR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
    pub const DEFAULT_MAX_RESULTS: usize = 200;

    /// A configuration with the defaults and these tokens (for tests and tools).
    pub fn with_tokens(tokens: Vec<SecretString>) -> Self {
        Self {
            tokens,
            subject_attribute: Self::DEFAULT_SUBJECT_ATTRIBUTE.to_owned(),
            subject_claim: Self::DEFAULT_SUBJECT_CLAIM.to_owned(),
            email_verified: true,
            on_deactivate: OnDeactivate::LogOut,
            suspend_for: Self::DEFAULT_SUSPEND_FOR,
            suspend_reason: Self::DEFAULT_SUSPEND_REASON.to_owned(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_results: Self::DEFAULT_MAX_RESULTS,
        }
    }
}
