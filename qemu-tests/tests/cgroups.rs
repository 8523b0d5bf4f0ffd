//! cgroup v2 with spore as PID 1 under the Debian kernel: spore mounts the
//! hierarchy, sits in a leaf of its own, hands the controllers down, and
//! puts each service in a cgroup of its own, so a stop reaches a
//! grandchild the service detached with setsid and a double fork.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::Fleet;

#[test]
fn each_service_is_in_its_own_cgroup_and_a_stop_reaches_what_it_detached() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::boot(dir.path(), 1, false, false, |_| {}).unwrap();
    fleet
        .wait_registered(Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
    let console = fleet.nodes[0].vm.console_text();
    assert!(
        console.contains(
            "cgroups: spore in /sys/fs/cgroup/spore/init, services under /sys/fs/cgroup/spore/services (controllers: cpu, memory, io, pids)"
        ),
        "{console}"
    );
    let deploy = |fleet: &Fleet, name: &str, text: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = fleet.nodes[0].sporectl(
            &fleet.operator,
            &["deploy", file.to_str().unwrap(), "--start"],
        );
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A service whose grandchild leaves its session and process group.
    deploy(
        &fleet,
        "detach",
        "[service]\nname = \"detach\"\nexec = [\"/bin/sh\", \"-c\", \"setsid sh -c 'echo $$ > /run/grandchild.pid; exec sleep 100000' & exec sleep 100001\"]\n",
    );
    // It is in the service's cgroup, though in a session of its own.
    deploy(
        &fleet,
        "where",
        "[service]\nname = \"where\"\noneshot = true\nexec = [\"/bin/sh\", \"-c\", \"sleep 1; echo grandchild in $(cat /proc/$(cat /run/grandchild.pid)/cgroup)\"]\n",
    );
    fleet.nodes[0]
        .vm
        .wait_for(
            "grandchild in 0::/spore/services/detach",
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["stop", "detach"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After the stop, nothing of it is left.
    deploy(
        &fleet,
        "after",
        "[service]\nname = \"after\"\noneshot = true\nexec = [\"/bin/sh\", \"-c\", \"if kill -0 $(cat /run/grandchild.pid) 2>/dev/null; then echo grandchild ALIVE; else echo grandchild GONE; fi; cat /sys/fs/cgroup/spore/services/detach/cgroup.events\"]\n",
    );
    fleet.nodes[0]
        .vm
        .wait_for("grandchild GONE", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let console = fleet.nodes[0].vm.console_text();
    assert!(!console.contains("grandchild ALIVE"), "{console}");
    assert!(console.contains("populated 0"), "{console}");
}
