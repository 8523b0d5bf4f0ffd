//! Where audit lines go. Every one is kept in the node's journal
//! (`sporectl logs spore`, `node.journal`, the kept log); the console gets
//! the first [`SHOWN_PER_INTERVAL`] of each interval and then one line
//! saying how many more there were, when the next audited call comes after
//! the interval. A console write per signed call cost the console's thread
//! a fifth of a core at 36,000 calls/s, and a serial console cannot keep up
//! with that at all. No timer: a quiet node makes no wake-ups for this.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Audit lines the console shows whole per interval.
pub const SHOWN_PER_INTERVAL: u64 = 5;

/// Decides which audit lines also reach the console.
pub struct AuditConsole {
    every: Duration,
    state: RefCell<State>,
}

struct State {
    since: Option<Instant>,
    shown: u64,
    journal_only: u64,
}

/// What to do with one audit line.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    /// The console line about the interval that ended, when calls of it
    /// went to the journal only.
    pub summary: Option<String>,
    /// Whether this line goes to the console too.
    pub console: bool,
}

impl AuditConsole {
    /// Shows [`SHOWN_PER_INTERVAL`] lines per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            state: RefCell::new(State {
                since: None,
                shown: 0,
                journal_only: 0,
            }),
        }
    }

    /// Routes an audit line written at `now`.
    pub fn route(&self, now: Instant) -> Route {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return Route {
                summary: None,
                console: false,
            };
        };
        let mut summary = None;
        if state
            .since
            .is_none_or(|at| now.saturating_duration_since(at) >= self.every)
        {
            if state.journal_only > 0 {
                summary = Some(format!(
                    "rpc audit: {} more call(s) in the {} s before are in the journal only (sporectl logs spore)",
                    state.journal_only,
                    self.every.as_secs()
                ));
            }
            *state = State {
                since: Some(now),
                shown: 0,
                journal_only: 0,
            };
        }
        let console = state.shown < SHOWN_PER_INTERVAL;
        if console {
            state.shown += 1;
        } else {
            state.journal_only += 1;
        }
        Route { summary, console }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_few_of_an_interval_are_shown_and_the_rest_counted_into_one_line() {
        let audits = AuditConsole::new(Duration::from_secs(10));
        let start = Instant::now();
        let routes: Vec<Route> = (0..12).map(|_| audits.route(start)).collect();
        assert!(routes.iter().all(|r| r.summary.is_none()));
        let shown = routes.iter().filter(|r| r.console).count();
        assert_eq!(shown as u64, SHOWN_PER_INTERVAL);
        assert!(routes.iter().take(5).all(|r| r.console));
        // Still inside the interval: counted.
        assert!(!audits.route(start + Duration::from_secs(9)).console);
        // The next interval opens with the count of the one before.
        let next = audits.route(start + Duration::from_secs(10));
        assert!(next.console);
        assert_eq!(
            next.summary.as_deref(),
            Some("rpc audit: 8 more call(s) in the 10 s before are in the journal only (sporectl logs spore)")
        );
        // An interval with nothing left out says nothing.
        assert_eq!(
            audits.route(start + Duration::from_secs(30)),
            Route {
                summary: None,
                console: true
            }
        );
    }
}
