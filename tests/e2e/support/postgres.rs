//! A throwaway PostgreSQL cluster for the tests: `initdb` into a temporary directory, `postgres`
//! on a free loopback port, stopped (and the directory removed) when dropped.
//!
//! Uses Debian's server binaries (`/usr/lib/postgresql/<version>/bin`, or the directory in
//! `BRIDGE_TEST_PG_BIN`). PostgreSQL refuses to run as root, so as root the cluster runs as the
//! `postgres` system user (or `nobody`) through `setpriv`. When no server is installed,
//! [`TestPostgres::start`] reports a visible skip and returns `None`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::skip::skip;

/// How to get the server when it is missing.
const HOW_TO_GET: &str = "install Debian's postgresql package (apt-get install postgresql) or set \
                          BRIDGE_TEST_PG_BIN to a directory holding initdb and postgres";

/// The database role the tests connect as (trust authentication on loopback).
pub const ROLE: &str = "bridge";

/// A running throwaway cluster.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `(uid, gid)` to run as (when the tests run as root).
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
    /// Extra `-c` settings for the server (TLS).
    settings: Vec<String>,
}

impl TestPostgres {
    /// Like [`TestPostgres::start`], with TLS on: a throwaway CA (made with the `openssl`
    /// command) signs the server's certificate for `127.0.0.1` and `localhost`. Returns the
    /// cluster and the CA's PEM file.
    pub async fn start_with_tls(test: &str) -> Option<(TestPostgres, PathBuf)> {
        let mut cluster = Self::start(test).await?;
        cluster.stop();
        let tls = cluster.dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        std::fs::write(
            tls.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        for args in [
            "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
             -subj /CN=bridge-test-ca -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign",
            "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
             -days 2 -extfile server.ext",
        ] {
            let made = Command::new("openssl")
                .args(args.split_whitespace())
                .current_dir(&tls)
                .output()
                .unwrap();
            assert!(
                made.status.success(),
                "openssl {args}: {}",
                String::from_utf8_lossy(&made.stderr)
            );
        }
        {
            use std::os::unix::fs::PermissionsExt as _;
            for file in ["server.key", "server.pem"] {
                let path = tls.join(file);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                if let Some((uid, gid)) = cluster.run_as {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
                }
            }
            std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        cluster.settings = vec![
            "ssl=on".to_owned(),
            format!("ssl_cert_file={}", tls.join("server.pem").display()),
            format!("ssl_key_file={}", tls.join("server.key").display()),
        ];
        cluster.start_server().await;
        Some((cluster, tls.join("ca.pem")))
    }

    /// Starts a fresh cluster, or reports `test` as skipped (and returns `None`) when the
    /// server is not installed (a failure instead when `BRIDGE_TEST_REQUIRE` names postgres).
    pub async fn start(test: &str) -> Option<TestPostgres> {
        let Some(bin) = server_binaries() else {
            skip(test, "postgres", HOW_TO_GET);
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("bridge-pg-")
            .tempdir()
            .unwrap();
        let run_as = if is_root() {
            Some(unprivileged_user())
        } else {
            None
        };
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if let Some((uid, gid)) = run_as {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
        }
        let mut cluster = TestPostgres {
            dir,
            bin,
            port: free_port(),
            run_as,
            child: None,
            settings: Vec::new(),
        };
        let initdb = cluster
            .command("initdb")
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                ROLE,
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        cluster.start_server().await;
        Some(cluster)
    }

    /// `postgres://bridge@127.0.0.1:PORT/<database>?sslmode=disable`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let client = self.connect("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        self.url(name)
    }

    /// A plain connection to `database` (for the tests' own queries).
    pub async fn connect(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user={ROLE} dbname={database}",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL: {e}"));
        tokio::spawn(connection);
        client
    }

    /// Stops the server (fast shutdown: sessions are ended, committed data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "INT");
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.start_server().await;
    }

    async fn start_server(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        let data = self.dir.path().join("data");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .args(
                self.settings
                    .iter()
                    .flat_map(|setting| ["-c", setting.as_str()]),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..300 {
            let connected = tokio_postgres::connect(
                &format!(
                    "host=127.0.0.1 port={} user={ROLE} dbname=postgres connect_timeout=2",
                    self.port
                ),
                tokio_postgres::NoTls,
            )
            .await;
            if connected.is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("postgres exited ({status}): {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("postgres never accepted connections: {}", self.log());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match self.run_as {
            Some((uid, gid)) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(program);
                command.current_dir(self.dir.path());
                command
            }
            None => Command::new(program),
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the cluster is thrown away.
            signal(&child, "QUIT");
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

/// The directory holding `initdb` and `postgres`, newest Debian version first.
fn server_binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BRIDGE_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        return has_server(&dir).then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_server(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// The `postgres` system user when there is one, else `nobody`.
fn unprivileged_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for name in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 3
                && fields[0] == name
                && let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse())
            {
                return (uid, gid);
            }
        }
    }
    (65534, 65534)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
