//! What a service is doing, in words an operator can trust.

use std::fmt;
use std::time::{Duration, Instant};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It called exit with this code (127/126: the program could not be run).
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// The kernel's OOM killer killed it (SIGKILL) in its cgroup, whose
    /// `memory.max` was `limit` bytes when it had one.
    OomKilled {
        /// The service's memory limit at the kill, if it had one.
        limit: Option<u64>,
    },
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
            // SIGKILL, as a shell sees it.
            ExitStatus::OomKilled { .. } => 128 + 9,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exited with code {code}"),
            ExitStatus::Signal(signal) => write!(f, "killed by signal {signal}"),
            ExitStatus::OomKilled { limit: None } => write!(f, "killed by the OOM killer"),
            ExitStatus::OomKilled { limit: Some(bytes) } => {
                write!(f, "killed by the OOM killer at {}", Bytes(*bytes))
            }
        }
    }
}

/// A byte count the way an operator reads it: `512 MiB`, `1.5 GiB`,
/// `300 KiB`, `12 bytes` (powers of 1024, as the limits are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 1024 {
            return write!(f, "{} bytes", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = "KiB";
        for next in ["MiB", "GiB", "TiB", "PiB"] {
            if value < 1024.0 {
                break;
            }
            value /= 1024.0;
            unit = next;
        }
        if value.fract() == 0.0 {
            write!(f, "{value} {unit}")
        } else {
            write!(f, "{value:.1} {unit}")
        }
    }
}

/// Why a service that should run is not starting yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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

#[cfg(test)]
mod bytes_tests {
    use super::*;

    #[test]
    fn byte_counts_read_as_an_operator_writes_them() {
        assert_eq!(Bytes(12).to_string(), "12 bytes");
        assert_eq!(Bytes(300 * 1024).to_string(), "300 KiB");
        assert_eq!(Bytes(512 << 20).to_string(), "512 MiB");
        assert_eq!(Bytes(3 << 29).to_string(), "1.5 GiB");
        assert_eq!(
            ExitStatus::OomKilled {
                limit: Some(32 << 20)
            }
            .to_string(),
            "killed by the OOM killer at 32 MiB"
        );
        assert_eq!(ExitStatus::OomKilled { limit: None }.shell_code(), 137);
    }
}
