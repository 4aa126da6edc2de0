//! Shared pieces of the benchmarks: CPU accounting of another process from `/proc/PID/stat`
//! (proc(5)), free loopback ports, the bridge's release binary started as a separate `serve`
//! process with a generated configuration. `entry_hop`, `full_login` and `load` use it; `codec`
//! and `store` include only `cpu_time.rs` (criterion's CPU-time measurement). The bare baseline
//! servers are in `baseline.rs`, the IdP and its browser in `browser.rs`, the hand-written
//! keep-alive client in `http1.rs`, each included by `#[path]` where it is used.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Secrets shared by the benchmarks and the servers they start (loopback only, throwaway).
pub const CONNECT_SECRET: &str = "discourse-connect-secret-for-benchmarks";
pub const CLIENT_ID: &str = "bridge";
pub const CLIENT_SECRET: &str = "bridge-client-secret-for-benchmarks-01";
pub const SESSION_SECRET: &str = "session-secret-for-benchmarks-0123456789abcdef";

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; 100 on Linux when the
/// command is missing).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

/// User + system CPU time a process has used so far, all its threads (live and exited)
/// included, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) overall are 12 and 13 after the name.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// A CPU-time reading of one process.
#[derive(Debug, Clone, Copy)]
pub struct CpuReading {
    ticks: u64,
}

impl CpuReading {
    pub fn of(pid: u32) -> Self {
        Self {
            ticks: cpu_ticks(pid),
        }
    }

    /// Ticks spent since `earlier`.
    pub fn ticks_since(&self, earlier: &CpuReading) -> u64 {
        self.ticks.saturating_sub(earlier.ticks)
    }
}

/// Converts clock ticks to seconds.
pub fn ticks_to_seconds(ticks: u64, ticks_per_second: u64) -> f64 {
    ticks as f64 / ticks_per_second as f64
}

/// A loopback port nobody listens on right now (the socket is closed again, so another process
/// could take it in between; good enough on a benchmark machine).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// The bridge binary: `BRIDGE_BIN` if set, else the one cargo built for this benchmark (the
/// `bench` profile, which is the release profile).
pub fn bridge_binary() -> PathBuf {
    std::env::var_os("BRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_discourse-oidc-bridge")))
}

/// What differs between the bridges the benchmarks start.
#[derive(Debug, Clone)]
pub struct BridgeSettings {
    pub port: u16,
    pub issuer: String,
    pub forum_url: String,
    /// `[log] level`.
    pub log_level: String,
    /// Adds an admin API key, which switches the logout relay worker on as in production.
    pub relay: bool,
    /// `[oidc] userinfo` as a TOML value: `"auto"` (the default), `true` or `false`.
    pub userinfo: String,
    /// `[store] url`: the shared PostgreSQL store instead of the embedded one.
    pub store_url: Option<String>,
}

impl BridgeSettings {
    /// A bridge on a free loopback port with the logout relay on, `[log] level = "info"` and
    /// `userinfo = "auto"`, for a forum on another free port; the issuer is filled in once the
    /// IdP runs.
    pub fn loopback() -> BridgeSettings {
        BridgeSettings {
            port: free_port(),
            issuer: String::new(),
            forum_url: format!("http://127.0.0.1:{}", free_port()),
            log_level: "info".into(),
            relay: true,
            userinfo: "\"auto\"".into(),
            store_url: None,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The configuration file, written the way an operator would.
    pub fn toml(&self, store_dir: &Path) -> String {
        let relay = if self.relay {
            "api_key = \"bench-api-key-0123456789\"\napi_username = \"system\"\n"
        } else {
            ""
        };
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
public_url = "{base}"
metrics_public = true

[discourse]
url = "{forum}"
connect_secret = "{CONNECT_SECRET}"
{relay}
[oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
scopes = ["openid", "email", "profile", "groups"]
userinfo = {userinfo}
http_timeout = "5s"

[session]
secret = "{SESSION_SECRET}"

[store]
path = "{store}"
{store_url}

[log]
level = "{level}"

# All load comes from 127.0.0.1: a per-address rate limit must not be what is measured.
[limits]
login_per_minute = 4294967295
"#,
            port = self.port,
            base = self.base_url(),
            forum = self.forum_url,
            issuer = self.issuer,
            store = store_dir.display(),
            store_url = self
                .store_url
                .as_ref()
                .map(|url| format!("url = \"{url}\""))
                .unwrap_or_default(),
            level = self.log_level,
            userinfo = self.userinfo,
        )
    }
}

/// A bridge running as its own process (`serve`); killed when dropped. Its log goes to a file
/// next to its configuration.
#[derive(Debug)]
pub struct BridgeProcess {
    child: Child,
    pub base_url: String,
    log_path: PathBuf,
}

impl BridgeProcess {
    /// Writes the configuration into `dir`, starts the binary and waits for `/readyz` (discovery
    /// done).
    pub async fn start(settings: &BridgeSettings, dir: &Path, name: &str) -> BridgeProcess {
        let config_path = dir.join(format!("{name}.toml"));
        let store_dir = dir.join(format!("{name}-store"));
        std::fs::write(&config_path, settings.toml(&store_dir)).expect("write bridge config");
        let log_path = dir.join(format!("{name}.log"));
        let log = File::create(&log_path).expect("bridge log file");
        let mut command = Command::new(bridge_binary());
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log);
        // The configuration file alone decides: no RUST_LOG or BRIDGE_* from the caller.
        command.env_remove("RUST_LOG");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BRIDGE_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bridge_binary().display()));
        let bridge = BridgeProcess {
            child,
            base_url: settings.base_url(),
            log_path,
        };
        bridge.wait_ready().await;
        bridge
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The bridge's log so far (for failures).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        let url = format!("{}/readyz", self.base_url);
        for _ in 0..200 {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the bridge never became ready; its log:\n{}", self.log());
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new temporary directory for configuration, store and logs.
pub fn work_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temporary directory")
}

/// True when cargo runs this benchmark as a test (`cargo test --benches` passes no `--bench`):
/// the process benchmarks then make a short functional pass instead of measuring, the way
/// criterion runs each benchmark once.
pub fn smoke_test_mode() -> bool {
    !std::env::args().any(|arg| arg == "--bench")
}

/// Reads a duration in seconds or a count from the environment, with a default.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
