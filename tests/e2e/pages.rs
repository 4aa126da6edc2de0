//! What people see: every page a person can land on, its status, its words and its ways out
//! (issue 16). First through a cookie-keeping HTTP client (statuses, headers, links), then in
//! real headless Chromium through `serve` with the test IdP and through the demo: the full
//! login by keyboard alone, each failure case with its right answer, the forum's look and
//! language, and axe-core on every page of ours.

use std::time::Duration;

use regex::Regex;
use reqwest::StatusCode;
use url::Url;

use crate::support::chromium::{self, Chromium, ENTER};
use crate::support::{
    Browser, ForumOptions, IdpOptions, TestBridge, TestForum, TestIdp, query_param,
};

/// A mapping whose access rule refuses every test user.
const DENY_ALL: &str = r#"
[access]
allowed_groups = ["nobody-is-in-this-group"]
contact = "forum-admins@example.test"
"#;

struct Setup {
    idp: TestIdp,
    forum: TestForum,
    bridge: TestBridge,
}

async fn setup(extra_toml: &str, env: &[(&str, &str)]) -> Setup {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start_with_env(&idp, &forum, extra_toml, env).await;
    Setup { idp, forum, bridge }
}

/// The forum's home page as the bridge's pages link it (`discourse.url`).
fn forum_home(forum: &TestForum) -> String {
    Url::parse(forum.base_url()).unwrap().to_string()
}

/// Forum → bridge → IdP login as `user` → the callback URL (not requested yet).
async fn callback_for(s: &Setup, browser: &Browser, user: &str) -> Url {
    let to_bridge = browser.get(s.forum.sso_start_url("/")).await;
    let at_bridge = browser.step(&to_bridge).await;
    let authorize = browser.follow(&at_bridge);
    browser.login_at_idp(&authorize, user).await
}

/// `(text, href)` of every link of a page, entities decoded.
fn links(html: &str) -> Vec<(String, String)> {
    let re = Regex::new(r#"(?s)<a\b[^>]*href="([^"]*)"[^>]*>(.*?)</a>"#).unwrap();
    let tags = Regex::new(r"<[^>]+>").unwrap();
    re.captures_iter(html)
        .map(|c| (decode(&tags.replace_all(&c[2], "")), decode(&c[1])))
        .collect()
}

fn decode(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

fn link<'a>(links: &'a [(String, String)], text: &str) -> Option<&'a str> {
    links
        .iter()
        .find(|(t, _)| t == text)
        .map(|(_, href)| href.as_str())
}

/// Asserts the page's ways out: "Back to the forum" to the forum's home, plus exactly the
/// given extra buttons (text → where they go).
fn assert_ways_out(html: &str, forum: &TestForum, extra: &[(&str, &str)]) {
    let links = links(html);
    let mut expected = vec![("Back to the forum".to_owned(), forum_home(forum))];
    for (text, href) in extra {
        expected.push(((*text).to_owned(), (*href).to_owned()));
    }
    // The header's site link goes to the forum's home too.
    let page_links: Vec<(String, String)> = links
        .into_iter()
        .filter(|(text, _)| text != "Forum login")
        .collect();
    for (text, href) in &expected {
        assert_eq!(
            link(&page_links, text),
            Some(href.as_str()),
            "{text} in {page_links:?}"
        );
    }
    assert_eq!(page_links.len(), expected.len(), "{page_links:?}\n{html}");
}

#[tokio::test]
async fn a_denial_leads_back_to_the_forums_home_and_offers_another_account() {
    let s = setup(DENY_ALL, &[]).await;
    let browser = Browser::new();
    let callback = callback_for(&s, &browser, "alice").await;
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Access denied"), "{html}");
    assert!(html.contains("forum-admins@example.test"), "{html}");
    let switch_account = s.bridge.url("/switch-account");
    assert_ways_out(
        &html,
        &s.forum,
        &[("Use another account", switch_account.as_str())],
    );

    // Reloading keeps the reason (the callback URL itself is spent).
    let again = browser.get(&callback).await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    let reloaded = again.text().await.unwrap();
    assert!(
        reloaded.contains("Access denied") && reloaded.contains("not in any group"),
        "{reloaded}"
    );
    // Another browser with the same URL learns nothing about the denial.
    let other = Browser::new().get(&callback).await;
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
    assert!(other.text().await.unwrap().contains("already used"));

    // "Use another account" ends the IdP session first, then starts a new login at the forum.
    let switch = browser.get(s.bridge.url("/switch-account")).await;
    let end_session = browser.follow(&switch);
    assert!(
        end_session.as_str().starts_with(s.idp.issuer()),
        "{end_session}"
    );
    assert_eq!(
        query_param(&end_session, "client_id").as_deref(),
        Some("bridge")
    );
    let back = browser.logout_at_idp(&end_session).await;
    assert!(back.as_str().starts_with(&s.bridge.url("/logged-out")));
    let relogin = browser.get(&back).await;
    assert_eq!(
        browser.follow(&relogin).as_str(),
        format!("{}session/sso", forum_home(&s.forum))
    );
    assert!(s.forum.logins().is_empty());
}

#[tokio::test]
async fn a_cancelled_login_offers_only_the_way_back() {
    let s = setup("", &[]).await;
    let browser = Browser::new();
    let to_bridge = browser.get(s.forum.sso_start_url("/")).await;
    let authorize = browser.follow(&browser.step(&to_bridge).await);
    s.idp.deny_next().await;
    let callback = browser.login_at_idp(&authorize, "alice").await;
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Login cancelled"));
    assert_ways_out(&html, &s.forum, &[]);
}

#[tokio::test]
async fn a_login_that_took_too_long_says_so() {
    let s = setup("", &[("BRIDGE_SESSION__LOGIN_TIMEOUT", "1s")]).await;
    let browser = Browser::new();
    let callback = callback_for(&s, &browser, "alice").await;
    // The person takes longer than the timeout (the bridge's clock moves, nobody waits).
    s.bridge.advance_clock(Duration::from_secs(2));
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Your login took too long"), "{html}");
    assert!(html.contains("within one minute"), "{html}");
    let login = format!("{}session/sso", forum_home(&s.forum));
    assert_ways_out(&html, &s.forum, &[("Log in again", login.as_str())]);
    assert!(s.forum.logins().is_empty());
}

#[tokio::test]
async fn a_used_login_link_says_it_was_used() {
    let s = setup("", &[]).await;
    let browser = Browser::new();
    let callback = callback_for(&s, &browser, "alice").await;
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    browser.step(&answer).await;
    let again = browser.get(&callback).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("This login link was already used")
    );
    assert_eq!(s.forum.logins().len(), 1);
}

#[tokio::test]
async fn a_code_the_idp_rejects_is_a_login_to_start_again_not_an_outage() {
    let s = setup("", &[]).await;
    let browser = Browser::new();
    let mut callback = callback_for(&s, &browser, "alice").await;
    let state = query_param(&callback, "state").unwrap();
    let iss = query_param(&callback, "iss");
    callback.query_pairs_mut().clear();
    callback
        .query_pairs_mut()
        .append_pair("code", "a-code-the-idp-never-issued")
        .append_pair("state", &state);
    if let Some(iss) = iss {
        callback.query_pairs_mut().append_pair("iss", &iss);
    }
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let html = resp.text().await.unwrap();
    assert!(html.contains("This login could not be completed"), "{html}");
    let login = format!("{}session/sso", forum_home(&s.forum));
    assert_ways_out(&html, &s.forum, &[("Log in again", login.as_str())]);
}

#[tokio::test]
async fn an_unreachable_idp_is_a_temporary_failure_with_try_again() {
    let mut s = setup("", &[]).await;
    let browser = Browser::new();
    let callback = callback_for(&s, &browser, "alice").await;
    s.idp.stop();
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Identity provider unavailable"));
    let login = format!("{}session/sso", forum_home(&s.forum));
    assert_ways_out(&html, &s.forum, &[("Try again", login.as_str())]);
}

#[tokio::test]
async fn a_return_url_for_another_host_names_the_misconfiguration() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    // The bridge knows the forum as `localhost`, the forum calls itself `127.0.0.1`: the same
    // kind of mismatch as www versus the bare domain.
    let port = Url::parse(forum.base_url()).unwrap().port().unwrap();
    let configured = format!("http://localhost:{port}");
    let bridge = TestBridge::start_with_env(
        &idp,
        &forum,
        "",
        &[("BRIDGE_DISCOURSE__URL", configured.as_str())],
    )
    .await;
    let browser = Browser::new();
    let to_bridge = browser.get(forum.sso_start_url("/")).await;
    let resp = browser.step(&to_bridge).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let html = resp.text().await.unwrap();
    assert!(html.contains("configuration does not match"), "{html}");
    assert!(html.contains("tell the forum"), "{html}");
    let links = links(&html);
    assert_eq!(
        link(&links, "Back to the forum"),
        Some(format!("{configured}/").as_str())
    );
    assert!(links.iter().all(|(_, href)| !href.contains("/session/sso")));
    drop(bridge);
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_rate_limits_get_the_styled_page() {
    let s = setup("", &[("BRIDGE_LIMITS__LOGIN_PER_MINUTE", "1")]).await;
    let client = reqwest::Client::new();
    for path in ["/", "/nope", "/session/sso"] {
        let resp = client.get(s.bridge.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(resp.headers().contains_key("content-security-policy"));
        let html = resp.text().await.unwrap();
        assert!(html.contains("<html lang=\"en\">"), "{html}");
        assert!(
            html.contains("<title>Page not found · Forum login</title>"),
            "{html}"
        );
        assert!(html.contains(&id), "request id on the page");
        assert_ways_out(&html, &s.forum, &[]);
    }

    let resp = client.post(s.bridge.url("/logout")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET,HEAD");
    let html = resp.text().await.unwrap();
    assert!(html.contains("Request not allowed here") && html.contains("request id"));

    // One login request a minute: the second is refused with a wait that is really enough.
    let first = client.get(s.bridge.url("/sso")).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::BAD_REQUEST);
    let limited = client.get(s.bridge.url("/sso")).send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let html = limited.text().await.unwrap();
    assert!(html.contains("Too many attempts"), "{html}");
    assert!(html.contains(&format!("in {retry_after} second")), "{html}");
}

#[tokio::test]
async fn the_logged_out_page_can_be_reloaded_and_bookmarked() {
    let s = setup("", &[]).await;
    let client = Browser::new();
    for url in ["/logged-out", "/logged-out?state=forged"] {
        let resp = client.get(s.bridge.url(url)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("You are logged out"), "{html}");
        assert!(
            !html.contains("identity provider"),
            "claims nothing about the IdP"
        );
        assert_ways_out(&html, &s.forum, &[]);
    }
}

#[tokio::test]
async fn pages_speak_the_browsers_language_in_the_forums_look() {
    let s = setup(
        &format!(
            "{DENY_ALL}\n[pages]\nforum_name = \"Beispielforum\"\n\
             logo_url = \"https://cdn.example.test/logo.png\"\naccent_color = \"#8a2be2\"\n"
        ),
        &[],
    )
    .await;
    let browser = Browser::new();
    let callback = callback_for(&s, &browser, "alice").await;
    let resp = browser
        .client()
        .get(callback.as_str())
        .header("accept-language", "de-AT,de;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.headers()["vary"], "accept-language");
    let html = resp.text().await.unwrap();
    assert!(html.contains("<html lang=\"de\">"), "{html}");
    assert!(
        html.contains("<title>Zugriff verweigert · Beispielforum</title>"),
        "{html}"
    );
    assert!(html.contains("Anderes Konto verwenden") && html.contains("Zurück zu Beispielforum"));
    assert!(
        html.contains("https:&#x2f;&#x2f;cdn.example.test&#x2f;logo.png"),
        "{html}"
    );
    assert!(html.contains("--accent: #8a2be2"), "{html}");

    for language in ["fr", "es-MX", "ja"] {
        let resp = reqwest::Client::new()
            .get(s.bridge.url("/nope"))
            .header("accept-language", language)
            .send()
            .await
            .unwrap();
        let html = resp.text().await.unwrap();
        let expected = match language {
            "fr" => "Page introuvable",
            "es-MX" => "Página no encontrada",
            _ => "Page not found",
        };
        assert!(html.contains(expected), "{language}: {html}");
    }
}

// ---------------------------------------------------------------------------------------------
// In the browser.

/// Where screenshots go when `BRIDGE_SCREENSHOTS` names a directory (for reviewing the pages).
fn screenshot_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("BRIDGE_SCREENSHOTS").map(std::path::PathBuf::from)
}

async fn shoot(browser: &Chromium, name: &str) {
    if let Some(dir) = screenshot_dir() {
        std::fs::create_dir_all(&dir).unwrap();
        browser.screenshot(&dir.join(format!("{name}.png"))).await;
    }
}

/// Checks one of the bridge's pages: its title, `lang`, the way back to the forum's home, no
/// horizontal overflow on a phone, and no accessibility violation.
async fn check_page(browser: &Chromium, forum: &TestForum, title: &str, name: &str) {
    assert!(
        browser.title().await.starts_with(title),
        "{title} != {}\n{}",
        browser.title().await,
        browser.text().await
    );
    assert_eq!(browser.lang().await, "en");
    assert_eq!(browser.link("Back to the forum").await, forum_home(forum));
    browser.assert_accessible().await;
    shoot(browser, name).await;
    browser.resize(chromium::PHONE).await;
    assert!(
        !browser.overflows_horizontally().await,
        "{name} overflows a phone"
    );
    browser.assert_accessible().await;
    shoot(browser, &format!("{name}-phone")).await;
    browser.resize(chromium::DESKTOP).await;
}

/// At the test IdP's login form: logs in as `user` with the keyboard only.
async fn keyboard_login_at_idp(browser: &Chromium, user: &str) {
    browser.tab_to("input login").await;
    browser.type_text(user).await;
    browser.tab_to("input password").await;
    browser.type_text("any-password").await;
    browser.press_to_navigate(ENTER).await;
}

#[tokio::test]
async fn in_chromium_every_case_gives_the_right_page() {
    let Some(browser) = Chromium::start(
        "pages::in_chromium_every_case_gives_the_right_page",
        "en-US,en",
    )
    .await
    else {
        return;
    };
    let s = setup("", &[]).await;

    // The full login, by keyboard only.
    browser.goto(s.forum.sso_start_url("/").as_str()).await;
    assert!(browser.url().await.starts_with(s.idp.issuer()));
    keyboard_login_at_idp(&browser, "alice").await;
    assert_eq!(s.forum.logins().len(), 1, "logged in at the forum");
    assert!(browser.url().await.starts_with(s.forum.base_url()));

    // 3: logging out, then reloading the page and opening it again.
    browser.goto(&s.bridge.url("/logout")).await;
    browser.click("button[value=yes]").await;
    assert!(
        browser
            .url()
            .await
            .starts_with(&s.bridge.url("/logged-out"))
    );
    assert!(
        browser
            .text()
            .await
            .contains("and of your identity provider")
    );
    check_page(&browser, &s.forum, "You are logged out", "logged-out").await;
    browser.reload().await;
    check_page(
        &browser,
        &s.forum,
        "You are logged out",
        "logged-out-reloaded",
    )
    .await;
    browser.goto(&s.bridge.url("/logged-out")).await;
    assert!(browser.title().await.starts_with("You are logged out"));

    // 7: unknown path, wrong method (a form posting to /logout), rate limit below.
    browser.goto(&s.bridge.url("/")).await;
    check_page(&browser, &s.forum, "Page not found", "not-found").await;
    assert!(browser.text().await.contains("request id"));
    let form = format!(
        "data:text/html,<form method=post action=\"{}\"><button>go</button></form>",
        s.bridge.url("/logout")
    );
    browser.goto(&form).await;
    browser.click("button").await;
    check_page(
        &browser,
        &s.forum,
        "Request not allowed here",
        "method-not-allowed",
    )
    .await;

    drop(s);

    let s = setup(DENY_ALL, &[]).await;
    // 1 and 4: a denial, its reload, and "Use another account".
    browser.goto(s.forum.sso_start_url("/").as_str()).await;
    keyboard_login_at_idp(&browser, "alice").await;
    check_page(&browser, &s.forum, "Access denied", "denied").await;
    assert!(browser.text().await.contains("forum-admins@example.test"));
    browser.reload().await;
    assert!(browser.title().await.starts_with("Access denied"));
    assert!(browser.text().await.contains("not in any group"));
    let switch = browser.link("Use another account").await;
    assert_eq!(switch, s.bridge.url("/switch-account"));
    browser.click("a[href$='/switch-account']").await;
    browser.click("button[value=yes]").await;
    // Logged out at the IdP, a new login asks who to log in as instead of denying silently.
    assert!(browser.url().await.starts_with(s.idp.issuer()));
    browser.tab_to("input login").await;

    // 1: cancelling at the IdP.
    s.idp.deny_next().await;
    keyboard_login_at_idp(&browser, "alice").await;
    check_page(&browser, &s.forum, "Login cancelled", "cancelled").await;
    assert!(
        browser
            .links()
            .await
            .iter()
            .all(|(_, href)| !href.contains("/session/sso")),
        "no new login from a cancelled one"
    );
    drop(s);

    // 2: a login that took too long.
    let s = setup("", &[("BRIDGE_SESSION__LOGIN_TIMEOUT", "1s")]).await;
    let fresh = &browser;
    fresh.goto(s.forum.sso_start_url("/").as_str()).await;
    fresh.tab_to("input login").await;
    fresh.type_text("alice").await;
    fresh.tab_to("input password").await;
    fresh.type_text("any-password").await;
    s.bridge.advance_clock(Duration::from_secs(2));
    fresh.press_to_navigate(ENTER).await;
    check_page(fresh, &s.forum, "Your login took too long", "expired").await;
    assert_eq!(
        fresh.link("Log in again").await,
        format!("{}session/sso", forum_home(&s.forum))
    );
    drop(s);

    // 5: a forum whose address differs from `discourse.url`.
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let port = Url::parse(forum.base_url()).unwrap().port().unwrap();
    let configured = format!("http://localhost:{port}");
    let _bridge = TestBridge::start_with_env(
        &idp,
        &forum,
        "",
        &[("BRIDGE_DISCOURSE__URL", configured.as_str())],
    )
    .await;
    fresh.goto(forum.sso_start_url("/").as_str()).await;
    assert!(
        fresh
            .title()
            .await
            .starts_with("The forum's configuration does not match")
    );
    fresh.assert_accessible().await;
    shoot(fresh, "forum-mismatch").await;

    // 7: the rate limit.
    let s = setup("", &[("BRIDGE_LIMITS__LOGIN_PER_MINUTE", "1")]).await;
    fresh.goto(&s.bridge.url("/sso")).await;
    fresh.goto(&s.bridge.url("/sso")).await;
    check_page(fresh, &s.forum, "Too many attempts", "rate-limited").await;
    assert!(fresh.text().await.contains("You can try again in"));
}

#[tokio::test]
async fn in_chromium_a_code_the_idp_rejects_asks_to_log_in_again() {
    let Some(browser) = Chromium::start(
        "pages::in_chromium_a_code_the_idp_rejects_asks_to_log_in_again",
        "en",
    )
    .await
    else {
        return;
    };
    // The checker really runs: a page with an image without a text alternative fails it.
    browser
        .goto("data:text/html,<html lang=en><title>t</title><main><img src=x.png></main></html>")
        .await;
    let violations = browser.axe_violations().await;
    assert!(
        violations.iter().any(|v| v.starts_with("image-alt")),
        "{violations:?}"
    );

    let s = setup("", &[]).await;
    // The HTTP client runs the login up to the callback; the browser gets its login cookie and
    // a callback with a code the IdP never issued.
    let client = Browser::new();
    let callback = callback_for(&s, &client, "alice").await;
    let state = query_param(&callback, "state").unwrap();
    let cookie = client
        .cookie_header(&Url::parse(&s.bridge.url("/callback")).unwrap())
        .unwrap();
    browser.goto(&s.bridge.url("/healthz")).await;
    for pair in cookie.split("; ") {
        let (name, value) = pair.split_once('=').unwrap();
        browser.add_cookie(name, value, "/callback").await;
    }
    let mut forged = Url::parse(&s.bridge.url("/callback")).unwrap();
    forged
        .query_pairs_mut()
        .append_pair("code", "never-issued")
        .append_pair("state", &state);
    browser.goto(forged.as_str()).await;
    check_page(
        &browser,
        &s.forum,
        "This login could not be completed",
        "code-rejected",
    )
    .await;
    assert_eq!(
        browser.link("Log in again").await,
        format!("{}session/sso", forum_home(&s.forum))
    );
}

#[tokio::test]
async fn in_chromium_a_denial_in_german_carries_the_forums_name_and_logo() {
    let Some(browser) = Chromium::start(
        "pages::in_chromium_a_denial_in_german_carries_the_forums_name_and_logo",
        "de-DE,de",
    )
    .await
    else {
        return;
    };
    let s = setup(
        &format!(
            "{DENY_ALL}\n[pages]\nforum_name = \"Beispielforum\"\n\
             logo_url = \"https://cdn.example.test/logo.png\"\naccent_color = \"#8a2be2\"\n"
        ),
        &[],
    )
    .await;
    browser.goto(s.forum.sso_start_url("/").as_str()).await;
    keyboard_login_at_idp(&browser, "alice").await;
    assert_eq!(browser.lang().await, "de");
    assert_eq!(browser.title().await, "Zugriff verweigert · Beispielforum");
    let text = browser.text().await;
    assert!(text.contains("Beispielforum") && text.contains("Anderes Konto verwenden"));
    let logo = browser
        .execute(
            "const i = document.querySelector('header img'); return [i.src, i.alt];",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(logo[0], "https://cdn.example.test/logo.png");
    assert_eq!(logo[1], "Logo von Beispielforum");
    assert_eq!(
        browser.link("Zurück zu Beispielforum").await,
        forum_home(&s.forum)
    );
    browser.assert_accessible().await;
    shoot(&browser, "denied-de-branded").await;
}

/// Waits until the demo's bridge has loaded the demo IdP's configuration.
#[cfg(feature = "demo")]
async fn demo_ready(urls: &discourse_oidc_bridge::demo::DemoUrls) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{}/readyz", urls.bridge)).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the demo's bridge never became ready");
}

#[cfg(feature = "demo")]
#[tokio::test]
async fn in_chromium_the_demo_works_by_keyboard_and_fits_a_phone() {
    use discourse_oidc_bridge::demo::{Demo, DemoAddresses};
    let Some(browser) = Chromium::start(
        "pages::in_chromium_the_demo_works_by_keyboard_and_fits_a_phone",
        "en-US,en",
    )
    .await
    else {
        return;
    };
    let demo = Demo::start(DemoAddresses::loopback_any_port(), None)
        .await
        .unwrap();
    let urls = demo.urls().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(demo.run_until(async {
        let _ = stopped.await;
    }));
    demo_ready(&urls).await;
    let forum = format!("{}/", urls.forum.trim_end_matches('/'));

    // The front page, then the login by keyboard alone: Tab to "Log in", Enter, Tab to a user.
    browser.goto(&forum).await;
    browser.assert_accessible().await;
    shoot(&browser, "demo-forum-home").await;
    browser.tab_to("Log in").await;
    browser.press_to_navigate(ENTER).await;
    assert!(browser.url().await.starts_with(&urls.idp));
    browser.assert_accessible().await;
    shoot(&browser, "demo-idp-login").await;
    browser.tab_to("Alice").await;
    browser.press_to_navigate(ENTER).await;
    assert_eq!(browser.url().await, forum);
    let text = browser.text().await;
    assert!(text.contains("Logged in as alice"), "{text}");
    assert!(
        text.contains("email verified by the identity provider"),
        "{text}"
    );
    browser.assert_accessible().await;
    shoot(&browser, "demo-forum-logged-in").await;

    // On a phone the page, its table included, fits the screen.
    browser.resize(chromium::PHONE).await;
    let overflowing = browser.overflowing().await;
    assert!(
        overflowing.is_empty(),
        "the demo overflows a phone: {overflowing:?}"
    );
    browser
        .execute(
            "document.querySelector('table').scrollIntoView(); return 1;",
            serde_json::json!([]),
        )
        .await;
    shoot(&browser, "demo-forum-logged-in-phone").await;
    browser.resize(chromium::DESKTOP).await;

    // "Log out" goes through the bridge's /logout and the IdP, and lands on the bridge's page.
    browser.click("a[href='/session/logout']").await;
    assert!(
        browser
            .url()
            .await
            .starts_with(&format!("{}/logged-out", urls.bridge))
    );
    assert!(
        browser
            .text()
            .await
            .contains("and of your identity provider")
    );
    assert_eq!(browser.link("Back to the forum").await, forum);
    browser.assert_accessible().await;
    shoot(&browser, "bridge-logged-out").await;
    browser.reload().await;
    assert!(browser.title().await.starts_with("You are logged out"));

    // Carol's unverified email is refused; the page leads home or to another account.
    browser.goto(&format!("{forum}session/sso")).await;
    browser.click("button[value=carol]").await;
    assert!(browser.title().await.starts_with("Access denied"));
    assert_eq!(browser.link("Back to the forum").await, forum);
    browser.assert_accessible().await;
    shoot(&browser, "bridge-denied").await;
    browser.resize(chromium::PHONE).await;
    assert!(!browser.overflows_horizontally().await);
    shoot(&browser, "bridge-denied-phone").await;
    browser.resize(chromium::DESKTOP).await;
    browser.click("a[href$='/switch-account']").await;
    assert!(
        browser.url().await.starts_with(&urls.idp),
        "a new login at the IdP: {}",
        browser.url().await
    );

    // Cancelling at the IdP.
    browser.click("button[name=cancel]").await;
    assert!(browser.title().await.starts_with("Login cancelled"));
    browser.assert_accessible().await;
    shoot(&browser, "bridge-cancelled").await;

    // The bridge's 404.
    browser.goto(&format!("{}/", urls.bridge)).await;
    assert!(browser.title().await.starts_with("Page not found"));
    shoot(&browser, "bridge-not-found").await;

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
