//! The supervisor's transitions, one story per test: events in, actions and
//! states out, no processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::parse::parse_service;

const TERM: i32 = 15;

struct Harness {
    sup: Supervisor,
    now: Instant,
    /// Armed timers by deadline.
    timers: BTreeMap<TimerId, Instant>,
    /// Latest spawn number per service.
    runs: HashMap<String, u64>,
    pids: HashMap<String, i32>,
    next_pid: i32,
    /// Every action so far.
    log: Vec<Action>,
}

fn svc(text: &str) -> Service {
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("name line");
    parse_service(Path::new(&format!("{name}.toml")), text).unwrap()
}

fn daemon(name: &str, extra: &str) -> String {
    format!("[service]\nname = \"{name}\"\nexec = \"/bin/{name}\"\n{extra}")
}

fn oneshot(name: &str, extra: &str) -> String {
    format!("[service]\nname = \"{name}\"\nexec = \"/bin/{name}\"\noneshot = true\n{extra}")
}

impl Harness {
    fn new(texts: &[String]) -> Self {
        let services = texts.iter().map(|t| svc(t)).collect();
        let now = Instant::now();
        Self {
            sup: Supervisor::new(services, now),
            now,
            timers: BTreeMap::new(),
            runs: HashMap::new(),
            pids: HashMap::new(),
            next_pid: 100,
            log: Vec::new(),
        }
    }

    fn send(&mut self, event: Event) -> Vec<Action> {
        let actions = self.sup.handle(self.now, event);
        for action in &actions {
            match action {
                Action::ArmTimer { id, after } => {
                    self.timers.insert(*id, self.now + *after);
                }
                Action::CancelTimer(id) => {
                    assert!(
                        self.timers.remove(id).is_some(),
                        "cancelled unknown timer {id}"
                    );
                }
                Action::Spawn { service, run } => {
                    self.runs.insert(service.clone(), *run);
                }
                _ => {}
            }
        }
        self.log.extend(actions.iter().cloned());
        actions
    }

    fn state(&self, name: &str) -> State {
        self.sup.get(name).unwrap().state.clone()
    }

    fn spawned(&mut self, name: &str) -> Vec<Action> {
        let run = self.runs[name];
        self.next_pid += 1;
        self.pids.insert(name.into(), self.next_pid);
        self.send(Event::Spawned {
            service: name.into(),
            run,
            pid: self.next_pid,
        })
    }

    fn exit(&mut self, name: &str, status: ExitStatus) -> Vec<Action> {
        let pid = self.pids[name];
        self.send(Event::Exited {
            pid,
            status,
            group_empty: true,
        })
    }

    fn check(&mut self, name: &str, passed: bool) -> Vec<Action> {
        self.check_n(name, 0, passed)
    }

    fn check_n(&mut self, name: &str, check: usize, passed: bool) -> Vec<Action> {
        let run = self.runs[name];
        self.send(Event::CheckDone {
            service: name.into(),
            run,
            check,
            passed,
        })
    }

    /// Moves time forward by `by`, firing due timers in deadline order.
    fn advance(&mut self, by: Duration) -> Vec<Action> {
        let end = self.now + by;
        let mut out = Vec::new();
        loop {
            let due = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= end)
                .min_by_key(|(id, at)| (**at, **id))
                .map(|(id, at)| (*id, *at));
            let Some((id, at)) = due else { break };
            self.timers.remove(&id);
            self.now = self.now.max(at);
            out.extend(self.send(Event::TimerFired(id)));
        }
        self.now = end;
        out
    }

    fn pid(&self, name: &str) -> i32 {
        self.pids[name]
    }
}

fn spawns(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { service, .. } => Some(service.as_str()),
            _ => None,
        })
        .collect()
}

fn signals(actions: &[Action]) -> Vec<(i32, i32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal { pgid, signal } => Some((*pgid, *signal)),
            _ => None,
        })
        .collect()
}

fn backoff_delays(actions: &[Action], h: &Harness) -> Vec<Duration> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Changed {
                state: State::Backoff { until, delay },
                ..
            } => {
                assert_eq!(*until, h.now + *delay);
                Some(*delay)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn boot_spawns_independent_services_together() {
    let mut h = Harness::new(&[
        daemon("a", ""),
        daemon("b", ""),
        daemon("c", "status = \"stop\"\n"),
    ]);
    let actions = h.send(Event::Boot);
    assert_eq!(spawns(&actions), ["a", "b"]);
    assert_eq!(h.state("a"), State::Starting);
    assert_eq!(h.state("c"), State::Inactive);
}

#[test]
fn dependent_starts_only_once_a_daemon_without_checks_runs() {
    let mut h = Harness::new(&[
        daemon("db", ""),
        daemon("app", "[dependencies]\nrequires = [\"db\"]\n"),
    ]);
    assert_eq!(spawns(&h.send(Event::Boot)), ["db"]);
    assert_eq!(
        h.state("app"),
        State::Blocked {
            on: "db".into(),
            reason: BlockReason::Waiting
        }
    );
    let actions = h.spawned("db");
    assert_eq!(h.state("db"), State::Ready);
    assert_eq!(spawns(&actions), ["app"]);
}

#[test]
fn dependent_waits_for_the_health_check_to_pass() {
    let health = "[health]\ntype = \"tcp\"\ntarget = \"127.0.0.1:8989\"\ninterval_ms = 10000\n";
    let mut h = Harness::new(&[
        daemon("mycelium", health),
        oneshot("call-home", "[dependencies]\nrequires = [\"mycelium\"]\n"),
    ]);
    h.send(Event::Boot);
    let actions = h.spawned("mycelium");
    assert_eq!(h.state("mycelium"), State::Running);
    assert!(actions.contains(&Action::RunCheck {
        service: "mycelium".into(),
        run: 1,
        check: 0
    }));
    // Failures before the first pass retry soon, backing off to
    // FIRST_PASS_INTERVAL, and count for nothing.
    let mut waits = Vec::new();
    for _ in 0..7 {
        let actions = h.check("mycelium", false);
        assert!(spawns(&actions).is_empty());
        assert_eq!(h.state("mycelium"), State::Running);
        let after = actions
            .iter()
            .find_map(|a| match a {
                Action::ArmTimer { after, .. } => Some(*after),
                _ => None,
            })
            .unwrap();
        waits.push(after.as_millis());
        let actions = h.advance(after);
        assert_eq!(actions.len(), 1, "{actions:?}");
    }
    assert_eq!(waits, [10, 20, 40, 80, 160, 250, 250]);
    let actions = h.check("mycelium", true);
    assert_eq!(h.state("mycelium"), State::Ready);
    assert_eq!(spawns(&actions), ["call-home"]);
    // The next check waits a whole interval.
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::ArmTimer { after, .. } if *after == Duration::from_secs(10))));
}

#[test]
fn oneshot_exit_zero_succeeds_and_releases_dependents() {
    let mut h = Harness::new(&[
        oneshot("install", ""),
        daemon("app", "[dependencies]\nrequires = [\"install\"]\n"),
    ]);
    h.send(Event::Boot);
    h.spawned("install");
    assert_eq!(h.state("install"), State::Running);
    let actions = h.exit("install", ExitStatus::Code(0));
    assert_eq!(h.state("install"), State::Succeeded);
    assert_eq!(spawns(&actions), ["app"]);
}

#[test]
fn failed_oneshot_is_retried_with_backoff() {
    let mut h = Harness::new(&[oneshot(
        "call-home",
        "[lifecycle]\nrestart_delay_ms = 100\n",
    )]);
    h.send(Event::Boot);
    h.spawned("call-home");
    h.exit("call-home", ExitStatus::Code(1));
    assert!(matches!(h.state("call-home"), State::Backoff { .. }));
    let actions = h.advance(Duration::from_millis(100));
    assert_eq!(spawns(&actions), ["call-home"]);
}

#[test]
fn restart_delays_double_up_to_the_cap() {
    let lifecycle = "[lifecycle]\nrestart = \"always\"\nrestart_delay_ms = 100\nrestart_delay_max_ms = 500\nmax_restarts = 0\n";
    let mut h = Harness::new(&[daemon("crash", lifecycle)]);
    h.send(Event::Boot);
    let mut delays = Vec::new();
    for _ in 0..6 {
        h.spawned("crash");
        let actions = h.exit("crash", ExitStatus::Code(1));
        let delay = backoff_delays(&actions, &h)[0];
        delays.push(delay.as_millis());
        let actions = h.advance(delay);
        assert_eq!(spawns(&actions), ["crash"]);
    }
    assert_eq!(delays, [100, 200, 400, 500, 500, 500]);
    assert_eq!(h.sup.get("crash").unwrap().restarts, 6);
}

#[test]
fn restart_delay_resets_after_stable_period() {
    let lifecycle = "[lifecycle]\nrestart_delay_ms = 100\nstability_period_ms = 1000\n";
    let mut h = Harness::new(&[daemon("flaky", lifecycle)]);
    h.send(Event::Boot);
    for _ in 0..3 {
        h.spawned("flaky");
        let actions = h.exit("flaky", ExitStatus::Code(1));
        let delay = backoff_delays(&actions, &h)[0];
        h.advance(delay);
    }
    h.spawned("flaky");
    h.advance(Duration::from_millis(1000));
    let actions = h.exit("flaky", ExitStatus::Code(1));
    assert_eq!(backoff_delays(&actions, &h), [Duration::from_millis(100)]);
    assert_eq!(h.sup.get("flaky").unwrap().restarts, 1);
}

#[test]
fn too_many_restarts_fail_the_service_and_block_what_requires_it() {
    let mut h = Harness::new(&[
        daemon(
            "db",
            "[lifecycle]\nrestart_delay_ms = 10\nmax_restarts = 2\n",
        ),
        daemon("app", "[dependencies]\nrequires = [\"db\"]\n"),
        daemon("cache", "[dependencies]\nwants = [\"db\"]\n"),
    ]);
    h.send(Event::Boot);
    for _ in 0..2 {
        h.spawned("db");
        h.exit("db", ExitStatus::Code(3));
        h.advance(Duration::from_secs(1));
    }
    h.spawned("db");
    let actions = h.exit("db", ExitStatus::Code(3));
    assert_eq!(
        h.state("db"),
        State::Failed("exited with code 3; gave up after 2 restarts".into())
    );
    // app was asked to spawn when db first ran; it is now stopped again.
    assert_eq!(h.state("app"), State::Stopping);
    let actions_app = h.spawned("app");
    assert_eq!(signals(&actions_app), [(h.pid("app"), TERM)]);
    h.exit("app", ExitStatus::Signal(TERM));
    assert_eq!(
        h.state("app"),
        State::Blocked {
            on: "db".into(),
            reason: BlockReason::DependencyDown
        }
    );
    assert_eq!(
        h.sup.get("app").unwrap().state.describe(h.now),
        "blocked: requires db, which is down"
    );
    // `wants` tolerates the failure: cache is left alone.
    assert!(signals(&actions).is_empty());
    assert_eq!(h.state("cache"), State::Starting);
}

#[test]
fn wanted_service_that_never_comes_up_does_not_hold_back_its_dependent() {
    let health = "[lifecycle]
restart = \"never\"\n[health]\ntype = \"tcp\"\ntarget = \"h:1\"\n";
    let mut h = Harness::new(&[
        daemon("metrics", health),
        daemon("app", "[dependencies]\nwants = [\"metrics\"]\n"),
    ]);
    h.send(Event::Boot);
    h.spawned("metrics");
    assert!(matches!(
        h.state("app"),
        State::Blocked {
            reason: BlockReason::Waiting,
            ..
        }
    ));
    let actions = h.exit("metrics", ExitStatus::Code(1));
    assert_eq!(spawns(&actions), ["app"]);
}

#[test]
fn restart_never_leaves_the_service_exited() {
    let mut h = Harness::new(&[daemon("once", "[lifecycle]\nrestart = \"never\"\n")]);
    h.send(Event::Boot);
    h.spawned("once");
    let actions = h.exit("once", ExitStatus::Signal(11));
    assert_eq!(h.state("once"), State::Exited(ExitStatus::Signal(11)));
    assert!(!actions.iter().any(|a| matches!(a, Action::ArmTimer { .. })));
}

#[test]
fn on_failure_does_not_restart_a_clean_exit_but_always_does() {
    let mut h = Harness::new(&[
        daemon("a", ""),
        daemon("b", "[lifecycle]\nrestart = \"always\"\n"),
    ]);
    h.send(Event::Boot);
    h.spawned("a");
    h.spawned("b");
    h.exit("a", ExitStatus::Code(0));
    h.exit("b", ExitStatus::Code(0));
    assert_eq!(h.state("a"), State::Exited(ExitStatus::Code(0)));
    assert!(matches!(h.state("b"), State::Backoff { .. }));
}

#[test]
fn after_orders_only_and_does_not_wait_for_unwanted_services() {
    let mut h = Harness::new(&[
        daemon("late", "status = \"stop\"\n"),
        daemon("x", "[dependencies]\nafter = [\"late\"]\n"),
    ]);
    assert_eq!(spawns(&h.send(Event::Boot)), ["x"]);
}

#[test]
fn start_pulls_in_what_it_requires() {
    let mut h = Harness::new(&[
        daemon("db", "status = \"stop\"\n"),
        daemon(
            "app",
            "status = \"stop\"\n[dependencies]\nrequires = [\"db\"]\n",
        ),
    ]);
    assert!(spawns(&h.send(Event::Boot)).is_empty());
    assert_eq!(spawns(&h.send(Event::Start("app".into()))), ["db"]);
    assert_eq!(spawns(&h.spawned("db")), ["app"]);
}

#[test]
fn stop_signals_the_group_and_kills_it_after_the_timeout() {
    let mut h = Harness::new(&[daemon(
        "stubborn",
        "[lifecycle]\nstop_timeout_ms = 300\nstop_signal = \"SIGINT\"\n",
    )]);
    h.send(Event::Boot);
    h.spawned("stubborn");
    let pid = h.pid("stubborn");
    let actions = h.send(Event::Stop("stubborn".into()));
    assert_eq!(signals(&actions), [(pid, 2)]);
    assert_eq!(h.state("stubborn"), State::Stopping);
    assert!(h.advance(Duration::from_millis(299)).is_empty());
    let actions = h.advance(Duration::from_millis(1));
    assert_eq!(signals(&actions), [(pid, SIGKILL)]);
    h.exit("stubborn", ExitStatus::Signal(SIGKILL));
    assert_eq!(h.state("stubborn"), State::Stopped);
    assert!(h.timers.is_empty());
}

#[test]
fn stop_ends_as_soon_as_the_process_exits() {
    let mut h = Harness::new(&[daemon("polite", "")]);
    h.send(Event::Boot);
    h.spawned("polite");
    h.send(Event::Stop("polite".into()));
    let actions = h.exit("polite", ExitStatus::Signal(TERM));
    assert!(actions.iter().any(|a| matches!(a, Action::CancelTimer(_))));
    assert_eq!(h.state("polite"), State::Stopped);
    assert!(h.timers.is_empty(), "no grace timer left to wake us");
}

#[test]
fn stop_waits_for_the_rest_of_the_process_group() {
    let mut h = Harness::new(&[daemon("forky", "[lifecycle]\nstop_timeout_ms = 1000\n")]);
    h.send(Event::Boot);
    h.spawned("forky");
    let pid = h.pid("forky");
    h.send(Event::Stop("forky".into()));
    let actions = h.send(Event::Exited {
        pid,
        status: ExitStatus::Signal(TERM),
        group_empty: false,
    });
    assert_eq!(actions, [Action::WatchGroup { pgid: pid }]);
    assert_eq!(h.state("forky"), State::Stopping);
    let actions = h.advance(Duration::from_millis(1000));
    assert_eq!(signals(&actions), [(pid, SIGKILL)]);
    h.send(Event::GroupEmpty { pgid: pid });
    assert_eq!(h.state("forky"), State::Stopped);
}

#[test]
fn what_a_run_left_behind_is_stopped_before_the_next_run_starts() {
    // Its main process dies by itself (an OOM kill, a crash) and a child
    // it started lives on in its group (its cgroup): the child is stopped
    // first, then the restart's backoff begins, so the next run never
    // shares the cgroup with the last one's leftovers.
    let mut h = Harness::new(&[daemon(
        "leaky",
        "[lifecycle]\nstop_timeout_ms = 1000\nrestart_delay_ms = 500\n",
    )]);
    h.send(Event::Boot);
    h.spawned("leaky");
    let pid = h.pid("leaky");
    let oom = ExitStatus::OomKilled {
        limit: Some(32 << 20),
    };
    let actions = h.send(Event::Exited {
        pid,
        status: oom,
        group_empty: false,
    });
    assert_eq!(signals(&actions), [(pid, TERM)]);
    assert!(actions.contains(&Action::WatchGroup { pgid: pid }));
    assert_eq!(h.state("leaky"), State::Stopping);
    // A stubborn child: killed after the grace.
    let actions = h.advance(Duration::from_millis(1000));
    assert_eq!(signals(&actions), [(pid, SIGKILL)]);
    assert!(!actions.iter().any(|a| matches!(a, Action::Spawn { .. })));
    h.send(Event::GroupEmpty { pgid: pid });
    // Now the exit counts: backoff, with what ended it.
    assert!(
        matches!(h.state("leaky"), State::Backoff { .. }),
        "{:?}",
        h.state("leaky")
    );
    let view = h.sup.get("leaky").unwrap();
    assert_eq!(view.last_exit, Some(oom));
    assert_eq!(view.restarts, 1);
}

#[test]
fn stop_before_the_process_exists_signals_it_on_arrival() {
    let mut h = Harness::new(&[daemon("slow", "")]);
    h.send(Event::Boot);
    h.send(Event::Stop("slow".into()));
    assert_eq!(h.state("slow"), State::Stopping);
    let actions = h.spawned("slow");
    assert_eq!(signals(&actions), [(h.pid("slow"), TERM)]);
    h.exit("slow", ExitStatus::Signal(TERM));
    assert_eq!(h.state("slow"), State::Stopped);
}

#[test]
fn stop_of_a_service_in_backoff_cancels_the_restart() {
    let mut h = Harness::new(&[daemon("crash", "")]);
    h.send(Event::Boot);
    h.spawned("crash");
    h.exit("crash", ExitStatus::Code(1));
    h.send(Event::Stop("crash".into()));
    assert_eq!(h.state("crash"), State::Stopped);
    assert!(h.timers.is_empty());
}

#[test]
fn restart_waits_for_the_stop_to_finish() {
    let mut h = Harness::new(&[daemon("web", "")]);
    h.send(Event::Boot);
    h.spawned("web");
    let actions = h.send(Event::Restart("web".into()));
    assert!(spawns(&actions).is_empty());
    assert_eq!(h.state("web"), State::Stopping);
    let actions = h.exit("web", ExitStatus::Signal(TERM));
    assert_eq!(spawns(&actions), ["web"]);
    assert_eq!(h.runs["web"], 2);
}

#[test]
fn restart_reruns_a_finished_oneshot() {
    let mut h = Harness::new(&[oneshot("job", "")]);
    h.send(Event::Boot);
    h.spawned("job");
    h.exit("job", ExitStatus::Code(0));
    assert!(
        spawns(&h.send(Event::Start("job".into()))).is_empty(),
        "start leaves a success alone"
    );
    assert_eq!(spawns(&h.send(Event::Restart("job".into()))), ["job"]);
}

#[test]
fn start_of_a_failed_service_tries_again_from_scratch() {
    let mut h = Harness::new(&[daemon("x", "[lifecycle]\nrestart = \"never\"\n")]);
    h.send(Event::Boot);
    h.spawned("x");
    h.exit("x", ExitStatus::Code(1));
    assert_eq!(spawns(&h.send(Event::Start("x".into()))), ["x"]);
}

#[test]
fn starting_one_conflicting_service_stops_the_other_first() {
    let mut h = Harness::new(&[
        daemon("nginx", "[dependencies]\nconflicts = [\"apache\"]\n"),
        daemon("apache", "status = \"stop\"\n"),
    ]);
    h.send(Event::Boot);
    h.spawned("nginx");
    let nginx = h.pid("nginx");
    let actions = h.send(Event::Start("apache".into()));
    assert_eq!(signals(&actions), [(nginx, TERM)]);
    assert!(spawns(&actions).is_empty());
    assert_eq!(
        h.state("apache"),
        State::Blocked {
            on: "nginx".into(),
            reason: BlockReason::Conflict
        }
    );
    let actions = h.exit("nginx", ExitStatus::Signal(TERM));
    assert_eq!(spawns(&actions), ["apache"]);
    assert_eq!(h.state("nginx"), State::Stopped);
}

#[test]
fn conflicting_services_both_set_to_start_run_only_the_first() {
    let mut h = Harness::new(&[
        daemon("a", "[dependencies]\nconflicts = [\"b\"]\n"),
        daemon("b", ""),
    ]);
    assert_eq!(spawns(&h.send(Event::Boot)), ["a"]);
    assert!(matches!(
        h.state("b"),
        State::Blocked {
            reason: BlockReason::Conflict,
            ..
        }
    ));
}

#[test]
fn ready_daemon_that_turns_unhealthy_is_restarted() {
    let health = "[health]\ntype = \"tcp\"\ntarget = \"h:1\"\nretries = 2\ninterval_ms = 1000\n";
    let mut h = Harness::new(&[daemon("api", health)]);
    h.send(Event::Boot);
    h.spawned("api");
    h.check("api", true);
    assert_eq!(h.state("api"), State::Ready);
    h.advance(Duration::from_secs(1));
    h.check("api", false);
    assert_eq!(h.state("api"), State::Ready, "one failure is below retries");
    h.advance(Duration::from_secs(1));
    let actions = h.check("api", false);
    assert_eq!(signals(&actions), [(h.pid("api"), TERM)]);
    assert!(actions.contains(&Action::Changed {
        service: "api".into(),
        state: State::Unhealthy
    }));
    h.exit("api", ExitStatus::Signal(TERM));
    assert!(matches!(h.state("api"), State::Backoff { .. }));
    assert_eq!(h.sup.get("api").unwrap().last_error, Some("unhealthy"));
}

#[test]
fn each_check_is_judged_against_its_own_retries() {
    // [health] (check 0) tolerates 5 failures in a row; the [[actions]]
    // check (check 1) only 1. One failure of check 0 followed by a pass of
    // check 1 is healthy: check 0 is 4 failures short of its own limit.
    let text = "[health]\ntype = \"tcp\"\ntarget = \"h:1\"\nretries = 5\n\
                [[actions]]\nname = \"health\"\nscript = \"true\"\ntrigger = \"check\"\nretries = 1\n";
    let mut h = Harness::new(&[daemon("api", text)]);
    h.send(Event::Boot);
    h.spawned("api");
    h.check_n("api", 0, true);
    h.check_n("api", 1, true);
    assert_eq!(h.state("api"), State::Ready);
    h.check_n("api", 0, false);
    let actions = h.check_n("api", 1, true);
    assert_eq!(
        signals(&actions),
        [],
        "no stop signal after one failure of a retries=5 check"
    );
    assert_eq!(h.state("api"), State::Ready);
    // Check 1 alone fails once: its own retries=1 makes that unhealthy.
    let actions = h.check_n("api", 1, false);
    assert_eq!(signals(&actions), [(h.pid("api"), TERM)]);
}

#[test]
fn unhealthy_daemon_with_restart_never_stays_and_recovers() {
    let health = "[lifecycle]\nrestart = \"never\"\n[health]\ntype = \"tcp\"\ntarget = \"h:1\"\nretries = 1\n";
    let mut h = Harness::new(&[daemon("api", health)]);
    h.send(Event::Boot);
    h.spawned("api");
    h.check("api", true);
    h.check("api", false);
    assert_eq!(h.state("api"), State::Unhealthy);
    h.check("api", true);
    assert_eq!(h.state("api"), State::Ready);
}

#[test]
fn failures_during_the_start_period_do_not_count() {
    let health =
        "[health]\ntype = \"tcp\"\ntarget = \"h:1\"\nretries = 1\nstart_period_ms = 5000\n";
    let mut h = Harness::new(&[daemon("api", health)]);
    h.send(Event::Boot);
    h.spawned("api");
    h.check("api", true);
    h.check("api", false);
    assert_eq!(h.state("api"), State::Ready);
    h.now += Duration::from_secs(5);
    h.check("api", false);
    assert!(matches!(h.state("api"), State::Unhealthy | State::Stopping));
}

#[test]
fn daemon_not_healthy_within_start_timeout_is_killed_and_retried() {
    let text = "[lifecycle]\nstart_timeout_ms = 2000\n[health]\ntype = \"tcp\"\ntarget = \"h:1\"\ninterval_ms = 60000\n";
    let mut h = Harness::new(&[daemon("slow", text)]);
    h.send(Event::Boot);
    h.spawned("slow");
    h.check("slow", false);
    let actions = h.advance(Duration::from_millis(2000));
    assert_eq!(signals(&actions), [(h.pid("slow"), TERM)]);
    h.exit("slow", ExitStatus::Signal(TERM));
    assert!(matches!(h.state("slow"), State::Backoff { .. }));
    assert_eq!(
        h.sup.get("slow").unwrap().last_error,
        Some("not healthy within start_timeout_ms (2000)")
    );
}

#[test]
fn spawn_failure_counts_as_exit_127_and_is_kept_for_status() {
    let mut h = Harness::new(&[daemon("missing", "[lifecycle]\nrestart = \"never\"\n")]);
    h.send(Event::Boot);
    h.send(Event::SpawnFailed {
        service: "missing".into(),
        run: 1,
        code: 127,
        error: "No such file or directory".into(),
    });
    assert_eq!(h.state("missing"), State::Exited(ExitStatus::Code(127)));
    assert_eq!(
        h.sup.get("missing").unwrap().last_error,
        Some("No such file or directory")
    );
}

#[test]
fn target_is_ready_when_what_it_requires_is_ready() {
    let mut h = Harness::new(&[
        daemon("net", ""),
        "[target]\nname = \"online\"\n[dependencies]\nrequires = [\"net\"]\n".to_string(),
        daemon("app", "[dependencies]\nrequires = [\"online\"]\n"),
    ]);
    assert_eq!(spawns(&h.send(Event::Boot)), ["net"]);
    let actions = h.spawned("net");
    assert_eq!(h.state("online"), State::Ready);
    assert_eq!(spawns(&actions), ["app"]);
}

#[test]
fn required_service_going_down_stops_its_dependents_until_it_returns() {
    let mut h = Harness::new(&[
        daemon("db", "[lifecycle]\nrestart = \"never\"\n"),
        daemon("app", "[dependencies]\nrequires = [\"db\"]\n"),
    ]);
    h.send(Event::Boot);
    h.spawned("db");
    h.spawned("app");
    let app = h.pid("app");
    let actions = h.exit("db", ExitStatus::Code(1));
    assert_eq!(signals(&actions), [(app, TERM)]);
    h.exit("app", ExitStatus::Signal(TERM));
    assert_eq!(
        h.state("app"),
        State::Blocked {
            on: "db".into(),
            reason: BlockReason::DependencyDown
        }
    );
    assert_eq!(spawns(&h.send(Event::Start("db".into()))), ["db"]);
    assert_eq!(spawns(&h.spawned("db")), ["app"]);
}

#[test]
fn shutdown_stops_in_reverse_start_order() {
    let mut h = Harness::new(&[
        daemon("a", ""),
        daemon("b", "[dependencies]\nrequires = [\"a\"]\n"),
        daemon("c", "[dependencies]\nafter = [\"b\"]\n"),
    ]);
    h.send(Event::Boot);
    h.spawned("a");
    h.spawned("b");
    h.spawned("c");
    let mut stopped = Vec::new();
    let mut actions = h.send(Event::Shutdown);
    for name in ["c", "b", "a"] {
        assert_eq!(
            signals(&actions),
            [(h.pid(name), TERM)],
            "expected {name} next"
        );
        stopped.push(name);
        actions = h.exit(name, ExitStatus::Signal(TERM));
    }
    assert_eq!(actions.last(), Some(&Action::ShutdownComplete));
    assert!(["a", "b", "c"].iter().all(|n| h.state(n) == State::Stopped));
}

#[test]
fn shutdown_with_nothing_running_completes_at_once_and_blocks_new_starts() {
    let mut h = Harness::new(&[
        oneshot("job", ""),
        daemon("x", "[lifecycle]\nrestart = \"always\"\n"),
    ]);
    h.send(Event::Boot);
    h.spawned("job");
    h.exit("job", ExitStatus::Code(0));
    h.spawned("x");
    h.exit("x", ExitStatus::Code(1));
    let actions = h.send(Event::Shutdown);
    assert_eq!(actions.last(), Some(&Action::ShutdownComplete));
    assert_eq!(h.state("x"), State::Stopped);
    assert!(spawns(&h.send(Event::Start("x".into()))).is_empty());
}

#[test]
fn stale_events_are_ignored() {
    let mut h = Harness::new(&[daemon("x", "[health]\ntype = \"tcp\"\ntarget = \"h:1\"\n")]);
    h.send(Event::Boot);
    h.spawned("x");
    // A result for an earlier run changes nothing.
    let stale = h.send(Event::CheckDone {
        service: "x".into(),
        run: 0,
        check: 0,
        passed: true,
    });
    assert!(stale.is_empty());
    // An exit of a pid nobody owns (an orphan) changes nothing.
    assert!(h
        .send(Event::Exited {
            pid: 4242,
            status: ExitStatus::Code(0),
            group_empty: true
        })
        .is_empty());
    // A cancelled timer that fires anyway changes nothing.
    assert!(h.send(Event::TimerFired(9999)).is_empty());
    // A spawn reported for an old run is killed at once.
    let actions = h.send(Event::Spawned {
        service: "x".into(),
        run: 0,
        pid: 777,
    });
    assert_eq!(signals(&actions), [(777, SIGKILL)]);
}

#[test]
fn backoff_delay_doubles_and_caps_without_overflow() {
    let first = Duration::from_millis(100);
    let max = Duration::from_secs(300);
    assert_eq!(backoff_delay(first, max, 0), first);
    assert_eq!(backoff_delay(first, max, 3), Duration::from_millis(800));
    assert_eq!(backoff_delay(first, max, 40), max);
    assert_eq!(backoff_delay(first, max, u32::MAX), max);
}

#[test]
fn deploy_adds_a_service_and_starts_it_when_its_status_is_start() {
    let mut h = Harness::new(&[daemon("a", "")]);
    h.send(Event::Boot);
    h.spawned("a");
    let actions = h.send(Event::Deploy(Box::new(svc(&daemon(
        "b",
        "[dependencies]\nrequires = [\"a\"]\n",
    )))));
    assert_eq!(spawns(&actions), ["b"]);
    assert_eq!(h.sup.list().len(), 2);
    let quiet = h.send(Event::Deploy(Box::new(svc(&daemon(
        "c",
        "status = \"stop\"\n",
    )))));
    assert!(spawns(&quiet).is_empty());
    assert_eq!(h.state("c"), State::Inactive);
}

#[test]
fn deploy_over_a_running_service_restarts_it_with_the_new_definition() {
    let mut h = Harness::new(&[daemon("web", "")]);
    h.send(Event::Boot);
    h.spawned("web");
    let old = h.pid("web");
    let actions = h.send(Event::Deploy(Box::new(svc(&daemon(
        "web",
        "[lifecycle]\nstop_signal = \"SIGINT\"\n",
    )))));
    assert_eq!(
        signals(&actions),
        [(old, 2)],
        "the stop already uses the new definition"
    );
    let actions = h.exit("web", ExitStatus::Signal(2));
    assert_eq!(spawns(&actions), ["web"]);
    assert_eq!(h.sup.get("web").unwrap().service.lifecycle.stop_signal, 2);
}

#[test]
fn a_fixed_definition_deployed_during_backoff_starts_at_once() {
    let mut h = Harness::new(&[daemon("flaky", "[lifecycle]\nrestart_delay_ms = 60000\n")]);
    h.send(Event::Boot);
    h.spawned("flaky");
    h.exit("flaky", ExitStatus::Code(1));
    assert!(matches!(h.state("flaky"), State::Backoff { .. }));
    // Was: the new definition waited out the old one's 60 s backoff.
    let actions = h.send(Event::Deploy(Box::new(svc(&daemon(
        "flaky",
        "[lifecycle]\nrestart_delay_ms = 1000\n",
    )))));
    assert_eq!(spawns(&actions), ["flaky"], "started at once");
    assert!(h.timers.is_empty(), "the old backoff timer is gone");
    assert_eq!(h.sup.get("flaky").unwrap().restarts, 0);
}

#[test]
fn redeploying_a_service_cancels_the_old_definitions_check_timers() {
    // Found by the property test: the old checks were replaced with their
    // timers still armed, which then fired for nothing after a shutdown.
    let health = "[health]\ntype = \"tcp\"\ntarget = \"h:1\"\ninterval_ms = 60000\n";
    let mut h = Harness::new(&[daemon("api", health)]);
    h.send(Event::Boot);
    h.spawned("api");
    h.check("api", false);
    assert_eq!(h.timers.len(), 2, "start timeout and the check's retry");
    h.send(Event::Deploy(Box::new(svc(&daemon("api", health)))));
    h.exit("api", ExitStatus::Signal(TERM));
    h.spawned("api");
    h.send(Event::Shutdown);
    h.exit("api", ExitStatus::Signal(TERM));
    assert!(h.log.contains(&Action::ShutdownComplete));
    assert!(h.timers.is_empty(), "left armed: {:?}", h.timers);
}

#[test]
fn remove_stops_the_service_and_forgets_it() {
    let mut h = Harness::new(&[daemon("old", ""), daemon("keep", "")]);
    h.send(Event::Boot);
    h.spawned("old");
    h.spawned("keep");
    let pid = h.pid("old");
    let actions = h.send(Event::Remove("old".into()));
    assert_eq!(signals(&actions), [(pid, TERM)]);
    assert!(h.sup.get("old").is_none());
    assert_eq!(h.sup.list().len(), 1);
    h.exit("old", ExitStatus::Signal(TERM));
    // Shutdown still completes: nothing of `old` is left running.
    let actions = h.send(Event::Shutdown);
    h.exit("keep", ExitStatus::Signal(TERM));
    assert!(!actions.contains(&Action::ShutdownComplete));
    assert!(h.log.contains(&Action::ShutdownComplete));
}

#[test]
fn first_pass_retries_never_wait_longer_than_the_checks_interval() {
    let interval = Duration::from_millis(30);
    let waits: Vec<u128> = (1..=4)
        .map(|misses| first_pass_retry(misses, interval).as_millis())
        .collect();
    assert_eq!(waits, [10, 20, 30, 30]);
    assert_eq!(
        first_pass_retry(u32::MAX, Duration::from_secs(10)),
        FIRST_PASS_INTERVAL
    );
}

// ---- live re-exec: handoff and adoption ------------------------------

impl Harness {
    /// Hands the state to a new supervisor for the same files (through
    /// JSON, as across the exec) and goes on with it; returns what the
    /// adoption asked for.
    fn reexec(&mut self, texts: &[String]) -> Vec<Action> {
        let handoff = self.sup.handoff(self.now).expect("handoff");
        let json = serde_json::to_string(&handoff).unwrap();
        let handoff: Handoff = serde_json::from_str(&json).unwrap();
        let services = texts.iter().map(|t| svc(t)).collect();
        let adopted = Supervisor::adopt(services, handoff, self.now);
        assert!(adopted.unknown.is_empty(), "{:?}", adopted.unknown);
        self.sup = adopted.supervisor;
        // The old process's timers died with it; the new ones are these.
        self.timers.clear();
        for action in &adopted.actions {
            if let Action::ArmTimer { id, after } = action {
                self.timers.insert(*id, self.now + *after);
            }
        }
        self.log.extend(adopted.actions.iter().cloned());
        adopted.actions
    }
}

fn reexec_node() -> Vec<String> {
    vec![
        daemon(
            "db",
            "[health]\ntype = \"tcp\"\ntarget = \"h:1\"\ninterval_ms = 1000\n",
        ),
        daemon("app", "[dependencies]\nrequires = [\"db\"]\n"),
        daemon(
            "crash",
            "[lifecycle]\nrestart = \"always\"\nrestart_delay_ms = 400\n",
        ),
        daemon("slow", "[lifecycle]\nstop_timeout_ms = 1000\n"),
        daemon("idle", ""),
        oneshot("setup", ""),
    ]
}

/// Boots [`reexec_node`] until nothing is starting (a handoff waits for that).
fn booted(texts: &[String]) -> Harness {
    let mut h = Harness::new(texts);
    h.send(Event::Boot);
    for name in ["db", "crash", "slow", "idle", "setup"] {
        h.spawned(name);
    }
    h.check("db", true);
    h.spawned("app");
    h
}

/// What operators see of every unit: name, state, pid, wanted, restarts.
fn seen(h: &Harness) -> Vec<(String, State, Option<i32>, bool, u32)> {
    h.sup
        .list()
        .iter()
        .map(|v| {
            (
                v.service.name.clone(),
                v.state.clone(),
                v.pid,
                v.wanted,
                v.restarts,
            )
        })
        .collect()
}

#[test]
fn a_reexec_keeps_every_process_and_spawns_nothing() {
    let texts = reexec_node();
    let mut h = booted(&texts);
    h.exit("setup", ExitStatus::Code(0));
    h.send(Event::Stop("idle".into()));
    h.exit("idle", ExitStatus::Signal(TERM));
    let before = seen(&h);
    let actions = h.reexec(&texts);
    assert_eq!(spawns(&actions), Vec::<&str>::new(), "{actions:?}");
    assert!(signals(&actions).is_empty(), "{actions:?}");
    let after = seen(&h);
    assert_eq!(before, after);
    // The processes are known by their pids: an exit is handled as before.
    let actions = h.exit("app", ExitStatus::Code(3));
    assert!(
        matches!(h.state("app"), State::Backoff { .. } | State::Failed(_)),
        "{:?} {actions:?}",
        h.state("app")
    );
    // The stopped one stays stopped: a re-exec is no boot.
    assert_eq!(h.state("idle"), State::Stopped);
}

#[test]
fn a_restart_in_backoff_happens_when_it_would_have() {
    let texts = reexec_node();
    let mut h = booted(&texts);
    let actions = h.exit("crash", ExitStatus::Code(1));
    assert_eq!(backoff_delays(&actions, &h), [Duration::from_millis(400)]);
    h.advance(Duration::from_millis(150));
    h.reexec(&texts);
    assert!(matches!(h.state("crash"), State::Backoff { .. }));
    assert!(spawns(&h.advance(Duration::from_millis(249))).is_empty());
    assert_eq!(spawns(&h.advance(Duration::from_millis(1))), ["crash"]);
    assert_eq!(h.sup.get("crash").unwrap().restarts, 1);
}

#[test]
fn a_stop_in_progress_gets_its_kill_at_the_same_deadline() {
    let texts = reexec_node();
    let mut h = booted(&texts);
    let pid = h.pid("slow");
    h.send(Event::Stop("slow".into()));
    h.advance(Duration::from_millis(600));
    h.reexec(&texts);
    assert_eq!(h.state("slow"), State::Stopping);
    assert!(signals(&h.advance(Duration::from_millis(399))).is_empty());
    assert_eq!(
        signals(&h.advance(Duration::from_millis(1))),
        [(pid, SIGKILL)]
    );
    h.exit("slow", ExitStatus::Signal(SIGKILL));
    assert_eq!(h.state("slow"), State::Stopped);
}

#[test]
fn a_check_that_was_running_runs_again_at_once_and_the_next_keeps_its_time() {
    let texts = reexec_node();
    let mut h = booted(&texts);
    assert_eq!(h.state("db"), State::Ready);
    // The next check is due in 1000 ms; 300 pass, then the re-exec.
    h.advance(Duration::from_millis(300));
    let actions = h.reexec(&texts);
    assert!(actions.iter().any(
        |a| matches!(a, Action::ArmTimer { after, .. } if *after == Duration::from_millis(700))
    ));
    let runs = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::RunCheck { .. }))
            .count()
    };
    assert_eq!(runs(&h.advance(Duration::from_millis(699))), 0);
    assert_eq!(runs(&h.advance(Duration::from_millis(1))), 1);
    // Handed off while that check ran: its answer went to the old process,
    // so the new one checks again at once.
    let actions = h.reexec(&texts);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::ArmTimer { after, .. } if after.is_zero())));
    assert_eq!(runs(&h.advance(Duration::ZERO)), 1);
    h.check("db", true);
    assert_eq!(h.state("db"), State::Ready);
}

#[test]
fn a_handoff_waits_for_a_spawn_in_flight_and_names_units_without_a_file() {
    let texts = reexec_node();
    let mut h = Harness::new(&texts);
    h.send(Event::Boot);
    assert_eq!(
        h.sup.handoff(h.now),
        Err(HandoffRefused::Starting("db".into()))
    );
    for name in ["db", "crash", "slow", "idle", "setup"] {
        h.spawned(name);
    }
    h.check("db", true);
    h.spawned("app");
    let handoff = h.sup.handoff(h.now).unwrap();
    // The new binary finds no file for `slow` (edited away): its process
    // is named, not silently left running unsupervised.
    let fewer: Vec<Service> = texts
        .iter()
        .filter(|t| !t.contains("\"slow\""))
        .map(|t| svc(t))
        .collect();
    let adopted = Supervisor::adopt(fewer, handoff, h.now);
    assert_eq!(adopted.unknown, [("slow".to_owned(), h.pid("slow"))]);
    assert!(spawns(&adopted.actions).is_empty());
    h.send(Event::Shutdown);
    assert_eq!(h.sup.handoff(h.now), Err(HandoffRefused::ShuttingDown));
}
