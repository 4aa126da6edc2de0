//! RFC 9207 (OAuth 2.0 Authorization Server Issuer Identification) on the authorization
//! response that reaches `/callback`: the discovery field that announces support and the check
//! of the `iss` response parameter. Pure: no I/O.
//!
//! The rules of RFC 9207 §2.4 for clients, all enforced by [`check_response_issuer`]:
//! - When the response carries `iss`, it is compared with the issuer the authorization request
//!   was sent to, as a simple string (RFC 3986 §6.2.1) after the URL decoding of the query; a
//!   mismatch rejects the response and the code is never redeemed.
//! - When the provider announces `authorization_response_iss_parameter_supported: true` in its
//!   metadata (§3), a response without `iss` is rejected.
//! - Error responses are no exception (§2): an error that names another issuer, or none when
//!   one is required, is not attributed to the configured provider.

use openidconnect::{AdditionalProviderMetadata, LogoutProviderMetadata, ProviderMetadata};
use serde::{Deserialize, Serialize};

/// The discovery fields of RFC 9207 §3, read beside RP-Initiated Logout's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct IssuerIdMetadata {
    /// Whether the provider puts `iss` in every authorization response. Absent means no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for IssuerIdMetadata {}

/// Provider metadata with RP-Initiated Logout's `end_session_endpoint` and RFC 9207's flag.
pub type BridgeProviderMetadata = ProviderMetadata<
    LogoutProviderMetadata<IssuerIdMetadata>,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreClientAuthMethod,
    openidconnect::core::CoreClaimName,
    openidconnect::core::CoreClaimType,
    openidconnect::core::CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreResponseMode,
    openidconnect::core::CoreResponseType,
    openidconnect::core::CoreSubjectIdentifierType,
>;

/// Why an authorization response's issuer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseIssuerError {
    /// `iss` names another issuer (RFC 9207 §2.4).
    #[error("the authorization response names another issuer")]
    Mismatch,
    /// The provider announces RFC 9207 support, and the response has no `iss` (§2.4).
    #[error("the authorization response has no iss, which the provider announces it sends")]
    Missing,
}

/// Checks the `iss` parameter of an authorization response (success or error) against the
/// issuer the request went to (`expected`, exactly as discovery states it).
pub fn check_response_issuer(
    received: Option<&str>,
    expected: &str,
    provider_sends_iss: bool,
) -> Result<(), ResponseIssuerError> {
    match received {
        Some(iss) if iss == expected => Ok(()),
        Some(_) => Err(ResponseIssuerError::Mismatch),
        None if provider_sends_iss => Err(ResponseIssuerError::Missing),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://idp.example/realms/forum";

    #[test]
    fn a_matching_iss_passes_and_any_other_text_is_a_mismatch() {
        assert_eq!(check_response_issuer(Some(ISSUER), ISSUER, true), Ok(()));
        assert_eq!(check_response_issuer(Some(ISSUER), ISSUER, false), Ok(()));
        for other in [
            "https://idp.example/realms/forum/",
            "https://IDP.example/realms/forum",
            "https://idp.example/realms/other",
            "",
        ] {
            for announced in [true, false] {
                assert_eq!(
                    check_response_issuer(Some(other), ISSUER, announced),
                    Err(ResponseIssuerError::Mismatch),
                    "{other:?}"
                );
            }
        }
    }

    #[test]
    fn a_missing_iss_is_refused_only_when_the_provider_announces_it() {
        assert_eq!(
            check_response_issuer(None, ISSUER, true),
            Err(ResponseIssuerError::Missing)
        );
        assert_eq!(check_response_issuer(None, ISSUER, false), Ok(()));
    }

    #[test]
    fn the_discovery_flag_is_read_and_defaults_to_absent() {
        let with: IssuerIdMetadata = serde_json::from_str(
            r#"{"authorization_response_iss_parameter_supported": true, "other": 1}"#,
        )
        .unwrap();
        assert_eq!(
            with.authorization_response_iss_parameter_supported,
            Some(true)
        );
        let without: IssuerIdMetadata = serde_json::from_str("{}").unwrap();
        assert_eq!(without.authorization_response_iss_parameter_supported, None);
    }
}
