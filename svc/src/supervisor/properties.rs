//! Property test: random sequences of events (exits, OOM kills of a whole
//! cgroup, cgroups found empty, check results, timers,
//! operator requests, deploys, removals, shutdown) fed through the
//! supervisor, with its invariants checked after every step against a model
//! of the processes it would have created:
//!
//! - no signal is ever sent to a process group ≤ 1 (spore's own, or all);
//! - a timer is armed once, cancelled only while armed, and when the
//!   shutdown completes none is left armed (every one fired or cancelled);
//! - a service is never spawned while its previous process still runs, nor
//!   while its cgroup still holds what that run left (a detached child);
//! - the shutdown completes exactly once, and only when every unit is down
//!   and no process the supervisor started or waits for is left.
//!
//! `cargo test` runs 10,000 sequences; `SPORE_PROPTEST_CASES=N` runs N.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::parse::parse_service;

/// The services every sequence starts with: dependencies of each kind, a
/// oneshot, health checks, a conflict, a service that starts stopped.
const BASE: &[&str] = &[
    "[service]\nname = \"a\"\nexec = \"/bin/a\"\n[lifecycle]\nrestart = \"always\"\nmax_restarts = 3\n[health]\ntype = \"tcp\"\ntarget = \"h:1\"\nretries = 2\n",
    "[service]\nname = \"b\"\nexec = \"/bin/b\"\n[dependencies]\nrequires = [\"a\"]\n",
    "[service]\nname = \"c\"\nexec = \"/bin/c\"\noneshot = true\n[dependencies]\nafter = [\"b\"]\n",
    "[service]\nname = \"d\"\nexec = \"/bin/d\"\n[dependencies]\nwants = [\"c\"]\nconflicts = [\"e\"]\n",
    "[service]\nname = \"e\"\nexec = \"/bin/e\"\nstatus = \"stop\"\n[lifecycle]\nrestart = \"never\"\n[health]\ntype = \"tcp\"\ntarget = \"h:1\"\nretries = 5\n[[actions]]\nname = \"health\"\nscript = \"true\"\ntrigger = \"check\"\nretries = 1\n",
];

/// Definitions a deploy may bring: changed versions of existing services
/// and a new one. Each refers only to services that are never removed.
const DEPLOYS: &[&str] = &[
    "[service]\nname = \"b\"\nexec = \"/bin/b2\"\n[dependencies]\nrequires = [\"a\"]\n[health]\ntype = \"tcp\"\ntarget = \"h:1\"\n",
    "[service]\nname = \"b\"\nexec = \"/bin/b3\"\nstatus = \"stop\"\n",
    "[service]\nname = \"x\"\nexec = \"/bin/x\"\n[dependencies]\nafter = [\"a\"]\n[lifecycle]\nstop_timeout_ms = 500\n",
    "[service]\nname = \"c\"\nexec = \"/bin/c\"\noneshot = true\n[lifecycle]\nrestart = \"on_failure\"\n",
];

/// Names an operator may remove: no other file names them under
/// requires/after/conflicts (the API refuses those).
const REMOVABLE: &[&str] = &["c", "x"];
const NAMES: &[&str] = &["a", "b", "c", "d", "e", "x"];
const SIGKILL_NO: i32 = 9;

fn service(text: &str) -> Service {
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or("?");
    parse_service(Path::new(&format!("{name}.toml")), text)
        .unwrap_or_else(|e| panic!("test service {name} does not parse: {e:?}"))
}

/// One step of a sequence. Indexes pick among what exists at that moment
/// (modulo its length), so every generated step is meaningful.
#[derive(Debug, Clone)]
enum Op {
    Start(usize),
    Stop(usize),
    Restart(usize),
    Deploy(usize),
    Remove(usize),
    /// A running main process exits (code or signal) by itself or on a
    /// signal it received; `leave_group` keeps a child of it alive.
    Exit {
        pick: usize,
        code: i32,
        killed: bool,
        leave_group: bool,
    },
    /// The OOM killer kills a service's whole cgroup (memory.oom.group):
    /// its main process ends `OomKilled`, and the cgroup is empty.
    OomKill(usize),
    /// The last members of a lingering group die.
    GroupDies(usize),
    Check {
        pick: usize,
        passed: bool,
    },
    FireTimer(usize),
    /// Later spawns fail (or succeed again).
    SpawnsFail(bool),
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..NAMES.len()).prop_map(Op::Start),
        1 => (0..NAMES.len()).prop_map(Op::Stop),
        1 => (0..NAMES.len()).prop_map(Op::Restart),
        1 => (0..DEPLOYS.len()).prop_map(Op::Deploy),
        1 => (0..REMOVABLE.len()).prop_map(Op::Remove),
        4 => (any::<usize>(), 0..3i32, any::<bool>(), any::<bool>()).prop_map(
            |(pick, code, killed, leave_group)| Op::Exit { pick, code, killed, leave_group }
        ),
        1 => any::<usize>().prop_map(Op::GroupDies),
        1 => any::<usize>().prop_map(Op::OomKill),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(pick, passed)| Op::Check { pick, passed }),
        4 => any::<usize>().prop_map(Op::FireTimer),
        1 => any::<bool>().prop_map(Op::SpawnsFail),
        1 => Just(Op::Shutdown),
    ]
}

/// A process the model started for the supervisor.
#[derive(Debug, Clone)]
struct Process {
    service: String,
    /// The main process (pid = pgid) has not exited yet.
    main_alive: bool,
    /// Other members of its group are still alive.
    others_alive: bool,
    /// Signals it was sent.
    signalled: Vec<i32>,
}

/// The world around the supervisor: processes, timers, pending checks.
struct Model {
    sup: Supervisor,
    now: Instant,
    processes: BTreeMap<i32, Process>,
    next_pid: i32,
    timers: BTreeMap<TimerId, Instant>,
    checks: Vec<(String, u64, usize)>,
    watched: BTreeSet<i32>,
    spawns_fail: bool,
    shutdown_sent: bool,
    shutdown_completions: u32,
}

impl Model {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            sup: Supervisor::new(BASE.iter().map(|t| service(t)).collect(), now),
            now,
            processes: BTreeMap::new(),
            next_pid: 100,
            timers: BTreeMap::new(),
            checks: Vec::new(),
            watched: BTreeSet::new(),
            spawns_fail: false,
            shutdown_sent: false,
            shutdown_completions: 0,
        }
    }

    /// Feeds `event` and everything the runtime would report at once (spawn
    /// results, an already empty watched group), checking every action.
    fn feed(&mut self, event: Event) -> Result<(), TestCaseError> {
        let mut queue = std::collections::VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            for action in self.sup.handle(self.now, event) {
                self.apply(action, &mut queue)?;
            }
        }
        Ok(())
    }

    fn apply(
        &mut self,
        action: Action,
        queue: &mut std::collections::VecDeque<Event>,
    ) -> Result<(), TestCaseError> {
        match action {
            Action::Spawn { service, run } => {
                let running = self
                    .processes
                    .values()
                    .any(|p| p.service == service && p.main_alive);
                prop_assert!(!running, "{service} spawned while its process still runs");
                // Its cgroup is empty before its next run goes in: what the
                // last run left there (detached, lingering) is gone first.
                let lingering = self
                    .processes
                    .values()
                    .any(|p| p.service == service && p.others_alive);
                prop_assert!(
                    !lingering,
                    "{service} spawned while its cgroup still holds its last run's processes"
                );
                if self.spawns_fail {
                    queue.push_back(Event::SpawnFailed {
                        service,
                        run,
                        code: 127,
                        error: "not found".into(),
                    });
                } else {
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.processes.insert(
                        pid,
                        Process {
                            service: service.clone(),
                            main_alive: true,
                            others_alive: false,
                            signalled: Vec::new(),
                        },
                    );
                    queue.push_back(Event::Spawned { service, run, pid });
                }
            }
            Action::Signal { pgid, signal } => {
                prop_assert!(pgid > 1, "signal {signal} sent to process group {pgid}");
                if let Some(p) = self.processes.get_mut(&pgid) {
                    p.signalled.push(signal);
                }
            }
            Action::WatchGroup { pgid } => {
                let empty = self.processes.get(&pgid).is_none_or(|p| !p.others_alive);
                if empty {
                    queue.push_back(Event::GroupEmpty { pgid });
                } else {
                    self.watched.insert(pgid);
                }
            }
            Action::ArmTimer { id, after } => {
                prop_assert!(
                    self.timers.insert(id, self.now + after).is_none(),
                    "timer {id} armed twice"
                );
            }
            Action::CancelTimer(id) => {
                prop_assert!(
                    self.timers.remove(&id).is_some(),
                    "timer {id} cancelled while not armed"
                );
            }
            Action::RunCheck {
                service,
                run,
                check,
            } => self.checks.push((service, run, check)),
            Action::Changed { .. } => {}
            Action::ShutdownComplete => {
                self.shutdown_completions += 1;
                prop_assert!(self.shutdown_sent, "shutdown completed before it was asked");
                prop_assert_eq!(self.shutdown_completions, 1, "shutdown completed twice");
                for view in self.sup.list() {
                    prop_assert!(
                        !matches!(
                            view.state,
                            State::Starting
                                | State::Running
                                | State::Ready
                                | State::Unhealthy
                                | State::Stopping
                        ),
                        "shutdown complete while {} is {:?}",
                        view.service.name,
                        view.state
                    );
                }
                let left: Vec<&Process> = self
                    .processes
                    .values()
                    .filter(|p| p.main_alive || (p.others_alive && !p.signalled.is_empty()))
                    .collect();
                prop_assert!(left.is_empty(), "shutdown complete with {left:?} alive");
                // It is the last action of its batch: a timer still armed now
                // would wake a node that has nothing left to do.
                prop_assert!(
                    self.timers.is_empty(),
                    "shutdown complete with timers armed: {:?}",
                    self.timers
                );
            }
        }
        Ok(())
    }

    /// One of the main processes still running, picked by `pick`.
    fn running(&self, pick: usize) -> Option<i32> {
        let alive: Vec<i32> = self
            .processes
            .iter()
            .filter(|(_, p)| p.main_alive)
            .map(|(pid, _)| *pid)
            .collect();
        alive.get(pick % alive.len().max(1)).copied()
    }

    /// The main process `pid` exits; the reaper reports it.
    fn exit(
        &mut self,
        pid: i32,
        status: ExitStatus,
        leave_group: bool,
    ) -> Result<(), TestCaseError> {
        let Some(p) = self.processes.get_mut(&pid) else {
            return Ok(());
        };
        p.main_alive = false;
        p.others_alive = leave_group && !p.signalled.contains(&SIGKILL_NO);
        let group_empty = !p.others_alive;
        self.feed(Event::Exited {
            pid,
            status,
            group_empty,
        })
    }

    fn group_dies(&mut self, pgid: i32) -> Result<(), TestCaseError> {
        if let Some(p) = self.processes.get_mut(&pgid) {
            if p.main_alive {
                return Ok(());
            }
            p.others_alive = false;
        }
        if self.watched.remove(&pgid) {
            self.feed(Event::GroupEmpty { pgid })?;
        }
        Ok(())
    }

    fn fire(&mut self, id: TimerId) -> Result<(), TestCaseError> {
        if let Some(at) = self.timers.remove(&id) {
            self.now = self.now.max(at);
            self.feed(Event::TimerFired(id))?;
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let name = |i: usize| {
            NAMES
                .get(i % NAMES.len())
                .copied()
                .unwrap_or("a")
                .to_owned()
        };
        match op {
            Op::Start(i) => self.feed(Event::Start(name(i))),
            Op::Stop(i) => self.feed(Event::Stop(name(i))),
            Op::Restart(i) => self.feed(Event::Restart(name(i))),
            Op::Deploy(i) => {
                let text = DEPLOYS.get(i % DEPLOYS.len()).copied().unwrap_or_default();
                self.feed(Event::Deploy(Box::new(service(text))))
            }
            Op::Remove(i) => {
                let name = REMOVABLE.get(i % REMOVABLE.len()).copied().unwrap_or("x");
                self.feed(Event::Remove(name.to_owned()))
            }
            Op::Exit {
                pick,
                code,
                killed,
                leave_group,
            } => {
                let Some(pid) = self.running(pick) else {
                    return Ok(());
                };
                let status = if killed {
                    ExitStatus::Signal(15)
                } else {
                    ExitStatus::Code(code)
                };
                self.exit(pid, status, leave_group)
            }
            Op::OomKill(pick) => {
                let Some(pid) = self.running(pick) else {
                    return Ok(());
                };
                let limit = Some(32 << 20);
                self.exit(pid, ExitStatus::OomKilled { limit }, false)
            }
            Op::GroupDies(pick) => {
                let lingering: Vec<i32> = self
                    .processes
                    .iter()
                    .filter(|(_, p)| !p.main_alive && p.others_alive)
                    .map(|(pid, _)| *pid)
                    .collect();
                match lingering.get(pick % lingering.len().max(1)) {
                    Some(&pgid) => self.group_dies(pgid),
                    None => Ok(()),
                }
            }
            Op::Check { pick, passed } => {
                if self.checks.is_empty() {
                    return Ok(());
                }
                let (service, run, check) = self.checks.remove(pick % self.checks.len());
                self.feed(Event::CheckDone {
                    service,
                    run,
                    check,
                    passed,
                })
            }
            Op::FireTimer(pick) => {
                let ids: Vec<TimerId> = self.timers.keys().copied().collect();
                match ids.get(pick % ids.len().max(1)) {
                    Some(&id) => self.fire(id),
                    None => Ok(()),
                }
            }
            Op::SpawnsFail(fail) => {
                self.spawns_fail = fail;
                Ok(())
            }
            Op::Shutdown => self.shut_down(),
        }
    }

    fn shut_down(&mut self) -> Result<(), TestCaseError> {
        if self.shutdown_sent {
            return Ok(());
        }
        self.shutdown_sent = true;
        self.feed(Event::Shutdown)
    }

    /// After the random steps: shut down, and play the world out the way a
    /// real node would (processes die of the signals they get, checks answer,
    /// timers fire in deadline order) until nothing is left to happen.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        self.shut_down()?;
        for _ in 0..10_000 {
            if let Some((service, run, check)) = self.checks.pop() {
                self.feed(Event::CheckDone {
                    service,
                    run,
                    check,
                    passed: false,
                })?;
                continue;
            }
            // A signalled main process dies of it; a group killed by SIGKILL dies whole.
            let signalled = self
                .processes
                .iter()
                .find(|(_, p)| p.main_alive && !p.signalled.is_empty())
                .map(|(pid, p)| (*pid, p.signalled.last().copied().unwrap_or(15)));
            if let Some((pid, signal)) = signalled {
                self.exit(pid, ExitStatus::Signal(signal), signal != SIGKILL_NO)?;
                continue;
            }
            let killed = self
                .processes
                .iter()
                .find(|(pgid, p)| {
                    !p.main_alive
                        && p.others_alive
                        && (p.signalled.contains(&SIGKILL_NO) || !self.watched.contains(pgid))
                })
                .map(|(pgid, _)| *pgid);
            if let Some(pgid) = killed {
                self.group_dies(pgid)?;
                continue;
            }
            let next = self
                .timers
                .iter()
                .min_by_key(|(id, at)| (**at, **id))
                .map(|(id, _)| *id);
            match next {
                Some(id) => self.fire(id)?,
                None => break,
            }
        }
        prop_assert_eq!(
            self.shutdown_completions,
            1,
            "shutdown did not complete once"
        );
        prop_assert!(
            self.timers.is_empty(),
            "timers still armed after shutdown: {:?}",
            self.timers
        );
        let alive: Vec<&Process> = self.processes.values().filter(|p| p.main_alive).collect();
        prop_assert!(
            alive.is_empty(),
            "processes alive after shutdown: {alive:?}"
        );
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("SPORE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn supervisor_invariants_hold_for_any_sequence_of_events(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let mut model = Model::new();
        model.feed(Event::Boot)?;
        for op in ops {
            let was_shut = model.shutdown_completions;
            model.step(op)?;
            prop_assert!(model.shutdown_completions <= 1);
            prop_assert!(was_shut <= model.shutdown_completions);
        }
        model.finish()?;
    }
}

#[test]
fn the_model_sees_a_plain_boot_and_shutdown_through() {
    let mut model = Model::new();
    model.feed(Event::Boot).unwrap();
    let started: HashMap<&str, usize> =
        model.processes.values().fold(HashMap::new(), |mut m, p| {
            *m.entry(p.service.as_str()).or_default() += 1;
            m
        });
    assert_eq!(started.get("a"), Some(&1), "a starts at boot: {started:?}");
    model.finish().unwrap();
    assert_eq!(model.shutdown_completions, 1);
}
