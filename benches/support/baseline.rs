//! The bare baseline servers of `entry_hop` and `full_login`: this benchmark binary started
//! again as a server that does only the HTTP of the bridge's path, and the DiscourseConnect
//! check they share. Included by `#[path]`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr} after {timeout:?}");
}

/// The bare baselines' whole DiscourseConnect check: `sso` and `sig` from the raw query, the
/// HMAC-SHA256 compared in constant time. `Err` is the status to answer with.
pub fn check_signed_sso_query(
    query: Option<&str>,
    key: &Hmac<Sha256>,
) -> Result<(), axum::http::StatusCode> {
    use axum::http::StatusCode;
    let (mut sso, mut sig) = (None, None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "sso" => sso = Some(value),
            "sig" => sig = Some(value),
            _ => {}
        }
    }
    let (Some(sso), Some(Ok(sig))) = (sso, sig.map(|s| hex::decode(s.as_bytes()))) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    let mut mac = key.clone();
    mac.update(sso.as_bytes());
    mac.verify_slice(&sig).map_err(|_| StatusCode::FORBIDDEN)
}

/// This benchmark binary started again as a baseline server (`args` select which one), once
/// something accepts connections on `port`; killed when dropped.
#[derive(Debug)]
pub struct BaselineProcess {
    child: Child,
}

impl BaselineProcess {
    pub fn start(args: &[&str], port: u16, stderr: Stdio) -> BaselineProcess {
        let child = Command::new(std::env::current_exe().expect("path of this benchmark"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("re-executing the benchmark as a baseline server");
        let baseline = BaselineProcess { child };
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(30),
        );
        baseline
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BaselineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
