//! Entry-hop benchmark: Discourse's signed request at `GET /sso` answered with a 302 to the
//! IdP's authorization endpoint, served by the bridge's release binary, against a bare axum
//! handler that only checks the DiscourseConnect HMAC and answers 302, in the same run.
//!
//! Each server is a separate process, so the load generator's CPU is never counted: the bridge
//! runs `serve` with a generated configuration whose issuer is a small static discovery + JWKS
//! server inside this process (the entry hop never calls the IdP once discovery is done); the
//! bare handler runs by re-executing this binary with `--bare-server PORT`. The load comes from
//! this process over a fixed number of keep-alive loopback connections, for a fixed time per
//! round, rounds alternating between the servers. Throughput is requests per second; cost is the
//! server's user + system CPU time from `/proc/PID/stat` divided by the requests it answered.
//!
//! Run with `cargo bench --bench entry_hop`. Knobs (environment): `ENTRY_HOP_CONNECTIONS` (32),
//! `ENTRY_HOP_SECONDS` (5), `ENTRY_HOP_WARMUP_SECONDS` (1), `ENTRY_HOP_ROUNDS` (3).

// A benchmark reports on stdout and stops at the first thing that is not as expected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

/// The bare handler's process and DiscourseConnect check.
#[path = "support/baseline.rs"]
mod baseline;
/// The hand-written keep-alive client.
#[path = "support/http1.rs"]
mod http1;
mod support;

use baseline::{BaselineProcess, check_signed_sso_query};
use http1::{HEAD_BUFFER, exchange, header_value, sso_requests};

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use openidconnect::core::CoreRsaPrivateSigningKey;
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use serde_json::json;
use sha2::Sha256;
use tokio::net::TcpStream;

use support::{
    BridgeProcess, BridgeSettings, CONNECT_SECRET, CpuReading, clock_ticks_per_second, env_number,
    free_port, smoke_test_mode, ticks_to_seconds, work_dir,
};

/// Where the bare handler redirects: an authorization request of the same shape and size as
/// the bridge's (state, nonce and PKCE challenge fixed, since it makes none).
const BARE_LOCATION: &str = "http://127.0.0.1:9/auth?response_type=code&client_id=bridge\
    &state=h7Gq2LxV9pRk0sWm3NbE4A&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
    &code_challenge_method=S256&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback\
    &scope=openid+email+profile+groups&nonce=Wq9T3xY0bS5vJ2mN8kL1cA";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--bare-server") {
        let port: u16 = args
            .get(at + 1)
            .and_then(|p| p.parse().ok())
            .expect("usage: entry_hop --bare-server PORT");
        run_bare_server(port);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run());
}

// ---------------------------------------------------------------------------------------------
// The baseline: a bare axum handler, HMAC check and 302, with the bridge's runtime set-up.

fn run_bare_server(port: u16) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async move {
            let key = Hmac::<Sha256>::new_from_slice(CONNECT_SECRET.as_bytes()).expect("hmac key");
            let router = Router::new()
                .route("/sso", get(bare_sso))
                .with_state(Arc::new(key));
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind bare server");
            axum::serve(listener, router).await.expect("bare server");
        });
}

async fn bare_sso(State(key): State<Arc<Hmac<Sha256>>>, RawQuery(query): RawQuery) -> Response {
    match check_signed_sso_query(query.as_deref(), &key) {
        Ok(()) => (StatusCode::FOUND, [(header::LOCATION, BARE_LOCATION)]).into_response(),
        Err(status) => status.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// A static IdP: discovery and JWKS only, which is all the bridge needs before the entry hop.

async fn start_static_idp() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind static IdP");
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
    let pem = private.to_pkcs1_pem(LineEnding::LF).expect("PEM");
    let signing =
        CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new("bench-rs256".into())))
            .expect("signing key");
    let jwks = json!({ "keys": [signing.as_verification_key()] });
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/me"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/session/end"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
    });
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || std::future::ready(axum::Json(discovery.clone()))),
        )
        .route(
            "/jwks",
            get(move || std::future::ready(axum::Json(jwks.clone()))),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    issuer
}

// ---------------------------------------------------------------------------------------------
// The load generator: HTTP/1.1 keep-alive, written by hand (support/http1.rs).

/// One server under test.
struct Target {
    label: &'static str,
    addr: SocketAddr,
    pid: u32,
    /// Complete HTTP requests, each with another Discourse nonce.
    requests: Arc<Vec<Vec<u8>>>,
    /// Every answer must be a 302 whose Location starts with this.
    location_prefix: Arc<str>,
}

/// Sends requests over one connection until `stop`, counting answered ones.
async fn connection_loop(
    target_addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    location_prefix: Arc<str>,
    first: usize,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(target_addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; HEAD_BUFFER];
    let mut next = first;
    while !stop.load(Ordering::Relaxed) {
        let request = &requests[next % requests.len()];
        next += 1;
        let head = exchange(&mut stream, request, &mut buffer).await?;
        if !head.starts_with("HTTP/1.1 302 ") {
            return Err(format!("expected a 302, got: {head}"));
        }
        match header_value(head, "location") {
            Some(location) if location.starts_with(&*location_prefix) => {}
            other => return Err(format!("unexpected Location {other:?}")),
        }
        answered.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The result of one measured round on one server.
#[derive(Debug, Clone, Copy)]
struct Round {
    requests: u64,
    seconds: f64,
    server_ticks: u64,
    client_ticks: u64,
}

async fn measure(target: &Target, connections: usize, warmup: Duration, window: Duration) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..connections)
        .map(|index| {
            tokio::spawn(connection_loop(
                target.addr,
                target.requests.clone(),
                target.location_prefix.clone(),
                index,
                stop.clone(),
                answered.clone(),
            ))
        })
        .collect();
    let own_pid = std::process::id();
    tokio::time::sleep(warmup).await;
    let (start_count, start_server, start_client, started) = (
        answered.load(Ordering::Relaxed),
        CpuReading::of(target.pid),
        CpuReading::of(own_pid),
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let (end_count, end_server, end_client, seconds) = (
        answered.load(Ordering::Relaxed),
        CpuReading::of(target.pid),
        CpuReading::of(own_pid),
        started.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        if let Err(e) = worker.await.expect("load task") {
            panic!("{}: {e}", target.label);
        }
    }
    Round {
        requests: end_count - start_count,
        seconds,
        server_ticks: end_server.ticks_since(&start_server),
        client_ticks: end_client.ticks_since(&start_client),
    }
}

/// Sums of several rounds on one server.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    requests: u64,
    seconds: f64,
    server_ticks: u64,
    client_ticks: u64,
}

impl Totals {
    fn add(&mut self, round: Round) {
        self.requests += round.requests;
        self.seconds += round.seconds;
        self.server_ticks += round.server_ticks;
        self.client_ticks += round.client_ticks;
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn server_us_per_request(&self, hz: u64) -> f64 {
        ticks_to_seconds(self.server_ticks, hz) * 1e6 / self.requests as f64
    }

    fn client_us_per_request(&self, hz: u64) -> f64 {
        ticks_to_seconds(self.client_ticks, hz) * 1e6 / self.requests as f64
    }

    fn server_cores(&self, hz: u64) -> f64 {
        ticks_to_seconds(self.server_ticks, hz) / self.seconds
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

async fn run() {
    let smoke = smoke_test_mode();
    if smoke {
        println!("entry hop: test mode (no --bench): one short round, nothing is measured");
    }
    let connections: usize = env_number("ENTRY_HOP_CONNECTIONS", if smoke { 4 } else { 32 });
    let window = Duration::from_secs_f64(env_number(
        "ENTRY_HOP_SECONDS",
        if smoke { 0.3 } else { 5.0 },
    ));
    let warmup = Duration::from_secs_f64(env_number(
        "ENTRY_HOP_WARMUP_SECONDS",
        if smoke { 0.1 } else { 1.0 },
    ));
    let rounds: usize = env_number("ENTRY_HOP_ROUNDS", if smoke { 1 } else { 3 });
    let hz = clock_ticks_per_second();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "entry hop: {connections} keep-alive connections, {rounds} rounds of {:.0} s (+{:.0} s \
         warm-up) per server; {cores} cores ({}); CLK_TCK {hz}",
        window.as_secs_f64(),
        warmup.as_secs_f64(),
        cpu_model()
    );

    let dir = work_dir("entry-hop-");
    let issuer = start_static_idp().await;
    let forum_url = format!("http://127.0.0.1:{}", free_port());

    let bare_port = free_port();
    let bare = BaselineProcess::start(
        &["--bare-server", &bare_port.to_string()],
        bare_port,
        Stdio::inherit(),
    );
    let bridge_settings = |log_level: &str| BridgeSettings {
        issuer: issuer.clone(),
        forum_url: forum_url.clone(),
        log_level: log_level.to_owned(),
        relay: false,
        ..BridgeSettings::loopback()
    };
    let bridge_info = bridge_settings("info");
    let bridge = BridgeProcess::start(&bridge_info, dir.path(), "bridge-info").await;
    let bridge_warn_settings = bridge_settings("warn");
    let bridge_warn = BridgeProcess::start(&bridge_warn_settings, dir.path(), "bridge-warn").await;

    let target = |label, port: u16, pid, location_prefix: &str| Target {
        label,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        pid,
        requests: Arc::new(sso_requests(port, &forum_url, 64)),
        location_prefix: Arc::from(location_prefix),
    };
    let idp_auth = format!("{issuer}/auth?");
    let targets = [
        target(
            "bare axum: HMAC check + 302",
            bare_port,
            bare.pid(),
            "http://127.0.0.1:9/auth?",
        ),
        target(
            "bridge /sso (log level info)",
            bridge_info.port,
            bridge.pid(),
            &idp_auth,
        ),
        target(
            "bridge /sso (log level warn)",
            bridge_warn_settings.port,
            bridge_warn.pid(),
            &idp_auth,
        ),
    ];

    let mut totals = vec![Totals::default(); targets.len()];
    println!();
    println!(
        "{:<5} {:<30} {:>10} {:>14} {:>12} {:>16}",
        "round", "server", "req/s", "server µs/req", "server cores", "load gen µs/req"
    );
    for round in 1..=rounds {
        for (target, total) in targets.iter().zip(totals.iter_mut()) {
            let result = measure(target, connections, warmup, window).await;
            total.add(result);
            let mut one = Totals::default();
            one.add(result);
            println!(
                "{:<5} {:<30} {:>10.0} {:>14.1} {:>12.2} {:>16.1}",
                round,
                target.label,
                one.rps(),
                one.server_us_per_request(hz),
                one.server_cores(hz),
                one.client_us_per_request(hz),
            );
        }
    }

    println!();
    println!("all rounds:");
    println!(
        "      {:<30} {:>10} {:>14} {:>12} {:>16}",
        "server", "req/s", "server µs/req", "server cores", "load gen µs/req"
    );
    for (target, total) in targets.iter().zip(&totals) {
        println!(
            "      {:<30} {:>10.0} {:>14.1} {:>12.2} {:>16.1}",
            target.label,
            total.rps(),
            total.server_us_per_request(hz),
            total.server_cores(hz),
            total.client_us_per_request(hz),
        );
    }
    if smoke {
        println!("test mode: every answer was checked; the figures above are not measurements");
        return;
    }
    let (bare_total, bridge_total, quiet_total) = (totals[0], totals[1], totals[2]);
    let ratio = bridge_total.rps() / bare_total.rps();
    let bridge_us = bridge_total.server_us_per_request(hz);
    let cpu_ratio = bare_total.server_us_per_request(hz) / bridge_us;
    println!();
    println!(
        "bridge / bare requests/s: {:.0}%  (target ≥ 50%)  {}",
        ratio * 100.0,
        verdict(ratio >= 0.5)
    );
    println!(
        "bridge CPU per entry: {bridge_us:.1} µs  (target < 25 µs)  {}",
        verdict(bridge_us < 25.0)
    );
    println!(
        "bare / bridge CPU per request: {:.0}%  (the throughput ratio if each server had the \
         cores to itself)",
        cpu_ratio * 100.0
    );
    println!(
        "with log level warn: {:.1} µs per entry, {:.0}% of the bare handler's requests/s",
        quiet_total.server_us_per_request(hz),
        quiet_total.rps() / bare_total.rps() * 100.0
    );
    drop((bare, bridge, bridge_warn));
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
