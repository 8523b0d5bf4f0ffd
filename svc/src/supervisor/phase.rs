//! What a unit is doing inside the supervisor, with what belongs to it.
//!
//! [`State`] is what operators see; a [`Phase`] is the same thing with the
//! data each state owns carried by its variant: the pid only while a process
//! may run, the start timer and the checks only while it is up, the backoff
//! timer only while it waits, the group and grace timer only while it stops.
//! So a pid in a stopped unit, or a check timer outliving its run, cannot be
//! written down, and leaving a phase drops (and cancels) what it held.

use std::time::{Duration, Instant};

use super::{AfterStop, BlockReason, ExitStatus, State, TimerId};

/// One health check's progress in the current run.
#[derive(Debug, Clone, Default)]
pub(super) struct CheckState {
    pub(super) passed_once: bool,
    /// Failed checks before the first pass.
    pub(super) misses: u32,
    pub(super) failures: u32,
    pub(super) timer: Option<TimerId>,
}

/// A process that runs: its pid (= its process group) and what watches it.
#[derive(Debug, Clone)]
pub(super) struct Run {
    pub(super) pid: i32,
    /// Bounds the wait for the first passing checks.
    pub(super) start_timer: Option<TimerId>,
    /// One per health check of the definition.
    pub(super) checks: Vec<CheckState>,
}

/// A stop in progress: what still runs and what happens once it is gone.
#[derive(Debug, Clone)]
pub(super) struct Stop {
    /// The main process, until its exit is handled (None: stopped before
    /// its spawn was reported).
    pub(super) pid: Option<i32>,
    /// The group whose leader exited, while members linger.
    pub(super) lingering: Option<i32>,
    /// Fires SIGKILL at the group when the stop takes too long.
    pub(super) grace: Option<TimerId>,
    /// Decided when the stop began (or last asked for).
    pub(super) after: AfterStop,
}

/// A unit's [`State`] with the data that belongs to it.
#[derive(Debug, Clone)]
pub(super) enum Phase {
    Inactive,
    Blocked {
        on: String,
        reason: BlockReason,
    },
    /// A spawn was ordered; no pid yet.
    Starting,
    Running(Run),
    Ready(Run),
    Unhealthy(Run),
    /// A target whose requirements are ready: ready with no process.
    Reached,
    Succeeded,
    Exited(ExitStatus),
    Failed(String),
    Backoff {
        until: Instant,
        delay: Duration,
        timer: TimerId,
    },
    Stopping(Stop),
    Stopped,
}

impl Phase {
    /// What operators see.
    pub(super) fn state(&self) -> State {
        match self {
            Phase::Inactive => State::Inactive,
            Phase::Blocked { on, reason } => State::Blocked {
                on: on.clone(),
                reason: *reason,
            },
            Phase::Starting => State::Starting,
            Phase::Running(_) => State::Running,
            Phase::Ready(_) | Phase::Reached => State::Ready,
            Phase::Unhealthy(_) => State::Unhealthy,
            Phase::Succeeded => State::Succeeded,
            Phase::Exited(status) => State::Exited(*status),
            Phase::Failed(reason) => State::Failed(reason.clone()),
            Phase::Backoff { until, delay, .. } => State::Backoff {
                until: *until,
                delay: *delay,
            },
            Phase::Stopping(_) => State::Stopping,
            Phase::Stopped => State::Stopped,
        }
    }

    /// True when both show operators the same state (no allocation).
    pub(super) fn shows_as(&self, other: &Phase) -> bool {
        match (self, other) {
            (Phase::Blocked { on, reason }, Phase::Blocked { on: o, reason: r }) => {
                on == o && reason == r
            }
            (Phase::Exited(a), Phase::Exited(b)) => a == b,
            (Phase::Failed(a), Phase::Failed(b)) => a == b,
            (
                Phase::Backoff { until, delay, .. },
                Phase::Backoff {
                    until: u, delay: d, ..
                },
            ) => until == u && delay == d,
            _ => self.word() == other.word(),
        }
    }

    fn word(&self) -> &'static str {
        match self {
            Phase::Ready(_) | Phase::Reached => "ready",
            Phase::Running(_) => "running",
            Phase::Unhealthy(_) => "unhealthy",
            Phase::Stopping(_) => "stopping",
            Phase::Starting => "starting",
            Phase::Inactive => "inactive",
            Phase::Blocked { .. } => "blocked",
            Phase::Succeeded => "succeeded",
            Phase::Exited(_) => "exited",
            Phase::Failed(_) => "failed",
            Phase::Backoff { .. } => "backoff",
            Phase::Stopped => "stopped",
        }
    }

    /// True when dependents may start.
    pub(super) fn is_ready(&self) -> bool {
        matches!(self, Phase::Ready(_) | Phase::Reached | Phase::Succeeded)
    }

    /// The run of a process that is up (running, ready or unhealthy).
    pub(super) fn run(&self) -> Option<&Run> {
        match self {
            Phase::Running(run) | Phase::Ready(run) | Phase::Unhealthy(run) => Some(run),
            _ => None,
        }
    }

    /// The same, to change its checks.
    pub(super) fn run_mut(&mut self) -> Option<&mut Run> {
        match self {
            Phase::Running(run) | Phase::Ready(run) | Phase::Unhealthy(run) => Some(run),
            _ => None,
        }
    }

    /// The main process, while one runs.
    pub(super) fn pid(&self) -> Option<i32> {
        match self {
            Phase::Stopping(stop) => stop.pid,
            other => other.run().map(|run| run.pid),
        }
    }

    /// A process may exist: a spawn was ordered, one runs, or a stop waits.
    pub(super) fn alive(&self) -> bool {
        matches!(self, Phase::Starting | Phase::Stopping(_)) || self.run().is_some()
    }

    /// Every timer this phase holds.
    pub(super) fn timers(&self) -> Vec<TimerId> {
        match self {
            Phase::Backoff { timer, .. } => vec![*timer],
            Phase::Stopping(stop) => stop.grace.into_iter().collect(),
            other => other.run().map_or_else(Vec::new, |run| {
                run.start_timer
                    .into_iter()
                    .chain(run.checks.iter().filter_map(|c| c.timer))
                    .collect()
            }),
        }
    }
}
