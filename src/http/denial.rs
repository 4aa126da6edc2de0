//! Keeps an access-denied page's reason across a reload. The callback URL of a denied login is
//! single-use (its login cookie is gone), so a reload would otherwise say "already used" and
//! hide why the person was refused. The denial is kept in one encrypted, authenticated cookie
//! (tower-cookies private cookie, same key as the login cookies), bound to the login's `state`
//! and sent only to `/callback`; it holds the refusal text the page showed, nothing else.

use serde::{Deserialize, Serialize};
use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, Cookies, Key};

use crate::error::AppError;
use crate::flow::{COOKIE_PATH, CookiePolicy, constant_time_eq};

/// The cookie's name.
const DENIAL_COOKIE: &str = "bridge_denied";
/// Longest refusal text kept (the page's text comes from configuration; this bounds the cookie).
const MAX_TEXT: usize = 600;

#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    #[serde(rename = "st")]
    state: String,
    #[serde(rename = "r")]
    rule: String,
    #[serde(rename = "m")]
    message: String,
    #[serde(rename = "c")]
    contact: Option<String>,
}

/// Remembers `error` (a denial) for the login with `state`, replacing an older one.
pub fn remember(
    cookies: &Cookies,
    key: &Key,
    policy: &CookiePolicy,
    state: &str,
    error: &AppError,
) {
    let AppError::Denied {
        rule,
        message,
        contact,
    } = error
    else {
        return;
    };
    let clip = |text: &str| text.chars().take(MAX_TEXT).collect::<String>();
    let kept = Kept {
        state: state.to_owned(),
        rule: clip(rule),
        message: clip(message),
        contact: contact.as_deref().map(clip),
    };
    let Ok(value) = serde_json::to_string(&kept) else {
        return;
    };
    let max_age = tower_cookies::cookie::time::Duration::seconds(
        i64::try_from(policy.max_age.as_secs()).unwrap_or(i64::MAX),
    );
    let cookie = Cookie::build((DENIAL_COOKIE, value))
        .http_only(true)
        .secure(policy.secure)
        .same_site(SameSite::Lax)
        .path(COOKIE_PATH)
        .max_age(max_age)
        .build();
    cookies.private(key).add(cookie);
}

/// The denial kept for the login with `state`, when this browser has one.
pub fn shown_again(cookies: &Cookies, key: &Key, state: &str) -> Option<AppError> {
    let kept: Kept = serde_json::from_str(cookies.private(key).get(DENIAL_COOKIE)?.value()).ok()?;
    if !constant_time_eq(&kept.state, state) {
        return None;
    }
    tracing::debug!("denial page shown again");
    Some(AppError::Denied {
        rule: kept.rule,
        message: kept.message,
        contact: kept.contact,
    })
}
