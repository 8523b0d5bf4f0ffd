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
        let Some(spec) = x.service.health.get(check).cloned() else {
            return;
        };
        let in_start_period = x
            .started_at
            .is_some_and(|t| now.saturating_duration_since(t) < spec.start_period);
        let policy = x.service.lifecycle.restart;
        let was_ready = matches!(x.phase, Phase::Ready(_));
        // Only a process that is up is checked.
        let Some(run) = x.phase.run_mut() else {
            return;
        };
        let Some(state) = run.checks.get_mut(check) else {
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
        let all_passed = run.checks.iter().all(|c| c.passed_once);
        // Each check against its own `retries`: a lenient [health] check and
        // a strict [[actions]] check on one service keep separate counts.
        let unhealthy = run
            .checks
            .iter()
            .zip(&x.service.health)
            .any(|(c, spec)| c.passed_once && c.failures >= spec.retries.max(1));
        if unhealthy {
            let run = run.clone();
            self.enter(u, Phase::Unhealthy(run));
            if policy != RestartPolicy::Never {
                self.stop_unit(u, AfterStop::Fail("unhealthy".into()));
                return;
            }
        } else if all_passed && !was_ready {
            // Up: the start timeout no longer bounds it (enter cancels it).
            let mut run = run.clone();
            run.start_timer = None;
            self.enter(u, Phase::Ready(run));
        }
        let timer = self.arm(u, Purpose::Check(check), next);
        if let Some(c) = self
            .unit_mut(u)
            .and_then(|x| x.phase.run_mut())
            .and_then(|run| run.checks.get_mut(check))
        {
            c.timer = Some(timer);
        }
    }

    pub(super) fn on_timer(&mut self, id: TimerId) {
        let Some((u, purpose, _)) = self.timers.remove(&id) else {
            return; // cancelled
        };
        match purpose {
            Purpose::Backoff => {
                if self.unit(u).is_some_and(
                    |x| matches!(&x.phase, Phase::Backoff { timer, .. } if *timer == id),
                ) {
                    self.enter(u, Phase::Inactive);
                }
            }
            Purpose::Grace => {
                let Some(x) = self.units.get_mut(u) else {
                    return;
                };
                let Phase::Stopping(stop) = &mut x.phase else {
                    return;
                };
                stop.grace = None;
                if let Some(pgid) = stop.pid.or(stop.lingering) {
                    self.actions.push(Action::Signal {
                        pgid,
                        signal: SIGKILL,
                    });
                } else {
                    self.finish_stop(u);
                }
            }
            Purpose::StartTimeout => {
                let Some(x) = self.units.get_mut(u) else {
                    return;
                };
                let Phase::Running(run) = &mut x.phase else {
                    return;
                };
                run.start_timer = None;
                let ms = x.service.lifecycle.start_timeout.as_millis();
                self.stop_unit(
                    u,
                    AfterStop::Fail(format!("not healthy within start_timeout_ms ({ms})")),
                );
            }
            Purpose::Check(check) => {
                let Some(x) = self.units.get_mut(u) else {
                    return;
                };
                let Some(run) = x.phase.run_mut() else {
                    return;
                };
                if let Some(state) = run.checks.get_mut(check) {
                    state.timer = None;
                }
                let action = Action::RunCheck {
                    service: x.service.name.clone(),
                    run: x.run,
                    check,
                };
                self.actions.push(action);
            }
        }
    }

    // ---- shutdown -----------------------------------------------------
}
