//! HTTP/1.1 as spore speaks it, in one place: the URL parser, the response
//! reader (Content-Length, chunked, or until close) and the request-head
//! reader the beacon serves with. Heads are parsed by `httparse` (the
//! parser hyper uses), not by splitting strings. Health probes, call-home,
//! sporectl's beacon client and the beacon itself all use it.

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// https.
    pub tls: bool,
    /// The host name or address (IPv6 without brackets).
    pub host: String,
    /// The port (443 or 80 when absent).
    pub port: u16,
    /// The path and query, `/` when absent.
    pub path: String,
}

impl Url {
    /// `host:port` for connect and the Host header (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `http://` and `https://` URLs.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err("must start with http:// or https://".into()),
    };
    let default_port = if tls { 443 } else { 80 };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [")?;
        let port = after
            .strip_prefix(':')
            .map(|p| p.parse::<u16>().map_err(|_| "bad port"))
            .transpose()?;
        (host.to_owned(), port.unwrap_or(default_port))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (
                host.to_owned(),
                port.parse::<u16>().map_err(|_| "bad port")?,
            ),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok(Url {
        tls,
        host,
        port,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    })
}

/// Headers read at most per message.
const MAX_HEADERS: usize = 64;

/// The status code of a response whose head may not be complete yet (the
/// status line is enough).
pub fn status(response: &[u8]) -> Option<u16> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(response) {
        Ok(_) => parsed.code,
        // A head cut short still has its status line.
        Err(httparse::Error::TooManyHeaders) => parsed.code,
        Err(_) => None,
    }
}

/// The value of header `name` in a response's head (None when the head is
/// not complete or has no such header).
pub fn header(response: &[u8], name: &str) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    parsed.parse(response).ok()?;
    find(parsed.headers, name)
}

/// The value of header `name` among `headers`, trimmed.
fn find(headers: &[httparse::Header<'_>], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(|v| v.trim().to_owned())
}

/// The value of header `name` in a request's head (None when the head is
/// not complete or has no such header).
pub fn request_header(request: &[u8], name: &str) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(request).ok()?;
    find(parsed.headers, name)
}

/// Status and decoded body of a complete response (read until the server
/// closed): the body by Content-Length, chunked transfer coding, or all
/// that came.
pub fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let head = match parsed.parse(response).map_err(|e| e.to_string())? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Err("the response ended inside its head".into()),
    };
    let code = parsed.code.ok_or("no status")?;
    let body = response.get(head..).unwrap_or_default();
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Ok((code, dechunk(body)?));
    }
    match header("content-length") {
        Some(length) => {
            let n: usize = length.parse().map_err(|_| "bad Content-Length")?;
            let body = body
                .get(..n)
                .ok_or("the body is shorter than its Content-Length")?;
            Ok((code, body.to_vec()))
        }
        None => Ok((code, body.to_vec())),
    }
}

/// Decodes a chunked body (RFC 9112 §7.1); extensions and trailers are
/// ignored.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let (consumed, size) = match httparse::parse_chunk_size(body) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Err("a chunk was cut short".into()),
            Err(_) => return Err("a bad chunk size".into()),
        };
        let size = usize::try_from(size).map_err(|_| "a chunk too large")?;
        body = body.get(consumed..).ok_or("a chunk was cut short")?;
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).ok_or("a chunk was cut short")?);
        body = body
            .get(size..)
            .and_then(|rest| rest.strip_prefix(b"\r\n"))
            .ok_or("a chunk without its CRLF")?;
    }
}

/// A request's head, as the beacon needs it.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// `GET`, `POST` …
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Bytes of body that follow the head.
    pub content_length: usize,
    /// Where the body starts in the bytes given.
    pub head_len: usize,
}

/// Why a request head was refused, as an HTTP status.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed.
    Partial,
    /// Malformed (400), or a transfer coding the beacon does not take (501).
    Status(u16),
}

/// Parses a request head from `bytes` (which may hold part of the body).
pub fn parse_request_head(bytes: &[u8]) -> Result<RequestHead, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(HeadError::Partial),
        Err(_) => return Err(HeadError::Status(400)),
    };
    let mut content_length = None;
    for header in parsed.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Request bodies come with a length here; a chunked one is not
            // read (and must not be mistaken for an empty one).
            return Err(HeadError::Status(501));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            // RFC 9110 §8.6: 1*DIGIT. Rust's parse takes `+5` too, which a
            // proxy in front may read otherwise (request smuggling).
            let n = std::str::from_utf8(header.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(HeadError::Status(400))?;
            if content_length.is_some_and(|seen| seen != n) {
                return Err(HeadError::Status(400));
            }
            content_length = Some(n);
        }
    }
    Ok(RequestHead {
        method: parsed.method.ok_or(HeadError::Status(400))?.to_owned(),
        path: parsed.path.ok_or(HeadError::Status(400))?.to_owned(),
        content_length: content_length.unwrap_or(0),
        head_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_header_is_found_by_any_case() {
        let head = b"PUT /a HTTP/1.1\r\nSpore-Order: e30=\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(request_header(head, "spore-order").as_deref(), Some("e30="));
        assert_eq!(request_header(head, "missing"), None);
        assert_eq!(request_header(b"PUT /a HTTP/1.1\r\n", "spore-order"), None);
    }

    #[test]
    fn a_content_length_is_digits_only() {
        for bad in ["+5", "-5", "5 5", "0x5", "", "5.0"] {
            let head = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                parse_request_head(head.as_bytes()),
                Err(HeadError::Status(400)),
                "{bad:?}"
            );
        }
        let head = parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(head.content_length, 5);
    }

    #[test]
    fn urls_parse_with_ipv6_and_ports() {
        let u = parse_url("http://[::1]:8080/api/v1/nodes/register").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("::1", 8080, false));
        assert_eq!(u.authority(), "[::1]:8080");
        let u = parse_url("http://beacon.example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = parse_url("https://beacon.example/register?x=1").unwrap();
        assert_eq!(
            (u.port, u.tls, u.path.as_str()),
            (443, true, "/register?x=1")
        );
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(parse_url("http://x:99999/").is_err());
    }

    #[test]
    fn responses_by_length_chunked_and_close() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Ok((200, b"hello".to_vec()))
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
            ),
            Ok((200, b"hello".to_vec()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 404 Nope\r\n\r\ngone"),
            Ok((404, b"gone".to_vec()))
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert_eq!(status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status(b"HTTP/1.1 20x OK\r\n"), None);
    }

    #[test]
    fn request_heads_are_parsed_strictly() {
        let head = parse_request_head(
            b"POST /api/v1/nodes/register HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(
            (
                head.method.as_str(),
                head.path.as_str(),
                head.content_length
            ),
            ("POST", "/api/v1/nodes/register", 2)
        );
        assert_eq!(head.head_len, 68);
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\n"),
            Err(HeadError::Partial)
        );
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Status(501))
        );
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(HeadError::Status(400))
        );
        assert_eq!(
            parse_request_head(b"GET /\x01 HTTP/1.1\r\n\r\n"),
            Err(HeadError::Status(400))
        );
    }
}
