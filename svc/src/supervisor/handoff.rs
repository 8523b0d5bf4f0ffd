//! The supervisor's state handed from one spore to the next across a live
//! re-exec, and taken up again.
//!
//! [`Supervisor::handoff`] writes down, for every unit, what an operator
//! and the next decisions depend on: wanted or not, its phase with the
//! process it runs, restart count, last exit and error, and each timer as
//! the time left until it is due. [`Supervisor::adopt`] builds a supervisor
//! for the service files as the new binary reads them and puts every unit
//! it finds back in that phase, arming its timers again for the time that
//! was left: a restart waiting in backoff happens when it would have, a
//! stop's grace ends when it would have, and a health check that was
//! running when spore left runs again at once (its answer went to the old
//! process). Nothing is spawned for a unit that has a process.
//!
//! Times cross as milliseconds relative to the handoff, since an
//! `Instant` means nothing to another process.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Action, Supervisor};
use super::{AfterStop, BlockReason, CheckState, ExitStatus, Phase, Purpose, Run, Stop};
use crate::service::Service;

/// Why the supervisor's state cannot be handed on now (each passes
/// within moments: the caller tries again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffRefused {
    /// A spawn was ordered and its pid is not known yet.
    #[error("{0} is starting")]
    Starting(String),
    /// A removed service still stops: the next spore would not know it.
    #[error("{0} was removed and is still stopping")]
    Removing(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Every unit's state, ready to cross an exec (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    units: Vec<UnitHandoff>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UnitHandoff {
    name: String,
    wanted: bool,
    run: u64,
    restarts: u32,
    /// How long before the handoff it entered its state.
    since_ms: Option<u64>,
    /// How long before the handoff its process was reported spawned.
    started_ms: Option<u64>,
    last_exit: Option<ExitStatus>,
    last_error: Option<String>,
    phase: PhaseHandoff,
}

/// A timer as the time left until it is due.
type Left = u64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum PhaseHandoff {
    Inactive,
    Blocked {
        on: String,
        reason: BlockReason,
    },
    Running(RunHandoff),
    Ready(RunHandoff),
    Unhealthy(RunHandoff),
    Reached,
    Succeeded,
    Exited {
        status: ExitStatus,
    },
    Failed {
        reason: String,
    },
    Backoff {
        left_ms: Left,
        delay_ms: u64,
    },
    Stopping {
        pid: Option<i32>,
        lingering: Option<i32>,
        grace_left_ms: Option<Left>,
        after: AfterStop,
    },
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RunHandoff {
    pid: i32,
    start_timeout_left_ms: Option<Left>,
    checks: Vec<CheckHandoff>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CheckHandoff {
    passed_once: bool,
    misses: u32,
    failures: u32,
    /// None: the check was running at the handoff.
    next_left_ms: Option<Left>,
}

/// What [`Supervisor::adopt`] made.
#[derive(Debug)]
pub struct Adopted {
    /// The supervisor, every unit of the handoff that has a service file
    /// back in its phase.
    pub supervisor: Supervisor,
    /// What the runtime does now: arm the timers again, watch lingering
    /// groups, start what was pending.
    pub actions: Vec<Action>,
    /// Units of the handoff with no service file now (edited away or no
    /// longer valid), with the process each still ran: nobody supervises
    /// them any more.
    pub unknown: Vec<(String, i32)>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Handoff {
    /// The main process of every unit that has one (running, ready,
    /// unhealthy, or stopping before its exit was handled).
    pub fn pids(&self) -> Vec<(String, i32)> {
        self.units
            .iter()
            .filter_map(|unit| {
                let pid = match &unit.phase {
                    PhaseHandoff::Running(run)
                    | PhaseHandoff::Ready(run)
                    | PhaseHandoff::Unhealthy(run) => Some(run.pid),
                    PhaseHandoff::Stopping { pid, .. } => *pid,
                    _ => None,
                }?;
                Some((unit.name.clone(), pid))
            })
            .collect()
    }

    /// How many units it holds.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// True when it holds no unit.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

impl Supervisor {
    /// Every unit's state at `now`, for the next spore; refused while a
    /// spawn is in flight, a removed service stops, or the node shuts down.
    pub fn handoff(&self, now: Instant) -> Result<Handoff, HandoffRefused> {
        if self.shutting_down {
            return Err(HandoffRefused::ShuttingDown);
        }
        let left = |id: Option<u64>| -> Option<Left> {
            let (_, _, due) = self.timers.get(&id?)?;
            Some(millis(due.saturating_duration_since(now)))
        };
        let ago = |at: Option<Instant>| at.map(|t| millis(now.saturating_duration_since(t)));
        let mut units = Vec::with_capacity(self.units.len());
        for unit in &self.units {
            let name = &unit.service.name;
            if unit.removed {
                if unit.alive() {
                    return Err(HandoffRefused::Removing(name.clone()));
                }
                continue;
            }
            let run = |run: &Run| RunHandoff {
                pid: run.pid,
                start_timeout_left_ms: left(run.start_timer),
                checks: run
                    .checks
                    .iter()
                    .map(|check| CheckHandoff {
                        passed_once: check.passed_once,
                        misses: check.misses,
                        failures: check.failures,
                        next_left_ms: left(check.timer),
                    })
                    .collect(),
            };
            let phase = match &unit.phase {
                Phase::Starting => return Err(HandoffRefused::Starting(name.clone())),
                Phase::Inactive => PhaseHandoff::Inactive,
                Phase::Blocked { on, reason } => PhaseHandoff::Blocked {
                    on: on.clone(),
                    reason: *reason,
                },
                Phase::Running(r) => PhaseHandoff::Running(run(r)),
                Phase::Ready(r) => PhaseHandoff::Ready(run(r)),
                Phase::Unhealthy(r) => PhaseHandoff::Unhealthy(run(r)),
                Phase::Reached => PhaseHandoff::Reached,
                Phase::Succeeded => PhaseHandoff::Succeeded,
                Phase::Exited(status) => PhaseHandoff::Exited { status: *status },
                Phase::Failed(reason) => PhaseHandoff::Failed {
                    reason: reason.clone(),
                },
                Phase::Backoff { delay, timer, .. } => PhaseHandoff::Backoff {
                    left_ms: left(Some(*timer)).unwrap_or(0),
                    delay_ms: millis(*delay),
                },
                Phase::Stopping(stop) => PhaseHandoff::Stopping {
                    pid: stop.pid,
                    lingering: stop.lingering,
                    grace_left_ms: left(stop.grace),
                    after: stop.after.clone(),
                },
                Phase::Stopped => PhaseHandoff::Stopped,
            };
            units.push(UnitHandoff {
                name: name.clone(),
                wanted: unit.want_up,
                run: unit.run,
                restarts: unit.restarts,
                since_ms: ago(unit.since),
                started_ms: ago(unit.started_at),
                last_exit: unit.last_exit,
                last_error: unit.last_error.clone(),
                phase,
            });
        }
        Ok(Handoff { units })
    }

    /// A supervisor for `services` (the service files as read now) with
    /// the units of `handoff` back in their phases at `now`. Units the
    /// handoff does not name start as [`Supervisor::new`] leaves them and
    /// are started if their status says so; nothing else is started
    /// again. See the module docs.
    pub fn adopt(services: Vec<Service>, handoff: Handoff, now: Instant) -> Adopted {
        let mut supervisor = Supervisor::new(services, now);
        let mut unknown = Vec::new();
        let mut named = vec![false; supervisor.units.len()];
        for unit in handoff.units {
            let Some(&u) = supervisor.index.get(&unit.name) else {
                let pids = Handoff { units: vec![unit] }.pids();
                unknown.extend(pids);
                continue;
            };
            if let Some(seen) = named.get_mut(u) {
                *seen = true;
            }
            supervisor.take_up(u, unit, now);
        }
        // A service file that is new since the handoff: as at boot.
        let fresh: Vec<usize> = (0..supervisor.units.len())
            .filter(|&u| {
                !named.get(u).copied().unwrap_or(true)
                    && supervisor
                        .unit(u)
                        .is_some_and(|x| x.service.status == crate::service::Status::Start)
            })
            .collect();
        for u in fresh {
            supervisor.pull_up(u);
        }
        supervisor.settle();
        let actions = std::mem::take(&mut supervisor.actions);
        Adopted {
            supervisor,
            actions,
            unknown,
        }
    }

    /// Puts unit `u` back as `unit` says, its timers armed for what was left.
    fn take_up(&mut self, u: usize, unit: UnitHandoff, now: Instant) {
        let before = |ms: Option<u64>| ms.and_then(|ms| now.checked_sub(Duration::from_millis(ms)));
        let checks = self.unit(u).map_or(0, |x| x.service.health.len());
        let phase = match unit.phase {
            PhaseHandoff::Inactive | PhaseHandoff::Blocked { .. } => Phase::Inactive,
            PhaseHandoff::Running(run) => Phase::Running(self.rearm_run(u, run, checks)),
            PhaseHandoff::Ready(run) => Phase::Ready(self.rearm_run(u, run, checks)),
            PhaseHandoff::Unhealthy(run) => Phase::Unhealthy(self.rearm_run(u, run, checks)),
            PhaseHandoff::Reached => Phase::Reached,
            PhaseHandoff::Succeeded => Phase::Succeeded,
            PhaseHandoff::Exited { status } => Phase::Exited(status),
            PhaseHandoff::Failed { reason } => Phase::Failed(reason),
            PhaseHandoff::Backoff { left_ms, delay_ms } => {
                let left = Duration::from_millis(left_ms);
                Phase::Backoff {
                    until: now + left,
                    delay: Duration::from_millis(delay_ms),
                    timer: self.arm(u, Purpose::Backoff, left),
                }
            }
            PhaseHandoff::Stopping {
                pid,
                lingering,
                grace_left_ms,
                after,
            } => {
                let grace =
                    grace_left_ms.map(|ms| self.arm(u, Purpose::Grace, Duration::from_millis(ms)));
                if let Some(pgid) = lingering {
                    self.actions.push(Action::WatchGroup { pgid });
                }
                Phase::Stopping(Stop {
                    pid,
                    lingering,
                    grace,
                    after,
                })
            }
            PhaseHandoff::Stopped => Phase::Stopped,
        };
        if let Some(x) = self.unit_mut(u) {
            x.phase = phase;
            x.want_up = unit.wanted;
            x.run = unit.run;
            x.restarts = unit.restarts;
            x.since = before(unit.since_ms);
            x.started_at = before(unit.started_ms);
            x.last_exit = unit.last_exit;
            x.last_error = unit.last_error;
        }
    }

    /// A run with its start timeout and checks armed again; a check that
    /// was running (its answer went to the old process) runs at once, and
    /// so does one the service file has gained since.
    fn rearm_run(&mut self, u: usize, run: RunHandoff, checks: usize) -> Run {
        let start_timer = run
            .start_timeout_left_ms
            .map(|ms| self.arm(u, Purpose::StartTimeout, Duration::from_millis(ms)));
        let mut states = Vec::with_capacity(checks);
        for check in 0..checks {
            let was = run.checks.get(check);
            let left = was.and_then(|c| c.next_left_ms).unwrap_or(0);
            states.push(CheckState {
                passed_once: was.is_some_and(|c| c.passed_once),
                misses: was.map_or(0, |c| c.misses),
                failures: was.map_or(0, |c| c.failures),
                timer: Some(self.arm(u, Purpose::Check(check), Duration::from_millis(left))),
            });
        }
        Run {
            pid: run.pid,
            start_timer,
            checks: states,
        }
    }
}
