//! `sporectl --all metrics --serve ADDRESS`: the fleet as one Prometheus
//! scrape target. `GET /metrics` answers the fleet's exposition (every
//! node's figures under its name, a node that did not answer as
//! `spore_node_up 0`), scraped anew only when the last one is older than
//! `--min-interval`: scrapers that ask more often, or many at once, share
//! one round of calls, so the nodes see at most one per interval.
//!
//! The listener is the attacker's to spend, and bounded as the beacon's
//! is: connections that have not sent their request yet go through
//! [`rpc::admission`] (a newcomer makes room by evicting an idle older one,
//! preferring the source that holds most, so a scraper gets through a flood
//! of held sockets), a request head is at most 8 KiB and must arrive within
//! 10 s, at most [`MAX_ANSWERING`] answers are written at once, each
//! within 30 s. Refusals are counted into one summary line per 10 s.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rpc::admission::{Admission, Bounds, Ending};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

use super::*;

/// Connections at once that have not sent their request yet.
const MAX_WAITING: usize = 64;
/// …of them from one source.
const MAX_WAITING_PER_SOURCE: usize = 8;
/// Answers being written at once.
pub const MAX_ANSWERING: usize = 32;
/// Bytes of request head read at most.
const MAX_HEAD: usize = 8 * 1024;
/// Time for the request head to arrive.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// …while the table of waiting connections is half full.
const PRESSURE_DEADLINE: Duration = Duration::from_secs(2);
/// Time for the answer to be taken.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// `metrics --serve`'s settings.
#[derive(Debug, Clone)]
pub(crate) struct ServeMetrics {
    /// Where to listen (`127.0.0.1:9464`).
    pub(crate) listen: String,
    /// The youngest exposition handed out again rather than scraped anew.
    pub(crate) min_interval: Duration,
}

/// Serves until killed; Err when it cannot listen or has no key to call with.
pub(crate) fn serve(options: &Options, settings: &ServeMetrics) -> Result<u8, ClientError> {
    let identities = Rc::new(identities(options)?);
    smol::block_on(async {
        let listener = TcpListener::bind(settings.listen.as_str())
            .await
            .map_err(|e| ClientError::Local(format!("--serve {}: {e}", settings.listen)))?;
        let local = listener
            .local_addr()
            .map_err(|e| ClientError::Local(e.to_string()))?;
        complain!("sporectl: serving the fleet's metrics on http://{local}/metrics");
        let shared = Shared {
            options,
            settings,
            identities,
            last: RefCell::new(None),
            scraping: smol::lock::Mutex::new(()),
            admission: Admission::new(Bounds {
                label: "metrics",
                task: "request",
                total: MAX_WAITING,
                per_source: MAX_WAITING_PER_SOURCE,
                deadline: HEAD_DEADLINE,
                pressure_deadline: PRESSURE_DEADLINE,
            }),
            answering: Cell::new(0),
        };
        let executor = smol::LocalExecutor::new();
        executor
            .run(async {
                loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            executor.spawn(shared.connection(stream, peer)).detach();
                        }
                        Err(error) => {
                            complain!("sporectl: metrics: accept failed: {error}");
                            smol::Timer::after(Duration::from_millis(100)).await;
                        }
                    }
                }
            })
            .await
    })
}

/// What every connection of the server shares.
struct Shared<'a> {
    options: &'a Options,
    settings: &'a ServeMetrics,
    identities: Rc<Vec<Identity>>,
    /// The last exposition, and when its scrape began.
    last: RefCell<Option<(Instant, Rc<str>)>>,
    /// One scrape at a time: requests that come meanwhile wait and share it.
    scraping: smol::lock::Mutex<()>,
    admission: Admission,
    answering: Cell<usize>,
}

impl Shared<'_> {
    fn count(&self, ending: Ending) {
        if let Some(line) = self.admission.count(ending) {
            complain!("sporectl: {line}");
        }
    }

    /// One connection: its request head, then its answer.
    async fn connection(&self, mut stream: TcpStream, peer: SocketAddr) {
        use smol::future::FutureExt;
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
        let head = match head {
            None => return self.count(Ending::Evicted),
            Some(Err(ending)) => return self.count(ending),
            Some(Ok(head)) => head,
        };
        if self.answering.get() >= MAX_ANSWERING {
            return self.count(Ending::Full);
        }
        self.answering.set(self.answering.get() + 1);
        let (status, body) = match (head.method.as_str(), head.path.split('?').next()) {
            ("GET", Some("/metrics")) => ("200 OK", self.exposition().await),
            ("GET", _) => (
                "404 Not Found",
                Rc::from("not found: the figures are at /metrics\n"),
            ),
            _ => ("405 Method Not Allowed", Rc::from("only GET\n")),
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let write = async {
            stream.write_all(answer.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            stream.flush().await
        };
        let _ = write
            .or(async {
                smol::Timer::after(WRITE_DEADLINE).await;
                Err(std::io::ErrorKind::TimedOut.into())
            })
            .await;
        self.answering.set(self.answering.get().saturating_sub(1));
    }

    /// The fleet's exposition: the last one when it is young enough, else
    /// a new scrape (one at a time; those who waited share it).
    async fn exposition(&self) -> Rc<str> {
        let _scraping = self.scraping.lock().await;
        let fresh = self
            .last
            .borrow()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.settings.min_interval)
            .map(|(_, text)| text.clone());
        if let Some(text) = fresh {
            return text;
        }
        let began = Instant::now();
        let text: Rc<str> = Rc::from(self.scrape().await);
        *self.last.borrow_mut() = Some((began, text.clone()));
        text
    }

    /// Asks every node for its figures. The beacon's list is read first
    /// (a blocking read, bounded by its timeouts); a beacon that cannot be
    /// read makes an exposition that says so in a comment and has no nodes.
    async fn scrape(&self) -> String {
        let targets = match targets(self.options) {
            Ok((targets, _)) => targets,
            Err(error) => {
                return format!(
                    "# the beacon could not be read: {}\n",
                    rpc::display::printable(&error.to_string())
                )
            }
        };
        let method = proto::method::Method::NodeMetrics.name();
        let outcomes = call_every(
            self.options,
            targets,
            &self.identities,
            (Verb::Metrics, false),
            (method, &json!({})),
            false,
        )
        .await;
        exposition(&outcomes)
    }
}

/// Reads a request head (no body is taken); how the connection ended when
/// it did not send one.
async fn read_head(stream: &mut TcpStream) -> Result<http1::RequestHead, Ending> {
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match http1::parse_request_head(&bytes) {
            Ok(head) => return Ok(head),
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
