//! `sporectl update --spore BINARY`: the binary goes to the node as an
//! artifact, `node.reexec` checks it and answers, the node execs it in
//! place (the session drops with the old binary), and sporectl connects
//! again to say what the new binary took up.

use std::time::{Duration, Instant};

use rpc::client::{ClientError, Pin, Session};
use rpc::display::printable;
use rpc::identity::Identity;
use serde_json::{json, Value};

use crate::Options;

/// How long the node has to answer again after the exec.
const BACK_WITHIN: Duration = Duration::from_secs(30);

/// The re-exec generation the node is at now (0: as booted).
pub(crate) async fn generation(
    options: &Options,
    session: &mut Session,
) -> Result<u64, ClientError> {
    let method = proto::method::Method::NodeInfo.name();
    let limit = crate::call_limit(options, method);
    let info = crate::call_within(session, method, json!({}), limit).await?;
    Ok(generation_of(&info))
}

/// Connects again until the node answers from a later generation than
/// `before`, and says what it took up; an error when it does not within
/// [`BACK_WITHIN`].
pub(crate) async fn taken_up(
    options: &Options,
    identities: &[Identity],
    pin: &Pin,
    before: u64,
) -> Result<Value, ClientError> {
    let deadline = Instant::now() + BACK_WITHIN;
    let method = proto::method::Method::NodeInfo.name();
    let limit = crate::call_limit(options, method);
    loop {
        smol::Timer::after(Duration::from_millis(200)).await;
        let answer =
            match crate::connect_with_any(&options.node, identities, pin, options.connect_timeout)
                .await
            {
                Ok(mut session) => crate::call_within(&mut session, method, json!({}), limit).await,
                Err(error) => Err(error),
            };
        match answer {
            Ok(info) if generation_of(&info) > before => {
                let facts = info.get("reexec").cloned().unwrap_or_default();
                if !options.json {
                    say!("{}", describe(&facts));
                }
                return Ok(facts);
            }
            Ok(_) | Err(_) if Instant::now() < deadline => continue,
            Ok(_) => {
                return Err(ClientError::Local(format!(
                    "{}: the node answers, but still from the binary it ran before (see its journal: sporectl logs --journal)",
                    options.node
                )))
            }
            Err(error) => return Err(error),
        }
    }
}

/// node.info's `reexec.generation` (0: never re-exec'd).
fn generation_of(info: &Value) -> u64 {
    info.pointer("/reexec/generation")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// One line on what the new binary took up.
fn describe(facts: &Value) -> String {
    let number = |key: &str| facts.get(key).and_then(Value::as_u64).unwrap_or(0);
    let mut line = format!(
        "re-exec {}: took up {} service(s), {} process(es) and {} output pipe(s) {} ms after node.reexec",
        number("generation"),
        number("services"),
        number("processes"),
        number("pipes"),
        number("asked_to_taken_up_ms"),
    );
    if facts.get("went_back") == Some(&Value::Bool(true)) {
        line.push_str("; the new binary could not take the state up, so the one before runs again (see the node's journal)");
    }
    if let Some(unknown) = facts
        .get("unknown")
        .and_then(Value::as_array)
        .filter(|u| !u.is_empty())
    {
        let names: Vec<String> = unknown
            .iter()
            .map(|u| printable(u.get("service").and_then(Value::as_str).unwrap_or_default()))
            .collect();
        line.push_str(&format!(
            "; no service file for {} (sent SIGTERM)",
            names.join(", ")
        ));
    }
    line
}
