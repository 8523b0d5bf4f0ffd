//! The node's content-addressed store: every artifact (a program, an
//! archive, any file a service needs) is named by the SHA-256 of its bytes,
//! arrives in chunks that may stop and resume, and becomes visible under its
//! name only once the bytes on disk hash to that name.
//!
//! ```text
//! ROOT/sha256/HEX          complete, verified, read-only (0444, or 0555 when executable)
//! ROOT/partial/HEX-SIZE    an upload under way (0600), resumed where it stopped
//! ```
//!
//! All of it is blocking file work: callers run it off the event loop. A
//! leaf beside `durable`: it knows no RPC, no service and no caller.

mod digest;
mod error;
mod store;

pub use digest::Digest;
pub use error::ArtifactError;
pub use store::{Entry, Held, Store, Upload};
