//! Install media, test 3: a node with no disk boots over the network. QEMU's
//! built-in TFTP server (`-netdev user,tftp=DIR,bootfile=boot.ipxe`) serves
//! the bundle `spore-mkinitramfs --netboot` makes; the NIC's iPXE runs
//! `boot.ipxe`, which hands this MAC address its own script, and the node
//! boots with `spore.hostname=node1` on its command line and registers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::Fleet;

#[test]
fn a_diskless_node_boots_the_netboot_bundle_over_tftp_and_registers() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 1, false, false, |spec| {
        spec.netboot = true;
    })
    .unwrap();
    let tftp = fleet.dir.join("node1/tftp");
    for file in [
        "boot.ipxe",
        "mac-52-54-00-12-34-01.ipxe",
        "vmlinuz",
        "initrd.img",
        "spore.efi",
    ] {
        assert!(tftp.join(file).is_file(), "{file} in the bundle");
    }
    fleet
        .wait_registered(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}\n{}", fleet.nodes[0].vm.console_text()));
    let registered = fleet.nodes[0].vm.started.elapsed();
    let console = fleet.nodes[0].vm.console_text();
    assert!(
        console.contains("mac-52-54-00-12-34-01.ipxe"),
        "iPXE fetched this MAC's script: {console}"
    );
    assert!(
        console.contains("spore: hostname node1 (from spore.hostname= on the kernel command line)"),
        "{console}"
    );
    fleet.learn_keys().unwrap();
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["--json", "info"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["hostname"], "node1");
    assert_eq!(info["deploys"]["persistent"], false, "no disk: {info}");
    eprintln!(
        "netboot: QEMU start to registration {:.1} s under TCG",
        registered.as_secs_f64()
    );
}
