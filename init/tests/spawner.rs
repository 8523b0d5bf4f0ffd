//! Starting services through the spawner: once spore holds a few hundred
//! descriptors (here 200 services with captured output), it starts the
//! rest through its helper process. They must be spore's own children,
//! with their output captured, their environment and directory, exit
//! codes for what cannot run, and the helper must end with spore.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::Spore;
use serde_json::{json, Value};

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: i64) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The spawners whose parent is `spore` (tests run side by side, each
/// with its own spore).
fn spawners_of(spore: i64) -> Vec<i64> {
    // A child the spawner cloned shows the spawner's command line until its
    // exec (failing services are retried meanwhile): a spawner is one that
    // is still there a moment later.
    let first = spawner_like(spore);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = spawner_like(spore);
    first
        .into_iter()
        .filter(|pid| second.contains(pid))
        .collect()
}

/// Children of `spore` whose command line is the spawner's.
fn spawner_like(spore: i64) -> Vec<i64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i64>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"spore-spawner\0"))
        })
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok() && parent_of(*pid) == spore)
        .collect()
}

#[test]
fn past_a_few_hundred_descriptors_services_start_through_the_spawner_as_spores_children() {
    let mut services: Vec<(String, String)> = (0..200)
        .map(|i| {
            (
                format!("s{i:03}"),
                format!(
                    "[service]\nname = \"s{i:03}\"\nexec = [\"sh\", \"-c\", \"echo out $WHO $(pwd); echo err >&2; exec sleep 1000\"]\ndir = \"/tmp\"\n\n[service.env]\nWHO = \"s{i:03}\"\n"
                ),
            )
        })
        .collect();
    services.push((
        "zz-garbage".into(),
        "[service]\nname = \"zz-garbage\"\nexec = \"GARBAGE\"\n\n[dependencies]\nafter = [\"s199\"]\n".into(),
    ));
    services.push((
        "zz-missing".into(),
        "[service]\nname = \"zz-missing\"\nexec = \"no-such-program-anywhere\"\n\n[dependencies]\nafter = [\"s199\"]\n".into(),
    ));
    let refs: Vec<(&str, String)> = services
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    // An executable file that is no program: found in PATH, so the failure
    // comes from exec itself, in the service's own process.
    let bin = tempfile::tempdir().unwrap();
    let garbage = bin.path().join("not-a-program");
    std::fs::write(&garbage, [0u8, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    std::fs::set_permissions(
        &garbage,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let refs: Vec<(&str, String)> = refs
        .into_iter()
        .map(|(n, t)| (n, t.replace("GARBAGE", garbage.to_str().unwrap())))
        .collect();
    let mut spore = Spore::start(&refs);
    spore.wait_for("200 services ready", Duration::from_secs(60), |s| {
        let list = s.call("service.list", json!({})).unwrap();
        list.as_array()
            .map(|all| all.iter().filter(|v| v["state"] == "ready").count())
            == Some(200)
    });
    let log = spore.stderr();
    assert!(
        log.contains("services start through the spawner from now on"),
        "{log}"
    );
    let spawners = spawners_of(i64::from(spore.pid()));
    assert_eq!(spawners.len(), 1, "one spawner");
    // Every service, early (forked by spore) or late (through the
    // spawner), is spore's child and has its output captured.
    for i in [0, 150, 199] {
        let name = format!("s{i:03}");
        let status = spore
            .call("service.status", json!({ "name": name }))
            .unwrap();
        let pid = status["pid"].as_i64().unwrap();
        assert_eq!(parent_of(pid), i64::from(spore.pid()), "{name}");
        spore.wait_for("its two lines", Duration::from_secs(10), |s| {
            let logs = s
                .call("service.logs", json!({ "name": name, "lines": 10 }))
                .unwrap();
            let texts: Vec<String> = logs["lines"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["stream"] != "spore")
                .map(|l| {
                    format!(
                        "{} {}",
                        l["stream"].as_str().unwrap(),
                        l["text"].as_str().unwrap()
                    )
                })
                .collect();
            texts.contains(&format!("stdout out {name} /tmp"))
                && texts.contains(&"stderr err".to_owned())
        });
    }
    // A program that is not there fails as it does without the spawner:
    // 127, and the reason.
    spore.wait_for("zz-missing to fail", Duration::from_secs(30), |s| {
        s.stderr()
            .contains("zz-missing: backoff: restart in 1000 ms (last run exited with code 127) (cannot run `no-such-program-anywhere`: No such file or directory (os error 2))")
    });
    // exec's own failure: exit 126 as a shell would, and the reason on the
    // service's stderr, which spore captured.
    spore.wait_for("zz-garbage to fail", Duration::from_secs(30), |s| {
        s.stderr()
            .contains("zz-garbage: backoff: restart in 1000 ms (last run exited with code 126)")
    });
    let logs = spore
        .call("service.logs", json!({ "name": "zz-garbage", "lines": 20 }))
        .unwrap();
    assert!(logs.to_string().contains("Exec format error"), "{logs}");
    // A restart goes through the spawner too.
    let old: Value = spore
        .call("service.status", json!({ "name": "s150" }))
        .unwrap();
    spore
        .call("service.restart", json!({ "name": "s150", "wait": false }))
        .unwrap();
    spore.wait_for("s150 restarted", Duration::from_secs(20), |s| {
        let now = s.call("service.status", json!({ "name": "s150" })).unwrap();
        now["state"] == "ready" && now["pid"] != old["pid"]
    });
    let pid = spore
        .call("service.status", json!({ "name": "s150" }))
        .unwrap()["pid"]
        .as_i64()
        .unwrap();
    assert_eq!(parent_of(pid), i64::from(spore.pid()));
    assert!(spore.terminate().success());
    let start = std::time::Instant::now();
    while spawners
        .iter()
        .any(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok())
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the spawner outlived spore"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes whose command line holds `marker`.
fn running(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(marker))
        .collect()
}

#[test]
fn a_stopped_spawner_never_starts_a_second_copy_spore_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("etc/services");
    std::fs::create_dir_all(&services).unwrap();
    let marker = format!("spore-dup-{}", std::process::id());
    std::fs::write(
        services.join("first.toml"),
        "[service]\nname = \"first\"\nexec = \"sleep 1000\"\n",
    )
    .unwrap();
    std::fs::write(
        services.join("twin.toml"),
        format!("[service]\nname = \"twin\"\nexec = [\"sh\", \"-c\", \"sleep 1000; : {marker}\"]\nstatus = \"stop\"\n"),
    )
    .unwrap();
    let console = std::fs::File::create(dir.path().join("spore.err")).unwrap();
    let spore = Spore::start_with_env(
        dir,
        std::process::Stdio::from(console),
        &[("SPORE_SPAWNER", "always")],
    );
    spore.wait_state("first", "ready");
    let spawner = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", spore.pid()))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse::<i32>().unwrap())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .starts_with(b"spore-spawner\0")
        })
        .expect("spore runs a spawner");
    common::signal(spawner, libc::SIGSTOP);
    // spore waits 2 s for the stopped spawner, gives up and starts it.
    spore
        .call("service.start", json!({ "name": "twin" }))
        .unwrap();
    spore.wait_state("twin", "ready");
    std::thread::sleep(Duration::from_millis(500));
    // Was: the spawner, let go after 2 s, started the queued request too.
    let _ = unsafe { libc::kill(spawner, libc::SIGCONT) };
    std::thread::sleep(Duration::from_secs(1));
    let copies = running(&marker);
    assert_eq!(copies.len(), 1, "{copies:?}\n{}", spore.stderr());
    assert!(spore
        .stderr()
        .contains("the spawner failed (no answer in time)"));
    spore
        .call("service.stop", json!({ "name": "twin" }))
        .unwrap();
    spore.wait_state("twin", "stopped");
    std::thread::sleep(Duration::from_millis(300));
    assert!(running(&marker).is_empty(), "nothing of it survives stop");
}
