//! [`LoginInFlight`]: what the callback needs to finish a login that `/sso` started (Discourse's
//! nonce and `return_sso_url`, the OAuth `state`, the OIDC `nonce`, the PKCE verifier and the
//! start time). The HTTP layer seals it into the browser's login cookie (`http::cookies`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Everything the callback needs, sealed in the login cookie. The short serde names keep the
/// cookie small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginInFlight {
    /// Discourse's nonce, echoed back in the answer.
    #[serde(rename = "dn")]
    pub discourse_nonce: String,
    /// Where Discourse wants the answer (already checked against the configured forum).
    #[serde(rename = "ru")]
    pub return_sso_url: String,
    /// OAuth `state` sent to the IdP.
    #[serde(rename = "st")]
    pub state: String,
    /// OIDC `nonce` the ID token must carry.
    #[serde(rename = "on")]
    pub oidc_nonce: String,
    /// PKCE code verifier.
    #[serde(rename = "pv")]
    pub pkce_verifier: String,
    /// Unix seconds when the login started.
    #[serde(rename = "ct")]
    pub created_at: i64,
}

impl LoginInFlight {
    /// True when the login started longer than `timeout` before `now` (Unix seconds), or in
    /// the future.
    pub fn is_expired(&self, now: i64, timeout: Duration) -> bool {
        let age = now.saturating_sub(self.created_at);
        age < 0 || age as u64 > timeout.as_secs()
    }

    /// The last second (Unix) at which this login can still be finished.
    pub fn valid_until(&self, timeout: Duration) -> i64 {
        self.created_at
            .saturating_add(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX))
    }

    /// Constant-time comparison of the stored state with the one the IdP sent back.
    pub fn state_matches(&self, returned_state: &str) -> bool {
        self.state
            .as_bytes()
            .ct_eq(returned_state.as_bytes())
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(created_at: i64) -> LoginInFlight {
        LoginInFlight {
            discourse_nonce: "cb68251eefb5211e58c00ff1395f0c0b".into(),
            return_sso_url: "https://forum.example.com/session/sso_login".into(),
            state: "state-abc".into(),
            oidc_nonce: "nonce-xyz".into(),
            pkce_verifier: "verifier".into(),
            created_at,
        }
    }

    #[test]
    fn expiry_is_inclusive_of_the_timeout_and_rejects_future_starts() {
        let login = sample(1_000);
        let timeout = Duration::from_secs(600);
        assert!(!login.is_expired(1_000, timeout));
        assert!(!login.is_expired(1_600, timeout));
        assert!(login.is_expired(1_601, timeout));
        assert!(
            login.is_expired(999, timeout),
            "a start in the future is not trusted"
        );
        assert_eq!(login.valid_until(timeout), 1_600);
    }

    #[test]
    fn state_comparison_requires_the_exact_state() {
        let login = sample(0);
        assert!(login.state_matches("state-abc"));
        assert!(!login.state_matches("state-abd"));
        assert!(!login.state_matches("state-ab"));
        assert!(!login.state_matches(""));
    }
}
