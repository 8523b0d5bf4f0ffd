//! The service files' rollouts: `rollout deploy FILE…` (each service's
//! file as it was is read first, to put back) and `rollout remove NAME…`
//! (the removed file is kept the same way).

use std::path::PathBuf;
use std::time::Duration;

use rpc::client::{ClientError, Session};
use serde_json::{json, Value};

use super::{Gate, Gates};
use crate::call_within;

/// `sporectl rollout deploy`'s settings, as its command line gives them.
#[derive(clap::Args, Debug)]
pub(crate) struct Settings {
    /// The service files
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) gates: Gates,
}

/// One service file of the change.
pub(super) struct Change {
    /// The service's name (from the file).
    pub(super) name: String,
    /// The file's name, as the node shows it in errors.
    file: String,
    /// Its text.
    text: String,
}

/// What a service was on a node before the change.
pub(super) enum Before {
    /// Its file's text (and the name the node showed it under).
    File { file: String, text: String },
    /// There was no such service.
    Absent,
}

/// Reads the files and names their services (a file that does not parse
/// is refused here, before any node is touched).
pub(super) fn read_changes(files: &[PathBuf]) -> Result<Vec<Change>, ClientError> {
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ClientError::Local(format!("{}: {e}", path.display())))?;
            let service = svc::parse::parse_service(path, &text).map_err(|errors| {
                ClientError::Local(
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            })?;
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("{}.toml", service.name));
            Ok(Change {
                name: service.name,
                file,
                text,
            })
        })
        .collect()
}

/// On one node: notes what each service was, deploys the change, then
/// checks that every changed service came up and stayed up.
pub(super) async fn change_node(
    session: &mut Session,
    changes: &[Change],
    before: &mut Vec<(String, Before)>,
    gate: &Gate,
) -> Result<(), String> {
    let (deadline, healthy_time, call_timeout) =
        (gate.deadline, gate.healthy_time, gate.call_timeout);
    let read = proto::method::Method::ServiceDefinition.name();
    let deploy = proto::method::Method::ServiceDeploy.name();
    let status = proto::method::Method::ServiceStatus.name();
    let mut restarts = Vec::new();
    for change in changes {
        let was =
            match call_within(session, read, json!({ "name": change.name }), call_timeout).await {
                Ok(answer) => previous_file(&answer, &change.file),
                Err(ClientError::Rpc { code, .. }) if code == proto::rpc::code::NO_SUCH_SERVICE => {
                    Before::Absent
                }
                Err(error) => return Err(format!("reading {}: {error}", change.name)),
            };
        before.push((change.name.clone(), was));
        let params = deploy_params(&change.text, &change.file, deadline);
        let answer = call_within(session, deploy, params, deadline + call_timeout)
            .await
            .map_err(|e| format!("{}: {e}", change.name))?;
        if !rpc::verbs::came_up(&answer) {
            return Err(format!("{}: {}", change.name, not_up(&answer)));
        }
        restarts.push(answer.get("restarts").and_then(Value::as_u64).unwrap_or(0));
    }
    smol::Timer::after(healthy_time).await;
    for (change, restarts_then) in changes.iter().zip(restarts) {
        let answer = call_within(
            session,
            status,
            json!({ "name": change.name }),
            call_timeout,
        )
        .await
        .map_err(|e| format!("{}: {e}", change.name))?;
        let restarts_now = answer.get("restarts").and_then(Value::as_u64).unwrap_or(0);
        if !rpc::verbs::is_active(&answer) || restarts_now != restarts_then {
            return Err(format!(
                "{}: did not stay ready for {} s ({}, {} restart(s) since it came up)",
                change.name,
                healthy_time.as_secs(),
                not_up(&answer),
                restarts_now.saturating_sub(restarts_then)
            ));
        }
    }
    Ok(())
}

/// `service.deploy` of `text` (shown as `file`), started, answered once
/// it came up or `deadline` passed.
pub(super) fn deploy_params(text: &str, file: &str, deadline: Duration) -> Value {
    json!({
        "toml": text,
        "file": file,
        "start": true,
        "wait": true,
        "timeout_ms": u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
    })
}

/// A service answer's state in words, with its last exit when it has one.
fn not_up(answer: &Value) -> String {
    let word = |key: &str| answer.get(key).and_then(Value::as_str);
    let mut text = word("detail")
        .or_else(|| word("state"))
        .unwrap_or("unknown")
        .to_owned();
    if let Some(outcome) = word("outcome") {
        text = format!("{outcome}: {text}");
    }
    if let Some(exit) = word("last_exit") {
        text.push_str(&format!(", last exit {exit}"));
    }
    rpc::display::printable(&text)
}

/// `sporectl rollout remove`'s settings.
#[derive(clap::Args, Debug)]
pub(crate) struct RemoveSettings {
    /// The services
    #[arg(required = true)]
    pub(crate) names: Vec<String>,
    #[command(flatten)]
    pub(crate) gates: Gates,
}

/// On one node: keeps each service's file (to put it back), removes the
/// service, and checks it is gone and the node still answers
/// `--min-healthy-time` later. A node without the service has nothing to
/// remove and nothing to put back.
pub(super) async fn remove_node(
    session: &mut Session,
    names: &[String],
    before: &mut Vec<(String, Before)>,
    gate: &Gate,
) -> Result<(), String> {
    let read = proto::method::Method::ServiceDefinition.name();
    let remove = proto::method::Method::ServiceRemove.name();
    let status = proto::method::Method::ServiceStatus.name();
    for name in names {
        let answer =
            match call_within(session, read, json!({ "name": name }), gate.call_timeout).await {
                Ok(answer) => answer,
                Err(ClientError::Rpc { code, .. }) if code == proto::rpc::code::NO_SUCH_SERVICE => {
                    continue
                }
                Err(error) => return Err(format!("reading {name}: {error}")),
            };
        before.push((
            name.clone(),
            previous_file(&answer, &format!("{name}.toml")),
        ));
        call_within(
            session,
            remove,
            json!({ "name": name }),
            gate.deadline + gate.call_timeout,
        )
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    }
    smol::Timer::after(gate.healthy_time).await;
    for name in names {
        match call_within(session, status, json!({ "name": name }), gate.call_timeout).await {
            Err(ClientError::Rpc { code, .. }) if code == proto::rpc::code::NO_SUCH_SERVICE => {}
            Ok(answer) => {
                return Err(format!("{name}: still there ({})", not_up(&answer)));
            }
            Err(error) => return Err(format!("{name}: {error}")),
        }
    }
    Ok(())
}

/// A service's file as `service.definition` answered it: the name the node
/// shows it under (else `fallback`), and its text.
fn previous_file(answer: &Value, fallback: &str) -> Before {
    Before::File {
        file: std::path::Path::new(answer.get("file").and_then(Value::as_str).unwrap_or(""))
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| fallback.to_owned()),
        text: answer
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}
