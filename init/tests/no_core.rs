//! A core of spore would hold secret values and the node key's seed: spore
//! makes itself undumpable with a core-file limit of 0, gives services the
//! limit it was started with, and treats SIGQUIT (whose default action
//! dumps a core and orphans every service) as an orderly stop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::{child_of, signal, Spore};

/// The soft "Max core file size" of `pid`, as /proc/PID/limits shows it.
fn core_soft_limit(pid: i32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    line.split_whitespace().nth(4).unwrap().to_owned()
}

#[test]
fn sigquit_stops_in_order_and_spore_keeps_no_core_limit_but_services_do() {
    // Like `ulimit -c unlimited` (as far as the hard limit allows) in the
    // shell that starts spore. This test file is its own process.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, hard, hard).unwrap();
    let wanted = if hard == libc::RLIM_INFINITY {
        "unlimited".to_owned()
    } else {
        hard.to_string()
    };
    let mut spore = Spore::start(&[(
        "worker",
        "[service]\nname = \"worker\"\nexec = \"sleep 1000\"\n".to_owned(),
    )]);
    spore.wait_state("worker", "ready");
    let worker = child_of(spore.pid());
    assert_eq!(core_soft_limit(spore.pid()), "0", "spore dumps no core");
    assert_eq!(
        core_soft_limit(worker),
        wanted,
        "the service keeps its limit"
    );
    signal(spore.pid(), libc::SIGQUIT);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = spore.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "spore did not stop on SIGQUIT:\n{}",
            spore.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "an orderly stop, not a core dump: {status}"
    );
    assert!(
        !common::alive(worker)
            || std::fs::read_to_string(format!("/proc/{worker}/stat"))
                .is_ok_and(|s| s.contains(") Z")),
        "the service was stopped, not orphaned"
    );
    let log = spore.stderr();
    assert!(log.contains("SIGQUIT received"), "{log}");
    assert!(log.contains("worker: stopped"), "{log}");
}
