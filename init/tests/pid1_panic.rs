//! PID 1 survives a panic in any step of the boot, from the first mount on:
//! it logs it and falls back to reaping, because PID 1 exiting would panic
//! the kernel. Runs spore as PID 1 of a fresh PID, mount and UTS namespace
//! with a fault injected (`SPORE_FAULT`, debug builds only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::spore_bin;

#[test]
fn panic_in_the_early_mounts_leaves_pid_1_reaping() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let mut command = Command::new("unshare");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        command.args(["--user", "--map-root-user"]);
    }
    let mut unshare = command
        .args(["--pid", "--fork", "--mount", "--uts", "--mount-proc"])
        .arg(spore_bin())
        .env("SPORE_FAULT", "early-mounts")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("PID 1 keeps reaping") {
            break text;
        }
        if let Some(status) = unshare.try_wait().unwrap() {
            panic!("PID 1 exited ({status}) after the injected panic:\n{text}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no fallback to reaping:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        text.contains("fault injected at early-mounts"),
        "the panic's message is logged:\n{text}"
    );
    // Still alive a second later: PID 1 did not exit.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        unshare.try_wait().unwrap().is_none(),
        "PID 1 exited:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Killing PID 1 of the namespace ends the namespace, and unshare.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
    let spore: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    common::signal(spore, libc::SIGKILL);
    unshare.wait().unwrap();
}

/// A panic on a helper thread of a supervising spore (here the clock's)
/// stops that thread only: spore says so, and goes on supervising and
/// answering.
#[test]
fn panic_on_a_helper_thread_stops_that_thread_only() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("services")).unwrap();
    // A server nobody answers on: the clock's thread starts, and panics.
    std::fs::write(
        etc.join("spore.toml"),
        "[time]\nservers = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("services/web.toml"),
        "[service]\nname = \"web\"\nexec = \"sleep 3600\"\n",
    )
    .unwrap();
    let console = std::fs::File::create(dir.path().join("spore.err")).unwrap();
    let spore =
        common::Spore::start_with_env(dir, Stdio::from(console), &[("SPORE_FAULT", "time")]);
    spore.wait_for("the panic's lines", Duration::from_secs(20), |s| {
        s.stderr().contains("thread spore-time stops here")
    });
    let log = spore.stderr();
    assert!(
        log.contains("internal error in thread spore-time: ")
            && log.contains("fault injected at time"),
        "{log}"
    );
    spore.wait_state("web", "ready");
    let listed = spore.call("service.list", serde_json::json!({})).unwrap();
    assert!(listed.to_string().contains("\"web\""), "{listed}");
    assert!(common::alive(spore.pid()));
}

/// A panic on the supervising thread of `spore run` (not PID 1) ends it
/// with status 101 and the reason on its console, as an unwound panic
/// did, in the release build too (which cannot unwind).
#[test]
fn panic_in_spore_run_ends_it_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    let output = Command::new(spore_bin())
        .args(["run", "--config-dir"])
        .arg(dir.path().join("etc"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("SPORE_FAULT", "spore.toml")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(101), "{log}");
    assert!(
        log.contains("internal error in thread main: ")
            && log.contains("fault injected at spore.toml")
            && log.contains("spore panicked; exiting"),
        "{log}"
    );
}
