//! Process-level benchmark of the bridge over HTTP: the entry hop (`/sso` → 302 to the IdP) as
//! requests/s and server CPU per request against a bare axum HMAC+302 handler measured in the
//! same run, and the bridge's CPU time per complete login through the real test IdP.
//!
//! Each server runs as its own process and CPU is read from its `/proc/PID/stat`, so the load
//! generator's (and the IdP's) CPU is not counted. Run: `cargo bench --bench flow`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

#[path = "../tests/e2e/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{Browser, ForumOptions, IdpClient, IdpOptions, TestForum, TestIdp};

const CONCURRENCY: usize = 32;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);
const LOGINS: usize = 300;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became ready");
}

/// Drives `url` with keep-alive connections; returns (requests/s, CPU µs per request).
async fn load(url: &str, pid: u32) -> (f64, f64) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let run = |duration: Duration| {
        let client = client.clone();
        let url = url.to_owned();
        async move {
            let done = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + duration;
            let tasks: Vec<_> = (0..CONCURRENCY)
                .map(|_| {
                    let (client, url, done) = (client.clone(), url.clone(), done.clone());
                    tokio::spawn(async move {
                        while Instant::now() < deadline {
                            let r = client.get(&url).send().await.unwrap();
                            assert_eq!(r.status(), reqwest::StatusCode::FOUND);
                            let _ = r.bytes().await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            done.load(Ordering::Relaxed)
        }
    };
    run(WARM_UP).await;
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let requests = run(MEASURE).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    (requests as f64 / elapsed, cpu / requests as f64 * 1e6)
}

/// The baseline: a bare axum handler that verifies the DiscourseConnect HMAC and answers 302.
fn bare_server(port: u16, secret: String) {
    use axum::extract::RawQuery;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use hmac::Mac;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let secret = Arc::new(secret);
        let app = axum::Router::new()
            .route(
                "/sso",
                axum::routing::get(move |RawQuery(query): RawQuery| {
                    let secret = secret.clone();
                    async move {
                        let query = query.unwrap_or_default();
                        let mut sso = String::new();
                        let mut sig = String::new();
                        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                            match &*k {
                                "sso" => sso = v.into_owned(),
                                "sig" => sig = v.into_owned(),
                                _ => {}
                            }
                        }
                        let mut mac =
                            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                        mac.update(sso.as_bytes());
                        let ok = hex::decode(&sig)
                            .map(|s| mac.verify_slice(&s).is_ok())
                            .unwrap_or(false);
                        if ok {
                            (
                                StatusCode::FOUND,
                                [(header::LOCATION, "http://127.0.0.1:1/authorize?x=1")],
                            )
                                .into_response()
                        } else {
                            StatusCode::FORBIDDEN.into_response()
                        }
                    }
                }),
            )
            .route("/healthz", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare-server") {
        bare_server(args[i + 1].parse().unwrap(), args[i + 2].clone());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("flow: benchmark");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    idp.set_client(&IdpClient::new(
        "bridge",
        "bench-client-secret-0123456789",
        &format!("{base}/callback"),
    ))
    .await;
    forum.set_connect_url(url::Url::parse(&format!("{base}/sso")).unwrap());
    // BENCH_STORE_DIR puts the store elsewhere (e.g. /dev/shm to see what fsync costs).
    let store = match std::env::var_os("BENCH_STORE_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let bridge = Server(
        Command::new(env!("CARGO_BIN_EXE_discourse-oidc-bridge"))
            .arg("serve")
            .env_clear()
            .env("BRIDGE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("BRIDGE_SERVER__PUBLIC_URL", &base)
            .env("BRIDGE_DISCOURSE__URL", forum.base_url())
            .env("BRIDGE_DISCOURSE__CONNECT_SECRET", forum.sso_secret())
            .env("BRIDGE_OIDC__ISSUER", idp.issuer())
            .env("BRIDGE_OIDC__CLIENT_ID", "bridge")
            .env(
                "BRIDGE_OIDC__CLIENT_SECRET",
                "bench-client-secret-0123456789",
            )
            .env("BRIDGE_OIDC__SCOPES", "openid,email,profile,groups")
            .env(
                "BRIDGE_SESSION__SECRET",
                "bench-session-secret-0123456789abcdef",
            )
            .env("BRIDGE_STORE__PATH", store.path())
            .env("BRIDGE_LIMITS__LOGIN_PER_MINUTE", "100000000")
            .env("BRIDGE_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&format!("{base}/readyz")).await;

    let bare_port = free_port();
    let bare = Server(
        Command::new(std::env::current_exe().unwrap())
            .args(["--bare-server", &bare_port.to_string(), &forum.sso_secret()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&format!("http://127.0.0.1:{bare_port}/healthz")).await;

    let query = forum.signed_query(&[
        ("nonce", "cb68251eefb5211e58c00ff1395f0c0b"),
        ("return_sso_url", &forum.return_sso_url()),
    ]);
    let (bare_rps, bare_cpu) = load(
        &format!("http://127.0.0.1:{bare_port}/sso?{query}"),
        bare.0.id(),
    )
    .await;
    let (bridge_rps, bridge_cpu) = load(&format!("{base}/sso?{query}"), bridge.0.id()).await;
    // Run the baseline again so drift on a shared machine shows up.
    let (bare_rps2, bare_cpu2) = load(
        &format!("http://127.0.0.1:{bare_port}/sso?{query}"),
        bare.0.id(),
    )
    .await;

    println!("entry hop (/sso -> 302), {CONCURRENCY} keep-alive connections, {MEASURE:?} each");
    println!("  bare axum HMAC+302 : {bare_rps:>9.0} req/s  {bare_cpu:>7.1} µs CPU/req");
    println!("  bridge             : {bridge_rps:>9.0} req/s  {bridge_cpu:>7.1} µs CPU/req");
    println!("  bare axum (again)  : {bare_rps2:>9.0} req/s  {bare_cpu2:>7.1} µs CPU/req");
    let bare_mean = (bare_rps + bare_rps2) / 2.0;
    println!(
        "  ratio bridge/bare  : {:.2} of requests/s, {:.2}x the CPU per request",
        bridge_rps / bare_mean,
        bridge_cpu / ((bare_cpu + bare_cpu2) / 2.0)
    );

    // Full logins: the bridge's CPU for /sso + /callback (token exchange, ID token, userinfo,
    // mapping, signing, store), the IdP's time excluded (separate process).
    let cpu_before = cpu_seconds(bridge.0.id());
    let started = Instant::now();
    for i in 0..LOGINS {
        let browser = Browser::new();
        let nonce = format!("{i:032x}");
        let query = forum.signed_query(&[
            ("nonce", &nonce),
            ("return_sso_url", &forum.return_sso_url()),
        ]);
        let at_bridge = browser.get(format!("{base}/sso?{query}")).await;
        let authorize = browser.follow(&at_bridge);
        let callback = browser.login_at_idp(&authorize, "alice").await;
        let answer = browser.get(&callback).await;
        assert_eq!(answer.status(), reqwest::StatusCode::FOUND, "login {i}");
    }
    let wall = started.elapsed();
    let cpu = cpu_seconds(bridge.0.id()) - cpu_before;
    println!("full login ({LOGINS} logins through the real IdP, sequential)");
    println!(
        "  bridge CPU per login: {:.3} ms   (wall per login incl. IdP: {:.1} ms)",
        cpu / LOGINS as f64 * 1e3,
        wall.as_secs_f64() / LOGINS as f64 * 1e3
    );
}
