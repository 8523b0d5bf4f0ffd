//! `node.metrics`: the node's figures for a metrics system, as numbers
//! (sporectl turns them into Prometheus' text format, `rpc::metrics`): the
//! node's start and version, and per service its state, readiness,
//! restarts, last exit code and, where it has a cgroup, CPU and memory.
//! Read when asked; nothing is sampled in between.

use serde_json::{json, Map, Value};

use super::{ApiError, Paging};

/// The figures; `info` is what `node.info` answers (hostname, version,
/// uptime). With `limit` or `after` (as `service.list` takes them), the
/// node's figures and one page of its services, by name, with `next`;
/// unpaged, figures too large for one answer are refused (-32013).
pub fn metrics(
    runtime: &runtime::Runtime,
    info: &Value,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let now = runtime.now();
    let mut names: Vec<&str> = runtime
        .supervisor()
        .services()
        .into_iter()
        .map(|service| service.name.as_str())
        .collect();
    names.sort_unstable();
    let paging = Paging::of(params);
    let (services, next) = paging.page(&names, |i| {
        let Some(view) = names.get(i).and_then(|name| runtime.get(name)) else {
            return Value::Null;
        };
        let usage = runtime.usage(&view.service.name);
        json!({
            "name": view.service.name,
            "state": view.state.word(),
            "ready": view.state.is_ready(),
            "restarts": view.restarts,
            "last_exit_code": view.last_exit.map(|e| e.shell_code()),
            "since_s": view.since.map(|t| now.saturating_duration_since(t).as_secs()),
            "cpu_usec": usage.as_ref().and_then(|u| u.cpu_usec),
            "memory_bytes": usage.as_ref().and_then(|u| u.memory_bytes),
            "oom_kills": usage.as_ref().and_then(|u| u.oom_kills),
        })
    });
    if !paging.paged && next.is_some() {
        return Err(super::too_large(names.len()));
    }
    let uptime = info.get("uptime_s").and_then(Value::as_u64).unwrap_or(0);
    let time = info.get("time").and_then(Value::as_u64).unwrap_or(0);
    let mut figures = json!({
        "hostname": info.get("hostname"),
        "version": info.get("version"),
        "build_id": info.pointer("/boot/build_id"),
        "start_time_s": time.saturating_sub(uptime),
        "rpc_refusals": info.pointer("/rpc/refusals"),
        "services": services,
    });
    if let (true, Value::Object(map)) = (paging.paged, &mut figures) {
        map.insert("next".into(), next.unwrap_or(Value::Null));
    }
    Ok(figures)
}
