//! The beacon's artifact cache (`sporectl beacon serve --artifacts DIR`):
//! operators publish an artifact once, nodes fetch it by its SHA-256, so a
//! change for a whole fleet leaves the operator's machine once.
//!
//! - `PUT /api/v1/artifacts/HEX` publishes. Its `Spore-Order` header is a
//!   signed `publish` order (base64 of its JSON, see [`crate::admin`]) that
//!   names the artifact's SHA-256 and size; the beacon checks it (an admin
//!   key, fresh, its nonce unused at every replica) before it takes a byte
//!   of body, answers `100 Continue` to a client that asked
//!   (`Expect: 100-continue`), and streams the body into an
//!   [`artifacts::Store`] (partial file, verified against the name, fsync,
//!   rename). `Spore-Offset: N` resumes an upload cut off at byte N.
//! - `GET /api/v1/artifacts/HEX` (and `HEAD`) serves it, streamed from
//!   disk. A replica that lacks it asks its peers (`--artifacts-peer URL`,
//!   with `?local=1` so they do not ask theirs) and keeps what they give,
//!   verified, before it answers. `HEAD …?size=N` says in `Spore-Held` how
//!   much of an upload under way it holds.
//! - `DELETE /api/v1/artifacts/HEX` removes one (what is held of it,
//!   verified or under way), with a signed `unpublish` order in
//!   `Spore-Order`.
//! - `GET /api/v1/artifacts` lists what it holds.
//!
//! Transfers are bounded like the beacon's other connections (per source
//! and in total, by the admission table) and have a deadline that each
//! piece moves on, so a stalled peer is cut off. The disk is read and
//! written on blocking threads, never on the event loop.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use artifacts::{ArtifactError, Digest, Held, Store};
use base64::Engine as _;
use serde_json::json;
use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use rpc::admission::Ending;
use rpc::display::printable;

use crate::admin::Order;
use crate::{answer, error, log, now, respond, Answer, Beacon, Deadline};

pub use rpc::callhome::ARTIFACTS_PATH;

mod transfer;

use transfer::{from_peers, receive, send};

/// Bytes read from or written to the disk at once.
const PIECE: usize = 512 * 1024;

/// How long a transfer may go without moving a byte.
const IDLE: Duration = Duration::from_secs(30);

/// How long a node's request may wait while the beacon fetches from a peer.
const PEER_WAIT: Duration = Duration::from_secs(600);

/// Fetches from peers under way at most; a miss beyond them is answered
/// 503 (the node tries again).
const MAX_PEER_FETCHES: usize = 4;

/// How the cache is set up.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Its directory (an [`artifacts::Store`]).
    pub dir: PathBuf,
    /// The most it holds; default half of its filesystem.
    pub max_bytes: Option<u64>,
    /// Other replicas' base URLs, asked for what this one lacks.
    pub peers: Vec<String>,
    /// The CA their https certificates chain to (else the system's roots).
    pub peer_ca: Option<PathBuf>,
}

/// Fetches from peers under way, each with the requests waiting for it.
type Waiting = Arc<Mutex<HashMap<Digest, Vec<smol::channel::Sender<()>>>>>;

/// The cache a beacon keeps.
pub(crate) struct Cache {
    store: Store,
    peers: Vec<String>,
    peer_ca: Option<PathBuf>,
    publishing: std::cell::RefCell<HashSet<Digest>>,
    fetching: Waiting,
}

impl Cache {
    /// Opens (or creates) the cache's store.
    pub(crate) fn open(settings: &CacheSettings) -> Result<Self, ArtifactError> {
        Ok(Self {
            store: Store::open(&settings.dir, settings.max_bytes)?,
            peers: settings
                .peers
                .iter()
                .map(|p| p.trim_end_matches('/').to_owned())
                .collect(),
            peer_ca: settings.peer_ca.clone(),
            publishing: Default::default(),
            fetching: Default::default(),
        })
    }
}

/// Whether `path` names one artifact (`/api/v1/artifacts/…`).
pub(crate) fn is_artifact_path(path: &str) -> bool {
    path.starts_with(ARTIFACTS_PATH)
}

/// One request for an artifact, as the connection read it.
pub(crate) struct Exchange<'a> {
    /// Its head.
    pub head: &'a http1::RequestHead,
    /// The head's bytes (for its other headers).
    pub raw: &'a [u8],
    /// Who sent it.
    pub peer: SocketAddr,
    /// The connection's deadline, moved on as bytes move.
    pub deadline: &'a Deadline,
}

/// An artifact's path, split: its digest and whether `?local=1` asks the
/// beacon not to ask its peers, and `size=N` for a `HEAD`.
fn parse_path(path: &str) -> Result<(Digest, bool, Option<u64>), Answer> {
    let rest = path.strip_prefix(ARTIFACTS_PATH).unwrap_or_default();
    let (hex, query) = rest.split_once('?').unwrap_or((rest, ""));
    let digest = Digest::parse(hex).map_err(|_| {
        error(
            400,
            "an artifact is named by its SHA-256: /api/v1/artifacts/ and 64 hex digits",
        )
    })?;
    let mut local = false;
    let mut size = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("local", "1")) => local = true,
            Some(("size", n)) => size = n.parse().ok(),
            _ => {}
        }
    }
    Ok((digest, local, size))
}

/// The order in a request head's `Spore-Order` header (base64 of its
/// JSON), if it has a readable one.
fn order_of(head: &[u8]) -> Option<Order> {
    let text = http1::request_header(head, "spore-order")?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// The HTTP status an artifact store's refusal is answered with.
fn status_of(error: &ArtifactError) -> u16 {
    match error {
        ArtifactError::Quota { .. } | ArtifactError::Full { .. } => 507,
        ArtifactError::Mismatch { .. } => 422,
        ArtifactError::Offset { .. } | ArtifactError::OtherSize { .. } => 409,
        ArtifactError::BadDigest(_) | ArtifactError::PastEnd { .. } => 400,
        _ => 500,
    }
}

/// Takes `digest` out of the publishing set when the upload ends.
struct Publishing<'a> {
    cache: &'a Cache,
    digest: Digest,
}

impl Drop for Publishing<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.cache.publishing.try_borrow_mut() {
            set.remove(&self.digest);
        }
    }
}

impl Beacon {
    /// `GET /api/v1/artifacts`: what the cache holds, verified.
    pub(crate) async fn artifact_list(&self) -> Answer {
        let Some(cache) = &self.cache else {
            return error(404, "this beacon keeps no artifacts (--artifacts DIR)");
        };
        let store = cache.store.clone();
        match smol::unblock(move || store.entries()).await {
            Ok(entries) => answer(
                200,
                json!(entries
                    .iter()
                    .filter(|e| e.complete)
                    .map(|e| json!({ "sha256": e.digest.hex(), "size": e.size }))
                    .collect::<Vec<_>>()),
            ),
            Err(e) => error(500, e.to_string()),
        }
    }

    /// Answers one request for an artifact, streaming its bytes.
    pub(crate) async fn artifact<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        exchange: Exchange<'_>,
        rest: Vec<u8>,
    ) -> Result<(), Ending> {
        let Some(cache) = &self.cache else {
            return respond(
                stream,
                &error(404, "this beacon keeps no artifacts (--artifacts DIR)"),
            )
            .await;
        };
        let (digest, local, size) = match parse_path(&exchange.head.path) {
            Ok(parsed) => parsed,
            Err(refusal) => return respond(stream, &refusal).await,
        };
        match exchange.head.method.as_str() {
            "GET" | "HEAD" => {
                if !local && !cache.peers.is_empty() {
                    let fetched = self
                        .fetch_from_peers(cache, digest, exchange.deadline)
                        .await;
                    if let Err(refusal) = fetched {
                        return respond(stream, &refusal).await;
                    }
                }
                let head_only = exchange.head.method == "HEAD";
                send(cache, stream, digest, size, head_only, exchange.deadline).await
            }
            "PUT" => {
                let reply = self.publish(cache, stream, &exchange, digest, rest).await;
                respond(stream, &reply).await
            }
            "DELETE" => {
                let reply = self.unpublish(cache, &exchange, digest).await;
                respond(stream, &reply).await
            }
            _ => respond(stream, &error(405, "GET, HEAD, PUT or DELETE")).await,
        }
    }

    /// `DELETE`: checks the order, then removes what is held of `digest`.
    async fn unpublish(&self, cache: &Cache, exchange: &Exchange<'_>, digest: Digest) -> Answer {
        let Some(order) = order_of(exchange.raw) else {
            return error(
                400,
                "removing needs a Spore-Order header: a signed unpublish order, base64 (sporectl artifact unpublish)",
            );
        };
        if order.action != "unpublish" || order.sha256 != digest.hex() {
            return error(400, "the order does not name this artifact");
        }
        let peer = exchange.peer;
        let operator = match self.authorized(&order, peer, now()).await {
            Ok(operator) => operator,
            Err(refusal) => return refusal,
        };
        if cache
            .publishing
            .try_borrow()
            .map_or(true, |set| set.contains(&digest))
        {
            return error(
                409,
                format!("sha256:{digest} is being published; try again when it is done"),
            );
        }
        let store = cache.store.clone();
        match smol::unblock(move || store.remove(&digest)).await {
            Ok(true) => {
                log(format_args!(
                    "beacon: {} {} unpublished sha256:{digest} from {peer}",
                    operator.fingerprint,
                    printable(&operator.comment)
                ));
                answer(200, json!({ "sha256": digest.hex(), "removed": true }))
            }
            Ok(false) => error(404, format!("no artifact sha256:{digest} here")),
            Err(e) => error(status_of(&e), e.to_string()),
        }
    }

    /// `PUT`: checks the order, then streams the body into the store.
    async fn publish<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        cache: &Cache,
        stream: &mut S,
        exchange: &Exchange<'_>,
        digest: Digest,
        rest: Vec<u8>,
    ) -> Answer {
        let header = |name| http1::request_header(exchange.raw, name);
        let Some(order) = order_of(exchange.raw) else {
            return error(
                400,
                "publishing needs a Spore-Order header: a signed publish order, base64 (sporectl artifact publish)",
            );
        };
        let offset = match header("spore-offset").map(|v| v.parse::<u64>()) {
            None => 0,
            Some(Ok(offset)) => offset,
            Some(Err(_)) => return error(400, "Spore-Offset is not a byte count"),
        };
        let length = exchange.head.content_length as u64;
        if order.action != "publish"
            || order.sha256 != digest.hex()
            || offset.checked_add(length) != Some(order.size)
        {
            return error(
                400,
                "the order does not name this upload: a publish order of this SHA-256 whose size is Spore-Offset + Content-Length",
            );
        }
        let size = order.size;
        let peer = exchange.peer;
        let operator = match self.authorized(&order, peer, now()).await {
            Ok(operator) => operator,
            Err(refusal) => return refusal,
        };
        let first = match cache.publishing.try_borrow_mut() {
            Ok(mut publishing) => publishing.insert(digest),
            Err(_) => return error(503, "busy"),
        };
        if !first {
            return error(
                409,
                format!("sha256:{digest} is being published by another upload; try again when it is done"),
            );
        }
        let _guard = Publishing { cache, digest };
        let store = cache.store.clone();
        let checked = smol::unblock(move || -> Result<Held, ArtifactError> {
            let held = store.held(&digest, size)?;
            match (held, offset) {
                (Held::Complete, _) => {}
                // A fresh upload replaces what an earlier one left.
                (Held::Partial(_), 0) => store.drop_upload(&digest, size)?,
                (Held::Partial(_), _) => {}
                (Held::Nothing, _) => store.admit(size)?,
            }
            Ok(match (held, offset) {
                (Held::Partial(_), 0) => Held::Nothing,
                _ => held,
            })
        })
        .await;
        match checked {
            Ok(Held::Complete) => {
                return answer(
                    200,
                    json!({ "sha256": digest.hex(), "size": size, "published": false, "held": true }),
                )
            }
            Ok(held) if held.bytes(size) != offset => {
                return answer(
                    409,
                    json!({ "error": format!("the beacon holds {} bytes of it: resume there", held.bytes(size)),
                            "held": held.bytes(size) }),
                )
            }
            Ok(_) => {}
            Err(e) => return error(status_of(&e), e.to_string()),
        }
        let expects = header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects
            && stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .and(stream.flush().await)
                .is_err()
        {
            return error(400, "gone");
        }
        match receive(cache, stream, digest, size, offset, rest, exchange.deadline).await {
            Ok(()) => {
                log(format_args!(
                    "beacon: {} {} published sha256:{digest} ({size} bytes) from {peer}",
                    operator.fingerprint,
                    printable(&operator.comment)
                ));
                answer(
                    200,
                    json!({ "sha256": digest.hex(), "size": size, "published": true }),
                )
            }
            Err(refusal) => refusal,
        }
    }

    /// Makes sure the cache holds `digest`, asking the peers if it does
    /// not; one fetch per artifact, the other requests wait for it.
    /// The request waits up to [`PEER_WAIT`] for it, then has its idle
    /// time again.
    async fn fetch_from_peers(
        &self,
        cache: &Cache,
        digest: Digest,
        deadline: &Deadline,
    ) -> Result<(), Answer> {
        let path = cache.store.path(&digest);
        if smol::unblock(move || path.exists()).await {
            return Ok(());
        }
        deadline.extend(PEER_WAIT);
        let (done, wait) = smol::channel::bounded(1);
        {
            let Ok(mut fetching) = cache.fetching.lock() else {
                return Err(error(503, "busy"));
            };
            let under_way = fetching.len();
            match fetching.get_mut(&digest) {
                Some(waiting) => waiting.push(done),
                None if under_way >= MAX_PEER_FETCHES => {
                    return Err(error(
                        503,
                        "the beacon is fetching other artifacts from its peers; try again",
                    ))
                }
                None => {
                    fetching.insert(digest, vec![done]);
                    let store = cache.store.clone();
                    let peers = cache.peers.clone();
                    let ca = cache.peer_ca.clone();
                    let registry = cache.fetching.clone();
                    // On a thread of its own, to its end even if the request
                    // that started it goes away.
                    smol::unblock(move || {
                        let outcome = from_peers(&store, &peers, ca.as_deref(), digest);
                        match outcome {
                            Ok(peer) => log(format_args!(
                                "beacon: fetched sha256:{digest} from {}",
                                printable(&peer)
                            )),
                            Err(reasons) if !reasons.is_empty() => log(format_args!(
                                "beacon: sha256:{digest} not at any peer: {}",
                                printable(&reasons.join("; "))
                            )),
                            Err(_) => {}
                        }
                        let waiting = registry
                            .lock()
                            .ok()
                            .and_then(|mut f| f.remove(&digest))
                            .unwrap_or_default();
                        for waiter in waiting {
                            let _ = waiter.try_send(());
                        }
                    })
                    .detach();
                }
            }
        }
        let _ = wait.recv().await;
        deadline.reset(IDLE);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_name_a_digest_and_options() {
        let hex = "ab".repeat(32);
        let (digest, local, size) = parse_path(&format!("{ARTIFACTS_PATH}{hex}")).ok().unwrap();
        assert_eq!((digest.hex(), local, size), (hex.clone(), false, None));
        let (_, local, size) = parse_path(&format!("{ARTIFACTS_PATH}{hex}?local=1&size=42"))
            .ok()
            .unwrap();
        assert_eq!((local, size), (true, Some(42)));
        for bad in ["x", "", &hex[1..], "../../etc/passwd"] {
            let refusal = parse_path(&format!("{ARTIFACTS_PATH}{bad}")).err().unwrap();
            assert_eq!(refusal.status, 400, "{bad}");
        }
    }
}
