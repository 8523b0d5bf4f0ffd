//! `spore run --cgroup PATH`: a directory that is not cgroup2 is named and
//! services run as before; and what a cgroup is for: without one, a
//! grandchild a service detached with setsid and a double fork escapes a
//! process-group stop. (That a service's cgroup takes it along is tested
//! with spore as PID 1 under QEMU, qemu-tests/tests/cgroups.rs, where the
//! hierarchy is spore's own; the host's may not be writable.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{alive, Spore};
use serde_json::json;

/// A service whose shell leaves a grandchild in a session of its own,
/// writing its pid to `PIDFILE`.
fn detaching(pidfile: &std::path::Path) -> String {
    format!(
        "[service]\nname = \"detach\"\nexec = [\"/bin/sh\", \"-c\", \"setsid sh -c 'echo $$ > {}; exec sleep 1000' & exec sleep 1001\"]\n",
        pidfile.display()
    )
}

#[test]
fn without_a_cgroup_spore_says_so_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let not_cgroup = dir.path().join("plain");
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    std::fs::create_dir_all(&not_cgroup).unwrap();
    let spore = Spore::start_with_args(dir, &["--cgroup", not_cgroup.to_str().unwrap()]);
    spore.wait_for("the cgroup refusal", Duration::from_secs(10), |s| {
        s.stderr().contains("is not a cgroup2 directory")
    });
    assert!(spore.stderr().contains("services run in spore's cgroup"));
}

#[test]
fn without_a_cgroup_a_detached_grandchild_outlives_the_stop() {
    // What the cgroup is for: the process group does not reach it.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    std::fs::write(
        dir.path().join("etc/services/detach.toml"),
        detaching(&pidfile),
    )
    .unwrap();
    let spore = Spore::start_in(dir);
    spore.wait_state("detach", "ready");
    common::wait_for_file(&pidfile, "\n");
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    spore
        .call("service.stop", json!({ "name": "detach" }))
        .unwrap();
    spore.wait_state("detach", "stopped");
    std::thread::sleep(Duration::from_millis(300));
    let survived = alive(grandchild);
    common::signal(grandchild, libc::SIGKILL);
    assert!(
        survived,
        "the grandchild was expected to escape a group stop"
    );
}
