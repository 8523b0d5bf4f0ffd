//! `node.metrics` answers in Prometheus' text exposition format (0.0.4):
//! one `# HELP` and `# TYPE` per metric, then its samples, every one
//! labelled with its `node` (and `service`). Names follow Prometheus'
//! conventions: base units (seconds, bytes), `_total` on counters,
//! `_info` for a constant 1 carrying labels. A node that did not answer
//! is `spore_node_up 0` and nothing else.

use std::fmt::Write;

use serde_json::Value;

/// One node's answer, or None when it did not answer.
pub struct Scraped<'a> {
    /// The node's name (the fleet's, or the address asked).
    pub node: &'a str,
    /// Its `node.metrics` answer.
    pub figures: Option<&'a Value>,
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, String)>,
}

impl Metric {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Metric {
        Metric {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        self.samples.push((labels.join(","), value.to_string()));
    }
}

/// The text for `nodes`.
pub fn render(nodes: &[Scraped<'_>]) -> String {
    let mut up = Metric::new(
        "spore_node_up",
        "gauge",
        "Whether the node answered node.metrics (1) or not (0).",
    );
    let mut start = Metric::new(
        "spore_node_start_time_seconds",
        "gauge",
        "When spore started on the node, in seconds since the Unix epoch.",
    );
    let mut build = Metric::new(
        "spore_build_info",
        "gauge",
        "spore's version and build id (SHA-256 of the binary) on the node; always 1.",
    );
    let mut refused = Metric::new(
        "spore_rpc_refusals_total",
        "counter",
        "Connections to the node's signed RPC refused or ended in error since spore started, by reason (node_full, evicted, over_budget, handshake_timeout, refused_key, malformed_handshake, ...).",
    );
    let mut state = Metric::new(
        "spore_service_state",
        "gauge",
        "The service's state: 1 for the state it is in (one sample per service).",
    );
    let mut ready = Metric::new(
        "spore_service_ready",
        "gauge",
        "Whether the service is ready (a oneshot: succeeded).",
    );
    let mut restarts = Metric::new(
        "spore_service_restarts_total",
        "counter",
        "Restarts of the service since it was last stable.",
    );
    let mut exit = Metric::new(
        "spore_service_last_exit_code",
        "gauge",
        "How the service's last run ended, as a shell's $? (128+N for signal N).",
    );
    let mut cpu = Metric::new(
        "spore_service_cpu_seconds_total",
        "counter",
        "CPU time used by the service's cgroup.",
    );
    let mut memory = Metric::new(
        "spore_service_memory_bytes",
        "gauge",
        "Memory charged to the service's cgroup now.",
    );
    let mut oom = Metric::new(
        "spore_service_oom_kills_total",
        "counter",
        "Processes of the service killed by the OOM killer.",
    );
    for scraped in nodes {
        let node = scraped.node;
        let Some(figures) = scraped.figures else {
            up.add(&[("node", node)], 0);
            continue;
        };
        up.add(&[("node", node)], 1);
        if let Some(at) = figures.get("start_time_s").and_then(Value::as_u64) {
            start.add(&[("node", node)], at);
        }
        let text = |key: &str| figures.get(key).and_then(Value::as_str).unwrap_or("");
        build.add(
            &[
                ("node", node),
                ("version", text("version")),
                ("build_id", text("build_id")),
            ],
            1,
        );
        if let Some(counts) = figures.get("rpc_refusals").and_then(Value::as_object) {
            for (reason, count) in counts {
                if let Some(count) = count.as_u64() {
                    refused.add(&[("node", node), ("reason", reason)], count);
                }
            }
        }
        for service in figures
            .get("services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = service.get("name").and_then(Value::as_str).unwrap_or("");
            let labels = [("node", node), ("service", name)];
            let word = service
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            state.add(&[("node", node), ("service", name), ("state", word)], 1);
            let is_ready = service
                .get("ready")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            ready.add(&labels, u8::from(is_ready));
            if let Some(n) = service.get("restarts").and_then(Value::as_u64) {
                restarts.add(&labels, n);
            }
            if let Some(code) = service.get("last_exit_code").and_then(Value::as_i64) {
                exit.add(&labels, code);
            }
            if let Some(usec) = service.get("cpu_usec").and_then(Value::as_u64) {
                cpu.add(
                    &labels,
                    format!("{}.{:06}", usec / 1_000_000, usec % 1_000_000),
                );
            }
            if let Some(bytes) = service.get("memory_bytes").and_then(Value::as_u64) {
                memory.add(&labels, bytes);
            }
            if let Some(kills) = service.get("oom_kills").and_then(Value::as_u64) {
                oom.add(&labels, kills);
            }
        }
    }
    write(&[
        up, start, build, refused, state, ready, restarts, exit, cpu, memory, oom,
    ])
}

/// What a beacon told `metrics --serve` when it read the fleet's list.
#[derive(Debug, Default)]
pub struct BeaconFigures {
    /// Whether the beacon answered.
    pub up: bool,
    /// Each enrolled node and when the beacon last heard from it (Unix
    /// seconds).
    pub heartbeats: Vec<(String, u64)>,
    /// Registrations waiting for approval (None: not read).
    pub pending: Option<usize>,
    /// The artifacts its cache holds and their bytes (None: it keeps no
    /// cache, or it was not read).
    pub artifacts: Option<(usize, u64)>,
}

/// The text for a beacon's figures: `spore_beacon_up`, its nodes, their
/// last heartbeats, its pending registrations and artifact cache.
pub fn render_beacon(beacon: &BeaconFigures) -> String {
    let mut up = Metric::new(
        "spore_beacon_up",
        "gauge",
        "Whether the beacon answered the list of nodes (1) or not (0).",
    );
    up.add(&[], u8::from(beacon.up));
    let mut nodes = Metric::new(
        "spore_beacon_nodes",
        "gauge",
        "Nodes enrolled at the beacon (those the list was narrowed to).",
    );
    let mut heartbeat = Metric::new(
        "spore_beacon_last_heartbeat_timestamp_seconds",
        "gauge",
        "When the beacon last heard from the node (a registration or heartbeat), in seconds since the Unix epoch.",
    );
    let mut pending = Metric::new(
        "spore_beacon_pending_registrations",
        "gauge",
        "Registrations waiting for an operator's approval.",
    );
    let mut artifacts = Metric::new(
        "spore_beacon_artifacts",
        "gauge",
        "Artifacts in the beacon's cache.",
    );
    let mut artifact_bytes = Metric::new(
        "spore_beacon_artifact_bytes",
        "gauge",
        "Bytes of the artifacts in the beacon's cache.",
    );
    if beacon.up {
        nodes.add(&[], beacon.heartbeats.len());
        for (node, at) in &beacon.heartbeats {
            heartbeat.add(&[("node", node)], at);
        }
        if let Some(count) = beacon.pending {
            pending.add(&[], count);
        }
        if let Some((count, bytes)) = beacon.artifacts {
            artifacts.add(&[], count);
            artifact_bytes.add(&[], bytes);
        }
    }
    write(&[up, nodes, heartbeat, pending, artifacts, artifact_bytes])
}

/// Each metric with samples: its HELP, TYPE and samples.
fn write(metrics: &[Metric]) -> String {
    let mut out = String::new();
    for metric in metrics {
        if metric.samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", metric.name, metric.help);
        let _ = writeln!(out, "# TYPE {} {}", metric.name, metric.kind);
        for (labels, value) in &metric.samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", metric.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {value}", metric.name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_values_are_escaped_and_a_silent_node_is_down() {
        let figures = json!({
            "version": "0.1.0", "build_id": "ab", "start_time_s": 1700000000u64,
            "services": [{ "name": "we\"b\n", "state": "backoff", "ready": false, "restarts": 3,
                           "last_exit_code": 3, "cpu_usec": 1_500_000u64 }],
        });
        let text = render(&[
            Scraped {
                node: "n1",
                figures: Some(&figures),
            },
            Scraped {
                node: "n2",
                figures: None,
            },
        ]);
        assert!(text.contains("spore_node_up{node=\"n1\"} 1\n"), "{text}");
        assert!(text.contains("spore_node_up{node=\"n2\"} 0\n"), "{text}");
        assert!(
            text.contains("spore_service_restarts_total{node=\"n1\",service=\"we\\\"b\\n\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "spore_service_cpu_seconds_total{node=\"n1\",service=\"we\\\"b\\n\"} 1.500000\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE spore_service_restarts_total counter\n"),
            "{text}"
        );
        assert!(
            !text.contains("spore_service_memory_bytes"),
            "no cgroup, no memory: {text}"
        );
    }

    #[test]
    fn a_beacon_says_its_nodes_heartbeats_and_cache() {
        let text = render_beacon(&BeaconFigures {
            up: true,
            heartbeats: vec![("n1".into(), 1_700_000_000)],
            pending: Some(2),
            artifacts: Some((3, 4096)),
        });
        assert!(text.contains("spore_beacon_up 1\n"), "{text}");
        assert!(text.contains("spore_beacon_nodes 1\n"), "{text}");
        assert!(
            text.contains(
                "spore_beacon_last_heartbeat_timestamp_seconds{node=\"n1\"} 1700000000\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("spore_beacon_pending_registrations 2\n"),
            "{text}"
        );
        assert!(
            text.contains("spore_beacon_artifact_bytes 4096\n"),
            "{text}"
        );
        let down = render_beacon(&BeaconFigures::default());
        assert_eq!(down, "# HELP spore_beacon_up Whether the beacon answered the list of nodes (1) or not (0).\n# TYPE spore_beacon_up gauge\nspore_beacon_up 0\n");
    }
}
