//! Shutdown: dependents stop first, and the end is reported once.

use super::*;

impl Supervisor {
    pub(super) fn on_shutdown(&mut self) {
        self.shutting_down = true;
        for u in 0..self.units.len() {
            let Some(x) = self.units.get_mut(u) else {
                continue;
            };
            x.want_up = false;
            if matches!(x.phase, Phase::Backoff { .. } | Phase::Blocked { .. }) {
                self.enter(u, Phase::Stopped);
            }
        }
    }

    /// Stops every running service none of whose dependents still runs:
    /// dependents first, so the stop order is the start order reversed.
    pub(super) fn shutdown_step(&mut self) {
        for i in (0..self.order.len()).rev() {
            let Some(&u) = self.order.get(i) else {
                continue;
            };
            let Some(x) = self.unit(u) else {
                continue;
            };
            if !x.alive() || matches!(x.phase, Phase::Stopping(_)) {
                continue;
            }
            let dependents_alive = self
                .ordered_after
                .get(u)
                .is_some_and(|after| after.iter().any(|&d| self.unit(d).is_some_and(Unit::alive)));
            if !dependents_alive {
                self.stop_unit(u, AfterStop::Stay);
            }
        }
        if !self.shutdown_reported && self.units.iter().all(|x| !x.alive()) {
            self.shutdown_reported = true;
            self.actions.push(Action::ShutdownComplete);
        }
    }
}
