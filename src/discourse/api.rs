//! Discourse admin API client (user lookup by external id, log out, sync_sso, suspend) over the shared HTTP client.
//!
//! Three endpoints, authenticated with the `Api-Key` and `Api-Username` headers:
//! `GET /u/by-external/{external_id}.json` (scope `users:show`), `POST
//! /admin/users/{id}/log_out` (scope `users:log_out`, acting user must be an admin) and `POST
//! /admin/users/sync_sso` (scope `users:sync_sso`). Errors say whether retrying can help, which
//! is what the relay needs. The API key is only ever put in a sensitive header, never logged.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Longest piece of a Discourse error body kept in an [`ApiError`].
const MAX_ERROR_BODY_CHARS: usize = 200;

/// Why a Discourse API call failed, split by whether a later retry can succeed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Connection refused, reset, timed out...: Discourse may be restarting.
    #[error("cannot reach Discourse: {0}")]
    Network(String),
    /// 5xx, 408 or 429: Discourse is there but cannot answer now.
    #[error("Discourse is unavailable (HTTP {status})")]
    Unavailable {
        status: u16,
        /// The delay a 429 or 503 asked for in `Retry-After` (delta-seconds form).
        retry_after: Option<Duration>,
    },
    /// 403: wrong key, a key without the needed scope, or an inactive acting user.
    #[error(
        "Discourse refused the API credentials (HTTP 403): check api_key, api_username and the key's scopes"
    )]
    BadCredentials,
    /// 404 from `log_out`: the user id is unknown, or `api_username` is not an admin (the admin
    /// routes do not match for other users).
    #[error(
        "Discourse answered 404 to log_out for user {user_id} (unknown user, or api_username is not an admin)"
    )]
    UserNotFound { user_id: u64 },
    /// Any other 4xx, e.g. 422 from `sync_sso` for a bad payload or signature.
    #[error("Discourse refused the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// Discourse's `/u/by-external/` route cannot address ids with a `/` (route constraint) or
    /// ending in `.json` (stripped as a format), nor an empty id.
    #[error(
        "this external_id cannot be looked up through /u/by-external/ (empty, contains '/', or ends in .json)"
    )]
    UnaddressableExternalId,
    /// `sync_sso` rebuilds its query without re-escaping, so a `+` in the payload would reach
    /// the DiscourseConnect parser as a space; the codec's strict encoding never produces one.
    #[error("the sso payload contains '+', which sync_sso would turn into a space")]
    UnsendablePayload,
    /// The configuration cannot form a request (base URL without a path, header-unsafe key).
    #[error("invalid Discourse API settings: {0}")]
    InvalidSettings(&'static str),
    /// A 2xx whose body is not what Discourse sends.
    #[error("unexpected answer from Discourse: {0}")]
    UnexpectedResponse(String),
}

impl ApiError {
    /// Whether the same call may succeed later (network trouble, 5xx, 408, 429).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Network(_) | Self::Unavailable { .. })
    }

    /// How long Discourse asked us to wait, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Short stable name for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Network(_) => "network",
            Self::Unavailable { .. } => "unavailable",
            Self::BadCredentials => "bad_credentials",
            Self::UserNotFound { .. } => "user_not_found",
            Self::Rejected { .. } => "rejected",
            Self::UnaddressableExternalId => "unaddressable_external_id",
            Self::UnsendablePayload => "unsendable_payload",
            Self::InvalidSettings(_) => "invalid_settings",
            Self::UnexpectedResponse(_) => "unexpected_response",
        }
    }
}

impl From<reqwest::Error> for ApiError {
    fn from(error: reqwest::Error) -> Self {
        if error.is_builder() {
            return Self::InvalidSettings("the request to Discourse cannot be built");
        }
        // A failed send is worth retrying; the URL is left out to keep log lines short.
        Self::Network(error.without_url().to_string())
    }
}

/// Client of the Discourse admin API. Cheap to clone (the HTTP client is shared).
#[derive(Debug, Clone)]
pub struct DiscourseApi {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    api_username: String,
}

impl DiscourseApi {
    /// `base_url` is the forum's URL; a path prefix (subfolder install) is kept. `http` should
    /// be the bridge's shared client (timeouts set, redirects off).
    pub fn new(
        http: reqwest::Client,
        base_url: Url,
        api_key: SecretString,
        api_username: String,
    ) -> Self {
        Self {
            http,
            base_url,
            api_key,
            api_username,
        }
    }

    /// The Discourse user id for a DiscourseConnect `external_id`, `None` when no user has it.
    pub async fn user_id_by_external_id(&self, external_id: &str) -> Result<Option<u64>, ApiError> {
        if external_id.is_empty() || external_id.contains('/') || external_id.ends_with(".json") {
            return Err(ApiError::UnaddressableExternalId);
        }
        let url = self.url(&["u", "by-external", &format!("{external_id}.json")])?;
        let response = self.send(Method::GET, url, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = success_json(response).await?;
        let id = body
            .get("user")
            .and_then(|user| user.get("id"))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| {
                ApiError::UnexpectedResponse("no user.id in by-external answer".into())
            })?;
        Ok(Some(id))
    }

    /// Ends every session of the user on every device (`POST /admin/users/{id}/log_out`).
    pub async fn log_out(&self, user_id: u64) -> Result<(), ApiError> {
        let url = self.url(&["admin", "users", &user_id.to_string(), "log_out"])?;
        let response = self.send(Method::POST, url, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ApiError::UserNotFound { user_id });
        }
        // `send` let only 2xx and 404 through; the `{"success":"OK"}` body carries nothing more.
        Ok(())
    }

    /// Pushes a signed DiscourseConnect payload (`POST /admin/users/sync_sso`), creating or
    /// updating the user without a login, and returns the user's id.
    pub async fn sync_sso(&self, sso: &str, sig: &str) -> Result<u64, ApiError> {
        if sso.contains('+') {
            return Err(ApiError::UnsendablePayload);
        }
        let url = self.url(&["admin", "users", "sync_sso"])?;
        // Strict form encoding: `+`, `/` and `=` of the Base64 travel as %2B, %2F, %3D.
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sso", sso)
            .append_pair("sig", sig)
            .finish();
        let response = self.send(Method::POST, url, Some(body)).await?;
        let body = success_json(response).await?;
        body.get("id")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| ApiError::UnexpectedResponse("no id in sync_sso answer".into()))
    }

    /// Suspends the user until `until` (`PUT /admin/users/{id}/suspend`, scope
    /// `users:suspend`) with `reason` shown to staff and the user. Suspending also ends the
    /// user's sessions. Suspending a suspended user again only moves the end.
    pub async fn suspend(
        &self,
        user_id: u64,
        until: chrono::DateTime<chrono::Utc>,
        reason: &str,
    ) -> Result<(), ApiError> {
        let url = self.url(&["admin", "users", &user_id.to_string(), "suspend"])?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "suspend_until",
                &until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .append_pair("reason", reason)
            .finish();
        let response = self.send(Method::PUT, url, Some(body)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ApiError::UserNotFound { user_id });
        }
        Ok(())
    }

    /// Lifts a suspension (`PUT /admin/users/{id}/unsuspend`, scope `users:unsuspend`).
    pub async fn unsuspend(&self, user_id: u64) -> Result<(), ApiError> {
        let url = self.url(&["admin", "users", &user_id.to_string(), "unsuspend"])?;
        let response = self.send(Method::PUT, url, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ApiError::UserNotFound { user_id });
        }
        Ok(())
    }

    /// `base_url` with `segments` appended, each percent-escaped as a single path segment.
    fn url(&self, segments: &[&str]) -> Result<Url, ApiError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| ApiError::InvalidSettings("the Discourse URL cannot have a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn auth_headers(&self) -> Result<HeaderMap, ApiError> {
        let mut key = HeaderValue::from_str(self.api_key.expose_secret())
            .map_err(|_| ApiError::InvalidSettings("api_key is not a valid header value"))?;
        key.set_sensitive(true);
        let username = HeaderValue::from_bytes(self.api_username.as_bytes())
            .map_err(|_| ApiError::InvalidSettings("api_username is not a valid header value"))?;
        let mut headers = HeaderMap::new();
        headers.insert("Api-Key", key);
        headers.insert("Api-Username", username);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        Ok(headers)
    }

    /// Sends the request and turns statuses that are errors whatever the endpoint into
    /// [`ApiError`]s; 2xx and 404 are left to the caller.
    async fn send(
        &self,
        method: Method,
        url: Url,
        form: Option<String>,
    ) -> Result<Response, ApiError> {
        let path = url.path().to_owned();
        let mut request = self
            .http
            .request(method.clone(), url)
            .headers(self.auth_headers()?);
        if let Some(form) = form {
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
        }
        let response = request.send().await?;
        let status = response.status();
        tracing::debug!(%method, path, status = status.as_u16(), "Discourse API call");

        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(response);
        }
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(ApiError::Unavailable {
                status: status.as_u16(),
                retry_after,
            });
        }
        if status == StatusCode::FORBIDDEN {
            return Err(ApiError::BadCredentials);
        }
        let message = response.text().await.unwrap_or_default();
        Err(ApiError::Rejected {
            status: status.as_u16(),
            message: message.chars().take(MAX_ERROR_BODY_CHARS).collect(),
        })
    }
}

/// The JSON body of a successful answer; a 404 reaching here is a refusal like any 4xx.
async fn success_json(response: Response) -> Result<serde_json::Value, ApiError> {
    let status = response.status();
    if !status.is_success() {
        return Err(ApiError::Rejected {
            status: status.as_u16(),
            message: String::new(),
        });
    }
    response
        .json()
        .await
        .map_err(|e| ApiError::UnexpectedResponse(e.without_url().to_string()))
}

/// A small Discourse stand-in for tests: a real HTTP server on a loopback port that answers
/// the three admin API routes and records every request.
#[cfg(test)]
pub(crate) mod fake_discourse {
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use serde_json::json;

    pub(crate) const API_KEY: &str = "test-api-key-0123456789";
    pub(crate) const API_USERNAME: &str = "system";

    /// One request as the server saw it.
    #[derive(Debug, Clone)]
    pub(crate) struct Recorded {
        pub method: Method,
        /// Raw (still percent-escaped) path.
        pub path: String,
        pub api_key: Option<String>,
        pub api_username: Option<String>,
        pub accept: Option<String>,
        pub content_type: Option<String>,
        pub body: String,
    }

    #[derive(Debug, Default)]
    pub(crate) struct FakeState {
        /// external_id → user id.
        pub users: HashMap<String, u64>,
        /// Statuses served (with an optional Retry-After) before the routes answer normally.
        pub outage: VecDeque<(StatusCode, Option<&'static str>)>,
        pub requests: Vec<Recorded>,
        /// User ids `log_out` succeeded for, in order.
        pub logged_out: Vec<u64>,
    }

    #[derive(Debug, Clone)]
    pub(crate) struct FakeDiscourse {
        pub url: url::Url,
        pub state: Arc<Mutex<FakeState>>,
    }

    impl FakeDiscourse {
        pub(crate) async fn start(users: &[(&str, u64)]) -> Self {
            let state = Arc::new(Mutex::new(FakeState {
                users: users.iter().map(|(e, id)| ((*e).to_owned(), *id)).collect(),
                ..FakeState::default()
            }));
            let app = axum::Router::new()
                .fallback(handle)
                .with_state(Arc::clone(&state));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self {
                url: url::Url::parse(&format!("http://{addr}")).unwrap(),
                state,
            }
        }

        pub(crate) fn api(&self) -> super::DiscourseApi {
            super::DiscourseApi::new(
                reqwest::Client::new(),
                self.url.clone(),
                secrecy::SecretString::from(API_KEY),
                API_USERNAME.to_owned(),
            )
        }

        pub(crate) fn fail_next(&self, status: StatusCode, times: usize) {
            let mut state = self.state.lock().unwrap();
            for _ in 0..times {
                state.outage.push_back((status, None));
            }
        }

        pub(crate) fn logged_out(&self) -> Vec<u64> {
            self.state.lock().unwrap().logged_out.clone()
        }

        pub(crate) fn requests(&self) -> Vec<Recorded> {
            self.state.lock().unwrap().requests.clone()
        }
    }

    fn header(headers: &HeaderMap, name: &str) -> Option<String> {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    fn percent_decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    async fn handle(
        State(state): State<Arc<Mutex<FakeState>>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut state = state.lock().unwrap();
        let path = uri.path().to_owned();
        state.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            api_key: header(&headers, "api-key"),
            api_username: header(&headers, "api-username"),
            accept: header(&headers, "accept"),
            content_type: header(&headers, "content-type"),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if let Some((status, retry_after)) = state.outage.pop_front() {
            let mut response = (status, "try later").into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.parse().unwrap());
            }
            return response;
        }
        if header(&headers, "api-key").as_deref() != Some(API_KEY) {
            return (
                StatusCode::FORBIDDEN,
                r#"{"errors":["invalid_api_credentials"]}"#,
            )
                .into_response();
        }

        if method == Method::GET
            && let Some(rest) = path.strip_prefix("/u/by-external/")
            && let Some(escaped) = rest.strip_suffix(".json")
        {
            return match state.users.get(&percent_decode(escaped)) {
                Some(id) => {
                    axum::Json(json!({"user_badges": [], "user": {"id": id}})).into_response()
                }
                None => (StatusCode::NOT_FOUND, r#"{"error_type":"not_found"}"#).into_response(),
            };
        }
        if method == Method::POST
            && let Some(rest) = path.strip_prefix("/admin/users/")
            && let Some(id) = rest.strip_suffix("/log_out")
            && let Ok(id) = id.parse::<u64>()
        {
            if state.users.values().any(|known| *known == id) {
                state.logged_out.push(id);
                return axum::Json(json!({"success": "OK"})).into_response();
            }
            return (StatusCode::NOT_FOUND, r#"{"error_type":"not_found"}"#).into_response();
        }
        if method == Method::POST && path == "/admin/users/sync_sso" {
            let form: HashMap<String, String> =
                url::form_urlencoded::parse(&body).into_owned().collect();
            return match (form.get("sso"), form.get("sig")) {
                (Some(_), Some(sig)) if sig == "good-sig" => {
                    axum::Json(json!({"id": 42, "username": "alice"})).into_response()
                }
                _ => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    r#"{"failed":"FAILED","message":"bad signature"}"#,
                )
                    .into_response(),
            };
        }
        (StatusCode::NOT_FOUND, "no route").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::fake_discourse::{API_KEY, API_USERNAME, FakeDiscourse};
    use super::*;

    #[tokio::test]
    async fn looks_up_a_user_with_the_api_headers() {
        let discourse = FakeDiscourse::start(&[("alice", 7)]).await;
        assert_eq!(
            discourse
                .api()
                .user_id_by_external_id("alice")
                .await
                .unwrap(),
            Some(7)
        );
        let request = &discourse.requests()[0];
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.path, "/u/by-external/alice.json");
        assert_eq!(request.api_key.as_deref(), Some(API_KEY));
        assert_eq!(request.api_username.as_deref(), Some(API_USERNAME));
        assert_eq!(request.accept.as_deref(), Some("application/json"));
    }

    #[tokio::test]
    async fn escapes_the_external_id_as_one_path_segment() {
        let odd = "a b?c#d%e+f@g.h";
        let discourse = FakeDiscourse::start(&[(odd, 9)]).await;
        assert_eq!(
            discourse.api().user_id_by_external_id(odd).await.unwrap(),
            Some(9)
        );
        let path = &discourse.requests()[0].path;
        assert_eq!(path, "/u/by-external/a%20b%3Fc%23d%25e+f@g.h.json");
    }

    #[tokio::test]
    async fn keeps_a_subfolder_prefix_of_the_forum_url() {
        let discourse = FakeDiscourse::start(&[]).await;
        let api = DiscourseApi::new(
            reqwest::Client::new(),
            discourse.url.join("/forum/").unwrap(),
            SecretString::from(API_KEY),
            API_USERNAME.to_owned(),
        );
        // The fake serves no /forum prefix, so the lookup is a 404: what matters is the path.
        assert_eq!(api.user_id_by_external_id("x").await.unwrap(), None);
        assert_eq!(discourse.requests()[0].path, "/forum/u/by-external/x.json");
    }

    #[tokio::test]
    async fn unknown_external_id_is_none() {
        let discourse = FakeDiscourse::start(&[]).await;
        assert_eq!(
            discourse
                .api()
                .user_id_by_external_id("ghost")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn unaddressable_external_ids_are_refused_without_a_request() {
        let discourse = FakeDiscourse::start(&[]).await;
        for id in ["a/b", "report.json", ""] {
            let error = discourse
                .api()
                .user_id_by_external_id(id)
                .await
                .unwrap_err();
            assert!(matches!(error, ApiError::UnaddressableExternalId));
            assert!(!error.is_retryable());
        }
        assert!(discourse.requests().is_empty());
    }

    #[tokio::test]
    async fn logs_out_by_numeric_id() {
        let discourse = FakeDiscourse::start(&[("alice", 7)]).await;
        discourse.api().log_out(7).await.unwrap();
        assert_eq!(discourse.logged_out(), vec![7]);
        let request = &discourse.requests()[0];
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, "/admin/users/7/log_out");
        assert_eq!(request.api_key.as_deref(), Some(API_KEY));
    }

    #[tokio::test]
    async fn log_out_of_an_unknown_id_is_a_permanent_error() {
        let discourse = FakeDiscourse::start(&[]).await;
        let error = discourse.api().log_out(99).await.unwrap_err();
        assert!(matches!(error, ApiError::UserNotFound { user_id: 99 }));
        assert!(!error.is_retryable());
    }

    #[tokio::test]
    async fn server_errors_and_rate_limits_are_retryable() {
        let discourse = FakeDiscourse::start(&[("alice", 7)]).await;
        discourse.fail_next(StatusCode::SERVICE_UNAVAILABLE, 1);
        discourse
            .state
            .lock()
            .unwrap()
            .outage
            .push_back((StatusCode::TOO_MANY_REQUESTS, Some("17")));
        let api = discourse.api();

        let error = api.log_out(7).await.unwrap_err();
        assert!(error.is_retryable());
        assert_eq!(error.retry_after(), None);

        let error = api.log_out(7).await.unwrap_err();
        assert!(matches!(error, ApiError::Unavailable { status: 429, .. }));
        assert_eq!(error.retry_after(), Some(Duration::from_secs(17)));

        api.log_out(7).await.unwrap();
        assert_eq!(discourse.logged_out(), vec![7]);
    }

    #[tokio::test]
    async fn bad_credentials_are_permanent() {
        let discourse = FakeDiscourse::start(&[("alice", 7)]).await;
        let api = DiscourseApi::new(
            reqwest::Client::new(),
            discourse.url.clone(),
            SecretString::from("wrong key"),
            API_USERNAME.to_owned(),
        );
        let error = api.user_id_by_external_id("alice").await.unwrap_err();
        assert!(matches!(error, ApiError::BadCredentials));
        assert!(!error.is_retryable());
        assert!(!error.to_string().contains("wrong key"));
    }

    #[tokio::test]
    async fn an_unreachable_discourse_is_retryable() {
        // Bind and drop a listener to get a port nothing listens on.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let api = DiscourseApi::new(
            reqwest::Client::new(),
            Url::parse(&format!("http://{addr}")).unwrap(),
            SecretString::from(API_KEY),
            API_USERNAME.to_owned(),
        );
        let error = api.log_out(1).await.unwrap_err();
        assert!(matches!(error, ApiError::Network(_)), "{error:?}");
        assert!(error.is_retryable());
    }

    #[tokio::test]
    async fn sync_sso_posts_a_strictly_encoded_form() {
        let discourse = FakeDiscourse::start(&[]).await;
        let sso = "bm9uY2U9YWJj/ZGVm==";
        assert_eq!(discourse.api().sync_sso(sso, "good-sig").await.unwrap(), 42);
        let request = &discourse.requests()[0];
        assert_eq!(request.path, "/admin/users/sync_sso");
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(request.body, "sso=bm9uY2U9YWJj%2FZGVm%3D%3D&sig=good-sig");
    }

    #[tokio::test]
    async fn sync_sso_refusals_are_permanent_and_plus_is_never_sent() {
        let discourse = FakeDiscourse::start(&[]).await;
        let error = discourse
            .api()
            .sync_sso("abc", "bad-sig")
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ApiError::Rejected { status: 422, message } if message.contains("bad signature"))
        );
        assert!(!error.is_retryable());

        let error = discourse
            .api()
            .sync_sso("a+b", "good-sig")
            .await
            .unwrap_err();
        assert!(matches!(error, ApiError::UnsendablePayload));
        assert_eq!(discourse.requests().len(), 1);
    }
}
