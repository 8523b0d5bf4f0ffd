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
                    Err((on, reason)) => self.enter(u, Phase::Blocked { on, reason }),
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
            if dep.phase.is_ready() {
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
            if !(dep.phase.is_ready() || !dep.want_up || dep.settled_down()) {
                return Err((d.name.clone(), BlockReason::Waiting));
            }
        }
        for &c in self.conflicts.get(u).map_or(&[][..], Vec::as_slice) {
            if let Some(rival) = self.unit(c) {
                if rival.alive() || (rival.want_up && rival.phase.is_ready()) {
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
            self.enter(u, Phase::Reached);
            return;
        }
        x.run += 1;
        let action = Action::Spawn {
            service: x.service.name.clone(),
            run: x.run,
        };
        self.actions.push(action);
        self.enter(u, Phase::Starting);
    }

    pub(super) fn find(&self, name: &str, run: u64) -> Option<usize> {
        let &u = self.index.get(name)?;
        (self.unit(u)?.run == run).then_some(u)
    }

    pub(super) fn on_spawned(&mut self, name: &str, run_number: u64, pid: i32) {
        let now = self.now();
        let Some(u) = self.find(name, run_number) else {
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
        x.started_at = Some(now);
        x.last_error = None;
        if let Phase::Stopping(stop) = &mut x.phase {
            // Stop was asked for before the process existed.
            stop.pid = Some(pid);
            let signal = x.service.lifecycle.stop_signal;
            self.actions.push(Action::Signal { pgid: pid, signal });
            return;
        }
        let oneshot = x.service.kind == Kind::Oneshot;
        let checks = x.service.health.len();
        let start_timeout = x.service.lifecycle.start_timeout;
        let watched = !oneshot && checks > 0;
        let start_timer = watched.then(|| self.arm(u, Purpose::StartTimeout, start_timeout));
        let run = Run {
            pid,
            start_timer,
            checks: vec![CheckState::default(); checks],
        };
        if oneshot || checks > 0 {
            self.enter(u, Phase::Running(run));
        } else {
            self.enter(u, Phase::Ready(run));
        }
        if watched {
            for check in 0..checks {
                self.actions.push(Action::RunCheck {
                    service: name.to_owned(),
                    run: run_number,
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
        if self
            .unit(u)
            .is_some_and(|x| matches!(x.phase, Phase::Stopping(_)))
        {
            self.finish_stop(u);
            return;
        }
        self.after_exit(u, ExitStatus::Code(code));
    }

    // ---- exits --------------------------------------------------------

    pub(super) fn on_exited(&mut self, pid: i32, status: ExitStatus, group_empty: bool) {
        let Some(u) = self.units.iter().position(|x| x.phase.pid() == Some(pid)) else {
            return; // an orphan, reaped and forgotten
        };
        let Some(x) = self.units.get_mut(u) else {
            return;
        };
        x.last_exit = Some(status);
        if let Phase::Stopping(stop) = &mut x.phase {
            stop.pid = None;
            if group_empty {
                self.finish_stop(u);
            } else {
                stop.lingering = Some(pid);
                self.actions.push(Action::WatchGroup { pgid: pid });
            }
            return;
        }
        if !group_empty {
            // It ended by itself and left processes behind (in its group,
            // in its cgroup): they belong to the run that ended, so they
            // are stopped (its stop signal, then SIGKILL after the grace)
            // before the service succeeds, restarts or gives up. Its next
            // run never shares its cgroup with the last one's leftovers.
            let signal = x.service.lifecycle.stop_signal;
            let grace = x.service.lifecycle.stop_timeout;
            self.actions.push(Action::Signal { pgid: pid, signal });
            self.actions.push(Action::WatchGroup { pgid: pid });
            let grace = Some(self.arm(u, Purpose::Grace, grace));
            self.enter(
                u,
                Phase::Stopping(Stop {
                    pid: None,
                    lingering: Some(pid),
                    grace,
                    after: AfterStop::Exited(status),
                }),
            );
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
            self.enter(u, Phase::Succeeded);
            return;
        }
        if !x.want_up || shutting_down {
            self.enter(u, Phase::Exited(status));
            return;
        }
        let restart = match lifecycle.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !status.success(),
            RestartPolicy::Never => false,
        };
        if !restart {
            self.enter(u, Phase::Exited(status));
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
            self.enter(u, Phase::Failed(reason));
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
        self.enter(
            u,
            Phase::Backoff {
                until: now + delay,
                delay,
                timer,
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
        let Some(x) = self.units.get_mut(u) else {
            return;
        };
        if let Phase::Stopping(stop) = &mut x.phase {
            stop.after = after;
            return;
        }
        let pid = x.phase.pid();
        let starting = matches!(x.phase, Phase::Starting);
        let lifecycle = x.service.lifecycle.clone();
        let mut stop = Stop {
            pid,
            lingering: None,
            grace: None,
            after,
        };
        if pid.is_none() && !starting {
            // Nothing runs: apply the outcome at once.
            let timers = x.phase.timers();
            for id in timers {
                self.cancel(Some(id));
            }
            self.finish_with(u, stop.after);
            return;
        }
        if let Some(pgid) = pid {
            self.actions.push(Action::Signal {
                pgid,
                signal: lifecycle.stop_signal,
            });
        }
        stop.grace = Some(self.arm(u, Purpose::Grace, lifecycle.stop_timeout));
        self.enter(u, Phase::Stopping(stop));
    }

    /// The processes are gone (or there were none): apply what was decided.
    pub(super) fn finish_stop(&mut self, u: usize) {
        let Some(x) = self.units.get(u) else {
            return;
        };
        let after = match &x.phase {
            Phase::Stopping(stop) => stop.after.clone(),
            _ => AfterStop::Stay,
        };
        self.finish_with(u, after);
    }

    /// Applies `after` to `u`, which runs nothing (any more).
    fn finish_with(&mut self, u: usize, after: AfterStop) {
        let Some(x) = self.units.get(u) else {
            return;
        };
        let was_stopping = matches!(x.phase, Phase::Stopping(_));
        let settled = x.ended() || matches!(x.phase, Phase::Inactive);
        match after {
            AfterStop::Stay if was_stopping || !settled => self.enter(u, Phase::Stopped),
            AfterStop::Stay => {}
            AfterStop::Start => self.enter(u, Phase::Inactive),
            AfterStop::Fail(reason) => {
                let mut status = ExitStatus::Signal(SIGKILL);
                if let Some(x) = self.units.get_mut(u) {
                    x.last_error = Some(reason);
                    status = x.last_exit.unwrap_or(status);
                }
                self.after_exit(u, status);
            }
            AfterStop::Exited(status) => self.after_exit(u, status),
            AfterStop::Block(on) => self.enter(
                u,
                Phase::Blocked {
                    on,
                    reason: BlockReason::DependencyDown,
                },
            ),
        }
    }

    // ---- health and timers ---------------------------------------------
}
