//! Boot test 3: five nodes boot together on a shared segment (their
//! mycelium stand-ins peer over it and with the operator's), all five
//! register with the beacon over the overlay, `sporectl --all` reaches all
//! five at their 400::/7 addresses, and a fleet power-off over the overlay
//! answers for every node before the overlay goes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use qemu_tests::console::boot_figures;
use qemu_tests::Fleet;
use serde_json::Value;

#[test]
fn five_nodes_register_and_sporectl_all_reaches_every_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot_on_overlay(dir.path(), 5, |_| {}).unwrap();
    fleet
        .wait_registered(Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    for node in &fleet.nodes {
        let figures = boot_figures(&node.vm.console_text(), &["mycelium", "call-home"]).unwrap();
        eprintln!(
            "{}: kernel start -> spore {:.3} s, spore -> all services ready {:.3} s",
            node.spec.hostname, figures.kernel_to_spore, figures.spore_to_ready
        );
    }

    // The segment carries traffic: every stand-in reached a peer over eth1.
    for node in &mut fleet.nodes {
        node.vm
            .wait_for(
                "message=\"Connected to new peer\" endpoint.address=192.168.100.",
                Duration::from_secs(120),
            )
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let records = fleet.beacon.nodes().unwrap();
    let registered: BTreeSet<String> = records
        .iter()
        .map(|n| n["registration"]["hostname"].as_str().unwrap().to_owned())
        .collect();
    let overlay_addresses: Vec<Ipv6Addr> = records
        .iter()
        .map(|n| {
            n["registration"]["mycelium_address"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        overlay_addresses
            .iter()
            .all(|a| a.octets()[0] & 0xfe == 0x04),
        "each node registered its 400::/7 address: {overlay_addresses:?}"
    );
    assert_eq!(
        registered,
        (1..=5).map(|i| format!("node{i}")).collect::<BTreeSet<_>>()
    );

    // sporectl --all: one signed call per node, each pinned to the key the
    // beacon published, reached at the overlay address the beacon lists.
    let url = fleet.beacon.url();
    let out = fleet
        .operator
        .sporectl(&["--beacon", &url, "--all", "--json", "info"]);
    assert!(
        out.status.success(),
        "sporectl --all: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 5);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["ok"], true, "{row}");
        assert_eq!(row["hostname"], format!("node{}", i + 1));
        assert_eq!(row["result"]["hostname"], format!("node{}", i + 1));
        assert_eq!(row["result"]["pid1"], true);
    }

    // A wrong pin is refused: node2's address with node1's published key.
    let node2 = records
        .iter()
        .find(|n| n["registration"]["hostname"] == "node2")
        .unwrap()["registration"]["mycelium_address"]
        .as_str()
        .unwrap()
        .to_owned();
    let args: Vec<String> = vec![
        "--beacon".into(),
        fleet.beacon.url(),
        "--nodes".into(),
        "node1".into(),
        "--address".into(),
        format!("node1=[{node2}]:9999"),
        "info".into(),
    ];
    let refused = fleet
        .operator
        .sporectl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !refused.status.success(),
        "a node with another key must not be trusted"
    );
    assert!(String::from_utf8_lossy(&refused.stdout).contains("FAIL"));

    // The whole fleet powered off over the overlay: every node answers
    // (its reply leaves before its mycelium stops) and sporectl returns.
    let started = Instant::now();
    let out = fleet
        .operator
        .sporectl(&["--beacon", &url, "--all", "--yes", "--json", "poweroff"]);
    eprintln!(
        "sporectl --all poweroff returned in {:?}",
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "sporectl --all poweroff: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|row| row["ok"] == true), "{rows:?}");
    for node in &mut fleet.nodes {
        let status = node
            .vm
            .wait_exit(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            status.success(),
            "{}: QEMU ended with {status}",
            node.spec.hostname
        );
    }
}
