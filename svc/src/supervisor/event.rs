//! The facts the supervisor is told and the orders it gives.

use std::time::Duration;

use super::state::{ExitStatus, State};
use crate::service::Service;

/// Identifies one armed timer. Never reused.
pub type TimerId = u64;

/// A fact reported to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start every service whose status is `start`.
    Boot,
    /// An operator asks to start a service (and what it requires or wants).
    Start(String),
    /// An operator asks to stop a service.
    Stop(String),
    /// An operator asks to stop a service if it runs, then start it again.
    Restart(String),
    /// The process for `service`'s spawn number `run` exists.
    Spawned {
        /// Service name.
        service: String,
        /// The spawn number from [`Action::Spawn`].
        run: u64,
        /// Its pid, also its process group and session id.
        pid: i32,
    },
    /// The process could not be created or could not exec.
    SpawnFailed {
        /// Service name.
        service: String,
        /// The spawn number from [`Action::Spawn`].
        run: u64,
        /// 127 when the program was not found, 126 when it cannot be run.
        code: i32,
        /// What the system said.
        error: String,
    },
    /// A child was reaped.
    Exited {
        /// Its pid.
        pid: i32,
        /// How it ended.
        status: ExitStatus,
        /// True when no process is left in its process group.
        group_empty: bool,
    },
    /// A process group being watched has no member left.
    GroupEmpty {
        /// The group.
        pgid: i32,
    },
    /// A health check finished.
    CheckDone {
        /// Service name.
        service: String,
        /// The spawn number it was run for.
        run: u64,
        /// Index into the service's health checks.
        check: usize,
        /// Whether it passed.
        passed: bool,
    },
    /// A timer armed by [`Action::ArmTimer`] went off.
    TimerFired(TimerId),
    /// Stop everything in reverse dependency order, then report
    /// [`Action::ShutdownComplete`].
    Shutdown,
    /// Add a service, or replace the definition of one with the same name
    /// (validated by the caller against the others). A running service
    /// restarts with the new definition.
    Deploy(Box<Service>),
    /// [`Event::Deploy`] for many services at once (a reload): the graph is
    /// built once for all of them, not once each.
    DeployAll(Vec<Service>),
    /// Stop a service and forget it.
    Remove(String),
}

/// An order for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start `service`'s process in its own session; answer with
    /// [`Event::Spawned`] or [`Event::SpawnFailed`] carrying `run`.
    Spawn {
        /// Service name.
        service: String,
        /// Spawn number to echo back.
        run: u64,
    },
    /// Send `signal` to every process in group `pgid`.
    Signal {
        /// The process group.
        pgid: i32,
        /// The signal number.
        signal: i32,
    },
    /// Report [`Event::GroupEmpty`] once group `pgid` has no member left.
    WatchGroup {
        /// The process group.
        pgid: i32,
    },
    /// Report [`Event::TimerFired`] with `id` after `after`.
    ArmTimer {
        /// The timer.
        id: TimerId,
        /// The delay.
        after: Duration,
    },
    /// Forget a timer; it must not fire.
    CancelTimer(TimerId),
    /// Run health check `check` of `service`; answer with [`Event::CheckDone`].
    RunCheck {
        /// Service name.
        service: String,
        /// Spawn number to echo back.
        run: u64,
        /// Index into the service's health checks.
        check: usize,
    },
    /// `service` is now in `state` (for the log).
    Changed {
        /// Service name.
        service: String,
        /// The new state.
        state: State,
    },
    /// Every service has stopped after [`Event::Shutdown`].
    ShutdownComplete,
}

/// SIGKILL's number, sent when the stop timeout runs out.
pub const SIGKILL: i32 = 9;
