//! Native health probes: TCP connect and HTTP GET, with no curl and no shell.

use std::time::Duration;

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Timer;

/// The most of an HTTP response read to find its status line.
const STATUS_LINE_LIMIT: usize = 1024;

/// True when a TCP connection to `target` (`host:port`) opens within `timeout`.
pub async fn tcp(target: &str, timeout: Duration) -> bool {
    within(timeout, async { TcpStream::connect(target).await.is_ok() }).await
}

/// True when `GET url` answers `expect` within `timeout`.
pub async fn http(url: &str, expect: u16, timeout: Duration) -> bool {
    let Some(request) = HttpTarget::parse(url) else {
        return false;
    };
    within(
        timeout,
        async move { status_of(&request).await == Some(expect) },
    )
    .await
}

async fn within(timeout: Duration, probe: impl std::future::Future<Output = bool>) -> bool {
    probe
        .or(async {
            Timer::after(timeout).await;
            false
        })
        .await
}

async fn status_of(target: &HttpTarget) -> Option<u16> {
    let mut stream = TcpStream::connect(target.authority.as_str()).await.ok()?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: spore-health\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buffer = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buffer.contains(&b'\n') && buffer.len() < STATUS_LINE_LIMIT {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(chunk.get(..n)?);
    }
    parse_status_line(&buffer)
}

/// The most of a response [`http_get`] reads.
const RESPONSE_LIMIT: usize = 64 * 1024;

/// `GET url` (http only): the status and body, within `timeout`; None on
/// any failure. Understands Content-Length, chunked and close-delimited
/// bodies; reads at most 64 KiB.
pub async fn http_get(url: &str, timeout: Duration) -> Option<(u16, Vec<u8>)> {
    http_get_limited(url, timeout, RESPONSE_LIMIT).await
}

/// [`http_get`] reading at most `limit` bytes (a beacon's node list for a
/// big fleet is larger than 64 KiB).
pub async fn http_get_limited(
    url: &str,
    timeout: Duration,
    limit: usize,
) -> Option<(u16, Vec<u8>)> {
    let target = HttpTarget::parse(url)?;
    let fetch = async {
        let mut stream = TcpStream::connect(target.authority.as_str()).await.ok()?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: spore\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            target.path, target.authority
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(chunk.get(..n)?);
            if response.len() > limit {
                return None;
            }
        }
        split_response(&response)
    };
    fetch
        .or(async {
            Timer::after(timeout).await;
            None
        })
        .await
}

/// Status and decoded body of a complete HTTP/1.1 response.
fn split_response(response: &[u8]) -> Option<(u16, Vec<u8>)> {
    crate::http1::parse_response(response).ok()
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(response: &[u8]) -> Option<u16> {
    crate::http1::status(response)
}

/// An `http://host[:port]/path` URL split for a request (probes speak
/// plain http only).
#[derive(Debug, PartialEq, Eq)]
struct HttpTarget {
    /// `host:port` (IPv6 hosts in brackets), port 80 when absent.
    authority: String,
    /// The path and query, `/` when absent.
    path: String,
}

impl HttpTarget {
    fn parse(url: &str) -> Option<Self> {
        let url = crate::http1::parse_url(url).ok().filter(|u| !u.tls)?;
        Some(Self {
            authority: url.authority(),
            path: url.path,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        let t = HttpTarget::parse("http://127.0.0.1:8989/api/v1/admin").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:8989", "/api/v1/admin")
        );
        let t = HttpTarget::parse("http://[::1]:8989").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("[::1]:8989", "/"));
        let t = HttpTarget::parse("http://example/x?y=1").unwrap();
        assert_eq!(t.authority, "example:80");
        assert!(HttpTarget::parse("https://x/").is_none());
        assert!(HttpTarget::parse("http:///x").is_none());
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20x OK\r\n"), None);
    }

    fn serve_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            conn.write_all(response.as_bytes()).unwrap();
        });
        addr
    }

    #[test]
    fn http_probe_compares_the_status_of_a_real_server() {
        let addr = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(smol::block_on(http(
            &format!("http://{addr}/health"),
            200,
            Duration::from_secs(5)
        )));
        let addr = serve_once("HTTP/1.1 503 Unavailable\r\n\r\n");
        assert!(!smol::block_on(http(
            &format!("http://{addr}/"),
            200,
            Duration::from_secs(5)
        )));
    }

    #[test]
    fn tcp_probe_sees_a_listener_and_its_absence() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert!(smol::block_on(tcp(&addr, Duration::from_secs(5))));
        drop(listener);
        assert!(!smol::block_on(tcp(&addr, Duration::from_secs(5))));
    }

    #[test]
    fn http_get_reads_length_chunked_and_close_delimited_bodies() {
        assert_eq!(
            split_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Some((200, b"hello".to_vec()))
        );
        assert_eq!(
            split_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"),
            Some((200, b"hello".to_vec()))
        );
        assert_eq!(
            split_response(b"HTTP/1.0 404 Nope\r\n\r\ngone"),
            Some((404, b"gone".to_vec()))
        );
        let addr = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"nodeIp\":1}");
        let got = smol::block_on(http_get(
            &format!("http://{addr}/api/v1/admin"),
            Duration::from_secs(5),
        ));
        assert_eq!(got, Some((200, b"{\"nodeIp\":1}".to_vec())));
    }

    #[test]
    fn silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accepted by the kernel backlog, never answered.
        assert!(!smol::block_on(http(
            &format!("http://{addr}/"),
            200,
            Duration::from_millis(200)
        )));
        drop(listener);
    }
}
