//! What operators order: start, stop, restart, deploy (with what a changed definition does to a running or waiting unit) and remove.

use super::*;

impl Supervisor {
    pub(super) fn on_start(&mut self, name: &str) {
        let Some(&u) = self.index.get(name) else {
            return;
        };
        if self.shutting_down {
            return;
        }
        // An explicit start wins over what conflicts with it.
        let rivals: Vec<usize> = self.conflicts.get(u).cloned().unwrap_or_default();
        for c in rivals {
            if let Some(x) = self.units.get_mut(c) {
                x.want_up = false;
            }
            self.stop_unit(c, AfterStop::Stay);
        }
        if let Some(x) = self.units.get_mut(u) {
            if matches!(x.phase, Phase::Failed(_) | Phase::Exited(_)) {
                x.want_up = false;
            }
        }
        self.pull_up(u);
    }

    pub(super) fn on_stop(&mut self, name: &str) {
        let Some(&u) = self.index.get(name) else {
            return;
        };
        if let Some(x) = self.units.get_mut(u) {
            x.want_up = false;
        }
        self.stop_unit(u, AfterStop::Stay);
    }

    pub(super) fn on_restart(&mut self, name: &str) {
        let Some(&u) = self.index.get(name) else {
            return;
        };
        if self.shutting_down {
            return;
        }
        self.on_start(name);
        let Some(x) = self.units.get_mut(u) else {
            return;
        };
        x.restarts = 0;
        if x.alive() {
            self.stop_unit(u, AfterStop::Start);
        } else {
            self.enter(u, Phase::Inactive);
        }
    }

    /// A new or changed definition: a running service restarts with it; a
    /// new one with `status = "start"` starts.
    pub(super) fn on_deploy(&mut self, services: Vec<Service>) {
        if self.shutting_down {
            return;
        }
        // Every definition in first, then the graph once: a reload of
        // 10,000 services must not build it 10,000 times.
        let mut placed = Vec::with_capacity(services.len());
        for service in services {
            let autostart = service.status == crate::service::Status::Start;
            let existing = self.index.get(&service.name).copied().or_else(|| {
                self.units
                    .iter()
                    .position(|x| x.service.name == service.name)
            });
            let u = match existing {
                Some(u) => {
                    let Some(x) = self.units.get_mut(u) else {
                        continue;
                    };
                    // The old definition's check timers go with its checks:
                    // replaced without a cancel, they would fire for nothing.
                    let mut stale = Vec::new();
                    if let Some(run) = x.phase.run_mut() {
                        stale.extend(run.checks.iter().filter_map(|c| c.timer));
                        run.checks = vec![CheckState::default(); service.health.len()];
                    }
                    x.service = service;
                    x.removed = false;
                    x.restarts = 0;
                    for id in stale {
                        self.cancel(Some(id));
                    }
                    u
                }
                None => {
                    let name = service.name.clone();
                    self.units.push(Unit::new(service));
                    let u = self.units.len() - 1;
                    // Known at once, so a later definition of the same name
                    // in this batch replaces this one.
                    self.index.insert(name, u);
                    u
                }
            };
            placed.push((u, autostart));
        }
        self.rebuild();
        for (u, autostart) in placed {
            self.after_deploy(u, autostart);
        }
    }

    /// A deployed definition takes effect: a running service restarts with
    /// it; one that ended is made ready to start again, and started when
    /// its status or the operator wants it.
    pub(super) fn after_deploy(&mut self, u: usize, autostart: bool) {
        let Some(x) = self.units.get(u) else {
            return;
        };
        if x.alive() {
            if x.want_up {
                self.stop_unit(u, AfterStop::Start);
            }
        } else {
            if matches!(x.phase, Phase::Backoff { .. }) {
                // The old definition failed; the new one need not wait out
                // its backoff (an operator who deploys a fix wants it run).
                if let Some(x) = self.units.get_mut(u) {
                    x.restarts = 0;
                }
                self.enter(u, Phase::Inactive);
            } else if x.ended() {
                self.enter(u, Phase::Inactive);
            }
            if autostart || self.unit(u).is_some_and(|x| x.want_up) {
                if let Some(x) = self.units.get_mut(u) {
                    x.want_up = false;
                }
                self.pull_up(u);
            }
        }
    }

    /// Stops a service for good and forgets it once its processes are gone.
    pub(super) fn on_remove(&mut self, name: &str) {
        let Some(&u) = self.index.get(name) else {
            return;
        };
        if let Some(x) = self.units.get_mut(u) {
            x.want_up = false;
            x.removed = true;
        }
        self.stop_unit(u, AfterStop::Stay);
        self.rebuild();
    }

    // ---- starting -----------------------------------------------------
}
