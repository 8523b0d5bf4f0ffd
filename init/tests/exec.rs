//! `spore exec` as PID 1 of a fresh PID namespace (`unshare --pid --fork
//! --mount-proc`), the way a container runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::{Command, Stdio};

use common::{child_of, signal as kill, spore_bin, wait_for_file};

/// `unshare … spore exec [extra] -- args…`; unprivileged users get a user
/// namespace too.
fn in_namespace(extra: &[&str], args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--pid", "--fork", "--mount-proc", spore_bin(), "exec"])
        .args(extra)
        .arg("--")
        .args(args)
        .stdin(Stdio::null());
    command
}

#[test]
fn every_exit_code_passes_through() {
    for code in 0..=255 {
        let status = in_namespace(&[], &["sh", "-c", &format!("exit {code}")])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(code), "exit {code}");
    }
}

#[test]
fn death_by_signal_becomes_128_plus_n() {
    let status = in_namespace(&[], &["sh", "-c", "kill -USR1 $$"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGUSR1));
    let status = in_namespace(&[], &["sh", "-c", "kill -KILL $$"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGKILL));
}

#[test]
fn sigterm_and_sigusr1_reach_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let script = format!(
        "trap 'echo usr1 >> {s}' USR1; trap 'echo term >> {s}; exit 42' TERM; echo ready >> {s}; while :; do sleep 0.05; done",
        s = seen.display()
    );
    let mut unshare = in_namespace(&[], &["sh", "-c", &script]).spawn().unwrap();
    let spore = child_of(unshare.id() as i32);
    wait_for_file(&seen, "ready");
    kill(spore, libc::SIGUSR1);
    wait_for_file(&seen, "usr1");
    kill(spore, libc::SIGTERM);
    let status = unshare.wait().unwrap();
    assert_eq!(status.code(), Some(42));
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "ready\nusr1\nterm\n"
    );
}

#[test]
fn group_flag_signals_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let s = seen.display();
    let script = format!(
        "trap 'echo outer >> {s}' TERM; sh -c \"trap 'echo inner >> {s}; exit 0' TERM; echo up >> {s}; while :; do sleep 0.05; done\" & wait; wait; exit 5"
    );
    let mut unshare = in_namespace(&["-g"], &["sh", "-c", &script])
        .spawn()
        .unwrap();
    let spore = child_of(unshare.id() as i32);
    wait_for_file(&seen, "up");
    kill(spore, libc::SIGTERM);
    let status = unshare.wait().unwrap();
    assert_eq!(status.code(), Some(5));
    let text = std::fs::read_to_string(&seen).unwrap();
    assert!(text.contains("outer") && text.contains("inner"), "{text}");
}

#[test]
fn orphaned_sleeps_are_reaped_by_pid_1() {
    // 100 sleeps orphaned at once (their subshells exit); when they end they
    // are children of spore, PID 1 here. The script then counts zombies in
    // the namespace and exits with that number.
    let script = "i=0; while [ $i -lt 100 ]; do (sleep 0.3 &); i=$((i+1)); done; \
                  sleep 1.5; \
                  n=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l); \
                  left=$(grep -l '^Name:.*sleep' /proc/[0-9]*/status 2>/dev/null | wc -l); \
                  [ $left -eq 0 ] || exit 200; exit $n";
    let status = in_namespace(&[], &["sh", "-c", script]).status().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "zombies left in the namespace (200: sleeps still running)"
    );
}

#[test]
fn missing_command_exits_127() {
    let status = in_namespace(&[], &["/nonexistent/cmd"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(127));
}
