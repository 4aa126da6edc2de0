//! Logout in both directions as a service between the HTTP edge and the protocol core:
//! - [`LogoutService::accept_backchannel`]: OpenID Connect Back-Channel Logout 1.0 §2.5–§2.8 —
//!   validate the logout token, find the Discourse users of that IdP session, and remember its
//!   `jti` and queue their log-out (one transaction) for the relay into Discourse's admin API;
//! - [`LogoutService::start`] and [`LogoutService::finished`]: RP-Initiated Logout 1.0 —
//!   Discourse's `logout_redirect` sends the browser here and the bridge ends the IdP session
//!   too, with the ID token it kept as `id_token_hint`.
//!
//! No HTTP types here: the handlers in `http::logout` extract, call one of these and respond.

use std::str::FromStr as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use openidconnect::core::CoreIdToken;
use openidconnect::{ClientId, CsrfToken, LogoutRequest, PostLogoutRedirectUrl};
use subtle::ConstantTimeEq as _;

use crate::error::AppError;
use crate::login_writer::LoginWriter;
use crate::oidc::logout_token::LogoutTokenError;
use crate::oidc::provider::ProviderSlot;
use crate::relay::RelayHandle;
use crate::store::{LogoutStore, RelayJob, RelayReason, StoreError};

/// Why a back-channel logout request was not accepted. The HTTP edge answers each with its
/// status and JSON body (§2.8): 400 `invalid_request`, or 5xx `temporarily_unavailable` so
/// that the IdP may try again.
#[derive(Debug, thiserror::Error)]
pub enum BackchannelError {
    /// The request is not a form with exactly one valid `logout_token`; the code names why
    /// (`content_type_not_form`, `missing_logout_token`, or a [`LogoutTokenError::code`]).
    #[error("back-channel logout rejected: {0}")]
    Invalid(&'static str),
    /// Discovery has not succeeded yet.
    #[error("identity provider discovery has not succeeded yet")]
    NotReady,
    /// The store failed.
    #[error("store unavailable for back-channel logout")]
    Store(#[from] StoreError),
}

impl From<LogoutTokenError> for BackchannelError {
    fn from(error: LogoutTokenError) -> Self {
        BackchannelError::Invalid(error.code())
    }
}

/// What `GET /logout` does next.
#[derive(Debug)]
pub enum LogoutStart {
    /// Send the browser to the IdP's `end_session_endpoint`, remembering `state` until it
    /// comes back to `/logged-out`.
    AtIdp { redirect: url::Url, state: String },
    /// No IdP logout (not advertised, not configured, or discovery pending): the bridge's own
    /// part is done.
    Done,
}

/// Everything [`LogoutService::new`] needs from the configuration.
#[derive(Debug)]
pub struct LogoutSettings {
    /// `logout.rp_initiated`: use the IdP's `end_session_endpoint` on `/logout`.
    pub rp_initiated: bool,
    pub client_id: String,
    /// Where the IdP returns the browser: `public_url` + `/logged-out`.
    pub post_logout_url: url::Url,
}

/// The logout flows' handles. One per process, shared by every request.
#[derive(Debug)]
pub struct LogoutService {
    settings: LogoutSettings,
    provider: ProviderSlot,
    store: Arc<dyn LogoutStore>,
    /// The relay into Discourse, when `api_key` and `api_username` are set.
    relay: Option<RelayHandle>,
    logins: LoginWriter,
}

impl LogoutService {
    /// The service over the shared provider, store, relay and login writer.
    pub fn new(
        settings: LogoutSettings,
        provider: ProviderSlot,
        store: Arc<dyn LogoutStore>,
        relay: Option<RelayHandle>,
        logins: LoginWriter,
    ) -> Self {
        Self {
            settings,
            provider,
            store,
            relay,
            logins,
        }
    }

    /// `POST /backchannel-logout`: validates `token` as of `now`, refuses a replayed `jti`
    /// quietly (already done), and queues the log-out of every Discourse user of that IdP
    /// session. Answers fast; delivery happens in the relay.
    pub async fn accept_backchannel(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), BackchannelError> {
        let provider = self.provider.get().ok_or(BackchannelError::NotReady)?;
        let logout = provider.verify_logout_token(token, now).await?;
        let horizon = logout.replay_horizon(provider.logout_rules());
        // Logins still in the group commit's queue must be found too.
        self.logins.flush().await;
        let (iss, sub, sid) = (&logout.iss, logout.sub.as_deref(), logout.sid.as_deref());
        let external_ids = self.store.resolve_external_ids(iss, sub, sid).await?;
        if self.relay.is_none() && !external_ids.is_empty() {
            tracing::warn!(
                "logout relay is off (no discourse.api_key/api_username): Discourse sessions stay"
            );
        }
        let jobs: Vec<RelayJob> = match &self.relay {
            Some(_) => external_ids
                .iter()
                .map(|id| RelayJob::new(id.clone(), RelayReason::BackchannelLogout, now))
                .collect(),
            None => Vec::new(),
        };
        // The jti and the jobs are written together: a token answered with a 5xx is not yet
        // remembered, so the IdP's retry is processed in full, never taken for a replay.
        if !self
            .store
            .accept_logout(&logout.iss, &logout.jti, horizon, &jobs)
            .await?
        {
            tracing::info!(jti = %logout.jti, "replayed logout token ignored");
            return Ok(());
        }
        if let Some(relay) = &self.relay {
            relay.notify();
        }
        tracing::info!(
            sub = logout.sub.as_deref().unwrap_or(""),
            sid_present = logout.sid.is_some(),
            users = external_ids.len(),
            "back-channel logout accepted"
        );
        Ok(())
    }

    /// `GET /logout`: forgets the bridge session `session_id` (the browser's, if it had one)
    /// and, when the IdP supports it, builds the end-session request with `id_token_hint`.
    pub async fn start(
        &self,
        session_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<LogoutStart, AppError> {
        let session = match session_id {
            Some(id) => {
                self.logins.flush().await;
                self.store.take_session(&id, now).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not read the bridge session");
                    None
                })
            }
            None => None,
        };
        let end_session = self
            .provider
            .get()
            .filter(|_| self.settings.rp_initiated)
            .and_then(|p| p.end_session_endpoint().cloned());
        let Some(end_session) = end_session else {
            tracing::info!("logged out (no IdP end-session endpoint)");
            return Ok(LogoutStart::Done);
        };
        let post_logout = PostLogoutRedirectUrl::from_url(self.settings.post_logout_url.clone());
        let state = CsrfToken::new_random();
        let mut request = LogoutRequest::from(end_session)
            .set_client_id(ClientId::new(self.settings.client_id.clone()))
            .set_post_logout_redirect_uri(post_logout)
            .set_state(state.clone());
        if let Some(hint) = session
            .as_ref()
            .and_then(|s| CoreIdToken::from_str(&s.id_token).ok())
        {
            request = request.set_id_token_hint(&hint);
        }
        tracing::info!(
            sub = session.as_ref().map_or("", |s| s.sub.as_str()),
            hint = session.is_some(),
            "logging out at the identity provider"
        );
        Ok(LogoutStart::AtIdp {
            redirect: request.http_get_url(),
            state: state.secret().clone(),
        })
    }

    /// `GET /logged-out`: whether the IdP's return carries the `state` this browser was sent
    /// with (`expected`, from its cookie), compared in constant time. Without it (a reload, a
    /// bookmark, another browser) nothing about the IdP is confirmed, and nothing is refused
    /// either: the page only informs.
    pub fn finished(&self, expected: Option<&str>, returned: Option<&str>) -> bool {
        match (expected, returned) {
            (Some(expected), Some(returned)) => {
                bool::from(expected.as_bytes().ct_eq(returned.as_bytes()))
            }
            _ => false,
        }
    }
}
