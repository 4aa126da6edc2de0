//! An in-test Discourse for end-to-end tests: the DiscourseConnect consumer side of Discourse's
//! `SessionController#sso` / `#sso_login` and the admin API calls the bridge makes
//! (`/u/by-external/{id}.json`, `/admin/users/{id}/log_out`, `/admin/users/sync_sso`), following
//! Discourse's `DiscourseConnectBase` and `SessionController`.
//!
//! It is a second, independent DiscourseConnect implementation: it does not use the crate's
//! codec. It mimics Discourse's Ruby directly: Rack `parse_query` on the raw query string,
//! `strict_encode64` + `CGI.escape` when sending, the Base64 character check before the
//! signature check, lenient `decode64`, lowercase-hex HMAC-SHA256 compared as strings, a
//! 32-hex nonce bound to the browser's forum cookie and spent before the user is looked up.
//!
//! Deliberate simplifications: one site, no groups/avatars/settings; usernames are taken as
//! given (no suggester); a repeated key in the payload is answered 500 (Discourse turns it into
//! a Ruby Array and fails somewhere later).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::Sha256;
use url::Url;
use url::form_urlencoded;

use super::browser::Browser;

const SESSION_COOKIE: &str = "_forum_session";
/// Discourse rejects these external ids (`DiscourseConnect::BannedExternalId`).
const BANNED_EXTERNAL_IDS: [&str; 4] = ["none", "nil", "blank", "null"];

/// How the forum is set up; `Default` gives working test values.
#[derive(Debug, Clone)]
pub struct ForumOptions {
    /// `discourse_connect_secret` (Discourse insists on at least 10 characters).
    pub sso_secret: String,
    /// `discourse_connect_url`: where `/session/sso` sends the browser. May be set later with
    /// `TestForum::set_connect_url`, since the bridge usually starts after the forum.
    pub connect_url: Option<Url>,
    pub api_key: String,
    pub api_username: String,
    /// Discourse: 30 minutes (10 before 2024).
    pub nonce_ttl: Duration,
    /// `logout_redirect` site setting, returned by `DELETE /session/{username}`.
    pub logout_redirect: Option<String>,
    /// A subfolder install (`/forum`, Discourse's `DISCOURSE_RELATIVE_URL_ROOT`): every path is
    /// served under it, and anything outside it is 404.
    pub subfolder: Option<String>,
}

impl Default for ForumOptions {
    fn default() -> Self {
        Self {
            sso_secret: "forum-connect-secret-for-tests".to_owned(),
            connect_url: None,
            api_key: "test-api-key-5f0e8c1d2b3a49e6".to_owned(),
            api_username: "system".to_owned(),
            nonce_ttl: Duration::from_secs(30 * 60),
            logout_redirect: None,
            subfolder: None,
        }
    }
}

/// A successful `/session/sso_login`: the decoded payload as Discourse parsed it.
#[derive(Debug, Clone)]
pub struct ForumLogin {
    pub payload: BTreeMap<String, String>,
    pub user_id: u64,
}

/// Every request to `/session/sso_login`, accepted or not.
#[derive(Debug, Clone)]
pub struct SsoLoginAttempt {
    pub status: u16,
    /// Discourse's error key (`payload_parse_error`, `signature_error`, `timeout_expired`, …),
    /// empty on success.
    pub error: &'static str,
    /// The decoded payload when it got that far.
    pub payload: Option<BTreeMap<String, String>>,
}

/// Which admin API endpoint a call or a scheduled failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminEndpoint {
    ByExternal,
    LogOut,
    SyncSso,
    /// `PUT /admin/users/{id}/suspend`
    Suspend,
    /// `PUT /admin/users/{id}/unsuspend`
    Unsuspend,
    /// Matches every admin endpoint (for failure schedules).
    Any,
}

/// One admin API request as the forum received it.
#[derive(Debug, Clone)]
pub struct AdminCall {
    pub endpoint: AdminEndpoint,
    pub method: String,
    /// Raw path, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub api_key: Option<String>,
    pub api_username: Option<String>,
    pub accept: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    /// The status the forum answered.
    pub status: u16,
    /// For `log_out`: the numeric user id in the path.
    pub user_id: Option<u64>,
}

/// A forum account.
#[derive(Debug, Clone)]
pub struct ForumUser {
    pub id: u64,
    pub external_id: Option<String>,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// The payload of the latest login or sync for this user.
    pub last_payload: BTreeMap<String, String>,
    /// `(suspend_until, reason)` while suspended.
    pub suspended: Option<(String, String)>,
}

#[derive(Debug)]
struct NonceRecord {
    browser: String,
    return_path: String,
    created: Instant,
    used: bool,
}

#[derive(Debug)]
struct FailureRule {
    endpoint: AdminEndpoint,
    status: u16,
    /// `None`: until `clear_failures`.
    remaining: Option<usize>,
}

#[derive(Debug)]
struct ForumState {
    options: ForumOptions,
    base: String,
    nonces: HashMap<String, NonceRecord>,
    /// forum session cookie → logged-in user id
    sessions: HashMap<String, Option<u64>>,
    users: Vec<ForumUser>,
    next_user_id: u64,
    logins: Vec<ForumLogin>,
    attempts: Vec<SsoLoginAttempt>,
    admin_calls: Vec<AdminCall>,
    syncs: Vec<BTreeMap<String, String>>,
    failures: Vec<FailureRule>,
    /// Admin API calls wait (unanswered) while this is set: a Discourse that hangs.
    admin_held: bool,
    /// Admin API calls waiting right now.
    admin_waiting: usize,
}

type Shared = Arc<Mutex<ForumState>>;

/// The running in-test Discourse. The server stops when this is dropped.
#[derive(Debug)]
pub struct TestForum {
    base: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl TestForum {
    /// Starts the forum on 127.0.0.1 with a free port.
    pub async fn start(options: ForumOptions) -> TestForum {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind forum");
        let addr = listener.local_addr().expect("forum address");
        let subfolder = options.subfolder.clone().unwrap_or_default();
        let base = format!("http://{addr}{subfolder}");
        let state = Arc::new(Mutex::new(ForumState {
            options,
            base: base.clone(),
            nonces: HashMap::new(),
            sessions: HashMap::new(),
            users: Vec::new(),
            next_user_id: 101,
            logins: Vec::new(),
            attempts: Vec::new(),
            admin_calls: Vec::new(),
            syncs: Vec::new(),
            failures: Vec::new(),
            admin_held: false,
            admin_waiting: 0,
        }));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestForum { base, state, task }
    }

    /// `Discourse.base_url`: `http://127.0.0.1:PORT` (plus the subfolder), no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// An absolute URL on the forum, e.g. `url("/session/current.json")`.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{}", self.base, path)).expect("forum URL")
    }

    /// Where a login starts, as Discourse's login button does: `/session/sso?return_path=…`.
    pub fn sso_start_url(&self, return_path: &str) -> Url {
        let mut url = self.url("/session/sso");
        url.query_pairs_mut()
            .append_pair("return_path", return_path);
        url
    }

    /// The `return_sso_url` the forum puts in its requests.
    pub fn return_sso_url(&self) -> String {
        format!("{}/session/sso_login", self.base)
    }

    pub fn set_connect_url(&self, url: Url) {
        self.lock().options.connect_url = Some(url);
    }

    pub fn sso_secret(&self) -> String {
        self.lock().options.sso_secret.clone()
    }

    pub fn api_key(&self) -> String {
        self.lock().options.api_key.clone()
    }

    pub fn api_username(&self) -> String {
        self.lock().options.api_username.clone()
    }

    /// Accepted logins, oldest first.
    pub fn logins(&self) -> Vec<ForumLogin> {
        self.lock().logins.clone()
    }

    /// Every `/session/sso_login` request, oldest first.
    pub fn sso_login_attempts(&self) -> Vec<SsoLoginAttempt> {
        self.lock().attempts.clone()
    }

    /// Every admin API request, oldest first.
    pub fn admin_calls(&self) -> Vec<AdminCall> {
        self.lock().admin_calls.clone()
    }

    /// Admin calls to one endpoint.
    pub fn admin_calls_to(&self, endpoint: AdminEndpoint) -> Vec<AdminCall> {
        self.admin_calls()
            .into_iter()
            .filter(|call| endpoint == AdminEndpoint::Any || call.endpoint == endpoint)
            .collect()
    }

    /// User ids of the `log_out` calls that succeeded (200), oldest first.
    pub fn successful_log_outs(&self) -> Vec<u64> {
        self.admin_calls_to(AdminEndpoint::LogOut)
            .into_iter()
            .filter(|call| call.status == 200)
            .filter_map(|call| call.user_id)
            .collect()
    }

    /// Payloads accepted by `/admin/users/sync_sso`.
    pub fn syncs(&self) -> Vec<BTreeMap<String, String>> {
        self.lock().syncs.clone()
    }

    pub fn user_id(&self, external_id: &str) -> Option<u64> {
        self.lock()
            .users
            .iter()
            .find(|u| u.external_id.as_deref() == Some(external_id))
            .map(|u| u.id)
    }

    /// Creates a user linked to `external_id` (as an earlier login would have) and returns its
    /// numeric id.
    pub fn seed_user(&self, external_id: &str, username: &str) -> u64 {
        let mut state = self.lock();
        let id = state.next_user_id;
        state.next_user_id += 1;
        state.users.push(ForumUser {
            id,
            external_id: Some(external_id.to_owned()),
            username: username.to_owned(),
            email: None,
            name: None,
            last_payload: BTreeMap::new(),
            suspended: None,
        });
        id
    }

    /// `(suspend_until, reason)` of a suspended user.
    pub fn suspension(&self, user_id: u64) -> Option<(String, String)> {
        self.lock()
            .users
            .iter()
            .find(|u| u.id == user_id)
            .and_then(|u| u.suspended.clone())
    }

    /// The forum's account with this `external_id`.
    pub fn user(&self, external_id: &str) -> Option<ForumUser> {
        self.lock()
            .users
            .iter()
            .find(|u| u.external_id.as_deref() == Some(external_id))
            .cloned()
    }

    /// The next `count` calls to `endpoint` are answered `status` (e.g. 503, 429) instead of
    /// being served.
    pub fn fail_next(&self, endpoint: AdminEndpoint, status: u16, count: usize) {
        self.lock().failures.push(FailureRule {
            endpoint,
            status,
            remaining: Some(count),
        });
    }

    /// Every call to `endpoint` is answered `status` until `clear_failures`.
    pub fn fail_until_cleared(&self, endpoint: AdminEndpoint, status: u16) {
        self.lock().failures.push(FailureRule {
            endpoint,
            status,
            remaining: None,
        });
    }

    /// While `held`, admin API calls get no answer (they wait, and are served once released).
    pub fn hold_admin_calls(&self, held: bool) {
        self.lock().admin_held = held;
    }

    /// Admin API calls waiting for `hold_admin_calls(false)`.
    pub fn held_admin_calls(&self) -> usize {
        self.lock().admin_waiting
    }

    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// Makes every nonce issued so far expired (for "came back too late" tests).
    pub fn expire_nonces(&self) {
        let mut state = self.lock();
        let ttl = state.options.nonce_ttl;
        for record in state.nonces.values_mut() {
            if let Some(past) = Instant::now().checked_sub(ttl + Duration::from_secs(1)) {
                record.created = past;
            }
        }
    }

    /// Waits until `condition` holds (checked every 20 ms); false on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&TestForum) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The user `browser` is logged in as at the forum (`GET /session/current.json`).
    pub async fn current_user(&self, browser: &Browser) -> Option<u64> {
        let resp = browser.get(self.url("/session/current.json")).await;
        if resp.status() != StatusCode::OK {
            return None;
        }
        let body: Value = resp.json().await.ok()?;
        body["current_user"]["id"].as_u64()
    }

    /// A signed answer the way a DiscourseConnect provider sends it: strict Base64 of the
    /// form-encoded fields, `sso=<CGI-escaped>&sig=<hex>`.
    pub fn signed_query(&self, fields: &[(&str, &str)]) -> String {
        encode_signed(&self.sso_secret(), fields)
    }

    fn lock(&self) -> MutexGuard<'_, ForumState> {
        lock(&self.state)
    }
}

impl Drop for TestForum {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, ForumState> {
    match state.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

// ---------------------------------------------------------------------------------------------
// DiscourseConnect encoding, done the Ruby way.

fn hmac_hex(secret: &str, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `URI.encode_www_form_component` / `CGI.escape`: only `A–Z a–z 0–9 * - . _` stay, space → `+`.
fn www_form_escape(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `Rack::Utils.build_query`, then `Base64.strict_encode64`, `CGI.escape` and the hex sig.
fn encode_signed(secret: &str, fields: &[(&str, &str)]) -> String {
    let inner = fields
        .iter()
        .map(|(k, v)| format!("{}={}", www_form_escape(k), www_form_escape(v)))
        .collect::<Vec<_>>()
        .join("&");
    let sso = general_purpose::STANDARD.encode(inner.as_bytes());
    let sig = hmac_hex(secret, &sso);
    format!("sso={}&sig={sig}", www_form_escape(&sso))
}

/// `URI.decode_www_form_component`: `+` is a space (when asked), `%XY` a byte, and a `%` not
/// followed by two hex digits is an error (Rack answers 400).
fn percent_decode(input: &str, plus_is_space: bool) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `Rack::Utils.parse_query`: pairs in order, duplicates kept. `None` for a bad escape.
fn rack_parse_query(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .map(|part| part.trim_start_matches(' '))
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            Some((percent_decode(key, true)?, percent_decode(value, true)?))
        })
        .collect()
}

/// `Base64.decode64`: skips characters outside the alphabet, stops at padding, ignores a
/// dangling sextet.
fn ruby_decode64(text: &str) -> Vec<u8> {
    let mut clean: String = text
        .chars()
        .take_while(|c| *c != '=')
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
        .collect();
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    let lenient = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    lenient.decode(clean).unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
enum ConnectError {
    /// `DiscourseConnectBase::PayloadParseError` → 422
    PayloadParse,
    /// `DiscourseConnectBase::SignatureError` → 422
    Signature,
    /// A key repeated or an unparsable inner query: Ruby fails later → 500
    Malformed,
}

/// `DiscourseConnectBase.parse` for an already URL-decoded `sso` and `sig`.
fn parse_connect(
    secret: &str,
    sso: &str,
    sig: &str,
) -> Result<BTreeMap<String, String>, ConnectError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '=' | '\r' | '\n' | '/' | '+');
    if !sso.chars().all(allowed) {
        return Err(ConnectError::PayloadParse);
    }
    if hmac_hex(secret, sso) != sig {
        return Err(ConnectError::Signature);
    }
    let inner = String::from_utf8_lossy(&ruby_decode64(sso)).into_owned();
    let pairs = rack_parse_query(&inner).ok_or(ConnectError::Malformed)?;
    let mut payload = BTreeMap::new();
    for (key, value) in pairs {
        if payload.insert(key, value).is_some() {
            return Err(ConnectError::Malformed);
        }
    }
    Ok(payload)
}

// ---------------------------------------------------------------------------------------------
// HTTP.

async fn handle(State(state): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let subfolder = lock(&state).options.subfolder.clone();
    let path = match subfolder {
        // Like Rails under a relative URL root: only paths inside it exist.
        Some(prefix) => match parts.uri.path().strip_prefix(prefix.as_str()) {
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            _ => return json_response(StatusCode::NOT_FOUND, &not_found()),
        },
        None => parts.uri.path().to_owned(),
    };
    let query = parts.uri.query().map(str::to_owned);
    let method = parts.method.clone();
    let headers = parts.headers;
    let browser = cookie(&headers, SESSION_COOKIE);

    if path.starts_with("/u/by-external/")
        || path.starts_with("/users/by-external/")
        || path.starts_with("/admin/")
    {
        if lock(&state).admin_held {
            lock(&state).admin_waiting += 1;
            while lock(&state).admin_held {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            lock(&state).admin_waiting -= 1;
        }
        return admin(&state, &method, &path, query.as_deref(), &headers, &body);
    }
    match (method.clone(), path.as_str()) {
        (Method::GET, "/session/sso") => sso_start(&state, query.as_deref(), browser),
        (Method::GET, "/session/sso_login") => {
            sso_login(&state, query.as_deref().unwrap_or(""), browser)
        }
        (Method::GET, "/session/current.json") => current_user(&state, browser),
        (Method::DELETE, p) if p.starts_with("/session/") => logout(&state, browser),
        (Method::GET, p) => text(StatusCode::OK, &format!("test forum page {p}")),
        _ => json_response(StatusCode::NOT_FOUND, &not_found()),
    }
}

/// `SessionController#sso`: a fresh nonce bound to this browser, then 302 to the provider.
fn sso_start(state: &Shared, query: Option<&str>, browser: Option<String>) -> Response {
    let params = rack_parse_query(query.unwrap_or("")).unwrap_or_default();
    let return_path = params
        .into_iter()
        .rev()
        .find(|(k, _)| k == "return_path")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "/".to_owned());
    let (browser, new_cookie) = match browser {
        Some(id) => (id, false),
        None => (random_hex(16), true),
    };

    let mut state = lock(state);
    let Some(connect_url) = state.options.connect_url.clone() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "discourse_connect_url is not set",
        );
    };
    let nonce = random_hex(16);
    let return_sso_url = format!("{}/session/sso_login", state.base);
    state.nonces.insert(
        nonce.clone(),
        NonceRecord {
            browser: browser.clone(),
            return_path,
            created: Instant::now(),
            used: false,
        },
    );
    state.sessions.entry(browser.clone()).or_insert(None);
    let signed = encode_signed(
        &state.options.sso_secret,
        &[("nonce", &nonce), ("return_sso_url", &return_sso_url)],
    );
    drop(state);

    let separator = if connect_url.as_str().contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{connect_url}{separator}{signed}");
    let mut response = redirect(&location);
    if new_cookie {
        set_session_cookie(&mut response, &browser);
    }
    response
}

/// `SessionController#sso_login`, in Discourse's order of checks.
fn sso_login(state: &Shared, raw_query: &str, browser: Option<String>) -> Response {
    let mut state = lock(state);
    match check_sso_login(&mut state, raw_query, browser.as_deref()) {
        Ok((location, login)) => {
            state.attempts.push(SsoLoginAttempt {
                status: StatusCode::FOUND.as_u16(),
                error: "",
                payload: Some(login.payload.clone()),
            });
            if let Some(browser) = browser {
                state.sessions.insert(browser, Some(login.user_id));
            }
            state.logins.push(login);
            redirect(&location)
        }
        Err((status, error, payload)) => {
            state.attempts.push(SsoLoginAttempt {
                status: status.as_u16(),
                error,
                payload,
            });
            text(status, &format!("sso_login failed: {error}"))
        }
    }
}

type LoginOutcome =
    Result<(String, ForumLogin), (StatusCode, &'static str, Option<BTreeMap<String, String>>)>;

fn check_sso_login(state: &mut ForumState, raw_query: &str, browser: Option<&str>) -> LoginOutcome {
    let Some(pairs) = rack_parse_query(raw_query) else {
        return Err((StatusCode::BAD_REQUEST, "bad_query", None));
    };
    let values = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let (sso, sig) = (values("sso"), values("sig"));
    // params.require(:sso) / params.require(:sig)
    if sso.iter().all(String::is_empty) || sig.iter().all(String::is_empty) {
        return Err((StatusCode::BAD_REQUEST, "param_missing", None));
    }
    if sso.len() > 1 || sig.len() > 1 {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "unknown_error", None));
    }
    let payload = match parse_connect(&state.options.sso_secret, &sso[0], &sig[0]) {
        Ok(payload) => payload,
        Err(ConnectError::PayloadParse) => {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "payload_parse_error",
                None,
            ));
        }
        Err(ConnectError::Signature) => {
            return Err((StatusCode::UNPROCESSABLE_ENTITY, "signature_error", None));
        }
        Err(ConnectError::Malformed) => {
            return Err((StatusCode::INTERNAL_SERVER_ERROR, "unknown_error", None));
        }
    };

    // nonce_valid?: issued by this forum, to this browser, not expired, not used.
    let ttl = state.options.nonce_ttl;
    let nonce = payload.get("nonce").cloned().unwrap_or_default();
    let record = state.nonces.get_mut(&nonce).filter(|record| {
        !record.used && record.created.elapsed() < ttl && Some(record.browser.as_str()) == browser
    });
    let Some(record) = record else {
        return Err((
            StatusCode::from_u16(419).unwrap_or(StatusCode::FORBIDDEN),
            "timeout_expired",
            Some(payload),
        ));
    };
    // expire_nonce! runs before the user is looked up: any later failure still spends it.
    record.used = true;
    let return_path = record.return_path.clone();

    let external_id = payload.get("external_id").map(String::as_str).unwrap_or("");
    if external_id.is_empty() {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "blank_id_error",
            Some(payload),
        ));
    }
    if BANNED_EXTERNAL_IDS
        .iter()
        .any(|banned| external_id.eq_ignore_ascii_case(banned))
    {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "unknown_error",
            Some(payload),
        ));
    }
    let user_id = lookup_or_create_user(state, &payload);
    let location = format!("{}{}", state.base, safe_return_path(&return_path));
    Ok((location, ForumLogin { payload, user_id }))
}

/// Where Discourse sends the browser after login: paths containing `/session/sso` and
/// absolute URLs become `/` (no `discourse_connect_allowed_redirect_domains` here).
fn safe_return_path(path: &str) -> String {
    if path.contains("/session/sso") || !path.starts_with('/') || path.starts_with("//") {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

/// `DiscourseConnect#lookup_or_create_user`: by external_id, else by email (unless
/// `require_activation=true`, re-keying that account), else a new user.
fn lookup_or_create_user(state: &mut ForumState, payload: &BTreeMap<String, String>) -> u64 {
    let external_id = payload.get("external_id").cloned().unwrap_or_default();
    let email = payload.get("email").cloned();
    let by_external = state
        .users
        .iter()
        .position(|u| u.external_id.as_deref() == Some(external_id.as_str()));
    let by_email = || {
        if payload.get("require_activation").map(String::as_str) == Some("true") {
            return None;
        }
        let wanted = email.as_deref()?.to_lowercase();
        state.users.iter().position(|u| {
            u.email.as_deref().map(str::to_lowercase).as_deref() == Some(wanted.as_str())
        })
    };
    let found = by_external.or_else(by_email);
    if let Some(index) = found {
        let user = &mut state.users[index];
        user.external_id = Some(external_id);
        user.last_payload = payload.clone();
        return user.id;
    }
    let id = state.next_user_id;
    state.next_user_id += 1;
    let username = payload
        .get("username")
        .filter(|u| !u.is_empty())
        .cloned()
        .or_else(|| {
            email
                .as_deref()
                .and_then(|e| e.split('@').next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "user".to_owned());
    state.users.push(ForumUser {
        id,
        external_id: Some(external_id),
        username,
        email,
        name: payload.get("name").cloned(),
        last_payload: payload.clone(),
        suspended: None,
    });
    id
}

fn current_user(state: &Shared, browser: Option<String>) -> Response {
    let state = lock(state);
    let user = browser
        .and_then(|b| state.sessions.get(&b).copied().flatten())
        .and_then(|id| state.users.iter().find(|u| u.id == id));
    match user {
        Some(user) => json_response(
            StatusCode::OK,
            &json!({ "current_user": { "id": user.id, "username": user.username, "name": user.name } }),
        ),
        None => json_response(StatusCode::NOT_FOUND, &not_found()),
    }
}

/// `SessionController#destroy`: ends this browser's forum session and answers the JSON the
/// Ember client turns into `window.location`.
fn logout(state: &Shared, browser: Option<String>) -> Response {
    let mut state = lock(state);
    if let Some(browser) = browser {
        state.sessions.insert(browser, None);
    }
    let redirect_url = state
        .options
        .logout_redirect
        .clone()
        .unwrap_or_else(|| "/".to_owned());
    json_response(StatusCode::OK, &json!({ "redirect_url": redirect_url }))
}

fn admin(
    state: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &str,
) -> Response {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut call = AdminCall {
        endpoint: AdminEndpoint::Any,
        method: method.to_string(),
        path: path.to_owned(),
        query: query.map(str::to_owned),
        api_key: header_text("api-key"),
        api_username: header_text("api-username"),
        accept: header_text("accept"),
        content_type: header_text("content-type"),
        body: body.to_owned(),
        status: 0,
        user_id: None,
    };
    let mut state = lock(state);
    let response = admin_inner(&mut state, &mut call);
    call.status = response.status().as_u16();
    state.admin_calls.push(call);
    response
}

fn admin_inner(state: &mut ForumState, call: &mut AdminCall) -> Response {
    let by_external = call
        .path
        .strip_prefix("/u/by-external/")
        .or_else(|| call.path.strip_prefix("/users/by-external/"))
        .map(str::to_owned);
    let user_action = |suffix: &str| {
        call.path
            .strip_prefix("/admin/users/")
            .and_then(|rest| rest.strip_suffix(suffix))
            .map(str::to_owned)
    };
    let log_out_id = user_action("/log_out");
    let suspend_id = user_action("/suspend");
    let unsuspend_id = user_action("/unsuspend");
    call.endpoint = match (call.method.as_str(), &by_external, &log_out_id) {
        ("GET", Some(_), _) => AdminEndpoint::ByExternal,
        ("POST", _, Some(_)) => AdminEndpoint::LogOut,
        ("PUT", _, _) if suspend_id.is_some() => AdminEndpoint::Suspend,
        ("PUT", _, _) if unsuspend_id.is_some() => AdminEndpoint::Unsuspend,
        ("POST", _, _) if call.path == "/admin/users/sync_sso" => AdminEndpoint::SyncSso,
        _ => return json_response(StatusCode::NOT_FOUND, &not_found()),
    };
    if let Some(id) = log_out_id
        .as_ref()
        .or(suspend_id.as_ref())
        .or(unsuspend_id.as_ref())
    {
        call.user_id = id.parse().ok();
    }

    if let Some(status) = scheduled_failure(state, call.endpoint) {
        return failure_response(status);
    }
    let authorized = call.api_key.as_deref() == Some(state.options.api_key.as_str())
        && call.api_username.as_deref() == Some(state.options.api_username.as_str());
    if !authorized {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({
                "errors": ["You are not permitted to view the requested resource. The API username or key is invalid."],
                "error_type": "invalid_access",
            }),
        );
    }

    match call.endpoint {
        AdminEndpoint::ByExternal => {
            let raw = by_external.unwrap_or_default();
            // Rails strips a trailing `.json` (the format), then decodes the segment.
            let raw = raw.strip_suffix(".json").unwrap_or(&raw);
            let Some(external_id) = percent_decode(raw, false) else {
                return json_response(StatusCode::BAD_REQUEST, &json!({ "errors": ["bad path"] }));
            };
            match state
                .users
                .iter()
                .find(|u| u.external_id.as_deref() == Some(external_id.as_str()))
            {
                Some(user) => json_response(
                    StatusCode::OK,
                    &json!({
                        "user_badges": [],
                        "user": { "id": user.id, "username": user.username, "name": user.name },
                    }),
                ),
                None => json_response(StatusCode::NOT_FOUND, &not_found()),
            }
        }
        AdminEndpoint::LogOut => {
            let Some(id) = call
                .user_id
                .filter(|id| state.users.iter().any(|u| u.id == *id))
            else {
                return json_response(StatusCode::NOT_FOUND, &not_found());
            };
            for session in state.sessions.values_mut() {
                if *session == Some(id) {
                    *session = None;
                }
            }
            json_response(StatusCode::OK, &json!({ "success": "OK" }))
        }
        AdminEndpoint::SyncSso => sync_sso(state, call),
        AdminEndpoint::Suspend | AdminEndpoint::Unsuspend => suspension(state, call),
        AdminEndpoint::Any => json_response(StatusCode::NOT_FOUND, &not_found()),
    }
}

/// `Admin::UsersController#suspend` and `#unsuspend`: `suspend_until` and `reason` are
/// required (400 otherwise); suspending ends the user's sessions.
fn suspension(state: &mut ForumState, call: &AdminCall) -> Response {
    let Some(id) = call
        .user_id
        .filter(|id| state.users.iter().any(|u| u.id == *id))
    else {
        return json_response(StatusCode::NOT_FOUND, &not_found());
    };
    let params = rack_parse_query(&call.body).unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let suspended = if call.endpoint == AdminEndpoint::Suspend {
        let (Some(until), Some(reason)) = (param("suspend_until"), param("reason")) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "errors": ["suspend_until and reason are required"] }),
            );
        };
        if chrono::DateTime::parse_from_rfc3339(&until).is_err() {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "errors": ["suspend_until is not a date"] }),
            );
        }
        for session in state.sessions.values_mut() {
            if *session == Some(id) {
                *session = None;
            }
        }
        Some((until, reason))
    } else {
        None
    };
    if let Some(user) = state.users.iter_mut().find(|u| u.id == id) {
        user.suspended = suspended;
    }
    json_response(StatusCode::OK, &json!({ "suspension": {} }))
}

/// `Admin::UsersController#sync_sso`: Rails decodes `sso` and `sig` once, then the controller
/// glues `"sso=#{sso}&sig=#{sig}"` back together WITHOUT re-escaping and parses that again, so
/// a `+` in the Base64 turns into a space and fails.
fn sync_sso(state: &mut ForumState, call: &AdminCall) -> Response {
    let mut params = rack_parse_query(call.query.as_deref().unwrap_or("")).unwrap_or_default();
    if call
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
    {
        params.extend(rack_parse_query(&call.body).unwrap_or_default());
    }
    let last = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(sso), Some(sig)) = (last("sso"), last("sig")) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "errors": ["param is missing"] }),
        );
    };
    let reparsed = rack_parse_query(&format!("sso={sso}&sig={sig}")).unwrap_or_default();
    let get = |name: &str| {
        reparsed
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let failed = |message: &str| {
        json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "failed": "FAILED", "message": message }),
        )
    };
    let payload = match parse_connect(&state.options.sso_secret, &get("sso"), &get("sig")) {
        Ok(payload) => payload,
        Err(ConnectError::PayloadParse) => return failed("payload parse error"),
        Err(ConnectError::Signature) => return failed("signature error"),
        Err(ConnectError::Malformed) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "unknown error");
        }
    };
    if payload.get("external_id").is_none_or(String::is_empty) {
        return failed("external_id is blank");
    }
    let id = lookup_or_create_user(state, &payload);
    state.syncs.push(payload);
    let user = state.users.iter().find(|u| u.id == id);
    json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "username": user.map(|u| u.username.clone()),
            "name": user.and_then(|u| u.name.clone()),
        }),
    )
}

fn scheduled_failure(state: &mut ForumState, endpoint: AdminEndpoint) -> Option<u16> {
    let rule = state.failures.iter_mut().find(|rule| {
        (rule.endpoint == AdminEndpoint::Any || rule.endpoint == endpoint)
            && rule.remaining != Some(0)
    })?;
    if let Some(remaining) = rule.remaining.as_mut() {
        *remaining -= 1;
    }
    Some(rule.status)
}

fn failure_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if status == 429 {
        let mut response = json_response(
            code,
            &json!({
                "errors": ["You’ve performed this action too many times. Please wait 1 second before trying again."],
                "error_type": "rate_limit",
                "extras": { "wait_seconds": 1 },
            }),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    } else {
        text(code, "scheduled failure of the test forum")
    }
}

fn not_found() -> Value {
    json!({ "errors": ["The requested URL or resource could not be found."], "error_type": "not_found" })
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_session_cookie(response: &mut Response, browser: &str) {
    let value = format!("{SESSION_COOKIE}={browser}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

fn redirect(location: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn text(status: StatusCode, body: &str) -> Response {
    let mut response = Response::new(Body::from(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
