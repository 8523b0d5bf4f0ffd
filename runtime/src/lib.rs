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
//! It also holds spore's own log ([`journal`]) and the services' output
//! ([`logbook`]). It formats no JSON and answers no calls: the node API
//! (the `nodeapi` crate) sits above it, feeds it events and reads the
//! [`Notice`]s it leaves. It reaches the system through [`sys::Sys`].

pub use durable::atomic;
pub use svc::accounts;
pub mod artifact_links;
pub mod cgroup;
mod child;
pub mod credentials;
pub mod limits;
pub use escape;
pub use http1;
mod input;
pub mod journal;
pub mod logbook;
pub mod mounts;
pub mod offload;
mod passing;
pub mod probe;
pub mod rotating;
mod runtime;
pub mod secret;
pub mod spawn;
pub mod spawner;
pub mod spool;
pub mod sys;
pub mod text;
pub mod usage;

pub use runtime::handoff;
pub use runtime::{Files, Input, Inputs, Notice, Runtime, LINE_QUEUE};
