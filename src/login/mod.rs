//! The login flow as a service between the HTTP edge and the protocol core: [`LoginService::start`]
//! turns Discourse's signed request (DiscourseConnect) into an authorization request (OpenID
//! Connect Core §3.1.2 with PKCE, RFC 7636) and the login in flight the browser keeps;
//! [`LoginService::finish`] turns the authorization response (RFC 6749 §4.1.2, RFC 9207 `iss`)
//! and that login into the signed DiscourseConnect answer: replay and expiry checks, code
//! exchange, ID token validation, userinfo policy, mapping, recording the login.
//!
//! No HTTP types here: the handlers in `http::login` extract, call one of these and respond.

mod in_flight;
mod replay;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use openidconnect::Nonce;
use serde::Deserialize;

pub use in_flight::LoginInFlight;

use crate::config::UserinfoMode;
use crate::config::live::LiveMapping;
use crate::discourse::connect::{ConnectSecret, Field, SsoRequest};
use crate::error::AppError;
use crate::login_writer::LoginWriter;
use crate::oidc::id_token::VerifiedIdToken;
use crate::oidc::issuer_id::check_response_issuer;
use crate::oidc::provider::{Provider, ProviderSlot, merge_claims};
use crate::store::{CompletedLogin, LoginRecord, LogoutStore, SessionRecord, UsedStates};

/// How long the bridge keeps a browser's session record (for `id_token_hint` at logout).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The login flow's handles. One per process, shared by every request.
#[derive(Debug)]
pub struct LoginService {
    connect_secret: ConnectSecret,
    /// The forum's `/session/sso_login`, the only allowed `return_sso_url`.
    sso_login_url: url::Url,
    login_timeout: Duration,
    provider: ProviderSlot,
    mapping: Arc<LiveMapping>,
    /// This replica's memory of used states: the fallback while the store fails.
    used_states: UsedStates,
    /// Decides whether a login state was used, on every replica.
    store: Arc<dyn LogoutStore>,
    logins: LoginWriter,
}

/// A started login: where to send the browser, and what it must keep until the callback.
#[derive(Debug)]
pub struct Started {
    /// The authorization request URL.
    pub redirect: url::Url,
    pub login: LoginInFlight,
}

/// The IdP's answer to the authorization request (RFC 6749 §4.1.2, RFC 9207 `iss`).
#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub iss: Option<String>,
}

/// A finished login: the signed answer for Discourse and the bridge session to remember in the
/// browser (its id names the server-side record that holds the ID token for `id_token_hint`).
#[derive(Debug)]
pub struct Finished {
    /// `return_sso_url` with the signed `sso` and `sig` appended.
    pub redirect: String,
    /// The new bridge session's id (random, 128 bits, hex).
    pub session_id: String,
    /// How long the session cookie and record live.
    pub session_lifetime: Duration,
}

/// Everything [`LoginService::new`] needs.
#[derive(Debug)]
pub struct LoginSettings {
    pub connect_secret: ConnectSecret,
    pub sso_login_url: url::Url,
    pub login_timeout: Duration,
}

impl LoginService {
    /// The service over the shared provider, mapping, store and login writer.
    pub fn new(
        settings: LoginSettings,
        provider: ProviderSlot,
        mapping: Arc<LiveMapping>,
        store: Arc<dyn LogoutStore>,
        logins: LoginWriter,
    ) -> Self {
        Self {
            connect_secret: settings.connect_secret,
            sso_login_url: settings.sso_login_url,
            login_timeout: settings.login_timeout,
            provider,
            mapping,
            used_states: UsedStates::default(),
            store,
            logins,
        }
    }

    /// `GET /sso`: verifies Discourse's request (the raw, still percent-encoded query) and
    /// builds a fresh authorization request.
    pub fn start(&self, raw_query: &str, now: DateTime<Utc>) -> Result<Started, AppError> {
        let request = SsoRequest::verify_expecting(
            raw_query,
            &self.connect_secret,
            Some(&self.sso_login_url),
        )?;
        if !is_forum_sso_login(&request.return_sso_url, &self.sso_login_url) {
            return Err(AppError::ForeignReturnUrl {
                expected: self.sso_login_url.to_string(),
                received: request.return_sso_url.chars().take(300).collect(),
            });
        }
        let provider = self.provider()?;
        let authorization = provider.authorization_request();
        let login = LoginInFlight {
            discourse_nonce: request.nonce,
            return_sso_url: request.return_sso_url,
            state: authorization.state.secret().clone(),
            oidc_nonce: authorization.nonce.secret().clone(),
            pkce_verifier: authorization.pkce_verifier.secret().clone(),
            created_at: now.timestamp(),
        };
        metrics::counter!("bridge_logins_started_total").increment(1);
        // The request line (`/sso` → 302) already records the start at `info`.
        tracing::debug!("login started");
        Ok(Started {
            redirect: authorization.url,
            login,
        })
    }

    /// `GET /callback`: finishes `login` (the browser's login in flight for the returned
    /// `state`, if it had one) with the IdP's answer, as of `now`.
    #[tracing::instrument(name = "callback", skip_all, fields(sub, external_id))]
    pub async fn finish(
        &self,
        login: Option<LoginInFlight>,
        params: CallbackParams,
        now: DateTime<Utc>,
    ) -> Result<Finished, AppError> {
        if params.state.is_none() {
            return Err(AppError::BadCallback("no state"));
        }
        let login = login.ok_or(AppError::UnknownLoginState)?;
        let valid_until = login.valid_until(self.login_timeout);
        if !replay::first_use_of_state(
            self.store.as_ref(),
            &self.used_states,
            &login.state,
            now,
            valid_until,
        )
        .await
        {
            return Err(AppError::UnknownLoginState);
        }
        if login.is_expired(now.timestamp(), self.login_timeout) {
            return Err(AppError::LoginExpired {
                timeout: self.login_timeout,
            });
        }
        let provider = self.provider()?;
        // RFC 9207 §2.4, before anything of the response is believed, error responses included:
        // a mismatching `iss`, or none from a provider that announces it, rejects the response.
        check_response_issuer(
            params.iss.as_deref(),
            provider.issuer().as_str(),
            provider.sends_response_issuer(),
        )
        .map_err(|_| AppError::IssuerMismatch)?;
        if let Some(error) = params.error.as_deref() {
            return Err(AppError::IdpRefused {
                code: sanitize_error_code(error),
            });
        }
        let code = params.code.ok_or(AppError::BadCallback("no code"))?;

        let tokens = provider.exchange_code(code, login.pkce_verifier).await?;
        let mut verified = provider
            .verify_id_token(&tokens.id_token, &Nonce::new(login.oidc_nonce), now)
            .await?;
        tracing::Span::current().record("sub", verified.subject.as_str());
        let mapper = self.mapping.mapper();
        let id_token_claims = std::mem::take(&mut verified.claims);
        let access_token = tokens.access_token.clone();
        let claims = claims_with_userinfo(
            &provider,
            &mapper,
            id_token_claims,
            &verified.subject,
            tokens.access_token,
        )
        .await?;
        // Entra groups overage with `groups.overage = "graph"`: ask Microsoft Graph. A failure
        // only makes the groups unknown; the mapping decides what that means.
        let graph = match mapper.graph_lookup(&claims) {
            Some(settings) => Some(
                crate::oidc::graph::member_groups(provider.http(), settings, access_token.secret())
                    .await,
            ),
            None => None,
        };
        let mapped = mapper
            .map_with(&claims, graph.as_ref())
            .inspect_err(|denial| {
                metrics::counter!("bridge_logins_denied_total", "rule" => denial.rule.clone())
                    .increment(1);
            })?;
        let mut payload = mapped.payload;
        payload.set(Field::Nonce, login.discourse_nonce);
        let external_id = payload
            .get(Field::ExternalId)
            .unwrap_or_default()
            .to_owned();
        tracing::Span::current().record("external_id", external_id.as_str());
        let session_id = self
            .record(provider.issuer().as_str(), &verified, external_id, now)
            .await;

        let signed = payload.sign(&self.connect_secret);
        metrics::counter!("bridge_logins_completed_total").increment(1);
        tracing::info!("login completed");
        Ok(Finished {
            redirect: signed.redirect_url(&login.return_sso_url),
            session_id,
            session_lifetime: SESSION_LIFETIME,
        })
    }

    /// Remembers what a back-channel logout will need to find this login again (`iss`, `sub`,
    /// `sid` → `external_id`), and keeps the ID token server-side for `id_token_hint` under a
    /// fresh session id, which it returns. The records go through the group commit
    /// ([`LoginWriter`]); a store failure is logged there, not fatal: the login goes on.
    async fn record(
        &self,
        issuer: &str,
        id_token: &VerifiedIdToken,
        external_id: String,
        now: DateTime<Utc>,
    ) -> String {
        let session_id = hex::encode(rand::random::<[u8; 16]>());
        let login = LoginRecord {
            iss: issuer.to_owned(),
            sub: id_token.subject.clone(),
            sid: id_token.session_id.clone(),
            external_id: external_id.clone(),
            logged_in_at: now,
        };
        let session = SessionRecord {
            id_token: id_token.raw.clone(),
            iss: issuer.to_owned(),
            sub: id_token.subject.clone(),
            sid: id_token.session_id.clone(),
            external_id,
            expires_at: now
                + chrono::Duration::from_std(SESSION_LIFETIME).unwrap_or(chrono::Duration::days(1)),
        };
        self.logins
            .record(CompletedLogin {
                login,
                session_id: session_id.clone(),
                session,
            })
            .await;
        session_id
    }

    fn provider(&self) -> Result<Arc<Provider>, AppError> {
        self.provider.get().ok_or(AppError::NotReady)
    }
}

/// The claims to map: the ID token's, with userinfo merged over them when the policy asks for
/// it (`oidc.userinfo`; `auto` fetches only when a claim the mapping reads is absent).
async fn claims_with_userinfo(
    provider: &Provider,
    mapper: &crate::mapping::Mapper,
    id_token_claims: serde_json::Map<String, serde_json::Value>,
    subject: &str,
    access_token: openidconnect::AccessToken,
) -> Result<serde_json::Map<String, serde_json::Value>, AppError> {
    let fetch = match provider.userinfo_mode() {
        UserinfoMode::Always => true,
        UserinfoMode::Never => false,
        UserinfoMode::Auto => match mapper.first_absent_claim(&id_token_claims) {
            Some(claim) => {
                tracing::debug!(
                    claim,
                    "the ID token lacks a mapped claim: fetching userinfo"
                );
                true
            }
            None => false,
        },
    };
    if !fetch {
        return Ok(id_token_claims);
    }
    let userinfo = provider.userinfo(access_token, subject).await?;
    Ok(merge_claims(&id_token_claims, userinfo))
}

/// True when `url` is exactly the forum's `/session/sso_login` (same scheme, host, port and
/// path; no user info, query or fragment). Anything else would make the bridge an open redirect.
pub fn is_forum_sso_login(url: &str, expected: &url::Url) -> bool {
    // Discourse sends the URL in the serialization `Url` itself produces: skip the parse then.
    if url == expected.as_str() {
        return true;
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    parsed.scheme() == expected.scheme()
        && parsed.host_str() == expected.host_str()
        && parsed.port_or_known_default() == expected.port_or_known_default()
        && parsed.path() == expected.path()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none()
}

/// Keeps an IdP-supplied error code printable and short before it reaches a page or a log.
fn sanitize_error_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_forums_exact_sso_login_url_is_accepted() {
        let expected = url::Url::parse("https://forum.example.com/session/sso_login").unwrap();
        let ok = [
            "https://forum.example.com/session/sso_login",
            "https://forum.example.com:443/session/sso_login",
        ];
        for url in ok {
            assert!(is_forum_sso_login(url, &expected), "{url}");
        }
        let bad = [
            "http://forum.example.com/session/sso_login",
            "https://evil.example.com/session/sso_login",
            "https://forum.example.com.evil.com/session/sso_login",
            "https://forum.example.com:8443/session/sso_login",
            "https://forum.example.com/session/sso_login/../x",
            "https://forum.example.com/session/sso_loginx",
            "https://forum.example.com/other",
            "https://user@forum.example.com/session/sso_login",
            "https://forum.example.com/session/sso_login?next=https://evil",
            "https://forum.example.com/session/sso_login#x",
            "//evil.example.com/session/sso_login",
            "/session/sso_login",
            "",
        ];
        for url in bad {
            assert!(!is_forum_sso_login(url, &expected), "{url}");
        }
    }

    #[test]
    fn a_subfolder_forum_accepts_only_its_own_sso_login_url() {
        let expected = url::Url::parse("https://example.com/forum/session/sso_login").unwrap();
        for url in [
            "https://example.com/forum/session/sso_login",
            "https://example.com:443/forum/session/sso_login",
        ] {
            assert!(is_forum_sso_login(url, &expected), "{url}");
        }
        let bad = [
            // The site's root, another subfolder, and prefixes that only look alike.
            "https://example.com/session/sso_login",
            "https://example.com/forum2/session/sso_login",
            "https://example.com/forum-evil/session/sso_login",
            "https://example.com/foru/session/sso_login",
            "https://example.com/forum/forum/session/sso_login",
            "https://example.com/forum//session/sso_login",
            "https://example.com//forum/session/sso_login",
            // Dot segments that leave the subfolder.
            "https://example.com/forum/../session/sso_login",
            "https://example.com/forum/%2e%2e/session/sso_login",
            "https://example.com/forum/./../session/sso_login",
            // Encoded slashes and backslashes are not separators to the pin.
            "https://example.com/forum%2Fsession%2Fsso_login",
            "https://example.com/forum/session%2Fsso_login",
            "https://example.com%2Fforum/session/sso_login",
            "https://example.com/forum\\..\\session/sso_login",
            "https://example.com/forum/session/sso_login/",
            "https://example.com/forum/session/sso_login;x",
            "https://example.com/FORUM/session/sso_login",
            "https://example.com.evil.com/forum/session/sso_login",
            "https://evil.com/forum/session/sso_login",
            "https://example.com/forum/session/sso_login?return=https://evil.com",
        ];
        for url in bad {
            assert!(!is_forum_sso_login(url, &expected), "{url}");
        }
    }

    #[test]
    fn idp_error_codes_are_sanitized() {
        assert_eq!(sanitize_error_code("access_denied"), "access_denied");
        assert_eq!(sanitize_error_code("<script>x"), "scriptx");
        assert_eq!(sanitize_error_code(&"a".repeat(100)).len(), 64);
    }
}
