//! Time: a node whose hardware clock is years wrong (QEMU `-rtc base=`)
//! asks the NTP server of its spore.toml's `[time]` (a real chronyd on the
//! host, reached at 10.0.2.2) at boot and steps its clock before any
//! service starts, so call-home's registration, which the beacon refuses
//! from a clock more than 300 s off, is accepted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::chrony::Chrony;
use qemu_tests::console::line_of;
use qemu_tests::Fleet;

#[test]
fn a_node_with_a_wrong_clock_sets_it_from_ntp_before_it_calls_home() {
    let dir = tempfile::tempdir().unwrap();
    let chrony = Chrony::start(&dir.path().join("chrony")).unwrap_or_else(|e| panic!("{e}"));
    let server = format!("10.0.2.2:{}", chrony.port);
    let mut fleet = Fleet::boot(dir.path(), 1, false, false, |spec| {
        spec.rtc_base = Some("2020-01-01T00:00:00".into());
        spec.time_servers = vec![server.clone()];
    })
    .unwrap();
    fleet
        .wait_registered(Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
    let console = fleet.nodes[0].vm.console_text();
    // spore's first lines carry the hardware's time; the step comes before
    // the first service.
    assert!(console.contains("2020-01-01T00:00:"), "{console}");
    let set = line_of(
        &console,
        &format!("spore: time: clock set from {server} (stratum 8): it was +"),
    )
    .unwrap_or_else(|| panic!("no clock step on the console:\n{console}"));
    let first_service = line_of(&console, "spore: mycelium: starting").unwrap();
    assert!(set < first_service, "{console}");
    let registered = fleet.beacon.node("node1").unwrap();
    let timestamp = registered["registration"]["timestamp"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(timestamp) < 300,
        "registered at {timestamp}, now {now}"
    );
}
