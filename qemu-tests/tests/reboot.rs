//! Boot test 2: sporectl reboots the node over RPC; it comes back and
//! registers again with the beacon. The node has a disk (ext4, labelled
//! `spore-state`) that spore finds by its label and mounts on /var/lib from
//! a `[[mount]]` table: it makes its node key on the first boot and finds
//! it on the second, and so does mycelium, so the node comes back with the
//! same key and the same overlay address; a service deployed and a secret
//! stored before the reboot are there after it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::Fleet;

#[test]
fn a_node_rebooted_over_rpc_comes_back_and_registers_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 1, false, true, |spec| {
        spec.state_disk = true;
    })
    .unwrap();
    fleet
        .wait_registered(Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
    fleet.learn_keys().unwrap();
    let first_key = fleet.nodes[0].key.clone();
    assert!(first_key.starts_with("ssh-ed25519 "), "{first_key}");
    let console = fleet.nodes[0].vm.console_text();
    assert!(
        console.contains("spore: LABEL=spore-state is /dev/vda (ext4)"),
        "{console}"
    );
    assert!(
        console.contains("spore: mounted LABEL=spore-state (ext4) on /var/lib"),
        "{console}"
    );
    assert!(
        console.contains("spore: generated node key /var/lib/spore/node_key"),
        "first boot on an empty disk: {console}"
    );
    let before = fleet.beacon.node("node1").unwrap();
    let first_address = before["registration"]["mycelium_address"].clone();
    let first_timestamp = before["registration"]["timestamp"].as_u64().unwrap();

    // A secret and a service that loads it, deployed over RPC before the
    // reboot.
    let node = &fleet.nodes[0];
    let keeper = fleet.dir.join("keeper.toml");
    std::fs::write(
        &keeper,
        "[service]\nname = \"keeper\"\nexec = \"/bin/sh -c 'echo keeper has $(wc -c < $CREDENTIALS_DIRECTORY/note) bytes; exec sleep 100000'\"\n\n[credentials]\nload = [\"note\"]\n",
    )
    .unwrap();
    let mut set = std::process::Command::new(&fleet.operator.sporectl);
    set.arg("--identity")
        .arg(&fleet.operator.key)
        .args([
            "--node",
            &format!("127.0.0.1:{}", node.vm.rpc_port),
            "--node-key",
            &node.key,
        ])
        .args(["secret", "set", "note"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::piped());
    let mut child = set.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"kept across reboots").unwrap();
    assert!(child.wait().unwrap().success(), "secret set");
    let out = node.sporectl(
        &fleet.operator,
        &["deploy", keeper.to_str().unwrap(), "--start"],
    );
    assert!(
        out.status.success(),
        "deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    fleet.nodes[0]
        .vm
        .wait_for("keeper has 19 bytes", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the deployed service read its credential: {e}"));
    let node = &fleet.nodes[0];
    let out = node.sporectl(&fleet.operator, &["reboot"]);
    assert!(
        out.status.success(),
        "sporectl reboot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vm = &mut fleet.nodes[0].vm;
    vm.wait_for("spore: Reboot now", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_nth("starting (pid 1, ", 2, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_nth("spore: call-home: succeeded", 2, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e}"));

    // Registered again: a newer registration, one record, the same key
    // (the beacon refuses a new key for a known name) and the same overlay
    // address (mycelium's key is on the disk too).
    let after = fleet
        .beacon
        .registered_after("node1", first_timestamp)
        .expect("a newer registration");
    assert_eq!(fleet.beacon.nodes().unwrap().len(), 1);
    assert_eq!(after["registration"]["mycelium_address"], first_address);
    assert_eq!(
        after["registration"]["hero_proc_auth_pubkey"].as_str(),
        Some(first_key.as_str())
    );
    let console = fleet.nodes[0].vm.console_text();
    assert_eq!(
        console
            .matches("spore: mounted LABEL=spore-state (ext4) on /var/lib")
            .count(),
        2,
        "{console}"
    );
    assert_eq!(
        console.matches("spore: generated node key").count(),
        1,
        "the second boot found the key: {console}"
    );
    assert_eq!(after["first_seen"], before["first_seen"]);

    // The same node key answers on the same pin, freshly booted.
    let node = &fleet.nodes[0];
    let out = node.sporectl(&fleet.operator, &["--json", "info"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["pid1"], true);
    assert!(
        info["uptime_s"].as_u64().unwrap() < 120,
        "a fresh boot: {info}"
    );
    assert_eq!(info["deploys"]["persistent"], true, "{info}");
    // The deployed service came back from the disk, with its secret.
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        let out = node.sporectl(&fleet.operator, &["--json", "status", "keeper"]);
        status = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if status["state"] == "ready" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["source"], "deployed", "{status}");
    let secrets = node.sporectl(&fleet.operator, &["secret", "list"]);
    assert!(String::from_utf8_lossy(&secrets.stdout).contains("note"));
    // It read its credential (19 bytes) before the reboot and after it.
    fleet.nodes[0]
        .vm
        .wait_for_nth("keeper has 19 bytes", 2, Duration::from_secs(30))
        .unwrap_or_else(|e| {
            let console = fleet.nodes[0].vm.console_text();
            let keeper: Vec<&str> = console.lines().filter(|l| l.contains("keeper")).collect();
            panic!(
                "the service saw its secret before and after the reboot: {e}\nkeeper lines:\n{}",
                keeper.join("\n")
            )
        });
    let node = &fleet.nodes[0];

    // Powered off, the disk was synced and unmounted: ext4 needs no journal
    // recovery (mounted, it carries `needs_recovery`).
    let out = node.sporectl(&fleet.operator, &["poweroff"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = &mut fleet.nodes[0];
    let status = node
        .vm
        .wait_exit(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "QEMU ended with {status}");
    let disk = fleet.dir.join("node1/state.ext4");
    let header = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(header.status.success(), "{header:?}");
    let header = String::from_utf8_lossy(&header.stdout);
    let line = |key: &str| {
        header
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` in:\n{header}"))
            .to_owned()
    };
    assert!(line("Filesystem state:").ends_with("clean"), "{header}");
    assert!(
        !line("Filesystem features:").contains("needs_recovery"),
        "{header}"
    );
}
