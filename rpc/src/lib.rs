//! The signed RPC transport's shared parts (the protocol itself is
//! `proto`, see PROTOCOL.md): the client library, sporectl's verbs,
//! admission before authentication, operators' keys, enrollment and
//! call-home. It uses the leaves (`proto`, `escape`, `http1`, `durable`)
//! and no part of the supervisor; the node's server (`noderpc`), the beacon
//! and sporectl are crates above it.
//!
//! ```text
//! frame ─ frames read and written on a socket (their caps: proto::frame)
//! handshake / session ─ re-exported from proto
//! authorized ─ operators' keys (OpenSSH authorized_keys) and roles
//! nodekey ─ the node's Ed25519 identity on disk
//! agent / identity ─ the operator's signer: key file or ssh-agent
//! client ─ the operator's end over TCP
//! ```

pub mod admission;
pub mod agent;
pub mod authorized;
pub mod callhome;
pub mod client;
pub mod display;
pub mod enrollment;
pub mod fetch;
pub mod frame;
pub mod hex;
pub mod hostname;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod nodekey;
pub mod pins;
pub mod push;
pub mod refusals;
pub mod registration;
pub mod upload;
pub mod verbs;

pub use proto::{handshake, session};
