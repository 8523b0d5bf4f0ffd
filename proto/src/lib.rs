//! The wire: what a node, an operator's client and the beacon agree on,
//! and nothing else (no sockets, no files, no async runtime).
//!
//! ```text
//! frame ─ length-prefixed frames and their caps
//! handshake ─ SIGMA-style: X25519 + node Ed25519 signature + operator SSHSIG
//! session ─ ChaCha20-Poly1305 per direction, implicit counters
//! keys ─ Ed25519 public keys in OpenSSH's text forms, fingerprints
//! rpc ─ JSON-RPC error codes and objects, roles
//! method ─ the method table: names, roles, parameters, rpc.discover
//! ```
//!
//! A leaf: it depends on no crate of this workspace. The transport (`rpc`),
//! the node API (`nodeapi`) and the beacon build on it.

pub mod cap;
pub mod frame;
pub mod handshake;
pub mod keys;
pub mod method;
pub mod rpc;
pub mod session;
pub mod wipe;
