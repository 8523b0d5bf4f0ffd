//! `sporectl --all metrics --serve`: three real `spore run` nodes at a real
//! beacon, served as one scrape target and scraped by a real Prometheus
//! (Debian's, installed by scripts/setup); what Prometheus stored is read
//! back through its own query API. The listener is flooded with held
//! sockets from other addresses meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::beacon::*;
use common::{sporectl_bin, Killed, Spore};
use serde_json::Value;

/// One GET on loopback; status and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Prometheus' answer to an instant query: each series' labels and value.
fn query(port: u16, promql: &str) -> Vec<(Value, String)> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    let Some((200, body)) = get(port, &format!("/api/v1/query?query={encoded}")) else {
        return Vec::new();
    };
    let answer: Value = serde_json::from_str(&body).unwrap();
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|series| {
            (
                series["metric"].clone(),
                series["value"][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until `done` holds, polling (a test may poll; spore may not).
fn eventually(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn prometheus(dir: &Path, port: u16, target: u16) -> Killed {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: spore\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (scripts/setup installs it)"),
    )
}

#[test]
fn prometheus_scrapes_the_fleet_through_one_target_while_it_is_flooded() {
    let work = tempfile::tempdir().unwrap();
    let op = operator(work.path());
    let beacon = Beacon::start(free_port(), &work.path().join("beacon"), &["--open"]);
    let mut fleet: Vec<Spore> = (1..=3)
        .map(|i| node(&format!("node-0{i}"), beacon.port, &op, 0).0)
        .collect();
    fleet[0].wait_for("three registrations", Duration::from_secs(30), |_| {
        nodes(beacon.port).len() == 3
    });
    // A service on node-03 that exits and is restarted, again and again.
    std::fs::write(
        fleet[2].path("etc/services/crashy.toml"),
        "[service]\nname = \"crashy\"\nexec = \"/bin/sh -c 'sleep 0.2; exit 1'\"\n",
    )
    .unwrap();
    fleet[2].call("node.reload", serde_json::json!({})).unwrap();
    let target = free_port();
    let _server = Killed(
        Command::new(sporectl_bin())
            .args(["--beacon", &beacon.url(), "--all", "--identity"])
            .arg(&op)
            .args(["metrics", "--serve", &format!("127.0.0.1:{target}")])
            .args(["--min-interval", "1s"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    eventually("the scrape target", Duration::from_secs(10), || {
        get(target, "/metrics").is_some()
    });
    // What it serves is valid Prometheus text; anything else is 404/405.
    let (status, text) = get(target, "/metrics").unwrap();
    assert_eq!(status, 200);
    common::promtool_check(&text);
    assert_eq!(get(target, "/").unwrap().0, 404);
    // A flood of held sockets from 32 other addresses, renewed as the
    // server sheds them, for the rest of the test: the scrapes go on.
    let to: SocketAddr = format!("127.0.0.1:{target}").parse().unwrap();
    let flood = common::Flood::start(to, 1, 32, 512, Duration::from_millis(2));
    let prometheus_port = free_port();
    let _prometheus = prometheus(work.path(), prometheus_port, target);
    eventually(
        "three nodes up in Prometheus",
        Duration::from_secs(60),
        || {
            let up = query(prometheus_port, "spore_node_up");
            up.len() == 3 && up.iter().all(|(_, v)| v == "1")
        },
    );
    let nodes_seen: Vec<String> = query(prometheus_port, "spore_node_up")
        .iter()
        .map(|(labels, _)| labels["node"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = nodes_seen.clone();
    sorted.sort();
    assert_eq!(sorted, ["node-01", "node-02", "node-03"]);
    // The beacon's own figures: up, its three nodes, their heartbeats.
    let beacon_nodes = query(prometheus_port, "spore_beacon_nodes");
    assert_eq!(beacon_nodes.len(), 1, "{beacon_nodes:?}");
    assert_eq!(beacon_nodes[0].1, "3");
    assert_eq!(
        query(
            prometheus_port,
            "spore_beacon_last_heartbeat_timestamp_seconds"
        )
        .len(),
        3
    );
    assert_eq!(
        query(prometheus_port, "spore_beacon_pending_registrations")[0].1,
        "0"
    );
    // Each node's services, under its name.
    let states = query(
        prometheus_port,
        "spore_service_state{service=\"call-home\"}",
    );
    assert!(!states.is_empty(), "per-service series are stored");
    // The restarts of a service that was restarted, as Prometheus stored
    // them.
    eventually(
        "crashy's restarts in Prometheus",
        Duration::from_secs(60),
        || {
            query(
                prometheus_port,
                "spore_service_restarts_total{node=\"node-03\",service=\"crashy\"}",
            )
            .iter()
            .any(|(_, v)| v.parse::<f64>().is_ok_and(|n| n >= 1.0))
        },
    );
    // A node that goes away is spore_node_up 0 at the next scrape.
    fleet[1].terminate();
    eventually(
        "node-02 down in Prometheus",
        Duration::from_secs(60),
        || {
            query(prometheus_port, "spore_node_up{node=\"node-02\"}")
                .iter()
                .any(|(_, v)| v == "0")
        },
    );
    // The target itself was never down for Prometheus.
    let scrapes = query(prometheus_port, "min_over_time(up{job=\"spore\"}[1m])");
    assert_eq!(scrapes.len(), 1);
    assert_eq!(scrapes[0].1, "1", "a scrape failed during the flood");
    let opened = flood.stop();
    assert!(opened > 1000, "the flood opened {opened} connections");
    // Refusals are counted into summaries, never a line each.
    let log = std::fs::read_to_string(work.path().join("serve.log")).unwrap();
    assert!(
        log.contains("metrics: unauthenticated connections since the last summary:"),
        "{log}"
    );
    assert!(log.lines().count() < 20, "{log}");
}
