//! `[resources]` under `spore run` without a cgroup: a limit that needs a
//! cgroup fails its service's start, named (never silently ignored), the
//! others run on; `oom_score_adj` needs none and reaches the service and
//! what it starts, whether spore forks it or its spawner does. (The limits
//! themselves are tested with spore as PID 1 under QEMU: this host's
//! cgroup2 has no controllers.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Stdio;

use common::Spore;
use serde_json::{json, Value};

fn services(dir: &std::path::Path, out: &std::path::Path) {
    let etc = dir.join("etc/services");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("capped.toml"),
        "[service]\nname = \"capped\"\nexec = [\"sleep\", \"1000\"]\n\n[resources]\nmemory_max = \"32M\"\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("scored.toml"),
        format!(
            "[service]\nname = \"scored\"\nexec = [\"/bin/sh\", \"-c\", \"sh -c 'cat /proc/self/oom_score_adj' > {}; exec sleep 1000\"]\n\n[resources]\noom_score_adj = 500\n",
            out.display()
        ),
    )
    .unwrap();
}

fn check(spore: &Spore, out: &std::path::Path) {
    spore.wait_state("scored", "ready");
    common::wait_for_file(out, "\n");
    // What the service started has the score too.
    assert_eq!(std::fs::read_to_string(out).unwrap().trim(), "500");
    spore.wait_for("capped to fail", std::time::Duration::from_secs(20), |s| {
        s.state("capped") == "failed" || s.state("capped") == "backoff"
    });
    let status: Value = spore
        .call("service.status", json!({ "name": "capped" }))
        .unwrap();
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("memory_max needs a cgroup, and spore has none here"),
        "{status}"
    );
    assert!(
        spore.stderr().contains("memory_max needs a cgroup"),
        "{}",
        spore.stderr()
    );
}

#[test]
fn a_limit_without_a_cgroup_fails_its_start_and_the_oom_score_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("score");
    services(dir.path(), &out);
    let spore = Spore::start_in(dir);
    check(&spore, &out);
}

#[test]
fn the_spawner_sets_the_oom_score_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("score");
    services(dir.path(), &out);
    let console = std::fs::File::create(dir.path().join("spore.err")).unwrap();
    let spore = Spore::start_with_env(dir, Stdio::from(console), &[("SPORE_SPAWNER", "always")]);
    check(&spore, &out);
}

/// This process's RLIMIT_NOFILE (soft, hard).
fn nofile() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    (limit.rlim_cur, limit.rlim_max)
}

#[test]
fn spore_raises_its_descriptor_limit_and_services_get_the_one_it_had() {
    // spore holds two pipe ends per service: at 1,024 descriptors it ran
    // out near 500 services as PID 1. Its soft limit goes up to the hard
    // one; a service gets back the soft limit spore was started with.
    // Started with a soft limit below the hard one (as a kernel starts
    // PID 1: 1,024), whatever this process was given.
    let (_, hard) = nofile();
    let soft = 1024.min(hard);
    let lowered = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    assert!(soft < hard, "this test needs a hard limit above 1,024");
    for env in [&[][..], &[("SPORE_SPAWNER", "always")][..]] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nofile");
        let etc = dir.path().join("etc/services");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("count.toml"),
            format!(
                "[service]\nname = \"count\"\nexec = [\"/bin/sh\", \"-c\", \"ulimit -n > {}; exec sleep 1000\"]\n",
                out.display()
            ),
        )
        .unwrap();
        let console = std::fs::File::create(dir.path().join("spore.err")).unwrap();
        let spore = Spore::start_with_env(dir, Stdio::from(console), env);
        common::wait_for_file(&out, "\n");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            soft.to_string(),
            "{env:?}"
        );
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", spore.pid())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[3], hard.to_string(), "{line}");
        assert_eq!(words[4], hard.to_string(), "{line}");
    }
}
