//! The demo's stand-in forum, for development only: it plays Discourse's part of
//! DiscourseConnect the way Discourse's `SessionController#sso` and `#sso_login` do. It starts a
//! login with a signed request carrying a fresh nonce bound to this browser, and checks the
//! answer in Discourse's order: `sso` and `sig` present (400), payload and signature valid (422),
//! nonce known, from this browser, not expired (30 minutes) and not used before (419). The nonce
//! is spent before anything else happens, then the fields are kept and shown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, CookieManagerLayer, Cookies};

use super::idp::SAMPLE_USERS;
use super::{DEVELOPMENT_ONLY, found, random_hex};
use crate::discourse::connect::{ConnectSecret, Field, Payload, SsoRequest, parse_sso_query};
use crate::http::pages::Pages;

/// How long a nonce stays valid, as in Discourse since PR #26261.
pub const NONCE_LIFETIME: Duration = Duration::minutes(30);
/// The forum's browser-session cookie: what ties a nonce to one browser, like the session id
/// behind Discourse's `ServerSession` with `discourse_connect_csrf_protection` on.
pub const SESSION_COOKIE: &str = "demo_forum_session";

/// Where the forum is and whom it talks to.
#[derive(Debug, Clone)]
pub struct ForumSettings {
    /// The forum's own origin, e.g. `http://127.0.0.1:8400` (no trailing slash).
    pub base_url: String,
    /// The bridge's DiscourseConnect endpoint (Discourse's `discourse_connect_url`).
    pub bridge_sso_url: String,
    /// The bridge's origin, shown on the page.
    pub bridge_url: String,
    /// The demo IdP's origin, shown on the page.
    pub idp_url: String,
    /// The `discourse_connect_secret` shared with the bridge.
    pub connect_secret: SecretString,
    /// Where the active mapping came from, shown on the page.
    pub mapping_source: String,
}

/// A nonce the forum handed out.
#[derive(Debug, Clone)]
struct IssuedNonce {
    browser: String,
    issued_at: DateTime<Utc>,
    used: bool,
}

/// Why a returned nonce is refused; Discourse answers all of them with 419.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceProblem {
    Unknown,
    OtherBrowser,
    Expired,
    AlreadyUsed,
}

/// The nonces issued and not yet expired.
#[derive(Debug, Default)]
struct Nonces {
    issued: HashMap<String, IssuedNonce>,
}

impl Nonces {
    fn issue(&mut self, nonce: String, browser: String, now: DateTime<Utc>) {
        self.issued
            .retain(|_, n| now.signed_duration_since(n.issued_at) <= NONCE_LIFETIME);
        self.issued.insert(
            nonce,
            IssuedNonce {
                browser,
                issued_at: now,
                used: false,
            },
        );
    }

    /// Checks `nonce` for `browser` as of `now` and spends it. A used nonce is remembered until
    /// it would have expired, so a replay gets the same 419 as any other bad nonce.
    fn spend(
        &mut self,
        nonce: &str,
        browser: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), NonceProblem> {
        let record = self.issued.get_mut(nonce).ok_or(NonceProblem::Unknown)?;
        if browser != Some(record.browser.as_str()) {
            return Err(NonceProblem::OtherBrowser);
        }
        if now.signed_duration_since(record.issued_at) > NONCE_LIFETIME {
            return Err(NonceProblem::Expired);
        }
        if record.used {
            return Err(NonceProblem::AlreadyUsed);
        }
        record.used = true;
        Ok(())
    }
}

/// One row of the "what Discourse received" table.
#[derive(Debug, Clone, Serialize)]
struct FieldRow {
    key: String,
    /// `None` for a highlighted field the bridge did not send.
    value: Option<String>,
}

/// A completed login as the forum received it.
#[derive(Debug, Clone, Serialize)]
struct ReceivedLogin {
    /// Who the forum now takes the person for: username, else name, else email.
    logged_in_as: String,
    /// The email Discourse would store, and whether the IdP vouched for it (Discourse asks
    /// the person to confirm it when `require_activation` is true).
    email: Option<String>,
    email_verified: bool,
    rows: Vec<FieldRow>,
    /// What Discourse would do with these fields, in words.
    notes: Vec<String>,
    received_at: String,
}

/// Fields always listed, sent or not, because they are what a mapping is about.
const HIGHLIGHTED: [Field; 11] = [
    Field::ExternalId,
    Field::Email,
    Field::Username,
    Field::Name,
    Field::Groups,
    Field::AddGroups,
    Field::RemoveGroups,
    Field::Admin,
    Field::Moderator,
    Field::RequireActivation,
    Field::SuppressWelcomeMessage,
];

impl ReceivedLogin {
    fn from_payload(payload: &Payload, now: DateTime<Utc>) -> Self {
        let mut rows: Vec<FieldRow> = HIGHLIGHTED
            .iter()
            .map(|field| FieldRow {
                key: field.key().to_owned(),
                value: payload.get(*field).map(str::to_owned),
            })
            .collect();
        rows.extend(
            payload
                .fields()
                .filter(|(field, _)| !HIGHLIGHTED.contains(field))
                .map(|(field, value)| FieldRow {
                    key: field.key().to_owned(),
                    value: Some(value.to_owned()),
                }),
        );
        rows.extend(payload.custom_fields().map(|(name, value)| FieldRow {
            key: format!("custom.{name}"),
            value: Some(value.to_owned()),
        }));
        let logged_in_as = [
            Field::Username,
            Field::Name,
            Field::Email,
            Field::ExternalId,
        ]
        .iter()
        .find_map(|field| payload.get(*field).filter(|v| !v.is_empty()))
        .unwrap_or_default()
        .to_owned();
        Self {
            logged_in_as,
            email: payload.get(Field::Email).map(str::to_owned),
            email_verified: payload.get_bool(Field::RequireActivation) != Some(true),
            rows,
            notes: discourse_notes(payload),
            received_at: now.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        }
    }
}

/// Explains, field by field, what Discourse does with an answer (see
/// `DiscourseConnect#lookup_or_create_user` and the group and role updates).
fn discourse_notes(payload: &Payload) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(id) = payload.get(Field::ExternalId) {
        notes.push(format!(
            "Discourse finds or creates the account linked to external_id \"{id}\"."
        ));
    }
    if payload.get_bool(Field::RequireActivation) == Some(true) {
        notes.push(
            "require_activation=true: Discourse does not match an existing account by email, \
             creates the account inactive and emails an activation link first."
                .to_owned(),
        );
    }
    if let Some(groups) = payload.get(Field::Groups) {
        notes.push(format!(
            "groups: with discourse_connect_overrides_groups on, the user's membership is set to \
             exactly [{groups}] (automatic groups excepted)."
        ));
    }
    if let Some(groups) = payload.get(Field::AddGroups).filter(|g| !g.is_empty()) {
        notes.push(format!("add_groups: the user is added to [{groups}]."));
    }
    if let Some(groups) = payload.get(Field::RemoveGroups).filter(|g| !g.is_empty()) {
        notes.push(format!(
            "remove_groups: the user is removed from [{groups}]."
        ));
    }
    for (field, role) in [
        (Field::Admin, "an admin"),
        (Field::Moderator, "a moderator"),
    ] {
        match payload.get_bool(field) {
            Some(true) => notes.push(format!("{}=true: the user becomes {role}.", field.key())),
            Some(false) => notes.push(format!(
                "{}=false: the user stops being {role} (if they were).",
                field.key()
            )),
            None => {}
        }
    }
    notes
}

#[derive(Debug)]
struct Forum {
    settings: ForumSettings,
    secret: ConnectSecret,
    pages: Arc<Pages>,
    nonces: Mutex<Nonces>,
    /// The last login received, per browser session.
    logins: Mutex<HashMap<String, ReceivedLogin>>,
}

impl Forum {
    fn nonces(&self) -> std::sync::MutexGuard<'_, Nonces> {
        match self.nonces.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn logins(&self) -> std::sync::MutexGuard<'_, HashMap<String, ReceivedLogin>> {
        match self.logins.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn render(&self, status: StatusCode, context: minijinja::Value) -> Response {
        let lang = self.pages.default_language().to_owned();
        self.pages
            .respond("demo_forum.html", status, &lang, context)
    }

    fn page(
        &self,
        status: StatusCode,
        login: Option<&ReceivedLogin>,
        error: Option<ErrorView>,
    ) -> Response {
        let users: Vec<_> = SAMPLE_USERS
            .iter()
            .map(|u| minijinja::context! { name => u.name, about => u.about })
            .collect();
        self.render(
            status,
            minijinja::context! {
                development_only => DEVELOPMENT_ONLY,
                forum_url => self.settings.base_url.as_str(),
                bridge_url => self.settings.bridge_url.as_str(),
                idp_url => self.settings.idp_url.as_str(),
                mapping_source => self.settings.mapping_source.as_str(),
                users => users,
                login => minijinja::Value::from(minijinja::value::Serde(login)),
                error => minijinja::Value::from(minijinja::value::Serde(error)),
            },
        )
    }

    fn error_page(&self, status: StatusCode, reason: &'static str, message: &str) -> Response {
        tracing::warn!(
            status = status.as_u16(),
            reason,
            "demo forum refused a DiscourseConnect answer"
        );
        self.page(
            status,
            None,
            Some(ErrorView {
                status: status.as_u16(),
                reason,
                message: message.to_owned(),
            }),
        )
    }
}

/// An error shown on the forum page, named like Discourse's own error keys.
#[derive(Debug, Clone, Serialize)]
struct ErrorView {
    status: u16,
    reason: &'static str,
    message: String,
}

/// Builds the forum's router.
pub fn router(settings: ForumSettings, pages: Arc<Pages>) -> Router {
    let forum = Arc::new(Forum {
        secret: ConnectSecret::new(settings.connect_secret.expose_secret().as_bytes()),
        settings,
        pages,
        nonces: Mutex::new(Nonces::default()),
        logins: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(home))
        .route("/session/sso", get(start_login))
        .route("/session/sso_login", get(finish_login))
        .route("/logout", get(logout))
        .route("/session/logout", get(logout_everywhere))
        .layer(CookieManagerLayer::new())
        .with_state(forum)
}

fn browser_id(cookies: &Cookies) -> Option<String> {
    cookies
        .get(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `GET /`: the explanation, the "Log in" button and the last login this browser received.
async fn home(State(forum): State<Arc<Forum>>, cookies: Cookies) -> Response {
    let login = browser_id(&cookies).and_then(|browser| forum.logins().get(&browser).cloned());
    forum.page(StatusCode::OK, login.as_ref(), None)
}

/// `GET /session/sso`: a fresh 32-hex nonce bound to this browser, then a 302 to the bridge
/// with the signed request, as `SessionController#sso` does.
async fn start_login(State(forum): State<Arc<Forum>>, cookies: Cookies) -> Response {
    let browser = match browser_id(&cookies) {
        Some(browser) => browser,
        None => {
            let browser = random_hex(16);
            cookies.add(
                Cookie::build((SESSION_COOKIE, browser.clone()))
                    .http_only(true)
                    .same_site(SameSite::Lax)
                    .path("/")
                    .build(),
            );
            browser
        }
    };
    let nonce = random_hex(16);
    forum.nonces().issue(nonce.clone(), browser, Utc::now());
    let request = SsoRequest {
        nonce,
        return_sso_url: format!("{}/session/sso_login", forum.settings.base_url),
    };
    let signed = request.sign(&forum.secret);
    found(&signed.redirect_url(&forum.settings.bridge_sso_url))
}

/// Values Discourse refuses as an `external_id` (`BannedExternalId`).
const BANNED_EXTERNAL_IDS: [&str; 4] = ["none", "nil", "blank", "null"];

/// `GET /session/sso_login?sso=..&sig=..`: checks the answer like `SessionController#sso_login`
/// and, when it passes, keeps the fields for this browser and goes back to the front page.
async fn finish_login(
    State(forum): State<Arc<Forum>>,
    cookies: Cookies,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok((sso, sig)) = parse_sso_query(query.as_deref().unwrap_or("")) else {
        return forum.error_page(
            StatusCode::BAD_REQUEST,
            "missing_parameters",
            "The answer must carry exactly one sso and one sig parameter.",
        );
    };
    let payload = match Payload::decode(&sso, &sig, &forum.secret) {
        Ok(payload) => payload,
        Err(e) => {
            let (reason, message) = if e.is_bad_signature() {
                (
                    "signature_error",
                    "The answer's signature does not match the DiscourseConnect secret.",
                )
            } else {
                (
                    "payload_parse_error",
                    "The answer's payload could not be read.",
                )
            };
            return forum.error_page(StatusCode::UNPROCESSABLE_ENTITY, reason, message);
        }
    };
    let now = Utc::now();
    let browser = browser_id(&cookies);
    let spent = match payload.get(Field::Nonce) {
        Some(nonce) => forum.nonces().spend(nonce, browser.as_deref(), now),
        None => Err(NonceProblem::Unknown),
    };
    if let Err(problem) = spent {
        tracing::warn!(?problem, "demo forum: nonce refused");
        return forum.error_page(
            StatusCode::from_u16(419).unwrap_or(StatusCode::BAD_REQUEST),
            "timeout_expired",
            "Account login timed out, or this login answer was already used, or it was started \
             in another browser. Please try logging in again.",
        );
    }
    let external_id = payload.get(Field::ExternalId).unwrap_or_default().trim();
    if external_id.is_empty() {
        return forum.error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "blank_id_error",
            "The answer has no external_id.",
        );
    }
    if BANNED_EXTERNAL_IDS.contains(&external_id.to_ascii_lowercase().as_str()) {
        return forum.error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unknown_error",
            "Discourse refuses this external_id value.",
        );
    }
    let Some(browser) = browser else {
        // Unreachable: the nonce check above already required the browser cookie.
        return forum.error_page(StatusCode::BAD_REQUEST, "no_session", "No forum session.");
    };
    let received = ReceivedLogin::from_payload(&payload, now);
    tracing::info!("demo forum: DiscourseConnect login accepted");
    forum.logins().insert(browser, received);
    found("/")
}

/// `GET /logout`: forgets this browser's login on the forum (the IdP keeps no session).
async fn logout(State(forum): State<Arc<Forum>>, cookies: Cookies) -> Response {
    if let Some(browser) = browser_id(&cookies) {
        forum.logins().remove(&browser);
    }
    found("/")
}

/// `GET /session/logout`: what Discourse does on "Log out" with `logout_redirect` set to the
/// bridge's `/logout`: forget the login here, then send the browser to the bridge, which ends
/// the IdP session too.
async fn logout_everywhere(State(forum): State<Arc<Forum>>, cookies: Cookies) -> Response {
    if let Some(browser) = browser_id(&cookies) {
        forum.logins().remove(&browser);
    }
    found(&format!(
        "{}/logout",
        forum.settings.bridge_url.trim_end_matches('/')
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    #[test]
    fn a_nonce_is_accepted_once_from_the_browser_it_was_issued_to() {
        let mut nonces = Nonces::default();
        nonces.issue("n1".into(), "browser-a".into(), at(0));
        assert_eq!(
            nonces.spend("n1", Some("browser-b"), at(1)),
            Err(NonceProblem::OtherBrowser)
        );
        assert_eq!(
            nonces.spend("n1", None, at(1)),
            Err(NonceProblem::OtherBrowser)
        );
        assert_eq!(nonces.spend("n1", Some("browser-a"), at(1)), Ok(()));
        assert_eq!(
            nonces.spend("n1", Some("browser-a"), at(2)),
            Err(NonceProblem::AlreadyUsed)
        );
        assert_eq!(
            nonces.spend("other", Some("browser-a"), at(2)),
            Err(NonceProblem::Unknown)
        );
    }

    #[test]
    fn a_nonce_expires_after_thirty_minutes() {
        let mut nonces = Nonces::default();
        nonces.issue("n1".into(), "b".into(), at(0));
        nonces.issue("n2".into(), "b".into(), at(0));
        assert_eq!(nonces.spend("n1", Some("b"), at(30)), Ok(()));
        assert_eq!(
            nonces.spend("n2", Some("b"), at(31)),
            Err(NonceProblem::Expired)
        );
    }

    #[test]
    fn highlighted_fields_are_listed_even_when_not_sent() {
        let mut payload = Payload::new();
        payload
            .set(Field::ExternalId, "u1")
            .set(Field::Email, "u1@example.com")
            .set(Field::AvatarUrl, "https://example.com/a.png")
            .set_bool(Field::Admin, false)
            .set_custom("team", "blue");
        let login = ReceivedLogin::from_payload(&payload, at(0));
        let row = |key: &str| {
            login
                .rows
                .iter()
                .find(|r| r.key == key)
                .map(|r| r.value.clone())
        };
        assert_eq!(row("external_id"), Some(Some("u1".into())));
        assert_eq!(row("add_groups"), Some(None));
        assert_eq!(
            row("avatar_url"),
            Some(Some("https://example.com/a.png".into()))
        );
        assert_eq!(row("custom.team"), Some(Some("blue".into())));
        assert!(login.notes.iter().any(|n| n.starts_with("admin=false")));
    }
}
