//! The small HTTP/1.1 server behind sporectl's own pages (`metrics
//! --serve`, `dashboard`): it reads request heads and hands each to a
//! [`Site`], which writes its answer.
//!
//! The listener is the attacker's to spend, and bounded as the beacon's
//! is: connections that have not sent their request yet go through
//! [`rpc::admission`] (a newcomer makes room by evicting an idle older one,
//! preferring the source that holds most, so the operator gets through a
//! flood of held sockets), a request head is at most 8 KiB and must arrive
//! within 10 s, at most [`MAX_ANSWERING`] answers are under way at once,
//! and each write must be taken within 30 s. Refusals are counted into one
//! summary line per 10 s.
//!
//! Heads are parsed by the `http1` crate (httparse underneath), as the
//! beacon's are: one parser for every listener sporectl and the beacon
//! have, fuzzed and bounded once. No request body is read: the pages take
//! none.

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use rpc::admission::{Admission, Bounds, Ending};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

/// Connections at once that have not sent their request yet.
const MAX_WAITING: usize = 64;
/// …of them from one source.
const MAX_WAITING_PER_SOURCE: usize = 8;
/// Answers under way at once (a followed log counts until it ends).
pub const MAX_ANSWERING: usize = 32;
/// Bytes of request head read at most.
const MAX_HEAD: usize = 8 * 1024;
/// Time for the request head to arrive.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// …while the table of waiting connections is half full.
const PRESSURE_DEADLINE: Duration = Duration::from_secs(2);
/// Time for each write of an answer to be taken.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// One request as a site sees it.
pub struct Request {
    /// `GET`, `POST` …
    pub method: String,
    /// The path, without its query.
    pub path: String,
    /// The query, without its `?` (empty when there is none).
    pub query: String,
    /// The head's bytes, to read a header from ([`Request::header`]).
    head: Vec<u8>,
}

impl Request {
    /// The value of header `name` (any case), when the request has it.
    pub fn header(&self, name: &str) -> Option<String> {
        http1::request_header(&self.head, name)
    }
}

/// What answers the requests of a server.
pub trait Site {
    /// Writes the answer to `request` on `stream` (through [`respond`] or
    /// [`write`], which time out).
    async fn answer(&self, request: Request, stream: &mut TcpStream);
}

/// A server's listener with its bounds.
pub struct Server {
    listener: TcpListener,
    admission: Admission,
    answering: Cell<usize>,
    label: &'static str,
}

impl Server {
    /// Listens on `address`; `label` names the server in its summaries
    /// (`metrics`, `dashboard`).
    pub async fn bind(address: &str, label: &'static str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        Ok(Self {
            listener,
            admission: Admission::new(Bounds {
                label,
                task: "request",
                total: MAX_WAITING,
                per_source: MAX_WAITING_PER_SOURCE,
                deadline: HEAD_DEADLINE,
                pressure_deadline: PRESSURE_DEADLINE,
            }),
            answering: Cell::new(0),
            label,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers requests with `site` until the process ends.
    pub async fn run(&self, site: &impl Site) {
        let executor = smol::LocalExecutor::new();
        executor
            .run(async {
                loop {
                    match self.listener.accept().await {
                        Ok((stream, peer)) => {
                            executor.spawn(self.connection(site, stream, peer)).detach();
                        }
                        Err(error) => {
                            complain!("sporectl: {}: accept failed: {error}", self.label);
                            smol::Timer::after(Duration::from_millis(100)).await;
                        }
                    }
                }
            })
            .await
    }

    fn count(&self, ending: Ending) {
        if let Some(line) = self.admission.count(ending) {
            complain!("sporectl: {line}");
        }
    }

    /// One connection: its request head, then its answer.
    async fn connection(&self, site: &impl Site, mut stream: TcpStream, peer: SocketAddr) {
        let ticket = self.admission.admit(peer.ip(), stream.as_raw_fd());
        let head = async { Some(read_head(&mut stream).await) }
            .or(async {
                let _ = ticket.evicted.recv().await;
                None
            })
            .or(async {
                smol::Timer::after(ticket.deadline).await;
                Some(Err(Ending::TimedOut))
            })
            .await;
        self.admission.done(ticket.id());
        let request = match head {
            None => return self.count(Ending::Evicted),
            Some(Err(ending)) => return self.count(ending),
            Some(Ok(request)) => request,
        };
        if self.answering.get() >= MAX_ANSWERING {
            return self.count(Ending::Full);
        }
        self.answering.set(self.answering.get() + 1);
        site.answer(request, &mut stream).await;
        self.answering.set(self.answering.get().saturating_sub(1));
    }
}

/// Writes `bytes`, giving up when the peer does not take them within
/// [`WRITE_DEADLINE`].
pub async fn write(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    async {
        stream.write_all(bytes).await?;
        stream.flush().await
    }
    .or(async {
        smol::Timer::after(WRITE_DEADLINE).await;
        Err(std::io::ErrorKind::TimedOut.into())
    })
    .await
}

/// Writes a whole answer: `status` (`200 OK`), `content_type`, any
/// `headers` (each line without its CRLF), then `body`; the connection is
/// closed after it.
pub async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    headers: &[String],
    body: &[u8],
) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    if write(stream, head.as_bytes()).await.is_ok() {
        let _ = write(stream, body).await;
    }
}

/// Reads a request head (no body is taken); how the connection ended when
/// it did not send one.
async fn read_head(stream: &mut TcpStream) -> Result<Request, Ending> {
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match http1::parse_request_head(&bytes) {
            Ok(head) => {
                bytes.truncate(head.head_len);
                let (path, query) = match head.path.split_once('?') {
                    Some((path, query)) => (path.to_owned(), query.to_owned()),
                    None => (head.path, String::new()),
                };
                return Ok(Request {
                    method: head.method,
                    path,
                    query,
                    head: bytes,
                });
            }
            Err(http1::HeadError::Partial) if bytes.len() < MAX_HEAD => {}
            Err(_) => return Err(Ending::Failed),
        }
        let n = stream.read(&mut chunk).await.map_err(|_| Ending::Failed)?;
        if n == 0 {
            return Err(Ending::Failed);
        }
        bytes.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}
