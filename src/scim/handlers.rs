//! HTTP surface of the SCIM service provider (RFC 7644 §3): routes under `/scim/v2`, the
//! bearer-token check (§2, constant time over every configured token), body and query
//! parsing, `ETag`/`If-Match` (§3.14) and `application/scim+json` responses. Every refusal is
//! an RFC 7644 §3.12 error body.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret as _;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::error::{ScimError, scim_json};
use super::filter;
use super::schema::{self, LIST_SCHEMA, Resource};
use super::service::{ScimService, etag};

type Shared = Arc<ScimService>;

/// The `/scim/v2` routes, with their own state; merge into the bridge's router.
pub fn router(service: Shared) -> Router {
    let api = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema_by_id))
        .route("/.search", axum::routing::post(search_all))
        .merge(resource_routes(Resource::User))
        .merge(resource_routes(Resource::Group))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            authenticate,
        ))
        .with_state(service);
    Router::new().nest("/scim/v2", api)
}

/// The routes of one resource type, `/Users` or `/Groups` (RFC 7644 §3.3–§3.6): list and
/// create, `.search`, and get, replace, patch and delete by id. Each request is counted as
/// `users_<operation>` or `groups_<operation>`.
fn resource_routes(resource: Resource) -> Router<Shared> {
    let base = format!("/{}", resource.endpoint());
    let operation =
        move |verb: &str| format!("{}_{verb}", resource.endpoint().to_ascii_lowercase());
    Router::new()
        .route(
            &base,
            get(move |State(s): State<Shared>, RawQuery(q): RawQuery| async move {
                finish(&operation("list"), list(&s, resource, q).await)
            })
            .post(move |State(s): State<Shared>, body: Body| async move {
                finish(&operation("create"), create(&s, resource, body).await)
            }),
        )
        .route(
            &format!("{base}/.search"),
            axum::routing::post(move |State(s): State<Shared>, body: Body| async move {
                finish(&operation("search"), search(&s, resource, body).await)
            }),
        )
        .route(
            &format!("{base}/{{id}}"),
            get(
                move |State(s): State<Shared>, Path(id): Path<String>, RawQuery(q): RawQuery| async move {
                    finish(&operation("get"), get_one(&s, resource, &id, q).await)
                },
            )
            .put(
                move |State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap, body: Body| async move {
                    finish(
                        &operation("replace"),
                        update(&s, resource, &id, &headers, body, Update::Replace).await,
                    )
                },
            )
            .patch(
                move |State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap, body: Body| async move {
                    finish(
                        &operation("patch"),
                        update(&s, resource, &id, &headers, body, Update::Patch).await,
                    )
                },
            )
            .delete(
                move |State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap| async move {
                    finish(&operation("delete"), delete(&s, resource, &id, &headers).await)
                },
            ),
        )
}

/// SHA-256 of each side, compared in constant time, over every configured token: neither the
/// length nor the position of a match shows in the timing.
fn token_matches(service: &ScimService, presented: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let mut matched = subtle::Choice::from(0u8);
    for token in &service.config().tokens {
        let expected = Sha256::digest(token.expose_secret().as_bytes());
        matched |= presented.as_slice().ct_eq(expected.as_slice());
    }
    bool::from(matched)
}

async fn authenticate(State(service): State<Shared>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    match presented {
        Some(token) if !token.is_empty() && token_matches(&service, &token) => {
            next.run(request).await
        }
        _ => {
            metrics::counter!("bridge_scim_requests_total", "operation" => "auth", "result" => "401")
                .increment(1);
            tracing::warn!("SCIM request refused: missing or unknown bearer token");
            ScimError::unauthorized().into_response()
        }
    }
}

fn count(operation: &str, status: StatusCode) {
    metrics::counter!(
        "bridge_scim_requests_total",
        "operation" => operation.to_owned(),
        "result" => status.as_str().to_owned()
    )
    .increment(1);
}

/// Finishes a handler: counts it and turns an error into its SCIM body.
fn finish(operation: &str, result: Result<Response, ScimError>) -> Response {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            if error.status.is_server_error() {
                tracing::error!(operation, %error, "SCIM request failed");
            } else {
                tracing::info!(operation, %error, "SCIM request refused");
            }
            error.into_response()
        }
    };
    count(operation, response.status());
    response
}

async fn read_json(service: &ScimService, body: Body) -> Result<Value, ScimError> {
    let limit = service.config().max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ScimError::too_large(limit))?;
    if bytes.is_empty() {
        return Err(ScimError::invalid_syntax("the request needs a JSON body"));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ScimError::invalid_syntax(format!(
            "the body is not valid JSON ({})",
            e.classify_name()
        ))
    })
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong data",
            serde_json::error::Category::Eof => "ends early",
        }
    }
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A resource response with its `ETag` (and `Location` when created).
fn resource_response(
    service: &ScimService,
    status: StatusCode,
    resource: Resource,
    value: &Value,
    version: u64,
    query: &Query,
) -> Response {
    let mut response = scim_json(&project(value, query));
    *response.status_mut() = status;
    if let Ok(tag) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    if status == StatusCode::CREATED
        && let Some(id) = value.get("id").and_then(Value::as_str)
        && let Ok(location) = HeaderValue::from_str(&format!(
            "{}/{}/{id}",
            service.base_url(),
            resource.endpoint()
        ))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The query parameters of RFC 7644 §3.4.2 and §3.9 the bridge reads.
#[derive(Debug, Default)]
struct Query {
    filter: Option<filter::Filter>,
    start_index: usize,
    count: Option<usize>,
    attributes: Vec<String>,
    excluded: Vec<String>,
}

fn parse_query(raw: Option<&str>) -> Result<Query, ScimError> {
    let mut query = Query {
        start_index: 1,
        ..Query::default()
    };
    let Some(raw) = raw else {
        return Ok(query);
    };
    let names = |text: &str| -> Vec<String> {
        text.split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    };
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        match key.as_ref() {
            "filter" => {
                query.filter = Some(
                    filter::parse_filter(&value)
                        .map_err(|e| ScimError::invalid_filter(format!("filter: {e}")))?,
                );
            }
            "startIndex" => {
                let n: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| ScimError::invalid_value("startIndex must be an integer"))?;
                query.start_index = usize::try_from(n.max(1)).unwrap_or(1);
            }
            "count" => {
                let n: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| ScimError::invalid_value("count must be an integer"))?;
                query.count = Some(usize::try_from(n.max(0)).unwrap_or(0));
            }
            "attributes" => query.attributes = names(&value),
            "excludedAttributes" => query.excluded = names(&value),
            "sortBy" | "sortOrder" => {}
            _ => {}
        }
    }
    Ok(query)
}

/// The part of an attribute name after a core-schema prefix, lowercased; `None` for names in
/// the extension (kept whole).
fn top_name(name: &str) -> (String, Option<String>) {
    let lower = name.to_ascii_lowercase();
    for urn in [schema::USER_SCHEMA, schema::GROUP_SCHEMA] {
        let prefix = format!("{}:", urn.to_ascii_lowercase());
        if let Some(rest) = lower.strip_prefix(&prefix) {
            return split_sub(rest);
        }
    }
    let ext = schema::ENTERPRISE_SCHEMA.to_ascii_lowercase();
    if lower.starts_with(&ext) {
        return (ext, None);
    }
    split_sub(&lower)
}

fn split_sub(name: &str) -> (String, Option<String>) {
    match name.split_once('.') {
        Some((top, sub)) => (top.to_owned(), Some(sub.to_owned())),
        None => (name.to_owned(), None),
    }
}

/// Applies `attributes` / `excludedAttributes` (RFC 7644 §3.9) to a rendered resource. `id`
/// and `schemas` are always returned.
fn project(value: &Value, query: &Query) -> Value {
    let Value::Object(object) = value else {
        return value.clone();
    };
    if query.attributes.is_empty() && query.excluded.is_empty() {
        return value.clone();
    }
    let always = |key: &str| key == "id" || key == "schemas";
    let mut out = Map::new();
    if !query.attributes.is_empty() {
        let wanted: Vec<(String, Option<String>)> =
            query.attributes.iter().map(|a| top_name(a)).collect();
        for (key, item) in object {
            let lower = key.to_ascii_lowercase();
            if always(key) {
                out.insert(key.clone(), item.clone());
                continue;
            }
            let subs: Vec<&Option<String>> = wanted
                .iter()
                .filter(|(top, _)| *top == lower)
                .map(|(_, sub)| sub)
                .collect();
            if subs.is_empty() {
                continue;
            }
            if subs.iter().any(|s| s.is_none()) {
                out.insert(key.clone(), item.clone());
                continue;
            }
            let keep = |inner: &Map<String, Value>| -> Map<String, Value> {
                inner
                    .iter()
                    .filter(|(k, _)| {
                        subs.iter()
                            .any(|s| s.as_deref() == Some(k.to_ascii_lowercase().as_str()))
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            match item {
                Value::Object(inner) => {
                    out.insert(key.clone(), Value::Object(keep(inner)));
                }
                Value::Array(items) => {
                    let items = items
                        .iter()
                        .map(|i| match i {
                            Value::Object(inner) => Value::Object(keep(inner)),
                            other => other.clone(),
                        })
                        .collect();
                    out.insert(key.clone(), Value::Array(items));
                }
                other => {
                    out.insert(key.clone(), other.clone());
                }
            }
        }
    } else {
        out = object.clone();
    }
    for name in &query.excluded {
        let (top, sub) = top_name(name);
        let Some(key) = out
            .keys()
            .find(|k| k.to_ascii_lowercase() == top && !always(k))
            .cloned()
        else {
            continue;
        };
        match sub {
            None => {
                out.remove(&key);
            }
            Some(sub) => {
                if let Some(Value::Object(inner)) = out.get_mut(&key) {
                    inner.retain(|k, _| k.to_ascii_lowercase() != sub);
                }
            }
        }
    }
    Value::Object(out)
}

async fn service_provider_config(State(service): State<Shared>) -> Response {
    let doc = schema::service_provider_config(
        service.base_url(),
        service.config().max_results,
        "https://github.com/discourse-oidc-bridge/discourse-oidc-bridge/blob/main/docs/scim.md",
    );
    finish("service_provider_config", Ok(scim_json(&doc)))
}

fn list_response(resources: Vec<Value>, start_index: usize, total: usize) -> Response {
    scim_json(&json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

async fn resource_types(State(service): State<Shared>) -> Response {
    let types = schema::resource_types(service.base_url());
    let total = types.len();
    finish("resource_types", Ok(list_response(types, 1, total)))
}

async fn resource_type(State(service): State<Shared>, Path(id): Path<String>) -> Response {
    let found = schema::resource_types(service.base_url())
        .into_iter()
        .find(|t| t.get("id").and_then(Value::as_str) == Some(id.as_str()));
    finish(
        "resource_types",
        found
            .map(|doc| scim_json(&doc))
            .ok_or_else(|| ScimError::not_found("no resource type with this id")),
    )
}

async fn schemas(State(service): State<Shared>) -> Response {
    let docs = schema::schemas(service.base_url());
    let total = docs.len();
    finish("schemas", Ok(list_response(docs, 1, total)))
}

async fn schema_by_id(State(service): State<Shared>, Path(id): Path<String>) -> Response {
    let found = schema::schemas(service.base_url())
        .into_iter()
        .find(|t| t.get("id").and_then(Value::as_str) == Some(id.as_str()));
    finish(
        "schemas",
        found
            .map(|doc| scim_json(&doc))
            .ok_or_else(|| ScimError::not_found("no schema with this id")),
    )
}

async fn list(
    service: &ScimService,
    resource: Resource,
    raw: Option<String>,
) -> Result<Response, ScimError> {
    let query = parse_query(raw.as_deref())?;
    let count = query.count.unwrap_or(service.config().max_results);
    let page = service
        .list(resource, query.filter.as_ref(), query.start_index, count)
        .await?;
    let resources = page.resources.iter().map(|r| project(r, &query)).collect();
    Ok(list_response(resources, page.start_index, page.total))
}

async fn get_one(
    service: &ScimService,
    resource: Resource,
    id: &str,
    raw: Option<String>,
) -> Result<Response, ScimError> {
    let query = parse_query(raw.as_deref())?;
    let (value, version) = service.get(resource, id).await?;
    Ok(resource_response(
        service,
        StatusCode::OK,
        resource,
        &value,
        version,
        &query,
    ))
}

async fn create(
    service: &ScimService,
    resource: Resource,
    body: Body,
) -> Result<Response, ScimError> {
    let body = read_json(service, body).await?;
    let (value, version) = service.create(resource, &body).await?;
    Ok(resource_response(
        service,
        StatusCode::CREATED,
        resource,
        &value,
        version,
        &Query::default(),
    ))
}

/// How `PUT` and `PATCH` change a resource: replaced by the body (RFC 7644 §3.5.1) or modified
/// by its operations (§3.5.2).
#[derive(Debug, Clone, Copy)]
enum Update {
    Replace,
    Patch,
}

async fn update(
    service: &ScimService,
    resource: Resource,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    how: Update,
) -> Result<Response, ScimError> {
    let body = read_json(service, body).await?;
    let if_match = if_match(headers);
    let (value, version) = match how {
        Update::Replace => {
            service
                .replace(resource, id, &body, if_match.as_deref())
                .await?
        }
        Update::Patch => {
            service
                .patch(resource, id, &body, if_match.as_deref())
                .await?
        }
    };
    Ok(resource_response(
        service,
        StatusCode::OK,
        resource,
        &value,
        version,
        &Query::default(),
    ))
}

async fn delete(
    service: &ScimService,
    resource: Resource,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ScimError> {
    service
        .delete(resource, id, if_match(headers).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /.search` across resource types (RFC 7644 §3.4.3) is not offered.
async fn search_all() -> Response {
    finish(
        "search",
        Err(ScimError::not_implemented(
            "searching several resource types at once is not supported; use /Users/.search or /Groups/.search",
        )),
    )
}

/// `POST /Users/.search` and `/Groups/.search`: a `SearchRequest` body with the list's
/// parameters (RFC 7644 §3.4.3).
async fn search(
    service: &ScimService,
    resource: Resource,
    body: Body,
) -> Result<Response, ScimError> {
    let body = read_json(service, body).await?;
    let Value::Object(body) = body else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    let query = search_query(&body)?;
    list(service, resource, Some(query)).await
}

/// A `SearchRequest`'s parameters as a list query string.
fn search_query(body: &Map<String, Value>) -> Result<String, ScimError> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in body {
        let name = [
            "filter",
            "startIndex",
            "count",
            "attributes",
            "excludedAttributes",
        ]
        .into_iter()
        .find(|name| key.eq_ignore_ascii_case(name));
        let Some(name) = name else {
            continue;
        };
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            Value::Null => continue,
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "{name} has the wrong type"
                )));
            }
        };
        query.append_pair(name, &text);
    }
    Ok(query.finish())
}

async fn not_found() -> Response {
    finish(
        "unknown",
        Err(ScimError::not_found("no such SCIM endpoint")),
    )
}

async fn method_not_allowed() -> Response {
    finish("unknown", Err(ScimError::method_not_allowed()))
}
