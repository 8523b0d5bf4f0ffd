//! The store in a redb file (crash-safe commits): the default for a single
//! beacon. Records are JSON under their keys; a batch is one write
//! transaction.

use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition};

use super::{Backend, Found, Read, Record, StoreError, Write, Written};

const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");
const NONCES: TableDefinition<&str, u64> = TableDefinition::new("nonces");

fn text(e: impl std::fmt::Display) -> StoreError {
    e.to_string()
}

/// The key of a pending entry: hostname, NUL, fingerprint.
fn pending_key(hostname: &str, fingerprint: &str) -> String {
    format!("{hostname}\0{fingerprint}")
}

/// A redb database.
pub(crate) struct Embedded {
    db: Database,
}

impl Embedded {
    /// Opens (or creates) `path`; every table exists afterwards, so reads
    /// never fail on a fresh file.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(text)?;
        }
        let db = Database::create(path).map_err(text)?;
        let txn = db.begin_write().map_err(text)?;
        txn.open_table(NODES).map_err(text)?;
        txn.open_table(PENDING).map_err(text)?;
        txn.open_table(NONCES).map_err(text)?;
        txn.commit().map_err(text)?;
        Ok(Self { db })
    }

    fn get(&self, which: TableDefinition<&str, &[u8]>, key: &str) -> Result<Found, StoreError> {
        let txn = self.db.begin_read().map_err(text)?;
        let table = txn.open_table(which).map_err(text)?;
        let value = table.get(key).map_err(text)?;
        Ok(Found::One(value.and_then(|v| {
            serde_json::from_slice(v.value()).ok().map(Box::new)
        })))
    }

    fn all(&self, which: TableDefinition<&str, &[u8]>) -> Result<Found, StoreError> {
        let txn = self.db.begin_read().map_err(text)?;
        let table = txn.open_table(which).map_err(text)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(text)? {
            let (_, value) = entry.map_err(text)?;
            if let Ok(record) = serde_json::from_slice(value.value()) {
                out.push(record);
            }
        }
        Ok(Found::Many(out))
    }
}

/// Drops every pending entry of `hostname`; returns how many went.
fn drop_pending(pending: &mut Table<&str, &[u8]>, hostname: &str) -> Result<usize, StoreError> {
    let prefix = format!("{hostname}\0");
    let before = pending.len().map_err(text)?;
    pending
        .retain(|key, _| !key.starts_with(&prefix))
        .map_err(text)?;
    let after = pending.len().map_err(text)?;
    Ok(usize::try_from(before.saturating_sub(after)).unwrap_or(usize::MAX))
}

/// Makes room for one more pending entry when `limit` are pending: of the
/// source holding the most entries (its prefix; ties go to the one seen
/// longest ago), the entry seen longest ago goes, so a flood from a few
/// sources flushes its own entries, not an honest node's; entries an
/// operator holds (until after `now`) go only when all are held. Returns
/// whether one went.
fn evict_fairly(
    pending: &mut Table<&str, &[u8]>,
    limit: usize,
    now: u64,
) -> Result<bool, StoreError> {
    if pending.len().map_err(text)? < limit.max(1) as u64 {
        return Ok(false);
    }
    let mut entries: Vec<super::Candidate> = Vec::new();
    for entry in pending.iter().map_err(text)? {
        let (k, v) = entry.map_err(text)?;
        let (seen, group, held) = serde_json::from_slice::<Record>(v.value())
            .map(|r| (r.last_seen, group_of(&r), r.held_until > now))
            .unwrap_or_default();
        entries.push(super::Candidate {
            key: k.value().to_owned(),
            seen,
            group,
            held,
        });
    }
    let victim = super::fair_victim(&entries);
    match victim {
        Some(victim) => {
            pending.remove(victim.as_str()).map_err(text)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The pending table's share a record counts against (records stored
/// before the prefix was kept count by their address).
fn group_of(record: &Record) -> String {
    if record.source_prefix.is_empty() {
        record.source.clone()
    } else {
        record.source_prefix.clone()
    }
}

impl Backend for Embedded {
    fn read(&mut self, read: &Read) -> Result<Found, StoreError> {
        match read {
            Read::Node(hostname) => self.get(NODES, hostname),
            Read::Nodes => self.all(NODES),
            Read::Pending => self.all(PENDING),
            Read::PendingEntry(hostname, fingerprint) => {
                self.get(PENDING, &pending_key(hostname, fingerprint))
            }
        }
    }

    fn write(&mut self, writes: &[&Write]) -> Result<Vec<Written>, StoreError> {
        let txn = self.db.begin_write().map_err(text)?;
        let mut out = Vec::with_capacity(writes.len());
        {
            let mut nodes = txn.open_table(NODES).map_err(text)?;
            let mut pending = txn.open_table(PENDING).map_err(text)?;
            let mut nonces = txn.open_table(NONCES).map_err(text)?;
            for write in writes {
                out.push(match write {
                    Write::Node { record, expect } => {
                        let hostname = record.registration.hostname.as_str();
                        let stored: Option<Record> = nodes
                            .get(hostname)
                            .map_err(text)?
                            .and_then(|v| serde_json::from_slice(v.value()).ok());
                        if expect.matches(stored.as_ref()) {
                            let bytes = serde_json::to_vec(record).map_err(text)?;
                            nodes.insert(hostname, bytes.as_slice()).map_err(text)?;
                            drop_pending(&mut pending, hostname)?;
                            Written::Node(true)
                        } else {
                            Written::Node(false)
                        }
                    }
                    Write::Pending { record, limit } => {
                        let key = pending_key(&record.registration.hostname, &record.fingerprint);
                        let known: Option<Record> = pending
                            .get(key.as_str())
                            .map_err(text)?
                            .and_then(|v| serde_json::from_slice(v.value()).ok());
                        let evicted = known.is_none()
                            && evict_fairly(&mut pending, *limit, record.last_seen)?;
                        // A hold outlives the node's next registration.
                        let mut record = record.clone();
                        if let Some(known) = known {
                            record.held_until = record.held_until.max(known.held_until);
                        }
                        let bytes = serde_json::to_vec(&record).map_err(text)?;
                        pending
                            .insert(key.as_str(), bytes.as_slice())
                            .map_err(text)?;
                        Written::Pending(evicted)
                    }
                    Write::Hold {
                        hostname,
                        fingerprint,
                        until,
                    } => {
                        let prefix = format!("{hostname}\0");
                        let mut held = Vec::new();
                        for entry in pending.range(prefix.as_str()..).map_err(text)? {
                            let (k, v) = entry.map_err(text)?;
                            let Some(rest) = k.value().strip_prefix(prefix.as_str()) else {
                                break;
                            };
                            if !fingerprint.is_empty() && rest != fingerprint {
                                continue;
                            }
                            if let Ok(mut record) = serde_json::from_slice::<Record>(v.value()) {
                                record.held_until = *until;
                                held.push((k.value().to_owned(), record));
                            }
                        }
                        for (key, record) in &held {
                            let bytes = serde_json::to_vec(record).map_err(text)?;
                            pending
                                .insert(key.as_str(), bytes.as_slice())
                                .map_err(text)?;
                        }
                        Written::Held(held.len())
                    }
                    Write::Remove { hostname } => {
                        let node =
                            usize::from(nodes.remove(hostname.as_str()).map_err(text)?.is_some());
                        Written::Removed(node + drop_pending(&mut pending, hostname)?)
                    }
                    Write::Nonce {
                        nonce,
                        expires,
                        now,
                        limit,
                    } => {
                        nonces.retain(|_, until| until > *now).map_err(text)?;
                        let known = nonces.get(nonce.as_str()).map_err(text)?.is_some();
                        if known || nonces.len().map_err(text)? >= *limit as u64 {
                            Written::Nonce(false)
                        } else {
                            nonces.insert(nonce.as_str(), *expires).map_err(text)?;
                            Written::Nonce(true)
                        }
                    }
                });
            }
        }
        txn.commit().map_err(text)?;
        Ok(out)
    }
}
