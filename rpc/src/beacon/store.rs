//! The beacon's durable state in redb (crash-safe commits): enrolled nodes
//! by hostname, and registrations waiting for an operator's approval by
//! hostname and node key (so two keys claiming one name are two entries,
//! and an approval names the one it means).

use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::registration::Registration;

const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");

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
    /// How it was let in: `credential ID`, `approved by SHA256:…`, `open`.
    #[serde(default)]
    pub enrolled_by: String,
    /// The node key's fingerprint (`SHA256:…`).
    #[serde(default)]
    pub fingerprint: String,
}

/// A storage failure, as text for the 500 answer and the log.
pub type StoreError = String;

/// The beacon's database.
pub struct Store {
    db: Database,
}

fn text(e: impl std::fmt::Display) -> StoreError {
    e.to_string()
}

/// The key of a pending entry: hostname, NUL, fingerprint.
fn pending_key(hostname: &str, fingerprint: &str) -> String {
    format!("{hostname}\0{fingerprint}")
}

impl Store {
    /// Opens (or creates) `path`; both tables exist afterwards, so reads
    /// never fail on a fresh file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(text)?;
        let txn = db.begin_write().map_err(text)?;
        txn.open_table(NODES).map_err(text)?;
        txn.open_table(PENDING).map_err(text)?;
        txn.commit().map_err(text)?;
        Ok(Self { db })
    }

    /// The enrolled record for `hostname`.
    pub fn node(&self, hostname: &str) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(text)?;
        let table = txn.open_table(NODES).map_err(text)?;
        let value = table.get(hostname).map_err(text)?;
        Ok(value.and_then(|v| serde_json::from_slice(v.value()).ok()))
    }

    /// Every enrolled record, by hostname.
    pub fn nodes(&self) -> Result<Vec<Record>, StoreError> {
        self.all(NODES)
    }

    /// Every pending registration, by hostname then fingerprint.
    pub fn pending(&self) -> Result<Vec<Record>, StoreError> {
        self.all(PENDING)
    }

    fn all(&self, which: TableDefinition<&str, &[u8]>) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(text)?;
        let table = txn.open_table(which).map_err(text)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(text)? {
            let (_, value) = entry.map_err(text)?;
            if let Ok(record) = serde_json::from_slice(value.value()) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Stores `record` as enrolled (committed before this returns) and
    /// drops any pending entries for its hostname.
    pub fn put_node(&self, record: &Record) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(text)?;
        let hostname = record.registration.hostname.as_str();
        let txn = self.db.begin_write().map_err(text)?;
        {
            let mut nodes = txn.open_table(NODES).map_err(text)?;
            nodes.insert(hostname, bytes.as_slice()).map_err(text)?;
            let mut pending = txn.open_table(PENDING).map_err(text)?;
            let prefix = format!("{hostname}\0");
            pending
                .retain(|key, _| !key.starts_with(&prefix))
                .map_err(text)?;
        }
        txn.commit().map_err(text)
    }

    /// The pending entry for `hostname` with key `fingerprint`.
    pub fn pending_entry(
        &self,
        hostname: &str,
        fingerprint: &str,
    ) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(text)?;
        let table = txn.open_table(PENDING).map_err(text)?;
        let value = table
            .get(pending_key(hostname, fingerprint).as_str())
            .map_err(text)?;
        Ok(value.and_then(|v| serde_json::from_slice(v.value()).ok()))
    }

    /// Stores `record` as pending. When `limit` entries are already
    /// pending, the one seen longest ago makes room (a flood of junk
    /// claims pushes out junk; a real node keeps retrying and comes back).
    /// Returns whether one was evicted.
    pub fn put_pending(&self, record: &Record, limit: usize) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec(record).map_err(text)?;
        let key = pending_key(&record.registration.hostname, &record.fingerprint);
        let txn = self.db.begin_write().map_err(text)?;
        let mut evicted = false;
        {
            let mut table = txn.open_table(PENDING).map_err(text)?;
            let known = table.get(key.as_str()).map_err(text)?.is_some();
            if !known && table.len().map_err(text)? >= limit.max(1) as u64 {
                let mut oldest: Option<(String, u64)> = None;
                for entry in table.iter().map_err(text)? {
                    let (k, v) = entry.map_err(text)?;
                    let seen = serde_json::from_slice::<Record>(v.value())
                        .map(|r| r.last_seen)
                        .unwrap_or(0);
                    if oldest.as_ref().is_none_or(|(_, s)| seen < *s) {
                        oldest = Some((k.value().to_owned(), seen));
                    }
                }
                if let Some((victim, _)) = oldest {
                    table.remove(victim.as_str()).map_err(text)?;
                    evicted = true;
                }
            }
            table.insert(key.as_str(), bytes.as_slice()).map_err(text)?;
        }
        txn.commit().map_err(text)?;
        Ok(evicted)
    }

    /// Removes `hostname`: its enrolled record and every pending entry.
    /// Returns how many entries went.
    pub fn remove(&self, hostname: &str) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(text)?;
        let mut removed = 0;
        {
            let mut nodes = txn.open_table(NODES).map_err(text)?;
            if nodes.remove(hostname).map_err(text)?.is_some() {
                removed += 1;
            }
            let mut pending = txn.open_table(PENDING).map_err(text)?;
            let prefix = format!("{hostname}\0");
            let before = pending.len().map_err(text)?;
            pending
                .retain(|key, _| !key.starts_with(&prefix))
                .map_err(text)?;
            removed += usize::try_from(before.saturating_sub(pending.len().map_err(text)?))
                .unwrap_or(usize::MAX);
        }
        txn.commit().map_err(text)?;
        Ok(removed)
    }
}
