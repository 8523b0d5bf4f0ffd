//! Boot test 1: one node boots the Debian kernel with spore as PID 1,
//! mycelium then call-home run in order, the beacon on the host lists the
//! node, and sporectl on the host runs info, deploy, logs, restart and stop
//! over the forwarded port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::console::{boot_figures, line_of};
use qemu_tests::Fleet;
use serde_json::Value;

fn json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "sporectl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn one_node_boots_registers_and_obeys_sporectl() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 1, false, false, |_| {}).unwrap();
    fleet
        .wait_registered(Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
    let node = &fleet.nodes[0];
    let console = node.vm.console_text();

    // spore is PID 1; mycelium is ready before call-home starts.
    assert!(console.contains("starting (pid 1, "), "{console}");
    let ready = line_of(&console, "spore: mycelium: ready").unwrap();
    let call_home = line_of(&console, "spore: call-home: starting").unwrap();
    assert!(
        ready < call_home,
        "call-home started before mycelium was ready"
    );
    // spore reports its own steps of the boot, as PID 1 with the
    // machine's: modules, mounts, network, clock.
    let timeline = console
        .lines()
        .find(|l| l.contains("spore: boot: "))
        .unwrap_or_else(|| panic!("no boot timeline: {console}"));
    for step in [
        "early mounts ",
        "modules ",
        "network ",
        "clock ",
        "service files ",
        "node key and rpc ",
    ] {
        assert!(timeline.contains(step), "{step}missing: {timeline}");
    }
    assert!(
        timeline.contains(" ms in all until supervision (spore started "),
        "{timeline}"
    );
    eprintln!("{timeline}");
    let figures = boot_figures(&console, &["mycelium", "call-home"]).unwrap();
    eprintln!(
        "boot figures: kernel start -> spore {:.3} s, spore -> all services ready {:.3} s, spore's share {:.0}%",
        figures.kernel_to_spore,
        figures.spore_to_ready,
        figures.spore_share() * 100.0
    );

    // The beacon lists it with its node key and its overlay address.
    let record = fleet.beacon.node("node1").expect("node1 registered");
    let registration = &record["registration"];
    assert_eq!(
        registration["hero_proc_auth_pubkey"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .nth(1),
        node.key.split_whitespace().nth(1)
    );
    let overlay = registration["mycelium_address"].as_str().unwrap();
    assert!(
        overlay.starts_with('4') || overlay.starts_with('5'),
        "{overlay} is in 400::/7"
    );
    assert_eq!(registration["hero_proc_port"], 9999);

    // info: PID 1, its hostname, listening on the overlay address too.
    let info = json(&node.sporectl(&fleet.operator, &["--json", "info"]));
    assert_eq!(info["pid1"], true);
    assert_eq!(info["pid"], 1);
    assert_eq!(info["hostname"], "node1");
    let listen = info["rpc"]["listen"].to_string();
    assert!(listen.contains(overlay), "{listen}");

    // deploy: a service that prints a line a second, started at once.
    let web = dir.path().join("ticker.toml");
    std::fs::write(
        &web,
        "[service]\nname = \"ticker\"\nexec = [\"/bin/sh\", \"-c\", \"while true; do echo tick $$; sleep 1; done\"]\n\n[dependencies]\nrequires = [\"mycelium\"]\n",
    )
    .unwrap();
    json(&node.sporectl(
        &fleet.operator,
        &["--json", "deploy", web.to_str().unwrap(), "--start"],
    ));
    // `status` exits as systemctl's: 0 while the service runs, 3 once it
    // does not (stopped); the answer is the same document either way.
    let status = |fleet: &Fleet| {
        let out = fleet.nodes[0].sporectl(&fleet.operator, &["--json", "status", "ticker"]);
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let running = matches!(answer["state"].as_str(), Some("running" | "ready"));
        assert_eq!(
            out.status.code(),
            Some(if running { 0 } else { 3 }),
            "{answer}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answer
    };
    let wait_state = |fleet: &Fleet, want: &str| {
        for _ in 0..150 {
            if status(fleet)["state"] == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("ticker never became {want}: {}", status(fleet));
    };
    wait_state(&fleet, "ready");
    let first_pid = status(&fleet)["pid"].as_u64().unwrap();

    // logs: its output, from the node's ring.
    let mut logs = String::new();
    for _ in 0..50 {
        let out = node.sporectl(&fleet.operator, &["logs", "ticker", "-n", "5"]);
        logs = String::from_utf8_lossy(&out.stdout).into_owned();
        if logs.contains(&format!("tick {first_pid}")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(logs.contains(&format!("tick {first_pid}")), "{logs}");

    // restart: a new process.
    json(&node.sporectl(&fleet.operator, &["--json", "restart", "ticker"]));
    wait_state(&fleet, "ready");
    let second_pid = status(&fleet)["pid"].as_u64().unwrap();
    assert_ne!(first_pid, second_pid, "restart made a new process");

    // stop: stopped, and it stays so.
    json(&node.sporectl(&fleet.operator, &["--json", "stop", "ticker"]));
    wait_state(&fleet, "stopped");
    let console = fleet.nodes[0].vm.console_text();
    assert!(
        console.contains("service.deploy -> ok"),
        "the call is audited"
    );

    // A live re-exec of PID 1: the host's spore binary is sent, checked
    // and exec'd in place; every service keeps its process and its output
    // goes on, and PID 1 answers again on the same port and the overlay.
    json(&node.sporectl(&fleet.operator, &["--json", "start", "ticker"]));
    wait_state(&fleet, "ready");
    let pids = |fleet: &Fleet| -> Vec<(String, Value)> {
        let list = json(&fleet.nodes[0].sporectl(&fleet.operator, &["--json", "list"]));
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_owned(), s["pid"].clone()))
            .collect()
    };
    let before = pids(&fleet);
    let ticker = status(&fleet)["pid"].as_u64().unwrap();
    // Not a spore: refused before anything happens; PID 1 goes on.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"#!/bin/sh\nexit 0\n").unwrap();
    let out = node.sporectl(
        &fleet.operator,
        &["update", "--spore", junk.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("did not answer as a spore"), "{said}");
    assert_eq!(pids(&fleet), before);
    let spore = fleet.artifacts.spore.to_str().unwrap();
    let out = node.sporectl(&fleet.operator, &["update", "--spore", spore]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("re-exec 1: took up "), "{said}");
    eprintln!("{}", said.trim_end());
    let info = json(&node.sporectl(&fleet.operator, &["--json", "info"]));
    assert_eq!(info["pid"], 1, "{info}");
    assert_eq!(info["reexec"]["generation"], 1, "{info}");
    assert_eq!(info["reexec"]["went_back"], false, "{info}");
    assert_eq!(pids(&fleet), before);
    let listen = info["rpc"]["listen"].to_string();
    assert!(
        listen.contains(overlay),
        "the overlay listener again: {listen}"
    );
    // The ticker's lines before and after, from the same process.
    let mut logs = String::new();
    for _ in 0..50 {
        let out = node.sporectl(&fleet.operator, &["logs", "ticker", "-n", "200"]);
        logs = String::from_utf8_lossy(&out.stdout).into_owned();
        let after = logs
            .lines()
            .skip_while(|l| !l.contains("re-exec"))
            .any(|l| l.contains(&format!("tick {ticker}")));
        if after {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ticks = logs
        .lines()
        .filter(|l| l.contains(&format!("tick {ticker}")))
        .count();
    assert!(ticks >= 2, "{logs}");
    let console = fleet.nodes[0].vm.console_text();
    assert!(console.contains("re-exec: took up "), "{console}");
}
