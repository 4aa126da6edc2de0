//! Real headless Chromium for the page tests, driven through chromedriver with W3C WebDriver
//! (the HTTP+JSON protocol, spoken with the `reqwest` client the tests already build, so no
//! WebDriver crate is compiled). axe-core, pinned in `tests/node`, checks accessibility.
//!
//! [`Chromium::start`] returns `None` after a visible skip when chromium or chromedriver is not
//! installed (`BRIDGE_TEST_REQUIRE=chromium` turns that into a failure).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::skip::skip;

/// How to get the browser when it is missing.
const INSTALL_HINT: &str = "install Debian's chromium and chromium-driver (apt-get install \
                            chromium chromium-driver), or set BRIDGE_CHROMIUM and \
                            BRIDGE_CHROMEDRIVER";

/// The switches headless Chromium needs in a container running as root, with nothing talking
/// to the network on its own.
const ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--lang=en-US",
];

/// One browser session; the driver and browser end when it is dropped.
pub struct Chromium {
    driver: Child,
    endpoint: String,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// Desktop and phone viewports (CSS pixels).
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Chromium {
    /// Starts chromedriver and a fresh browser profile with `Accept-Language: accept_language`,
    /// or reports the skip of `test` and returns `None` when the browser is missing.
    pub async fn start(test: &str, accept_language: &str) -> Option<Chromium> {
        let browser = find(
            "BRIDGE_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let driver = find(
            "BRIDGE_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let (Some(browser), Some(driver)) = (browser, driver) else {
            skip(test, "chromium", INSTALL_HINT);
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        // Wait for the driver to answer (an event, not a guess): up to 20 s in 50 ms steps.
        let mut ready = false;
        for _ in 0..400 {
            if let Ok(r) = client.get(format!("{endpoint}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == json!(true)
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "chromedriver did not become ready");
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut chromium = Chromium {
            driver: child,
            endpoint,
            client,
            _profile: profile,
        };
        let capabilities = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "normal",
                "goog:chromeOptions": {
                    "binary": browser.display().to_string(),
                    "args": args,
                    "prefs": {"intl.accept_languages": accept_language},
                },
            }}
        });
        let session = chromium.call("POST", "/session", capabilities).await;
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {session}"))
            .to_owned();
        chromium.endpoint = format!("{}/session/{id}", chromium.endpoint);
        chromium
            .call(
                "POST",
                "/timeouts",
                json!({"script": 30_000, "pageLoad": 30_000}),
            )
            .await;
        chromium.resize(DESKTOP).await;
        Some(chromium)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    async fn try_call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.endpoint);
        let request = match method {
            "GET" => self.client.get(&url),
            "DELETE" => self.client.delete(&url),
            _ => self.client.post(&url).json(&body),
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(error) = value["value"]["error"].as_str() {
            return Err(format!("{error}: {}", value["value"]["message"]));
        }
        Ok(value["value"].clone())
    }

    /// Sets the viewport size (CSS pixels).
    pub async fn resize(&self, (width, height): (u32, u32)) {
        self.call(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// Reloads the current page.
    pub async fn reload(&self) {
        self.call("POST", "/refresh", json!({})).await;
    }

    /// The current page's URL.
    pub async fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The current page's `<title>`.
    pub async fn title(&self) -> String {
        self.call("GET", "/title", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.execute(
            "return document.body ? document.body.innerText : '';",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The `lang` attribute of the document.
    pub async fn lang(&self) -> String {
        self.execute("return document.documentElement.lang;", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// `[text, href]` of every link of the page, `href` resolved to an absolute URL.
    pub async fn links(&self) -> Vec<(String, String)> {
        let value = self
            .execute(
                "return Array.from(document.querySelectorAll('a[href]'))\
                 .map(a => [a.innerText.trim(), a.href]);",
                json!([]),
            )
            .await;
        value
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap_or_default().to_owned(),
                    pair[1].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The link whose text is `text`: its URL. Panics with the page's links when there is none.
    pub async fn link(&self, text: &str) -> String {
        let links = self.links().await;
        let url = self.url().await;
        links
            .iter()
            .find(|(t, _)| t == text)
            .map(|(_, href)| href.clone())
            .unwrap_or_else(|| panic!("no link {text:?} on {url}: {links:?}"))
    }

    /// Marks the current document, so that [`Self::wait_for_new_page`] sees it replaced.
    async fn mark_page(&self) {
        self.execute("window.__bridgeTestMark = true; return true;", json!([]))
            .await;
    }

    /// Waits (polling, up to 30 s) until the marked document has been replaced by a new one
    /// that finished loading, i.e. until a navigation and its redirects are over.
    async fn wait_for_new_page(&self) {
        let probe = json!({
            "script": "return window.__bridgeTestMark === undefined && \
                       document.readyState === 'complete';",
            "args": [],
        });
        for _ in 0..600 {
            if let Ok(Value::Bool(true)) =
                self.try_call("POST", "/execute/sync", probe.clone()).await
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no new page loaded after 30 s (still at {})",
            self.url().await
        );
    }

    /// Clicks the first element matching the CSS `selector` and waits for the page it leads to.
    pub async fn click(&self, selector: &str) {
        self.mark_page().await;
        let found = self
            .call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": selector}),
            )
            .await;
        let id = element_id(&found);
        self.call("POST", &format!("/element/{id}/click"), json!({}))
            .await;
        self.wait_for_new_page().await;
    }

    /// Presses `key` (e.g. [`ENTER`] on a form field or link) and waits for the page it leads
    /// to.
    pub async fn press_to_navigate(&self, key: &str) {
        self.mark_page().await;
        self.press(key).await;
        self.wait_for_new_page().await;
    }

    /// Presses and releases `key` (a WebDriver key code such as [`TAB`] or [`ENTER`], or a
    /// character) on whatever has the focus.
    pub async fn press(&self, key: &str) {
        self.call(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
            ]}]}),
        )
        .await;
        self.call("DELETE", "/actions", Value::Null).await;
    }

    /// Types `text` into whatever has the focus.
    pub async fn type_text(&self, text: &str) {
        for c in text.chars() {
            self.press(&c.to_string()).await;
        }
    }

    /// A description of the focused element: its tag, then its name, value or text.
    pub async fn focused(&self) -> String {
        self.execute(
            "const e = document.activeElement;\
             if (!e || e === document.body) return 'body';\
             const text = e.tagName === 'INPUT' ? e.value : e.innerText;\
             return e.tagName.toLowerCase() + ' ' + (e.getAttribute('name') || '') + ' ' + \
             (text || '').trim();",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Presses Tab until the focused element's description contains `wanted` (at most 40
    /// times), so a test walks a page the way a keyboard user does.
    pub async fn tab_to(&self, wanted: &str) {
        let mut seen = Vec::new();
        for _ in 0..40 {
            self.press(TAB).await;
            let focused = self.focused().await;
            if focused.contains(wanted) {
                return;
            }
            seen.push(focused);
        }
        panic!(
            "Tab never reached {wanted:?} on {}; focus went through {seen:?}",
            self.url().await
        );
    }

    /// Whether the page is wider than the viewport (content would need sideways scrolling).
    pub async fn overflows_horizontally(&self) -> bool {
        !self.overflowing().await.is_empty()
    }

    /// The elements sticking out of the viewport on the right, when the page scrolls sideways.
    pub async fn overflowing(&self) -> Vec<String> {
        let value = self
            .execute(
                "const w = document.documentElement.clientWidth;\
                 if (document.documentElement.scrollWidth <= w + 1) return [];\
                 const out = ['viewport ' + w + ', page ' + document.documentElement.scrollWidth];\
                 for (const e of document.querySelectorAll('body *')) {\
                   const r = e.getBoundingClientRect();\
                   if (r.right > w + 1) out.push(e.tagName.toLowerCase() + '.' + e.className +\
                     ' right=' + Math.round(r.right));\
                 }\
                 return out;",
                json!([]),
            )
            .await;
        value
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Runs axe-core (WCAG 2.0/2.1/2.2 A and AA rules and best practices) on the current page
    /// and returns its violations as `rule: help (targets)` lines.
    pub async fn axe_violations(&self) -> Vec<String> {
        let source = axe_source();
        let script = format!(
            "{source}\n;const done = arguments[arguments.length - 1];\
             axe.run(document, {{resultTypes: ['violations']}})\
             .then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' (' + \
             v.nodes.map(n => n.target.join(' ')).join(', ') + ')')),\
             e => done(['axe failed: ' + e]));"
        );
        let value = self
            .call(
                "POST",
                "/execute/async",
                json!({"script": script, "args": []}),
            )
            .await;
        let Some(violations) = value.as_array() else {
            panic!("axe did not report: {value}");
        };
        violations
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Asserts that axe finds nothing on the current page.
    pub async fn assert_accessible(&self) {
        let violations = self.axe_violations().await;
        assert!(
            violations.is_empty(),
            "accessibility violations on {}:\n{}",
            self.url().await,
            violations.join("\n")
        );
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let data = self.call("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Adds a cookie for the current page's origin.
    pub async fn add_cookie(&self, name: &str, value: &str, path: &str) {
        self.call(
            "POST",
            "/cookie",
            json!({"cookie": {"name": name, "value": value, "path": path, "httpOnly": true}}),
        )
        .await;
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Ending the session closes the browser (blocking: no runtime in `drop`); the driver
        // process is ours to stop.
        end_session(&self.endpoint);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE` of the WebDriver session over a plain socket, waiting for the answer.
fn end_session(endpoint: &str) {
    use std::io::{Read as _, Write as _};
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return;
    };
    let Some((authority, path)) = rest.split_once('/') else {
        return;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(authority) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let request = format!(
        "DELETE /{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
}

/// WebDriver's key codes.
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";

fn element_id(found: &Value) -> String {
    found
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no element in {found}"))
        .to_owned()
}

/// axe-core's browser build from `tests/node` (installed from the lockfile on first use).
fn axe_source() -> String {
    let path = super::node::node_dir().join("node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
