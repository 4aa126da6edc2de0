//! A hand-written HTTP/1.1 keep-alive client (RFC 9112) for the benchmarks that load a server:
//! requests prepared as bytes in advance, one response read per request (head, then
//! `Content-Length` bytes of body), so that the load generator spends as little of the shared
//! CPU as possible. `entry_hop` and `load` include it by `#[path]`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use discourse_oidc_bridge::discourse::connect::{ConnectSecret, SsoRequest};

use crate::support::CONNECT_SECRET;

/// Room for one response head; a longer head is an error.
pub const HEAD_BUFFER: usize = 16 * 1024;

/// What a browser sends to `/sso`, minus cookies (a browser that has not logged in yet).
pub fn sso_requests(port: u16, forum_url: &str, count: usize) -> Vec<Vec<u8>> {
    let secret = ConnectSecret::new(CONNECT_SECRET);
    (0..count)
        .map(|_| {
            let nonce = hex::encode(rand::random::<[u8; 16]>());
            let signed = SsoRequest {
                nonce,
                return_sso_url: format!("{forum_url}/session/sso_login"),
            }
            .sign(&secret);
            format!(
                "GET /sso?{query} HTTP/1.1\r\n\
                 Host: 127.0.0.1:{port}\r\n\
                 User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
                 Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
                 Accept-Language: en-US,en;q=0.5\r\n\
                 Accept-Encoding: gzip, deflate, br\r\n\
                 Referer: {forum_url}/\r\n\
                 Connection: keep-alive\r\n\r\n",
                query = signed.query_string()
            )
            .into_bytes()
        })
        .collect()
}

/// Finds a header's value in a response head (case-insensitive name).
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Writes `request` on `stream` and reads exactly one response into `buffer` (at least
/// [`HEAD_BUFFER`] bytes). Returns the response head (status line and headers, ending with the
/// blank line). Chunked bodies and pipelining are errors: none of the answers measured has them.
pub async fn exchange<'b>(
    stream: &mut TcpStream,
    request: &[u8],
    buffer: &'b mut [u8],
) -> Result<&'b str, String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut filled = 0;
    let head_end = loop {
        if filled == buffer.len() {
            return Err("response head larger than the buffer".into());
        }
        let read = stream
            .read(&mut buffer[filled..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            return Err("server closed the connection".into());
        }
        filled += read;
        if let Some(at) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let buffer: &'b [u8] = buffer;
    let head = std::str::from_utf8(&buffer[..head_end]).map_err(|e| e.to_string())?;
    if header_value(head, "transfer-encoding").is_some() {
        return Err("chunked answers are not expected".into());
    }
    let body_len: usize = header_value(head, "content-length")
        .map(|v| v.parse().map_err(|_| format!("bad Content-Length {v}")))
        .transpose()?
        .unwrap_or(0);
    let mut have = filled - head_end;
    let mut scratch = [0u8; 4096];
    while have < body_len {
        let read = stream
            .read(&mut scratch)
            .await
            .map_err(|e| format!("read body: {e}"))?;
        if read == 0 {
            return Err("server closed the connection in a body".into());
        }
        have += read;
    }
    if have > body_len {
        return Err("more bytes than one response (nothing is pipelined)".into());
    }
    Ok(head)
}
