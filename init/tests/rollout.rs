//! `sporectl rollout deploy`: twenty real `spore run` nodes registered at a
//! real beacon, changed in health-gated batches by sporectl over signed
//! RPC. What each node ran, and when, is read back from the nodes
//! themselves (their control sockets), not from sporectl's report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::beacon::*;
use common::Spore;
use serde_json::{json, Value};

const NODES: usize = 20;

/// A long-running web service: `sleep SECONDS`, so each version is told
/// apart by its argv; `requires` gate when asked.
fn web(seconds: u32, gated: bool) -> String {
    let mut text = format!("[service]\nname = \"web\"\nexec = \"/bin/sleep {seconds}\"\n");
    if gated {
        text.push_str("\n[dependencies]\nrequires = [\"gate\"]\n");
    }
    text
}

fn rollout(beacon: &Beacon, op: &Path, file: &Path, extra: &[&str]) -> Output {
    let url = beacon.url();
    let mut args = vec![
        "--beacon",
        &url,
        "--all",
        "--identity",
        op.to_str().unwrap(),
        "rollout",
        "deploy",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    sporectl(&args)
}

/// The events sporectl printed with --json, one document per line.
fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The file text web has on `node`, read from the node itself.
fn web_text(node: &Spore) -> Option<String> {
    node.call("service.definition", json!({ "name": "web" }))
        .ok()
        .map(|d| d["text"].as_str().unwrap().to_owned())
}

/// How long web has been in its state on `node`.
fn web_age_ms(node: &Spore) -> u64 {
    node.call("service.status", json!({ "name": "web" }))
        .unwrap()["since_ms"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_rollout_goes_in_batches_and_a_failure_stops_it_and_puts_its_batch_back() {
    let (work, op, beacon, fleet) = registered_fleet(NODES);
    // Every node has a gate service; node-04's exits before its health
    // check could ever pass, so it is never ready.
    for (i, node) in fleet.iter().enumerate() {
        let gate = if i == 3 {
            "[service]\nname = \"gate\"\nexec = \"/bin/sh -c 'echo gate broken; exit 3'\"\n\n[health]\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval_ms = 60000\n"
        } else {
            "[service]\nname = \"gate\"\nexec = \"/bin/sleep 1000\"\n"
        };
        std::fs::write(node.path("etc/services/gate.toml"), gate).unwrap();
        node.call("node.reload", json!({})).unwrap();
    }
    let v1 = work.path().join("web.toml");

    // 1. A good change: the canary, then batches of five, in order.
    std::fs::write(&v1, web(1001, false)).unwrap();
    let out = rollout(
        &beacon,
        &op,
        &v1,
        &[
            "--canary",
            "1",
            "--auto-promote",
            "--max-parallel",
            "5",
            "--min-healthy-time",
            "1s",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = events(&out);
    let batches: Vec<Vec<String>> = seen
        .iter()
        .filter(|e| e["event"] == "batch")
        .map(|e| serde_json::from_value(e["nodes"].clone()).unwrap())
        .collect();
    let expected: Vec<Vec<String>> = [1..2, 2..7, 7..12, 12..17, 17..21]
        .into_iter()
        .map(|r| r.map(|i| format!("node-{i:02}")).collect())
        .collect();
    assert_eq!(batches, expected);
    assert!(seen
        .iter()
        .any(|e| e["event"] == "done" && e["completed"] == true));
    // Each node runs it; a batch started only after the one before had
    // stayed healthy for a second, as the nodes' own clocks say.
    let states: Vec<String> = fleet.iter().map(|n| n.state("web")).collect();
    assert!(states.iter().all(|s| s == "ready"), "{states:?}");
    let ages: Vec<u64> = fleet.iter().map(web_age_ms).collect();
    for pair in expected.windows(2) {
        let index = |name: &String| name[5..].parse::<usize>().unwrap() - 1;
        let youngest_before = pair[0].iter().map(|n| ages[index(n)]).min().unwrap();
        let oldest_after = pair[1].iter().map(|n| ages[index(n)]).max().unwrap();
        assert!(
            youngest_before >= oldest_after + 900,
            "batch {:?} did not wait for {:?}: ages {ages:?}",
            pair[1],
            pair[0]
        );
    }

    // 2. A change that fails on the canary stops there; the canary gets
    // v1 back and the nineteen others never see it.
    let ages_before: Vec<u64> = fleet.iter().map(web_age_ms).collect();
    std::fs::create_dir_all(work.path().join("bad")).unwrap();
    let bad = work.path().join("bad/web.toml");
    std::fs::write(
        &bad,
        "[service]\nname = \"web\"\nexec = \"/bin/sh -c 'exit 1'\"\n",
    )
    .unwrap();
    let out = rollout(
        &beacon,
        &op,
        &bad,
        &[
            "--canary",
            "1",
            "--auto-revert",
            "--healthy-deadline",
            "5s",
            "--min-healthy-time",
            "1s",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let problems = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}{problems}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("  node-01  FAILED  web:") && l.contains("exit")),
        "{text}"
    );
    assert!(text.contains("node-01  reverted"), "{text}");
    assert!(
        text.contains("rollout failed: 1 node(s) changed, 1 of them reverted, 19 untouched"),
        "{text}"
    );
    assert_eq!(web_text(&fleet[0]).as_deref(), Some(&*web(1001, false)));
    fleet[0].wait_for("web back on the canary", Duration::from_secs(10), |n| {
        n.state("web") == "ready"
    });
    for (i, node) in fleet.iter().enumerate().skip(1) {
        assert_eq!(web_text(node).as_deref(), Some(&*web(1001, false)));
        assert!(web_age_ms(node) >= ages_before[i], "node {i} was touched");
    }

    // 3. A change that fails on one node of the second batch (node-04,
    // whose gate never comes up): the rollout stops, that batch goes back
    // to v1 and says which node failed and why; the canary keeps the
    // change and the later batches never see it.
    std::fs::create_dir_all(work.path().join("gated")).unwrap();
    let gated = work.path().join("gated/web.toml");
    std::fs::write(&gated, web(1002, true)).unwrap();
    let out = rollout(
        &beacon,
        &op,
        &gated,
        &[
            "--canary",
            "1",
            "--auto-promote",
            "--max-parallel",
            "5",
            "--auto-revert",
            "--healthy-deadline",
            "3s",
            "--min-healthy-time",
            "1s",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let problems = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}{problems}");
    assert!(
        text.contains("rollout stopped at batch 2: 1 node(s) failed, more than --max-failures 0 (node-04: web:"),
        "{text}"
    );
    assert!(
        text.contains("gate"),
        "the reason names what held web: {text}"
    );
    assert!(
        text.contains("rollout failed: 6 node(s) changed, 5 of them reverted, 14 untouched"),
        "{text}"
    );
    // README shows this run as this build prints it.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let shown: Vec<&str> = readme
        .split("--auto-revert --healthy-deadline 3s --min-healthy-time 1s\n")
        .nth(1)
        .expect("README's rollout example")
        .lines()
        .take_while(|l| *l != "```")
        .collect();
    assert_eq!(
        shown,
        text.lines().collect::<Vec<_>>(),
        "README's rollout example"
    );
    assert!(!text.contains("batch 3/"), "{text}");
    for name in ["node-02", "node-03", "node-04", "node-05", "node-06"] {
        assert!(text.contains(&format!("  {name}  reverted")), "{text}");
    }
    assert_eq!(web_text(&fleet[0]).as_deref(), Some(&*web(1002, true)));
    for node in &fleet[1..] {
        assert_eq!(web_text(node).as_deref(), Some(&*web(1001, false)));
    }
    for node in &fleet[1..6] {
        node.wait_for("web back to v1", Duration::from_secs(10), |n| {
            n.state("web") == "ready"
        });
    }
    // `sporectl cat` shows the file as the node holds it.
    let cat = sporectl(&[
        "--beacon",
        &beacon.url(),
        "--nodes",
        "node-01",
        "--identity",
        op.to_str().unwrap(),
        "--json",
        "cat",
        "web",
    ]);
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&cat.stdout).unwrap();
    let answer: Value = match &rows[0]["result"] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    };
    assert_eq!(answer["source"], "deployed", "{answer}");
    assert_eq!(answer["text"], web(1002, true), "{answer}");

    // 4. The same change with one failure allowed: node-04 fails, the
    // rollout goes on through both batches and completes, saying so.
    let out = rollout(
        &beacon,
        &op,
        &gated,
        &[
            "--max-parallel",
            "50%",
            "--max-failures",
            "1",
            "--healthy-deadline",
            "3s",
            "--min-healthy-time",
            "1s",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("batch 2/2: node-11"), "{text}");
    assert!(
        text.contains("rollout complete: 19 node(s) healthy, 1 failed (within --max-failures)"),
        "{text}"
    );
    for (i, node) in fleet.iter().enumerate() {
        assert_eq!(
            web_text(node).as_deref(),
            Some(&*web(1002, true)),
            "node {i}"
        );
    }
}

/// The `node` events of nodes found unhealthy.
fn unhealthy(said: &[Value]) -> Vec<&Value> {
    said.iter()
        .filter(|e| e["event"] == "node" && e["healthy"] == false)
        .collect()
}

/// `count` `spore run` nodes (node-01…) registered at a fresh beacon, and
/// the operator's key.
fn registered_fleet(count: usize) -> (tempfile::TempDir, std::path::PathBuf, Beacon, Vec<Spore>) {
    let work = tempfile::tempdir().unwrap();
    let op = operator(work.path());
    let beacon = Beacon::start(free_port(), &work.path().join("beacon"), &["--open"]);
    let fleet: Vec<Spore> = (1..=count)
        .map(|i| node(&format!("node-{i:02}"), beacon.port, &op, 0).0)
        .collect();
    fleet[0].wait_for("every registration", Duration::from_secs(60), |_| {
        nodes(beacon.port).len() == count
    });
    (work, op, beacon, fleet)
}

/// `sporectl rollout update --spore`: a new spore binary execed in place
/// on every node, batch by batch, each node healthy only when it answers
/// from the new binary with every service keeping its process; a binary
/// that cannot take the state up stops the rollout at the canary; a node
/// whose service does not keep its process fails its batch, which goes
/// back to the binary it ran before.
#[test]
fn a_spore_rollout_reexecs_in_batches_stops_at_a_bad_binary_and_puts_a_batch_back() {
    const FLEET: usize = 5;
    let (work, op, beacon, fleet) = registered_fleet(FLEET);
    for node in &fleet {
        std::fs::write(node.path("etc/services/web.toml"), web(1000, false)).unwrap();
        node.call("node.reload", json!({})).unwrap();
        node.wait_state("web", "ready");
    }
    let generation = |node: &Spore| -> u64 {
        node.call("node.info", json!({})).unwrap()["reexec"]["generation"]
            .as_u64()
            .unwrap_or(0)
    };
    let web_pid = |node: &Spore| {
        node.call("service.status", json!({ "name": "web" }))
            .unwrap()["pid"]
            .clone()
    };
    let pids: Vec<Value> = fleet.iter().map(web_pid).collect();
    let update = |binary: &str, extra: &[&str]| {
        let url = beacon.url();
        let mut args = vec![
            "--beacon",
            &url,
            "--all",
            "--identity",
            op.to_str().unwrap(),
            "--json",
            "rollout",
            "update",
            "--spore",
            binary,
        ];
        args.extend_from_slice(extra);
        sporectl(&args)
    };

    // 1. The same build, everywhere: the canary, then batches of two.
    let out = update(
        common::spore_bin(),
        &[
            "--canary",
            "1",
            "--auto-promote",
            "--max-parallel",
            "2",
            "--min-healthy-time",
            "1s",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let said = events(&out);
    assert_eq!(said.last().unwrap()["completed"], true, "{said:?}");
    let batches: Vec<usize> = said
        .iter()
        .filter(|e| e["event"] == "batch")
        .map(|e| e["nodes"].as_array().unwrap().len())
        .collect();
    assert_eq!(batches, [1, 2, 2], "{said:?}");
    for (node, pid) in fleet.iter().zip(&pids) {
        assert_eq!(generation(node), 1);
        assert_eq!(&web_pid(node), pid, "web kept its process");
    }

    // 2. A binary that answers the check but cannot take the state up:
    // the canary hands it back by itself, the rollout stops there.
    let broken = work.path().join("broken-spore");
    std::fs::write(
        &broken,
        format!(
            "#!/bin/sh\nSPORE_FAULT=handoff exec {} \"$@\"\n",
            common::spore_bin()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = update(
        broken.to_str().unwrap(),
        &[
            "--canary",
            "1",
            "--auto-promote",
            "--auto-revert",
            "--min-healthy-time",
            "1s",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = events(&out);
    let failed = unhealthy(&said);
    assert_eq!(failed.len(), 1, "{said:?}");
    assert_eq!(failed[0]["node"], "node-01");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("could not take the state up"),
        "{said:?}"
    );
    assert_eq!(said.last().unwrap()["untouched"], FLEET - 1, "{said:?}");
    let info = fleet[0].call("node.info", json!({})).unwrap();
    assert_eq!(info["reexec"]["went_back"], true, "{info}");
    for node in &fleet[1..] {
        assert_eq!(generation(node), 1, "untouched");
    }

    // 3. node-03 has a service that does not keep its process (it exits
    // every second): its batch fails the gate and goes back.
    std::fs::write(
        fleet[2].path("etc/services/flaky.toml"),
        "[service]\nname = \"flaky\"\nexec = \"/bin/sleep 1\"\n[lifecycle]\nrestart = \"always\"\nrestart_delay_ms = 100\nmax_restarts = 0\n",
    )
    .unwrap();
    fleet[2].call("node.reload", json!({})).unwrap();
    let out = update(
        common::spore_bin(),
        &[
            "--max-parallel",
            "2",
            "--min-healthy-time",
            "2s",
            "--auto-revert",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = events(&out);
    let reverted: Vec<&str> = said
        .iter()
        .filter(|e| e["event"] == "reverted" && e["ok"] == true)
        .map(|e| e["node"].as_str().unwrap())
        .collect();
    assert_eq!(reverted, ["node-03", "node-04"], "{said:?}");
    let failed = unhealthy(&said);
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("flaky (pid"),
        "{said:?}"
    );
    // Batch 1 (node-01, node-02) stayed on the new binary; batch 2 took it
    // and went back to the one before (two more generations); node-05
    // was never touched.
    let generations: Vec<u64> = fleet.iter().map(generation).collect();
    assert_eq!(generations, [3, 2, 3, 3, 1], "{said:?}");
    for (node, pid) in fleet.iter().zip(&pids) {
        assert_eq!(&web_pid(node), pid, "web kept its process through it all");
    }
}

/// `sporectl rollout remove`: a service removed batch by batch; a node
/// where it cannot be removed (another service requires it) stops the
/// rollout, and the removal never reaches the nodes after it.
#[test]
fn a_removal_rolls_out_in_batches_and_stops_where_the_service_is_in_use() {
    const FLEET: usize = 5;
    let (_work, op, beacon, fleet) = registered_fleet(FLEET);
    // Every node but node-04 runs old-agent; on node-03 web requires it.
    for (i, node) in fleet.iter().enumerate() {
        if i != 3 {
            std::fs::write(
                node.path("etc/services/old-agent.toml"),
                "[service]\nname = \"old-agent\"\nexec = \"/bin/sleep 1000\"\n",
            )
            .unwrap();
        }
        if i == 2 {
            let text = format!(
                "{}\n[dependencies]\nafter = [\"old-agent\"]\n",
                web(1000, false)
            );
            std::fs::write(node.path("etc/services/web.toml"), text).unwrap();
        }
        node.call("node.reload", json!({})).unwrap();
    }
    fleet[2].wait_state("old-agent", "ready");
    fleet[2].wait_state("web", "ready");
    let url = beacon.url();
    let out = sporectl(&[
        "--beacon",
        &url,
        "--all",
        "--identity",
        op.to_str().unwrap(),
        "--json",
        "rollout",
        "remove",
        "old-agent",
        "--max-parallel",
        "2",
        "--min-healthy-time",
        "1s",
        "--auto-revert",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = events(&out);
    let verdicts: Vec<(String, bool)> = said
        .iter()
        .filter(|e| e["event"] == "node")
        .map(|e| (e["node"].as_str().unwrap().to_owned(), e["healthy"] == true))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("node-01".to_owned(), true),
            ("node-02".to_owned(), true),
            ("node-03".to_owned(), false),
            ("node-04".to_owned(), true),
        ],
        "{said:?}"
    );
    let reason = said
        .iter()
        .find(|e| e["event"] == "node" && e["healthy"] == false)
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("old-agent") && reason.contains("web"),
        "{reason}"
    );
    let has = |node: &Spore| {
        node.call("service.status", json!({ "name": "old-agent" }))
            .is_ok()
    };
    assert!(!has(&fleet[0]) && !has(&fleet[1]), "batch 1 removed it");
    assert!(
        has(&fleet[2]),
        "node-03 keeps it (in use; put back as it was)"
    );
    assert_eq!(fleet[2].state("old-agent"), "ready");
    assert!(has(&fleet[4]), "node-05 was never touched");
    assert_eq!(said.last().unwrap()["untouched"], 1, "{said:?}");
}

/// Fleet commands and rollouts select nodes by name pattern (`--nodes
/// 'node-0*'`) and by the labels each node's spore.toml gives it
/// (`[node] labels`, carried in its registration; `--label KEY=VALUE`).
#[test]
fn fleet_commands_and_rollouts_select_nodes_by_pattern_and_label() {
    let (work, op, beacon, fleet) = registered_fleet(4);
    // node-02 and node-04 are edge nodes; racks r0 (01, 02) and r1 (03, 04).
    for (i, node) in fleet.iter().enumerate() {
        let path = node.path("etc/spore.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        let role = if i % 2 == 1 { "edge" } else { "core" };
        text.push_str(&format!(
            "\n[node]\nlabels = {{ role = \"{role}\", rack = \"r{}\" }}\n",
            i / 2
        ));
        std::fs::write(&path, text).unwrap();
        node.call("service.restart", json!({ "name": "call-home" }))
            .unwrap();
    }
    fleet[0].wait_for(
        "every node's labels at the beacon",
        Duration::from_secs(30),
        |_| {
            nodes(beacon.port)
                .iter()
                .all(|n| n["registration"]["labels"]["role"].is_string())
        },
    );
    let url = beacon.url();
    let hostnames = |args: &[&str]| -> Vec<String> {
        let mut all = vec![
            "--beacon",
            &url,
            "--identity",
            op.to_str().unwrap(),
            "--json",
        ];
        all.extend_from_slice(args);
        all.push("info");
        let out = sporectl(&all);
        assert!(out.status.success(), "{out:?}");
        let answers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        answers
            .iter()
            .map(|a| a["hostname"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        hostnames(&["--all", "--label", "role=edge"]),
        ["node-02", "node-04"]
    );
    assert_eq!(
        hostnames(&["--all", "--label", "role=edge", "--label", "rack=r1"]),
        ["node-04"]
    );
    assert_eq!(
        hostnames(&["--nodes", "node-0*", "--label", "rack=r0"]),
        ["node-01", "node-02"]
    );
    assert_eq!(
        hostnames(&["--nodes", "*-03,node-01"]),
        ["node-01", "node-03"]
    );
    // A pattern that matches nothing is an error, not an empty fleet.
    let out = sporectl(&[
        "--beacon",
        &url,
        "--identity",
        op.to_str().unwrap(),
        "--nodes",
        "rack9-*",
        "info",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("knows no node rack9-*"),
        "{out:?}"
    );
    // --label alone is a usage error: it narrows --all or --nodes.
    let out = sporectl(&["--beacon", &url, "--label", "role=edge", "info"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A rollout to the edge nodes only.
    let file = work.path().join("web.toml");
    std::fs::write(&file, web(1002, false)).unwrap();
    let out = sporectl(&[
        "--beacon",
        &url,
        "--all",
        "--label",
        "role=edge",
        "--identity",
        op.to_str().unwrap(),
        "rollout",
        "deploy",
        file.to_str().unwrap(),
        "--max-parallel",
        "2",
        "--min-healthy-time",
        "1s",
    ]);
    assert!(out.status.success(), "{out:?}");
    let deployed: Vec<bool> = fleet.iter().map(|n| web_text(n).is_some()).collect();
    assert_eq!(deployed, [false, true, false, true]);
}
