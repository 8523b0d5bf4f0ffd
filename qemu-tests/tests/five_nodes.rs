//! Boot test 3: five nodes boot together on a shared segment (their
//! mycelium stand-ins peer over it), all five register with the beacon,
//! and `sporectl --all` reaches all five.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::time::Duration;

use qemu_tests::console::boot_figures;
use qemu_tests::Fleet;
use serde_json::Value;

#[test]
fn five_nodes_register_and_sporectl_all_reaches_every_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 5, true, false, |_| {}).unwrap();
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

    let registered: BTreeSet<String> = fleet
        .beacon
        .nodes()
        .unwrap()
        .iter()
        .map(|n| n["registration"]["hostname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        registered,
        (1..=5).map(|i| format!("node{i}")).collect::<BTreeSet<_>>()
    );

    // sporectl --all: one signed call per node, each pinned to the key the
    // beacon published, reached through the node's forwarded port.
    let url = fleet.beacon.url();
    let mut args: Vec<String> = vec!["--beacon".into(), url, "--all".into(), "--json".into()];
    args.extend(fleet.address_overrides());
    args.push("info".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = fleet.operator.sporectl(&args);
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
    let args: Vec<String> = vec![
        "--beacon".into(),
        fleet.beacon.url(),
        "--nodes".into(),
        "node1".into(),
        "--address".into(),
        format!("node1=127.0.0.1:{}", fleet.nodes[1].vm.rpc_port),
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
}
