//! The commands that group others (`secret`, `artifact`, `known-nodes`,
//! `nodes`, `beacon`) and the beacon server's options.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub(super) enum SecretCommand {
    /// Store a secret read from --file, a terminal prompt (echo off) or stdin; never argv
    Set {
        /// The secret's name
        name: String,
        /// Read the value from this file
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Delete a stored secret
    Rm {
        /// The secret's name
        name: String,
    },
    /// The names of stored secrets
    List,
}

#[derive(Subcommand, Debug)]
pub(super) enum ArtifactCommand {
    /// Store files on the node, each named by its SHA-256 and verified
    /// there before it is visible; an upload cut off resumes where it
    /// stopped when sent again
    #[command(
        after_help = "Examples:\n  sporectl artifact put ./mycelium\n  sporectl --node 10.0.2.15:9999 artifact put app.tar.gz"
    )]
    Put {
        /// Files to send
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Send files to the beacon's artifact cache (an order signed with
    /// your admin key), once for the whole fleet: nodes whose service files
    /// pin them with url = "beacon" fetch them from there
    #[command(
        after_help = "Examples:\n  sporectl --beacon https://beacon:8443 artifact publish ./mycelium\n  sporectl --beacon URL --all deploy web.toml --artifact web=./web   # publishes, then deploys"
    )]
    Publish {
        /// Files to send
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Remove artifacts from the beacon's cache (an order signed with your
    /// admin key); nodes that hold them keep them
    #[command(
        after_help = "Examples:\n  sporectl --beacon https://beacon:8443 artifact unpublish 9f2c…"
    )]
    Unpublish {
        /// SHA-256 of each (64 hex digits, `sha256:` in front or not)
        #[arg(required = true)]
        sha256: Vec<String>,
    },
    /// The artifacts the node holds, verified or under way, and the quota
    #[command(after_help = "Examples:\n  sporectl artifact list")]
    List,
    /// Delete artifacts, verified or under way
    #[command(after_help = "Examples:\n  sporectl artifact rm 9f2c…")]
    Rm {
        /// SHA-256 of each (64 hex digits, `sha256:` in front or not)
        #[arg(required = true)]
        sha256: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum KnownNodesCommand {
    /// Every pinned node and its key's fingerprint
    List,
    /// Forget a node's pinned key (after the node was rebuilt with a new one)
    Forget {
        /// The address as it was pinned (HOST:PORT)
        #[arg(value_name = "ADDRESS")]
        pinned: String,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum NodesCommand {
    /// Registrations waiting for an operator's approval
    Pending,
    /// List a pending node (an order signed with your key)
    Approve {
        /// The node's hostname
        name: String,
        /// The key to approve, when several claim the name
        #[arg(long, value_name = "SHA256:…")]
        fingerprint: Option<String>,
    },
    /// Keep a pending node's entry for a day while you decide, so a flood
    /// of registrations cannot push it out (an order signed with your key)
    Hold {
        /// The node's hostname
        name: String,
        /// Only the entry of this key, when several claim the name
        #[arg(long, value_name = "SHA256:…")]
        fingerprint: Option<String>,
    },
    /// Drop a node from the beacon (an order signed with your key)
    Remove {
        /// The node's hostname
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum RolloutCommand {
    /// Deploy service files to the fleet (--all or --nodes) in
    /// health-gated batches
    #[command(
        after_help = "Examples:\n  sporectl --beacon URL --all rollout deploy web.toml --canary 1 --max-parallel 25% --auto-revert\n  sporectl --beacon URL --nodes a,b,c rollout deploy web.toml --max-parallel 1 --min-healthy-time 1m"
    )]
    Deploy(crate::rollout::Settings),
    /// Exec a new spore binary on the fleet (--all or --nodes) in
    /// health-gated batches, in place (a live re-exec: no service stops)
    #[command(
        after_help = "Examples:\n  sporectl --beacon URL --all rollout update --spore target/x86_64-unknown-linux-musl/release/spore --canary 1 --max-parallel 10% --auto-revert"
    )]
    Update(crate::rollout::spore::Settings),
    /// Remove services from the fleet (--all or --nodes) in batches; a
    /// batch that fails gets their files back
    #[command(
        after_help = "Examples:\n  sporectl --beacon URL --all rollout remove old-agent --max-parallel 10% --auto-revert"
    )]
    Remove(crate::rollout::RemoveSettings),
}

#[derive(Subcommand, Debug)]
pub(super) enum BeaconCommand {
    /// Serve registrations and the node list
    Serve(Box<Serve>),
}

#[derive(Args, Debug)]
pub(super) struct Serve {
    /// Where to listen
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(in crate::cli) listen: String,
    /// Where the beacon keeps its records (the redb file beacon.redb)
    #[arg(long, default_value = "beacon-data")]
    pub(in crate::cli) data: PathBuf,
    /// Keep them in PostgreSQL instead, shared with other replicas
    /// (postgres://USER@HOST[:PORT]/DB[?host=/run/postgresql]); the
    /// password goes in --store-password-file or the environment
    // hide_env_values: --help would print the URL, password and all.
    #[arg(
        long,
        value_name = "URL",
        env = "SPORECTL_BEACON_STORE",
        hide_env_values = true
    )]
    pub(in crate::cli) store: Option<String>,
    /// The PostgreSQL password, read from this file (0600)
    #[arg(long, value_name = "FILE", requires = "store")]
    pub(in crate::cli) store_password_file: Option<PathBuf>,
    /// With sslmode=require in the URL: trust only these CA certificates
    /// (PEM) for PostgreSQL's TLS, not the system's
    #[arg(long, value_name = "FILE", requires = "store")]
    pub(in crate::cli) store_ca: Option<PathBuf>,
    /// List nodes whose enrollment credential this CA signed
    #[arg(long, value_name = "FILE")]
    pub(in crate::cli) enrollment_ca: Option<PathBuf>,
    /// Refuse credentials with this key ID (repeatable)
    #[arg(long, value_name = "KEY_ID")]
    pub(in crate::cli) revoke: Vec<String>,
    /// Keep unknown nodes pending until an admin approves them
    #[arg(long)]
    pub(in crate::cli) approve: bool,
    /// List every node that registers (a lab, never a fleet)
    #[arg(long)]
    pub(in crate::cli) open: bool,
    /// Admin keys whose signed orders approve and remove nodes
    #[arg(long, value_name = "FILE")]
    pub(in crate::cli) authorized_keys: Option<PathBuf>,
    /// Let an enrolled node register a new key for its name
    #[arg(long)]
    pub(in crate::cli) allow_rekey: bool,
    /// Registrations and orders per second from one address (a NAT in
    /// front of many nodes needs more)
    #[arg(long, value_name = "N", default_value_t = 5.0)]
    pub(in crate::cli) rate: f64,
    /// …and in a burst
    #[arg(long, value_name = "N", default_value_t = 20.0)]
    pub(in crate::cli) burst: f64,
    /// Connections at once from one address (a NAT in front of many nodes
    /// fetching artifacts needs more)
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub(in crate::cli) max_per_source: usize,
    /// Connections at once in all
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub(in crate::cli) max_connections: usize,
    /// Serve https with this certificate chain
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(in crate::cli) tls_cert: Option<PathBuf>,
    /// …and this key (0600)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(in crate::cli) tls_key: Option<PathBuf>,
    /// Keep an artifact cache here: admins publish (sporectl artifact
    /// publish), nodes fetch by SHA-256 (url = "beacon")
    #[arg(long, value_name = "DIR")]
    pub(in crate::cli) artifacts: Option<PathBuf>,
    /// The most the cache holds (bytes, or 512M, 20G); default half its
    /// filesystem
    #[arg(long, value_name = "SIZE", requires = "artifacts", value_parser = timespan::parse_size)]
    pub(in crate::cli) artifacts_max_bytes: Option<u64>,
    /// Another replica's URL, asked for what this one lacks (repeatable)
    #[arg(long, value_name = "URL", requires = "artifacts")]
    pub(in crate::cli) artifacts_peer: Vec<String>,
    /// Trust this CA for https peers (else the system's roots)
    #[arg(long, value_name = "FILE", requires = "artifacts_peer")]
    pub(in crate::cli) artifacts_peer_ca: Option<PathBuf>,
}
