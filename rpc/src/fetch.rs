//! Downloading an artifact by URL, for a node that fetches what its
//! services pin: plain http or https (rustls, the system's roots or a CA
//! file), redirects followed (at most five), the body streamed to the
//! caller in pieces as it arrives, never held whole. The request is
//! HTTP/1.0, so the body is delimited by Content-Length (required: the
//! store must know the size first) and never chunked. Every read and write
//! has a deadline: a server that stalls mid-body ends the download with an
//! error. Blocking: run it on a thread of its own.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use http1::{parse_url, Url};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

/// The most a response head may take.
const MAX_HEAD: usize = 16 * 1024;

/// The size of the pieces handed to the sink.
pub const PIECE: usize = 512 * 1024;

/// Downloads `url`: `sink(size, offset, piece)` is called with each piece
/// of the body in order (`size` from Content-Length). Returns the size.
/// `timeout` bounds the connect and each read and write.
pub fn download(
    url: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
    sink: &mut dyn FnMut(u64, u64, Vec<u8>) -> Result<(), String>,
) -> Result<u64, String> {
    let mut url = parse_url(url)?;
    for _ in 0..=MAX_REDIRECTS {
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: spore\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
            url.path,
            url.authority()
        );
        let Answered {
            mut stream,
            status,
            head,
            rest,
        } = ask(&url, ca_file, timeout, &request)?;
        match status {
            200 => {}
            301 | 302 | 303 | 307 | 308 => {
                let location = http1::header(&head, "location")
                    .ok_or_else(|| format!("HTTP {status} without a Location"))?;
                url = follow(&url, location.trim())?;
                continue;
            }
            other => return Err(format!("the server answered HTTP {other}")),
        }
        let size = http1::header(&head, "content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or("the server did not give the size (Content-Length)")?;
        return body(&mut stream, rest, size, sink);
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// A request sent and the head of its answer read.
pub struct Answered {
    /// The connection, positioned after the head.
    pub stream: Box<dyn crate::http::ReadWrite>,
    /// The answer's status code.
    pub status: u16,
    /// The answer's head, through the blank line.
    pub head: Vec<u8>,
    /// What of the body came with the head.
    pub rest: Vec<u8>,
}

/// Connects to `url`'s server (TLS for https, trusting `ca_file` else the
/// system's roots), sends `request` (a whole head, no body) and reads the
/// answer's head; `timeout` bounds the connect and each read and write.
pub fn ask(
    url: &Url,
    ca_file: Option<&Path>,
    timeout: Duration,
    request: &str,
) -> Result<Answered, String> {
    let mut stream = crate::http::connect(url, ca_file, timeout, timeout)?;
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| e.to_string())?;
    let (head, rest) = read_head(&mut stream)?;
    let status = http1::status(&head).ok_or("not an HTTP answer")?;
    Ok(Answered {
        stream,
        status,
        head,
        rest,
    })
}

/// Where a redirect leads: an absolute URL, or a path on the same server.
fn follow(from: &Url, location: &str) -> Result<Url, String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return parse_url(location);
    }
    if location.starts_with('/') {
        return Ok(Url {
            path: location.to_owned(),
            ..from.clone()
        });
    }
    Err("a redirect to a relative location".into())
}

/// Reads up to the end of the head; returns it and what came after it.
pub fn read_head(stream: &mut dyn Read) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut bytes = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = bytes.split_off(end + 4);
            return Ok((bytes, rest));
        }
        if bytes.len() > MAX_HEAD {
            return Err("the answer's head is too long".into());
        }
        let n = stream.read(&mut chunk).map_err(read_error)?;
        if n == 0 {
            return Err("the connection ended before the answer's head".into());
        }
        bytes.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Streams `size` bytes of body (`rest` already read) to `sink`.
fn body(
    stream: &mut dyn Read,
    rest: Vec<u8>,
    size: u64,
    sink: &mut dyn FnMut(u64, u64, Vec<u8>) -> Result<(), String>,
) -> Result<u64, String> {
    let mut offset = 0u64;
    let mut piece = rest;
    piece.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let held = offset + piece.len() as u64;
        if piece.len() >= PIECE || held == size {
            let len = piece.len() as u64;
            if len > 0 || size == 0 {
                sink(size, offset, std::mem::take(&mut piece))?;
            }
            offset += len;
            if offset == size {
                return Ok(size);
            }
        }
        let want = usize::try_from(size - held)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        let n = stream
            .read(chunk.get_mut(..want).unwrap_or_default())
            .map_err(read_error)?;
        if n == 0 {
            return Err(format!("the connection ended after {held} of {size} bytes"));
        }
        piece.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

fn read_error(error: std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "the server stopped sending (timed out)".into()
        }
        // A TLS server that closes without close_notify mid-body.
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on loopback that answers each connection with the next of
    /// `answers` (raw bytes), after reading the request head.
    fn serve(answers: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for answer in answers {
                let (mut connection, _) = listener.accept().unwrap();
                let _ = read_head(&mut connection).unwrap();
                let _ = connection.write_all(&answer);
            }
        });
        (address, server)
    }

    #[test]
    fn a_body_arrives_in_pieces_after_a_redirect() {
        let body: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
        let mut ok =
            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        ok.extend_from_slice(&body);
        let (address, server) = serve(vec![
            b"HTTP/1.1 302 Found\r\nLocation: /real\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ok,
        ]);
        let mut got = Vec::new();
        let mut pieces = 0;
        let size = download(
            &format!("http://{address}/start"),
            None,
            Duration::from_secs(5),
            &mut |size, offset, piece| {
                assert_eq!(size, 1_300_000);
                assert_eq!(offset, got.len() as u64);
                assert!(piece.len() <= PIECE + 64 * 1024);
                got.extend_from_slice(&piece);
                pieces += 1;
                Ok(())
            },
        )
        .unwrap();
        server.join().unwrap();
        assert_eq!(size, 1_300_000);
        assert_eq!(got, body);
        assert!(pieces >= 3, "{pieces}");
    }

    #[test]
    fn errors_say_what_the_server_did() {
        let (address, server) = serve(vec![
            b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\n\r\nno length".to_vec(),
            b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec(),
        ]);
        let url = format!("http://{address}/a");
        let mut sink = |_: u64, _: u64, _: Vec<u8>| Ok(());
        let errors: Vec<String> = (0..3)
            .map(|_| download(&url, None, Duration::from_secs(5), &mut sink).unwrap_err())
            .collect();
        server.join().unwrap();
        assert_eq!(errors[0], "the server answered HTTP 404");
        assert_eq!(
            errors[1],
            "the server did not give the size (Content-Length)"
        );
        assert_eq!(errors[2], "the connection ended after 5 of 100 bytes");
    }
}
