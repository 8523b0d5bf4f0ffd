//! Services in cgroups of their own under `spore run --cgroup PATH` (a
//! directory of this host's cgroup2 hierarchy: no controllers are needed
//! for placement, cgroup.kill and cgroup.events): a stop reaches what a
//! service detached with setsid and a double fork, which a process-group
//! kill misses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{alive, Spore};
use serde_json::json;

/// This host's cgroup2 hierarchy (a hybrid host mounts it at
/// /sys/fs/cgroup/unified).
fn host_cgroup2() -> PathBuf {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
        .expect("a cgroup2 hierarchy on this host")
}

/// A directory of the hierarchy for one test, removed (what is left in
/// it killed) when dropped.
struct Delegated(PathBuf);

impl Drop for Delegated {
    fn drop(&mut self) {
        if let Ok(services) = std::fs::read_dir(self.0.join("services")) {
            // The cgroups among the interface files.
            for service in services.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::write(service.path().join("cgroup.kill"), "1");
                for _ in 0..500 {
                    if std::fs::remove_dir(service.path()).is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let _ = std::fs::remove_dir(self.0.join("services"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A service whose shell leaves a grandchild in a session of its own,
/// writing its pid to `PIDFILE`.
fn detaching(pidfile: &std::path::Path) -> String {
    format!(
        "[service]\nname = \"detach\"\nexec = [\"/bin/sh\", \"-c\", \"setsid sh -c 'echo $$ > {}; exec sleep 1000' & exec sleep 1001\"]\n",
        pidfile.display()
    )
}

#[test]
fn a_stop_reaches_what_a_service_detached_when_it_has_a_cgroup() {
    let root = host_cgroup2().join(format!("spore-run-{}", std::process::id()));
    std::fs::create_dir(&root).unwrap();
    let delegated = Delegated(root.clone());
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    std::fs::write(
        dir.path().join("etc/services/detach.toml"),
        detaching(&pidfile),
    )
    .unwrap();
    let spore = Spore::start_with_args(dir, &["--cgroup", root.to_str().unwrap()]);
    spore.wait_state("detach", "ready");
    common::wait_for_file(&pidfile, "\n");
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(grandchild));
    // In the service's cgroup, though in a session of its own.
    let cgroup = std::fs::read_to_string(format!("/proc/{grandchild}/cgroup")).unwrap();
    assert!(
        cgroup.contains(&format!("spore-run-{}/services/detach", std::process::id())),
        "{cgroup}"
    );
    assert!(spore
        .stderr()
        .contains("cgroups: each service in its own under"));
    spore
        .call("service.stop", json!({ "name": "detach" }))
        .unwrap();
    spore.wait_state("detach", "stopped");
    spore.wait_for(
        "the detached grandchild to die",
        Duration::from_secs(10),
        |_| !alive(grandchild),
    );
    let events = std::fs::read_to_string(root.join("services/detach/cgroup.events")).unwrap();
    assert!(events.contains("populated 0"), "{events}");
    drop(spore);
    drop(delegated);
    assert!(!root.exists());
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
