//! The beacon's durable state: enrolled nodes by hostname, registrations
//! waiting for an operator's approval by hostname and node key (so two keys
//! claiming one name are two entries, and an approval names the one it
//! means), and the nonces of operators' orders.
//!
//! Two backends keep it: a redb file for a single beacon ([`embedded`]),
//! and PostgreSQL for several replicas serving one fleet ([`shared`]). Both
//! run on a thread of their own behind one [`Store`] handle, so the beacon's
//! event loop never waits on a disk or a database: it sends a job and
//! awaits the answer. The thread takes every job that is queued when it
//! wakes and applies their writes in one transaction (a group commit), and
//! answers a write only once its transaction is committed.
//!
//! Node writes are compare-and-set ([`Expect`]): a registration is decided
//! on what was read, and written only if that is still what is stored, so
//! two replicas deciding on one hostname at once cannot both win.

mod embedded;
mod location;
#[cfg(feature = "postgres")]
mod shared;

use serde::{Deserialize, Serialize};
use smol::channel::{Receiver, Sender};

pub use location::{has_password, Location};

use rpc::registration::Registration;

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
    /// The share of the pending table that address counts against: the
    /// address itself (IPv4), or its /64 (IPv6). A flood from one source
    /// evicts its own pending entries first.
    #[serde(default)]
    pub source_prefix: String,
    /// How it was let in: `credential ID`, `approved by SHA256:…`, `open`.
    #[serde(default)]
    pub enrolled_by: String,
    /// The node key's fingerprint (`SHA256:…`).
    #[serde(default)]
    pub fingerprint: String,
    /// For a pending entry: until when (Unix seconds) an operator asked to
    /// keep it (`sporectl nodes hold`); a held entry is not evicted to
    /// make room while any entry that is not held remains. 0: not held.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_until: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// How long an operator's hold keeps a pending entry: a day to decide.
pub const HOLD_SECS: u64 = 24 * 3600;

/// One pending entry as eviction sees it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Its key in the table.
    pub key: String,
    /// When it last registered.
    pub seen: u64,
    /// Its source group (see [`Record::source_prefix`]).
    pub group: String,
    /// Whether an operator's hold on it is still running.
    pub held: bool,
}

/// Of pending entries, the one to evict: among those not held (all of
/// them, when every one is held), the group holding the most entries
/// (ties: the group whose oldest entry is oldest), and in it the entry
/// seen longest ago.
pub(crate) fn fair_victim(entries: &[Candidate]) -> Option<String> {
    let unheld: Vec<&Candidate> = entries.iter().filter(|c| !c.held).collect();
    let pool: Vec<&Candidate> = if unheld.is_empty() {
        entries.iter().collect()
    } else {
        unheld
    };
    let mut groups: std::collections::HashMap<&str, (usize, u64)> =
        std::collections::HashMap::new();
    for entry in &pool {
        let slot = groups.entry(entry.group.as_str()).or_insert((0, u64::MAX));
        slot.0 += 1;
        slot.1 = slot.1.min(entry.seen);
    }
    let heaviest = groups
        .iter()
        .max_by_key(|(_, (count, oldest))| (*count, std::cmp::Reverse(*oldest)))
        .map(|(group, _)| *group)?;
    pool.iter()
        .filter(|entry| entry.group == heaviest)
        .min_by_key(|entry| entry.seen)
        .map(|entry| entry.key.clone())
}

/// A storage failure, as text for the 500 answer and the log.
pub type StoreError = String;

/// Jobs queued for the store's thread, at most; a beacon task that finds
/// the queue full waits (the connection table bounds how many can).
const QUEUE: usize = 1024;

/// Jobs taken into one batch (one transaction), at most.
const MAX_BATCH: usize = 256;

/// What a node write expects to find under its hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No enrolled node.
    Absent,
    /// The record that was read: this key, this registration timestamp.
    Holds {
        /// Its fingerprint.
        fingerprint: String,
        /// Its registration's timestamp.
        timestamp: u64,
    },
}

impl Expect {
    /// What `record` (as read) leaves a write to expect.
    pub fn from_read(record: Option<&Record>) -> Self {
        match record {
            Some(record) => Expect::Holds {
                fingerprint: record.fingerprint.clone(),
                timestamp: record.registration.timestamp,
            },
            None => Expect::Absent,
        }
    }

    /// Whether `stored` is what this expects.
    pub(crate) fn matches(&self, stored: Option<&Record>) -> bool {
        match (self, stored) {
            (Expect::Absent, None) => true,
            (
                Expect::Holds {
                    fingerprint,
                    timestamp,
                },
                Some(record),
            ) => record.fingerprint == *fingerprint && record.registration.timestamp == *timestamp,
            _ => false,
        }
    }
}

/// One change, applied with the others of its batch in one transaction.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    /// Store `record` as enrolled if [`Expect`] holds, and drop the pending
    /// entries of its hostname.
    Node { record: Record, expect: Expect },
    /// Store `record` as pending; when `limit` are pending, the one seen
    /// longest ago makes room.
    Pending { record: Record, limit: usize },
    /// Drop a hostname: its node and its pending entries.
    Remove { hostname: String },
    /// Keep the pending entries of `hostname` (only the one of
    /// `fingerprint`, when not empty) until `until`.
    Hold {
        hostname: String,
        fingerprint: String,
        until: u64,
    },
    /// Remember an order's nonce until `expires`, unless it is known (or
    /// `limit` unexpired ones are).
    Nonce {
        nonce: String,
        expires: u64,
        now: u64,
        limit: usize,
    },
}

impl Write {
    /// The hostname a write touches; batches apply writes in this order
    /// (stably), so two replicas' transactions lock rows in one order.
    fn hostname(&self) -> &str {
        match self {
            Write::Node { record, .. } | Write::Pending { record, .. } => {
                &record.registration.hostname
            }
            Write::Remove { hostname } | Write::Hold { hostname, .. } => hostname,
            Write::Nonce { .. } => "",
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// A node write: whether it was applied (its expectation held).
    Node(bool),
    /// A pending write: whether an older entry was evicted.
    Pending(bool),
    /// A removal: how many entries went.
    Removed(usize),
    /// A hold: how many pending entries it holds.
    Held(usize),
    /// A nonce: whether it was fresh (and is now remembered).
    Nonce(bool),
}

/// One read.
#[derive(Debug, Clone)]
pub(crate) enum Read {
    /// The enrolled node of a hostname.
    Node(String),
    /// Every enrolled node, by hostname.
    Nodes,
    /// Every pending entry, by hostname then fingerprint.
    Pending,
    /// The pending entry of a hostname and key fingerprint.
    PendingEntry(String, String),
}

/// What a read found.
#[derive(Debug)]
pub(crate) enum Found {
    /// One record or none.
    One(Option<Box<Record>>),
    /// Many.
    Many(Vec<Record>),
}

/// A storage engine, driven by the store's thread.
pub(crate) trait Backend: Send {
    /// Answers one read.
    fn read(&mut self, read: &Read) -> Result<Found, StoreError>;
    /// The enrolled nodes of several hostnames, in their order (one query
    /// where the engine allows it).
    fn nodes_named(&mut self, hostnames: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        hostnames
            .iter()
            .map(|h| match self.read(&Read::Node((*h).to_owned()))? {
                Found::One(record) => Ok(record.map(|r| *r)),
                Found::Many(_) => Err(mixed()),
            })
            .collect()
    }
    /// Applies `writes` in this order in one transaction, committed before
    /// it returns; one answer per write.
    fn write(&mut self, writes: &[&Write]) -> Result<Vec<Written>, StoreError>;
}

enum Job {
    Read(Read, Sender<Result<Found, StoreError>>),
    Write(Box<Write>, Sender<Result<Written, StoreError>>),
}

/// The beacon's handle on its store.
pub struct Store {
    jobs: Sender<Job>,
}

impl Store {
    /// Opens `location` (creating the file, or applying the database's
    /// migrations) and starts the store's thread.
    pub fn open(location: &Location) -> Result<Self, StoreError> {
        let backend: Box<dyn Backend> = match location {
            Location::File(path) => Box::new(embedded::Embedded::open(path)?),
            #[cfg(feature = "postgres")]
            Location::Postgres {
                url,
                password_file,
                ca_file,
            } => Box::new(shared::Shared::open(
                url,
                password_file.as_deref(),
                ca_file.as_deref(),
            )?),
            #[cfg(not(feature = "postgres"))]
            Location::Postgres { .. } => {
                return Err("this build has no PostgreSQL store (feature `postgres`)".into())
            }
        };
        let (jobs, queue) = smol::channel::bounded(QUEUE);
        std::thread::Builder::new()
            .name("beacon-store".into())
            .spawn(move || serve(backend, &queue))
            .map_err(|e| format!("cannot start the store's thread: {e}"))?;
        Ok(Self { jobs })
    }

    async fn read(&self, read: Read) -> Result<Found, StoreError> {
        let (reply, answer) = smol::channel::bounded(1);
        self.jobs
            .send(Job::Read(read, reply))
            .await
            .map_err(|_| gone())?;
        answer.recv().await.map_err(|_| gone())?
    }

    async fn write(&self, write: Write) -> Result<Written, StoreError> {
        let (reply, answer) = smol::channel::bounded(1);
        self.jobs
            .send(Job::Write(Box::new(write), reply))
            .await
            .map_err(|_| gone())?;
        answer.recv().await.map_err(|_| gone())?
    }

    async fn one(&self, read: Read) -> Result<Option<Record>, StoreError> {
        match self.read(read).await? {
            Found::One(record) => Ok(record.map(|r| *r)),
            Found::Many(_) => Err(mixed()),
        }
    }

    async fn many(&self, read: Read) -> Result<Vec<Record>, StoreError> {
        match self.read(read).await? {
            Found::Many(records) => Ok(records),
            Found::One(_) => Err(mixed()),
        }
    }

    /// The enrolled record for `hostname`.
    pub async fn node(&self, hostname: &str) -> Result<Option<Record>, StoreError> {
        self.one(Read::Node(hostname.to_owned())).await
    }

    /// Every enrolled record, by hostname.
    pub async fn nodes(&self) -> Result<Vec<Record>, StoreError> {
        self.many(Read::Nodes).await
    }

    /// Every pending registration, by hostname then fingerprint.
    pub async fn pending(&self) -> Result<Vec<Record>, StoreError> {
        self.many(Read::Pending).await
    }

    /// The pending entry for `hostname` with key `fingerprint`.
    pub async fn pending_entry(
        &self,
        hostname: &str,
        fingerprint: &str,
    ) -> Result<Option<Record>, StoreError> {
        self.one(Read::PendingEntry(
            hostname.to_owned(),
            fingerprint.to_owned(),
        ))
        .await
    }

    /// Stores `record` as enrolled if `expect` still holds (committed
    /// before this returns) and drops the pending entries of its hostname.
    /// `Ok(false)`: someone else changed the node since it was read.
    pub async fn put_node(&self, record: Record, expect: Expect) -> Result<bool, StoreError> {
        match self.write(Write::Node { record, expect }).await? {
            Written::Node(applied) => Ok(applied),
            _ => Err(mixed()),
        }
    }

    /// Stores `record` as pending. When `limit` entries are already
    /// pending, the one seen longest ago makes room (a flood of junk
    /// claims pushes out junk; a real node keeps retrying and comes back).
    /// Returns whether one was evicted.
    pub async fn put_pending(&self, record: Record, limit: usize) -> Result<bool, StoreError> {
        match self.write(Write::Pending { record, limit }).await? {
            Written::Pending(evicted) => Ok(evicted),
            _ => Err(mixed()),
        }
    }

    /// Removes `hostname`: its enrolled record and every pending entry.
    /// Returns how many entries went.
    pub async fn remove(&self, hostname: &str) -> Result<usize, StoreError> {
        let hostname = hostname.to_owned();
        match self.write(Write::Remove { hostname }).await? {
            Written::Removed(n) => Ok(n),
            _ => Err(mixed()),
        }
    }

    /// Keeps the pending entries of `hostname` (only the one with key
    /// `fingerprint`, when not empty) until `until`; how many it holds.
    pub async fn hold(
        &self,
        hostname: &str,
        fingerprint: &str,
        until: u64,
    ) -> Result<usize, StoreError> {
        let write = Write::Hold {
            hostname: hostname.to_owned(),
            fingerprint: fingerprint.to_owned(),
            until,
        };
        match self.write(write).await? {
            Written::Held(n) => Ok(n),
            _ => Err(mixed()),
        }
    }

    /// Remembers an order's `nonce` until `expires` (every replica sees
    /// it); `Ok(false)` when it was seen before, or when `limit` unexpired
    /// nonces are remembered.
    pub async fn take_nonce(
        &self,
        nonce: &str,
        expires: u64,
        now: u64,
        limit: usize,
    ) -> Result<bool, StoreError> {
        let nonce = nonce.to_owned();
        match self
            .write(Write::Nonce {
                nonce,
                expires,
                now,
                limit,
            })
            .await?
        {
            Written::Nonce(fresh) => Ok(fresh),
            _ => Err(mixed()),
        }
    }
}

fn gone() -> StoreError {
    "the store's thread is gone".into()
}

fn mixed() -> StoreError {
    "the store answered another question".into()
}

/// The store's thread: takes what is queued, applies the writes in one
/// transaction, answers them, then answers the reads.
fn serve(mut backend: Box<dyn Backend>, queue: &Receiver<Job>) {
    while let Ok(first) = queue.recv_blocking() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        for job in batch {
            match job {
                Job::Write(write, reply) => writes.push((write, reply)),
                Job::Read(read, reply) => reads.push((read, reply)),
            }
        }
        if !writes.is_empty() {
            writes.sort_by(|a, b| a.0.hostname().cmp(b.0.hostname()));
            let batch: Vec<&Write> = writes.iter().map(|(write, _)| write.as_ref()).collect();
            answer_each(&writes, backend.write(&batch));
        }
        // The node lookups of every registration in the batch: one query.
        let (lookups, others): (Vec<_>, Vec<_>) = reads
            .into_iter()
            .partition(|(read, _)| matches!(read, Read::Node(_)));
        if !lookups.is_empty() {
            let hostnames: Vec<&str> = lookups
                .iter()
                .map(|(read, _)| match read {
                    Read::Node(hostname) => hostname.as_str(),
                    _ => "",
                })
                .collect();
            let found = backend.nodes_named(&hostnames).map(|records| {
                records
                    .into_iter()
                    .map(|record| Found::One(record.map(Box::new)))
                    .collect()
            });
            answer_each(&lookups, found);
        }
        for (read, reply) in others {
            let _ = reply.try_send(backend.read(&read));
        }
    }
}

/// Sends each job of a batch its answer, or the batch's error to all.
fn answer_each<J, T>(
    jobs: &[(J, Sender<Result<T, StoreError>>)],
    answers: Result<Vec<T>, StoreError>,
) {
    match answers {
        Ok(answers) if answers.len() == jobs.len() => {
            for ((_, reply), answer) in jobs.iter().zip(answers) {
                let _ = reply.try_send(Ok(answer));
            }
        }
        Ok(_) => {
            for (_, reply) in jobs {
                let _ = reply.try_send(Err("the store lost count of a batch".into()));
            }
        }
        Err(error) => {
            for (_, reply) in jobs {
                let _ = reply.try_send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::location::without_password;
    use super::*;

    #[test]
    fn a_database_url_is_logged_without_user_info_or_query_values() {
        assert_eq!(
            without_password("postgres://beacon:s3cret@db.example:5432/fleet?sslmode=require"),
            "postgres://db.example:5432/fleet?sslmode=…"
        );
        assert_eq!(
            without_password("postgresql://db/fleet"),
            "postgresql://db/fleet"
        );
        assert_eq!(
            without_password("postgres://u@h/d?pass%77ord=PW&sslmode=disable"),
            "postgres://h/d?password=…&sslmode=…"
        );
        assert_eq!(
            Location::choose(Some("postgres://u:p@h/d"), Path::new("/x"))
                .unwrap()
                .describe(),
            "postgres://h/d"
        );
        assert_eq!(
            Location::choose(None, Path::new("/x")).unwrap(),
            Location::File(PathBuf::from("/x/beacon.redb"))
        );
    }

    #[test]
    fn the_heaviest_source_gives_up_its_oldest_pending_entry() {
        let entry = |key: &str, seen: u64, group: &str| Candidate {
            key: key.to_owned(),
            seen,
            group: group.to_owned(),
            held: false,
        };
        let flood = vec![
            entry("honest", 1, "10.0.0.1"),
            entry("f1", 5, "10.9.9.9"),
            entry("f2", 3, "10.9.9.9"),
            entry("f3", 9, "10.9.9.9"),
            entry("other", 2, "10.0.0.2"),
        ];
        assert_eq!(fair_victim(&flood).as_deref(), Some("f2"));
        // One entry each: the one seen longest ago, as before.
        let even = vec![entry("a", 4, "x"), entry("b", 2, "y"), entry("c", 3, "z")];
        assert_eq!(fair_victim(&even).as_deref(), Some("b"));
        assert_eq!(fair_victim(&[]), None);
    }

    #[test]
    fn a_held_entry_goes_only_when_every_entry_is_held() {
        let entry = |key: &str, seen: u64, held: bool| Candidate {
            key: key.to_owned(),
            seen,
            group: "10.9.9.9".to_owned(),
            held,
        };
        // One source floods beside the held one: its own go first, even
        // though the held entry is the oldest of the heaviest source.
        let shared = vec![
            entry("seen", 1, true),
            entry("f1", 5, false),
            entry("f2", 3, false),
        ];
        assert_eq!(fair_victim(&shared).as_deref(), Some("f2"));
        let all_held = vec![entry("a", 4, true), entry("b", 2, true)];
        assert_eq!(fair_victim(&all_held).as_deref(), Some("b"));
    }

    #[test]
    fn a_password_is_found_however_it_is_spelled() {
        for url in [
            "postgres://u:p@h/d",
            "postgres://u@h/d?password=p",
            "postgres://spore@h/db?pass%77ord=PW",
            "postgres://spore@h/db?%70assword=PW",
            "postgres://spore@h/db?sslmode=disable&%70%61%73%73%77%6f%72%64=PW",
            "postgresql://u:@h/d",
        ] {
            assert!(has_password(url), "{url}");
        }
        for url in [
            "postgres://u@h/d?host=/run/postgresql",
            "postgres://h/d",
            "postgres://u@h/d?passwordless=1",
        ] {
            assert!(!has_password(url), "{url}");
        }
        let typo = Location::choose(Some("postgress://u:p@h/d"), Path::new("/x")).unwrap_err();
        assert!(typo.contains("postgress://h/d"), "{typo}");
    }
}
