//! The HTTP/1.1 server loop (RFC 9112) with the connection limits a public listener needs,
//! which `axum::serve` does not offer: a deadline for every request head, a cap on open
//! connections, and graceful shutdown.
//!
//! - **Header deadline** ([`ConnectionLimits::header_read_timeout`]): hyper starts the clock
//!   whenever a connection waits for a request head — right after it is accepted, and again
//!   after each response while the connection idles in keep-alive — and closes the connection
//!   when the head is not complete in time. A client that sends half a request line and then
//!   nothing, or keeps an idle connection open, holds a socket for at most that long.
//! - **Connection cap** ([`ConnectionLimits::max_connections`]): a connection is accepted only
//!   when a slot is free; beyond the cap, new connections wait in the kernel's accept queue and
//!   cost no file descriptor. With the deadline, every slot frees itself, so `/healthz` keeps
//!   answering under a flood of stalled sockets.
//! - **Accept queue** ([`bind`]): the listening socket asks for a backlog of
//!   [`LISTEN_BACKLOG`] (the kernel caps it at `net.core.somaxconn`). The standard library's
//!   `bind` asks for 128: a burst of connections beyond the cap plus 128 overflows that queue,
//!   and the kernel then leaves each further client's handshake unfinished for seconds (SYN-ACK
//!   retransmission, 1 s to 31 s), legitimate clients and health probes included. Measured with
//!   the `load` bench's slow-client phase.
//! - Only HTTP/1.1 (and 1.0) is served: the bridge sits behind a reverse proxy, and protocol
//!   detection for HTTP/2 would read the first bytes without any deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt as _};

/// The accept-queue length asked of `listen(2)` by [`bind`]: room for a burst of stalled
/// sockets beyond `max_connections` to wait for a slot without leaving the handshake unfinished.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds a listening TCP socket on `addr` with an accept queue of [`LISTEN_BACKLOG`]
/// connections, `SO_REUSEADDR` set (a restart does not wait for old connections' `TIME_WAIT`).
///
/// # Errors
/// The socket, bind or listen error (address in use, permission denied, ...).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Limits on the connections one listener holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head, from accept or from the end of the previous
    /// response on a keep-alive connection (so also the idle keep-alive timeout).
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Serves `service` (the bridge's router and its layers) on `listener` until `shutdown`
/// resolves, then lets the connections finish their requests in flight (each is told to close
/// after its current response) and returns. Every request carries the peer address as
/// `ConnectInfo<SocketAddr>`, its body as an axum `Body`.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // little (as axum::serve does) rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service
            .clone()
            .map_request(move |request: axum::http::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .map_err(|never: Infallible| match never {});
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;

    /// A server with a tiny cap and deadline, answering `/healthz` with the peer address.
    async fn start(limits: ConnectionLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/healthz",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, limits, async move {
            let _ = stopped.await;
        }));
        (address, stop)
    }

    async fn healthz(address: SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Reads until the server closes the connection (EOF or reset): the event the test waits
    /// for, instead of a sleep.
    async fn closed_by_server(mut stream: TcpStream) {
        let mut buffer = [0u8; 256];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Issue 15, fault 3: sockets that send part of a request head and then nothing were held
    /// forever; with more of them than the cap, the bridge stopped answering `/healthz`.
    #[tokio::test]
    async fn stalled_sockets_are_closed_and_healthz_keeps_answering_over_the_cap() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_millis(200),
            max_connections: 4,
        };
        let (address, _stop) = start(limits).await;
        let mut stalled = Vec::new();
        for index in 0..24 {
            let mut stream = TcpStream::connect(address).await.unwrap();
            // Half of them a partial head, half of them nothing at all.
            if index % 2 == 0 {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .unwrap();
            }
            stalled.push(stream);
        }
        // Far more stalled sockets than slots: every one is closed by the server in turn...
        let closing: Vec<_> = stalled
            .into_iter()
            .map(|stream| tokio::spawn(closed_by_server(stream)))
            .collect();
        // ...and a real request is answered meanwhile.
        let answer = healthz(address).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("127.0.0.1"), "{answer}");
        for closed in closing {
            closed.await.unwrap();
        }
        let answer = healthz(address).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_its_response() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_millis(200),
            max_connections: 2,
        };
        let (address, _stop) = start(limits).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 512];
        // The response arrives, then the server closes the idle connection.
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
            }
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_returns() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 2,
        };
        serve(listener, Router::new(), limits, async {})
            .await
            .unwrap();
    }
}
