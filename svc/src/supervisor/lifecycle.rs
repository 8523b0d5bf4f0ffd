//! A unit's way up and down: the gate of its dependencies, spawning, what its exit means, stopping its group.

use super::*;

impl Supervisor {
    /// Starts every wanted service whose dependencies are ready, in plan
    /// order, until nothing changes (a target becomes ready at once, which
    /// may release the next one).
    pub(super) fn settle(&mut self) {
        if self.shutting_down {
            return;
        }
        loop {
            let mut changed = false;
            for i in 0..self.order.len() {
                let Some(&u) = self.order.get(i) else {
                    continue;
                };
                if !self.unit(u).is_some_and(Unit::pending) {
                    continue;
                }
                match self.gate(u) {
                    Ok(()) => {
                        self.start_unit(u);
                        changed = true;
                    }
                    Err((on, reason)) => self.set_state(u, State::Blocked { on, reason }),
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Whether `u` may start now, or what holds it back.
    pub(super) fn gate(&self, u: usize) -> Result<(), (String, BlockReason)> {
        let Some(x) = self.unit(u) else {
            return Ok(());
        };
        let deps = &x.service.dependencies;
        for d in &deps.requires {
            let Some(dep) = self.index.get(&d.name).and_then(|&i| self.unit(i)) else {
                return Err((d.name.clone(), BlockReason::DependencyDown));
            };
            if dep.state.is_ready() {
                continue;
            }
            let reason = if dep.settled_down() {
                BlockReason::DependencyDown
            } else {
                BlockReason::Waiting
            };
            return Err((d.name.clone(), reason));
        }
        for d in deps.after.iter().chain(&deps.wants) {
            let Some(dep) = self.index.get(&d.name).and_then(|&i| self.unit(i)) else {
                continue;
            };
            if !(dep.state.is_ready() || !dep.want_up || dep.settled_down()) {
                return Err((d.name.clone(), BlockReason::Waiting));
            }
        }
        for &c in self.conflicts.get(u).map_or(&[][..], Vec::as_slice) {
            if let Some(rival) = self.unit(c) {
                if rival.alive() || (rival.want_up && rival.state.is_ready()) {
                    return Err((rival.service.name.clone(), BlockReason::Conflict));
                }
            }
        }
        Ok(())
    }

    pub(super) fn start_unit(&mut self, u: usize) {
        let Some(x) = self.units.get_mut(u) else {
            return;
        };
        if x.service.kind == Kind::Target {
            self.set_state(u, State::Ready);
            return;
        }
        x.run += 1;
        let action = Action::Spawn {
            service: x.service.name.clone(),
            run: x.run,
        };
        self.actions.push(action);
        self.set_state(u, State::Starting);
    }

    pub(super) fn find(&self, name: &str, run: u64) -> Option<usize> {
        let &u = self.index.get(name)?;
        (self.unit(u)?.run == run).then_some(u)
    }

    pub(super) fn on_spawned(&mut self, name: &str, run: u64, pid: i32) {
        let now = self.now();
        let Some(u) = self.find(name, run) else {
            // A stale spawn: nobody wants this process.
            self.actions.push(Action::Signal {
                pgid: pid,
                signal: SIGKILL,
            });
            return;
        };
        let Some(x) = self.units.get_mut(u) else {
            return;
        };
        x.pid = Some(pid);
        x.started_at = Some(now);
        x.last_error = None;
        if x.state == State::Stopping {
            // Stop was asked for before the process existed.
            let signal = x.service.lifecycle.stop_signal;
            self.actions.push(Action::Signal { pgid: pid, signal });
            return;
        }
        let oneshot = x.service.kind == Kind::Oneshot;
        let checks = x.service.health.len();
        let start_timeout = x.service.lifecycle.start_timeout;
        let stale: Vec<Option<TimerId>> = x
            .checks
            .iter_mut()
            .map(|check| std::mem::take(check).timer)
            .collect();
        for id in stale {
            self.cancel(id);
        }
        if oneshot || checks > 0 {
            self.set_state(u, State::Running);
        } else {
            self.set_state(u, State::Ready);
        }
        if !oneshot && checks > 0 {
            let timer = self.arm(u, Purpose::StartTimeout, start_timeout);
            if let Some(x) = self.units.get_mut(u) {
                x.start_timer = Some(timer);
            }
            for check in 0..checks {
                self.actions.push(Action::RunCheck {
                    service: name.to_owned(),
                    run,
                    check,
                });
            }
        }
    }

    pub(super) fn on_spawn_failed(&mut self, name: &str, run: u64, code: i32, error: String) {
        let Some(u) = self.find(name, run) else {
            return;
        };
        if let Some(x) = self.units.get_mut(u) {
            x.last_error = Some(error);
            x.last_exit = Some(ExitStatus::Code(code));
            x.started_at = None;
        }
        if self.unit(u).is_some_and(|x| x.state == State::Stopping) {
            self.finish_stop(u);
            return;
        }
        self.after_exit(u, ExitStatus::Code(code));
    }

    // ---- exits --------------------------------------------------------

    pub(super) fn on_exited(&mut self, pid: i32, status: ExitStatus, group_empty: bool) {
        let Some(u) = self.units.iter().position(|x| x.pid == Some(pid)) else {
            return; // an orphan, reaped and forgotten
        };
        if let Some(x) = self.units.get_mut(u) {
            x.pid = None;
            x.last_exit = Some(status);
        }
        self.cancel_run_timers(u);
        if self.unit(u).is_some_and(|x| x.state == State::Stopping) {
            if group_empty {
                self.finish_stop(u);
            } else {
                if let Some(x) = self.units.get_mut(u) {
                    x.lingering = Some(pid);
                }
                self.actions.push(Action::WatchGroup { pgid: pid });
            }
            return;
        }
        self.after_exit(u, status);
    }

    /// A process ended by itself (or never started): succeed, restart with
    /// backoff, or give up, per `[lifecycle]`.
    pub(super) fn after_exit(&mut self, u: usize, status: ExitStatus) {
        let now = self.now();
        let shutting_down = self.shutting_down;
        let Some(x) = self.units.get_mut(u) else {
            return;
        };
        let lifecycle = x.service.lifecycle.clone();
        let oneshot = x.service.kind == Kind::Oneshot;
        if oneshot && status.success() {
            x.restarts = 0;
            self.set_state(u, State::Succeeded);
            return;
        }
        if !x.want_up || shutting_down {
            self.set_state(u, State::Exited(status));
            return;
        }
        let restart = match lifecycle.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !status.success(),
            RestartPolicy::Never => false,
        };
        if !restart {
            self.set_state(u, State::Exited(status));
            self.dependency_down(u);
            return;
        }
        // A run longer than the stability period starts the backoff afresh.
        if x.started_at
            .is_some_and(|t| now.saturating_duration_since(t) >= lifecycle.stability_period)
        {
            x.restarts = 0;
        }
        if lifecycle.max_restarts != 0 && x.restarts >= lifecycle.max_restarts {
            let reason = format!("{status}; gave up after {} restarts", x.restarts);
            self.set_state(u, State::Failed(reason));
            self.dependency_down(u);
            return;
        }
        let delay = backoff_delay(
            lifecycle.restart_delay,
            lifecycle.restart_delay_max,
            x.restarts,
        );
        x.restarts += 1;
        let timer = self.arm(u, Purpose::Backoff, delay);
        if let Some(x) = self.units.get_mut(u) {
            x.backoff_timer = Some(timer);
        }
        self.set_state(
            u,
            State::Backoff {
                until: now + delay,
                delay,
            },
        );
    }

    /// `u` is down for good: whatever `requires` it stops and waits for it.
    pub(super) fn dependency_down(&mut self, u: usize) {
        let Some(name) = self.unit(u).map(|x| x.service.name.clone()) else {
            return;
        };
        for d in self.required_by.get(u).cloned().unwrap_or_default() {
            if self.unit(d).is_some_and(|x| x.want_up && x.alive()) {
                self.stop_unit(d, AfterStop::Block(name.clone()));
            }
        }
    }

    // ---- stopping -----------------------------------------------------

    pub(super) fn stop_unit(&mut self, u: usize, after: AfterStop) {
        let Some(x) = self.units.get(u) else {
            return;
        };
        let pid = x.pid;
        let state = x.state.clone();
        let lifecycle = x.service.lifecycle.clone();
        if state == State::Stopping {
            if let Some(x) = self.units.get_mut(u) {
                x.after_stop = after;
            }
            return;
        }
        self.cancel_run_timers(u);
        if let Some(x) = self.units.get_mut(u) {
            x.after_stop = after;
        }
        if pid.is_none() && state != State::Starting {
            // Nothing runs: apply the outcome at once.
            self.finish_stop(u);
            return;
        }
        if let Some(pgid) = pid {
            self.actions.push(Action::Signal {
                pgid,
                signal: lifecycle.stop_signal,
            });
        }
        let grace = self.arm(u, Purpose::Grace, lifecycle.stop_timeout);
        if let Some(x) = self.units.get_mut(u) {
            x.grace_timer = Some(grace);
        }
        self.set_state(u, State::Stopping);
    }

    /// The processes are gone (or there were none): apply what was decided.
    pub(super) fn finish_stop(&mut self, u: usize) {
        let Some(x) = self.units.get_mut(u) else {
            return;
        };
        x.lingering = None;
        x.pid = None;
        let grace = x.grace_timer.take();
        let after = std::mem::replace(&mut x.after_stop, AfterStop::Stay);
        let was_running = matches!(x.state, State::Stopping);
        let settled = matches!(
            x.state,
            State::Inactive | State::Succeeded | State::Exited(_) | State::Failed(_)
        );
        self.cancel(grace);
        match after {
            AfterStop::Stay if was_running || !settled => self.set_state(u, State::Stopped),
            AfterStop::Stay => {}
            AfterStop::Start => self.set_state(u, State::Inactive),
            AfterStop::Fail(reason) => {
                let mut status = ExitStatus::Signal(SIGKILL);
                if let Some(x) = self.units.get_mut(u) {
                    x.last_error = Some(reason);
                    status = x.last_exit.unwrap_or(status);
                }
                self.after_exit(u, status);
            }
            AfterStop::Block(on) => self.set_state(
                u,
                State::Blocked {
                    on,
                    reason: BlockReason::DependencyDown,
                },
            ),
        }
    }

    // ---- health and timers ---------------------------------------------
}
