//! `service.why NAME`: why a service is not running, link by link. A
//! service held back by another (`blocked: waiting for db`) leads to that
//! one, and so on until a service that is not held back by anything: the
//! one to fix. Each link says its state, how its last run ended, what it
//! last printed and how often it restarted, so one answer replaces a
//! `status` per service along the chain.

use std::collections::HashSet;

use serde_json::{json, Value};
use svc::supervisor::State;

/// Lines of its own output each link carries.
const LINES: usize = 3;

/// Links followed at most (a chain is as long as the dependency graph is
/// deep; this bounds the answer whatever the graph).
const MAX_LINKS: usize = 32;

/// The chain for `name`, which exists; see the module docs.
pub fn why(runtime: &runtime::Runtime, name: &str) -> Value {
    let now = runtime.now();
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut current = name.to_owned();
    while chain.len() < MAX_LINKS && seen.insert(current.clone()) {
        let Some(view) = runtime.get(&current) else {
            break;
        };
        let lines: Vec<String> = runtime
            .logs(&current)
            .map(|book| {
                // The service's own words, not spore's markers in its log.
                let mut lines: Vec<String> = book
                    .tail(usize::MAX)
                    .rev()
                    .filter(|line| line.stream != runtime::logbook::Stream::Spore)
                    .take(LINES)
                    .map(|line| line.text.clone())
                    .collect();
                lines.reverse();
                lines
            })
            .unwrap_or_default();
        chain.push(json!({
            "name": current,
            "state": view.state.word(),
            "detail": view.state.describe(now),
            "wanted": view.wanted,
            "restarts": view.restarts,
            "last_exit": view.last_exit.map(|e| e.to_string()),
            "last_error": view.last_error,
            "lines": lines,
        }));
        match &view.state {
            State::Blocked { on, .. } => current = on.clone(),
            _ => break,
        }
    }
    let running = runtime
        .get(name)
        .is_some_and(|v| matches!(v.state, State::Ready | State::Running | State::Succeeded));
    json!({
        "name": name,
        "running": running,
        "summary": summary(name, running, &chain),
        "chain": chain,
    })
}

/// The chain in one sentence: `web is not running: blocked: waiting for
/// db; db: backoff: restart in 900 ms (last run: exited with code 1; last
/// output: "connection refused")`.
fn summary(name: &str, running: bool, chain: &[Value]) -> String {
    let text = |link: &Value, key: &str| {
        link.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let Some(first) = chain.first() else {
        return format!("{name}: unknown");
    };
    if running {
        return format!("{name} is {}", text(first, "detail"));
    }
    let mut parts = Vec::new();
    for (i, link) in chain.iter().enumerate() {
        let mut part = if i == 0 {
            format!("{name} is not running: {}", text(link, "detail"))
        } else {
            format!("{}: {}", text(link, "name"), text(link, "detail"))
        };
        let is_last = i + 1 == chain.len();
        if is_last {
            if link.get("wanted") == Some(&Value::Bool(false))
                && matches!(text(link, "state").as_str(), "inactive" | "stopped")
            {
                part.push_str(" (nothing asks it to run: start it, or give it status = \"start\")");
            }
            let mut facts = Vec::new();
            let last_exit = text(link, "last_exit");
            if !last_exit.is_empty() && !text(link, "detail").contains(&last_exit) {
                facts.push(format!("last run: {last_exit}"));
            }
            let error = text(link, "last_error");
            if !error.is_empty() {
                facts.push(format!("error: {error}"));
            }
            if let Some(line) = link
                .get("lines")
                .and_then(Value::as_array)
                .and_then(|l| l.last())
                .and_then(Value::as_str)
            {
                facts.push(format!("last output: {line:?}"));
            }
            let restarts = link.get("restarts").and_then(Value::as_u64).unwrap_or(0);
            if restarts > 0 {
                facts.push(format!("{restarts} restart(s)"));
            }
            if !facts.is_empty() {
                part.push_str(&format!(" ({})", facts.join("; ")));
            }
        }
        parts.push(part);
    }
    parts.join("; ")
}
