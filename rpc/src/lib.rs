//! What spore speaks over the network: the signed RPC protocol (see
//! PROTOCOL.md), the node's server, the client library and call-home.
//! It may use `svc`'s names, `runtime`'s journal and `nodeapi`'s method
//! table; the beacon and sporectl are crates above it.
//!
//! ```text
//! frame ─ length-prefixed frames with hard caps
//! handshake ─ SIGMA-style: X25519 + node Ed25519 signature + operator SSHSIG
//! session ─ ChaCha20-Poly1305 per direction, implicit counters
//! authorized ─ operators' keys (OpenSSH authorized_keys) and roles
//! nodekey ─ the node's Ed25519 identity on disk
//! agent / identity ─ the operator's signer: key file or ssh-agent
//! server / client ─ both ends over TCP
//! ```

pub mod admission;
pub mod agent;
pub mod authorized;
pub mod callhome;
pub mod client;
pub mod display;
pub mod enrollment;
pub mod frame;
pub mod hex;
pub mod hostname;
pub mod http;
pub mod identity;
pub mod nodekey;
pub mod pins;
pub mod refusals;
pub mod registration;
pub mod verbs;

pub use proto::{handshake, session};
