//! Calls that answer once a service has settled: `service.start`,
//! `service.restart` and `service.deploy` with `wait` answer when the
//! service is ready or has failed, not when it was asked to start, so an
//! operator's "ready" is true.
//!
//! A waiter follows the service's state changes. It is *armed* once the
//! service is on its way up (a restart first goes through stopping, which
//! must not count as a failure). Armed, it settles on:
//! - ready: a target or daemon ready, a oneshot that succeeded; a daemon
//!   without health checks must also stay up for [`STEADY`] (a daemon that
//!   exits 3 at once was never ready);
//! - failed: exited, failed, in backoff, unhealthy, blocked by a dependency
//!   that is down, or stopped meanwhile;
//! - timeout: its deadline passed first (the answer says the state then).
//!
//! A failure is answered [`DRAIN`] later, so the service's last lines
//! (read from its pipes after its exit was reported) are in the answer.
//!
//! No polling: a waiter moves only on the supervisor's own state changes
//! and its two timers.

use std::collections::HashMap;
use std::time::Duration;

use smol::channel::Sender;
use svc::service::Kind;
use svc::supervisor::{BlockReason, State};

use crate::reply::ApiError;

/// How long a daemon without health checks must stay up to count as ready.
pub const STEADY: Duration = Duration::from_secs(1);

/// How long a failed service's last output may take to arrive (its pipes
/// are read as lines, after the exit as a fact) before the answer goes.
pub const DRAIN: Duration = Duration::from_millis(200);

/// At most this many calls wait at once; more are refused (busy).
pub const MAX_WAITERS: usize = 256;

/// Where a waiter's answer goes.
pub type Answer = Sender<Result<serde_json::Value, ApiError>>;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ready (or succeeded).
    Ready,
    /// Failed (see the state).
    Failed,
    /// Not settled before the deadline.
    Timeout,
}

impl Outcome {
    /// `ready`, `failed` or `timeout`.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Ready => "ready",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
        }
    }
}

/// What to do with a waiter after a state change.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet.
    Keep,
    /// Ready, but must stay so for this long first.
    Steady(Duration),
    /// Failed: answer after this long, once its last lines are in.
    Drain(Duration),
    /// Answer now.
    Settle(Outcome),
}

struct Waiter {
    service: String,
    armed: bool,
    /// Failed; the answer waits [`DRAIN`] for the last lines.
    failing: bool,
    answer: Answer,
}

/// Every waiting call.
#[derive(Default)]
pub struct Waits {
    waiters: HashMap<u64, Waiter>,
    next: u64,
}

impl Waits {
    /// Registers a waiter for `service` (armed unless the service is
    /// stopping first); its id is for the timers. None when too many wait.
    pub fn add(&mut self, service: &str, state: &State, answer: Answer) -> Option<u64> {
        // Callers that hung up no longer wait.
        self.waiters.retain(|_, w| !w.answer.is_closed());
        if self.waiters.len() >= MAX_WAITERS {
            return None;
        }
        self.next += 1;
        let waiter = Waiter {
            service: service.to_owned(),
            armed: *state != State::Stopping,
            failing: false,
            answer,
        };
        self.waiters.insert(self.next, waiter);
        Some(self.next)
    }

    /// The service waiter `id` waits for.
    pub fn service(&self, id: u64) -> Option<&str> {
        self.waiters.get(&id).map(|w| w.service.as_str())
    }

    /// Ids of the waiters of `service`.
    pub fn of(&self, service: &str) -> Vec<u64> {
        self.waiters
            .iter()
            .filter(|(_, w)| w.service == service)
            .map(|(&id, _)| id)
            .collect()
    }

    /// The step for waiter `id` now that its service is in `state` (it has
    /// been in it for `held`); arms the waiter when the service is coming
    /// up.
    pub fn step(
        &mut self,
        id: u64,
        state: &State,
        kind: Kind,
        checks: bool,
        held: Duration,
    ) -> Step {
        let Some(waiter) = self.waiters.get_mut(&id) else {
            return Step::Keep;
        };
        match state {
            State::Starting
            | State::Running
            | State::Blocked {
                reason: BlockReason::Waiting,
                ..
            } => {
                waiter.armed = true;
                Step::Keep
            }
            _ if !waiter.armed => Step::Keep,
            State::Stopping => Step::Keep,
            State::Ready if kind == Kind::Daemon && !checks => match STEADY.checked_sub(held) {
                Some(left) if !left.is_zero() => Step::Steady(left),
                _ => Step::Settle(Outcome::Ready),
            },
            State::Ready | State::Succeeded => Step::Settle(Outcome::Ready),
            _ if waiter.failing => Step::Settle(Outcome::Failed),
            _ => {
                waiter.failing = true;
                Step::Drain(DRAIN)
            }
        }
    }

    /// Takes waiter `id` out, with the service it waited for and where its
    /// answer goes.
    pub fn take(&mut self, id: u64) -> Option<(String, Answer)> {
        self.waiters.remove(&id).map(|w| (w.service, w.answer))
    }

    /// How many calls wait.
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// True when no call waits.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svc::supervisor::ExitStatus;

    fn waits_with(state: &State) -> (Waits, u64) {
        let mut waits = Waits::default();
        let (tx, _rx) = smol::channel::bounded(1);
        let id = waits.add("a", state, tx).unwrap();
        // Keep the receiver alive for the waiter's lifetime in these tests.
        std::mem::forget(_rx);
        (waits, id)
    }

    #[test]
    fn a_restart_is_not_failed_by_its_own_stop() {
        let (mut waits, id) = waits_with(&State::Stopping);
        let step = |w: &mut Waits, s: &State| w.step(id, s, Kind::Daemon, true, Duration::ZERO);
        assert_eq!(step(&mut waits, &State::Stopped), Step::Keep);
        assert_eq!(step(&mut waits, &State::Starting), Step::Keep);
        let exited = State::Exited(ExitStatus::Code(3));
        assert_eq!(step(&mut waits, &exited), Step::Drain(DRAIN));
        assert_eq!(step(&mut waits, &exited), Step::Settle(Outcome::Failed));
    }

    #[test]
    fn a_daemon_without_checks_must_stay_up() {
        let (mut waits, id) = waits_with(&State::Starting);
        let early = waits.step(
            id,
            &State::Ready,
            Kind::Daemon,
            false,
            Duration::from_millis(200),
        );
        assert_eq!(early, Step::Steady(Duration::from_millis(800)));
        let late = waits.step(
            id,
            &State::Ready,
            Kind::Daemon,
            false,
            Duration::from_secs(5),
        );
        assert_eq!(late, Step::Settle(Outcome::Ready));
        let checked = waits.step(id, &State::Ready, Kind::Daemon, true, Duration::ZERO);
        assert_eq!(checked, Step::Settle(Outcome::Ready));
        let oneshot = waits.step(id, &State::Succeeded, Kind::Oneshot, false, Duration::ZERO);
        assert_eq!(oneshot, Step::Settle(Outcome::Ready));
    }

    #[test]
    fn a_dependency_down_fails_the_wait() {
        let (mut waits, id) = waits_with(&State::Inactive);
        let blocked = State::Blocked {
            on: "db".into(),
            reason: BlockReason::DependencyDown,
        };
        let step = waits.step(id, &blocked, Kind::Daemon, false, Duration::ZERO);
        assert_eq!(step, Step::Drain(DRAIN));
    }

    #[test]
    fn callers_that_left_free_their_place() {
        let mut waits = Waits::default();
        for _ in 0..MAX_WAITERS * 2 {
            let (tx, rx) = smol::channel::bounded(1);
            assert!(waits.add("a", &State::Starting, tx).is_some());
            drop(rx);
        }
        let (tx, _rx) = smol::channel::bounded(1);
        assert!(waits.add("a", &State::Starting, tx).is_some());
        assert_eq!(waits.len(), 1);
    }
}
