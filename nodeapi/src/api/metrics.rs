//! `node.metrics`: the node's figures for a metrics system, as numbers
//! (sporectl turns them into Prometheus' text format, `rpc::metrics`): the
//! node's start and version, and per service its state, readiness,
//! restarts, last exit code and, where it has a cgroup, CPU and memory.
//! Read when asked; nothing is sampled in between.

use serde_json::{json, Value};

/// The figures; `info` is what `node.info` answers (hostname, version,
/// uptime).
pub fn metrics(runtime: &runtime::Runtime, info: &Value) -> Value {
    let now = runtime.now();
    let services: Vec<Value> = runtime
        .supervisor()
        .services()
        .into_iter()
        .filter_map(|service| {
            let view = runtime.get(&service.name)?;
            let usage = runtime.usage(&service.name);
            Some(json!({
                "name": service.name,
                "state": view.state.word(),
                "ready": view.state.is_ready(),
                "restarts": view.restarts,
                "last_exit_code": view.last_exit.map(|e| e.shell_code()),
                "since_s": view.since.map(|t| now.saturating_duration_since(t).as_secs()),
                "cpu_usec": usage.as_ref().and_then(|u| u.cpu_usec),
                "memory_bytes": usage.as_ref().and_then(|u| u.memory_bytes),
                "oom_kills": usage.as_ref().and_then(|u| u.oom_kills),
            }))
        })
        .collect();
    let uptime = info.get("uptime_s").and_then(Value::as_u64).unwrap_or(0);
    let time = info.get("time").and_then(Value::as_u64).unwrap_or(0);
    json!({
        "hostname": info.get("hostname"),
        "version": info.get("version"),
        "build_id": info.pointer("/boot/build_id"),
        "start_time_s": time.saturating_sub(uptime),
        "rpc_refusals": info.pointer("/rpc/refusals"),
        "services": services,
    })
}
