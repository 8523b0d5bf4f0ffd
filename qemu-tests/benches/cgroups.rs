//! What a cgroup per service costs, with spore as PID 1 under QEMU (run by
//! hand: `cargo bench -p qemu-tests --bench cgroups [-- SERVICES]`).
//!
//! One node image with SERVICES `sleep` services (1,000 by default) boots
//! twice in one run: with each service in a cgroup of its own (the
//! default), and with `SPORE_CGROUPS=off` on the kernel command line. In
//! each boot, inside the guest:
//!
//!   start   seconds from spore's first line until every service runs (a
//!           oneshot ordered `after` all of them reads /proc/uptime);
//!   floor   seconds a shell loop takes to start as many `sleep`s with no
//!           supervision at all (fork + exec each, started by a second
//!           oneshot once the services run): the anchor a supervisor's
//!           start is compared with;
//!   pss     spore's proportional set size with the services running
//!           (/proc/1/smaps_rollup).
//!
//! Prints the figures side by side and the ratios: cgroups / without, and
//! each start / the floor of the same boot (goal: with cgroups, within
//! 1.3x the floor). Times under TCG are slow; only the ratios of one run
//! mean anything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::Fleet;

/// Figures of one boot.
struct Boot {
    start_s: f64,
    floor_s: f64,
    pss_kib: u64,
}

/// The number after `key` on the console's line holding `mark`.
fn figure(console: &str, mark: &str, key: &str) -> f64 {
    let line = console
        .lines()
        .find(|l| l.contains(mark))
        .unwrap_or_else(|| panic!("no `{mark}` line on the console"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| {
            v.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

fn boot(services: usize, cgroups: bool) -> Boot {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 1, false, false, |spec| {
        spec.memory_mb = Some(2048);
        if !cgroups {
            spec.kernel_args = "SPORE_CGROUPS=off".into();
        }
        let names: Vec<String> = (0..services).map(|i| format!("\"s{i}\"")).collect();
        for i in 0..services {
            spec.extra_services.push((
                format!("s{i}"),
                format!("[service]\nname = \"s{i}\"\nexec = [\"sleep\", \"86401\"]\n"),
            ));
        }
        spec.extra_services.push((
            "bench-started".into(),
            format!(
                "[service]\nname = \"bench-started\"\noneshot = true\nexec = [\"/bin/sh\", \"-c\", \"echo bench-started up=$(cut -d' ' -f1 /proc/uptime) pss=$(grep Pss: /proc/1/smaps_rollup | tr -s ' ' | cut -d' ' -f2)\"]\n\n[dependencies]\nafter = [{}]\n",
                names.join(", ")
            ),
        ));
        spec.extra_services.push((
            "bench-floor".into(),
            format!(
                "[service]\nname = \"bench-floor\"\noneshot = true\nexec = [\"/bin/sh\", \"-c\", \"t0=$(cut -d' ' -f1 /proc/uptime); i=0; while [ $i -lt {services} ]; do sleep 86402 & i=$((i+1)); done; echo bench-floor from=$t0 to=$(cut -d' ' -f1 /proc/uptime)\"]\n\n[dependencies]\nafter = [\"bench-started\"]\n"
            ),
        ));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    fleet.nodes[0]
        .vm
        .wait_for("bench-floor from=", Duration::from_secs(1800))
        .unwrap_or_else(|e| panic!("{e}"));
    let console = fleet.nodes[0].vm.console_text();
    // "spore 0.1.0 starting (pid 1, 1.234 s after kernel start)"
    let spore_start: f64 = console
        .lines()
        .find_map(|l| l.split("starting (pid 1, ").nth(1))
        .and_then(|rest| rest.split(" s after").next())
        .and_then(|n| n.parse().ok())
        .expect("spore's first line on the console");
    let up = figure(&console, "bench-started up=", "up=");
    let pss = figure(&console, "bench-started up=", "pss=") as u64;
    let from = figure(&console, "bench-floor from=", "from=");
    let to = figure(&console, "bench-floor from=", "to=");
    Boot {
        start_s: up - spore_start,
        floor_s: to - from,
        pss_kib: pss,
    }
}

fn main() {
    let services: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    eprintln!("booting with a cgroup per service ...");
    let with = boot(services, true);
    eprintln!("booting with SPORE_CGROUPS=off ...");
    let without = boot(services, false);
    println!("\n{services} services, spore as PID 1 under QEMU (TCG); ratios are of one run");
    println!(
        "{:22} {:>10} {:>10} {:>12} {:>11}",
        "", "start (s)", "floor (s)", "start/floor", "PSS (KiB)"
    );
    for (name, b) in [
        ("a cgroup per service", &with),
        ("SPORE_CGROUPS=off", &without),
    ] {
        println!(
            "{name:22} {:>10.2} {:>10.2} {:>12.2} {:>11}",
            b.start_s,
            b.floor_s,
            b.start_s / b.floor_s,
            b.pss_kib
        );
    }
    println!(
        "\ncgroups / without: start {:.2}x, PSS {:.2}x",
        with.start_s / without.start_s,
        with.pss_kib as f64 / without.pss_kib.max(1) as f64
    );
}
