//! What a service is doing, in words an operator can trust.

use std::fmt;
use std::time::{Duration, Instant};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit with this code (127/126: the program could not be run).
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The shell convention: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => 128 + signal,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exited with code {code}"),
            ExitStatus::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// Why a service that should run is not starting yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// A dependency is not ready yet.
    Waiting,
    /// A required dependency failed or is stopped, and will not come up by itself.
    DependencyDown,
    /// A conflicting service is still running.
    Conflict,
}

/// The state of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Never started, or not wanted.
    Inactive,
    /// Wants to start, held back by `on`.
    Blocked {
        /// The service it waits for.
        on: String,
        /// Why.
        reason: BlockReason,
    },
    /// Asked to spawn; no pid yet.
    Starting,
    /// The process runs; a daemon with health checks has not passed them yet,
    /// or a oneshot has not finished.
    Running,
    /// Dependents may start: a daemon that runs (and passed its checks) or a
    /// target whose requirements are ready.
    Ready,
    /// A daemon that was ready and now fails its health checks.
    Unhealthy,
    /// A oneshot that exited 0.
    Succeeded,
    /// The process ended and will not be restarted.
    Exited(ExitStatus),
    /// Gave up: too many restarts, or it could not be started.
    Failed(String),
    /// Waiting to restart after a failure.
    Backoff {
        /// When the restart happens.
        until: Instant,
        /// The whole delay chosen (the backoff step).
        delay: Duration,
    },
    /// The stop signal was sent; waiting for the process group to end.
    Stopping,
    /// Stopped on request.
    Stopped,
}

impl State {
    /// A short lowercase word for the state, for tables and JSON.
    pub fn word(&self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Blocked { .. } => "blocked",
            State::Starting => "starting",
            State::Running => "running",
            State::Ready => "ready",
            State::Unhealthy => "unhealthy",
            State::Succeeded => "succeeded",
            State::Exited(_) => "exited",
            State::Failed(_) => "failed",
            State::Backoff { .. } => "backoff",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        }
    }

    /// True when dependents may start.
    pub fn is_ready(&self) -> bool {
        matches!(self, State::Ready | State::Succeeded)
    }

    /// Describes the state with its details, relative to `now`.
    pub fn describe(&self, now: Instant) -> String {
        match self {
            State::Blocked { on, reason } => match reason {
                BlockReason::Waiting => format!("blocked: waiting for {on}"),
                BlockReason::DependencyDown => format!("blocked: requires {on}, which is down"),
                BlockReason::Conflict => format!("blocked: conflicts with running {on}"),
            },
            State::Exited(status) => format!("exited: {status}"),
            State::Failed(reason) => format!("failed: {reason}"),
            State::Backoff { until, .. } => format!(
                "backoff: restart in {} ms",
                until.saturating_duration_since(now).as_millis()
            ),
            other => other.word().to_owned(),
        }
    }
}
