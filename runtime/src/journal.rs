//! spore's own log: one line per event on stderr (the console under PID 1),
//! each with a UTC timestamp. Never carries secrets.
//!
//! Nothing here ever waits for the console. Lines go into a bounded spool
//! that one writer thread drains to stderr; when the console is slower than
//! spore (a 115,200-baud serial line takes ~11 KB/s, a pipe nobody reads
//! takes nothing), the spool fills, later lines are dropped and counted,
//! and once the console catches up the writer says how many were lost:
//! `spore: 1,234 lines dropped (console too slow)`. Only that thread ever
//! blocks on the console, never the event loop.

use std::fmt::Display;
use std::sync::{Mutex, OnceLock};

use smol::channel::Receiver;

use crate::logbook::{LogBook, LogLine, Stream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::spool::Spool;

/// Bytes of console output held while the console is slow.
pub const SPOOL_BYTES: usize = 256 * 1024;

fn console() -> &'static Spool {
    static CONSOLE: OnceLock<Spool> = OnceLock::new();
    CONSOLE.get_or_init(|| {
        Spool::new(
            "spore-console",
            SPOOL_BYTES,
            "console too slow",
            Box::new(std::io::stderr()),
        )
    })
}

/// spore's own lines kept in memory, for `node.journal`.
pub const JOURNAL_LINES: usize = 2000;

fn book() -> &'static Mutex<LogBook> {
    static BOOK: OnceLock<Mutex<LogBook>> = OnceLock::new();
    BOOK.get_or_init(|| Mutex::new(LogBook::new(JOURNAL_LINES, None).0))
}

/// Writes `spore: MESSAGE` with a timestamp to stderr, without waiting, and
/// keeps it in the journal's ring (and for its followers). The message is
/// escaped and capped here, once for every caller ([`crate::escape::line`]):
/// a peer's words in it can neither forge a line nor drive the console.
pub fn note(message: impl Display) {
    let time = SystemTime::now();
    let text = crate::escape::line(&message.to_string());
    console().push(format!("{} spore: {text}\n", timestamp(time)));
    if let Ok(mut book) = book().lock() {
        book.push(LogLine {
            time,
            stream: Stream::Spore,
            text,
        });
    }
}

/// The journal's last `count` lines as JSON, oldest first, as many of the
/// newest as fit in `budget` bytes, and how many older ones were left out.
pub fn tail(count: usize, budget: usize) -> (Vec<serde_json::Value>, usize) {
    book()
        .lock()
        .map(|book| crate::api::views::lines_within(book.tail(count), budget))
        .unwrap_or_default()
}

/// Every journal line from now on.
pub fn follow() -> Receiver<LogLine> {
    match book().lock() {
        Ok(mut book) => book.follow(),
        // A poisoned lock (a panic while pushing) ends the follow at once.
        Err(_) => smol::channel::bounded(1).1,
    }
}

/// Writes a line of a service's output with its name, without waiting;
/// escaped as [`note`] escapes (a service may echo what a peer sent it).
pub fn service_line(service: &str, line: &str) {
    console().push(format!(
        "{} [{}] {}\n",
        timestamp(SystemTime::now()),
        crate::escape::field(service),
        crate::escape::escape(line, crate::logbook::MAX_LINE)
    ));
}

/// Waits until everything noted so far has reached the console, at most
/// `limit` (before exit or reboot; a console that takes nothing costs
/// `limit`, never more). True when all of it was written.
pub fn flush(limit: Duration) -> bool {
    console().flush(limit)
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for `time`, computed without a time zone
/// database (none exists on a bare node).
pub fn timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counts_are_grouped_in_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_400_523_042);
        assert_eq!(timestamp(t), "2026-11-23T02:22:03.042Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
