//! The JSON-RPC methods every control channel serves — the local Unix
//! socket now, the signed TCP transport later — from one table, which also
//! generates the `rpc.discover` document.

use std::time::{Instant, SystemTime};

use serde_json::{json, Map, Value};
use smol::channel::Receiver;

use crate::logbook::LogLine;
use crate::store::{LoadSlot, Then, Work};
use crate::Runtime;
use svc::service::{Kind, Probe};
use svc::supervisor::{Event, UnitView};

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
    fn new(code: i64, message: impl Into<String>) -> Self {
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

/// One method's name, summary, parameters and required role.
pub struct MethodSpec {
    /// Dot name, e.g. `service.start`.
    pub name: &'static str,
    /// One line for people.
    pub summary: &'static str,
    /// `(name, JSON type, required)`.
    pub params: &'static [(&'static str, &'static str, bool)],
    /// The least role allowed to call it.
    pub role: Role,
}

const NAME: (&str, &str, bool) = ("name", "string", true);

/// Every method, in the order `rpc.discover` lists them.
pub const METHODS: &[MethodSpec] = &[
    MethodSpec {
        name: "node.info",
        summary: "Hostname, version, uptime and the node's posture",
        params: &[],
        role: Role::Reader,
    },
    MethodSpec {
        name: "service.list",
        summary: "Every service with its state",
        params: &[],
        role: Role::Reader,
    },
    MethodSpec {
        name: "service.status",
        summary: "One service in detail",
        params: &[NAME],
        role: Role::Reader,
    },
    MethodSpec {
        name: "service.start",
        summary: "Start a service and what it requires",
        params: &[NAME],
        role: Role::Admin,
    },
    MethodSpec {
        name: "service.stop",
        summary: "Stop a service (stop signal, grace, SIGKILL)",
        params: &[NAME],
        role: Role::Admin,
    },
    MethodSpec {
        name: "service.restart",
        summary: "Stop a service if it runs, then start it",
        params: &[NAME],
        role: Role::Admin,
    },
    MethodSpec {
        name: "service.logs",
        summary: "The last lines of a service's output; with follow, every new line after them",
        params: &[
            NAME,
            ("lines", "integer", false),
            ("follow", "boolean", false),
        ],
        role: Role::Reader,
    },
    MethodSpec {
        name: "service.deploy",
        summary: "Add or replace a service from its TOML text: validated whole against the others, written atomically, started when its status is start (or `start` is true)",
        params: &[("toml", "string", true), ("start", "boolean", false)],
        role: Role::Admin,
    },
    MethodSpec { name: "service.remove", summary: "Stop a service, then delete its file", params: &[NAME], role: Role::Admin },
    MethodSpec {
        name: "secret.set",
        summary: "Store a secret (0600 under the state directory; never echoed or logged)",
        params: &[NAME, ("value", "string", true)],
        role: Role::Admin,
    },
    MethodSpec { name: "secret.list", summary: "The names of stored secrets", params: &[], role: Role::Admin },
    MethodSpec {
        name: "secret.remove",
        summary: "Delete a stored secret (services that loaded it keep their copy until they stop)",
        params: &[NAME],
        role: Role::Admin,
    },
    MethodSpec {
        name: "node.reload",
        summary: "Read the image's service files and the deployed layer again and apply what changed",
        params: &[],
        role: Role::Admin,
    },
    MethodSpec {
        name: "node.reboot",
        summary: "Stop every service in order, then reboot",
        params: &[],
        role: Role::Admin,
    },
    MethodSpec {
        name: "node.poweroff",
        summary: "Stop every service in order, then power off",
        params: &[],
        role: Role::Admin,
    },
    MethodSpec {
        name: "rpc.discover",
        summary: "This list, as an OpenRPC document",
        params: &[],
        role: Role::Reader,
    },
];

/// The method spec for `name`.
pub fn method(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}

/// Calls `method` with `params` as `role`. `node_info` makes what
/// `node.info` answers (the init knows it, this crate does not); it runs only
/// for that method, not on every call.
pub fn call(
    runtime: &mut Runtime,
    role: Role,
    method_name: &str,
    params: &Value,
    node_info: &dyn Fn() -> Value,
) -> Result<Reply, ApiError> {
    let spec = method(method_name).ok_or_else(|| {
        ApiError::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {method_name}"),
        )
    })?;
    if role < spec.role {
        return Err(ApiError::new(
            code::FORBIDDEN,
            format!("{method_name} needs the admin role"),
        ));
    }
    let params = check_params(spec, params)?;
    let shutting_down = runtime.supervisor().is_shutting_down();
    let value = match spec.name {
        "node.info" => node_info(),
        "service.list" => {
            let now = Instant::now();
            Value::Array(
                runtime
                    .supervisor()
                    .list()
                    .iter()
                    .map(|v| summary(v, now))
                    .collect(),
            )
        }
        "service.status" => {
            let name = service_name(runtime, &params)?;
            let deployed = runtime.files().map(|f| f.deployed.clone());
            runtime
                .get(&name)
                .map(|v| detail(&v, Instant::now(), deployed.as_deref()))
                .unwrap_or(Value::Null)
        }
        "service.start" | "service.stop" | "service.restart" => {
            let name = service_name(runtime, &params)?;
            if shutting_down && spec.name != "service.stop" {
                return Err(ApiError::new(
                    code::SHUTTING_DOWN,
                    "the node is shutting down",
                ));
            }
            let event = match spec.name {
                "service.start" => Event::Start(name.clone()),
                "service.stop" => Event::Stop(name.clone()),
                _ => Event::Restart(name.clone()),
            };
            runtime.feed(event);
            runtime
                .get(&name)
                .map(|v| summary(&v, Instant::now()))
                .unwrap_or(Value::Null)
        }
        "service.logs" => {
            let name = service_name(runtime, &params)?;
            let count = params.get("lines").and_then(Value::as_u64).unwrap_or(100);
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            let lines: Vec<Value> = runtime
                .logs(&name)
                .map(|book| book.tail(count).map(line_json).collect())
                .unwrap_or_default();
            let result = json!({ "name": name, "lines": lines });
            if params.get("follow").and_then(Value::as_bool) == Some(true) {
                if let Some(lines) = runtime.follow(&name) {
                    return Ok(Reply::Follow { result, lines });
                }
            }
            result
        }
        "node.reboot" | "node.poweroff" => {
            let power = if spec.name == "node.reboot" {
                Power::Reboot
            } else {
                Power::Poweroff
            };
            return Ok(Reply::Power(power, json!({ "accepted": true })));
        }
        "rpc.discover" => discover(),
        "service.deploy" => {
            if shutting_down {
                return Err(ApiError::new(
                    code::SHUTTING_DOWN,
                    "the node is shutting down",
                ));
            }
            let text = params
                .get("toml")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let start = params.get("start").and_then(Value::as_bool) == Some(true);
            return deploy(runtime, text, start);
        }
        "service.remove" => {
            let name = service_name(runtime, &params)?;
            return remove(runtime, &name);
        }
        "secret.set" => {
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let value = params
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return set_secret(runtime, name, value);
        }
        "secret.list" => list_secrets(runtime)?,
        "node.reload" => return reload(runtime),
        "secret.remove" => {
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return remove_secret(runtime, name);
        }
        _ => {
            return Err(ApiError::new(
                code::METHOD_NOT_FOUND,
                format!("method not found: {method_name}"),
            ))
        }
    };
    Ok(Reply::Value(value))
}

fn store(runtime: &Runtime) -> Result<crate::Files, ApiError> {
    runtime.files().cloned().ok_or_else(|| {
        ApiError::new(
            code::NO_STORE,
            "this node keeps no service files or secrets",
        )
    })
}

/// The `name` of a service or target file, read loosely before validation.
fn declared_name(text: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let head = table.get("service").or_else(|| table.get("target"))?;
    head.get("name")?.as_str().map(str::to_owned)
}

fn deploy(runtime: &mut Runtime, text: &str, start: bool) -> Result<Reply, ApiError> {
    let files = store(runtime)?;
    let invalid = |message: String| ApiError::new(code::INVALID_SERVICE, message);
    let name = declared_name(text)
        .ok_or_else(|| invalid("the text has no [service] or [target] name".into()))?;
    if !svc::parse::is_valid_name(&name) {
        return Err(invalid(format!("invalid service name `{name}`")));
    }
    let path = files.deployed.join(format!("{name}.toml"));
    let mask = files.deployed.join(svc::load::mask_name(&name));
    let service =
        svc::parse::parse_service(&path, text).map_err(|errors| invalid(join_errors(&errors)))?;
    // Valid alone; now valid among the others (dependencies exist, no cycle)?
    let mut all: Vec<svc::service::Service> = runtime
        .supervisor()
        .services()
        .into_iter()
        .filter(|s| s.name != name)
        .cloned()
        .collect();
    all.push(service.clone());
    let report = svc::load::check_together(all, Vec::new(), std::collections::HashSet::new());
    if !report.errors.is_empty() {
        return Err(invalid(join_errors(&report.errors)));
    }
    // Written off the loop; the supervisor gets the service only once the
    // file is durably there (applied whole or not at all).
    // Into the deployed layer, then any mask of the name goes (a service
    // removed earlier and deployed again).
    let work = Work::Steps(vec![
        Work::Write {
            path,
            bytes: text.as_bytes().to_vec().into(),
            mode: 0o644,
        },
        Work::Remove { path: mask },
    ]);
    let then = Then::Deploy {
        service: Box::new(service),
        start,
    };
    Ok(Reply::Pending(runtime.store(work, then)))
}

/// Applies what follows disk work that finished off the loop, and makes
/// the caller's answer. Nothing is applied when the work failed.
pub fn after_store(
    runtime: &mut Runtime,
    work: &Work,
    then: Then,
    outcome: std::io::Result<()>,
) -> Result<Value, ApiError> {
    let path = work.path().display().to_string();
    match (then, outcome) {
        (Then::Deploy { .. }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot write {path}: {e}"),
        )),
        (Then::Remove { name }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot delete {path}: {e}; {name} keeps running"),
        )),
        (Then::Secret { name }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot store secret {name}: {e}"),
        )),
        (Then::Deploy { service, start }, Ok(())) => {
            let name = service.name.clone();
            crate::journal::note(format_args!("{name}: deployed to {path}"));
            runtime.deploy(*service);
            if start {
                runtime.feed(Event::Start(name.clone()));
            }
            Ok(runtime
                .get(&name)
                .map(|v| summary(&v, Instant::now()))
                .unwrap_or(Value::Null))
        }
        (Then::Remove { name }, Ok(())) => {
            runtime.feed(Event::Remove(name.clone()));
            crate::journal::note(format_args!("{name}: removed"));
            Ok(json!({ "name": name, "removed": true }))
        }
        (Then::Secret { name }, Ok(())) => {
            // Services that load the secret are restarted so they see the
            // new value (their credential files are made at each start).
            let loaders: Vec<String> = runtime
                .supervisor()
                .services()
                .into_iter()
                .filter(|s| s.credentials.contains(&name) || s.secrets.values().any(|v| *v == name))
                .map(|s| s.name.clone())
                .filter(|service| runtime.get(service).is_some_and(|v| v.pid.is_some()))
                .collect();
            let (mut restarted, mut signalled) = (Vec::new(), Vec::new());
            for service in loaders {
                let signal = runtime
                    .get(&service)
                    .filter(|v| v.service.credentials.contains(&name))
                    .and_then(|v| v.service.reload_signal);
                if let Some(signal) = signal {
                    if runtime.refresh_credential(&service, &name, signal) {
                        crate::journal::note(format_args!(
                            "{service}: told (signal {signal}) of the new value of secret {name}"
                        ));
                        signalled.push(service);
                        continue;
                    }
                }
                crate::journal::note(format_args!(
                    "{service}: restarted for the new value of secret {name}"
                ));
                runtime.feed(Event::Restart(service.clone()));
                restarted.push(service);
            }
            Ok(
                json!({ "name": name, "stored": true, "restarted": restarted, "signalled": signalled }),
            )
        }
        (Then::SecretRemoved { name }, Ok(())) => Ok(json!({ "name": name, "removed": true })),
        (Then::Reload { .. }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot read the service files: {e}; nothing changed"),
        )),
        (Then::Reload { from }, Ok(())) => {
            let report = from.lock().ok().and_then(|mut slot| slot.take());
            match report {
                Some(report) => Ok(apply_reload(runtime, report)),
                None => Err(ApiError::new(code::INTERNAL, "the load left no report")),
            }
        }
        (Then::SecretRemoved { name }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot remove secret {name}: {e}"),
        )),
    }
}

fn join_errors(errors: &[svc::error::ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn remove(runtime: &mut Runtime, name: &str) -> Result<Reply, ApiError> {
    let users: Vec<String> = runtime
        .supervisor()
        .services()
        .into_iter()
        .filter(|s| {
            let d = &s.dependencies;
            d.requires
                .iter()
                .chain(&d.after)
                .chain(&d.conflicts)
                .any(|r| r.name == name)
        })
        .map(|s| s.name.clone())
        .collect();
    if !users.is_empty() {
        return Err(ApiError::new(
            code::IN_USE,
            format!(
                "{name} is named in requires/after/conflicts of {}; change those first",
                users.join(", ")
            ),
        ));
    }
    if runtime.get(name).is_none() {
        return Err(ApiError::new(
            code::NO_SUCH_SERVICE,
            format!("no service named {name}"),
        ));
    }
    let files = store(runtime)?;
    let deployed = files.deployed.join(format!("{name}.toml"));
    let image = files.services.join(format!("{name}.toml"));
    // The files go first (off the loop); the service stops once they are
    // gone, so a failed deletion leaves it running as it was. An image
    // service cannot be deleted from the image: a mask in the deployed
    // layer hides it, and is written before the deployed copy goes.
    let mut steps = Vec::new();
    if image.exists() {
        steps.push(Work::Write {
            path: files.deployed.join(svc::load::mask_name(name)),
            bytes: Vec::new().into(),
            mode: 0o644,
        });
    }
    steps.push(Work::Remove { path: deployed });
    let then = Then::Remove {
        name: name.to_owned(),
    };
    Ok(Reply::Pending(runtime.store(Work::Steps(steps), then)))
}

/// Longest secret accepted.
const MAX_SECRET: usize = 64 * 1024;

fn set_secret(runtime: &mut Runtime, name: &str, value: &str) -> Result<Reply, ApiError> {
    let files = store(runtime)?;
    if !svc::parse::is_valid_name(name) {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("invalid secret name `{name}`"),
        ));
    }
    if value.len() > MAX_SECRET {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("a secret holds at most {MAX_SECRET} bytes"),
        ));
    }
    let work = Work::Write {
        path: files.secrets.join(name),
        bytes: value.as_bytes().to_vec().into(),
        mode: 0o600,
    };
    let then = Then::Secret {
        name: name.to_owned(),
    };
    Ok(Reply::Pending(runtime.store(work, then)))
}

/// `node.reload`: reads the image's services and the deployed layer again
/// (off the loop) and applies what changed.
pub fn reload(runtime: &mut Runtime) -> Result<Reply, ApiError> {
    let files = store(runtime)?;
    let from = LoadSlot::default();
    let work = Work::Load {
        base: files.services.clone(),
        layer: files.deployed.clone(),
        into: from.clone(),
    };
    Ok(Reply::Pending(runtime.store(work, Then::Reload { from })))
}

/// Applies a reload: new services are added (and started when their status
/// says so), changed ones replace the old definition, vanished ones are
/// removed. A file that no longer validates changes nothing: its service
/// keeps running as it was, and the error is reported.
fn apply_reload(runtime: &mut Runtime, report: svc::LoadReport) -> Value {
    use std::collections::HashSet;
    let rejected: HashSet<String> = report
        .errors
        .iter()
        .filter_map(|e| {
            e.file
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_owned)
        })
        .collect();
    let listed: HashSet<String> = report.services.iter().map(|s| s.name.clone()).collect();
    let current: Vec<svc::service::Service> = runtime
        .supervisor()
        .services()
        .into_iter()
        .cloned()
        .collect();
    let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for service in report.services {
        match current.iter().find(|s| s.name == service.name) {
            Some(old) if *old == service => {}
            Some(_) => {
                changed.push(service.name.clone());
                runtime.deploy(service);
            }
            None => {
                let start = service.status == svc::service::Status::Start;
                let name = service.name.clone();
                added.push(name.clone());
                runtime.deploy(service);
                if start {
                    runtime.feed(Event::Start(name));
                }
            }
        }
    }
    for old in &current {
        if !listed.contains(&old.name) && !rejected.contains(&old.name) {
            removed.push(old.name.clone());
            runtime.feed(Event::Remove(old.name.clone()));
        }
    }
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    for error in &errors {
        crate::journal::note(format_args!(
            "reload: rejected (the running definition stays): {error}"
        ));
    }
    crate::journal::note(format_args!(
        "reload: {} added, {} changed, {} removed, {} rejected",
        added.len(),
        changed.len(),
        removed.len(),
        errors.len()
    ));
    json!({ "added": added, "changed": changed, "removed": removed, "errors": errors })
}

fn remove_secret(runtime: &mut Runtime, name: &str) -> Result<Reply, ApiError> {
    let files = store(runtime)?;
    if !svc::parse::is_valid_name(name) {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("invalid secret name `{name}`"),
        ));
    }
    let path = files.secrets.join(name);
    if !path.exists() {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("no secret named {name}"),
        ));
    }
    let then = Then::SecretRemoved {
        name: name.to_owned(),
    };
    Ok(Reply::Pending(runtime.store(Work::Remove { path }, then)))
}

fn list_secrets(runtime: &Runtime) -> Result<Value, ApiError> {
    let files = store(runtime)?;
    let mut names: Vec<String> = std::fs::read_dir(&files.secrets)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Ok(json!(names))
}

/// One log line as JSON.
pub fn line_json(line: &LogLine) -> Value {
    json!({
        "time": crate::journal::timestamp(line.time),
        "stream": line.stream.name(),
        "text": line.text,
    })
}

fn check_params(spec: &MethodSpec, params: &Value) -> Result<Map<String, Value>, ApiError> {
    let object = match params {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        _ => {
            return Err(ApiError::new(
                code::INVALID_PARAMS,
                "params must be an object",
            ))
        }
    };
    for key in object.keys() {
        if !spec.params.iter().any(|(name, _, _)| name == key) {
            return Err(ApiError::new(
                code::INVALID_PARAMS,
                format!("unknown parameter `{key}` for {}", spec.name),
            ));
        }
    }
    for (name, kind, required) in spec.params {
        match object.get(*name) {
            None if *required => {
                return Err(ApiError::new(
                    code::INVALID_PARAMS,
                    format!("{} needs `{name}` ({kind})", spec.name),
                ))
            }
            None => {}
            Some(value) => {
                let ok = match *kind {
                    "string" => value.is_string(),
                    "integer" => value.is_u64(),
                    "boolean" => value.is_boolean(),
                    _ => true,
                };
                if !ok {
                    return Err(ApiError::new(
                        code::INVALID_PARAMS,
                        format!("`{name}` must be a {kind}"),
                    ));
                }
            }
        }
    }
    Ok(object)
}

fn service_name(runtime: &Runtime, params: &Map<String, Value>) -> Result<String, ApiError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if runtime.get(name).is_none() {
        return Err(ApiError::new(
            code::NO_SUCH_SERVICE,
            format!("no such service: {name}"),
        ));
    }
    Ok(name.to_owned())
}

fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Daemon => "daemon",
        Kind::Oneshot => "oneshot",
        Kind::Target => "target",
    }
}

fn summary(view: &UnitView<'_>, now: Instant) -> Value {
    let since_ms = view
        .since
        .map(|t| now.saturating_duration_since(t).as_millis() as u64);
    json!({
        "name": view.service.name,
        "kind": kind_word(view.service.kind),
        "state": view.state.word(),
        "detail": view.state.describe(now),
        "pid": view.pid,
        "wanted": view.wanted,
        "restarts": view.restarts,
        "since_ms": since_ms,
    })
}

/// One unit in full; `deployed` is the deployed layer, to say where its
/// file comes from (`image` or `deployed`).
fn detail(view: &UnitView<'_>, now: Instant, deployed: Option<&std::path::Path>) -> Value {
    let mut value = summary(view, now);
    let service = view.service;
    let names = |refs: &[svc::service::DependencyRef]| -> Vec<String> {
        refs.iter().map(|r| r.name.clone()).collect()
    };
    let checks: Vec<Value> = service
        .health
        .iter()
        .map(|check| {
            let probe = match &check.probe {
                Probe::Tcp { target } => json!({ "type": "tcp", "target": target }),
                Probe::Http { target, expect_status } => json!({ "type": "http", "target": target, "expect_status": expect_status }),
                Probe::Exec { command } => json!({ "type": "exec", "argv": command.argv() }),
            };
            json!({ "name": check.name, "probe": probe, "interval_ms": check.interval.as_millis() as u64 })
        })
        .collect();
    if let Value::Object(map) = &mut value {
        map.insert("description".into(), json!(service.description));
        map.insert(
            "argv".into(),
            json!(service.command.as_ref().map(|c| c.argv())),
        );
        map.insert("file".into(), json!(service.file.display().to_string()));
        let source = match deployed {
            Some(layer) if service.file.starts_with(layer) => "deployed",
            _ => "image",
        };
        map.insert("source".into(), json!(source));
        map.insert(
            "class".into(),
            json!(format!("{:?}", service.class).to_lowercase()),
        );
        map.insert(
            "dependencies".into(),
            json!({
                "requires": names(&service.dependencies.requires),
                "after": names(&service.dependencies.after),
                "wants": names(&service.dependencies.wants),
                "conflicts": names(&service.dependencies.conflicts),
            }),
        );
        map.insert("health".into(), Value::Array(checks));
        map.insert(
            "last_exit".into(),
            json!(view.last_exit.map(|e| e.to_string())),
        );
        map.insert(
            "last_exit_code".into(),
            json!(view.last_exit.map(|e| e.shell_code())),
        );
        map.insert("last_error".into(), json!(view.last_error));
    }
    value
}

/// The OpenRPC document for [`METHODS`].
pub fn discover() -> Value {
    let methods: Vec<Value> = METHODS
        .iter()
        .map(|m| {
            let params: Vec<Value> = m
                .params
                .iter()
                .map(|(name, kind, required)| json!({ "name": name, "required": required, "schema": { "type": kind } }))
                .collect();
            json!({
                "name": m.name,
                "summary": m.summary,
                "params": params,
                "result": { "name": "result", "schema": {} },
                "x-spore-role": if m.role == Role::Admin { "admin" } else { "reader" },
            })
        })
        .collect();
    json!({
        "openrpc": "1.2.6",
        "info": { "title": "spore", "version": env!("CARGO_PKG_VERSION") },
        "methods": methods,
    })
}

/// Seconds since the Unix epoch, for `node.info`.
pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
