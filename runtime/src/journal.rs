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
use std::time::{Duration, SystemTime};

pub use crate::text::{thousands, timestamp};

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

/// The journal's last `count` lines, oldest first.
pub fn tail(count: usize) -> Vec<LogLine> {
    book()
        .lock()
        .map(|book| book.tail(count).cloned().collect())
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
