//! A headless browser for end-to-end tests: one cookie jar, redirects never followed on its own,
//! and helpers that walk the test OP's HTML pages (oidc-provider devInteractions login and
//! consent forms, RP-Initiated Logout 1.0 confirmation form) the way a user would.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::{Response, StatusCode};
use url::Url;

/// Hops `login_at_idp` and `logout_at_idp` may take before giving up.
const MAX_IDP_HOPS: usize = 12;

/// One browser profile: its own cookies, nothing followed automatically.
#[derive(Debug, Clone)]
pub struct Browser {
    client: reqwest::Client,
    jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self::trusting(None)
    }

    /// A browser that also trusts the CA of `ca_pem` (an OP served over HTTPS by a test CA).
    pub fn trusting(ca_pem: Option<&str>) -> Self {
        let jar = Arc::new(Jar::default());
        let mut builder = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(15));
        if let Some(pem) = ca_pem {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM"),
            );
        }
        let client = builder.build().expect("reqwest client");
        Self { client, jar }
    }

    /// The underlying client (same cookie jar), for requests the helpers don't cover.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub async fn get(&self, url: impl AsRef<str>) -> Response {
        let url = url.as_ref();
        self.client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// POSTs `application/x-www-form-urlencoded` fields.
    pub async fn post_form(&self, url: impl AsRef<str>, fields: &[(&str, &str)]) -> Response {
        let url = url.as_ref();
        self.client
            .post(url)
            .form(fields)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    /// One hop: asserts `resp` is a 302 or 303 and returns its `Location` resolved against the
    /// request URL. Nothing is requested.
    pub fn follow(&self, resp: &Response) -> Url {
        redirect_target(resp)
    }

    /// `follow` and GET the target.
    pub async fn step(&self, resp: &Response) -> Response {
        let next = self.follow(resp);
        self.get(next).await
    }

    /// The `Cookie` header this browser would send to `url`.
    pub fn cookie_header(&self, url: &Url) -> Option<String> {
        self.jar
            .cookies(url)
            .and_then(|value| value.to_str().ok().map(str::to_owned))
    }

    /// Walks the OP from an authorization request URL to the redirect back to the relying party
    /// and returns that URL WITHOUT requesting it. Logs in as `login` (a user sub of the test
    /// OP) when the login form shows up and accepts the consent page if it shows up; an existing
    /// OP session skips both. Also returns error redirects (e.g. `error=access_denied`).
    pub async fn login_at_idp(&self, authorize_url: &Url, login: &str) -> Url {
        let idp = authorize_url.origin();
        let mut resp = self.get(authorize_url).await;
        for _ in 0..MAX_IDP_HOPS {
            if is_redirect(resp.status()) {
                let next = self.follow(&resp);
                if next.origin() != idp {
                    return next;
                }
                resp = self.get(next).await;
                continue;
            }
            let status = resp.status();
            let page_url = resp.url().clone();
            let html = resp.text().await.unwrap_or_default();
            assert_eq!(
                status,
                StatusCode::OK,
                "OP page {page_url} answered {status}:\n{html}"
            );
            let form = HtmlForm::parse(&html, &page_url)
                .unwrap_or_else(|| panic!("no form on OP page {page_url}:\n{html}"));
            let mut fields = form.hidden.clone();
            match form.field("prompt") {
                Some("login") => {
                    fields.push(("login".to_owned(), login.to_owned()));
                    fields.push(("password".to_owned(), "any-password".to_owned()));
                }
                Some("consent") => {}
                other => panic!("unexpected OP form (prompt {other:?}) at {page_url}:\n{html}"),
            }
            resp = self.post_owned(&form.action, &fields).await;
        }
        panic!("OP login did not redirect back within {MAX_IDP_HOPS} hops");
    }

    /// Confirms an RP-initiated logout at the OP: requests `end_session_url`, submits the
    /// confirmation form with "yes, sign me out", and returns the redirect target (the
    /// `post_logout_redirect_uri` with `state`, or the OP's own success page) WITHOUT
    /// requesting it.
    pub async fn logout_at_idp(&self, end_session_url: &Url) -> Url {
        let idp = end_session_url.origin();
        let mut resp = self.get(end_session_url).await;
        for _ in 0..MAX_IDP_HOPS {
            if is_redirect(resp.status()) {
                return self.follow(&resp);
            }
            let status = resp.status();
            let page_url = resp.url().clone();
            let html = resp.text().await.unwrap_or_default();
            assert_eq!(
                status,
                StatusCode::OK,
                "OP page {page_url} answered {status}:\n{html}"
            );
            let form = HtmlForm::parse(&html, &page_url)
                .unwrap_or_else(|| panic!("no logout form on OP page {page_url}:\n{html}"));
            assert_eq!(form.action.origin(), idp, "logout form posts off the OP");
            let mut fields = form.hidden.clone();
            if form.field("logout").is_none() {
                fields.push(("logout".to_owned(), "yes".to_owned()));
            }
            resp = self.post_owned(&form.action, &fields).await;
        }
        panic!("OP logout did not redirect within {MAX_IDP_HOPS} hops");
    }

    async fn post_owned(&self, url: &Url, fields: &[(String, String)]) -> Response {
        let borrowed: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.post_form(url, &borrowed).await
    }
}

/// The target of a 302/303, resolved against the request URL. Panics on any other status.
pub fn redirect_target(resp: &Response) -> Url {
    let status = resp.status();
    assert!(
        status == StatusCode::FOUND || status == StatusCode::SEE_OTHER,
        "expected 302 or 303 from {}, got {status}",
        resp.url()
    );
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .unwrap_or_else(|| panic!("{status} from {} without Location", resp.url()))
        .to_str()
        .expect("Location is ASCII");
    resp.url()
        .join(location)
        .unwrap_or_else(|e| panic!("bad Location {location:?}: {e}"))
}

/// The decoded query parameters of `url` (first value of each name).
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn is_redirect(status: StatusCode) -> bool {
    status.is_redirection()
}

/// The first `<form>` of a page: its absolute action and every `<input>` inside it with a name.
#[derive(Debug, Clone)]
struct HtmlForm {
    action: Url,
    hidden: Vec<(String, String)>,
}

impl HtmlForm {
    fn parse(html: &str, page: &Url) -> Option<HtmlForm> {
        let form_re = Regex::new(r#"(?is)<form\b([^>]*)>(.*?)</form>"#).ok()?;
        let captures = form_re.captures(html)?;
        let attrs = captures.get(1)?.as_str();
        let inner = captures.get(2)?.as_str();
        let action = attribute(attrs, "action").unwrap_or_default();
        let action = page.join(&action).ok()?;
        let input_re = Regex::new(r#"(?is)<input\b([^>]*)>"#).ok()?;
        let mut hidden = Vec::new();
        for input in input_re.captures_iter(inner) {
            let attrs = input.get(1).map(|m| m.as_str()).unwrap_or_default();
            if attribute(attrs, "type").as_deref() != Some("hidden") {
                continue;
            }
            if let Some(name) = attribute(attrs, "name") {
                hidden.push((name, attribute(attrs, "value").unwrap_or_default()));
            }
        }
        Some(HtmlForm { action, hidden })
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.hidden
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The value of a double-quoted HTML attribute, entities decoded.
fn attribute(attrs: &str, name: &str) -> Option<String> {
    let re = Regex::new(&format!(r#"(?i)\b{name}\s*=\s*"([^"]*)""#)).ok()?;
    let raw = re.captures(attrs)?.get(1)?.as_str();
    Some(
        raw.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&#x27;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}
