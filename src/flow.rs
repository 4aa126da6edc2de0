//! The login in flight: what the callback needs to finish a login (Discourse's nonce and
//! `return_sso_url`, the OAuth `state`, the OIDC `nonce`, the PKCE verifier and the start time),
//! kept in the browser in one encrypted, authenticated cookie per attempt.
//!
//! The cookie is a tower-cookies private cookie (AES-256-GCM with the cookie name as associated
//! data), keyed from `[session] secret` through HKDF so the DiscourseConnect secret is never
//! reused. Its name carries the `state`, so two tabs logging in at once keep separate cookies;
//! the callback removes it, and an in-memory set of used states refuses a replayed callback
//! even when an old copy of the cookie is presented again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, Cookies, Key};

/// Prefix of every login cookie; the rest of the name is the `state`.
pub const COOKIE_PREFIX: &str = "bridge_login_";
/// The cookies are only sent to the callback.
pub const COOKIE_PATH: &str = "/callback";
/// Attempts kept per browser; older abandoned ones are dropped when a new login starts.
pub const MAX_ATTEMPTS_PER_BROWSER: usize = 4;

/// Everything the callback needs, sealed in the login cookie.
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
    /// The cookie name for a given `state`.
    pub fn cookie_name(state: &str) -> String {
        format!("{COOKIE_PREFIX}{state}")
    }

    /// True when the login started longer than `timeout` before `now` (Unix seconds).
    pub fn is_expired(&self, now: i64, timeout: Duration) -> bool {
        let age = now.saturating_sub(self.created_at);
        age < 0 || age as u64 > timeout.as_secs()
    }

    /// Constant-time comparison of the stored state with the one the IdP sent back.
    pub fn state_matches(&self, returned_state: &str) -> bool {
        self.state
            .as_bytes()
            .ct_eq(returned_state.as_bytes())
            .into()
    }
}

/// Cookie attributes that depend on the deployment.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    /// `Secure` when the public URL is https.
    pub secure: bool,
    /// `Max-Age` of the login cookies: [`login_cookie_lifetime`] of the login timeout.
    pub max_age: Duration,
}

/// How much longer than `login_timeout` a login cookie lives, so that a login finished too late
/// still finds its cookie and is told it took too long (instead of "unknown login").
pub const LOGIN_COOKIE_GRACE: Duration = Duration::from_secs(30 * 60);

/// The login cookie's `Max-Age` for a `login_timeout`: the timeout plus [`LOGIN_COOKIE_GRACE`].
/// The expiry itself is decided by the start time sealed inside the cookie.
pub fn login_cookie_lifetime(login_timeout: Duration) -> Duration {
    login_timeout.saturating_add(LOGIN_COOKIE_GRACE)
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

/// Stores a new login attempt, dropping the oldest ones past [`MAX_ATTEMPTS_PER_BROWSER`].
pub fn store(cookies: &Cookies, key: &Key, policy: &CookiePolicy, login: &LoginInFlight) {
    let private = cookies.private(key);
    let mut existing: Vec<(String, i64)> = cookies
        .list()
        .into_iter()
        .filter(|c| c.name().starts_with(COOKIE_PREFIX))
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
            cookies.remove(removal_cookie(name));
        }
    }
    let Ok(value) = serde_json::to_string(login) else {
        return;
    };
    let max_age = cookie_max_age(policy.max_age);
    let cookie = Cookie::build((LoginInFlight::cookie_name(&login.state), value))
        .http_only(true)
        .secure(policy.secure)
        .same_site(SameSite::Lax)
        .path(COOKIE_PATH)
        .max_age(max_age)
        .build();
    private.add(cookie);
}

/// Takes the login attempt for `state` out of the browser: returns it (if the cookie exists,
/// decrypts, parses and carries that exact state) and always removes the cookie.
pub fn take(cookies: &Cookies, key: &Key, state: &str) -> Option<LoginInFlight> {
    let name = LoginInFlight::cookie_name(state);
    let login = cookies
        .private(key)
        .get(&name)
        .and_then(|c| serde_json::from_str::<LoginInFlight>(c.value()).ok());
    if cookies.get(&name).is_some() {
        cookies.remove(removal_cookie(name));
    }
    login.filter(|l| l.state_matches(state))
}

fn removal_cookie(name: String) -> Cookie<'static> {
    Cookie::build((name, "")).path(COOKIE_PATH).build()
}

/// Name of the bridge session cookie: a random id naming the server-side session record (ID
/// token for `id_token_hint`); the token itself never goes into a cookie.
pub const SESSION_COOKIE: &str = "bridge_session";

/// Constant-time string comparison for secrets echoed back by browsers or IdPs.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn cookie_max_age(max_age: Duration) -> tower_cookies::cookie::time::Duration {
    tower_cookies::cookie::time::Duration::seconds(
        i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
    )
}

/// Sets the bridge session cookie (site-wide path, so `/logout` receives it).
pub fn store_session_id(cookies: &Cookies, key: &Key, secure: bool, id: &str, max_age: Duration) {
    let cookie = Cookie::build((SESSION_COOKIE, id.to_owned()))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(cookie_max_age(max_age))
        .build();
    cookies.private(key).add(cookie);
}

/// Takes the bridge session id out of the browser (the cookie is removed).
pub fn take_session_id(cookies: &Cookies, key: &Key) -> Option<String> {
    let id = cookies
        .private(key)
        .get(SESSION_COOKIE)
        .map(|c| c.value().to_owned());
    if cookies.get(SESSION_COOKIE).is_some() {
        cookies.remove(Cookie::build((SESSION_COOKIE, "")).path("/").build());
    }
    id
}

/// Path of the RP-initiated logout return.
const LOGGED_OUT_PATH: &str = "/logged-out";

/// Remembers the `state` sent with an RP-initiated logout until the IdP sends the browser back.
pub fn store_logout_state(
    cookies: &Cookies,
    key: &Key,
    policy: &CookiePolicy,
    name: &'static str,
    state: &str,
) {
    let cookie = Cookie::build((name, state.to_owned()))
        .http_only(true)
        .secure(policy.secure)
        .same_site(SameSite::Lax)
        .path(LOGGED_OUT_PATH)
        .max_age(cookie_max_age(policy.max_age))
        .build();
    cookies.private(key).add(cookie);
}

/// Takes the logout `state` out of the browser (the cookie is removed).
pub fn take_logout_state(cookies: &Cookies, key: &Key, name: &'static str) -> Option<String> {
    let state = cookies.private(key).get(name).map(|c| c.value().to_owned());
    if cookies.get(name).is_some() {
        cookies.remove(Cookie::build((name, "")).path(LOGGED_OUT_PATH).build());
    }
    state
}

/// States whose callback has been handled, remembered until their cookie could no longer be
/// valid, so a replayed callback is refused even with a copied cookie. Per process: with
/// several replicas the IdP's single-use authorization codes remain the backstop.
#[derive(Debug, Default)]
pub struct UsedStates {
    seen: Mutex<SeenStates>,
}

#[derive(Debug, Default)]
struct SeenStates {
    /// SHA-256 of the state → until when it counts as used (Unix seconds).
    until: HashMap<[u8; 32], i64>,
    /// When expired entries were last dropped: at most once a second, so that a busy bridge
    /// does not scan every login of the last `login_timeout` on every callback.
    pruned_at: i64,
}

impl UsedStates {
    /// Marks `state` used until `expires_at` (Unix seconds). Returns false when it was already
    /// used. Expired entries are pruned on the way.
    pub fn mark_used(&self, state: &str, now: i64, expires_at: i64) -> bool {
        let digest: [u8; 32] = Sha256::digest(state.as_bytes()).into();
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if now > seen.pruned_at {
            seen.until.retain(|_, until| *until > now);
            seen.pruned_at = now;
        }
        match seen.until.get(&digest) {
            Some(until) if *until > now => false,
            _ => {
                seen.until.insert(digest, expires_at);
                true
            }
        }
    }

    /// States remembered right now (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |seen| seen.until.len())
    }

    /// Whether no state is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_states_are_refused_until_they_expire_and_then_forgotten() {
        let used = UsedStates::default();
        assert!(used.mark_used("a", 100, 700));
        assert!(!used.mark_used("a", 101, 700), "a replay is refused");
        for n in 0..2000 {
            assert!(used.mark_used(&format!("s{n}"), 102, 702));
        }
        assert!(
            !used.mark_used("a", 699, 700),
            "still refused just before expiry"
        );
        assert_eq!(used.len(), 2001);
        // A second later everything has expired and is dropped.
        assert!(used.mark_used("b", 703, 1300));
        assert_eq!(used.len(), 1);
        assert!(
            used.mark_used("a", 704, 1300),
            "an expired state is no longer known"
        );
    }

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
    }

    #[test]
    fn state_comparison_requires_the_exact_state() {
        let login = sample(0);
        assert!(login.state_matches("state-abc"));
        assert!(!login.state_matches("state-abd"));
        assert!(!login.state_matches("state-ab"));
        assert!(!login.state_matches(""));
    }

    #[test]
    fn used_states_refuse_a_second_use_until_expiry() {
        let used = UsedStates::default();
        assert!(used.mark_used("s1", 100, 700));
        assert!(!used.mark_used("s1", 200, 800));
        assert!(used.mark_used("s2", 200, 800));
        assert!(
            used.mark_used("s1", 701, 1300),
            "forgotten after it expired"
        );
    }

    #[test]
    fn cookie_key_depends_on_the_secret() {
        let a = derive_cookie_key(&SecretString::from("a".repeat(32))).unwrap();
        let b = derive_cookie_key(&SecretString::from("b".repeat(32))).unwrap();
        assert_ne!(a.master(), b.master());
        let a2 = derive_cookie_key(&SecretString::from("a".repeat(32))).unwrap();
        assert_eq!(a.master(), a2.master());
    }
}
