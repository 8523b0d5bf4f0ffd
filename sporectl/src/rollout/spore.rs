//! `sporectl rollout update --spore BINARY`: a new spore binary to a
//! fleet, each node exec'ing it in place (a live re-exec: `node.reexec`)
//! batch by batch. A node counts healthy when it answers from the new
//! binary (a later re-exec generation, not handed back to the old one)
//! within `--healthy-deadline`, and every service that ran before still
//! runs with the same pid then and `--min-healthy-time` later. Reverting
//! a node execs the binary it ran before (`node.reexec` with `previous`),
//! which the node kept; a node whose new binary handed the state back is
//! on its old one already.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rpc::client::{ClientError, Session};
use rpc::identity::Identity;
use serde_json::{json, Value};

use super::{Gate, Gates, Target, Undo};
use crate::{call_within, connect_with_any};

/// `sporectl rollout update`'s settings.
#[derive(clap::Args, Debug)]
pub(crate) struct Settings {
    /// The spore binary each node execs in place of the running one (a
    /// live re-exec: no service stops)
    #[arg(long = "spore", value_name = "BINARY", required = true)]
    pub(crate) binary: PathBuf,
    /// Its `ssh-keygen -Y sign -n spore-update` signature, for nodes with
    /// [update] keys (default BINARY.sig, when it exists)
    #[arg(long, value_name = "SIG")]
    pub(crate) signature: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) gates: Gates,
}

/// The binary of the change, read once.
pub(crate) struct Binary {
    source: rpc::upload::Source,
    signature: Option<String>,
}

impl Binary {
    /// Reads the binary (and its signature) before any node is touched.
    pub(crate) fn read(settings: &Settings) -> Result<Binary, ClientError> {
        let file = settings.binary.display().to_string();
        let source =
            rpc::upload::Source::read(&file).map_err(|e| ClientError::Local(e.to_string()))?;
        let default = PathBuf::from(format!("{file}.sig"));
        let signature = match settings
            .signature
            .clone()
            .or_else(|| default.exists().then_some(default))
        {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| ClientError::Local(format!("{}: {e}", path.display())))?,
            ),
            None => None,
        };
        Ok(Binary { source, signature })
    }

    /// `spore BINARY (sha256 0123456789ab)`, for the plan.
    pub(crate) fn describe(&self) -> String {
        let hex = self.source.digest.hex();
        format!(
            "spore {} (sha256 {})",
            rpc::display::printable(&self.source.file),
            hex.get(..12).unwrap_or(&hex)
        )
    }
}

/// `method` with no parameters; its answer, or why not in words.
async fn ask(
    session: &mut Session,
    method: proto::method::Method,
    call_timeout: Duration,
) -> Result<Value, String> {
    call_within(session, method.name(), json!({}), call_timeout)
        .await
        .map_err(|e| format!("{}: {e}", method.name()))
}

/// The node's re-exec generation and the pid of every service that runs.
async fn looks(
    session: &mut Session,
    call_timeout: Duration,
) -> Result<(u64, BTreeMap<String, i64>), String> {
    let info = ask(session, proto::method::Method::NodeInfo, call_timeout).await?;
    let generation = info
        .pointer("/reexec/generation")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let list = ask(session, proto::method::Method::ServiceList, call_timeout).await?;
    let pids = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = s.get("name")?.as_str()?.to_owned();
            Some((name, s.get("pid")?.as_i64()?))
        })
        .collect();
    Ok((generation, pids))
}

/// Why `now` is not `before` (a service that ran is gone or has another
/// pid), or None.
fn lost(before: &BTreeMap<String, i64>, now: &BTreeMap<String, i64>) -> Option<String> {
    let changed: Vec<String> = before
        .iter()
        .filter(|(name, pid)| now.get(*name) != Some(pid))
        .map(|(name, pid)| match now.get(name) {
            Some(other) => format!("{name} (pid {pid}, now {other})"),
            None => format!("{name} (pid {pid}, now not running)"),
        })
        .collect();
    (!changed.is_empty()).then(|| {
        rpc::display::printable(&format!(
            "service(s) did not keep their process: {}",
            changed.join(", ")
        ))
    })
}

/// Connects again until the node answers from a generation after
/// `before`, within the gate's deadline; what it says of the re-exec.
async fn back(
    target: &Target,
    identities: &[Identity],
    before: u64,
    gate: &Gate,
) -> Result<Value, String> {
    let (_, address, pin) = target;
    let until = Instant::now() + gate.deadline;
    loop {
        smol::Timer::after(Duration::from_millis(200)).await;
        if let Ok(mut session) =
            connect_with_any(address, identities, pin, gate.connect_timeout).await
        {
            if let Ok(info) = call_within(
                &mut session,
                proto::method::Method::NodeInfo.name(),
                json!({}),
                gate.call_timeout,
            )
            .await
            {
                let facts = info.get("reexec").cloned().unwrap_or_default();
                if facts.get("generation").and_then(Value::as_u64).unwrap_or(0) > before {
                    return Ok(facts);
                }
            }
        }
        if Instant::now() >= until {
            return Err(format!(
                "did not answer from the new binary within {} s",
                gate.deadline.as_secs()
            ));
        }
    }
}

/// On one node: sends the binary, asks for the re-exec, and checks that
/// the node came back on it with every service kept, and stayed so.
pub(super) async fn change_node(
    target: &Target,
    identities: &[Identity],
    binary: &Binary,
    gate: &Gate,
    undo: &mut Undo,
) -> Result<(), String> {
    let (_, address, pin) = target;
    let mut session = connect_with_any(address, identities, pin, gate.connect_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let (generation, before) = looks(&mut session, gate.call_timeout).await?;
    rpc::push::push(&mut session, &binary.source, gate.call_timeout, &mut |_| {})
        .await
        .map_err(|e| format!("sending the binary: {e}"))?;
    let mut params = serde_json::Map::new();
    params.insert("sha256".into(), json!(binary.source.digest.hex()));
    if let Some(signature) = &binary.signature {
        params.insert("signature".into(), json!(signature));
    }
    call_within(
        &mut session,
        proto::method::Method::NodeReexec.name(),
        Value::Object(params),
        gate.deadline + gate.call_timeout,
    )
    .await
    .map_err(|e| format!("node.reexec: {e}"))?;
    *undo = Undo::Spore {
        asked: true,
        went_back: false,
    };
    drop(session);
    let facts = back(target, identities, generation, gate).await?;
    if facts.get("went_back") == Some(&Value::Bool(true)) {
        *undo = Undo::Spore {
            asked: true,
            went_back: true,
        };
        return Err(
            "the new binary could not take the state up; the one before runs again (see the node's journal)"
                .into(),
        );
    }
    let reexeced = facts.get("generation").and_then(Value::as_u64).unwrap_or(0);
    for (when, wait) in [
        ("after the re-exec", Duration::ZERO),
        ("later", gate.healthy_time),
    ] {
        smol::Timer::after(wait).await;
        let mut session = connect_with_any(address, identities, pin, gate.connect_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let (now, pids) = looks(&mut session, gate.call_timeout).await?;
        if now != reexeced {
            return Err(format!(
                "re-exec'd again {when} (generation {now}, not {reexeced})"
            ));
        }
        if let Some(why) = lost(&before, &pids) {
            return Err(format!("{when}: {why}"));
        }
    }
    Ok(())
}

/// Puts a node back on the binary it ran before the change (it kept it):
/// nothing to do when it was not asked, or went back by itself.
pub(super) async fn revert(
    target: &Target,
    identities: &[Identity],
    asked: bool,
    went_back: bool,
    gate: &Gate,
) -> Result<(), String> {
    if !asked || went_back {
        return Ok(());
    }
    let (_, address, pin) = target;
    let mut session = connect_with_any(address, identities, pin, gate.connect_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let (generation, _) = looks(&mut session, gate.call_timeout).await?;
    call_within(
        &mut session,
        proto::method::Method::NodeReexec.name(),
        json!({ "previous": true }),
        gate.deadline + gate.call_timeout,
    )
    .await
    .map_err(|e| format!("node.reexec: {e}"))?;
    drop(session);
    let facts = back(target, identities, generation, gate).await?;
    if facts.get("went_back") == Some(&Value::Bool(true)) {
        return Err("the binary before could not take the state up again".into());
    }
    Ok(())
}
