//! In-place updates through the boot slots, on a guest with UEFI firmware
//! (OVMF) and a writable copy of its variable store, booted from the USB
//! image: `sporectl update` writes a new unified kernel image to slot B
//! and sets BootNext; the next boot tries it and spore there confirms it
//! (BootOrder, the fallback copy) once mycelium and call-home are ready,
//! with the machine's watchdog armed for the trial and disarmed after it,
//! and it stays after another reboot. An image that is not one is refused
//! before anything is written. An image whose mycelium never gets ready is
//! reverted: spore on it gives up after `[update] confirm_within_ms`,
//! reboots, and the firmware brings the confirmed slot back, which reports
//! why. An image whose kernel panics never starts spore: the firmware's
//! one-shot BootNext alone brings the confirmed slot back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::Fleet;
use serde_json::Value;

const BOOT: Duration = Duration::from_secs(240);

fn info(fleet: &Fleet) -> Value {
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["--json", "info"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// coreutils' hash of a file, not spore's.
fn sha256sum(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `sporectl update --image IMAGE`, which must succeed; what it printed.
fn update(fleet: &Fleet, image: &std::path::Path) -> String {
    let out = fleet.nodes[0].sporectl(
        &fleet.operator,
        &["update", "--image", image.to_str().unwrap()],
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}{said}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

fn reboot(fleet: &mut Fleet, nth: usize) {
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["reboot"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vm = &mut fleet.nodes[0].vm;
    vm.wait_for_nth("starting (pid 1, ", nth, BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
}

#[test]
fn an_update_is_tried_once_then_confirmed_and_a_bad_one_reverts_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 1, false, true, |spec| {
        spec.usb_image = true;
    })
    .unwrap();
    fleet
        .wait_registered(BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", fleet.nodes[0].vm.console_text()));
    fleet.learn_keys().unwrap();
    let vm = &mut fleet.nodes[0].vm;
    vm.wait_for("spore: boot slots: booted slot a (confirmed a)", BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let before = info(&fleet);
    assert_eq!(
        before["boot"]["slots"],
        true,
        "{before}\n{}",
        fleet.nodes[0].vm.console_text()
    );
    assert_eq!(before["boot"]["slot"], "a", "{before}");
    assert_eq!(before["boot"]["confirmed"], "a", "{before}");

    // Not an image: refused, nothing staged.
    let junk = dir.path().join("junk.efi");
    std::fs::write(&junk, b"MZ but not a PE file at all").unwrap();
    let out = fleet.nodes[0].sporectl(
        &fleet.operator,
        &["update", "--image", junk.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the image is refused: it is not a PE file"),
        "{said}"
    );
    assert!(info(&fleet)["boot"]["trial"].is_null());

    // A good image: v2 carries one more service.
    let v2 = fleet
        .build_update(1, "v2", |spec| {
            spec.extra_services.push((
                "v2-marker".into(),
                "[service]\nname = \"v2-marker\"\nexec = \"/bin/echo this is v2\"\noneshot = true\n"
                    .into(),
            ));
        })
        .unwrap();
    // Timed in its parts: the transfer (the image as an artifact), the
    // write (node.update: checked, written, read back), the reboot (to
    // spore starting on slot B) and the confirmation.
    let started = std::time::Instant::now();
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["artifact", "put", v2.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let transfer = started.elapsed();
    let said = update(&fleet, &v2);
    let write = started.elapsed() - transfer;
    assert!(said.contains("written to slot b"), "{said}");
    // The image is in the slot now; its copy in the artifact store is gone.
    let listed = fleet.nodes[0].sporectl(&fleet.operator, &["--json", "artifact", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("\"artifacts\""), "{listed}");
    assert!(!listed.contains(&sha256sum(&v2)), "{listed}");
    let staged = info(&fleet);
    assert_eq!(staged["boot"]["trial"]["slot"], "b", "{staged}");
    let rebooting = std::time::Instant::now();
    reboot(&mut fleet, 2);
    let reboot_took = rebooting.elapsed();
    let vm = &mut fleet.nodes[0].vm;
    vm.wait_for("spore: update confirmed: slot b", BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let confirm = rebooting.elapsed() - reboot_took;
    eprintln!(
        "update to confirmed ({} KiB image, TCG): transfer {:.1} s, write {:.1} s, reboot to spore {:.1} s, confirm {:.1} s, {:.1} s in all",
        std::fs::metadata(&v2).unwrap().len() / 1024,
        transfer.as_secs_f64(),
        write.as_secs_f64(),
        reboot_took.as_secs_f64(),
        confirm.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let console = vm.console_text();
    assert!(console.contains("BdsDxe: starting Boot"), "{console}");
    // The watchdog guarded the trial and was disarmed once it was decided
    // (the guest then runs for minutes without a reset).
    assert!(
        console.contains("spore: watchdog /dev/watchdog armed for the trial (60 s)"),
        "{console}"
    );
    assert!(console.contains("spore: watchdog disarmed"), "{console}");
    assert!(
        console.contains("\"spore B\""),
        "the firmware booted slot B once: {console}"
    );
    let after = info(&fleet);
    assert_eq!(after["boot"]["slot"], "b", "{after}");
    assert_eq!(after["boot"]["confirmed"], "b", "{after}");
    assert_eq!(
        after["boot"]["last_update"]["result"], "confirmed",
        "{after}"
    );
    assert!(
        after["boot"]["last_update"]["reason"]
            .as_str()
            .unwrap()
            .contains("call-home, mycelium ready"),
        "{after}"
    );
    let v2_sha = after["boot"]["confirmed_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        v2_sha,
        sha256sum(&v2),
        "the confirmed image is the one sent"
    );
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["status", "v2-marker"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("v2-marker"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Confirmed means confirmed: another reboot comes back to slot B.
    reboot(&mut fleet, 3);
    let vm = &mut fleet.nodes[0].vm;
    vm.wait_for("spore: boot slots: booted slot b (confirmed b)", BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    vm.wait_for_nth("spore: call-home: succeeded", 3, BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));

    // A bad image: its mycelium never gets ready, and it gives itself 20 s.
    let broken = fleet
        .build_update(1, "broken", |spec| {
            spec.extra_services.push((
                "mycelium".into(),
                "[service]\nname = \"mycelium\"\nexec = \"/bin/sh -c 'echo no overlay today; exit 3'\"\n"
                    .into(),
            ));
            spec.extra_config
                .push_str("\n[update]\nconfirm_within_ms = 20000\n");
        })
        .unwrap();
    update(&fleet, &broken);
    reboot(&mut fleet, 4);
    let vm = &mut fleet.nodes[0].vm;
    vm.wait_for("spore: update reverted: slot a", BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    // spore on the bad slot reboots by itself; the firmware's BootOrder
    // brings slot B back.
    vm.wait_for_nth("starting (pid 1, ", 5, BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    vm.wait_for_nth("spore: boot slots: booted slot b (confirmed b)", 2, BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    vm.wait_for_nth("spore: call-home: succeeded", 4, BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let back = info(&fleet);
    // The registration after it says so too, and `sporectl nodes` shows it.
    let record = fleet.beacon.node("node1").unwrap();
    let boot = &record["registration"]["boot"];
    assert_eq!(boot["confirmed"], "b", "{record}");
    assert_eq!(boot["last_update"]["result"], "reverted", "{record}");
    let out = fleet
        .operator
        .sporectl(&["--beacon", &fleet.beacon.url(), "nodes"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("slot b (a reverted)"), "{table}");

    // An image whose kernel panics before spore starts (it is told to run
    // an init that is not there): the kernel's panic=-1 reboots at once,
    // BootNext is used up, and the firmware boots slot B, where spore finds
    // the trial never started.
    let panics = fleet
        .build_update(1, "panics", |spec| {
            spec.kernel_args = "rdinit=/no/such/init".into();
        })
        .unwrap();
    update(&fleet, &panics);
    reboot(&mut fleet, 6);
    let vm = &mut fleet.nodes[0].vm;
    vm.wait_for_nth("spore: update reverted: slot a", 2, BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let console = vm.console_text();
    assert!(console.contains("Kernel panic"), "{console}");
    vm.wait_for_nth("spore: boot slots: booted slot b (confirmed b)", 3, BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let panicked = info(&fleet);
    let last = &panicked["boot"]["last_update"];
    assert_eq!(last["result"], "reverted", "{panicked}");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("never started spore"),
        "{panicked}"
    );
    assert_eq!(last["sha256"], sha256sum(&panics).as_str(), "{panicked}");

    // Every image carries the same spore: one build id throughout, hashed
    // from the binary after the start (seconds under emulation).
    let spore = fleet.artifacts.spore.clone();
    let mut build = back["boot"]["build_id"].clone();
    for _ in 0..120 {
        if !build.is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        build = info(&fleet)["boot"]["build_id"].clone();
    }
    assert_eq!(build, sha256sum(&spore).as_str(), "{back}");
    assert_eq!(back["boot"]["slot"], "b", "{back}");
    assert_eq!(back["boot"]["confirmed_sha256"], v2_sha.as_str(), "{back}");
    let last = &back["boot"]["last_update"];
    assert_eq!(last["result"], "reverted", "{back}");
    assert_eq!(last["slot"], "a", "{back}");
    // The reason names where each critical service stood: mycelium, which
    // call-home waits for, never got ready.
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.starts_with("not ready within 20 s: "), "{back}");
    assert!(
        reason.contains("mycelium exited") || reason.contains("mycelium backoff"),
        "{back}"
    );
}
