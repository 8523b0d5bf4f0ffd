//! `artifact.put`, `artifact.list`, `artifact.remove`: the node's
//! content-addressed store ([`artifacts::Store`]). Its file work runs on a
//! thread of its own, one job at a time, behind a short queue: the event
//! loop hands a chunk over and sends the answer when it comes, as it does a
//! deploy's, and never touches the disk itself. A full queue is answered
//! "node busy" (the client tries again), so what waits in memory is at most
//! the queue's chunks.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use artifacts::{ArtifactError, Digest, Held, Store, Upload};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use smol::channel::{Receiver, Sender};

use crate::reply::{code, ApiError};

pub use proto::method::MAX_ARTIFACT_CHUNK as MAX_CHUNK;

/// Jobs queued for the store's thread; more are told the node is busy.
const QUEUE: usize = 8;

/// Entries `artifact.list` answers at most (the rest counted).
const MAX_LISTED: usize = 4_000;

/// What the store tells the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// An artifact was completed and verified.
    Arrived(Digest),
    /// A fetch of it gave up (every source failed).
    NotFetched(Digest),
}

/// Fetches under way: bytes stored so far and the size, by artifact.
type Fetching = Arc<Mutex<HashMap<Digest, (u64, u64)>>>;

/// The store, worked on by its thread.
pub struct Artifacts {
    jobs: SyncSender<Job>,
    root: PathBuf,
    quota: u64,
    pinned: Pinned,
    news: Sender<News>,
    fetching: Fetching,
}

/// A handle that writes into the store from another thread (a fetch),
/// through the same queue as `artifact.put`, waiting its turn.
#[derive(Clone)]
pub struct Writer {
    jobs: SyncSender<Job>,
    news: Sender<News>,
    fetching: Fetching,
}

impl Writer {
    /// How much of `digest` (of `size` bytes) is held.
    pub fn held(&self, digest: Digest, size: u64) -> Result<Held, ApiError> {
        self.wait(Work::Held { digest, size })
    }

    /// Stores one chunk (see [`artifacts::Store::put`]); blocks while the
    /// queue is full.
    pub fn put(
        &self,
        digest: Digest,
        size: u64,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Held, ApiError> {
        let held = self.wait(Work::Put {
            digest,
            size,
            offset,
            data,
            executable: false,
        });
        match &held {
            Ok(Held::Partial(bytes)) => self.progress(digest, Some((*bytes, size))),
            _ => self.progress(digest, None),
        }
        held
    }

    /// Says a fetch of `digest` gave up (calls waiting for it answer).
    pub fn gave_up(&self, digest: Digest) {
        self.progress(digest, None);
        let _ = self.news.try_send(News::NotFetched(digest));
    }

    /// Says `digest` is held (a fetch found it already there).
    pub fn held_already(&self, digest: Digest) {
        self.progress(digest, None);
        let _ = self.news.try_send(News::Arrived(digest));
    }

    /// Removes what is held of `digest` (a fetch that went wrong).
    pub fn remove(&self, digest: Digest) -> Result<(), ApiError> {
        self.progress(digest, None);
        self.wait(Work::Remove(digest)).map(|_| ())
    }

    /// Records how far the fetch of `digest` is (None: not under way).
    fn progress(&self, digest: Digest, held: Option<(u64, u64)>) {
        if let Ok(mut fetching) = self.fetching.lock() {
            match held {
                Some(held) => fetching.insert(digest, held),
                None => fetching.remove(&digest),
            };
        }
    }

    fn wait(&self, work: Work) -> Result<Held, ApiError> {
        let (answer, receiver) = smol::channel::bounded(1);
        let size = match &work {
            Work::Held { size, .. } | Work::Put { size, .. } => *size,
            _ => 0,
        };
        self.jobs
            .send(Job { work, answer })
            .map_err(|_| ApiError::new(code::STORAGE, "the artifact store's thread is gone"))?;
        let value = receiver
            .recv_blocking()
            .map_err(|_| ApiError::new(code::STORAGE, "the artifact store's thread is gone"))??;
        Ok(
            match (
                value.get("complete"),
                value.get("held").and_then(Value::as_u64),
            ) {
                (Some(Value::Bool(true)), _) => Held::Complete,
                (_, Some(0)) | (_, None) => Held::Nothing,
                (_, Some(held)) => Held::Partial(held.min(size)),
            },
        )
    }
}

enum Work {
    Held {
        digest: Digest,
        size: u64,
    },
    Put {
        digest: Digest,
        size: u64,
        offset: u64,
        data: Vec<u8>,
        executable: bool,
    },
    List,
    Remove(Digest),
    /// Collect what the services do not pin (see [`Artifacts::keep`]).
    Collect,
}

/// What the services pin, as the event loop last said; None until it has
/// (nothing is collected before). Held only to copy or replace it.
type Pinned = Arc<Mutex<Option<HashSet<Digest>>>>;

/// How long an artifact no service pins stays (one put before the service
/// file that pins it is deployed).
const GRACE: Duration = Duration::from_secs(3_600);

/// How long an upload nobody adds to stays.
const STALE: Duration = Duration::from_secs(86_400);

/// How long an unpinned artifact stays when a new one needs its room.
const PRESSED_GRACE: Duration = Duration::from_secs(600);

struct Job {
    work: Work,
    answer: Sender<Result<Value, ApiError>>,
}

impl Artifacts {
    /// Starts the thread that owns `store`; each artifact it completes is
    /// told on `arrived` (services waiting for it start then).
    pub fn start(store: Store, arrived: Sender<News>) -> std::io::Result<Artifacts> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let root = store.root().to_owned();
        let quota = store.quota();
        let pinned: Pinned = Arc::default();
        let known = pinned.clone();
        let news = arrived.clone();
        std::thread::Builder::new()
            .name("spore-artifacts".into())
            .spawn(move || {
                for job in queue {
                    let keep = known.lock().ok().and_then(|k| k.clone());
                    if let Work::Collect = job.work {
                        if let Some(pinned) = &keep {
                            collect(&store, pinned, GRACE);
                        }
                        let _ = job.answer.send_blocking(Ok(Value::Null));
                        continue;
                    }
                    // Over the quota: what no service pins makes room first.
                    // (Only a chunk at offset 0 can start one: the others
                    // cost no directory read.)
                    if let (
                        Work::Put {
                            digest,
                            size,
                            offset: 0,
                            ..
                        },
                        Some(pinned),
                    ) = (&job.work, &keep)
                    {
                        let fits = store.held(digest, *size).ok() != Some(Held::Nothing)
                            || store
                                .used()
                                .map_or(true, |used| used.saturating_add(*size) <= store.quota());
                        if !fits {
                            collect(&store, pinned, PRESSED_GRACE);
                        }
                    }
                    // Only a last chunk can complete an artifact: asked of
                    // that one alone whether it was complete before.
                    let completes = match &job.work {
                        Work::Put {
                            digest,
                            size,
                            offset,
                            data,
                            ..
                        } if offset.saturating_add(data.len() as u64) >= *size => {
                            (store.held(digest, *size).ok() != Some(Held::Complete))
                                .then_some(*digest)
                        }
                        _ => None,
                    };
                    let answer = work(&store, job.work);
                    let done = answer
                        .as_ref()
                        .is_ok_and(|a| a.get("complete") == Some(&Value::Bool(true)));
                    if let (Some(digest), true) = (completes, done) {
                        let _ = arrived.try_send(News::Arrived(digest));
                    }
                    let _ = job.answer.send_blocking(answer);
                }
            })?;
        Ok(Artifacts {
            jobs,
            root,
            quota,
            pinned,
            news,
            fetching: Fetching::default(),
        })
    }

    /// Tells the store what the services pin now (at start, and after each
    /// deploy, removal or reload); what else has been there longer than an
    /// hour is removed, and uploads nobody added to for a day.
    pub fn keep(&self, pinned: HashSet<Digest>) {
        if let Ok(mut known) = self.pinned.lock() {
            *known = Some(pinned);
        }
        // A full queue skips this collection; the next one does it.
        drop(self.submit(Work::Collect));
    }

    /// A handle to write into the store from another thread.
    pub fn writer(&self) -> Writer {
        Writer {
            jobs: self.jobs.clone(),
            news: self.news.clone(),
            fetching: self.fetching.clone(),
        }
    }

    /// How far a fetch of `digest` is, when one is under way: bytes stored
    /// and the size.
    pub fn fetching(&self, digest: &Digest) -> Option<(u64, u64)> {
        self.fetching.lock().ok()?.get(digest).copied()
    }

    /// What `node.info` says of the store.
    pub fn info(&self) -> Value {
        json!({ "dir": self.root.display().to_string(), "quota_bytes": self.quota })
    }

    /// `artifact.put`: without `data` or `bytes`, how much of `sha256` the
    /// node holds; with one, one chunk stored at `offset` (`bytes`: the
    /// chunk is `raw`, from the frame after the request).
    pub fn put(
        &self,
        params: &Map<String, Value>,
        raw: Option<Vec<u8>>,
    ) -> Receiver<Result<Value, ApiError>> {
        match put_work(params, raw) {
            Ok(work) => self.submit(work),
            Err(error) => answered(Err(error)),
        }
    }

    /// `artifact.list`.
    pub fn list(&self) -> Receiver<Result<Value, ApiError>> {
        self.submit(Work::List)
    }

    /// `artifact.remove`.
    pub fn remove(&self, params: &Map<String, Value>) -> Receiver<Result<Value, ApiError>> {
        match digest_param(params) {
            Ok(digest) => self.submit(Work::Remove(digest)),
            Err(error) => answered(Err(error)),
        }
    }

    fn submit(&self, work: Work) -> Receiver<Result<Value, ApiError>> {
        let (answer, receiver) = smol::channel::bounded(1);
        match self.jobs.try_send(Job { work, answer }) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                let _ = job.answer.try_send(Err(ApiError::new(
                    code::BUSY,
                    format!("node busy: {QUEUE} artifact writes are queued; try again"),
                )));
            }
            Err(TrySendError::Disconnected(job)) => {
                let _ = job.answer.try_send(Err(ApiError::new(
                    code::STORAGE,
                    "the artifact store's thread is gone",
                )));
            }
        }
        receiver
    }
}

/// An answer already known.
fn answered(answer: Result<Value, ApiError>) -> Receiver<Result<Value, ApiError>> {
    let (tx, rx) = smol::channel::bounded(1);
    let _ = tx.try_send(answer);
    rx
}

fn digest_param(params: &Map<String, Value>) -> Result<Digest, ApiError> {
    let text = params
        .get("sha256")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Digest::parse(text).map_err(|e| {
        ApiError::new(
            code::INVALID_PARAMS,
            proto::cap::capped(&e.to_string(), 200),
        )
    })
}

fn put_work(params: &Map<String, Value>, raw: Option<Vec<u8>>) -> Result<Work, ApiError> {
    let digest = digest_param(params)?;
    let size = params.get("size").and_then(Value::as_u64).unwrap_or(0);
    let invalid = |message: &str| ApiError::new(code::INVALID_PARAMS, message);
    let put = |data| Work::Put {
        digest,
        size,
        offset: params.get("offset").and_then(Value::as_u64).unwrap_or(0),
        data,
        executable: params.get("executable").and_then(Value::as_bool) == Some(true),
    };
    match (params.get("bytes").and_then(Value::as_u64), raw) {
        (Some(_), _) if params.contains_key("data") => {
            return Err(invalid("give data or bytes, not both"))
        }
        (Some(bytes), Some(raw)) if raw.len() as u64 == bytes && raw.len() <= MAX_CHUNK => {
            return Ok(put(raw))
        }
        (Some(_), Some(_)) => {
            return Err(invalid(&format!(
                "the raw chunk is not `bytes` long, or longer than {MAX_CHUNK} bytes"
            )))
        }
        (Some(_), None) => {
            return Err(invalid(
                "bytes: the chunk comes raw in the next frame, which only the signed session carries; send data (base64) here",
            ))
        }
        (None, _) => {}
    }
    let Some(encoded) = params.get("data").and_then(Value::as_str) else {
        return Ok(Work::Held { digest, size });
    };
    // Refused before decoding: base64 is 4 characters per 3 bytes.
    if encoded.len() > MAX_CHUNK.div_ceil(3) * 4 {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("a chunk is at most {MAX_CHUNK} bytes"),
        ));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| {
            ApiError::new(
                code::INVALID_PARAMS,
                "data is not base64 (RFC 4648, with padding)",
            )
        })?;
    Ok(put(data))
}

/// Removes what `pinned` does not hold and has been there longer than
/// `grace`; says so in the journal.
fn collect(store: &Store, pinned: &HashSet<Digest>, grace: Duration) {
    let now = SystemTime::now();
    let before = |age: Duration| now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
    match store.collect(pinned, before(grace), before(STALE)) {
        Ok((0, _)) => {}
        Ok((count, bytes)) => runtime::journal::note(format_args!(
            "artifacts: removed {count} no service pins ({bytes} bytes)"
        )),
        Err(error) => runtime::journal::note(format_args!("artifacts: collecting: {error}")),
    }
}

fn work(store: &Store, work: Work) -> Result<Value, ApiError> {
    let answer = |digest: Digest, size: u64, held: Held| {
        json!({
            "sha256": digest.hex(),
            "size": size,
            "held": held.bytes(size),
            "complete": held == Held::Complete,
            // This node takes chunks raw in frames of their own (bytes).
            "raw": true,
        })
    };
    match work {
        Work::Held { digest, size } => store
            .held(&digest, size)
            .map(|held| answer(digest, size, held)),
        Work::Put {
            digest,
            size,
            offset,
            data,
            executable,
        } => store
            .put(&Upload {
                digest,
                size,
                offset,
                data: &data,
                executable,
            })
            .map(|held| answer(digest, size, held)),
        Work::List => store.entries().map(|entries| {
            let used = entries
                .iter()
                .fold(0u64, |sum, e| sum.saturating_add(e.size));
            let listed: Vec<Value> = entries
                .iter()
                .take(MAX_LISTED)
                .map(|e| {
                    json!({
                        "sha256": e.digest.hex(),
                        "size": e.size,
                        "held": e.held,
                        "complete": e.complete,
                        "executable": e.executable,
                    })
                })
                .collect();
            json!({
                "artifacts": listed,
                "omitted": entries.len().saturating_sub(MAX_LISTED),
                "used_bytes": used,
                "quota_bytes": store.quota(),
            })
        }),
        Work::Remove(digest) => store
            .remove(&digest)
            .map(|removed| json!({ "sha256": digest.hex(), "removed": removed })),
        Work::Collect => Ok(Value::Null),
    }
    .map_err(api_error)
}

/// The store's refusal as a JSON-RPC error: the caller's mistakes are bad
/// params, the disk's are storage errors.
fn api_error(error: ArtifactError) -> ApiError {
    let code = match error {
        ArtifactError::BadDigest(_)
        | ArtifactError::Offset { .. }
        | ArtifactError::PastEnd { .. }
        | ArtifactError::OtherSize { .. }
        | ArtifactError::Mismatch { .. } => code::INVALID_PARAMS,
        ArtifactError::Quota { .. } | ArtifactError::Full { .. } | ArtifactError::Io { .. } => {
            code::STORAGE
        }
    };
    ApiError::new(code, error.to_string())
}
