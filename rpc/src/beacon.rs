//! The beacon: nodes register (signed), operators list them. HTTP/1.1 with
//! JSON bodies; registrations stored durably in redb (crash-safe commits).
//!
//! `POST /api/v1/nodes/register`, `GET /api/v1/nodes`,
//! `GET /api/v1/nodes/{hostname}`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::display::printable;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Timer};

use crate::registration::Registration;

const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");

/// Largest request (head and body) accepted.
const MAX_REQUEST: usize = 16 * 1024;
/// Registrations may be this far from the beacon's clock, either way.
const MAX_SKEW: u64 = 300;

/// What the beacon keeps about a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The latest accepted registration.
    pub registration: Registration,
    /// When it first registered (Unix seconds).
    pub first_seen: u64,
    /// When it last registered.
    pub last_seen: u64,
    /// The address it last registered from.
    pub source: String,
}

/// Beacon settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Accept a different node key for a known hostname.
    pub allow_rekey: bool,
    /// Connections at once.
    pub max_connections: usize,
    /// Registrations per second per source address (token bucket refill).
    pub rate_per_second: f64,
    /// Bucket size: requests allowed in a burst.
    pub burst: f64,
    /// Time allowed to receive a whole request.
    pub request_deadline: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allow_rekey: false,
            max_connections: 256,
            rate_per_second: 5.0,
            burst: 20.0,
            request_deadline: Duration::from_secs(10),
        }
    }
}

/// Starting the beacon failed.
#[derive(Debug, thiserror::Error)]
pub enum BeaconError {
    /// The database could not be opened.
    #[error("database {path}: {reason}")]
    Database {
        /// Its file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// A running beacon.
pub struct Beacon {
    db: Database,
    settings: Settings,
    connections: Cell<usize>,
    buckets: RefCell<HashMap<IpAddr, (f64, Instant)>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Answer {
    status: u16,
    body: Value,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer { status, body }
}

fn error(status: u16, message: impl Into<String>) -> Answer {
    answer(status, json!({ "error": message.into() }))
}

impl Beacon {
    /// Opens (or creates) the database under `data_dir`.
    pub fn open(data_dir: &Path, settings: Settings) -> Result<Rc<Self>, BeaconError> {
        let path = data_dir.join("beacon.redb");
        let fail = |reason: String| BeaconError::Database {
            path: path.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| fail(e.to_string()))?;
        let db = Database::create(&path).map_err(|e| fail(e.to_string()))?;
        // Make sure the table exists so reads never fail on a fresh file.
        let txn = db.begin_write().map_err(|e| fail(e.to_string()))?;
        txn.open_table(NODES).map_err(|e| fail(e.to_string()))?;
        txn.commit().map_err(|e| fail(e.to_string()))?;
        Ok(Rc::new(Self {
            db,
            settings,
            connections: Cell::new(0),
            buckets: RefCell::new(HashMap::new()),
        }))
    }

    /// Serves `listener` forever.
    pub async fn serve(
        self: Rc<Self>,
        listener: TcpListener,
        executor: &'static LocalExecutor<'static>,
    ) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                Timer::after(Duration::from_millis(100)).await;
                continue;
            };
            if self.connections.get() >= self.settings.max_connections {
                continue;
            }
            self.connections.set(self.connections.get() + 1);
            let beacon = self.clone();
            executor
                .spawn(async move {
                    let deadline = beacon.settings.request_deadline;
                    let _ = beacon
                        .connection(stream, peer)
                        .or(async {
                            Timer::after(deadline).await;
                            Ok(())
                        })
                        .await;
                    beacon
                        .connections
                        .set(beacon.connections.get().saturating_sub(1));
                })
                .detach();
        }
    }

    async fn connection(&self, mut stream: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
        let reply = match read_request(&mut stream).await {
            // Registrations are rate-limited per source (they cost a signature
            // check and a durable write); reads are cheap and are not.
            Ok((method, path, body)) => {
                if method != "POST" || self.take_token(peer.ip()) {
                    self.route(&method, &path, &body, peer)
                } else {
                    error(429, "too many requests")
                }
            }
            Err(status) => error(status, "bad request"),
        };
        let body = reply.body.to_string();
        let reason = match reply.status {
            200 => "OK",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            409 => "Conflict",
            413 => "Payload Too Large",
            429 => "Too Many Requests",
            _ => "Error",
        };
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            reply.status,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await
    }

    /// Token bucket per source address.
    fn take_token(&self, ip: IpAddr) -> bool {
        let mut buckets = self.buckets.borrow_mut();
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

    fn route(&self, method: &str, path: &str, body: &[u8], peer: SocketAddr) -> Answer {
        match (method, path) {
            ("POST", "/api/v1/nodes/register") => self.register(body, peer),
            ("GET", "/api/v1/nodes") => match self.records() {
                Ok(records) => answer(200, json!(records)),
                Err(e) => error(500, e),
            },
            ("GET", path) if path.starts_with("/api/v1/nodes/") => {
                let hostname = path.trim_start_matches("/api/v1/nodes/");
                if crate::hostname::check(hostname).is_err() {
                    return error(404, "no such node");
                }
                match self.record(hostname) {
                    Ok(Some(record)) => answer(200, json!(record)),
                    Ok(None) => error(404, format!("no node {hostname}")),
                    Err(e) => error(500, e),
                }
            }
            _ => error(404, "not found"),
        }
    }

    fn register(&self, body: &[u8], peer: SocketAddr) -> Answer {
        let registration: Registration = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(400, format!("not a registration: {e}")),
        };
        // The name first: nothing else about a registration is looked at,
        // logged or stored while its name could carry a newline or an
        // escape sequence.
        if let Err(e) = crate::hostname::check(&registration.hostname) {
            eprintln!(
                "beacon: refused a registration from {peer}: bad hostname `{}`: {e}",
                printable(&registration.hostname)
            );
            return error(400, format!("bad hostname: {e}"));
        }
        let key = match registration.verify() {
            Ok(key) => key,
            Err(e) => {
                eprintln!("beacon: refused {} from {peer}: {e}", registration.hostname);
                return error(403, format!("refused: {e}"));
            }
        };
        let clock = now();
        if registration.timestamp + MAX_SKEW < clock || registration.timestamp > clock + MAX_SKEW {
            return error(
                403,
                format!(
                    "refused: timestamp {} is more than {MAX_SKEW} s from the beacon's clock",
                    registration.timestamp
                ),
            );
        }
        let outcome = (|| -> Result<Answer, String> {
            let txn = self.db.begin_write().map_err(|e| e.to_string())?;
            let answer = {
                let mut table = txn.open_table(NODES).map_err(|e| e.to_string())?;
                let existing: Option<Record> = table
                    .get(registration.hostname.as_str())
                    .map_err(|e| e.to_string())?
                    .and_then(|v| serde_json::from_slice(v.value()).ok());
                if let Some(old) = &existing {
                    let old_key = crate::nodekey::parse_openssh_public(
                        &old.registration.hero_proc_auth_pubkey,
                    );
                    if old_key != Some(key) && !self.settings.allow_rekey {
                        eprintln!(
                            "beacon: refused {} from {peer}: node key changed",
                            registration.hostname
                        );
                        return Ok(error(409, "refused: this hostname is registered with another node key (start the beacon with --allow-rekey to accept)"));
                    }
                    if registration.timestamp <= old.registration.timestamp {
                        return Ok(error(409, "refused: stale or replayed registration (timestamp not newer than the stored one)"));
                    }
                }
                let record = Record {
                    first_seen: existing.as_ref().map_or(clock, |o| o.first_seen),
                    last_seen: clock,
                    source: peer.ip().to_string(),
                    registration: registration.clone(),
                };
                let bytes = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
                table
                    .insert(registration.hostname.as_str(), bytes.as_slice())
                    .map_err(|e| e.to_string())?;
                answer(
                    200,
                    json!({ "accepted": true, "hostname": registration.hostname }),
                )
            };
            txn.commit().map_err(|e| e.to_string())?;
            Ok(answer)
        })();
        match outcome {
            Ok(answer) => answer,
            Err(e) => error(500, format!("storage: {e}")),
        }
    }

    /// Every record, by hostname.
    pub fn records(&self) -> Result<Vec<Record>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(NODES).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| e.to_string())? {
            let (_, value) = entry.map_err(|e| e.to_string())?;
            if let Ok(record) = serde_json::from_slice(value.value()) {
                out.push(record);
            }
        }
        Ok(out)
    }

    fn record(&self, hostname: &str) -> Result<Option<Record>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(NODES).map_err(|e| e.to_string())?;
        let value = table.get(hostname).map_err(|e| e.to_string())?;
        Ok(value.and_then(|v| serde_json::from_slice(v.value()).ok()))
    }
}

/// Reads one request: method, path, body. Errors are HTTP statuses.
async fn read_request(stream: &mut TcpStream) -> Result<(String, String, Vec<u8>), u16> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_REQUEST {
            return Err(413);
        }
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        buffer.extend_from_slice(chunk.get(..n).ok_or(400u16)?);
    };
    let head = std::str::from_utf8(buffer.get(..head_end).ok_or(400u16)?).map_err(|_| 400u16)?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().ok_or(400u16)?.split(' ');
    let method = request_line.next().ok_or(400u16)?.to_owned();
    let path = request_line.next().ok_or(400u16)?.to_owned();
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>().map_err(|_| 400u16))
        .transpose()?
        .unwrap_or(0);
    if length > MAX_REQUEST {
        return Err(413);
    }
    let mut body = buffer.get(head_end + 4..).ok_or(400u16)?.to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        body.extend_from_slice(chunk.get(..n).ok_or(400u16)?);
    }
    body.truncate(length);
    Ok((method, path, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_from_one_source_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let beacon = Beacon::open(dir.path(), Settings::default()).unwrap();
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
        let beacon = Beacon::open(dir.path(), Settings::default()).unwrap();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            beacon
                .route("POST", "/api/v1/nodes/register", b"{not json", peer)
                .status,
            400
        );
        assert_eq!(
            beacon
                .route("GET", "/api/v1/nodes/nobody", b"", peer)
                .status,
            404
        );
        assert_eq!(
            beacon.route("DELETE", "/api/v1/nodes", b"", peer).status,
            404
        );
        assert!(beacon.records().unwrap().is_empty());
    }
}
