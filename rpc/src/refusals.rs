//! A log of refusals that a flood cannot turn into a flood of lines: the
//! first refusal of each kind in an interval is logged with its detail,
//! the rest are counted, and the counts are logged as one summary line when
//! the next interval begins.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Counts refusals by kind and decides which lines to write.
pub struct RefusalLog {
    every: Duration,
    prefix: &'static str,
    state: RefCell<State>,
}

struct State {
    since: Option<Instant>,
    /// Kinds logged in full this interval, and how many more were counted.
    kinds: BTreeMap<&'static str, u64>,
}

impl RefusalLog {
    /// A log that lets one detailed line per kind through every `every`;
    /// `prefix` starts the summary (e.g. `beacon`).
    pub fn new(prefix: &'static str, every: Duration) -> Self {
        Self {
            every,
            prefix,
            state: RefCell::new(State {
                since: None,
                kinds: BTreeMap::new(),
            }),
        }
    }

    /// Records one refusal of `kind`; returns the lines to write now: a
    /// summary of the interval that ended (if any refusals were counted in
    /// it), then `detail()` when this is the first of its kind in the
    /// current interval. `detail` runs only when its line is written.
    pub fn refuse(&self, kind: &'static str, detail: impl FnOnce() -> String) -> Vec<String> {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut lines = Vec::new();
        if state
            .since
            .is_none_or(|at| now.duration_since(at) >= self.every)
        {
            let counted: Vec<String> = state
                .kinds
                .iter()
                .filter(|(_, more)| **more > 0)
                .map(|(kind, more)| format!("{more} more {kind}"))
                .collect();
            if !counted.is_empty() {
                lines.push(format!(
                    "{}: refusals not logged one by one in the last {} s: {}",
                    self.prefix,
                    self.every.as_secs_f64(),
                    counted.join(", ")
                ));
            }
            state.kinds.clear();
            state.since = Some(now);
        }
        match state.kinds.get_mut(kind) {
            Some(more) => *more += 1,
            None => {
                state.kinds.insert(kind, 0);
                lines.push(detail());
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_one_kind_writes_one_line_then_a_counted_summary() {
        let log = RefusalLog::new("beacon", Duration::from_millis(50));
        let mut lines = Vec::new();
        for i in 0..1000 {
            lines.extend(log.refuse("forged", || format!("refused #{i}")));
        }
        lines.extend(log.refuse("not enrolled", || "other kind".into()));
        assert_eq!(lines, vec!["refused #0", "other kind"]);
        std::thread::sleep(Duration::from_millis(60));
        let next = log.refuse("forged", || "next interval".into());
        assert_eq!(
            next,
            vec![
                "beacon: refusals not logged one by one in the last 0.05 s: 999 more forged",
                "next interval"
            ]
        );
    }
}
