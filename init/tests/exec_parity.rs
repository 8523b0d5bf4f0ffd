//! `spore exec` at parity with tini and dumb-init: a real pseudo-terminal
//! (openpty) with spore as its session's foreground, real shells typing
//! Ctrl-C and Ctrl-Z, job-control and synchronous signals sent with kill(2),
//! `-g` cleanup, the inherited signal mask and the working directory; as
//! PID 1 of a PID namespace and not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pty::OnPty;
use common::{child_of, signal as kill, spore_bin, wait_for_file};

/// Ends a spore (and the group of its child) left running by a failed test.
struct Cleanup(i32);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.0))
            .ok()
            .and_then(|c| {
                c.split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<i32>().ok())
            })
        {
            // SAFETY: kill(2) with plain integers.
            unsafe { libc::kill(-child, libc::SIGKILL) };
        }
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// The single-letter state of `pid` (R, S, T, Z…), None once it is gone.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn wait_state(pid: i32, wanted: &[char], what: &str) {
    let start = Instant::now();
    loop {
        let now = state(pid);
        if now.is_some_and(|s| wanted.contains(&s)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: pid {pid} is {now:?}, wanted one of {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// spore's pid: the process itself, or unshare's child in a namespace.
fn spore_pid(outer: &Child, namespace: bool) -> i32 {
    if namespace {
        child_of(outer.id() as i32)
    } else {
        outer.id() as i32
    }
}

/// `spore exec ARGS…`, directly or as PID 1 of a new PID namespace.
fn spore_exec(namespace: bool, args: &[&str]) -> Command {
    if !namespace {
        let mut command = Command::new(spore_bin());
        command.arg("exec").args(args);
        return command;
    }
    let mut command = Command::new("unshare");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--pid", "--fork", "--mount-proc", spore_bin(), "exec"])
        .args(args);
    command
}

#[test]
fn a_shell_under_a_terminal_reads_a_typed_line() {
    let mut pty = OnPty::spawn(&mut spore_exec(
        false,
        &["--", "sh", "-c", "read x; echo got-$x"],
    ));
    pty.type_in("hello\n");
    pty.wait_for("got-hello");
    assert_eq!(pty.wait_exit().code(), Some(0));
}

#[test]
fn ctrl_c_at_the_terminal_ends_the_child_with_130() {
    let mut pty = OnPty::spawn(&mut spore_exec(
        false,
        &["--", "sh", "-c", "echo waiting; read x; echo read-$x"],
    ));
    pty.wait_for("waiting");
    pty.type_in("\x03");
    assert_eq!(pty.wait_exit().code(), Some(130), "{}", pty.shown());
}

#[test]
fn ctrl_z_stops_the_job_and_fg_resumes_it_in_an_interactive_shell() {
    let mut bash = Command::new("bash");
    bash.args(["--norc", "--noprofile", "-i"])
        .env("PS1", "prompt$ ")
        .env("TERM", "dumb");
    let mut pty = OnPty::spawn(&mut bash);
    pty.wait_for("prompt$ ");
    pty.type_in(&format!(
        "{} exec -- sh -c 'echo ready-$((40+2)); read x; echo got-$x'\n",
        spore_bin()
    ));
    // "ready-42" only appears once the child runs (the echoed command line
    // shows the sum unevaluated).
    pty.wait_for("ready-42");
    pty.type_in("\x1a");
    pty.wait_for("Stopped");
    pty.type_in("fg\n");
    // bash prints the job's command line when it resumes it.
    std::thread::sleep(Duration::from_millis(300));
    pty.type_in("hello\n");
    pty.wait_for("got-hello");
    pty.type_in("exit\n");
    pty.wait_exit();
}

/// SIGTSTP sent to spore stops the child and spore (not as PID 1: there a
/// stopped init would help nobody); SIGCONT resumes both.
fn stop_and_continue(namespace: bool) {
    let dir = tempfile::tempdir().unwrap();
    let ticks = dir.path().join("ticks");
    let script = format!(
        "while :; do echo tick >> {}; sleep 0.05; done",
        ticks.display()
    );
    let mut outer = spore_exec(namespace, &["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let spore = spore_pid(&outer, namespace);
    let _cleanup = Cleanup(spore);
    let shell = child_of(spore);
    wait_for_file(&ticks, "tick");
    kill(spore, libc::SIGTSTP);
    wait_state(shell, &['T'], "the child after SIGTSTP");
    if namespace {
        std::thread::sleep(Duration::from_millis(200));
        assert_ne!(state(spore), Some('T'), "PID 1 stopped itself");
    } else {
        wait_state(spore, &['T'], "spore after forwarding SIGTSTP");
    }
    let before = std::fs::read_to_string(&ticks).unwrap().len();
    kill(spore, libc::SIGCONT);
    wait_state(shell, &['S', 'R'], "the child after SIGCONT");
    wait_state(spore, &['S', 'R'], "spore after SIGCONT");
    let start = Instant::now();
    while std::fs::read_to_string(&ticks).unwrap().len() == before {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no tick after SIGCONT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // It stays running: the child's own stop report does not stop spore again.
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(state(spore), Some('T'), "spore stopped again after SIGCONT");
    kill(spore, libc::SIGTERM);
    assert_eq!(outer.wait().unwrap().code(), Some(128 + libc::SIGTERM));
}

#[test]
fn sigtstp_stops_the_child_and_spore_and_sigcont_resumes_both() {
    stop_and_continue(false);
}

#[test]
fn sigtstp_to_pid_1_stops_the_child_only() {
    stop_and_continue(true);
}

/// Each synchronous signal sent with kill(2) reaches the child; spore lives.
fn synchronous_signals_are_forwarded(namespace: bool) {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let names = ["ILL", "TRAP", "ABRT", "FPE", "SYS", "BUS", "SEGV"];
    let traps: String = names
        .iter()
        .map(|n| format!("trap 'echo {n} >> {s}' {n}; ", s = seen.display()))
        .collect();
    let script = format!(
        "{traps} echo ready >> {s}; while :; do sleep 0.05; done",
        s = seen.display()
    );
    let mut outer = spore_exec(namespace, &["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let spore = spore_pid(&outer, namespace);
    let _cleanup = Cleanup(spore);
    wait_for_file(&seen, "ready");
    let numbers = [
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGABRT,
        libc::SIGFPE,
        libc::SIGSYS,
        libc::SIGBUS,
        libc::SIGSEGV,
    ];
    for (name, number) in names.iter().zip(numbers) {
        kill(spore, number);
        wait_for_file(&seen, name);
        assert!(
            outer.try_wait().unwrap().is_none(),
            "spore died of SIG{name} sent with kill"
        );
    }
    // Twice, too: the handler stays.
    kill(spore, libc::SIGSEGV);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        outer.try_wait().unwrap().is_none(),
        "a second SIGSEGV killed spore"
    );
    kill(spore, libc::SIGTERM);
    assert_eq!(outer.wait().unwrap().code(), Some(128 + libc::SIGTERM));
}

#[test]
fn synchronous_signals_from_kill_are_forwarded() {
    synchronous_signals_are_forwarded(false);
}

#[test]
fn synchronous_signals_from_kill_are_forwarded_by_pid_1() {
    synchronous_signals_are_forwarded(true);
}

#[test]
fn group_flag_terminates_the_rest_of_the_group_when_the_child_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("sleep 1000 & echo $! > {}; exit 3", pidfile.display());
    let status = spore_exec(false, &["-g", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    let sleeper: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Gone, or a zombie waiting for the host's init: not running.
    let start = Instant::now();
    while matches!(state(sleeper), Some(s) if s != 'Z') {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the group's sleep {sleeper} still runs after the child exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_child_gets_the_signal_mask_spore_was_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mask");
    // grep itself, not through sh: dash clears the mask of what it runs.
    let mut command = spore_exec(false, &["--", "grep", "SigBlk", "/proc/self/status"]);
    command.stdout(std::fs::File::create(&out).unwrap());
    // SAFETY: sigprocmask between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    assert!(command.stdin(Stdio::null()).status().unwrap().success());
    let line = std::fs::read_to_string(&out).unwrap();
    let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(
        mask,
        1 << (libc::SIGUSR1 - 1),
        "exactly SIGUSR1 stays blocked: {line}"
    );
}

#[test]
fn spore_keeps_no_directory_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spore_exec(false, &["--", "sleep", "30"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let spore = child.id() as i32;
    let sleeper = child_of(spore);
    let start = Instant::now();
    loop {
        let cwd = std::fs::read_link(format!("/proc/{spore}/cwd")).unwrap();
        if cwd == Path::new("/") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "spore stays in {}",
            cwd.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(sleeper, libc::SIGKILL);
    assert_eq!(child.wait().unwrap().code(), Some(128 + libc::SIGKILL));
}

/// The SigIgn mask of what `spore exec` runs, started with `ignored` left
/// ignored by its caller.
fn ignored_in_child(ignored: &'static [i32]) -> u64 {
    // cat installs no handler of its own (GNU grep catches SIGSEGV).
    let mut command = spore_exec(false, &["--", "cat", "/proc/self/status"]);
    // SAFETY: signal(2) only, between fork and exec.
    unsafe {
        command.pre_exec(move || {
            for &signal in ignored {
                libc::signal(signal, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("SigIgn:")).unwrap();
    let mask = line.split_whitespace().nth(1).unwrap();
    u64::from_str_radix(mask, 16).unwrap()
}

#[test]
fn signals_the_caller_left_ignored_stay_ignored_in_the_child() {
    // As tini: nohup's SIGHUP, a shell's `trap '' PIPE`, and the
    // synchronous ones spore itself handles (exec would reset those).
    let wanted = [
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGUSR1,
    ];
    let mask = ignored_in_child(&[
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGUSR1,
    ]);
    for signal in wanted {
        assert_ne!(
            mask & (1 << (signal - 1)),
            0,
            "signal {signal} not ignored: {mask:x}"
        );
    }
    // And nothing the caller did not ignore.
    let clean = ignored_in_child(&[]);
    assert_eq!(clean & (1 << (libc::SIGPIPE - 1)), 0, "{clean:x}");
    assert_eq!(clean & (1 << (libc::SIGSEGV - 1)), 0, "{clean:x}");
}

#[test]
fn with_g_a_stop_signal_stops_the_group_even_when_the_child_catches_it() {
    let mut outer = spore_exec(
        false,
        &[
            "-g",
            "--",
            "sh",
            "-c",
            "trap 'echo caught' TSTP TTIN TTOU; while :; do sleep 0.05; done",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let spore = outer.id() as i32;
    let _cleanup = Cleanup(spore);
    let shell = child_of(spore);
    std::thread::sleep(Duration::from_millis(200));
    for stop in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        kill(spore, stop);
        // Was: the shell caught it and ran on while spore stopped.
        wait_state(shell, &['T'], "the child that catches the stop signal");
        wait_state(spore, &['T'], "spore");
        kill(spore, libc::SIGCONT);
        wait_state(shell, &['S', 'R'], "the child after SIGCONT");
        wait_state(spore, &['S', 'R'], "spore after SIGCONT");
    }
    kill(spore, libc::SIGTERM);
    assert_eq!(outer.wait().unwrap().code(), Some(128 + libc::SIGTERM));
}
