//! The real OpenID Provider for end-to-end tests: runs `tests/node/op.mjs` (npm `oidc-provider`,
//! OpenID Connect Core, Back-Channel Logout 1.0 and RP-Initiated Logout 1.0) on 127.0.0.1 and
//! drives its `/__test/` control endpoints (documented in the header of `op.mjs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;

use super::node::node_dir;

/// How long the OP may take to print its ready line (it normally needs well under a second).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One relying party registered at the OP (OAuth 2.0 Dynamic Client Registration metadata names).
#[derive(Debug, Clone, Serialize)]
pub struct IdpClient {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    /// `client_secret_basic` (default), `client_secret_post` or `none`.
    pub token_endpoint_auth_method: String,
    /// Any other client metadata, passed through unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IdpClient {
    /// A confidential client using `client_secret_basic`, with `sid` required in logout tokens.
    /// oidc-provider puts `sid` in ID tokens only once `backchannel_logout_uri` is set too.
    pub fn new(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: Some(client_secret.to_owned()),
            redirect_uris: vec![redirect_uri.to_owned()],
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: None,
            backchannel_logout_session_required: true,
            token_endpoint_auth_method: "client_secret_basic".to_owned(),
            extra: Map::new(),
        }
    }

    pub fn backchannel_logout_uri(mut self, uri: &str) -> Self {
        self.backchannel_logout_uri = Some(uri.to_owned());
        self
    }

    pub fn post_logout_redirect_uri(mut self, uri: &str) -> Self {
        self.post_logout_redirect_uris.push(uri.to_owned());
        self
    }
}

/// Everything `op.mjs` is configured with. `Default` gives two users and no clients.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdpOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// kid of the first signing key.
    pub kid: String,
    /// oidc-provider's default (`true`) puts scope claims in userinfo only, not in the ID token.
    pub conform_id_token_claims: bool,
    pub pkce_required: bool,
    /// Skip the consent page (a grant for every scope is created at login).
    pub auto_consent: bool,
    /// Advertise `end_session_endpoint`.
    pub rp_initiated_logout: bool,
    pub backchannel_logout: bool,
    /// Serve HTTPS with this certificate (see `op.mjs`'s header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<IdpTls>,
    /// With `tls`: publish a client-certificate-only listener as `mtls_endpoint_aliases`.
    pub mtls_aliases: bool,
    /// The issuer's host name (the OP still listens on 127.0.0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// PEM of a CA the test's own requests to the OP trust (the one that issued `tls.cert`).
    #[serde(skip)]
    pub trust_pem: Option<String>,
    pub clients: Vec<IdpClient>,
    /// sub → claims (`email`, `email_verified`, `name`, `preferred_username`, `picture`,
    /// `groups`, anything else).
    pub users: BTreeMap<String, Value>,
}

impl Default for IdpOptions {
    fn default() -> Self {
        let mut users = BTreeMap::new();
        users.insert(
            "alice".to_owned(),
            json!({
                "email": "alice@example.test",
                "email_verified": true,
                "name": "Alice Liddell",
                "preferred_username": "alice",
                "picture": "https://avatars.example.test/alice.png",
                "groups": ["/staff", "/staff/moderators", "forum-admins"],
            }),
        );
        users.insert(
            "bob".to_owned(),
            json!({
                "email": "bob@example.test",
                "email_verified": false,
                "name": "Bob Builder",
                "preferred_username": "bob",
                "groups": [],
            }),
        );
        Self {
            port: 0,
            kid: "test-rs256".to_owned(),
            conform_id_token_claims: false,
            pkce_required: true,
            auto_consent: true,
            rp_initiated_logout: true,
            backchannel_logout: true,
            tls: None,
            mtls_aliases: false,
            host: None,
            trust_pem: None,
            clients: Vec::new(),
            users,
        }
    }
}

impl IdpOptions {
    pub fn client(mut self, client: IdpClient) -> Self {
        self.clients.push(client);
        self
    }

    /// Adds or replaces a user.
    pub fn user(mut self, sub: &str, claims: Value) -> Self {
        self.users.insert(sub.to_owned(), claims);
        self
    }
}

/// The OP's HTTPS certificate and key, and the CA client certificates are checked against.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdpTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<std::path::PathBuf>,
}

/// What the OP answers for one back-channel logout POST it made.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct BackchannelOutcome {
    pub client_id: String,
    pub sub: String,
    pub sid: Option<String>,
    /// The relying party answered 200 or 204.
    pub ok: bool,
    pub error: Option<String>,
}

/// How `/__test/mutate-next-id-token` and `/__test/sign` sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The OP's current key (kid as published in the JWKS unless the header overrides it).
    Default,
    /// `alg: none`, empty signature.
    None,
    /// An RSA key that is not in the JWKS (its kid is `foreign-…`).
    ForeignKey,
}

impl Signer {
    fn as_str(self) -> &'static str {
        match self {
            Signer::Default => "default",
            Signer::None => "none",
            Signer::ForeignKey => "foreign-key",
        }
    }
}

/// A change the OP applies to the next ID token it returns from its token endpoint.
#[derive(Debug, Clone)]
pub struct IdTokenMutation {
    /// Claims to set; `Value::Null` removes the claim.
    pub claims: Value,
    /// Protected-header fields to set (e.g. `kid`, `typ`).
    pub header: Value,
    pub sign: Signer,
}

impl IdTokenMutation {
    /// Changes claims, re-signed with the OP's own key.
    pub fn claims(claims: Value) -> Self {
        Self {
            claims,
            header: json!({}),
            sign: Signer::Default,
        }
    }

    pub fn header(mut self, header: Value) -> Self {
        self.header = header;
        self
    }

    pub fn signed_by(mut self, sign: Signer) -> Self {
        self.sign = sign;
        self
    }
}

/// A running `op.mjs`. Killed on drop; its stderr is printed when the test failed or `TEST_LOG`
/// is set.
#[derive(Debug)]
pub struct TestIdp {
    options: IdpOptions,
    child: Option<Child>,
    issuer: String,
    port: u16,
    http: reqwest::Client,
    stderr: Arc<Mutex<String>>,
}

impl TestIdp {
    /// Starts the OP and waits for its ready line.
    pub async fn start(options: IdpOptions) -> TestIdp {
        let stderr = Arc::new(Mutex::new(String::new()));
        let (child, issuer, port) = spawn(&options, &stderr).await;
        let mut http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10));
        if let Some(pem) = &options.trust_pem {
            http =
                http.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
        }
        if let Some(host) = &options.host {
            http = http.resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        let http = http.build().expect("reqwest client");
        TestIdp {
            options,
            child: Some(child),
            issuer,
            port,
            http,
            stderr,
        }
    }

    /// The issuer identifier exactly as the OP puts it in `iss` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An absolute URL on the OP, e.g. `url("/jwks")`.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{}", self.issuer, path)).expect("OP URL")
    }

    pub fn discovery_url(&self) -> Url {
        self.url("/.well-known/openid-configuration")
    }

    /// Everything the OP wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Kills the OP (for "IdP down" tests). The port stays known; `restart` brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the OP again on the same port with the same options. Sessions, codes and signing
    /// keys of the previous run are gone (new key, same first kid).
    pub async fn restart(&mut self) {
        self.stop();
        let mut options = self.options.clone();
        options.port = self.port;
        let (child, issuer, port) = spawn(&options, &self.stderr).await;
        assert_eq!(issuer, self.issuer, "restarted OP has another issuer");
        self.child = Some(child);
        self.port = port;
    }

    /// Adds or replaces a client after start (the relying party's URL is often known later).
    pub async fn set_client(&self, client: &IdpClient) {
        self.control("POST", "/__test/client", json!(client)).await;
    }

    /// Makes the OP end `sub`'s sessions and POST real logout tokens to the registered
    /// back-channel URIs, as an IdP admin's "sign out user" does. `sid: None` sends one token
    /// per OP session of the user (with that session's sid), or one without sid when the user
    /// has none. Returns what each relying party answered.
    pub async fn backchannel_logout(
        &self,
        sub: &str,
        sid: Option<&str>,
    ) -> Vec<BackchannelOutcome> {
        self.backchannel_logout_with(json!({ "sub": sub, "sid": sid }))
            .await
    }

    /// Same as `backchannel_logout` with the raw request (`sub`, `sid`, `client_id`,
    /// `keep_session`).
    pub async fn backchannel_logout_with(&self, request: Value) -> Vec<BackchannelOutcome> {
        let mut request = request;
        if let Some(object) = request.as_object_mut() {
            object.retain(|_, v| !v.is_null());
        }
        let answer = self
            .control("POST", "/__test/backchannel-logout", request)
            .await;
        serde_json::from_value(answer["results"].clone()).expect("backchannel results")
    }

    /// Every back-channel logout the OP attempted so far, including those caused by a real
    /// RP-initiated logout.
    pub async fn backchannel_log(&self) -> Vec<BackchannelOutcome> {
        let answer = self
            .control("GET", "/__test/backchannel-log", Value::Null)
            .await;
        serde_json::from_value(answer["entries"].clone()).expect("backchannel log")
    }

    /// Replaces the signing key; the JWKS then holds only the new key. Returns the new kid.
    pub async fn rotate_keys(&self) -> String {
        let answer = self.control("POST", "/__test/rotate-keys", json!({})).await;
        answer["kid"].as_str().expect("new kid").to_owned()
    }

    /// Queues a change for the next ID token the token endpoint returns.
    pub async fn mutate_next_id_token(&self, mutation: IdTokenMutation) {
        let body = json!({
            "claims": mutation.claims,
            "header": mutation.header,
            "sign": mutation.sign.as_str(),
        });
        self.control("POST", "/__test/mutate-next-id-token", body)
            .await;
    }

    /// Queues a change for the next userinfo answer (`Value::Null` removes a claim).
    pub async fn mutate_next_userinfo(&self, claims: Value) {
        self.control(
            "POST",
            "/__test/mutate-next-userinfo",
            json!({ "claims": claims }),
        )
        .await;
    }

    /// The next interaction form submitted at the OP ends with `error=access_denied`.
    pub async fn deny_next(&self) {
        self.control("POST", "/__test/deny-next", json!({ "count": 1 }))
            .await;
    }

    /// The next request to `path` (e.g. `/token`, `/jwks`, `/me`) is held for `delay` before the
    /// OP serves it: an IdP that hangs rather than refusing connections.
    pub async fn delay_next(&self, path: &str, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.control(
            "POST",
            "/__test/delay-next",
            json!({ "path": path, "ms": ms }),
        )
        .await;
    }

    /// A compact JWS over `claims` with the given header fields, signed like the OP signs
    /// (hand-crafted logout tokens that the relying party's JWKS check accepts).
    pub async fn sign(&self, header: Value, claims: Value, sign: Signer) -> String {
        let body = json!({ "header": header, "claims": claims, "sign": sign.as_str() });
        let answer = self.control("POST", "/__test/sign", body).await;
        answer["jwt"].as_str().expect("jwt").to_owned()
    }

    async fn control(&self, method: &str, path: &str, body: Value) -> Value {
        let url = self.url(path);
        let request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("OP {path}: {e}\nOP stderr:\n{}", self.stderr()));
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "OP {path} answered {status}: {answer}");
        answer
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() && std::env::var_os("TEST_LOG").is_none() {
            eprintln!("--- OP stderr ({}) ---\n{}", self.issuer, self.stderr());
        }
    }
}

#[derive(Deserialize)]
struct ReadyLine {
    ready: bool,
    issuer: String,
    port: u16,
}

/// Spawns `node op.mjs`, forwards its stderr into `stderr` (and to the test output when
/// `TEST_LOG` is set) and waits for the ready line on stdout.
async fn spawn(options: &IdpOptions, stderr: &Arc<Mutex<String>>) -> (Child, String, u16) {
    let dir = node_dir();
    let config = serde_json::to_string(options).expect("OP options as JSON");
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg("op.mjs")
        .arg(&config)
        .current_dir(&dir)
        // op.mjs exits when its stdin closes: no orphaned OP even if the test process is killed.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed to run the end-to-end tests");

    let log_live = std::env::var_os("TEST_LOG").is_some();
    let child_err = child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(stderr);
    std::thread::spawn(move || {
        for line in BufReader::new(child_err).lines().map_while(Result::ok) {
            if log_live {
                eprintln!("[op] {line}");
            }
            if let Ok(mut all) = sink.lock() {
                all.push_str(&line);
                all.push('\n');
            }
        }
    });

    let child_out = child.stdout.take().expect("piped stdout");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(child_out).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = ready_tx.send(first);
        }
        // Keep draining so the OP never blocks on a full pipe.
        for line in lines.map_while(Result::ok) {
            if log_live {
                eprintln!("[op stdout] {line}");
            }
        }
    });

    let line = match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
        Ok(Ok(line)) => line,
        outcome => {
            let _ = child.kill();
            let status = child.wait().ok();
            // Give the stderr thread a moment to collect the crash report.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
            let why = if outcome.is_err() {
                "timed out"
            } else {
                "exited"
            };
            panic!("op.mjs {why} before its ready line (status {status:?})\nstderr:\n{err}");
        }
    };
    let ready: ReadyLine = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("op.mjs ready line {line:?} is not JSON: {e}"));
    assert!(ready.ready, "op.mjs ready line {line:?}");
    if log_live {
        eprintln!(
            "[op] ready at {} after {:?}",
            ready.issuer,
            started.elapsed()
        );
    }
    (child, ready.issuer, ready.port)
}
