//! `spore run` supervising real processes: readiness order, reaping,
//! backoff, stopping, shutdown order, bad files, idleness.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{alive, read_time, zombies_of, Spore};
use serde_json::{json, Value};

/// A free TCP port on loopback (bound and released at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn call_home_starts_only_after_mycelium_health_check_passes() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    let ready = dir.path().join("mycelium-ready");
    let called = dir.path().join("call-home-ran");
    let script =
        common::mycelium_standin(port, 1.0, &ready, "415:6e6d:c26c:5c97:2ed6:4726:fc4:27e4");
    let services = [
        (
            "mycelium",
            format!(
                "[service]\nname = \"mycelium\"\nexec = [\"python3\", \"{script}\"]\n\n[health]\ntype = \"http\"\ntarget = \"http://127.0.0.1:{port}/api/v1/admin\"\ninterval_ms = 10000\ntimeout_ms = 1000\n"
            ),
        ),
        (
            "call-home",
            format!(
                "[service]\nname = \"call-home\"\nexec = \"/bin/sh -c 'date +%s.%N > {}'\"\noneshot = true\n\n[dependencies]\nrequires = [\"mycelium\"]\n",
                called.display()
            ),
        ),
    ];
    for (name, text) in &services {
        std::fs::write(dir.path().join(format!("etc/services/{name}.toml")), text).unwrap();
    }
    let spore = Spore::start_in(dir);
    assert_eq!(
        spore.state("mycelium"),
        "running",
        "health check not passed yet"
    );
    assert_eq!(spore.state("call-home"), "blocked");
    spore.wait_state("call-home", "succeeded");
    assert_eq!(spore.state("mycelium"), "ready");
    let served_at = read_time(&ready);
    let called_at = read_time(&called);
    assert!(
        called_at > served_at,
        "call-home ran at {called_at}, before mycelium served its API at {served_at}"
    );
}

#[test]
fn service_forking_a_thousand_children_leaves_no_zombie() {
    let spore = Spore::start(&[(
        "forker",
        "[service]\nname = \"forker\"\nexec = \"/bin/sh -c 'i=0; while [ $i -lt 1000 ]; do sleep 1 & i=$((i+1)); done; exit 0'\"\noneshot = true\n"
            .to_string(),
    )]);
    spore.wait_state("forker", "succeeded");
    // The sleeps now belong to spore (the subreaper); once they end it must
    // reap every one.
    let pid = spore.pid();
    spore.wait_for(
        "the orphaned sleeps to end",
        Duration::from_secs(30),
        |_| common::service_children(pid).is_empty(),
    );
    assert_eq!(zombies_of(pid), Vec::<i32>::new());
}

/// The delays spore announced for `name`, in order, from its log.
fn announced_delays(log: &str, name: &str) -> Vec<u64> {
    let prefix = format!("spore: {name}: backoff: restart in ");
    log.lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn crashing_service_backs_off_doubling_to_the_cap_and_resets_when_stable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    let starts = dir.path().join("starts");
    let stable = dir.path().join("stable");
    // Exits 1 at once, or after 1.5 s (past the stability period) once the
    // `stable` file exists.
    let text = format!(
        "[service]\nname = \"crash\"\nexec = \"/bin/sh -c 'date +%s.%N >> {starts}; if [ -e {stable} ]; then rm {stable}; sleep 1.5; fi; exit 1'\"\n\n[lifecycle]\nrestart = \"on_failure\"\nrestart_delay_ms = 100\nrestart_delay_max_ms = 400\nmax_restarts = 0\nstability_period_ms = 1000\n",
        starts = starts.display(),
        stable = stable.display()
    );
    std::fs::write(dir.path().join("etc/services/crash.toml"), text).unwrap();
    let spore = Spore::start_in(dir);
    spore.wait_for("five restarts", Duration::from_secs(20), |s| {
        announced_delays(&s.stderr(), "crash").len() >= 5
    });
    std::fs::write(&stable, "").unwrap();
    spore.wait_for(
        "a stable run and a crash after it",
        Duration::from_secs(20),
        |s| {
            announced_delays(&s.stderr(), "crash").contains(&100) && !s.path("stable").exists() && {
                let delays = announced_delays(&s.stderr(), "crash");
                delays.iter().skip(1).any(|d| *d == 100)
            }
        },
    );
    let delays = announced_delays(&spore.stderr(), "crash");
    // 100, 200, 400 (cap), 400 …, then 100 again after the 1.5 s run.
    assert_eq!(&delays[..5], &[100, 200, 400, 400, 400], "{delays:?}");
    let reset = delays.iter().skip(1).position(|d| *d == 100).unwrap() + 1;
    assert!(delays[1..reset].iter().all(|d| *d >= 200), "{delays:?}");
    // The real gaps between starts are at least the announced delays.
    let times: Vec<f64> = std::fs::read_to_string(spore.path("starts"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    for (i, expected) in [0.1, 0.2, 0.4, 0.4].iter().enumerate() {
        let gap = times[i + 1] - times[i];
        assert!(
            gap >= *expected,
            "start {} came {gap:.3}s after the one before, expected ≥ {expected}",
            i + 1
        );
    }
}

#[test]
fn service_ignoring_sigterm_is_killed_with_its_children_after_the_stop_timeout() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    let pids = dir.path().join("pids");
    let text = format!(
        "[service]\nname = \"stubborn\"\nexec = \"/bin/sh -c 'trap \\\"\\\" TERM; sleep 100 & echo $! >> {p}; sleep 100 & echo $! >> {p}; echo $$ >> {p}; wait'\"\n\n[lifecycle]\nstop_timeout_ms = 2000\n",
        p = pids.display()
    );
    std::fs::write(dir.path().join("etc/services/stubborn.toml"), text).unwrap();
    let spore = Spore::start_in(dir);
    spore.wait_for("three pids", Duration::from_secs(10), |s| {
        std::fs::read_to_string(s.path("pids"))
            .unwrap_or_default()
            .lines()
            .count()
            == 3
    });
    let group: Vec<i32> = std::fs::read_to_string(spore.path("pids"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let asked = Instant::now();
    spore
        .call("service.stop", json!({ "name": "stubborn" }))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        group.iter().all(|p| alive(*p)),
        "SIGTERM is ignored, so all still run"
    );
    assert_eq!(spore.state("stubborn"), "stopping");
    spore.wait_state("stubborn", "stopped");
    assert!(
        asked.elapsed() >= Duration::from_millis(2000),
        "killed before the stop timeout"
    );
    spore.wait_for("the group to be reaped", Duration::from_secs(5), |_| {
        group.iter().all(|p| !alive(*p))
    });
    assert!(spore.stderr().contains("stubborn: stopped"));
}

#[test]
fn service_exiting_on_sigterm_is_not_waited_for() {
    let spore = Spore::start(&[(
        "polite",
        "[service]\nname = \"polite\"\nexec = \"sleep 100\"\n\n[lifecycle]\nstop_timeout_ms = 20000\n".to_string(),
    )]);
    spore.wait_state("polite", "ready");
    let asked = Instant::now();
    spore
        .call("service.stop", json!({ "name": "polite" }))
        .unwrap();
    spore.wait_state("polite", "stopped");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?}: spore waited for the stop timeout instead of the exit",
        asked.elapsed()
    );
}

#[test]
fn shutdown_stops_services_in_reverse_start_order_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    let order = dir.path().join("order");
    // Each service is ready once its start line is written, so the order in
    // the file is the order spore started them in, not a race between shells.
    let daemon = |name: &str, deps: &str| {
        format!(
            "[service]\nname = \"{name}\"\nexec = \"/bin/sh -c 'echo start-{name} >> {o}; trap \\\"echo stop-{name} >> {o}; exit 0\\\" TERM; while :; do sleep 0.05; done'\"\n\n[health]\ntype = \"exec\"\ntarget = \"grep -qx start-{name} {o}\"\n\n[dependencies]\n{deps}\n",
            o = order.display()
        )
    };
    for (name, deps) in [
        ("a", ""),
        ("b", "requires = [\"a\"]"),
        ("c", "after = [\"b\"]"),
    ] {
        std::fs::write(
            dir.path().join(format!("etc/services/{name}.toml")),
            daemon(name, deps),
        )
        .unwrap();
    }
    let mut spore = Spore::start_in(dir);
    spore.wait_for("three starts", Duration::from_secs(10), |s| {
        std::fs::read_to_string(s.path("order"))
            .unwrap_or_default()
            .lines()
            .count()
            == 3
    });
    let status = spore.terminate();
    assert!(status.success(), "{status:?}");
    // Outside PID 1 a shutdown is spore's own exit, and says so.
    assert!(
        spore
            .stderr()
            .contains("spore: shutting down: services stop in order, then spore exits"),
        "{}",
        spore.stderr()
    );
    let lines: Vec<String> = std::fs::read_to_string(spore.path("order"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        ["start-a", "start-b", "start-c", "stop-c", "stop-b", "stop-a"]
    );
    assert!(
        !spore.socket.exists(),
        "the control socket is removed on exit"
    );
}

#[test]
fn malformed_file_is_rejected_alone_and_logged_with_its_line() {
    let spore = Spore::start(&[
        ("good", "[service]\nname = \"good\"\nexec = \"sleep 100\"\n".to_string()),
        ("also-good", "[service]\nname = \"also-good\"\nexec = \"sleep 100\"\n".to_string()),
        ("broken", "[service]\nname = \"broken\"\nexec = \"sleep 100\"\n\n[lifecycle]\nrestart = \"sometimes\"\n".to_string()),
    ]);
    spore.wait_state("good", "ready");
    spore.wait_state("also-good", "ready");
    let log = spore.stderr();
    assert!(
        log.contains("broken.toml:6:11: unknown restart `sometimes`"),
        "{log}"
    );
    let error = spore
        .call("service.status", json!({ "name": "broken" }))
        .unwrap_err();
    assert_eq!(error["code"], -32004);
    let info = spore.call("node.info", json!({})).unwrap();
    assert_eq!(info["service_file_errors"], 1);
}

#[test]
fn control_socket_starts_stops_and_shows_logs() {
    let spore = Spore::start(&[(
        "talker",
        "[service]\nname = \"talker\"\nexec = \"/bin/sh -c 'echo hello; echo oops >&2; exec sleep 100'\"\nstatus = \"stop\"\n".to_string(),
    )]);
    assert_eq!(spore.state("talker"), "inactive");
    let started = spore
        .call("service.start", json!({ "name": "talker" }))
        .unwrap();
    assert_eq!(started["name"], "talker");
    let output_lines = |logs: &Value| {
        logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["stream"] != "spore")
            .count()
    };
    spore.wait_for("both lines", Duration::from_secs(10), |s| {
        let logs = s.call("service.logs", json!({ "name": "talker" })).unwrap();
        output_lines(&logs) == 2
    });
    let logs = spore
        .call("service.logs", json!({ "name": "talker", "lines": 10 }))
        .unwrap();
    let mut texts: Vec<(String, String)> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_owned(),
                l["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    texts.sort();
    // Its output, and between the lines spore's own markers of what
    // happened to it.
    let (markers, output): (Vec<_>, Vec<_>) = texts.into_iter().partition(|(s, _)| s == "spore");
    assert_eq!(
        output,
        [
            ("stderr".into(), "oops".into()),
            ("stdout".into(), "hello".into())
        ]
    );
    assert!(
        markers.iter().any(|(_, t)| t == "starting")
            && markers.iter().any(|(_, t)| t.starts_with("ready (pid ")),
        "{markers:?}"
    );
    // The command-line client speaks the same socket.
    let out = std::process::Command::new(common::spore_bin())
        .args(["--socket", spore.socket.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("talker") && l.contains("ready")),
        "{table}"
    );
    let out = std::process::Command::new(common::spore_bin())
        .args(["--socket", spore.socket.to_str().unwrap(), "stop", "talker"])
        .output()
        .unwrap();
    assert!(out.status.success());
    spore.wait_state("talker", "stopped");
    let missing = spore
        .call("service.start", json!({ "name": "nope" }))
        .unwrap_err();
    assert_eq!(missing["code"], -32004);
    let unknown = spore.call("service.frobnicate", json!({})).unwrap_err();
    assert_eq!(unknown["code"], -32601);
    let bad = spore.call("service.start", json!({})).unwrap_err();
    assert_eq!(bad["code"], -32602);
}

#[test]
fn missing_program_is_reported_as_exit_127() {
    let spore = Spore::start(&[(
        "ghost",
        "[service]\nname = \"ghost\"\nexec = \"/nonexistent/program\"\n\n[lifecycle]\nrestart = \"never\"\n".to_string(),
    )]);
    spore.wait_state("ghost", "exited");
    let status = spore
        .call("service.status", json!({ "name": "ghost" }))
        .unwrap();
    assert_eq!(status["last_exit_code"], 127);
    assert!(status["last_error"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/program"));
}

/// Voluntary context switches of the threads of `pid` over `span`: each
/// is a wake-up. A thread that ends meanwhile is left out, one that starts
/// counts whole.
fn wakeups(pid: i32, span: Duration) -> u64 {
    let switches = || -> std::collections::HashMap<String, u64> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .map(|task| {
                let status =
                    std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
                let count = status
                    .lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .map_or(0, |n| n.trim().parse::<u64>().unwrap());
                (task.file_name().to_string_lossy().into_owned(), count)
            })
            .collect()
    };
    let before = switches();
    std::thread::sleep(span);
    switches()
        .iter()
        .map(|(tid, after)| after.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// Waits until spore's start-up work off the loop is over: the hash of
/// its own binary (`build_id`), which a debug build on a loaded machine
/// takes seconds over.
fn settled(spore: &Spore) {
    spore.wait_for("the build id", Duration::from_secs(60), |s| {
        s.call("node.info", json!({})).unwrap()["boot"]["build_id"].is_string()
    });
}

#[test]
fn idle_node_without_health_checks_makes_no_wakeups() {
    let spore = Spore::start(&[
        (
            "one",
            "[service]\nname = \"one\"\nexec = \"sleep 1000\"\n".to_string(),
        ),
        (
            "two",
            "[service]\nname = \"two\"\nexec = \"sleep 1000\"\n[dependencies]\nafter = [\"one\"]\n"
                .to_string(),
        ),
    ]);
    spore.wait_state("two", "ready");
    settled(&spore);
    std::thread::sleep(Duration::from_millis(500));
    let woke = wakeups(spore.pid(), Duration::from_secs(10));
    assert_eq!(woke, 0, "spore woke up {woke} times in 10 s while idle");
}

/// Work done off the event loop (a deploy's file write, a service's
/// secrets) leaves no thread behind that wakes up: smol's blocking pool
/// keeps its idle threads, each waking twice a second, for good.
#[test]
fn an_idle_node_after_a_deploy_and_a_secret_makes_no_wakeups() {
    let spore = Spore::start(&[(
        "one",
        "[service]\nname = \"one\"\nexec = \"sleep 1000\"\n".to_string(),
    )]);
    spore.wait_state("one", "ready");
    spore
        .call("secret.set", json!({ "name": "token", "value": "s3cret" }))
        .unwrap();
    spore
        .call(
            "service.deploy",
            json!({
                "toml": "[service]\nname = \"two\"\nexec = \"sleep 1000\"\n[secrets]\nTOKEN = \"token\"\n",
                "start": true,
                "wait": true,
            }),
        )
        .unwrap();
    spore.wait_state("two", "ready");
    settled(&spore);
    std::thread::sleep(Duration::from_millis(1500));
    let woke = wakeups(spore.pid(), Duration::from_secs(5));
    assert_eq!(woke, 0, "spore woke up {woke} times in 5 s while idle");
}

#[test]
fn leftovers_of_a_crashed_write_are_removed_and_odd_entries_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("etc/services");
    let secrets = dir.path().join("state/secrets");
    std::fs::create_dir_all(&services).unwrap();
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        services.join("ok.toml"),
        "[service]\nname = \"ok\"\nexec = \"sleep 1000\"\n",
    )
    .unwrap();
    // What a deploy and a secret.set killed mid-write leave behind.
    std::fs::write(services.join(".web.toml.tmp-1"), "[service]\nname = \"w").unwrap();
    std::fs::write(secrets.join(".db-password.tmp-1-0"), "half").unwrap();
    let fifo = services.join("fifo.toml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let spore = Spore::start_in(dir);
    spore.wait_state("ok", "ready");
    assert!(!spore.path("etc/services/.web.toml.tmp-1").exists());
    assert!(!spore.path("state/secrets/.db-password.tmp-1-0").exists());
    spore.wait_for("the log lines", Duration::from_secs(5), |s| {
        let log = s.stderr();
        log.contains("removed 1 temporary file(s) a crash left in")
            && log.contains("fifo.toml")
            && log.contains("a FIFO, not a regular file")
    });
}

#[test]
fn a_state_dir_exists_0700_before_the_first_start_and_is_kept_so() {
    use std::os::unix::fs::PermissionsExt;
    let place = tempfile::tempdir().unwrap();
    let state = place.path().join("var/lib/keeper");
    let seen = place.path().join("seen");
    // The daemon writes into its state directory at once, as mycelium
    // writes its key file without making the directory.
    let service = format!(
        "[service]\nname = \"keeper\"\nexec = \"/bin/sh -c 'stat -c %a {state} > {seen} && echo key > {state}/key && exec sleep 1000'\"\nstate_dir = \"{state}\"\n",
        state = state.display(),
        seen = seen.display()
    );
    let spore = Spore::start(&[("keeper", service)]);
    spore.wait_state("keeper", "ready");
    // The shell writes what it saw, then the key: wait for both.
    spore.wait_for(
        "the service to look and write",
        Duration::from_secs(10),
        |_| {
            std::fs::read_to_string(&seen).is_ok_and(|t| !t.is_empty())
                && state.join("key").exists()
        },
    );
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), "700");
    // Loosened by hand, it is 0700 again at the next start.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    spore
        .call("service.restart", json!({ "name": "keeper" }))
        .unwrap();
    spore.wait_for("the restart to look again", Duration::from_secs(10), |_| {
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777 == 0o700
    });
}

#[test]
fn sighup_reloads_added_changed_and_removed_files_and_a_broken_one_changes_nothing() {
    let service = |name: &str, seconds: u32| {
        format!("[service]\nname = \"{name}\"\nexec = \"sleep {seconds}\"\n")
    };
    let mut spore = Spore::start(&[
        ("kept", service("kept", 1000)),
        ("edited", service("edited", 1000)),
        ("broken", service("broken", 1000)),
        ("dropped", service("dropped", 1000)),
    ]);
    for name in ["kept", "edited", "broken", "dropped"] {
        spore.wait_state(name, "ready");
    }
    let pid = |s: &Spore, name: &str| {
        s.call("service.status", json!({ "name": name })).unwrap()["pid"]
            .as_i64()
            .unwrap_or(0)
    };
    let (kept_pid, broken_pid) = (pid(&spore, "kept"), pid(&spore, "broken"));
    let dir = spore.path("etc/services");
    std::fs::write(dir.join("edited.toml"), service("edited", 999)).unwrap();
    std::fs::write(
        dir.join("broken.toml"),
        "[service]\nname = \"broken\"\nexec = \n",
    )
    .unwrap();
    std::fs::remove_file(dir.join("dropped.toml")).unwrap();
    std::fs::write(dir.join("fresh.toml"), service("fresh", 1000)).unwrap();
    common::signal(spore.pid(), libc::SIGHUP);
    spore.wait_for("the new service to start", Duration::from_secs(10), |s| {
        s.call("service.status", json!({ "name": "fresh" }))
            .is_ok_and(|v| v["state"] == "ready")
    });
    spore.wait_for(
        "the edited service to run its new command",
        Duration::from_secs(10),
        |s| {
            s.call("service.status", json!({ "name": "edited" }))
                .unwrap()["argv"]
                == json!(["sleep", "999"])
                && s.state("edited") == "ready"
        },
    );
    spore.wait_for("the dropped service to go", Duration::from_secs(10), |s| {
        s.call("service.status", json!({ "name": "dropped" }))
            .is_err()
    });
    assert_eq!(
        pid(&spore, "kept"),
        kept_pid,
        "an unchanged file changes nothing"
    );
    assert_eq!(
        pid(&spore, "broken"),
        broken_pid,
        "a broken file keeps its service running"
    );
    let log = spore.stderr();
    assert!(
        log.contains("reload: 1 added, 1 changed, 1 removed, 1 rejected"),
        "{log}"
    );
    assert!(log.contains("broken.toml"), "{log}");
    // And again over the control socket, with nothing to do.
    let answer = spore.call("node.reload", json!({})).unwrap();
    assert_eq!(answer["added"], json!([]), "{answer}");
    assert_eq!(answer["removed"], json!([]), "{answer}");
    spore.terminate();
}

/// `spore logs ARGS` on the node's control socket.
fn local_logs(spore: &Spore, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::spore_bin())
        .args(["--socket", spore.socket.to_str().unwrap(), "logs"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn output_is_kept_on_the_state_directory_and_read_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    std::fs::write(
        dir.path().join("etc/services/talker.toml"),
        "[service]\nname = \"talker\"\nexec = \"/bin/sh -c 'echo said before the restart; exec sleep 1000'\"\n",
    )
    .unwrap();
    let mut spore = Spore::start_in(dir);
    spore.wait_for("the line", Duration::from_secs(10), |s| {
        String::from_utf8_lossy(&local_logs(s, &["talker"]).stdout).contains("said before")
    });
    std::fs::write(
        spore.path("etc/services/talker.toml"),
        "[service]\nname = \"talker\"\nexec = \"/bin/sh -c 'echo said after; exec sleep 1000'\"\n",
    )
    .unwrap();
    spore.restart();
    spore.wait_for("the new line", Duration::from_secs(10), |s| {
        String::from_utf8_lossy(&local_logs(s, &["talker"]).stdout).contains("said after")
    });
    // This start's lines are this start's; the one before kept its own.
    let kept = spore.path("state/logs/1/talker.log");
    assert!(
        std::fs::read_to_string(&kept)
            .unwrap()
            .contains("stdout said before the restart"),
        "{}",
        kept.display()
    );
    let before = local_logs(&spore, &["talker", "--boot", "-1"]);
    let text = String::from_utf8_lossy(&before.stdout);
    assert!(
        before.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&before.stderr)
    );
    assert!(text.contains("stdout said before the restart"), "{text}");
    let merged =
        String::from_utf8_lossy(&local_logs(&spore, &["--boot", "-1"]).stdout).into_owned();
    assert!(
        merged.contains("[talker] stdout said before the restart"),
        "{merged}"
    );
    assert!(merged.contains("[spore] spore talker: ready"), "{merged}");
    let journal =
        String::from_utf8_lossy(&local_logs(&spore, &["spore", "-b", "-1"]).stdout).into_owned();
    assert!(
        journal.contains("shutting down: services stop in order"),
        "{journal}"
    );
    let now = String::from_utf8_lossy(&local_logs(&spore, &["talker"]).stdout).into_owned();
    assert!(!now.contains("said before the restart"), "{now}");
    // Two starts ago there was none; a name that is not one is refused.
    let none = local_logs(&spore, &["--boot", "-2"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no output is kept for 2 start(s) ago"));
    let sneaky = local_logs(&spore, &["../../etc/passwd", "--boot", "-1"]);
    assert_eq!(sneaky.status.code(), Some(1));
}
