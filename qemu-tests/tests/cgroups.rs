//! cgroup v2 with spore as PID 1 under the Debian kernel: spore mounts the
//! hierarchy, sits in a leaf of its own, hands the controllers down, and
//! puts each service in a cgroup of its own, so a stop reaches a
//! grandchild the service detached with setsid and a double fork; a
//! service's limits hold (an OOM kill is said as such, a fork bomb stops
//! at pids_max) while the node's own services stay up, and its usage is
//! what it took; and a service's cgroup delegated to it holds a nested
//! `spore run` and its services (one shared with another process is not
//! taken).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qemu_tests::Fleet;

#[test]
fn each_service_is_boxed_in_its_own_cgroup_with_its_limits_and_usage() {
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

    // Limits. A service that takes more memory than its memory_max is
    // killed by the OOM killer, said so, and restarted; a fork bomb stops
    // at its pids_max. Meanwhile the node's own services stay up and it
    // answers RPC.
    let hog = dir.path().join("hog.toml");
    std::fs::write(
        &hog,
        "[service]\nname = \"hog\"\nexec = [\"/bin/sh\", \"-c\", \"echo hog takes 64 MiB; dd if=/dev/zero of=/dev/null bs=64M count=1; exec sleep 100000\"]\n\n[lifecycle]\nrestart = \"always\"\nrestart_delay_ms = 2000\n\n[resources]\nmemory_max = \"32M\"\n",
    )
    .unwrap();
    // The deploy's answer says why it did not come up.
    let out = fleet.nodes[0].sporectl(
        &fleet.operator,
        &["deploy", hog.to_str().unwrap(), "--start"],
    );
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("last run: killed by the OOM killer at 32 MiB"),
        "{said}"
    );
    fleet.nodes[0]
        .vm
        .wait_for(
            "(last run killed by the OOM killer at 32 MiB)",
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    deploy(
        &fleet,
        "bomb",
        "[service]\nname = \"bomb\"\nexec = [\"/bin/sh\", \"-c\", \"bomb() { bomb | bomb & }; bomb; exec sleep 100000\"]\n\n[resources]\npids_max = 32\n",
    );
    // And one that holds 20 MiB, to see what accounting says of it.
    deploy(
        &fleet,
        "fill",
        "[service]\nname = \"fill\"\nexec = [\"/bin/sh\", \"-c\", \"x=$(head -c 22000000 /dev/zero | tr '\\\\0' a); echo filled; sleep 100000; echo $x | head -c 1\"]\n",
    );
    fleet.nodes[0]
        .vm
        .wait_for("filled", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    let status = |name: &str| -> serde_json::Value {
        // (Its exit status says whether the service is up: not asserted.)
        let out = fleet.nodes[0].sporectl(&fleet.operator, &["--json", "status", name]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let hog = status("hog");
    assert!(hog["restarts"].as_u64().unwrap() >= 1, "{hog}");
    assert!(hog["usage"]["oom_kills"].as_u64().unwrap() >= 1, "{hog}");
    assert_eq!(hog["usage"]["memory_max_bytes"], 32 << 20, "{hog}");
    let bomb = status("bomb");
    let pids = bomb["usage"]["pids"].as_u64().unwrap();
    assert!(pids <= 32, "{bomb}");
    assert_eq!(bomb["usage"]["pids_max"], 32, "{bomb}");
    let fill = status("fill");
    let memory = fill["usage"]["memory_bytes"].as_u64().unwrap();
    assert!(memory >= 20 << 20, "{fill}");
    assert!(
        fill["usage"]["memory_peak_bytes"].as_u64().unwrap() >= memory,
        "{fill}"
    );
    assert!(fill["usage"]["cpu_usec"].as_u64().unwrap() > 0, "{fill}");
    // The text an operator reads says the same.
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["status", "hog"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("killed by the OOM killer at 32 MiB"),
        "{text}"
    );
    assert!(text.contains("limit 32.0 MiB"), "{text}");
    // The node's own services were never touched, and it answers.
    for name in ["mycelium", "call-home"] {
        let own = status(name);
        assert_eq!(own["restarts"], 0, "{own}");
        assert!(
            ["ready", "succeeded"].contains(&own["state"].as_str().unwrap()),
            "{own}"
        );
    }
    let info = fleet.nodes[0].sporectl(&fleet.operator, &["--json", "info"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(
        info["resources"]["memory_total_bytes"].as_u64().unwrap() > 100 << 20,
        "{info}"
    );
    // The bomb goes whole with its stop.
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["stop", "bomb"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (A stop answers at once; the bomb's shells outlive its signal by
    // forking, so it ends with cgroup.kill after the grace.)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let bomb = loop {
        let bomb = status("bomb");
        if bomb["state"] == "stopped" || std::time::Instant::now() > deadline {
            break bomb;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(bomb["state"], "stopped", "{bomb}");
    assert_eq!(bomb["usage"]["pids"], 0, "{bomb}");

    // Delegation: a service with `delegate = true` runs a nested `spore
    // run` (this very binary), which takes the cgroup it was started in
    // as its own tree and boxes its service in it; the outer stop takes it
    // all, and a second start finds the cgroup cleared for it.
    deploy(
        &fleet,
        "nestcfg",
        r#"[service]
name = "nestcfg"
oneshot = true
exec = ["/bin/sh", "-c", '''mkdir -p /run/nested/etc/services && printf '[rpc]\nlisten = "127.0.0.1:9998"\n' > /run/nested/etc/spore.toml && printf '[service]\nname = "inner"\nexec = ["/bin/sleep", "100003"]\n' > /run/nested/etc/services/inner.toml && echo nested configured''']
"#,
    );
    let vm = |fleet: &mut Fleet, mark: &str, count: usize| {
        fleet.nodes[0]
            .vm
            .wait_for_nth(mark, count, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
    };
    vm(&mut fleet, "nested configured", 1);
    let nested = "[service]\nname = \"nested\"\nexec = [\"/proc/1/exe\", \"run\", \"--config-dir\", \"/run/nested/etc\", \"--state-dir\", \"/run/nested/state\"]\n\n[resources]\ndelegate = true\n";
    deploy(&fleet, "nested", nested);
    let adopted = "cgroups: /sys/fs/cgroup/spore/services/nested is delegated to spore (trusted.delegate): spore in /sys/fs/cgroup/spore/services/nested/init, services under /sys/fs/cgroup/spore/services/nested/services (controllers: cpu, memory, io, pids)";
    vm(&mut fleet, adopted, 1);
    // Where each process is, by the kernel's word (the patterns do not
    // match the looking shell's own command line).
    let look = |fleet: &mut Fleet, tag: &str| -> String {
        let text = r#"[service]
name = "look-TAG"
oneshot = true
exec = ["/bin/sh", "-c", '''sleep 1; for p in /proc/[0-9]*; do if grep -q '10000[3]' $p/cmdline 2>/dev/null; then echo TAG inner in $(cat $p/cgroup); fi; if grep -q 'nested/et[c]' $p/cmdline 2>/dev/null; then echo TAG nested in $(cat $p/cgroup); fi; done; echo TAG looked''']
"#
        .replace("TAG", tag);
        deploy(fleet, &format!("look-{tag}"), &text);
        vm(fleet, &format!("{tag} looked"), 1);
        fleet.nodes[0].vm.console_text()
    };
    let console = look(&mut fleet, "first");
    assert!(
        console.contains("first inner in 0::/spore/services/nested/services/inner"),
        "{console}"
    );
    assert!(
        console.contains("first nested in 0::/spore/services/nested/init"),
        "{console}"
    );
    // The outer stop ends the nested spore and its service with it.
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["stop", "nested"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = look(&mut fleet, "second");
    assert!(!console.contains("second inner in"), "{console}");
    assert!(!console.contains("second nested in"), "{console}");
    // Started again, it finds its cgroup cleared of the last run's tree.
    let out = fleet.nodes[0].sporectl(&fleet.operator, &["start", "nested"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    vm(&mut fleet, adopted, 2);
    let console = look(&mut fleet, "third");
    assert!(
        console.contains("third inner in 0::/spore/services/nested/services/inner"),
        "{console}"
    );
    // A delegated cgroup with another process in it is not taken: the
    // two would share the services' cgroups.
    deploy(
        &fleet,
        "shared",
        "[service]\nname = \"shared\"\nexec = [\"/bin/sh\", \"-c\", \"sleep 100004 & exec /proc/1/exe run --config-dir /run/nested/etc --state-dir /run/shared/state\"]\n\n[resources]\ndelegate = true\n",
    );
    vm(
        &mut fleet,
        "cgroups: /sys/fs/cgroup/spore/services/shared is delegated (trusted.delegate), but 1 other process(es) are in it; not taken (give spore one of its own with --cgroup PATH)",
        1,
    );
}
