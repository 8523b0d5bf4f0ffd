//! The supervisor's decisions as a pure state machine.
//!
//! `(state, event) -> (state, actions)`: [`Supervisor::handle`] takes one
//! [`Event`] (a fact: a process exited, a timer fired, an operator asked for
//! something) and returns the [`Action`]s the runtime must carry out (spawn,
//! signal, arm a timer). It never blocks and never does I/O, so ordering,
//! readiness, backoff and shutdown are tested without a single process.
//! Its only clock is the `now` each event is handled at.
//!
//! # Units and their states
//!
//! Every service (or target) is a *unit*. A unit is either *wanted* (it
//! should be up: its status is `start`, an operator started it, or
//! something that is wanted requires or wants it) or not, and it is in one
//! [`State`]:
//!
//! ```text
//!            ┌──────────── settle(): dependencies ready ────────────┐
//!            │                                                      ▼
//!  Inactive ─┴─▶ Blocked ──▶ (gate opens) ──▶ Starting ──Spawned──▶ Running ──checks pass──▶ Ready
//!     ▲                                           │                  │   ▲                    │
//!     │                                      SpawnFailed             │   └── Unhealthy ◀──────┘
//!     │                                           ▼                  ▼        (retries failures)
//!     └── backoff timer ◀── Backoff ◀──── exit, restart allowed ◀────┘
//!                             │
//!                   max_restarts reached ──▶ Failed        exit, no restart ──▶ Exited / Succeeded
//!
//!  any live state ──stop──▶ Stopping ──group empty──▶ Stopped (or Inactive to restart,
//!                              │                         Backoff on failure, Blocked on a dependency)
//!                              └──grace timer──▶ SIGKILL to the group, still Stopping
//! ```
//!
//! - *Starting* means a spawn was ordered and no pid is known yet; *Running*
//!   means the process exists but is not ready (checks not passed, or a
//!   oneshot not finished); *Ready* and *Succeeded* release dependents.
//! - A *Stopping* unit has sent its stop signal and waits for its whole
//!   process group to be empty — first the main process ([`Event::Exited`]
//!   with `group_empty`), then, if children linger, [`Event::GroupEmpty`] —
//!   or for the grace timer, after which it sends SIGKILL and keeps waiting.
//!   What it does next was decided when the stop began (`AfterStop`).
//!
//! # Invariants
//!
//! These hold after every call to [`Supervisor::handle`]; the property test
//! (`properties.rs`) checks the observable ones on random event sequences.
//!
//! 1. A unit has a pid only in Running, Ready, Unhealthy or Stopping (the
//!    internal `Phase` carries it in those variants and nowhere else), and
//!    at most one process of a unit runs at a time: a unit is spawned again
//!    only after the exit of its previous process was handled.
//! 2. No signal ever goes to a process group ≤ 1 (spore's own group, or
//!    every process): pids come only from [`Event::Spawned`].
//! 3. Every armed timer is recorded with its unit and purpose until it
//!    fires or is cancelled; a timer is cancelled at most once; a timer id
//!    is held by the phase it belongs to (start timeout and checks by the
//!    run, backoff by Backoff, grace by Stopping), and entering another
//!    phase cancels what the old one held, so an idle node has no timer
//!    armed.
//! 4. Events for an old run (a stale spawn, a late check result, a fired
//!    timer that was cancelled) change nothing; a stale spawn's process is
//!    killed.
//! 5. A dependent starts only when every `requires` is Ready or Succeeded and
//!    every `after`/`wants` that is wanted is ready or settled down; two
//!    conflicting units never run at once.
//! 6. After [`Event::Shutdown`] nothing starts; units stop dependents
//!    first; [`Action::ShutdownComplete`] is emitted exactly once, when no
//!    unit is alive.

mod checks;
mod event;
mod handoff;
mod lifecycle;
mod orders;
mod phase;
#[cfg(test)]
mod properties;
mod shutdown;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use event::{Action, Event, TimerId, SIGKILL};
pub use handoff::{Adopted, Handoff, HandoffRefused};
pub use state::{BlockReason, Bytes, ExitStatus, State};

use crate::graph::Graph;
use crate::service::{Kind, RestartPolicy, Service};
use phase::{CheckState, Phase, Run, Stop};

/// Before a daemon's first passing check, checks repeat at most this far
/// apart, so dependents start soon after it is up rather than a whole
/// `interval_ms` later.
pub const FIRST_PASS_INTERVAL: Duration = Duration::from_millis(250);

/// The first retry after a check fails before the first pass; each further
/// miss doubles the wait up to [`FIRST_PASS_INTERVAL`]. A daemon that is up
/// a few milliseconds after its spawn is seen ready then, not 250 ms later.
pub const FIRST_RETRY: Duration = Duration::from_millis(10);

/// How long to wait before the next check once `misses` checks have failed
/// and none has passed yet: 10, 20, 40, 80, 160, 250, 250 … ms, never more
/// than the check's own interval.
pub fn first_pass_retry(misses: u32, interval: Duration) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1 << misses.saturating_sub(1).min(16));
    doubled.min(FIRST_PASS_INTERVAL).min(interval)
}

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Backoff,
    Grace,
    StartTimeout,
    Check(usize),
}

/// What happens once a stopping service's processes are gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "then", content = "with", rename_all = "snake_case")]
enum AfterStop {
    /// Stay stopped.
    Stay,
    /// Start again at once (an operator's restart).
    Start,
    /// Count it as a failure and restart with backoff (unhealthy, start timeout).
    Fail(String),
    /// Wait, blocked on a required service that went down.
    Block(String),
    /// Its main process ended by itself with this status and what it left
    /// in its group (its cgroup) is gone now: succeed, restart with
    /// backoff or give up, as the exit says.
    Exited(ExitStatus),
}

#[derive(Debug, Clone)]
struct Unit {
    service: Service,
    phase: Phase,
    since: Option<Instant>,
    want_up: bool,
    /// The number of the latest spawn ordered: events for an older run are stale.
    run: u64,
    /// When the latest process was reported spawned.
    started_at: Option<Instant>,
    restarts: u32,
    last_exit: Option<ExitStatus>,
    last_error: Option<String>,
    /// Removed by an operator: kept only until its processes are gone, so
    /// indexes held by timers stay valid.
    removed: bool,
}

impl Unit {
    fn new(service: Service) -> Self {
        Self {
            service,
            phase: Phase::Inactive,
            since: None,
            want_up: false,
            run: 0,
            started_at: None,
            restarts: 0,
            last_exit: None,
            last_error: None,
            removed: false,
        }
    }

    fn alive(&self) -> bool {
        self.phase.alive()
    }

    fn pending(&self) -> bool {
        self.want_up
            && matches!(
                self.phase,
                Phase::Inactive | Phase::Blocked { .. } | Phase::Stopped
            )
    }

    /// Down and not coming up by itself.
    fn settled_down(&self) -> bool {
        match self.phase {
            Phase::Failed(_) | Phase::Exited(_) => true,
            Phase::Inactive | Phase::Stopped => !self.want_up,
            _ => false,
        }
    }

    /// Failed, exited or succeeded: a process ran and will not run again by itself.
    fn ended(&self) -> bool {
        matches!(
            self.phase,
            Phase::Failed(_) | Phase::Exited(_) | Phase::Succeeded
        )
    }
}

/// A read-only view of one service for status reports.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitView<'a> {
    /// The definition.
    pub service: &'a Service,
    /// The current state.
    pub state: State,
    /// When it entered that state.
    pub since: Option<Instant>,
    /// The main process, while it runs.
    pub pid: Option<i32>,
    /// Whether it should be up.
    pub wanted: bool,
    /// Restarts since it was last stable.
    pub restarts: u32,
    /// How its last process ended.
    pub last_exit: Option<ExitStatus>,
    /// The last spawn error.
    pub last_error: Option<&'a str>,
}

/// Decides what every service should do next. See the module docs.
#[derive(Debug, Clone)]
pub struct Supervisor {
    units: Vec<Unit>,
    index: HashMap<String, usize>,
    /// Units in start order.
    order: Vec<usize>,
    /// `ordered_after[u]`: units that must wait for `u` (requires/after/wants).
    ordered_after: Vec<Vec<usize>>,
    /// `required_by[u]`: units that `requires` `u`.
    required_by: Vec<Vec<usize>>,
    /// Symmetric conflicts.
    conflicts: Vec<Vec<usize>>,
    /// Each armed timer: its unit, what it is for, and when it is due
    /// (the due time is what a live re-exec hands on).
    timers: HashMap<TimerId, (usize, Purpose, Instant)>,
    next_timer: TimerId,
    shutting_down: bool,
    shutdown_reported: bool,
    actions: Vec<Action>,
    /// The time of the event being handled: the supervisor's only clock.
    now: Instant,
}

impl Supervisor {
    /// A supervisor for a validated set of services (see [`crate::load_dir`]);
    /// every service starts [`State::Inactive`]. `now` is the time of its
    /// creation; after that it learns the time only from [`Supervisor::handle`].
    pub fn new(services: Vec<Service>, now: Instant) -> Self {
        let mut supervisor = Self {
            units: services.into_iter().map(Unit::new).collect(),
            index: HashMap::new(),
            order: Vec::new(),
            ordered_after: Vec::new(),
            required_by: Vec::new(),
            conflicts: Vec::new(),
            timers: HashMap::new(),
            next_timer: 1,
            shutting_down: false,
            shutdown_reported: false,
            actions: Vec::new(),
            now,
        };
        supervisor.rebuild();
        supervisor
    }

    /// Recomputes the name index, start order and relations from the
    /// units that are not removed (after a deploy or a removal).
    fn rebuild(&mut self) {
        let live: Vec<usize> = (0..self.units.len())
            .filter(|&u| self.units.get(u).is_some_and(|x| !x.removed))
            .collect();
        self.index = live
            .iter()
            .filter_map(|&u| self.units.get(u).map(|x| (x.service.name.clone(), u)))
            .collect();
        let n = self.units.len();
        let mut ordered_after = vec![Vec::new(); n];
        let mut required_by = vec![Vec::new(); n];
        let mut conflicts = vec![Vec::new(); n];
        for &u in &live {
            let Some(unit) = self.units.get(u) else {
                continue;
            };
            let deps = &unit.service.dependencies;
            for d in deps.ordering().filter_map(|d| self.index.get(&d.name)) {
                push_unique(&mut ordered_after, *d, u);
            }
            for d in deps.requires.iter().filter_map(|d| self.index.get(&d.name)) {
                push_unique(&mut required_by, *d, u);
            }
            for c in deps
                .conflicts
                .iter()
                .filter_map(|d| self.index.get(&d.name))
            {
                push_unique(&mut conflicts, *c, u);
                push_unique(&mut conflicts, u, *c);
            }
        }
        let services: Vec<Service> = live
            .iter()
            .filter_map(|&u| self.units.get(u).map(|x| x.service.clone()))
            .collect();
        let plan = Graph::new(&services).plan();
        self.order = plan
            .start_order()
            .chain(plan.unordered.iter())
            .filter_map(|name| self.index.get(name).copied())
            .collect();
        self.ordered_after = ordered_after;
        self.required_by = required_by;
        self.conflicts = conflicts;
    }

    /// Every service that is not removed, in start order.
    pub fn services(&self) -> Vec<&Service> {
        self.order
            .iter()
            .filter_map(|&u| self.units.get(u))
            .map(|x| &x.service)
            .collect()
    }

    /// Feeds one fact in at time `now`; returns what must happen next.
    /// Never blocks, never does I/O.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        self.now = now;
        match event {
            Event::Boot => {
                let wanted: Vec<usize> = (0..self.units.len())
                    .filter(|&u| {
                        self.unit(u)
                            .is_some_and(|x| x.service.status == crate::service::Status::Start)
                    })
                    .collect();
                for u in wanted {
                    self.pull_up(u);
                }
            }
            Event::Start(name) => self.on_start(&name),
            Event::Stop(name) => self.on_stop(&name),
            Event::Restart(name) => self.on_restart(&name),
            Event::Spawned { service, run, pid } => self.on_spawned(&service, run, pid),
            Event::SpawnFailed {
                service,
                run,
                code,
                error,
            } => self.on_spawn_failed(&service, run, code, error),
            Event::Exited {
                pid,
                status,
                group_empty,
            } => self.on_exited(pid, status, group_empty),
            Event::GroupEmpty { pgid } => {
                let found = self.units.iter().position(
                    |x| matches!(&x.phase, Phase::Stopping(stop) if stop.lingering == Some(pgid)),
                );
                if let Some(u) = found {
                    self.finish_stop(u);
                }
            }
            Event::CheckDone {
                service,
                run,
                check,
                passed,
            } => self.on_check(&service, run, check, passed),
            Event::TimerFired(id) => self.on_timer(id),
            Event::Shutdown => self.on_shutdown(),
            Event::Deploy(service) => self.on_deploy(vec![*service]),
            Event::DeployAll(services) => self.on_deploy(services),
            Event::Remove(name) => self.on_remove(&name),
        }
        self.settle();
        if self.shutting_down {
            self.shutdown_step();
        }
        std::mem::take(&mut self.actions)
    }

    /// The view of service `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<UnitView<'_>> {
        self.index.get(name).and_then(|&u| self.view(u))
    }

    /// Every service in start order.
    pub fn list(&self) -> Vec<UnitView<'_>> {
        self.order.iter().filter_map(|&u| self.view(u)).collect()
    }

    /// True once [`Event::Shutdown`] was handled.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn view(&self, u: usize) -> Option<UnitView<'_>> {
        let x = self.unit(u)?;
        Some(UnitView {
            service: &x.service,
            state: x.phase.state(),
            since: x.since,
            pid: x.phase.pid(),
            wanted: x.want_up,
            restarts: x.restarts,
            last_exit: x.last_exit,
            last_error: x.last_error.as_deref(),
        })
    }

    fn unit(&self, u: usize) -> Option<&Unit> {
        self.units.get(u)
    }

    fn unit_mut(&mut self, u: usize) -> Option<&mut Unit> {
        self.units.get_mut(u)
    }

    fn now(&self) -> Instant {
        self.now
    }

    /// Moves `u` into `phase`: the timers the old phase held and the new
    /// one does not are cancelled, and operators hear of a changed state.
    fn enter(&mut self, u: usize, phase: Phase) {
        let now = self.now();
        let Some(x) = self.units.get_mut(u) else {
            return;
        };
        let old = std::mem::replace(&mut x.phase, phase);
        let shows = old.shows_as(&x.phase);
        let kept = x.phase.timers();
        let changed = (!shows).then(|| (x.service.name.clone(), x.phase.state()));
        if !shows {
            x.since = Some(now);
        }
        for id in old.timers().into_iter().filter(|id| !kept.contains(id)) {
            self.cancel(Some(id));
        }
        if let Some((service, state)) = changed {
            self.actions.push(Action::Changed { service, state });
        }
    }

    // ---- timers -------------------------------------------------------

    fn arm(&mut self, u: usize, purpose: Purpose, after: Duration) -> TimerId {
        let id = self.next_timer;
        self.next_timer += 1;
        let due = self.now() + after;
        self.timers.insert(id, (u, purpose, due));
        self.actions.push(Action::ArmTimer { id, after });
        id
    }

    fn cancel(&mut self, id: Option<TimerId>) {
        if let Some(id) = id {
            if self.timers.remove(&id).is_some() {
                self.actions.push(Action::CancelTimer(id));
            }
        }
    }

    // ---- requests -----------------------------------------------------

    /// Marks `u` and everything it requires or wants (transitively) as wanted.
    fn pull_up(&mut self, u: usize) {
        let mut stack = vec![u];
        while let Some(next) = stack.pop() {
            let Some(x) = self.units.get_mut(next) else {
                continue;
            };
            if x.want_up {
                continue;
            }
            x.want_up = true;
            if matches!(x.phase, Phase::Failed(_) | Phase::Exited(_)) {
                x.restarts = 0;
                self.enter(next, Phase::Inactive);
            }
            let Some(x) = self.units.get(next) else {
                continue;
            };
            let deps = &x.service.dependencies;
            let needed: Vec<usize> = deps
                .requires
                .iter()
                .chain(&deps.wants)
                .filter_map(|d| self.index.get(&d.name).copied())
                .collect();
            stack.extend(needed);
        }
    }
}

/// The delay before restart number `restarts + 1`: `first` doubled once per
/// earlier restart, capped at `max`.
pub fn backoff_delay(first: Duration, max: Duration, restarts: u32) -> Duration {
    let factor = 1u32.checked_shl(restarts.min(31)).unwrap_or(u32::MAX);
    first.checked_mul(factor).unwrap_or(max).min(max)
}

fn push_unique(lists: &mut [Vec<usize>], at: usize, value: usize) {
    if let Some(list) = lists.get_mut(at) {
        if !list.contains(&value) {
            list.push(value);
        }
    }
}
