//! A log of refusals that a flood cannot turn into a flood of lines: the
//! first few refusals of each kind in an interval ([`DETAILED_PER_KIND`])
//! are logged with their detail, the rest are counted, and the counts are
//! logged as one summary line when the next interval begins.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Refusals of one kind logged whole per interval; an operator debugging
/// their own key sees why, a flood costs a handful of lines.
pub const DETAILED_PER_KIND: u64 = 5;

/// Counts refusals by kind and decides which lines to write.
pub struct RefusalLog {
    every: Duration,
    prefix: &'static str,
    state: RefCell<State>,
}

struct State {
    since: Option<Instant>,
    /// Per kind this interval: lines logged whole, refusals only counted.
    kinds: BTreeMap<&'static str, (u64, u64)>,
}

impl RefusalLog {
    /// A log that lets [`DETAILED_PER_KIND`] detailed lines per kind through
    /// every `every`;
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
    /// it), then `detail()` when fewer than [`DETAILED_PER_KIND`] of its
    /// kind were logged in the current interval. `detail` runs only when
    /// its line is written.
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
                .filter(|(_, (_, more))| *more > 0)
                .map(|(kind, (_, more))| format!("{more} more {kind}"))
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
        let (logged, more) = state.kinds.entry(kind).or_insert((0, 0));
        if *logged < DETAILED_PER_KIND {
            *logged += 1;
            lines.push(detail());
        } else {
            *more += 1;
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
        assert_eq!(
            lines,
            vec![
                "refused #0",
                "refused #1",
                "refused #2",
                "refused #3",
                "refused #4",
                "other kind"
            ]
        );
        std::thread::sleep(Duration::from_millis(60));
        let next = log.refuse("forged", || "next interval".into());
        assert_eq!(
            next,
            vec![
                "beacon: refusals not logged one by one in the last 0.05 s: 995 more forged",
                "next interval"
            ]
        );
    }
}
