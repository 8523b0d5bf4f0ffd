//! Which log lines an answer carries: those of a time window (`since`,
//! `until`, Unix milliseconds), the newest `lines` of them, within the
//! answer's byte budget; and the merged view of every service's output and
//! spore's own journal, in time order, each line with its service's name.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use runtime::logbook::LogLine;

use super::views;
use crate::NodeApi;

/// A time window over log lines; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    /// Only lines of this syslog priority or more urgent (0 emerg … 7 debug).
    priority: Option<u8>,
}

/// A line's syslog priority: the `<N>` a program put first (as sd-daemon's
/// convention has it), else 3 (err) for stderr and 6 (info) for stdout and
/// spore's own lines.
pub fn priority(line: &LogLine) -> u8 {
    let bytes = line.text.as_bytes();
    match (bytes.first(), bytes.get(1), bytes.get(2)) {
        (Some(b'<'), Some(digit @ b'0'..=b'7'), Some(b'>')) => digit - b'0',
        _ => match line.stream {
            runtime::logbook::Stream::Stderr => 3,
            _ => 6,
        },
    }
}

impl Window {
    /// The window a call's `since` and `until` params give.
    pub fn from_params(params: &Map<String, Value>) -> Self {
        let at = |key: &str| {
            params
                .get(key)
                .and_then(Value::as_u64)
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        };
        Self {
            since: at("since"),
            until: at("until"),
            priority: params
                .get("priority")
                .and_then(Value::as_u64)
                .and_then(|p| u8::try_from(p.min(7)).ok()),
        }
    }

    /// Whether it takes every line (no time or priority asked for).
    pub fn is_open(&self) -> bool {
        *self == Window::default()
    }

    /// spore's own lines this window may take the newest `count` of: only
    /// those `count` when it is open, else the whole journal to filter.
    pub fn journal(&self, count: usize) -> Vec<LogLine> {
        let lines = if self.is_open() {
            count.max(1)
        } else {
            runtime::journal::JOURNAL_LINES
        };
        runtime::journal::tail(lines)
    }

    /// Whether `line` is in it: written in its time, and as urgent as it asks.
    pub fn holds(&self, line: &LogLine) -> bool {
        let time = line.time;
        self.since.is_none_or(|since| time >= since)
            && self.until.is_none_or(|until| time <= until)
            && self.priority.is_none_or(|most| priority(line) <= most)
    }

    /// The newest `count` of `lines` (oldest first) in the window.
    fn newest<'a>(
        &self,
        lines: impl DoubleEndedIterator<Item = &'a LogLine>,
        count: usize,
    ) -> Vec<&'a LogLine> {
        let mut chosen: Vec<&LogLine> = lines
            .rev()
            .filter(|line| self.holds(line))
            .take(count)
            .collect();
        chosen.reverse();
        chosen
    }
}

/// One source's answer: the newest `count` of `lines` in `window`, as JSON
/// within `budget` bytes, and how many older ones were left out for it.
pub fn of_one<'a>(
    lines: impl DoubleEndedIterator<Item = &'a LogLine>,
    window: &Window,
    count: usize,
    budget: usize,
) -> (Vec<Value>, usize) {
    views::lines_within(window.newest(lines, count).into_iter(), budget)
}

/// Every service's lines and spore's own (`spore`), merged in time order
/// (a tie keeps each source's order): the newest `count` in `window`, as
/// JSON with a `service` field, within `budget` bytes, and how many older
/// ones were left out for it. Each source gives at most `count` lines, so
/// the work is bounded by `count` times the number of services.
pub fn merged(
    runtime: &NodeApi,
    window: &Window,
    count: usize,
    budget: usize,
) -> (Vec<Value>, usize) {
    let journal = window.journal(count);
    let mut all: Vec<(&str, &LogLine)> = window
        .newest(journal.iter(), count)
        .into_iter()
        .map(|line| ("spore", line))
        .collect();
    let names: Vec<&str> = runtime
        .supervisor()
        .list()
        .iter()
        .map(|view| view.service.name.as_str())
        .collect();
    for name in names {
        if let Some(book) = runtime.logs(name) {
            all.extend(
                window
                    .newest(book.tail(usize::MAX), count)
                    .into_iter()
                    .map(|line| (name, line)),
            );
        }
    }
    merged_json(all, count, budget)
}

/// Lines of several sources (each with its name), merged in time order:
/// the newest `count` as JSON with a `service` field, within `budget`
/// bytes, and how many older ones were left out for it.
pub fn merged_json(
    mut all: Vec<(&str, &LogLine)>,
    count: usize,
    budget: usize,
) -> (Vec<Value>, usize) {
    all.sort_by_key(|(_, line)| line.time);
    let start = all.len().saturating_sub(count);
    let mut kept = Vec::new();
    let mut bytes = 0;
    let mut omitted = 0;
    for (name, line) in all.get(start..).unwrap_or_default().iter().rev() {
        let mut json = views::line_json(line);
        if let Value::Object(map) = &mut json {
            map.insert("service".into(), Value::String((*name).to_owned()));
        }
        bytes += json.to_string().len() + 1;
        if omitted > 0 || bytes > budget {
            omitted += 1;
            continue;
        }
        kept.push(json);
    }
    kept.reverse();
    (kept, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::logbook::Stream;
    use serde_json::json;

    fn line(seconds: u64, text: &str) -> LogLine {
        LogLine {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            stream: Stream::Stdout,
            text: text.into(),
        }
    }

    #[test]
    fn a_window_keeps_its_lines_and_the_newest_of_them() {
        let lines: Vec<LogLine> = (1..=10).map(|s| line(s, &s.to_string())).collect();
        let params = json!({ "since": 3_000, "until": 8_000 });
        let window = Window::from_params(params.as_object().unwrap());
        let (kept, omitted) = of_one(lines.iter(), &window, 4, usize::MAX);
        let texts: Vec<&str> = kept.iter().map(|l| l["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["5", "6", "7", "8"]);
        assert_eq!(omitted, 0);
        let mut mixed = vec![
            line(1, "<3>disk failed"),
            line(2, "all fine"),
            line(3, "<6>noted"),
        ];
        mixed.push(LogLine {
            stream: Stream::Stderr,
            ..line(4, "warning on stderr")
        });
        let params = json!({ "priority": 3 });
        let errors = Window::from_params(params.as_object().unwrap());
        let (kept, _) = of_one(mixed.iter(), &errors, 100, usize::MAX);
        let texts: Vec<&str> = kept.iter().map(|l| l["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["<3>disk failed", "warning on stderr"]);
        let open = Window::default();
        assert_eq!(of_one(lines.iter(), &open, 100, usize::MAX).0.len(), 10);
    }
}
