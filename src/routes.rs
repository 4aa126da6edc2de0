//! Every path the bridge serves, in one place: the router mounts them, the configuration turns
//! them into public URLs (the OIDC redirect URI, the post-logout return) and the cookies scope
//! themselves to them. A leaf module: it depends on nothing else in the crate.

/// `GET`: Discourse's signed login request (DiscourseConnect) starts a login here.
pub const SSO: &str = "/sso";
/// `GET`: the IdP's authorization response (OpenID Connect Core §3.1.2.5), the redirect URI.
pub const CALLBACK: &str = "/callback";
/// `POST`: logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.5).
pub const BACKCHANNEL_LOGOUT: &str = "/backchannel-logout";
/// `GET`: Discourse's `logout_redirect` (RP-Initiated Logout 1.0 starts here).
pub const LOGOUT: &str = "/logout";
/// `GET`: where the IdP returns the browser after RP-initiated logout.
pub const LOGGED_OUT: &str = "/logged-out";
/// `GET`: "Use another account" on the access-denied page: RP-initiated logout, then a new
/// login at the forum.
pub const SWITCH_ACCOUNT: &str = "/switch-account";
/// `GET`: liveness.
pub const HEALTHZ: &str = "/healthz";
/// `GET`: readiness (discovery done, store answers).
pub const READYZ: &str = "/readyz";
/// `GET`: Prometheus text exposition.
pub const METRICS: &str = "/metrics";
/// Discourse's DiscourseConnect endpoint on the forum, the only allowed `return_sso_url`.
pub const DISCOURSE_SSO_LOGIN: &str = "/session/sso_login";
/// Discourse's own login start: the error pages' "Try again" and "Log in again".
pub const DISCOURSE_SSO: &str = "/session/sso";
