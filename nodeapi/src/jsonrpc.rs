//! The JSON-RPC 2.0 envelope both control channels share: reading a
//! request, writing a response, and carrying a [`Reply`] out — a value, a
//! power order, the answer of work done off the loop, or a follow that
//! streams log lines until the caller leaves, stops reading, or the book
//! ends. The local socket and the signed TCP session differ only in how a
//! message crosses the wire ([`Transport`]).

use std::time::Duration;

use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::Timer;

use crate::reply::{code, settle, ApiError, Power, Reply};
use runtime::logbook::LogLine;

/// One parsed request.
#[derive(Debug)]
pub struct Request {
    /// Its id (Null when it had none).
    pub id: Value,
    /// The method name.
    pub method: String,
    /// Its params (Null when absent).
    pub params: Value,
}

impl Request {
    /// The `name` param, for the audit line.
    pub fn target(&self) -> Option<&str> {
        self.params
            .get("name")
            .or_else(|| self.params.get("sha256"))
            .and_then(Value::as_str)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // secret.set carries a value: nothing of it outlives the request.
        crate::wipe::wipe_strings(&mut self.params);
    }
}

/// Whether a call's outcome gets an audit line. Every call does, but the
/// chunks of an upload: `artifact.put` is audited when it starts (nothing
/// held yet), when it completes, and when it fails, not once per chunk (a
/// 1 GiB artifact is 2,048 chunks).
pub fn audited(method: &str, outcome: &Result<Reply, ApiError>) -> bool {
    if method != proto::method::Method::ArtifactPut.name() {
        return true;
    }
    match outcome {
        Ok(Reply::Value(answer)) => {
            answer.get("complete") == Some(&Value::Bool(true))
                || answer.get("held").and_then(Value::as_u64) == Some(0)
        }
        _ => true,
    }
}

/// Parses one request; on failure, the id (when one was readable) and the
/// error to answer with.
pub fn parse(bytes: &[u8]) -> Result<Request, (Value, ApiError)> {
    let mut request: Value = serde_json::from_slice(bytes).map_err(|error| {
        let error = ApiError::new(code::PARSE_ERROR, format!("invalid JSON: {error}"));
        (Value::Null, error)
    })?;
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let version = request.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let params = request
        .as_object_mut()
        .and_then(|o| o.remove("params"))
        .unwrap_or(Value::Null);
    crate::wipe::wipe_strings(&mut request);
    match method {
        Some(method) if version => Ok(Request { id, method, params }),
        _ => {
            let mut params = params;
            crate::wipe::wipe_strings(&mut params);
            let error = ApiError::new(code::INVALID_REQUEST, "not a JSON-RPC 2.0 request");
            Err((id, error))
        }
    }
}

/// The response object for `id`.
pub fn response(id: Value, outcome: Result<Value, ApiError>) -> Value {
    match outcome {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error.to_json() }),
    }
}

/// The notification that carries one followed line.
pub fn log_note(line: &LogLine) -> Value {
    json!({ "jsonrpc": "2.0", "method": "service.log", "params": crate::api::line_json(line) })
}

/// The notification that ends a follow whose book ended (the service was
/// removed): after it the channel closes.
pub fn end_note() -> Value {
    json!({ "jsonrpc": "2.0", "method": "service.log.end", "params": { "reason": "removed" } })
}

/// How messages cross one channel.
#[allow(async_fn_in_trait)] // used with concrete types on one thread
pub trait Transport {
    /// What a failed send is.
    type Error;
    /// Sends one message.
    async fn send(&mut self, message: &Value) -> Result<(), Self::Error>;
    /// Resolves once the caller hangs up (or sends anything, which a
    /// follow does not take).
    async fn hangup(&mut self);
}

/// Waits for the answer of work done off the loop, so the outcome is known
/// (for the caller and the audit) before anything is sent.
pub async fn resolve(outcome: Result<Reply, ApiError>) -> Result<Reply, ApiError> {
    match outcome {
        Ok(Reply::Pending(answer)) => settle(&answer).await.map(Reply::Value),
        other => other,
    }
}

/// How carrying out a reply ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Answered; the channel takes the next request.
    Answered,
    /// Answered; now the node stops this way.
    Power(Power),
    /// A follow ended (the book ended, or the caller hung up): close.
    FollowEnded,
    /// A follow's caller stopped reading for the idle time: close.
    Stalled,
}

/// Sends the response for `outcome` (resolved first with [`resolve`]) and,
/// for a follow, every new line until it ends; a follow whose sends stay
/// blocked for `idle` ends as [`Delivered::Stalled`].
pub async fn deliver<T: Transport>(
    transport: &mut T,
    id: Value,
    outcome: Result<Reply, ApiError>,
    idle: Duration,
) -> Result<Delivered, T::Error> {
    match resolve(outcome).await {
        Ok(Reply::Value(result)) => {
            transport.send(&response(id, Ok(result))).await?;
            Ok(Delivered::Answered)
        }
        Ok(Reply::Power(power, result)) => {
            transport.send(&response(id, Ok(result))).await?;
            Ok(Delivered::Power(power))
        }
        Ok(Reply::Follow { result, lines }) => {
            transport.send(&response(id, Ok(result))).await?;
            loop {
                // Watch the caller too, or one that left while the book is
                // quiet would hold its slot forever.
                let line = async { Some(lines.recv().await.ok()) }
                    .or(async {
                        transport.hangup().await;
                        None
                    })
                    .await;
                let line = match line {
                    Some(Some(line)) => line,
                    // The book ended: say so, so the caller can tell it
                    // from a lost connection.
                    Some(None) => {
                        transport.send(&end_note()).await?;
                        return Ok(Delivered::FollowEnded);
                    }
                    None => return Ok(Delivered::FollowEnded),
                };
                let note = log_note(&line);
                let sent = async { Some(transport.send(&note).await) }
                    .or(async {
                        Timer::after(idle).await;
                        None
                    })
                    .await;
                match sent {
                    Some(sent) => sent?,
                    None => return Ok(Delivered::Stalled),
                }
            }
        }
        Ok(Reply::Pending(_)) => {
            let error = ApiError::new(code::INTERNAL, "internal error: unsettled reply");
            transport.send(&response(id, Err(error))).await?;
            Ok(Delivered::Answered)
        }
        Err(error) => {
            transport.send(&response(id, Err(error))).await?;
            Ok(Delivered::Answered)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_whole_or_refused_with_its_id() {
        let request = parse(br#"{"jsonrpc":"2.0","id":7,"method":"service.list"}"#).unwrap();
        assert_eq!(
            (request.id.clone(), request.method.as_str()),
            (json!(7), "service.list")
        );
        assert_eq!(request.params, Value::Null);
        let (id, error) = parse(br#"{"jsonrpc":"1.0","id":8,"method":"x"}"#).unwrap_err();
        assert_eq!((id, error.code), (json!(8), code::INVALID_REQUEST));
        let (id, error) = parse(b"{nope").unwrap_err();
        assert_eq!((id, error.code), (Value::Null, code::PARSE_ERROR));
    }

    #[test]
    fn responses_carry_result_or_error() {
        let ok = response(json!(1), Ok(json!("x")));
        assert_eq!(ok["result"], "x");
        let err = response(json!(2), Err(ApiError::new(code::BUSY, "busy")));
        assert_eq!(err["error"]["code"], code::BUSY);
        assert!(err.get("result").is_none());
    }
}
