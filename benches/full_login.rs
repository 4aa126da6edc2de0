//! Full-login benchmark: the bridge's CPU time per complete login, the IdP's excluded.
//!
//! Three processes: the real OpenID Provider the end-to-end tests use (`node tests/node/op.mjs`,
//! npm `oidc-provider`), the bridge's release binary running `serve`, and this one, which plays
//! the browsers and Discourse. Each login is a new browser: Discourse's signed request to
//! `/sso`, the IdP's login form, the IdP's redirect to `/callback` (where the bridge redeems the
//! code, validates the ID token, fetches userinfo, maps the claims, records the login and signs
//! the answer), and the bridge's 302 back to the forum, whose payload is decoded and checked
//! here instead of being requested. The bridge's user + system CPU time from `/proc/PID/stat`,
//! divided by the number of logins, is everything the bridge does per login; the IdP's time is
//! in its own process.
//!
//! Run with `cargo bench --bench full_login`. Knobs (environment): `FULL_LOGIN_COUNT` (300 per
//! round), `FULL_LOGIN_ROUNDS` (3), `FULL_LOGIN_WARMUP` (30), `FULL_LOGIN_CONCURRENCY` (4), `FULL_LOGIN_USERINFO` (auto, true
//! or false: the bridge's `[oidc] userinfo`). Needs Node.js and npm; installs
//! `tests/node` from its lockfile when needed, like the end-to-end tests.

// A benchmark reports on stdout and stops at the first thing that is not as expected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod support;

/// The same pinned-peer installer the end-to-end tests use (`npm ci` in tests/node when stale).
#[path = "../tests/e2e/support/node.rs"]
mod node;
use node::node_dir;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use discourse_oidc_bridge::discourse::connect::{ConnectSecret, Field, Payload, SsoRequest};
use regex::Regex;
use reqwest::StatusCode;
use reqwest::cookie::Jar;
use serde_json::{Value, json};
use url::Url;

use support::{
    BridgeProcess, BridgeSettings, CLIENT_ID, CLIENT_SECRET, CONNECT_SECRET, CpuReading,
    clock_ticks_per_second, env_number, free_port, median, smoke_test_mode, ticks_to_seconds,
    work_dir,
};

/// Users at the IdP; logins cycle through them.
const USERS: usize = 20;
/// Redirects followed at the IdP before giving up on one login.
const MAX_IDP_HOPS: usize = 12;

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run());
}

// ---------------------------------------------------------------------------------------------
// The OpenID Provider: tests/node/op.mjs, configured through one JSON document.

fn user_name(index: usize) -> String {
    format!("user{index:02}")
}

/// The OP's configuration: one confidential client (the bridge, with back-channel logout so ID
/// tokens carry `sid`, as in production) and users with a realistic set of claims.
fn idp_config(bridge_base: &str) -> Value {
    let users: serde_json::Map<String, Value> = (0..USERS)
        .map(|i| {
            let name = user_name(i);
            let claims = json!({
                "email": format!("{name}@example.test"),
                "email_verified": true,
                "name": format!("Test User {i:02}"),
                "preferred_username": name,
                "picture": format!("https://avatars.example.test/{name}.png"),
                "groups": ["/staff", "/engineering/backend", "team-platform", "forum-admins",
                           "members"],
            });
            (name, claims)
        })
        .collect();
    json!({
        "port": 0,
        "kid": "bench-rs256",
        "conformIdTokenClaims": false,
        "pkceRequired": true,
        "autoConsent": true,
        "rpInitiatedLogout": true,
        "backchannelLogout": true,
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{bridge_base}/callback")],
            "post_logout_redirect_uris": [format!("{bridge_base}/logged-out")],
            "backchannel_logout_uri": format!("{bridge_base}/backchannel-logout"),
            "backchannel_logout_session_required": true,
            "token_endpoint_auth_method": "client_secret_basic",
        }],
        "users": users,
    })
}

/// A running `op.mjs`; it exits when its stdin closes, and is killed when dropped.
struct IdpProcess {
    child: Child,
    _stdin: ChildStdin,
    issuer: String,
}

impl IdpProcess {
    fn start(config: &Value, log_path: &Path) -> IdpProcess {
        let mut child = Command::new("node")
            .arg("op.mjs")
            .arg(config.to_string())
            .current_dir(node_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(log_path).expect("IdP log file"))
            .spawn()
            .expect("node must be installed for this benchmark");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = ready_tx.send(first);
            }
            // Keep reading so the OP never blocks on a full pipe.
            for _ in lines.map_while(Result::ok) {}
        });
        let line = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "op.mjs did not start; its stderr:\n{}",
                    std::fs::read_to_string(log_path).unwrap_or_default()
                )
            });
        let ready: Value = serde_json::from_str(&line).expect("op.mjs ready line");
        let issuer = ready["issuer"].as_str().expect("issuer").to_owned();
        IdpProcess {
            child,
            _stdin: stdin,
            issuer,
        }
    }
}

impl Drop for IdpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// One browser doing one login.

static FORM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?is)<form\b([^>]*)>(.*?)</form>"#).expect("form regex"));
static INPUT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?is)<input\b([^>]*)>"#).expect("input regex"));

fn attribute(attrs: &str, name: &str) -> Option<String> {
    let pattern = Regex::new(&format!(r#"(?i)\b{name}\s*=\s*"([^"]*)""#)).ok()?;
    let raw = pattern.captures(attrs)?.get(1)?.as_str();
    Some(raw.replace("&amp;", "&").replace("&quot;", "\""))
}

/// The first form of an IdP page: where it posts and its hidden fields.
fn parse_form(html: &str, page: &Url) -> Option<(Url, Vec<(String, String)>)> {
    let form = FORM.captures(html)?;
    let action = page
        .join(&attribute(form.get(1)?.as_str(), "action").unwrap_or_default())
        .ok()?;
    let hidden = INPUT
        .captures_iter(form.get(2)?.as_str())
        .filter_map(|input| {
            let attrs = input.get(1)?.as_str();
            (attribute(attrs, "type")?.eq_ignore_ascii_case("hidden"))
                .then(|| Some((attribute(attrs, "name")?, attribute(attrs, "value")?)))?
        })
        .collect();
    Some((action, hidden))
}

fn redirect_target(response: &reqwest::Response) -> Result<Url, String> {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            format!(
                "{} from {} without Location",
                response.status(),
                response.url()
            )
        })?;
    response
        .url()
        .join(location)
        .map_err(|e| format!("bad Location {location:?}: {e}"))
}

/// Walks the IdP from the authorization request to its redirect back to the bridge, logging in
/// as `user` on the way, and returns that redirect without requesting it.
async fn login_at_idp(client: &reqwest::Client, authorize: Url, user: &str) -> Result<Url, String> {
    let idp = authorize.origin();
    let mut response = client
        .get(authorize)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..MAX_IDP_HOPS {
        if response.status().is_redirection() {
            let next = redirect_target(&response)?;
            if next.origin() != idp {
                return Ok(next);
            }
            response = client.get(next).send().await.map_err(|e| e.to_string())?;
            continue;
        }
        let page = response.url().clone();
        let status = response.status();
        let html = response.text().await.map_err(|e| e.to_string())?;
        if status != StatusCode::OK {
            return Err(format!("IdP page {page} answered {status}: {html}"));
        }
        let (action, mut fields) =
            parse_form(&html, &page).ok_or_else(|| format!("no form at {page}: {html}"))?;
        if fields.iter().any(|(k, v)| k == "prompt" && v == "login") {
            fields.push(("login".into(), user.into()));
            fields.push(("password".into(), "any-password".into()));
        }
        response = client
            .post(action)
            .form(&fields)
            .send()
            .await
            .map_err(|e| e.to_string())?;
    }
    Err(format!(
        "the IdP did not send the browser back within {MAX_IDP_HOPS} hops"
    ))
}

/// Where a login goes: the bridge, and the forum the bridge answers.
struct Sites {
    bridge: String,
    forum_return: String,
    secret: ConnectSecret,
}

/// Wall-clock time of the two bridge requests of one login.
struct LoginTimes {
    sso_ms: f64,
    callback_ms: f64,
}

async fn one_login(sites: &Sites, user: &str) -> Result<LoginTimes, String> {
    let client = reqwest::Client::builder()
        .cookie_provider(Arc::new(Jar::default()))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let request = SsoRequest {
        nonce: nonce.clone(),
        return_sso_url: sites.forum_return.clone(),
    }
    .sign(&sites.secret)
    .redirect_url(&format!("{}/sso", sites.bridge));

    let started = Instant::now();
    let entry = client
        .get(&request)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let sso_ms = started.elapsed().as_secs_f64() * 1e3;
    if entry.status() != StatusCode::FOUND {
        return Err(format!("/sso answered {}", entry.status()));
    }
    let authorize = redirect_target(&entry)?;

    let callback = login_at_idp(&client, authorize, user).await?;
    if !callback
        .as_str()
        .starts_with(&format!("{}/callback?", sites.bridge))
    {
        return Err(format!("the IdP sent the browser to {callback}"));
    }
    let started = Instant::now();
    let answer = client
        .get(callback)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let callback_ms = started.elapsed().as_secs_f64() * 1e3;
    if answer.status() != StatusCode::FOUND {
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        return Err(format!("/callback answered {status}: {body}"));
    }
    let to_forum = redirect_target(&answer)?;
    if !to_forum
        .as_str()
        .starts_with(&format!("{}?", sites.forum_return))
    {
        return Err(format!("the bridge answered to {to_forum}"));
    }
    let param = |name: &str| {
        to_forum
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| format!("no {name} in the answer"))
    };
    let payload = Payload::decode(&param("sso")?, &param("sig")?, &sites.secret)
        .map_err(|e| format!("the forum would refuse the answer: {e}"))?;
    if payload.get(Field::Nonce) != Some(nonce.as_str())
        || payload.get(Field::ExternalId) != Some(user)
    {
        return Err("the answer names another nonce or user".into());
    }
    Ok(LoginTimes {
        sso_ms,
        callback_ms,
    })
}

/// Runs `count` logins, `concurrency` at a time.
async fn logins(sites: Arc<Sites>, count: usize, concurrency: usize) -> Vec<LoginTimes> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (sites, next) = (sites.clone(), next.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        return Ok::<_, String>(times);
                    }
                    times.push(one_login(&sites, &user_name(index % USERS)).await?);
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    for task in tasks {
        match task.await.expect("login task") {
            Ok(times) => all.extend(times),
            Err(e) => panic!("a login failed: {e}"),
        }
    }
    all
}

async fn run() {
    let smoke = smoke_test_mode();
    if smoke {
        println!("full login: test mode (no --bench): a few logins, nothing is measured");
    }
    let count: usize = env_number("FULL_LOGIN_COUNT", if smoke { 8 } else { 300 });
    let rounds: usize = env_number("FULL_LOGIN_ROUNDS", if smoke { 1 } else { 3 });
    let warmup: usize = env_number("FULL_LOGIN_WARMUP", if smoke { 2 } else { 30 });
    let concurrency: usize = env_number("FULL_LOGIN_CONCURRENCY", 4);
    let userinfo = match std::env::var("FULL_LOGIN_USERINFO").as_deref() {
        Ok("true") => "true",
        Ok("false") => "false",
        _ => "auto",
    };
    let hz = clock_ticks_per_second();

    let dir = work_dir("full-login-");
    let settings = BridgeSettings {
        port: free_port(),
        issuer: String::new(),
        forum_url: format!("http://127.0.0.1:{}", free_port()),
        log_level: "info".into(),
        relay: true,
        userinfo: if userinfo == "auto" {
            "\"auto\"".into()
        } else {
            userinfo.into()
        },
    };
    let idp = IdpProcess::start(
        &idp_config(&settings.base_url()),
        &dir.path().join("idp.log"),
    );
    let settings = BridgeSettings {
        issuer: idp.issuer.clone(),
        ..settings
    };
    let bridge = BridgeProcess::start(&settings, dir.path(), "bridge").await;
    let sites = Arc::new(Sites {
        bridge: settings.base_url(),
        forum_return: format!("{}/session/sso_login", settings.forum_url),
        secret: ConnectSecret::new(CONNECT_SECRET),
    });

    println!(
        "full login: {rounds} rounds of {count} logins ({warmup} more as warm-up), {concurrency} \
         at a time, each a new browser; userinfo {userinfo}; IdP: npm oidc-provider (node); \
         CLK_TCK {hz}"
    );
    logins(sites.clone(), warmup, concurrency).await;

    let (bridge_pid, idp_pid, own_pid) = (bridge.pid(), idp.child.id(), std::process::id());
    let per_login_ms =
        |ticks: u64, logins: usize| ticks_to_seconds(ticks, hz) * 1e3 / logins as f64;
    println!();
    println!(
        "{:<6} {:>8} {:>10} {:>16} {:>14} {:>18}",
        "round", "logins", "seconds", "bridge ms/login", "IdP ms/login", "browsers ms/login"
    );
    let mut totals = [0u64; 3];
    let mut seconds = 0.0;
    let mut round_ms = Vec::new();
    let mut sso = Vec::new();
    let mut callback = Vec::new();
    for round in 1..=rounds {
        let pids = [bridge_pid, idp_pid, own_pid];
        let before = pids.map(CpuReading::of);
        let started = Instant::now();
        let times = logins(sites.clone(), count, concurrency).await;
        let elapsed = started.elapsed().as_secs_f64();
        let after = pids.map(CpuReading::of);
        if times.len() != count {
            panic!("{} of {count} logins finished", times.len());
        }
        let ticks: Vec<u64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.ticks_since(b))
            .collect();
        println!(
            "{round:<6} {count:>8} {elapsed:>10.1} {:>16.3} {:>14.3} {:>18.3}",
            per_login_ms(ticks[0], count),
            per_login_ms(ticks[1], count),
            per_login_ms(ticks[2], count),
        );
        round_ms.push(per_login_ms(ticks[0], count));
        for (total, t) in totals.iter_mut().zip(&ticks) {
            *total += t;
        }
        seconds += elapsed;
        sso.extend(times.iter().map(|t| t.sso_ms));
        callback.extend(times.iter().map(|t| t.callback_ms));
    }

    let all = count * rounds;
    let bridge_ms = per_login_ms(totals[0], all);
    println!(
        "{:<6} {all:>8} {seconds:>10.1} {:>16.3} {:>14.3} {:>18.3}",
        "all",
        bridge_ms,
        per_login_ms(totals[1], all),
        per_login_ms(totals[2], all),
    );
    println!();
    println!(
        "{all} logins at {:.0} logins/s; median wall time at the bridge: /sso {:.2} ms, \
         /callback {:.2} ms (the latter includes the IdP's token and userinfo answers)",
        all as f64 / seconds,
        median(&mut sso),
        median(&mut callback)
    );
    if smoke {
        println!("test mode: every login was checked; the figures above are not measurements");
        return;
    }
    println!(
        "bridge CPU per login: {bridge_ms:.3} ms over all rounds (rounds {:.3}–{:.3}; one clock \
         tick is {:.3} ms of a round)  (target < 0.3 ms)  {}",
        round_ms.iter().copied().fold(f64::INFINITY, f64::min),
        round_ms.iter().copied().fold(0.0, f64::max),
        per_login_ms(1, count),
        if bridge_ms < 0.3 { "met" } else { "MISSED" }
    );
    drop((bridge, idp));
}
