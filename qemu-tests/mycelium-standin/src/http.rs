//! The HTTP/1.1 server under both of mycelium's APIs: a thread per
//! connection (64 at most), and connections kept alive for more requests
//! until the client closes or asks `Connection: close`, as mycelium's
//! server (hyper) keeps them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Largest request body read.
const MAX_BODY: usize = 64 * 1024;

/// Answers one request: (method, path, body) to (status, JSON body).
pub type Handler = dyn Fn(&str, &str, &[u8]) -> (u16, Value) + Send + Sync;

/// Serves `listener` forever with `handler`.
pub fn serve(listener: TcpListener, handler: Arc<Handler>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming().flatten() {
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (active, handler) = (active.clone(), handler.clone());
        std::thread::spawn(move || {
            let _ = connection(stream, &*handler);
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn connection(stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0).min(MAX_BODY);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or_default();
        let path = words.next().unwrap_or_default();
        // HTTP/1.0 closes unless asked otherwise.
        close |= words.next() == Some("HTTP/1.0");
        let (status, answer) = handler(method, path, &body);
        let answer = answer.to_string();
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            _ => "Not Found",
        };
        write!(
            writer,
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{answer}",
            answer.len(),
            if close { "connection: close\r\n" } else { "" }
        )?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}
