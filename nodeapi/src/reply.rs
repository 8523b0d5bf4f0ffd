//! What a call answers: a result, a JSON-RPC error (codes, message), a
//! follow of new lines, a power order, or an answer that comes once disk
//! work is done; and who may call what.

use serde_json::Value;
use smol::channel::Receiver;

use runtime::logbook::LogLine;

pub use proto::rpc::{code, ApiError, Role};

/// What a power method asks the init to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// Stop everything, then reboot.
    Reboot,
    /// Stop everything, then power off.
    Poweroff,
}

/// The result of a call.
#[derive(Debug)]
pub enum Reply {
    /// A plain result.
    Value(Value),
    /// A result, then every new log line until the caller hangs up.
    Follow {
        /// The result sent first (the backlog).
        result: Value,
        /// New lines.
        lines: Receiver<LogLine>,
    },
    /// A result; then the init stops the node this way.
    Power(Power, Value),
    /// The answer comes once disk work off the event loop is done and
    /// applied (deploy, remove, secret.set): await it, then send it.
    Pending(Receiver<Result<Value, ApiError>>),
}

/// Waits for the answer of a [`Reply::Pending`].
pub async fn settle(answer: &Receiver<Result<Value, ApiError>>) -> Result<Value, ApiError> {
    answer.recv().await.unwrap_or_else(|_| {
        Err(ApiError::new(
            code::INTERNAL,
            "internal error: the storage task dropped the answer",
        ))
    })
}
