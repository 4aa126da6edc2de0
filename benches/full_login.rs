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
//! The baseline, in the same run and against the same IdP: a bare login server on the bridge's
//! stack (axum, tokio, reqwest; this binary re-executed with `--bare-login-server`). It has the
//! same HTTP shape and does nothing else: `/sso` checks the HMAC and redirects to the IdP with a
//! fixed state, nonce and PKCE challenge; `/callback` redeems the code at the token endpoint and
//! redirects to the forum with a fixed answer, parsing and checking nothing. Its CPU per login
//! is the floor of the stack: what serving two requests and making one to the IdP costs.
//! Rounds alternate between the bridge and the baseline.
//!
//! When a PostgreSQL server is installed (as for the tests), a third server runs in the same
//! rounds: the same bridge on the shared PostgreSQL store (a throwaway cluster; its own CPU is
//! not counted), and the run reports its CPU per login against the embedded store's
//! (`FULL_LOGIN_POSTGRES=false` leaves it out).
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

/// The bare login server's process and DiscourseConnect check.
#[path = "support/baseline.rs"]
mod baseline;
mod support;
use baseline::{BaselineProcess, check_signed_sso_query};

/// The same pinned-peer installer the end-to-end tests use (`npm ci` in tests/node when stale).
#[path = "../tests/e2e/support/node.rs"]
mod node;

/// The real OpenID Provider and one browser's login through it.
#[path = "support/browser.rs"]
mod browser;
use browser::{IdpProcess, LoginTimes, Sites, USERS, idp_config, one_login, user_name};

/// The throwaway PostgreSQL cluster the end-to-end tests use, for the shared-store run.
#[path = "../tests/e2e/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;
/// Its visible skip when no PostgreSQL server is installed.
#[path = "../tests/e2e/support/skip.rs"]
mod skip;

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderValue, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use discourse_oidc_bridge::discourse::connect::{ConnectSecret, Field, Payload};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use support::{
    BridgeProcess, BridgeSettings, CLIENT_SECRET, CONNECT_SECRET, CpuReading,
    clock_ticks_per_second, env_number, free_port, smoke_test_mode, ticks_to_seconds, work_dir,
};

/// The bridge's allocator, so that the baseline differs from the bridge only in what it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The baseline's client at the IdP (the bridge is `CLIENT_ID`).
const BARE_CLIENT_ID: &str = "bare-login";
/// The baseline's fixed PKCE verifier (43 characters, the shortest RFC 7636 allows).
const BARE_PKCE_VERIFIER: &str = "bare-login-fixed-pkce-verifier-0123456789ab";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--bare-login-server") {
        let (Some(port), Some(issuer), Some(forum_return)) = (
            args.get(at + 1).and_then(|p| p.parse().ok()),
            args.get(at + 2),
            args.get(at + 3),
        ) else {
            panic!("usage: full_login --bare-login-server PORT ISSUER FORUM_RETURN_URL");
        };
        run_bare_login_server(port, issuer, forum_return);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run());
}

// ---------------------------------------------------------------------------------------------
// The baseline: the same two requests and one token request on the same stack, nothing else.

/// What the bare login server needs, prepared once.
struct BareLogin {
    discourse_key: Hmac<Sha256>,
    /// The whole authorization request: fixed state, nonce and PKCE challenge.
    authorize: HeaderValue,
    token_endpoint: String,
    /// `Basic` credentials of [`BARE_CLIENT_ID`].
    authorization: HeaderValue,
    redirect_uri: String,
    /// The forum's return URL with a fixed signed answer.
    answer: HeaderValue,
    http: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct CodeParams {
    code: String,
}

fn run_bare_login_server(port: u16, issuer: &str, forum_return: &str) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async move {
            // The bridge's client settings (src/app.rs).
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(5))
                .no_proxy()
                .build()
                .expect("reqwest client");
            let discovery: Value = http
                .get(format!("{issuer}/.well-known/openid-configuration"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .expect("discovery")
                .json()
                .await
                .expect("discovery JSON");
            let endpoint = |name: &str| discovery[name].as_str().expect(name).to_owned();
            let redirect_uri = format!("http://127.0.0.1:{port}/callback");
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(BARE_PKCE_VERIFIER));
            let mut authorize = Url::parse(&endpoint("authorization_endpoint")).expect("auth URL");
            authorize
                .query_pairs_mut()
                .append_pair("response_type", "code")
                .append_pair("client_id", BARE_CLIENT_ID)
                .append_pair("state", "bare-login-fixed-state-0123")
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("scope", "openid email profile groups")
                .append_pair("nonce", "bare-login-fixed-nonce-0123");
            let answer = Payload::new()
                .set(Field::Nonce, "fixed")
                .set(Field::ExternalId, "fixed")
                .sign(&ConnectSecret::new(CONNECT_SECRET))
                .redirect_url(forum_return);
            let credentials = STANDARD.encode(format!("{BARE_CLIENT_ID}:{CLIENT_SECRET}"));
            let bare = BareLogin {
                discourse_key: Hmac::new_from_slice(CONNECT_SECRET.as_bytes()).expect("hmac key"),
                authorize: HeaderValue::from_str(authorize.as_str()).expect("header"),
                token_endpoint: endpoint("token_endpoint"),
                authorization: HeaderValue::from_str(&format!("Basic {credentials}"))
                    .expect("header"),
                redirect_uri,
                answer: HeaderValue::from_str(&answer).expect("header"),
                http,
            };
            let router = Router::new()
                .route("/sso", get(bare_sso))
                .route("/callback", get(bare_callback))
                .with_state(Arc::new(bare));
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind the bare login server");
            axum::serve(listener, router)
                .await
                .expect("bare login server");
        });
}

async fn bare_sso(State(bare): State<Arc<BareLogin>>, RawQuery(query): RawQuery) -> Response {
    match check_signed_sso_query(query.as_deref(), &bare.discourse_key) {
        Ok(()) => (
            AxumStatus::FOUND,
            [(header::LOCATION, bare.authorize.clone())],
        )
            .into_response(),
        Err(status) => status.into_response(),
    }
}

async fn bare_callback(
    State(bare): State<Arc<BareLogin>>,
    Query(params): Query<CodeParams>,
) -> Response {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params.code.as_str()),
        ("redirect_uri", bare.redirect_uri.as_str()),
        ("code_verifier", BARE_PKCE_VERIFIER),
    ];
    let tokens = bare
        .http
        .post(&bare.token_endpoint)
        .header(header::AUTHORIZATION, bare.authorization.clone())
        .header(header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await;
    match tokens {
        Ok(response) if response.status().is_success() => {
            // Read to the end, as the bridge does, but parse nothing.
            if response.bytes().await.is_err() {
                return AxumStatus::BAD_GATEWAY.into_response();
            }
            (AxumStatus::FOUND, [(header::LOCATION, bare.answer.clone())]).into_response()
        }
        _ => AxumStatus::BAD_GATEWAY.into_response(),
    }
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
        userinfo: if userinfo == "auto" {
            "\"auto\"".into()
        } else {
            userinfo.into()
        },
        ..BridgeSettings::loopback()
    };
    // The same bridge on the shared PostgreSQL store, when a server is installed here.
    let postgres = match std::env::var("FULL_LOGIN_POSTGRES").as_deref() {
        Ok("false") => None,
        _ => postgres::TestPostgres::start("full_login (PostgreSQL store)").await,
    };
    let pg_settings = match &postgres {
        Some(cluster) => Some(BridgeSettings {
            port: free_port(),
            store_url: Some(cluster.create_database("bench").await),
            ..settings.clone()
        }),
        None => None,
    };
    let bare_port = free_port();
    let bare_base = format!("http://127.0.0.1:{bare_port}");
    let bare_client = json!({
        "client_id": BARE_CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [format!("{bare_base}/callback")],
        "backchannel_logout_uri": format!("{bare_base}/backchannel-logout"),
        "backchannel_logout_session_required": true,
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let idp = IdpProcess::start(
        &idp_config(
            &std::iter::once(&settings)
                .chain(&pg_settings)
                .map(BridgeSettings::base_url)
                .collect::<Vec<_>>(),
            &[bare_client],
        ),
        &dir.path().join("idp.log"),
    );
    let settings = BridgeSettings {
        issuer: idp.issuer.clone(),
        ..settings
    };
    let forum_return = format!("{}/session/sso_login", settings.forum_url);
    let bridge = BridgeProcess::start(&settings, dir.path(), "bridge").await;
    let pg_bridge = match &pg_settings {
        Some(pg) => Some(
            BridgeProcess::start(
                &BridgeSettings {
                    issuer: idp.issuer.clone(),
                    ..pg.clone()
                },
                dir.path(),
                "bridge-pg",
            )
            .await,
        ),
        None => None,
    };
    let bare = BaselineProcess::start(
        &[
            "--bare-login-server",
            &bare_port.to_string(),
            &idp.issuer,
            &forum_return,
        ],
        bare_port,
        File::create(dir.path().join("bare.log"))
            .expect("bare server log file")
            .into(),
    );
    let mut servers = vec![
        Server {
            name: "bridge",
            pid: bridge.pid(),
            sites: Arc::new(Sites {
                server: settings.base_url(),
                forum_return: forum_return.clone(),
                secret: ConnectSecret::new(CONNECT_SECRET),
                check_answer: true,
            }),
        },
        Server {
            name: "bare",
            pid: bare.pid(),
            sites: Arc::new(Sites {
                server: bare_base,
                forum_return,
                secret: ConnectSecret::new(CONNECT_SECRET),
                check_answer: false,
            }),
        },
    ];
    if let (Some(pg), Some(process)) = (&pg_settings, &pg_bridge) {
        servers.push(Server {
            name: "bridge-pg",
            pid: process.pid(),
            sites: Arc::new(Sites {
                server: pg.base_url(),
                forum_return: format!("{}/session/sso_login", settings.forum_url),
                secret: ConnectSecret::new(CONNECT_SECRET),
                check_answer: true,
            }),
        });
    }

    println!(
        "full login: {rounds} rounds of {count} logins per server ({warmup} more as warm-up), \
         {concurrency} at a time, each a new browser; userinfo {userinfo}; IdP: npm \
         oidc-provider (node); CLK_TCK {hz}"
    );
    println!(
        "servers: bridge = the release binary (`serve`); bare = axum + reqwest with the same \
         HTTP shape and nothing else (the stack's floor)"
    );
    for server in &servers {
        logins(server.sites.clone(), warmup, concurrency).await;
    }

    let (idp_pid, own_pid) = (idp.pid(), std::process::id());
    let per_login_ms =
        |ticks: u64, logins: usize| ticks_to_seconds(ticks, hz) * 1e3 / logins as f64;
    println!();
    println!(
        "{:<6} {:<9} {:>7} {:>8} {:>16} {:>13} {:>18}",
        "round",
        "server",
        "logins",
        "seconds",
        "server ms/login",
        "IdP ms/login",
        "browsers ms/login"
    );
    let mut totals = vec![[0u64; 3]; servers.len()];
    let mut seconds = vec![0.0; servers.len()];
    let mut round_ms: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
    let mut sso = Vec::new();
    let mut callback = Vec::new();
    for round in 1..=rounds {
        for (index, server) in servers.iter().enumerate() {
            let pids = [server.pid, idp_pid, own_pid];
            let before = pids.map(CpuReading::of);
            let started = Instant::now();
            let times = logins(server.sites.clone(), count, concurrency).await;
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
                "{round:<6} {:<9} {count:>7} {elapsed:>8.1} {:>16.3} {:>13.3} {:>18.3}",
                server.name,
                per_login_ms(ticks[0], count),
                per_login_ms(ticks[1], count),
                per_login_ms(ticks[2], count),
            );
            round_ms[index].push(per_login_ms(ticks[0], count));
            for (total, t) in totals[index].iter_mut().zip(&ticks) {
                *total += t;
            }
            seconds[index] += elapsed;
            if index == 0 {
                sso.extend(times.iter().map(|t| t.sso_ms));
                callback.extend(times.iter().map(|t| t.callback_ms));
            }
        }
    }

    let all = count * rounds;
    for (index, server) in servers.iter().enumerate() {
        println!(
            "{:<6} {:<9} {all:>7} {:>8.1} {:>16.3} {:>13.3} {:>18.3}",
            "all",
            server.name,
            seconds[index],
            per_login_ms(totals[index][0], all),
            per_login_ms(totals[index][1], all),
            per_login_ms(totals[index][2], all),
        );
    }
    let bridge_ms = per_login_ms(totals[0][0], all);
    let bare_ms = per_login_ms(totals[1][0], all);
    println!();
    println!(
        "bridge: {all} logins at {:.0} logins/s; median wall time at the bridge: /sso {:.2} ms, \
         /callback {:.2} ms (the latter includes the IdP's token and userinfo answers)",
        all as f64 / seconds[0],
        median(&mut sso),
        median(&mut callback)
    );
    if servers.len() > 2 {
        let pg_ms = per_login_ms(totals[2][0], all);
        println!(
            "bridge on PostgreSQL: {all} logins at {:.0} logins/s, {pg_ms:.3} ms CPU per login, \
             {:.2}× the embedded store's {bridge_ms:.3} ms (target ≤ 1.3×)",
            all as f64 / seconds[2],
            pg_ms / bridge_ms
        );
    }
    if smoke {
        println!("test mode: every login was checked; the figures above are not measurements");
        return;
    }
    let range = |ms: &[f64]| {
        (
            ms.iter().copied().fold(f64::INFINITY, f64::min),
            ms.iter().copied().fold(0.0, f64::max),
        )
    };
    let (bridge_low, bridge_high) = range(&round_ms[0]);
    let (bare_low, bare_high) = range(&round_ms[1]);
    println!(
        "bare login server (the stack's floor): {bare_ms:.3} ms CPU per login (rounds \
         {bare_low:.3}–{bare_high:.3})"
    );
    println!(
        "bridge: {bridge_ms:.3} ms CPU per login (rounds {bridge_low:.3}–{bridge_high:.3}; one \
         clock tick is {:.3} ms of a round), {:.2}× the floor; the bridge's own work: {:.3} ms",
        per_login_ms(1, count),
        bridge_ms / bare_ms,
        bridge_ms - bare_ms
    );
    println!(
        "bridge CPU per login {bridge_ms:.3} ms  (target < 0.3 ms)  {}",
        if bridge_ms < 0.3 { "met" } else { "MISSED" }
    );
    drop((bridge, pg_bridge, bare, idp, postgres));
}

/// A login server under measurement.
struct Server {
    name: &'static str,
    pid: u32,
    sites: Arc<Sites>,
}

/// The median of some samples (sorts them in place).
fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    match samples.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => samples[n / 2],
        n => (samples[n / 2 - 1] + samples[n / 2]) / 2.0,
    }
}
