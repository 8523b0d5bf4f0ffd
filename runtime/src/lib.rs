//! spore's runtime: the part of the init that *does*.
//!
//! `svc` decides (service files, the graph, the supervisor as a pure state
//! machine) and has no way to touch the system; this crate carries out its
//! decisions with real processes, signals, timers, pipes and files, and
//! turns what happens back into events:
//!
//! ```text
//! svc::Supervisor ──Action──▶ Runtime ──▶ spawn / kill / timers / probes / files
//!        ▲                        │
//!        └──────── Event ─────────┘  (exits from the reaper, timers, checks)
//! ```
//!
//! It also holds the JSON-RPC method table both control channels serve
//! ([`api`]), spore's own log ([`journal`]) and the atomic file writer.

pub mod api;
pub use durable::atomic;
pub mod changes;
mod child;
pub mod credentials;
pub mod escape;
pub mod http1;
pub mod journal;
pub mod jsonrpc;
pub mod logbook;
pub mod probe;
mod runtime;
pub mod secret;
pub mod spawn;
pub mod spawner;
pub mod spool;
pub mod store;
pub mod sys;
pub mod text;
pub mod wait;

pub use runtime::{Files, Input, Inputs, Runtime, LINE_QUEUE};
