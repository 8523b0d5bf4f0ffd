//! Health check results and fired timers (start timeouts, checks, backoff, stop grace).

use super::*;

impl Supervisor {
    pub(super) fn on_check(&mut self, name: &str, run: u64, check: usize, passed: bool) {
        let now = self.now();
        let Some(u) = self.find(name, run) else {
            return;
        };
        let Some(x) = self.units.get_mut(u) else {
            return;
        };
        if x.pid.is_none() || !matches!(x.state, State::Running | State::Ready | State::Unhealthy) {
            return;
        }
        let Some(spec) = x.service.health.get(check).cloned() else {
            return;
        };
        let in_start_period = x
            .started_at
            .is_some_and(|t| now.saturating_duration_since(t) < spec.start_period);
        let policy = x.service.lifecycle.restart;
        let Some(state) = x.checks.get_mut(check) else {
            return;
        };
        let next = if passed {
            state.failures = 0;
            state.passed_once = true;
            spec.interval
        } else if !state.passed_once {
            // Not up yet: failures do not count; start_timeout bounds the wait.
            state.misses = state.misses.saturating_add(1);
            first_pass_retry(state.misses, spec.interval)
        } else {
            if !in_start_period {
                state.failures += 1;
            }
            spec.interval
        };
        let all_passed = x.checks.iter().all(|c| c.passed_once);
        // Each check against its own `retries`: a lenient [health] check and
        // a strict [[actions]] check on one service keep separate counts.
        let unhealthy = x
            .checks
            .iter()
            .zip(&x.service.health)
            .any(|(c, spec)| c.passed_once && c.failures >= spec.retries.max(1));
        let was = x.state.clone();
        if unhealthy {
            self.set_state(u, State::Unhealthy);
            if policy != RestartPolicy::Never {
                self.stop_unit(u, AfterStop::Fail("unhealthy".into()));
                return;
            }
        } else if all_passed && was != State::Ready {
            let start_timer = self.unit_mut(u).and_then(|x| x.start_timer.take());
            self.cancel(start_timer);
            self.set_state(u, State::Ready);
        }
        let timer = self.arm(u, Purpose::Check(check), next);
        if let Some(state) = self.unit_mut(u).and_then(|x| x.checks.get_mut(check)) {
            state.timer = Some(timer);
        }
    }

    pub(super) fn on_timer(&mut self, id: TimerId) {
        let Some((u, purpose)) = self.timers.remove(&id) else {
            return; // cancelled
        };
        match purpose {
            Purpose::Backoff => {
                if let Some(x) = self.units.get_mut(u) {
                    x.backoff_timer = None;
                    if matches!(x.state, State::Backoff { .. }) {
                        self.set_state(u, State::Inactive);
                    }
                }
            }
            Purpose::Grace => {
                let Some(x) = self.units.get_mut(u) else {
                    return;
                };
                x.grace_timer = None;
                if x.state == State::Stopping {
                    if let Some(pgid) = x.pid.or(x.lingering) {
                        self.actions.push(Action::Signal {
                            pgid,
                            signal: SIGKILL,
                        });
                    } else {
                        self.finish_stop(u);
                    }
                }
            }
            Purpose::StartTimeout => {
                let Some(x) = self.units.get_mut(u) else {
                    return;
                };
                x.start_timer = None;
                if x.state == State::Running {
                    let ms = x.service.lifecycle.start_timeout.as_millis();
                    self.stop_unit(
                        u,
                        AfterStop::Fail(format!("not healthy within start_timeout_ms ({ms})")),
                    );
                }
            }
            Purpose::Check(check) => {
                let Some(x) = self.units.get_mut(u) else {
                    return;
                };
                if let Some(state) = x.checks.get_mut(check) {
                    state.timer = None;
                }
                if x.pid.is_some() {
                    let action = Action::RunCheck {
                        service: x.service.name.clone(),
                        run: x.run,
                        check,
                    };
                    self.actions.push(action);
                }
            }
        }
    }

    // ---- shutdown -----------------------------------------------------
}
