//! The store in PostgreSQL, shared by several beacon replicas: any of them
//! can die and the others go on with every acknowledged write.
//!
//! The schema is versioned ([`MIGRATIONS`]) and brought up to date at
//! start, under an advisory lock so replicas starting together apply each
//! migration once. A batch is one transaction; node writes are
//! compare-and-set on the row (`INSERT … ON CONFLICT DO NOTHING`, `UPDATE …
//! WHERE fingerprint = … AND registered_at = …`), so two replicas deciding
//! on one hostname cannot both win, and rows are touched in hostname order,
//! so their transactions do not deadlock. A batch that meets a deadlock or
//! a serialization failure anyway is tried once more.
//!
//! The connection is made again when it drops (the answer in flight is an
//! error, a 500 the node retries).

use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use postgres::error::SqlState;
use postgres::types::Json;
use postgres::{Client, Config, NoTls, Statement};

use super::{Backend, Found, Read, Record, StoreError, Write, Written};

/// One schema change: its version, what it does, its SQL.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// The schema, oldest first. Never edit a released entry: add one.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "nodes, pending registrations, order nonces",
    sql: "
        CREATE TABLE beacon_nodes (
            hostname      text   PRIMARY KEY,
            fingerprint   text   NOT NULL,
            registered_at bigint NOT NULL,
            last_seen     bigint NOT NULL,
            record        jsonb  NOT NULL
        );
        CREATE TABLE beacon_pending (
            hostname      text   NOT NULL,
            fingerprint   text   NOT NULL,
            registered_at bigint NOT NULL,
            last_seen     bigint NOT NULL,
            record        jsonb  NOT NULL,
            PRIMARY KEY (hostname, fingerprint)
        );
        CREATE INDEX beacon_pending_last_seen ON beacon_pending (last_seen);
        CREATE TABLE beacon_nonces (
            nonce   text   PRIMARY KEY,
            expires bigint NOT NULL
        );
        CREATE INDEX beacon_nonces_expires ON beacon_nonces (expires);
    ",
}];

/// The advisory lock key migrations and pending-table evictions hold
/// ("spore" in ASCII, then 1 and 2).
const MIGRATION_LOCK: i64 = 0x7370_6f72_6500_0001;
const PENDING_LOCK: i64 = 0x7370_6f72_6500_0002;

/// Connect attempts give up after this long unless the URL says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// PostgreSQL's error, with what caused it (the driver's `Display` alone
/// often says only "db error").
fn text(error: postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) => format!("PostgreSQL: {}: {}", db.severity(), db.message()),
        None => {
            let mut out = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                out.push_str(": ");
                out.push_str(&cause.to_string());
                source = cause.source();
            }
            out
        }
    }
}

/// The prepared statements of one connection.
struct Statements {
    nodes: Statement,
    pending: Statement,
    pending_entry: Statement,
    insert_node: Statement,
    named_nodes: Statement,
    update_node: Statement,
    drop_pending: Statement,
    pending_known: Statement,
    pending_count: Statement,
    evict_pending: Statement,
    upsert_pending: Statement,
    hold_pending: Statement,
    remove_node: Statement,
    expire_nonces: Statement,
    count_nonces: Statement,
    insert_nonce: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Self, postgres::Error> {
        Ok(Self {
            nodes: client.prepare("SELECT record FROM beacon_nodes ORDER BY hostname")?,
            pending: client
                .prepare("SELECT record FROM beacon_pending ORDER BY hostname, fingerprint")?,
            pending_entry: client.prepare(
                "SELECT record FROM beacon_pending WHERE hostname = $1 AND fingerprint = $2",
            )?,
            // A node written drops its pending entries in the same
            // statement (one round trip per write).
            insert_node: client.prepare(
                "WITH written AS (
                     INSERT INTO beacon_nodes (hostname, fingerprint, registered_at, last_seen, record)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hostname) DO NOTHING
                     RETURNING hostname
                 ), dropped AS (
                     DELETE FROM beacon_pending WHERE hostname IN (SELECT hostname FROM written)
                 )
                 SELECT count(*) FROM written",
            )?,
            update_node: client.prepare(
                "WITH written AS (
                     UPDATE beacon_nodes
                     SET fingerprint = $2, registered_at = $3, last_seen = $4, record = $5
                     WHERE hostname = $1 AND fingerprint = $6 AND registered_at = $7
                     RETURNING hostname
                 ), dropped AS (
                     DELETE FROM beacon_pending WHERE hostname IN (SELECT hostname FROM written)
                 )
                 SELECT count(*) FROM written",
            )?,
            named_nodes: client.prepare(
                "SELECT hostname, record FROM beacon_nodes WHERE hostname = ANY($1)",
            )?,
            drop_pending: client.prepare("DELETE FROM beacon_pending WHERE hostname = $1")?,
            pending_known: client.prepare(
                "SELECT 1 FROM beacon_pending WHERE hostname = $1 AND fingerprint = $2",
            )?,
            pending_count: client.prepare("SELECT count(*) FROM beacon_pending")?,
            // The source holding the most pending entries gives one up
            // (ties: the source whose oldest entry is oldest), its oldest:
            // a flood from a few sources flushes its own entries. Entries
            // an operator holds (past $1, now) go only when all are held.
            evict_pending: client.prepare(
                "WITH grouped AS (
                   SELECT hostname, fingerprint, last_seen,
                          coalesce(nullif(record->>'source_prefix', ''), record->>'source') AS grp,
                          coalesce((record->>'held_until')::bigint, 0) > $1 AS held
                   FROM beacon_pending),
                 candidates AS (
                   SELECT * FROM grouped
                   WHERE NOT held OR NOT EXISTS (SELECT 1 FROM grouped WHERE NOT held)),
                 heaviest AS (
                   SELECT grp FROM candidates GROUP BY grp
                   ORDER BY count(*) DESC, min(last_seen) LIMIT 1)
                 DELETE FROM beacon_pending WHERE (hostname, fingerprint) =
                 (SELECT hostname, fingerprint FROM candidates
                  WHERE grp = (SELECT grp FROM heaviest) ORDER BY last_seen LIMIT 1)",
            )?,
            // A hold outlives the node's next registration.
            upsert_pending: client.prepare(
                "INSERT INTO beacon_pending (hostname, fingerprint, registered_at, last_seen, record)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (hostname, fingerprint) DO UPDATE
                 SET registered_at = EXCLUDED.registered_at, last_seen = EXCLUDED.last_seen,
                     record = CASE
                       WHEN coalesce((beacon_pending.record->>'held_until')::bigint, 0) >
                            coalesce((EXCLUDED.record->>'held_until')::bigint, 0)
                       THEN jsonb_set(EXCLUDED.record, '{held_until}', beacon_pending.record->'held_until')
                       ELSE EXCLUDED.record END",
            )?,
            hold_pending: client.prepare(
                "UPDATE beacon_pending
                 SET record = jsonb_set(record, '{held_until}', to_jsonb($3::bigint))
                 WHERE hostname = $1 AND ($2 = '' OR fingerprint = $2)",
            )?,
            remove_node: client.prepare("DELETE FROM beacon_nodes WHERE hostname = $1")?,
            expire_nonces: client.prepare("DELETE FROM beacon_nonces WHERE expires <= $1")?,
            count_nonces: client.prepare("SELECT count(*) FROM beacon_nonces")?,
            insert_nonce: client.prepare(
                "INSERT INTO beacon_nonces (nonce, expires) VALUES ($1, $2)
                 ON CONFLICT (nonce) DO NOTHING",
            )?,
        })
    }
}

/// How the connection is made: plain (`sslmode=disable` or `prefer`, the
/// driver's default), or TLS verified against the system's roots or a CA
/// file (`sslmode=require`).
enum Connector {
    Plain,
    Tls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// A PostgreSQL database.
pub(crate) struct Shared {
    config: Config,
    connector: Connector,
    connection: Option<(Client, Statements)>,
}

impl Shared {
    /// Connects to `url`, applies the migrations it lacks, prepares the
    /// statements.
    pub(crate) fn open(
        url: &str,
        password_file: Option<&Path>,
        ca_file: Option<&Path>,
    ) -> Result<Self, StoreError> {
        let mut config: Config = url
            .parse()
            .map_err(|e: postgres::Error| format!("not a PostgreSQL URL: {}", text(e)))?;
        if let Some(path) = password_file {
            let password = read_password(path)?;
            config.password(password.as_bytes());
        }
        let connector = if config.get_ssl_mode() == postgres::config::SslMode::Require {
            let tls = rpc::http::tls_config(ca_file).map_err(|e| format!("--store-ca: {e}"))?;
            Connector::Tls(tokio_postgres_rustls::MakeRustlsConnect::new(
                (*tls).clone(),
            ))
        } else if ca_file.is_some() {
            return Err("--store-ca needs sslmode=require in the URL".into());
        } else {
            Connector::Plain
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("spore-beacon");
        }
        let mut shared = Self {
            config,
            connector,
            connection: None,
        };
        shared.connection()?;
        Ok(shared)
    }

    /// The live connection, made again if it dropped.
    fn connection(&mut self) -> Result<&mut (Client, Statements), StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|(client, _)| client.is_closed())
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            let mut client = match &self.connector {
                Connector::Plain => self.config.connect(NoTls),
                Connector::Tls(tls) => self.config.connect(tls.clone()),
            }
            .map_err(text)?;
            // A fresh database has no tables to prepare against yet.
            migrate(&mut client)?;
            let statements = Statements::prepare(&mut client).map_err(text)?;
            self.connection = Some((client, statements));
        }
        self.connection
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())
    }

    fn records(rows: Vec<postgres::Row>) -> Result<Vec<Record>, StoreError> {
        rows.iter()
            .map(|row| {
                row.try_get::<_, Json<Record>>(0)
                    .map(|Json(record)| record)
                    .map_err(text)
            })
            .collect()
    }

    fn apply(&mut self, writes: &[&Write]) -> Result<Vec<Written>, postgres::Error> {
        let Some((client, statements)) = self.connection.as_mut() else {
            return Ok(Vec::new());
        };
        let mut txn = client.transaction()?;
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            out.push(match write {
                Write::Node { record, expect } => {
                    let r = &record.registration;
                    let (timestamp, seen) = (bigint(r.timestamp), bigint(record.last_seen));
                    let written = match expect {
                        super::Expect::Absent => txn.query_one(
                            &statements.insert_node,
                            &[
                                &r.hostname,
                                &record.fingerprint,
                                &timestamp,
                                &seen,
                                &Json(record),
                            ],
                        )?,
                        super::Expect::Holds {
                            fingerprint,
                            timestamp: was,
                        } => txn.query_one(
                            &statements.update_node,
                            &[
                                &r.hostname,
                                &record.fingerprint,
                                &timestamp,
                                &seen,
                                &Json(record),
                                fingerprint,
                                &bigint(*was),
                            ],
                        )?,
                    };
                    Written::Node(written.try_get::<_, i64>(0)? == 1)
                }
                Write::Pending { record, limit } => {
                    let r = &record.registration;
                    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&PENDING_LOCK])?;
                    let known = txn
                        .query_opt(
                            &statements.pending_known,
                            &[&r.hostname, &record.fingerprint],
                        )?
                        .is_some();
                    let mut evicted = false;
                    if !known {
                        let count: i64 =
                            txn.query_one(&statements.pending_count, &[])?.try_get(0)?;
                        if count >= bigint(*limit as u64).max(1) {
                            evicted = txn
                                .execute(&statements.evict_pending, &[&bigint(record.last_seen)])?
                                > 0;
                        }
                    }
                    txn.execute(
                        &statements.upsert_pending,
                        &[
                            &r.hostname,
                            &record.fingerprint,
                            &bigint(r.timestamp),
                            &bigint(record.last_seen),
                            &Json(record),
                        ],
                    )?;
                    Written::Pending(evicted)
                }
                Write::Hold {
                    hostname,
                    fingerprint,
                    until,
                } => {
                    let held = txn.execute(
                        &statements.hold_pending,
                        &[hostname, fingerprint, &bigint(*until)],
                    )?;
                    Written::Held(usize::try_from(held).unwrap_or(usize::MAX))
                }
                Write::Remove { hostname } => {
                    let nodes = txn.execute(&statements.remove_node, &[hostname])?;
                    let pending = txn.execute(&statements.drop_pending, &[hostname])?;
                    Written::Removed(usize::try_from(nodes + pending).unwrap_or(usize::MAX))
                }
                Write::Nonce {
                    nonce,
                    expires,
                    now,
                    limit,
                } => {
                    txn.execute(&statements.expire_nonces, &[&bigint(*now)])?;
                    let count: i64 = txn.query_one(&statements.count_nonces, &[])?.try_get(0)?;
                    if count >= bigint(*limit as u64) {
                        Written::Nonce(false)
                    } else {
                        let fresh =
                            txn.execute(&statements.insert_nonce, &[nonce, &bigint(*expires)])?;
                        Written::Nonce(fresh == 1)
                    }
                }
            });
        }
        txn.commit()?;
        Ok(out)
    }
}

/// The password in `path`: one line, the file not readable by group or
/// others.
fn read_password(path: &Path) -> Result<Zeroizing<String>, StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("--store-password-file {shown}: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "--store-password-file {shown}: readable by group or others (mode {:o}); chmod 600 it",
            mode & 0o777
        ));
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("--store-password-file {shown}: {e}"))?,
    );
    Ok(Zeroizing::new(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

/// A bigint for PostgreSQL: timestamps and limits fit; anything larger
/// is clamped (no stored value is ever that large).
fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Brings the schema up to date, in one transaction under an advisory
/// lock; refuses a database whose schema is newer than this beacon knows.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut txn = client.transaction().map_err(text)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(text)?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS beacon_migrations (
             version     integer     PRIMARY KEY,
             description text        NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .map_err(text)?;
    let current: i32 = txn
        .query_one(
            "SELECT coalesce(max(version), 0) FROM beacon_migrations",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(text)?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(format!(
            "the database's schema is version {current}, newer than this beacon's {latest}: upgrade this beacon"
        ));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        txn.batch_execute(migration.sql).map_err(|e| {
            format!(
                "migration {} ({}): {}",
                migration.version,
                migration.description,
                text(e)
            )
        })?;
        txn.execute(
            "INSERT INTO beacon_migrations (version, description) VALUES ($1, $2)",
            &[&migration.version, &migration.description],
        )
        .map_err(text)?;
    }
    txn.commit().map_err(text)
}

/// Whether trying the same batch again may succeed.
fn transient(error: &postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

impl Backend for Shared {
    fn nodes_named(&mut self, hostnames: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        let (client, statements) = self.connection()?;
        let rows = client
            .query(&statements.named_nodes, &[&hostnames])
            .map_err(text)?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let hostname: String = row.try_get(0).map_err(text)?;
            let Json(record): Json<Record> = row.try_get(1).map_err(text)?;
            found.insert(hostname, record);
        }
        Ok(hostnames.iter().map(|h| found.remove(*h)).collect())
    }

    fn read(&mut self, read: &Read) -> Result<Found, StoreError> {
        if let Read::Node(hostname) = read {
            let found = self.nodes_named(&[hostname.as_str()])?.pop().flatten();
            return Ok(Found::One(found.map(Box::new)));
        }
        let (client, statements) = self.connection()?;
        match read {
            Read::Node(_) => Err(super::mixed()),
            Read::Nodes => {
                let rows = client.query(&statements.nodes, &[]).map_err(text)?;
                Ok(Found::Many(Self::records(rows)?))
            }
            Read::Pending => {
                let rows = client.query(&statements.pending, &[]).map_err(text)?;
                Ok(Found::Many(Self::records(rows)?))
            }
            Read::PendingEntry(hostname, fingerprint) => {
                let rows = client
                    .query(&statements.pending_entry, &[hostname, fingerprint])
                    .map_err(text)?;
                Ok(Found::One(
                    Self::records(rows)?.into_iter().next().map(Box::new),
                ))
            }
        }
    }

    fn write(&mut self, writes: &[&Write]) -> Result<Vec<Written>, StoreError> {
        self.connection()?;
        match self.apply(writes) {
            Err(error) if transient(&error) => self.apply(writes).map_err(text),
            result => result.map_err(text),
        }
    }
}
