//! Microsoft Graph lookup of a user's groups, for Entra ID tokens that carry the groups overage
//! marker instead of the `groups` claim (`groups.overage = "graph"`). Follows Microsoft Graph
//! v1.0 "List a user's transitive memberships" (`GET /me/transitiveMemberOf`) with the login's
//! own delegated access token, server-driven paging (`@odata.nextLink`) and the throttling
//! guidance (429/503 with `Retry-After`). The answer also lists directory roles and
//! administrative units; only `#microsoft.graph.group` objects are kept. (The OData cast
//! `/microsoft.graph.group` would need Graph's advanced queries: `ConsistencyLevel: eventual`
//! and `$count`.)
//!
//! Every failure becomes [`GraphGroups::Failed`] with a reason free of tokens and claim values;
//! the mapping then treats the groups as unknown. Nothing here fails a login by itself.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::mapping::{GraphGroups, GraphSettings};

/// Most pages followed: with `$top=999` that is far beyond any real membership list.
const MAX_PAGES: usize = 100;
/// Most bytes read from one page.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most throttled answers waited out in one lookup.
const MAX_RETRIES: u32 = 3;

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<DirectoryObject>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DirectoryObject {
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    id: Option<String>,
}

/// The `@odata.type` of a group in a directory object list.
const GROUP_TYPE: &str = "#microsoft.graph.group";

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: Option<String>,
}

/// The first request: every group, directory role and administrative unit the signed-in user
/// belongs to, directly or through nested groups, ids (and types) only, 999 a page (the maximum).
pub fn first_page_url(base: &url::Url) -> String {
    format!(
        "{}/me/transitiveMemberOf?$select=id&$top=999",
        base.as_str().trim_end_matches('/')
    )
}

/// Asks Graph for the user's group object ids within `settings.timeout`.
pub async fn member_groups(
    http: &reqwest::Client,
    settings: &GraphSettings,
    access_token: &str,
) -> GraphGroups {
    let now = Instant::now();
    let deadline = now.checked_add(settings.timeout).unwrap_or(now);
    let answer =
        match tokio::time::timeout_at(deadline, fetch_all(http, settings, access_token, deadline))
            .await
        {
            Ok(Ok(ids)) => GraphGroups::Fetched(ids),
            Ok(Err(why)) => GraphGroups::Failed(why),
            Err(_) => GraphGroups::Failed(format!(
                "no complete answer within groups.graph_timeout ({})",
                humantime::format_duration(settings.timeout)
            )),
        };
    let outcome = match &answer {
        GraphGroups::Fetched(ids) => {
            tracing::debug!(
                groups = ids.len(),
                "Microsoft Graph listed the user's groups"
            );
            "fetched"
        }
        GraphGroups::Failed(why) => {
            tracing::warn!(
                reason = why.as_str(),
                "Microsoft Graph did not list the user's groups; the groups are unknown"
            );
            "failed"
        }
    };
    metrics::counter!("bridge_graph_lookups_total", "outcome" => outcome).increment(1);
    answer
}

async fn fetch_all(
    http: &reqwest::Client,
    settings: &GraphSettings,
    access_token: &str,
    deadline: Instant,
) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    let mut next = Some(first_page_url(&settings.base_url));
    let mut pages = 0;
    let mut retries = 0;
    while let Some(url) = next.take() {
        if pages == MAX_PAGES {
            return Err(format!("more than {MAX_PAGES} pages of groups"));
        }
        let response = http
            .get(&url)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {}", without_url(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            let wait = retry_after(&response).unwrap_or(Duration::from_secs(1));
            if retries == MAX_RETRIES {
                return Err(format!(
                    "throttled ({}) {} times in a row",
                    status.as_u16(),
                    MAX_RETRIES + 1
                ));
            }
            if Instant::now()
                .checked_add(wait)
                .is_none_or(|until| until >= deadline)
            {
                return Err(format!(
                    "throttled ({}), and Retry-After ({}) does not fit groups.graph_timeout",
                    status.as_u16(),
                    humantime::format_duration(wait)
                ));
            }
            retries += 1;
            tokio::time::sleep(wait).await;
            next = Some(url);
            continue;
        }
        let body = read_limited(response).await?;
        if !status.is_success() {
            let code = serde_json::from_slice::<ErrorBody>(&body)
                .ok()
                .and_then(|e| e.error.code)
                .map(|code| printable(&code))
                .unwrap_or_default();
            let hint = match status.as_u16() {
                401 => "; Graph did not accept the access token (is it issued for Graph?)",
                403 => {
                    "; the access token lacks the delegated User.Read permission for Graph \
                     (see docs/idp/entra.md)"
                }
                _ => "",
            };
            return Err(format!("Graph answered {}{}{hint}", status.as_u16(), {
                if code.is_empty() {
                    String::new()
                } else {
                    format!(" ({code})")
                }
            }));
        }
        let page: Page = serde_json::from_slice(&body)
            .map_err(|e| format!("Graph sent a page that is not a directory object list: {e}"))?;
        for object in page.value {
            // Directory roles and administrative units are not groups.
            if object
                .odata_type
                .as_deref()
                .is_some_and(|t| t != GROUP_TYPE)
            {
                continue;
            }
            match object.id {
                Some(id) if !id.trim().is_empty() => ids.push(id),
                _ => return Err("Graph sent a group without an id".to_owned()),
            }
        }
        pages += 1;
        if let Some(link) = page.next_link {
            if !same_api(&settings.base_url, &link) {
                return Err(
                    "Graph's @odata.nextLink points outside groups.graph_url; not followed"
                        .to_owned(),
                );
            }
            next = Some(link);
        }
    }
    Ok(ids)
}

/// Whether a next-page link stays under the configured API root (same scheme, host, port and
/// path prefix), so the access token is never sent anywhere else.
fn same_api(base: &url::Url, link: &str) -> bool {
    let Ok(link) = url::Url::parse(link) else {
        return false;
    };
    let prefix = base.path().trim_end_matches('/');
    link.scheme() == base.scheme()
        && link.host_str() == base.host_str()
        && link.port_or_known_default() == base.port_or_known_default()
        && link.username().is_empty()
        && link.password().is_none()
        && link
            .path()
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `Retry-After` in seconds (Graph does not send the HTTP-date form).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer failed: {}", without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(format!("a page larger than {MAX_PAGE_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error without its URL (a next link could carry opaque state).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    kind.to_owned()
}

/// An error code as Graph sent it, kept short and printable.
fn printable(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_must_stay_under_the_api_root() {
        let base = url::Url::parse("https://graph.microsoft.com/v1.0").unwrap();
        assert!(same_api(
            &base,
            "https://graph.microsoft.com/v1.0/me/transitiveMemberOf?$skiptoken=x"
        ));
        for bad in [
            "https://evil.example/v1.0/me",
            "http://graph.microsoft.com/v1.0/me",
            "https://graph.microsoft.com:8443/v1.0/me",
            "https://graph.microsoft.com/beta/me",
            "https://graph.microsoft.com/v1.0x/me",
            "https://user@graph.microsoft.com/v1.0/me",
            "/v1.0/me",
        ] {
            assert!(!same_api(&base, bad), "{bad}");
        }
        assert_eq!(
            first_page_url(&base),
            "https://graph.microsoft.com/v1.0/me/transitiveMemberOf?$select=id&$top=999"
        );
    }

    #[test]
    fn error_codes_are_kept_printable() {
        assert_eq!(
            printable("Authorization_RequestDenied"),
            "Authorization_RequestDenied"
        );
        assert_eq!(printable("<b>x</b>"), "bxb");
    }
}
