//! How services, log lines and time look in answers: JSON views of the
//! supervisor's state, stable field names for scripts.

use std::time::Instant;

use serde_json::{json, Value};
use svc::service::{Kind, Probe};
use svc::supervisor::UnitView;

use runtime::logbook::LogLine;

/// One log line as JSON.
pub fn line_json(line: &LogLine) -> Value {
    json!({
        "time": runtime::text::timestamp(line.time),
        "stream": line.stream.name(),
        "text": line.text,
    })
}

/// The newest of `lines` (oldest first) whose JSON fits in `budget`
/// bytes, oldest first, and how many older ones were left out for it.
pub fn lines_within<'a>(
    lines: impl DoubleEndedIterator<Item = &'a LogLine>,
    budget: usize,
) -> (Vec<Value>, usize) {
    let mut kept = Vec::new();
    let mut bytes = 0;
    let mut omitted = 0;
    for line in lines.rev() {
        if omitted > 0 {
            omitted += 1;
            continue;
        }
        let json = line_json(line);
        bytes += json.to_string().len() + 1;
        if bytes > budget {
            omitted = 1;
            continue;
        }
        kept.push(json);
    }
    kept.reverse();
    (kept, omitted)
}

fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Daemon => "daemon",
        Kind::Oneshot => "oneshot",
        Kind::Target => "target",
    }
}

/// One unit in brief: name, kind, state, pid, restarts, time in its state.
pub fn summary(view: &UnitView<'_>, now: Instant) -> Value {
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
pub fn detail(view: &UnitView<'_>, now: Instant, deployed: Option<&std::path::Path>) -> Value {
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
        let sockets: Vec<Value> = service
            .sockets
            .iter()
            .map(|socket| {
                let (mode, backend) = match &socket.mode {
                    svc::service::SocketMode::Pass => ("pass", None),
                    svc::service::SocketMode::Proxy { backend } => {
                        ("proxy", Some(backend.to_string()))
                    }
                };
                json!({
                    "listen": socket.listen.to_string(),
                    "name": socket.name,
                    "mode": mode,
                    "backend": backend,
                    "idle_stop_ms": socket.idle_stop.map(|d| d.as_millis() as u64),
                })
            })
            .collect();
        map.insert("sockets".into(), Value::Array(sockets));
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

/// [`detail`] with what the service uses of the node (`usage`, from its
/// cgroup, when it has one).
pub fn detail_with_usage(
    runtime: &runtime::Runtime,
    view: &UnitView<'_>,
    deployed: Option<&std::path::Path>,
) -> Value {
    let mut value = detail(view, runtime.now(), deployed);
    if let (Value::Object(map), Some(usage)) = (&mut value, runtime.usage(&view.service.name)) {
        map.insert("usage".into(), json!(usage));
    }
    value
}

pub use proto::rpc::unix_time;

/// Lines of output a settled wait carries when the service did not come up.
const FAILURE_LINES: usize = 10;

/// The answer of a call that waited for `name`: its summary, how the wait
/// ended (`outcome`), and its last lines of output unless it is ready.
pub fn settled(runtime: &runtime::Runtime, name: &str, outcome: crate::wait::Outcome) -> Value {
    let mut value = runtime
        .get(name)
        .map(|v| summary(&v, runtime.now()))
        .unwrap_or_else(|| json!({ "name": name, "state": "removed" }));
    if let Value::Object(map) = &mut value {
        map.insert("outcome".into(), json!(outcome.word()));
        if outcome != crate::wait::Outcome::Ready {
            let lines: Vec<Value> = runtime
                .logs(name)
                .map(|book| book.tail(FAILURE_LINES).map(line_json).collect())
                .unwrap_or_default();
            map.insert("lines".into(), Value::Array(lines));
            if let Some(exit) = runtime.get(name).and_then(|v| v.last_exit) {
                map.insert("last_exit".into(), json!(exit.to_string()));
                map.insert("last_exit_code".into(), json!(exit.shell_code()));
            }
        }
    }
    value
}

/// How many services there are, by state (for a whole-node status).
pub fn census(runtime: &runtime::Runtime) -> Value {
    let mut by_state = serde_json::Map::new();
    let units = runtime.supervisor().list();
    for unit in &units {
        let count = by_state
            .entry(unit.state.word())
            .or_insert_with(|| json!(0));
        *count = json!(count.as_u64().unwrap_or(0) + 1);
    }
    json!({ "total": units.len(), "by_state": by_state })
}
