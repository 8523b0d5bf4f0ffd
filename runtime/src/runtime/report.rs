//! Each state change said once: in the journal, and in the service's own
//! output so `logs -f` shows what happened between its lines.

use svc::supervisor::State;

use super::Runtime;
use crate::logbook::{LogLine, Stream};

impl Runtime {
    /// Says `service`'s new `state` (with its pid, last exit or error).
    pub(super) fn report(&mut self, service: &str, state: &State) {
        let view = self.supervisor.get(service);
        let mut line = match state {
            State::Backoff { delay, .. } => {
                format!("{service}: backoff: restart in {} ms", delay.as_millis())
            }
            _ => format!("{service}: {}", state.describe(self.sys.now())),
        };
        if let (State::Ready | State::Running, Some(pid)) =
            (state, view.as_ref().and_then(|v| v.pid))
        {
            line.push_str(&format!(" (pid {pid})"));
        }
        if let (State::Backoff { .. } | State::Exited(_) | State::Failed(_), Some(view)) =
            (state, &view)
        {
            if let Some(exit) = view.last_exit {
                line.push_str(&format!(" (last run {exit})"));
            }
            if let Some(error) = view.last_error {
                line.push_str(&format!(" ({error})"));
            }
        }
        self.sys.note(&line);
        // The same words in the service's own output, so `logs -f` shows
        // what happened between its lines.
        if let Some(book) = self.logs.get_mut(service) {
            let text = line
                .strip_prefix(service)
                .and_then(|l| l.strip_prefix(": "))
                .unwrap_or(&line)
                .to_owned();
            book.push(LogLine {
                time: self.sys.wall_clock(),
                stream: Stream::Spore,
                text,
            });
        }
    }
}
