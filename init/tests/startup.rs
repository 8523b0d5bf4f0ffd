//! spore's own share of the start, step by step: on the console once
//! supervision begins, and in `node.info` (`startup`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::Spore;
use serde_json::json;

#[test]
fn every_start_reports_its_own_steps_on_the_console_and_in_node_info() {
    let spore = Spore::start(&[(
        "web",
        "[service]\nname = \"web\"\nexec = \"sleep 1000\"\n".to_owned(),
    )]);
    // The timeline, and the first service's start after it (the console
    // writes both on its own thread: the second may come a moment later).
    spore.wait_for("the timeline", Duration::from_secs(10), |s| {
        let log = s.stderr();
        log.contains(" ms in all until supervision") && log.contains("web: starting")
    });
    let log = spore.stderr();
    let line = log.lines().find(|l| l.contains("spore: boot: ")).unwrap();
    // spore run has no machine to configure: its steps start at spore.toml.
    let names = [
        "spore.toml",
        "state and hostname",
        "cgroups and signals",
        "service files",
        "node state",
        "control socket",
        "node key and rpc",
    ];
    let listed: Vec<&str> = line
        .split("boot: ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split(", ")
        .map(|step| step.rsplitn(3, ' ').nth(2).unwrap())
        .collect();
    assert_eq!(listed, names, "{line}");
    // Supervision starts after it: the timeline comes before web starts.
    let web = log.find("web: starting").unwrap();
    assert!(log.find("spore: boot: ").unwrap() < web, "{log}");
    let info = spore.call("node.info", json!({})).unwrap();
    let startup = &info["startup"];
    let steps = startup["steps"].as_array().unwrap();
    let named: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(named, names);
    // Each step is counted from the one before: their sum is the whole
    // (within the milliseconds each loses to rounding down).
    let sum: u64 = steps.iter().map(|s| s["ms"].as_u64().unwrap()).sum();
    let whole = startup["spore_ms"].as_u64().unwrap();
    assert!(
        sum <= whole && whole <= sum + steps.len() as u64,
        "{startup}"
    );
    assert!(
        startup["kernel_to_spore_ms"].as_u64().is_some(),
        "{startup}"
    );
}
