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
