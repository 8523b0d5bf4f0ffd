//! Install media, test 2: five machines boot copies of one disk image (one
//! file written to five sticks) under UEFI. Nothing in the image names a
//! node: each makes its node key on its own state partition at first boot
//! and names itself after it, so the beacon lists five distinct nodes and
//! `sporectl --all` reaches each.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::time::Duration;

use qemu_tests::Fleet;
use serde_json::Value;

#[test]
fn five_copies_of_one_image_register_as_five_distinct_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 5, false, false, |spec| {
        spec.usb_image = true;
        spec.named_by_key = true;
    })
    .unwrap();
    // One image, byte for byte, on every stick.
    let first = std::fs::read(fleet.dir.join("node1/node.img")).unwrap();
    for i in 2..=5 {
        let copy = std::fs::read(fleet.dir.join(format!("node{i}/node.img"))).unwrap();
        assert!(copy == first, "node{i} boots a copy of the same image");
    }
    drop(first);
    fleet
        .wait_registered(Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{e}"));
    let slowest = fleet
        .nodes
        .iter()
        .map(|n| n.vm.started.elapsed())
        .max()
        .unwrap();
    fleet.learn_names().unwrap();
    fleet.learn_keys().unwrap();
    let names: BTreeSet<String> = fleet
        .nodes
        .iter()
        .map(|n| n.spec.hostname.clone())
        .collect();
    let keys: BTreeSet<String> = fleet.nodes.iter().map(|n| n.key.clone()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(keys.len(), 5, "{keys:?}");
    for node in &fleet.nodes {
        let name = &node.spec.hostname;
        assert!(
            name.len() == 13 && name.starts_with("node-"),
            "{name}: node- and 8 hex digits of its key"
        );
        assert!(
            node.vm.console_text().contains(&format!(
                "spore: hostname {name} (derived from the node key)"
            )),
            "{name}"
        );
    }
    let registered: BTreeSet<String> = fleet
        .beacon
        .nodes()
        .unwrap()
        .iter()
        .map(|n| n["registration"]["hostname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(registered, names);

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
    for row in &rows {
        assert_eq!(row["ok"], true, "{row}");
        assert_eq!(row["result"]["hostname"], row["hostname"], "{row}");
        assert_eq!(row["result"]["deploys"]["persistent"], true, "{row}");
    }
    eprintln!(
        "five_from_one_image: QEMU start to the fifth registration {:.1} s under TCG on two cores",
        slowest.as_secs_f64()
    );
}
