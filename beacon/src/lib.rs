//! The beacon: nodes register (signed by their node key), operators list
//! them. HTTP/1.1 with JSON bodies, over TLS when given a certificate;
//! records stored durably in redb, or in PostgreSQL shared by several
//! replicas (see [`store`]).
//!
//! A node is listed only once it proves it belongs to the fleet (see
//! [`enroll`]): an enrollment credential baked into its image, or an
//! operator's approval. `POST /api/v1/nodes/register`, `GET /api/v1/nodes`,
//! `GET /api/v1/nodes/{hostname}`, `GET /api/v1/pending`, and signed
//! operator orders on `POST /api/v1/admin` (see [`admin`]).
//!
//! This crate is the beacon and nothing else. It may use `rpc` (node keys,
//! registrations, enrollment, admission, the HTTP client) and `runtime`'s
//! leaf helpers; `spore` does not link it (redb and PostgreSQL stay out
//! of the node's binary).

pub mod admin;
pub mod cache;
pub mod client;
pub mod enroll;
pub mod store;
pub mod tls;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::TcpListener;
use smol::{LocalExecutor, Timer};

use rpc::admission::{Admission, Bounds, Ending};
use rpc::authorized::AuthorizedKeys;
use rpc::enrollment::Trust;
use rpc::refusals::RefusalLog;

pub use store::{Location, Record};

/// Writes one line of the beacon's log to stderr, escaped and capped
/// ([`escape::line`]): hostnames, credential IDs and peers' words
/// in it can neither forge a line nor drive the terminal.
pub fn log(line: impl std::fmt::Display) {
    eprintln!("{}", escape::line(&line.to_string()));
}

/// Largest request head accepted (a registration's head is ~200 bytes).
const MAX_HEAD: usize = 8 * 1024;

/// Largest request (head and body) accepted.
const MAX_REQUEST: usize = 16 * 1024;

/// Who may be listed.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Enroll nodes whose registration carries a credential certified by
    /// one of these CAs.
    pub trust: Option<Trust>,
    /// Keep other new nodes (and rekeys) pending until an operator approves.
    pub approve: bool,
    /// List every node that signs its registration (no enrollment): only
    /// for a beacon nobody else can reach.
    pub open: bool,
}

/// Beacon settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Who may be listed.
    pub policy: Policy,
    /// Accept a different node key for a known hostname (the new key must
    /// still be enrolled).
    pub allow_rekey: bool,
    /// Operators who may approve and remove nodes (authorized_keys file
    /// or directory; admin role).
    pub operators: Option<PathBuf>,
    /// Registrations waiting for approval, at most (the oldest makes room).
    pub max_pending: usize,
    /// Connections at once; when full, a newcomer is admitted and an older
    /// connection that has not sent its whole request makes room (silent
    /// ones first), as on the node's RPC port.
    pub max_connections: usize,
    /// Connections at once from one source address.
    pub max_per_source: usize,
    /// Registrations per second per source address (token bucket refill).
    pub rate_per_second: f64,
    /// Bucket size: requests allowed in a burst.
    pub burst: f64,
    /// Time allowed to receive a whole request (and finish TLS).
    pub request_deadline: Duration,
    /// The same while the connection table is half full.
    pub pressure_deadline: Duration,
    /// Keep an artifact cache (`--artifacts DIR`): operators publish,
    /// nodes fetch by hash.
    pub artifacts: Option<cache::CacheSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            allow_rekey: false,
            operators: None,
            max_pending: 1_000,
            max_connections: 256,
            max_per_source: 32,
            rate_per_second: 5.0,
            burst: 20.0,
            request_deadline: Duration::from_secs(10),
            pressure_deadline: Duration::from_secs(2),
            artifacts: None,
        }
    }
}

/// Starting the beacon failed.
#[derive(Debug, thiserror::Error)]
pub enum BeaconError {
    /// The database could not be opened.
    #[error("store {path}: {reason}")]
    Database {
        /// Its file or URL (without a password).
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// No way for a node to be listed was chosen.
    #[error("choose who may be listed: --enrollment-ca FILE (nodes built with a credential), --approve (an operator approves each new node), or --open (every node that signs; only for a beacon nobody else can reach)")]
    NoPolicy,
    /// `--approve` without operators to approve.
    #[error("--approve needs --authorized-keys FILE (the operators who approve)")]
    NoOperators,
    /// The artifact cache's directory could not be used.
    #[error("--artifacts: {0}")]
    Artifacts(#[from] artifacts::ArtifactError),
}

/// A running beacon.
pub struct Beacon {
    store: store::Store,
    settings: Settings,
    operators: RefCell<Option<AuthorizedKeys>>,
    refusals: RefusalLog,
    admission: Admission,
    buckets: RefCell<HashMap<IpAddr, (f64, Instant)>>,
    cache: Option<cache::Cache>,
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HTTP answer: status and JSON body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

pub(crate) fn answer(status: u16, body: Value) -> Answer {
    Answer { status, body }
}

pub(crate) fn error(status: u16, message: impl Into<String>) -> Answer {
    answer(status, json!({ "error": message.into() }))
}

impl Beacon {
    /// Opens (or creates) the store at `location`; refuses settings that
    /// would list anyone by accident.
    pub fn open(location: &Location, settings: Settings) -> Result<Rc<Self>, BeaconError> {
        let policy = &settings.policy;
        if policy.trust.is_none() && !policy.approve && !policy.open {
            return Err(BeaconError::NoPolicy);
        }
        if policy.approve && settings.operators.is_none() {
            return Err(BeaconError::NoOperators);
        }
        let store = store::Store::open(location).map_err(|reason| BeaconError::Database {
            path: location.describe(),
            reason,
        })?;
        let operators = settings
            .operators
            .as_deref()
            .map(|p| AuthorizedKeys::load(p, &mut |line| log(format_args!("beacon: {line}"))));
        let admission = Admission::new(Bounds {
            label: "beacon",
            task: "request",
            total: settings.max_connections,
            per_source: settings.max_per_source,
            deadline: settings.request_deadline,
            pressure_deadline: settings.pressure_deadline,
        });
        let cache = match &settings.artifacts {
            Some(wanted) => Some(cache::Cache::open(wanted)?),
            None => None,
        };
        Ok(Rc::new(Self {
            cache,
            store,
            settings,
            operators: RefCell::new(operators),
            refusals: RefusalLog::new("beacon", rpc::admission::SUMMARY_EVERY),
            admission,
            buckets: RefCell::new(HashMap::new()),
        }))
    }

    /// Logs a refusal: the first few of its kind per interval in full, the
    /// rest counted (a flood of bad registrations is not a flood of lines).
    pub(crate) fn refused(&self, kind: &'static str, detail: impl FnOnce() -> String) {
        for line in self.refusals.refuse(kind, detail) {
            log(&line);
        }
    }

    /// Serves `listener` forever, over TLS when `tls` is given.
    pub async fn serve(
        self: Rc<Self>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        executor: &'static LocalExecutor<'static>,
    ) {
        let acceptor = tls.map(futures_rustls::TlsAcceptor::from);
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                Timer::after(Duration::from_millis(100)).await;
                continue;
            };
            // The table makes its own room: a flood of silent connections
            // is evicted, oldest first, before any that sent its request.
            let ticket = self.admission.admit(peer.ip(), stream.as_raw_fd());
            let beacon = self.clone();
            let acceptor = acceptor.clone();
            executor
                .spawn(async move {
                    let deadline = Deadline::after(ticket.deadline);
                    let id = ticket.id();
                    let work = async {
                        match acceptor {
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(tls) => beacon.connection(tls, peer, id, &deadline).await,
                                Err(_) => Err(Ending::Failed),
                            },
                            None => beacon.connection(stream, peer, id, &deadline).await,
                        }
                    };
                    let ending = work
                        .or(async {
                            deadline.passed().await;
                            Err(Ending::TimedOut)
                        })
                        .or(async {
                            let _ = ticket.evicted.recv().await;
                            Err(Ending::Evicted)
                        })
                        .await;
                    beacon.admission.done(id);
                    if let Err(ending) = ending {
                        if let Some(line) = beacon.admission.count(ending) {
                            log(&line);
                        }
                    }
                })
                .detach();
        }
    }

    /// Reads one request, answers it, closes. `Err` says how a connection
    /// that never got its answer ended, for the admission counts.
    async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        peer: SocketAddr,
        ticket: u64,
        deadline: &Deadline,
    ) -> Result<(), Ending> {
        let head = read_head(&mut stream).await;
        let request = match head {
            // An artifact's bytes stream in or out under a deadline that
            // each piece moves on, not the request deadline.
            Ok((head, raw, rest)) if cache::is_artifact_path(&head.path) => {
                self.admission.progressed(ticket);
                // A publish or a removal costs a signature check, as an
                // order does: rate-limited per source like one. Fetches
                // are not.
                if matches!(head.method.as_str(), "PUT" | "DELETE") && !self.take_token(peer.ip()) {
                    return respond(&mut stream, &error(429, "too many requests")).await;
                }
                let exchange = cache::Exchange {
                    head: &head,
                    raw: &raw,
                    peer,
                    deadline,
                };
                return self.artifact(&mut stream, exchange, rest).await;
            }
            Ok((head, _, rest)) => read_body(&mut stream, &head, rest)
                .await
                .map(|body| (head.method, head.path, body)),
            Err(status) => Err(status),
        };
        // A whole request: evicted only after every silent connection.
        self.admission.progressed(ticket);
        let reply = match request {
            // Registrations and orders are rate-limited per source (they
            // cost a signature check and a durable write); reads are cheap
            // and are not.
            Ok((method, path, body)) => {
                if method != "POST" || self.take_token(peer.ip()) {
                    self.route(&method, &path, &body, peer).await
                } else {
                    error(429, "too many requests")
                }
            }
            Err(501) => error(501, "request bodies must carry a Content-Length"),
            Err(431) => error(431, "request head too large"),
            Err(status) => error(status, "bad request"),
        };
        respond(&mut stream, &reply).await
    }

    /// Token bucket per source address.
    fn take_token(&self, ip: IpAddr) -> bool {
        let Ok(mut buckets) = self.buckets.try_borrow_mut() else {
            return false;
        };
        if buckets.len() > 100_000 {
            buckets.clear();
        }
        let now = Instant::now();
        let (tokens, last) = buckets.entry(ip).or_insert((self.settings.burst, now));
        *tokens = (*tokens
            + now.duration_since(*last).as_secs_f64() * self.settings.rate_per_second)
            .min(self.settings.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn route(&self, method: &str, path: &str, body: &[u8], peer: SocketAddr) -> Answer {
        let listing = |records: Result<Vec<Record>, String>| match records {
            Ok(records) => answer(200, json!(records)),
            Err(e) => error(500, e),
        };
        match (method, path) {
            ("POST", "/api/v1/nodes/register") => self.register(body, peer).await,
            ("POST", "/api/v1/admin") => self.order(body, peer).await,
            ("GET", "/api/v1/nodes") => listing(self.store.nodes().await),
            ("GET", "/api/v1/pending") => listing(self.store.pending().await),
            ("GET", "/api/v1/artifacts") => self.artifact_list().await,
            ("GET", path) if path.starts_with("/api/v1/nodes/") => {
                let hostname = path.trim_start_matches("/api/v1/nodes/");
                if rpc::hostname::check(hostname).is_err() {
                    return error(404, "no such node");
                }
                match self.store.node(hostname).await {
                    Ok(Some(record)) => answer(200, json!(record)),
                    Ok(None) => error(404, format!("no node {hostname}")),
                    Err(e) => error(500, e),
                }
            }
            _ => error(404, "not found"),
        }
    }
}

/// The reason phrase of `status`.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Error",
    }
}

/// Writes `reply` (a JSON body) and closes the connection.
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    reply: &Answer,
) -> Result<(), Ending> {
    let body = reply.body.to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        timespan::http_date(std::time::SystemTime::now()),
        body.len()
    );
    let written = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await?;
        stream.close().await
    }
    .await;
    written.map_err(|_| Ending::Failed)
}

/// When a connection is closed: at first the request deadline; a transfer
/// of an artifact's bytes moves it on with each piece, so a slow but
/// moving transfer goes on and a stalled one ends.
pub(crate) struct Deadline {
    at: Cell<Instant>,
    /// Told when the deadline moves earlier, so the armed timer is
    /// replaced.
    earlier: (smol::channel::Sender<()>, smol::channel::Receiver<()>),
}

impl Deadline {
    fn after(span: Duration) -> Self {
        Self {
            at: Cell::new(Instant::now() + span),
            earlier: smol::channel::bounded(1),
        }
    }

    /// Moves the deadline to `span` from now, if that is later.
    pub(crate) fn extend(&self, span: Duration) {
        let at = Instant::now() + span;
        if at > self.at.get() {
            self.at.set(at);
        }
    }

    /// Moves the deadline to `span` from now, earlier or later.
    pub(crate) fn reset(&self, span: Duration) {
        let at = Instant::now() + span;
        let earlier = at < self.at.get();
        self.at.set(at);
        if earlier {
            let _ = self.earlier.0.try_send(());
        }
    }

    /// Resolves once the deadline has passed (one timer per move, no
    /// polling).
    async fn passed(&self) {
        loop {
            let at = self.at.get();
            let moved_earlier = async {
                Timer::at(at).await;
                false
            }
            .or(async {
                let _ = self.earlier.1.recv().await;
                true
            })
            .await;
            if !moved_earlier && self.at.get() <= Instant::now() {
                return;
            }
        }
    }
}

/// Reads a request's head: it, its bytes, and what came after it.
/// Errors are HTTP statuses.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(http1::RequestHead, Vec<u8>, Vec<u8>), u16> {
    use http1::{parse_request_head, HeadError};
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        match parse_request_head(&buffer) {
            Ok(head) => {
                let rest = buffer.split_off(head.head_len.min(buffer.len()));
                return Ok((head, buffer, rest));
            }
            Err(HeadError::Status(status)) => return Err(status),
            Err(HeadError::Partial) => {}
        }
        // A head larger than MAX_HEAD is refused as soon as it is that
        // long, not after reading on (RFC 6585 §5).
        if buffer.len() >= MAX_HEAD {
            return Err(431);
        }
        let room = (MAX_HEAD - buffer.len()).min(chunk.len());
        let n = stream
            .read(chunk.get_mut(..room).ok_or(400u16)?)
            .await
            .map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        buffer.extend_from_slice(chunk.get(..n).ok_or(400u16)?);
    }
}

/// Reads the rest of a request's body (at most [`MAX_REQUEST`] bytes).
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &http1::RequestHead,
    rest: Vec<u8>,
) -> Result<Vec<u8>, u16> {
    let length = head.content_length;
    if length > MAX_REQUEST {
        return Err(413);
    }
    let mut body = rest;
    let mut chunk = [0u8; 2048];
    while body.len() < length {
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        body.extend_from_slice(chunk.get(..n).ok_or(400u16)?);
    }
    body.truncate(length);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn open_beacon(dir: &Path) -> Rc<Beacon> {
        let settings = Settings {
            policy: Policy {
                open: true,
                ..Policy::default()
            },
            ..Settings::default()
        };
        Beacon::open(&Location::File(dir.join("beacon.redb")), settings).unwrap()
    }

    #[test]
    fn a_deadline_passes_when_it_was_moved_to_earlier_or_later() {
        smol::block_on(async {
            // Armed ten minutes out, moved to 30 ms: it passes then, not in
            // ten minutes.
            let deadline = Deadline::after(Duration::from_secs(600));
            let started = Instant::now();
            let mover = async {
                Timer::after(Duration::from_millis(20)).await;
                deadline.reset(Duration::from_millis(30));
                std::future::pending::<()>().await
            };
            deadline.passed().or(mover).await;
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(50), "{took:?}");
            assert!(took < Duration::from_secs(60), "{took:?}");
            // Armed at 50 ms, moved on to 200 ms: it waits for the later.
            let deadline = Deadline::after(Duration::from_millis(50));
            let started = Instant::now();
            let mover = async {
                Timer::after(Duration::from_millis(10)).await;
                deadline.extend(Duration::from_millis(200));
                std::future::pending::<()>().await
            };
            deadline.passed().or(mover).await;
            assert!(started.elapsed() >= Duration::from_millis(210));
        });
    }

    #[test]
    fn a_beacon_without_a_policy_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::File(dir.path().join("beacon.redb"));
        let error = Beacon::open(&location, Settings::default())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("--enrollment-ca"), "{error}");
        let approve = Settings {
            policy: Policy {
                approve: true,
                ..Policy::default()
            },
            ..Settings::default()
        };
        assert!(matches!(
            Beacon::open(&location, approve),
            Err(BeaconError::NoOperators)
        ));
    }

    #[test]
    fn registrations_from_one_source_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let beacon = open_beacon(dir.path());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let allowed = (0..25).filter(|_| beacon.take_token(ip)).count();
        assert_eq!(allowed, 20, "the burst, then refusals");
        assert!(
            beacon.take_token("10.0.0.2".parse().unwrap()),
            "other sources are not affected"
        );
    }

    #[test]
    fn oversized_and_malformed_registrations_are_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let beacon = open_beacon(dir.path());
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            smol::block_on(beacon.route("POST", "/api/v1/nodes/register", b"{not json", peer))
                .status,
            400
        );
        assert_eq!(
            smol::block_on(beacon.route("GET", "/api/v1/nodes/nobody", b"", peer)).status,
            404
        );
        assert_eq!(
            smol::block_on(beacon.route("DELETE", "/api/v1/nodes", b"", peer)).status,
            404
        );
        assert!(smol::block_on(beacon.store.nodes()).unwrap().is_empty());
    }
}
