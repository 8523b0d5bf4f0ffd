//! Boot test 4: node.poweroff over RPC stops the services in reverse
//! dependency order, then QEMU ends cleanly (read from the console). PID 1
//! starts every service through its spawner here (`SPORE_SPAWNER=always`
//! on the kernel command line reaches its environment), so the spawner is
//! tested as a real init's helper too, and must not hold up the poweroff.
//! The serial console is given first and the VGA console last, as README's
//! image does: every line read here reached the serial line because spore
//! writes to every console, not only to /dev/console.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::console::line_of;
use qemu_tests::Fleet;

#[test]
fn poweroff_stops_services_in_reverse_order_and_ends_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 1, false, false, |spec| {
        // The serial console first, then the VGA one: /dev/console is the
        // last (tty0), so spore's lines reach the serial line only because
        // spore writes to every console the kernel lists.
        spec.kernel_args = "SPORE_SPAWNER=always console=tty0".into();
        spec.extra_services.push((
            "worker".into(),
            "[service]\nname = \"worker\"\nexec = [\"/bin/sh\", \"-c\", \"while true; do sleep 1; done\"]\n\n[dependencies]\nrequires = [\"mycelium\"]\n".into(),
        ));
    })
    .unwrap();
    fleet
        .wait_registered(Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
    let node = &mut fleet.nodes[0];
    node.vm
        .wait_for("spore: worker: ready", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        node.vm
            .console_text()
            .lines()
            .any(|l| l.contains("spore: console: writing to ")
                && l.split([' ', ',']).any(|w| w == "ttyS0")
                && l.split([' ', ',']).any(|w| w == "tty0")),
        "{}",
        node.vm.console_text()
    );
    assert!(
        node.vm
            .console_text()
            .contains("services start through the spawner from now on"),
        "{}",
        node.vm.console_text()
    );
    let out = node.sporectl(&fleet.operator, &["poweroff"]);
    assert!(
        out.status.success(),
        "sporectl poweroff: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = node
        .vm
        .wait_exit(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "QEMU ended with {status}");

    let console = node.vm.console_text();
    let at = |mark: &str| {
        line_of(&console, mark).unwrap_or_else(|| panic!("`{mark}` not on the console:\n{console}"))
    };
    assert!(at("spore: worker: stopping") < at("spore: mycelium: stopping"));
    assert!(
        at("spore: worker: stopped") < at("spore: mycelium: stopping"),
        "mycelium is stopped only after what requires it"
    );
    assert!(at("spore: mycelium: stopped") < at("spore: all services stopped"));
    assert!(at("spore: all services stopped") < at("spore: Poweroff now"));
    assert!(at("spore: Poweroff now") < at("reboot: Power down"));
    assert!(
        console.contains("node.poweroff -> ok"),
        "the call is audited"
    );
}
