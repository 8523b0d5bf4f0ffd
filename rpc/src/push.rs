//! `artifact put` over a signed session: what the node holds asked first,
//! then the rest of a [`Source`] in chunks, several in flight (the node
//! answers a session's calls in order).

use serde_json::Value;

use crate::upload::{next_offset, ReadError, Source};
use proto::method::MAX_ARTIFACT_CHUNK;

/// Chunks in flight at once: the next ones are encoded and sent while the
/// node stores the first (it answers them in order).
pub const WINDOW: usize = 4;

/// Sends `source` over `session`: asks how much the node holds, then the
/// rest in chunks, [`WINDOW`] in flight at once; `progress` is told the
/// bytes the node holds after each answer; each answer must come within
/// `limit`. Returns the answer of the call that completed it.
pub async fn push(
    session: &mut crate::client::Session,
    source: &Source,
    limit: std::time::Duration,
    progress: &mut dyn FnMut(u64),
) -> Result<Value, crate::client::ClientError> {
    use crate::client::ClientError;
    use std::collections::VecDeque;
    let method = proto::method::Method::ArtifactPut.name();
    let local = |e: ReadError| ClientError::Local(e.to_string());
    let id = session.send_call(method, source.held_params()).await?;
    let mut answer = within(session.answer(id), limit).await?;
    let Some(start) = next_offset(&answer) else {
        return Ok(source.done(&answer));
    };
    // A node that says so takes chunks raw in frames of their own (no
    // base64, no JSON string); an older one, in base64.
    let raw = answer.get("raw") == Some(&Value::Bool(true));
    let mut sent = start;
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    let mut first = true;
    loop {
        while in_flight.len() < WINDOW && (sent < source.size || (first && source.size == 0)) {
            let id = if raw {
                let Some((params, chunk)) = source.raw_chunk(sent).map_err(local)? else {
                    break;
                };
                session.send_chunk(params, &chunk).await?
            } else {
                let Some(params) = source.chunk_params(sent).map_err(local)? else {
                    break;
                };
                session.send_call(method, params).await?
            };
            first = false;
            in_flight.push_back(id);
            sent = sent
                .saturating_add(MAX_ARTIFACT_CHUNK as u64)
                .min(source.size);
        }
        let Some(id) = in_flight.pop_front() else {
            return Ok(source.done(&answer));
        };
        match within(session.answer(id), limit).await {
            Ok(next) => {
                answer = next;
                progress(answer.get("held").and_then(Value::as_u64).unwrap_or(0));
            }
            Err(error) => {
                // The ones behind it answer too (refused): read them, so
                // the session stays in step, then say the first refusal.
                while let Some(id) = in_flight.pop_front() {
                    let _ = within(session.answer(id), limit).await;
                }
                return Err(error);
            }
        }
    }
}

/// `future` within `limit`, or the node is taken for gone.
async fn within(
    future: impl std::future::Future<Output = Result<Value, crate::client::ClientError>>,
    limit: std::time::Duration,
) -> Result<Value, crate::client::ClientError> {
    use smol::future::FutureExt;
    async { Some(future.await) }
        .or(async {
            smol::Timer::after(limit).await;
            None
        })
        .await
        .unwrap_or_else(|| {
            Err(crate::client::ClientError::Unreachable(format!(
                "no answer within {:.0} s (--call-timeout)",
                limit.as_secs_f64()
            )))
        })
}
