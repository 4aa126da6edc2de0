//! Load and slow-client benchmark: hundreds of clients at once against the bridge's release
//! binary, reporting errors, latency percentiles, and the bridge's memory (RSS) and open files
//! before, during and after each phase. Not a timed test: it measures, and its verdicts say
//! whether the robustness goals hold (no errors, flat memory, stalled sockets released).
//!
//! One bridge process (`serve`, real OpenID Provider `tests/node/op.mjs`, embedded store) runs
//! under an open-files limit of 1,024 (`prlimit`, as a small container would have) through two
//! identical rounds of two phases, then a slow-client phase:
//!
//! 1. **`/sso` flood**: `LOAD_CONNECTIONS` keep-alive connections send Discourse's signed
//!    request as fast as the bridge answers, for `LOAD_SECONDS`; each answer must be the 302 to
//!    the IdP.
//! 2. **Login mix**: as many browsers, each doing complete logins (signed request, the IdP's
//!    form, `/callback`, the signed answer checked as Discourse would), while one in sixteen
//!    connections probes instead: a forged signature at `/sso`, an unknown `state` at
//!    `/callback`. Each login must complete; each probe must be refused with a 4xx (429 once
//!    the per-address failure limit is reached), never a 5xx or a dropped connection.
//!
//! The RSS after the second round is compared with the RSS after the first: memory that grows
//! from one round to the next would be a leak (the first round fills the store's bounded page
//! cache and the allocator's pools).
//!
//! 3. **Slow clients**: `LOAD_SLOW_CLIENTS` sockets each send half a request head
//!    (`GET /healthz HTTP/1.1\r\nHost: x\r\n`) and then nothing, more than the connection cap
//!    and the open-files limit, while a probe asks `/healthz` on a fresh connection every
//!    100 ms. Each stalled socket must be closed by the bridge (header-read deadline), every
//!    probe must be answered, and the bridge's open files must stay under the limit.
//!
//! The rate limit per client address is lifted for logins (all load comes from 127.0.0.1) but
//! kept for refused requests, as in production. Run with `cargo bench --bench load`. Knobs
//! (environment): `LOAD_CONNECTIONS` (256), `LOAD_SECONDS` (60), `LOAD_SLOW_CLIENTS` (1100),
//! `LOAD_OPEN_FILES` (1024). Without `--bench` (as a test) it makes a short functional pass.

// A benchmark reports on stdout and stops at the first thing that is not as expected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod support;

/// The real OpenID Provider and one browser's login through it.
#[path = "support/browser.rs"]
mod browser;
/// The hand-written keep-alive client.
#[path = "support/http1.rs"]
mod http1;
/// The same pinned-peer installer the end-to-end tests use (`npm ci` in tests/node when stale).
#[path = "../tests/e2e/support/node.rs"]
mod node;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use discourse_oidc_bridge::discourse::connect::ConnectSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use browser::{IdpProcess, Sites, USERS, idp_config, one_login, user_name};
use http1::{HEAD_BUFFER, exchange, header_value, sso_requests};
use support::{
    BridgeProcess, BridgeSettings, CONNECT_SECRET, CpuReading, clock_ticks_per_second, env_number,
    smoke_test_mode, ticks_to_seconds, work_dir,
};

/// The bridge's default `server.header_read_timeout`: a stalled socket is closed after this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The bridge's default `server.max_connections`.
const MAX_CONNECTIONS: usize = 512;

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run());
}

// ---------------------------------------------------------------------------------------------
// The bridge's resources, from /proc (proc(5)).

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of `pid` (entries of `/proc/PID/fd`).
fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count() as u64)
}

/// The largest RSS and open-file count seen while a phase runs, sampled every 100 ms.
struct Peaks {
    stop: Arc<AtomicBool>,
    rss: Arc<AtomicU64>,
    files: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Peaks {
    fn watch(pid: u32) -> Peaks {
        let (stop, rss, files) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(rss_kib(pid))),
            Arc::new(AtomicU64::new(open_files(pid))),
        );
        let task = tokio::spawn({
            let (stop, rss, files) = (stop.clone(), rss.clone(), files.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    rss.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    files.fetch_max(open_files(pid), Ordering::Relaxed);
                }
            }
        });
        Peaks {
            stop,
            rss,
            files,
            task,
        }
    }

    /// Stops sampling; returns (peak RSS KiB, peak open files).
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler");
        (
            self.rss.load(Ordering::Relaxed),
            self.files.load(Ordering::Relaxed),
        )
    }
}

/// What one phase measured of the bridge itself (and of the IdP's CPU).
struct Resources {
    /// CPU seconds the bridge and the IdP used during the phase.
    bridge_cpu: f64,
    idp_cpu: f64,
    seconds: f64,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
    files_before: u64,
    files_peak: u64,
    files_after: u64,
}

impl Resources {
    fn print(&self) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "  CPU: bridge {:.2} cores, IdP {:.2} cores",
            self.bridge_cpu / self.seconds,
            self.idp_cpu / self.seconds
        );
        println!(
            "  bridge RSS: {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after; open files: {} \
             before, {} peak, {} after",
            mib(self.rss_before),
            mib(self.rss_peak),
            mib(self.rss_after),
            self.files_before,
            self.files_peak,
            self.files_after
        );
    }
}

/// Runs `phase` while watching the bridge, then lets it settle for a second before the
/// "after" reading (connections closing, the login writer's last batch).
async fn watched<T>(
    pid: u32,
    idp_pid: u32,
    phase: impl std::future::Future<Output = T>,
) -> (T, Resources) {
    let (rss_before, files_before) = (rss_kib(pid), open_files(pid));
    let cpu_before = [CpuReading::of(pid), CpuReading::of(idp_pid)];
    let started = Instant::now();
    let peaks = Peaks::watch(pid);
    let outcome = phase.await;
    let (rss_peak, files_peak) = peaks.finish().await;
    let seconds = started.elapsed().as_secs_f64();
    let hz = clock_ticks_per_second();
    let cpu = |index: usize, pid: u32| {
        ticks_to_seconds(CpuReading::of(pid).ticks_since(&cpu_before[index]), hz)
    };
    let (bridge_cpu, idp_cpu) = (cpu(0, pid), cpu(1, idp_pid));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resources = Resources {
        bridge_cpu,
        idp_cpu,
        seconds,
        rss_before,
        rss_peak,
        rss_after: rss_kib(pid),
        files_before,
        files_peak,
        files_after: open_files(pid),
    };
    (outcome, resources)
}

// ---------------------------------------------------------------------------------------------
// Latencies and errors.

/// Latencies in µs and errors by kind, gathered from many tasks.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
    /// Answers by status, for requests whose refusal is the expected answer.
    statuses: BTreeMap<u16, u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
    }

    fn error(&mut self, kind: impl Into<String>) {
        let mut kind: String = kind.into();
        kind.truncate(120);
        *self.errors.entry(kind).or_default() += 1;
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The `q` quantile (0..=1) of the latencies, in ms.
    fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let index = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[index] as f64 / 1000.0
    }

    fn print(&mut self, what: &str, seconds: f64) {
        let count = self.latencies_us.len();
        println!(
            "  {count} {what} in {seconds:.1} s ({:.0}/s); latency p50 {:.2} ms, p99 {:.2} ms, \
             max {:.2} ms; errors {}",
            count as f64 / seconds,
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(1.0),
            self.error_count()
        );
        for (kind, n) in &self.errors {
            println!("    error × {n}: {kind}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phases 1 and 3: the /sso flood.

async fn sso_connection(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    location_prefix: Arc<str>,
    first: usize,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut buffer = vec![0u8; HEAD_BUFFER];
    let mut next = first;
    'connect: while Instant::now() < deadline {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(stream) => stream,
            Err(e) => {
                tally.error(format!("connect: {e}"));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        while Instant::now() < deadline {
            let request = &requests[next % requests.len()];
            next += 1;
            let started = Instant::now();
            match exchange(&mut stream, request, &mut buffer).await {
                Ok(head)
                    if head.starts_with("HTTP/1.1 302 ")
                        && header_value(head, "location")
                            .is_some_and(|l| l.starts_with(&*location_prefix)) =>
                {
                    tally
                        .latencies_us
                        .push(started.elapsed().as_micros() as u64);
                }
                Ok(head) => {
                    tally.error(head.lines().next().unwrap_or_default().to_owned());
                }
                Err(e) => {
                    tally.error(e);
                    continue 'connect;
                }
            }
        }
    }
    tally
}

async fn sso_flood(
    addr: SocketAddr,
    forum_url: &str,
    location_prefix: &str,
    connections: usize,
    window: Duration,
) -> (Tally, f64) {
    let requests = Arc::new(sso_requests(addr.port(), forum_url, 256));
    let location_prefix: Arc<str> = Arc::from(location_prefix);
    let started = Instant::now();
    let deadline = started + window;
    let tasks: Vec<_> = (0..connections)
        .map(|index| {
            tokio::spawn(sso_connection(
                addr,
                requests.clone(),
                location_prefix.clone(),
                index,
                deadline,
            ))
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.expect("load task"));
    }
    (tally, started.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// Phase 2: complete logins, with probing connections among them.

/// Complete logins by new browsers until `deadline`. Returns the whole logins' wall times and
/// errors, and the wall times of the bridge's two requests (`/sso`, `/callback`) among them.
async fn browser_loop(sites: Arc<Sites>, first: usize, deadline: Instant) -> (Tally, Tally) {
    let (mut logins, mut at_bridge) = (Tally::default(), Tally::default());
    let mut next = first;
    while Instant::now() < deadline {
        let started = Instant::now();
        match one_login(&sites, &user_name(next % USERS)).await {
            Ok(times) => {
                logins
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64);
                for ms in [times.sso_ms, times.callback_ms] {
                    at_bridge.latencies_us.push((ms * 1000.0) as u64);
                }
            }
            Err(e) => logins.error(e),
        }
        next += 1;
    }
    (logins, at_bridge)
}

/// Forged requests on one keep-alive connection: a signature that does not verify at `/sso`
/// and an unknown `state` at `/callback`, alternately. A 4xx is the right answer.
async fn probing_connection(addr: SocketAddr, deadline: Instant) -> Tally {
    let host = format!("Host: 127.0.0.1:{}\r\n", addr.port());
    let requests = [
        format!(
            "GET /sso?sso=bm9uY2U9MQ%3D%3D&sig={} HTTP/1.1\r\n{host}\r\n",
            "0".repeat(64)
        ),
        format!("GET /callback?state=forged-state-0123456789&code=x HTTP/1.1\r\n{host}\r\n"),
    ];
    let mut tally = Tally::default();
    let mut buffer = vec![0u8; HEAD_BUFFER];
    let mut next = 0usize;
    'connect: while Instant::now() < deadline {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tally.error("connect failed");
            continue;
        };
        while Instant::now() < deadline {
            let request = requests[next % requests.len()].as_bytes();
            next += 1;
            let started = Instant::now();
            match exchange(&mut stream, request, &mut buffer).await {
                Ok(head) => {
                    let status: u16 = head
                        .get(9..12)
                        .and_then(|code| code.parse().ok())
                        .unwrap_or(0);
                    *tally.statuses.entry(status).or_default() += 1;
                    if (400..500).contains(&status) {
                        tally
                            .latencies_us
                            .push(started.elapsed().as_micros() as u64);
                    } else {
                        tally.error(format!("a forged request answered {status}"));
                    }
                }
                Err(e) => {
                    tally.error(e);
                    continue 'connect;
                }
            }
        }
    }
    tally
}

async fn login_mix(
    sites: Arc<Sites>,
    addr: SocketAddr,
    connections: usize,
    window: Duration,
) -> (Tally, Tally, Tally, f64) {
    let probers = (connections / 16).max(1);
    let browsers = connections.saturating_sub(probers).max(1);
    let started = Instant::now();
    let deadline = started + window;
    let logins: Vec<_> = (0..browsers)
        .map(|index| tokio::spawn(browser_loop(sites.clone(), index, deadline)))
        .collect();
    let probes: Vec<_> = (0..probers)
        .map(|_| tokio::spawn(probing_connection(addr, deadline)))
        .collect();
    let (mut login_tally, mut bridge_tally, mut probe_tally) =
        (Tally::default(), Tally::default(), Tally::default());
    for task in logins {
        let (logins, at_bridge) = task.await.expect("browser task");
        login_tally.merge(logins);
        bridge_tally.merge(at_bridge);
    }
    for task in probes {
        probe_tally.merge(task.await.expect("probe task"));
    }
    (
        login_tally,
        bridge_tally,
        probe_tally,
        started.elapsed().as_secs_f64(),
    )
}

// ---------------------------------------------------------------------------------------------
// Phase 4: stalled sockets.

/// What the stalled sockets and the health probe saw.
struct SlowOutcome {
    /// Sockets that connected and sent their half request.
    stalled: usize,
    /// Sockets that never connected within 10 s (the kernel's accept queue was full).
    not_connected: usize,
    /// Seconds from sending to the bridge closing the connection, per stalled socket.
    closed_after: Vec<f64>,
    /// Stalled sockets still open at the end.
    never_closed: usize,
    /// Health probes and their outcome.
    health: Tally,
    /// Seconds the phase took.
    seconds: f64,
}

/// Sends half a request head and waits for the bridge to close the connection; returns the
/// seconds that took, or `None` if it never connected or was still open at `give_up`.
async fn stalled_socket(addr: SocketAddr, give_up: Instant) -> (bool, Option<f64>) {
    let connect = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await;
    let Ok(Ok(mut stream)) = connect else {
        return (false, None);
    };
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .is_err()
    {
        return (false, None);
    }
    let sent = Instant::now();
    let mut byte = [0u8; 512];
    let wait = give_up.saturating_duration_since(Instant::now());
    match tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    {
        Ok(()) => (true, Some(sent.elapsed().as_secs_f64())),
        Err(_) => (true, None),
    }
}

async fn health_probe(addr: SocketAddr, stop: Arc<AtomicBool>) -> Tally {
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    let mut tally = Tally::default();
    let mut buffer = vec![0u8; HEAD_BUFFER];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let started = Instant::now();
        let answer = tokio::time::timeout(HEADER_READ_TIMEOUT * 4, async {
            let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let head = exchange(&mut stream, request.as_bytes(), &mut buffer).await?;
            Ok::<bool, String>(head.starts_with("HTTP/1.1 200 "))
        })
        .await;
        match answer {
            Ok(Ok(true)) => tally
                .latencies_us
                .push(started.elapsed().as_micros() as u64),
            Ok(Ok(false)) => tally.error("/healthz did not answer 200"),
            Ok(Err(e)) => tally.error(e),
            Err(_) => tally.error("/healthz gave no answer within 20 s"),
        }
    }
    tally
}

async fn slow_clients(addr: SocketAddr, count: usize) -> SlowOutcome {
    // Every wave of `MAX_CONNECTIONS` stalled sockets is released after the deadline; allow
    // all waves twice over before calling a socket held.
    let waves = count.div_ceil(MAX_CONNECTIONS) as u32 + 1;
    let started = Instant::now();
    let give_up = started + HEADER_READ_TIMEOUT * waves * 2;
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(health_probe(addr, stop.clone()));
    let sockets: Vec<_> = (0..count)
        .map(|_| tokio::spawn(stalled_socket(addr, give_up)))
        .collect();
    let mut outcome = SlowOutcome {
        stalled: 0,
        not_connected: 0,
        closed_after: Vec::new(),
        never_closed: 0,
        health: Tally::default(),
        seconds: 0.0,
    };
    for socket in sockets {
        match socket.await.expect("socket task") {
            (false, _) => outcome.not_connected += 1,
            (true, Some(seconds)) => {
                outcome.stalled += 1;
                outcome.closed_after.push(seconds);
            }
            (true, None) => {
                outcome.stalled += 1;
                outcome.never_closed += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    outcome.health = probe.await.expect("probe task");
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome
}

// ---------------------------------------------------------------------------------------------

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

async fn run() {
    let smoke = smoke_test_mode();
    if smoke {
        println!("load: test mode (no --bench): short phases, nothing is measured");
    }
    let connections: usize = env_number("LOAD_CONNECTIONS", if smoke { 8 } else { 256 });
    let window =
        Duration::from_secs_f64(env_number("LOAD_SECONDS", if smoke { 1.0 } else { 60.0 }));
    let slow_count: usize = env_number("LOAD_SLOW_CLIENTS", if smoke { 40 } else { 1100 });
    let open_files_limit: u64 = env_number("LOAD_OPEN_FILES", 1024);

    let dir = work_dir("load-");
    let settings = BridgeSettings::loopback();
    let idp = IdpProcess::start(
        &idp_config(&[settings.base_url()], &[]),
        &dir.path().join("idp.log"),
    );
    let settings = BridgeSettings {
        issuer: idp.issuer.clone(),
        ..settings
    };
    let bridge = BridgeProcess::start(&settings, dir.path(), "bridge").await;
    let (pid, idp_pid) = (bridge.pid(), idp.pid());
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={open_files_limit}:{open_files_limit}"))
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        limited,
        "prlimit (util-linux) must be able to limit the bridge's open files"
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], settings.port));
    let forum_return = format!("{}/session/sso_login", settings.forum_url);
    let idp_auth = format!("{}/auth?", idp.issuer);
    let sites = Arc::new(Sites {
        server: settings.base_url(),
        forum_return,
        secret: ConnectSecret::new(CONNECT_SECRET),
        check_answer: true,
    });
    // Warm-up: a few logins, so the first phase does not measure discovery or key fetches.
    for index in 0..4 {
        one_login(&sites, &user_name(index))
            .await
            .unwrap_or_else(|e| panic!("a warm-up login failed: {e}"));
    }
    println!(
        "load: {connections} connections, {:.0} s per phase; {slow_count} stalled sockets; the \
         bridge runs with {open_files_limit} open files at most, header_read_timeout {} s, \
         max_connections {MAX_CONNECTIONS}; IdP: npm oidc-provider (node)",
        window.as_secs_f64(),
        HEADER_READ_TIMEOUT.as_secs()
    );

    let flood = || sso_flood(addr, &settings.forum_url, &idp_auth, connections, window);
    let probers = (connections / 16).max(1);
    // Two identical rounds: memory after the second is compared with memory after the first.
    let mut errors = 0;
    let mut rss_after_round = Vec::new();
    for round in 1..=2 {
        println!("\nround {round}, /sso flood");
        let ((mut flood_tally, seconds), resources) = watched(pid, idp_pid, flood()).await;
        flood_tally.print("signed requests answered with the 302 to the IdP", seconds);
        resources.print();

        println!(
            "\nround {round}, login mix ({} browsers, {probers} probing connections)",
            connections - probers,
        );
        let ((mut logins, mut at_bridge, mut probes, seconds), resources) = watched(
            pid,
            idp_pid,
            login_mix(sites.clone(), addr, connections, window),
        )
        .await;
        logins.print("complete logins", seconds);
        at_bridge.print("of them at the bridge (/sso and /callback)", seconds);
        probes.print("forged requests refused", seconds);
        println!("  forged requests by status: {:?}", probes.statuses);
        resources.print();
        errors += flood_tally.error_count() + logins.error_count() + probes.error_count();
        rss_after_round.push(resources.rss_after);
    }

    println!("\nslow clients");
    let (mut slow, slow_resources) = watched(pid, idp_pid, slow_clients(addr, slow_count)).await;
    let mut closed = slow.closed_after.clone();
    closed.sort_by(f64::total_cmp);
    println!(
        "  {} stalled sockets ({} could not connect); closed by the bridge: {}, after {:.1}–{:.1} s; \
         still open at the end: {}",
        slow.stalled,
        slow.not_connected,
        closed.len(),
        closed.first().copied().unwrap_or(f64::NAN),
        closed.last().copied().unwrap_or(f64::NAN),
        slow.never_closed
    );
    slow.health
        .print("health probes answered 200", slow.seconds);
    slow_resources.print();
    let exhausted = bridge.log().matches("Too many open files").count();
    println!("  \"Too many open files\" in the bridge's log: {exhausted}");

    if smoke {
        println!("\ntest mode: every answer was checked; the figures above are not measurements");
    }
    println!();
    println!(
        "errors in the load phases: {errors}  (goal 0)  {}",
        verdict(errors == 0)
    );
    let growth = rss_after_round[1] as f64 / rss_after_round[0].max(1) as f64;
    println!(
        "RSS after the second round / after the first: {growth:.2}  (goal ≤ 1.10, flat)  {}",
        verdict(growth <= 1.10)
    );
    let released = slow.never_closed == 0 && slow.health.error_count() == 0 && exhausted == 0;
    println!(
        "slow clients: every stalled socket closed, every health probe answered, no exhausted \
         open files  {}",
        verdict(released)
    );
    drop((bridge, idp));
}
