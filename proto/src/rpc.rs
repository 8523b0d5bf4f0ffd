//! The JSON-RPC side of the wire: spore's error codes beside JSON-RPC 2.0's,
//! the error object a call answers with, and the roles that decide who may
//! call what.

use serde_json::{json, Value};

/// JSON-RPC 2.0 error codes (spec section 5.1) and spore's own.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a JSON-RPC request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Missing or wrong parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The caller's role does not allow the method.
    pub const FORBIDDEN: i64 = -32003;
    /// No service by that name.
    pub const NO_SUCH_SERVICE: i64 = -32004;
    /// The node is shutting down and takes no new work.
    pub const SHUTTING_DOWN: i64 = -32005;
    /// Other services depend on the one to remove.
    pub const IN_USE: i64 = -32006;
    /// The node turned the connection away: too many at once.
    pub const BUSY: i64 = -32007;
    /// A deployed service file does not validate.
    pub const INVALID_SERVICE: i64 = -32010;
    /// The node keeps no files (deploy and secrets are off).
    pub const NO_STORE: i64 = -32011;
    /// Writing or deleting a file failed.
    pub const STORAGE: i64 = -32012;
    /// The answer would not fit in one frame: ask for it in pages.
    pub const TOO_LARGE: i64 = -32013;
    /// The node has no boot slots to update (not PID 1, not booted under
    /// UEFI, or not from an image with slots).
    pub const NO_SLOTS: i64 = -32014;
    /// An update image was refused before anything was written: its hash,
    /// its shape or its signature.
    pub const IMAGE_REFUSED: i64 = -32015;
    /// A new spore binary was refused before the re-exec: it is not
    /// there, or it did not answer the handoff check as a spore that can
    /// take this one's state up.
    pub const BINARY_REFUSED: i64 = -32016;
    /// spore itself went wrong (JSON-RPC's internal error).
    pub const INTERNAL: i64 = -32603;
}

/// A JSON-RPC error: a code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    /// One of [`code`].
    pub code: i64,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The JSON-RPC `error` object.
    pub fn to_json(&self) -> Value {
        json!({ "code": self.code, "message": self.message })
    }
}

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// May only look: list, status, logs, info, discover.
    Reader,
    /// May do everything.
    Admin,
}

/// Seconds since the Unix epoch, for `node.info`.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
