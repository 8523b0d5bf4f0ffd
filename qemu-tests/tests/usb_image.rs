//! Install media, test 1: the disk image `spore-mkinitramfs --disk` makes,
//! attached as a USB stick (`-device qemu-xhci -device usb-storage`) to a
//! guest with UEFI firmware (OVMF) and no `-kernel`/`-initrd`: the firmware
//! starts `\EFI\BOOT\BOOTX64.EFI` (the UKI), the node mounts its state
//! partition by label, makes its node key there, registers with the beacon
//! and answers sporectl; rebooted over RPC, it comes back through the
//! firmware (the boot entry spore wrote for slot A) with the same key and
//! registers again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::Fleet;

#[test]
fn a_node_boots_from_the_usb_image_under_uefi_and_keeps_its_key_across_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 1, false, true, |spec| {
        spec.usb_image = true;
    })
    .unwrap();
    fleet
        .wait_registered(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}\n{}", fleet.nodes[0].vm.console_text()));
    let registered = fleet.nodes[0].vm.started.elapsed();
    fleet.learn_keys().unwrap();
    let first_key = fleet.nodes[0].key.clone();
    let console = fleet.nodes[0].vm.console_text();
    // The firmware found the stick and started its \EFI\BOOT\BOOTX64.EFI:
    // the UKI, whose kernel got its initramfs and `quiet` command line
    // from the image (no -kernel, -initrd or -append was given).
    assert!(
        console.contains("BdsDxe: starting Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE"),
        "{console}"
    );
    assert!(
        console.contains("spore: LABEL=spore-state is /dev/sda2 (ext4)"),
        "{console}"
    );
    assert!(
        console.contains("spore: mounted LABEL=spore-state (ext4) on /var/lib"),
        "{console}"
    );
    assert!(
        console.contains("spore: generated node key /var/lib/spore/node_key"),
        "{console}"
    );
    // The image names no node; the machine's spore-node.toml on the ESP
    // does.
    assert!(
        console
            .contains("spore: hostname node1 (from spore-node.toml on the EFI system partition)"),
        "{console}"
    );
    let node = &fleet.nodes[0];
    let out = node.sporectl(&fleet.operator, &["--json", "info"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["pid1"], true);
    assert_eq!(info["deploys"]["persistent"], true, "{info}");
    let before = fleet.beacon.node("node1").unwrap();
    let first_timestamp = before["registration"]["timestamp"].as_u64().unwrap();

    let out = node.sporectl(&fleet.operator, &["reboot"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vm = &mut fleet.nodes[0].vm;
    vm.wait_for_nth("starting (pid 1, ", 2, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_nth("spore: call-home: succeeded", 2, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e}"));
    let after = fleet
        .beacon
        .registered_after("node1", first_timestamp)
        .expect("a newer registration");
    assert_eq!(
        after["registration"]["hero_proc_auth_pubkey"].as_str(),
        Some(first_key.as_str()),
        "the same node key, read from the state partition"
    );
    let console = fleet.nodes[0].vm.console_text();
    assert_eq!(
        console.matches("spore: generated node key").count(),
        1,
        "{console}"
    );
    // Both boots went through the firmware: the first from the stick's
    // fallback path, the second from the boot entry spore wrote at the
    // first (slot A, first in BootOrder).
    assert_eq!(
        console
            .matches("BdsDxe: starting Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE")
            .count(),
        1,
        "{console}"
    );
    assert_eq!(
        console
            .matches("BdsDxe: starting Boot0100 \"spore A\"")
            .count(),
        1,
        "{console}"
    );
    eprintln!(
        "usb_image: firmware start to registration {:.1} s under TCG",
        registered.as_secs_f64()
    );
}
