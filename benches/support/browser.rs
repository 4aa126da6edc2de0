//! One browser doing one login through the real OpenID Provider the end-to-end tests use
//! (`tests/node/op.mjs`, npm `oidc-provider`): Discourse's signed request at `/sso`, the IdP's
//! login form, `/callback`, and the answer decoded as Discourse would. `full_login` measures the
//! bridge's CPU per login with it; `load` holds hundreds of these browsers at once. Included by
//! `#[path]` from both (with `tests/e2e/support/node.rs` as `node`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use discourse_oidc_bridge::discourse::connect::{ConnectSecret, Field, Payload, SsoRequest};
use regex::Regex;
use reqwest::StatusCode;
use reqwest::cookie::Jar;
use serde_json::{Value, json};
use url::Url;

use crate::node::node_dir;
use crate::support::{CLIENT_ID, CLIENT_SECRET};

/// Users at the IdP; logins cycle through them.
pub const USERS: usize = 20;
/// Redirects followed at the IdP before giving up on one login.
const MAX_IDP_HOPS: usize = 12;

pub fn user_name(index: usize) -> String {
    format!("user{index:02}")
}

/// The OP's configuration: one confidential client (the bridge, with back-channel logout so ID
/// tokens carry `sid`, as in production), `other_clients` as given, and users with a realistic
/// set of claims.
pub fn idp_config(bridge_bases: &[String], other_clients: &[Value]) -> Value {
    let bridge_base = &bridge_bases[0];
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
        "clients": std::iter::once(json!({
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": bridge_bases
                    .iter()
                    .map(|base| format!("{base}/callback"))
                    .collect::<Vec<_>>(),
                "post_logout_redirect_uris": [format!("{bridge_base}/logged-out")],
                "backchannel_logout_uri": format!("{bridge_base}/backchannel-logout"),
                "backchannel_logout_session_required": true,
                "token_endpoint_auth_method": "client_secret_basic",
            }))
            .chain(other_clients.iter().cloned())
            .collect::<Vec<_>>(),
        "users": users,
    })
}

/// A running `op.mjs`; it exits when its stdin closes, and is killed when dropped.
pub struct IdpProcess {
    child: Child,
    _stdin: ChildStdin,
    pub issuer: String,
}

impl IdpProcess {
    pub fn start(config: &Value, log_path: &Path) -> IdpProcess {
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

impl IdpProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for IdpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

pub fn redirect_target(response: &reqwest::Response) -> Result<Url, String> {
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
pub async fn login_at_idp(
    client: &reqwest::Client,
    authorize: Url,
    user: &str,
) -> Result<Url, String> {
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

/// Where a login goes: the bridge (or the baseline), and the forum it answers.
pub struct Sites {
    pub server: String,
    pub forum_return: String,
    pub secret: ConnectSecret,
    /// Whether the answer is decoded and checked like Discourse would (the baseline's answer is
    /// a fixed one).
    pub check_answer: bool,
}

/// Wall-clock time of the two bridge requests of one login.
pub struct LoginTimes {
    pub sso_ms: f64,
    pub callback_ms: f64,
}

pub async fn one_login(sites: &Sites, user: &str) -> Result<LoginTimes, String> {
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
    .redirect_url(&format!("{}/sso", sites.server));

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
        .starts_with(&format!("{}/callback?", sites.server))
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
    if !sites.check_answer {
        return Ok(LoginTimes {
            sso_ms,
            callback_ms,
        });
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
