//! Every cookie the bridge sets, built in one place with every flag (`HttpOnly`, `Secure` on
//! https, `SameSite=Lax`, a path scoped to the route that reads it, `Max-Age`), and read back
//! here (RFC 6265bis).
//!
//! All are tower-cookies private cookies (AES-256-GCM with the cookie name as associated data),
//! keyed from `[session] secret` through HKDF so the DiscourseConnect secret is never reused:
//! - `bridge_login_<state>`: the [`LoginInFlight`], one per attempt so two tabs logging in at
//!   once keep separate cookies; sent only to the callback, removed there;
//! - `bridge_session`: the random id of the server-side session record (the ID token for
//!   `id_token_hint`; the token itself never goes into a cookie);
//! - `bridge_logout_state`: the `state` of an RP-initiated logout, until `/logged-out`;
//! - `bridge_switch_account`: "Use another account" asked for that logout, so `/logged-out`
//!   starts a new login;
//! - `bridge_denied`: the refusal an access-denied page showed, bound to that login's `state`,
//!   so a reload of the (spent) callback URL shows the same reason; sent only to the callback.

use std::time::Duration;

use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, Cookies, Key};

use crate::login::LoginInFlight;
use crate::routes;

/// Prefix of every login cookie; the rest of the name is the `state`.
pub const LOGIN_COOKIE_PREFIX: &str = "bridge_login_";
/// Attempts kept per browser; older abandoned ones are dropped when a new login starts.
pub const MAX_ATTEMPTS_PER_BROWSER: usize = 4;
/// Name of the bridge session cookie.
pub const SESSION_COOKIE: &str = "bridge_session";
/// Name of the cookie carrying the RP-initiated logout `state` to `/logged-out`.
pub const LOGOUT_STATE_COOKIE: &str = "bridge_logout_state";
/// Name of the cookie telling `/logged-out` to start a new login ("Use another account").
pub const SWITCH_ACCOUNT_COOKIE: &str = "bridge_switch_account";
/// Name of the cookie keeping an access-denied page's reason for a reload.
pub const DENIAL_COOKIE: &str = "bridge_denied";
/// Longest refusal text kept in [`DENIAL_COOKIE`] (it comes from configuration; this bounds
/// the cookie).
const MAX_DENIAL_TEXT: usize = 600;

/// How much longer than `login_timeout` a login cookie lives, so that a login finished too late
/// still finds its cookie and is told it took too long (instead of "unknown login"). The expiry
/// itself is decided by the start time sealed inside the cookie.
pub const LOGIN_COOKIE_GRACE: Duration = Duration::from_secs(30 * 60);

/// A refusal as kept in [`DENIAL_COOKIE`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KeptDenial {
    #[serde(rename = "st")]
    state: String,
    #[serde(rename = "r")]
    rule: String,
    #[serde(rename = "m")]
    message: String,
    #[serde(rename = "c")]
    contact: Option<String>,
}

/// The cookie key and the deployment's cookie attributes.
#[derive(Clone)]
pub struct BridgeCookies {
    key: Key,
    /// `Secure` when the public URL is https.
    secure: bool,
    /// `Max-Age` of the login and logout-state cookies: the login timeout plus
    /// [`LOGIN_COOKIE_GRACE`].
    login_max_age: Duration,
    /// The paths cookies are scoped to: `server.public_url`'s prefix + the route.
    callback_path: String,
    logged_out_path: String,
    session_path: String,
}

impl std::fmt::Debug for BridgeCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeCookies")
            .field("key", &"[redacted]")
            .field("secure", &self.secure)
            .field("login_max_age", &self.login_max_age)
            .field("session_path", &self.session_path)
            .finish()
    }
}

/// Derives the 64-byte cookie key from the session secret (HKDF-SHA256, bridge-specific salt
/// and info), so a passphrase-like secret still yields a uniform key.
pub fn derive_cookie_key(secret: &SecretString) -> Result<Key, hkdf::InvalidLength> {
    let hk = Hkdf::<Sha256>::new(
        Some(b"discourse-oidc-bridge/session"),
        secret.expose_secret().as_bytes(),
    );
    let mut okm = [0u8; 64];
    hk.expand(b"cookie-key/v1", &mut okm)?;
    Ok(Key::from(&okm))
}

impl BridgeCookies {
    /// Cookies keyed from `secret`; `secure` when served over https; login cookies live
    /// `login_timeout` plus [`LOGIN_COOKIE_GRACE`]; every path starts with `path_prefix` (`""` or e.g. `"/login"`, the
    /// path of `server.public_url`).
    pub fn new(
        secret: &SecretString,
        secure: bool,
        login_timeout: Duration,
        path_prefix: &str,
    ) -> Result<Self, hkdf::InvalidLength> {
        let prefix = path_prefix.trim_end_matches('/');
        Ok(Self {
            key: derive_cookie_key(secret)?,
            secure,
            login_max_age: login_timeout.saturating_add(LOGIN_COOKIE_GRACE),
            callback_path: format!("{prefix}{}", routes::CALLBACK),
            logged_out_path: format!("{prefix}{}", routes::LOGGED_OUT),
            session_path: if prefix.is_empty() {
                "/".to_owned()
            } else {
                prefix.to_owned()
            },
        })
    }

    /// Whether cookies (and so the whole bridge) are served over https.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The login cookie's name for a given `state`.
    pub fn login_cookie_name(state: &str) -> String {
        format!("{LOGIN_COOKIE_PREFIX}{state}")
    }

    /// Stores a new login attempt, dropping the oldest ones past [`MAX_ATTEMPTS_PER_BROWSER`].
    pub fn store_login(&self, cookies: &Cookies, login: &LoginInFlight) {
        let private = cookies.private(&self.key);
        let mut existing: Vec<(String, i64)> = cookies
            .list()
            .into_iter()
            .filter(|c| c.name().starts_with(LOGIN_COOKIE_PREFIX))
            .map(|c| {
                let name = c.name().to_owned();
                let created = private
                    .get(&name)
                    .and_then(|c| serde_json::from_str::<LoginInFlight>(c.value()).ok())
                    .map_or(i64::MIN, |l| l.created_at);
                (name, created)
            })
            .collect();
        if existing.len() >= MAX_ATTEMPTS_PER_BROWSER {
            existing.sort_by_key(|(_, created)| *created);
            let excess = existing.len() + 1 - MAX_ATTEMPTS_PER_BROWSER;
            for (name, _) in existing.into_iter().take(excess) {
                cookies.remove(removal(name, &self.callback_path));
            }
        }
        let Ok(value) = serde_json::to_string(login) else {
            return;
        };
        let name = Self::login_cookie_name(&login.state);
        private.add(self.build(name, value, &self.callback_path, self.login_max_age));
    }

    /// Takes the login attempt for `state` out of the browser: returns it (if the cookie exists,
    /// decrypts, parses and carries that exact state) and always removes the cookie.
    pub fn take_login(&self, cookies: &Cookies, state: &str) -> Option<LoginInFlight> {
        let name = Self::login_cookie_name(state);
        let login = cookies
            .private(&self.key)
            .get(&name)
            .and_then(|c| serde_json::from_str::<LoginInFlight>(c.value()).ok());
        if cookies.get(&name).is_some() {
            cookies.remove(removal(name, &self.callback_path));
        }
        login.filter(|l| l.state_matches(state))
    }

    /// Sets the bridge session cookie (the whole prefix, so `/logout` receives it).
    pub fn set_session(&self, cookies: &Cookies, id: &str, lifetime: Duration) {
        let cookie = self.build(
            SESSION_COOKIE.to_owned(),
            id.to_owned(),
            &self.session_path,
            lifetime,
        );
        cookies.private(&self.key).add(cookie);
    }

    /// Takes the bridge session id out of the browser (the cookie is removed).
    pub fn take_session(&self, cookies: &Cookies) -> Option<String> {
        self.take(cookies, SESSION_COOKIE, &self.session_path)
    }

    /// Remembers the `state` sent with an RP-initiated logout until the IdP sends the browser
    /// back.
    pub fn set_logout_state(&self, cookies: &Cookies, state: &str) {
        let cookie = self.build(
            LOGOUT_STATE_COOKIE.to_owned(),
            state.to_owned(),
            &self.logged_out_path,
            self.login_max_age,
        );
        cookies.private(&self.key).add(cookie);
    }

    /// Takes the logout `state` out of the browser (the cookie is removed).
    pub fn take_logout_state(&self, cookies: &Cookies) -> Option<String> {
        self.take(cookies, LOGOUT_STATE_COOKIE, &self.logged_out_path)
    }

    /// Marks the logout being started as "Use another account": `/logged-out` then starts a new
    /// login.
    pub fn set_switch_account(&self, cookies: &Cookies) {
        let cookie = self.build(
            SWITCH_ACCOUNT_COOKIE.to_owned(),
            "1".to_owned(),
            &self.logged_out_path,
            self.login_max_age,
        );
        cookies.private(&self.key).add(cookie);
    }

    /// Whether the logout coming back asked for another account (the cookie is removed).
    pub fn take_switch_account(&self, cookies: &Cookies) -> bool {
        self.take(cookies, SWITCH_ACCOUNT_COOKIE, &self.logged_out_path)
            .is_some()
    }

    /// Keeps `denial` for the login with `state`, replacing an older one.
    pub fn keep_denial(&self, cookies: &Cookies, state: &str, denial: &crate::mapping::Denial) {
        let clip = |text: &str| text.chars().take(MAX_DENIAL_TEXT).collect::<String>();
        let kept = KeptDenial {
            state: state.to_owned(),
            rule: clip(&denial.rule),
            message: clip(&denial.message),
            contact: denial.contact.as_deref().map(clip),
        };
        let Ok(value) = serde_json::to_string(&kept) else {
            return;
        };
        let cookie = self.build(
            DENIAL_COOKIE.to_owned(),
            value,
            &self.callback_path,
            self.login_max_age,
        );
        cookies.private(&self.key).add(cookie);
    }

    /// The denial kept for the login with `state`, when this browser has one (it stays, so a
    /// second reload shows it too).
    pub fn kept_denial(&self, cookies: &Cookies, state: &str) -> Option<crate::mapping::Denial> {
        let cookie = cookies.private(&self.key).get(DENIAL_COOKIE)?;
        let kept: KeptDenial = serde_json::from_str(cookie.value()).ok()?;
        if !bool::from(kept.state.as_bytes().ct_eq(state.as_bytes())) {
            return None;
        }
        Some(crate::mapping::Denial {
            rule: kept.rule,
            message: kept.message,
            contact: kept.contact,
            trace: Vec::new(),
            dropped_groups: Vec::new(),
        })
    }

    fn take(&self, cookies: &Cookies, name: &'static str, path: &str) -> Option<String> {
        let value = cookies
            .private(&self.key)
            .get(name)
            .map(|c| c.value().to_owned());
        if cookies.get(name).is_some() {
            cookies.remove(removal(name.to_owned(), path));
        }
        value
    }

    /// The one cookie builder: every flag, every time.
    fn build(&self, name: String, value: String, path: &str, max_age: Duration) -> Cookie<'static> {
        Cookie::build((name, value))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path(path.to_owned())
            .max_age(tower_cookies::cookie::time::Duration::seconds(
                i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            ))
            .build()
    }
}

/// The cookie that removes `name` (its path must match the one it was set with).
fn removal(name: String, path: &str) -> Cookie<'static> {
    Cookie::build((name, "")).path(path.to_owned()).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jar() -> BridgeCookies {
        jar_under("")
    }

    fn jar_under(prefix: &str) -> BridgeCookies {
        BridgeCookies::new(
            &SecretString::from("s".repeat(32)),
            true,
            Duration::from_secs(600),
            prefix,
        )
        .unwrap()
    }

    fn sample(state: &str, created_at: i64) -> LoginInFlight {
        LoginInFlight {
            discourse_nonce: "n".into(),
            return_sso_url: "https://forum.example.com/session/sso_login".into(),
            state: state.into(),
            oidc_nonce: "o".into(),
            pkce_verifier: "v".into(),
            created_at,
        }
    }

    #[test]
    fn cookie_key_depends_on_the_secret() {
        let a = derive_cookie_key(&SecretString::from("a".repeat(32))).unwrap();
        let b = derive_cookie_key(&SecretString::from("b".repeat(32))).unwrap();
        assert_ne!(a.master(), b.master());
        let a2 = derive_cookie_key(&SecretString::from("a".repeat(32))).unwrap();
        assert_eq!(a.master(), a2.master());
    }

    #[test]
    fn every_cookie_carries_every_flag() {
        let jar = jar();
        let cookies = Cookies::default();
        jar.store_login(&cookies, &sample("st", 1));
        jar.set_session(&cookies, "id", Duration::from_secs(60));
        jar.set_logout_state(&cookies, "ls");
        for (name, path) in [
            ("bridge_login_st", routes::CALLBACK),
            (SESSION_COOKIE, "/"),
            (LOGOUT_STATE_COOKIE, routes::LOGGED_OUT),
        ] {
            let cookie = cookies.get(name).unwrap();
            assert_eq!(cookie.http_only(), Some(true), "{name}");
            assert_eq!(cookie.secure(), Some(true), "{name}");
            assert_eq!(cookie.same_site(), Some(SameSite::Lax), "{name}");
            assert_eq!(cookie.path(), Some(path), "{name}");
            assert!(cookie.max_age().is_some(), "{name}");
        }
    }

    #[test]
    fn cookie_paths_carry_the_public_url_prefix() {
        let jar = jar_under("/login");
        let cookies = Cookies::default();
        jar.store_login(&cookies, &sample("st", 1));
        jar.set_session(&cookies, "id", Duration::from_secs(60));
        jar.set_logout_state(&cookies, "ls");
        for (name, path) in [
            ("bridge_login_st", "/login/callback"),
            (SESSION_COOKIE, "/login"),
            (LOGOUT_STATE_COOKIE, "/login/logged-out"),
        ] {
            assert_eq!(cookies.get(name).unwrap().path(), Some(path), "{name}");
        }
    }

    #[test]
    fn a_denial_is_kept_for_its_login_only_and_login_cookies_outlive_the_timeout() {
        let jar = jar();
        let cookies = Cookies::default();
        let denial = crate::mapping::Denial {
            rule: "access.allowed_groups".into(),
            message: "x".repeat(5000),
            contact: Some("admins".into()),
            trace: Vec::new(),
            dropped_groups: Vec::new(),
        };
        jar.keep_denial(&cookies, "state-1", &denial);
        assert!(jar.kept_denial(&cookies, "state-2").is_none());
        let kept = jar.kept_denial(&cookies, "state-1").unwrap();
        assert_eq!(kept.message.len(), MAX_DENIAL_TEXT);
        assert_eq!(kept.contact.as_deref(), Some("admins"));
        assert!(
            jar.kept_denial(&cookies, "state-1").is_some(),
            "kept for a second reload"
        );
        let cookie = cookies.get(DENIAL_COOKIE).unwrap();
        assert_eq!(cookie.path(), Some(routes::CALLBACK));

        jar.store_login(&cookies, &sample("st", 1));
        let max_age = cookies.get("bridge_login_st").unwrap().max_age().unwrap();
        assert_eq!(max_age.whole_seconds(), 600 + 30 * 60);
    }

    #[test]
    fn a_login_is_taken_once_and_only_for_its_state() {
        let jar = jar();
        let cookies = Cookies::default();
        let login = sample("state-1", 5);
        jar.store_login(&cookies, &login);
        assert_eq!(jar.take_login(&cookies, "state-2"), None);
        assert_eq!(jar.take_login(&cookies, "state-1"), Some(login));
    }
}
