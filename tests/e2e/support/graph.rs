//! An in-test Microsoft Graph for the Entra groups-overage lookup, behaving like the documented
//! v1.0 API for the one call the bridge makes: `GET /v1.0/me/transitiveMemberOf` with a
//! delegated bearer token, listing groups and, like Graph, directory roles (every user with a
//! role has one); `$select`, `$top` and server-driven paging through `@odata.nextLink`
//! (`$skiptoken`); the OData cast `/microsoft.graph.group` without `ConsistencyLevel: eventual`
//! is refused with 400 `Request_UnsupportedQuery`, as Graph does; error bodies `{"error": {"code", "message"}}` with 401
//! `InvalidAuthenticationToken`, 403 `Authorization_RequestDenied` and 429 `TooManyRequests`
//! with `Retry-After`.
//!
//! The bearer token is checked the way Graph checks it, against its issuer: the stand-in sends
//! it to the test IdP's userinfo endpoint, and the `sub` that answers is "me".

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the next request gets instead of its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphFault {
    /// 429 with `Retry-After: <seconds>`.
    Throttle { retry_after: u64 },
    /// 403 `Authorization_RequestDenied`: the token lacks GroupMember.Read.All.
    Forbidden,
    /// 401 `InvalidAuthenticationToken`, as for an expired token.
    Unauthorized,
    /// Never answers (the bridge's timeout must end the wait).
    Hang,
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct GraphRequest {
    /// Path and query, e.g. `/v1.0/me/transitiveMemberOf?$select=id&$top=999`.
    pub path_and_query: String,
    pub had_bearer_token: bool,
    pub status: u16,
}

#[derive(Debug)]
struct GraphState {
    userinfo_url: String,
    base: String,
    page_size: usize,
    /// sub → group object ids.
    groups: BTreeMap<String, Vec<String>>,
    faults: VecDeque<GraphFault>,
    requests: Vec<GraphRequest>,
}

type Shared = Arc<Mutex<GraphState>>;

/// The running stand-in; stops when dropped.
#[derive(Debug)]
pub struct TestGraph {
    base: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestGraph {
    /// Starts on 127.0.0.1; tokens are checked at `userinfo_url` (the test IdP's `/me`).
    pub async fn start(userinfo_url: &str, page_size: usize) -> TestGraph {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind graph");
        let addr = listener.local_addr().expect("graph address");
        let base = format!("http://{addr}/v1.0");
        let state = Arc::new(Mutex::new(GraphState {
            userinfo_url: userinfo_url.to_owned(),
            base: base.clone(),
            page_size: page_size.max(1),
            groups: BTreeMap::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
        }));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestGraph { base, state, task }
    }

    /// The API root to configure as `groups.graph_url`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The user's groups (object ids), direct and transitive. Lists also carry one directory
    /// role object, which is not a group.
    pub fn set_groups(&self, sub: &str, ids: &[&str]) {
        self.lock().groups.insert(
            sub.to_owned(),
            ids.iter().map(|s| (*s).to_owned()).collect(),
        );
    }

    /// Queues a fault for the next request.
    pub fn fault_next(&self, fault: GraphFault) {
        self.lock().faults.push_back(fault);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<GraphRequest> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> MutexGuard<'_, GraphState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"code": code, "message": message, "innerError": {
            "date": "2026-11-30T10:00:00", "request-id": "00000000-0000-0000-0000-000000000000"
        }}})
        .to_string(),
    )
        .into_response()
}

async fn handle(State(state): State<Shared>, request: Request) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let (fault, userinfo_url) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        (s.faults.pop_front(), s.userinfo_url.clone())
    };
    let response = answer(
        &state,
        request.uri(),
        token.as_deref(),
        fault,
        &userinfo_url,
    )
    .await;
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .requests
        .push(GraphRequest {
            path_and_query,
            had_bearer_token: token.is_some(),
            status: response.status().as_u16(),
        });
    response
}

async fn answer(
    state: &Shared,
    uri: &axum::http::Uri,
    token: Option<&str>,
    fault: Option<GraphFault>,
    userinfo_url: &str,
) -> Response {
    match fault {
        Some(GraphFault::Hang) => return std::future::pending::<Response>().await,
        Some(GraphFault::Throttle { retry_after }) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests.",
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                retry_after.to_string().parse().expect("header value"),
            );
            return response;
        }
        Some(GraphFault::Forbidden) => {
            return error(
                StatusCode::FORBIDDEN,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            );
        }
        Some(GraphFault::Unauthorized) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            );
        }
        None => {}
    }
    if uri.path() == "/v1.0/me/transitiveMemberOf/microsoft.graph.group" {
        return error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "Request with OData cast requires the ConsistencyLevel header and $count.",
        );
    }
    if uri.path() != "/v1.0/me/transitiveMemberOf" {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Resource not found for the segment.",
        );
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        );
    };
    // Graph validates the token; the stand-in asks its issuer who it belongs to.
    let me = reqwest::Client::new()
        .get(userinfo_url)
        .bearer_auth(token)
        .send()
        .await;
    let sub = match me {
        Ok(response) if response.status().is_success() => response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["sub"].as_str().map(str::to_owned)),
        _ => None,
    };
    let Some(sub) = sub else {
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        );
    };
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let skip: usize = query
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let s = state.lock().unwrap_or_else(|e| e.into_inner());
    let mut objects: Vec<Value> = s
        .groups
        .get(&sub)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|id| json!({"@odata.type": "#microsoft.graph.group", "id": id}))
        .collect();
    objects.insert(
        objects.len() / 2,
        json!({"@odata.type": "#microsoft.graph.directoryRole", "id": "62e90394-69f5-4237-9190-012177145e10"}),
    );
    let top: usize = query
        .get("$top")
        .and_then(|t| t.parse().ok())
        .unwrap_or(100)
        .min(999);
    let size = s.page_size.min(top.max(1));
    let page: Vec<Value> = objects.iter().skip(skip).take(size).cloned().collect();
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#directoryObjects(id)", s.base),
        "value": page,
    });
    if skip + size < objects.len() {
        body["@odata.nextLink"] = json!(format!(
            "{}/me/transitiveMemberOf?$select=id&$top={top}&$skiptoken={}",
            s.base,
            skip + size
        ));
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/json;odata.metadata=minimal",
        )],
        body.to_string(),
    )
        .into_response()
}
