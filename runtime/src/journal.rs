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
use std::sync::{Arc, Mutex, OnceLock};

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
            Box::new(Consoles),
        )
    })
}

/// The consoles named by [`use_consoles`]; none: stderr.
fn consoles() -> &'static Mutex<Arc<Vec<std::fs::File>>> {
    static CONSOLES: OnceLock<Mutex<Arc<Vec<std::fs::File>>>> = OnceLock::new();
    CONSOLES.get_or_init(|| Mutex::new(Arc::new(Vec::new())))
}

/// From now on spore's lines (and its services' lines it echoes) go to each
/// of `files` (every console the kernel was given, not only /dev/console,
/// which is the last `console=` alone), instead of stderr. Written by the
/// spool's thread, one console after the other: a slow serial line delays
/// the others' lines, never spore.
pub fn use_consoles(files: Vec<std::fs::File>) {
    if let Ok(mut list) = consoles().lock() {
        *list = Arc::new(files);
    }
}

/// The spool's target: every console of [`use_consoles`], or stderr.
struct Consoles;

impl std::io::Write for Consoles {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The list is taken under the lock and written without it, so
        // naming the consoles never waits for a write in progress.
        let list = consoles()
            .lock()
            .map(|l| Arc::clone(&l))
            .unwrap_or_default();
        if list.is_empty() {
            return std::io::stderr().write(buf);
        }
        // A console that fails (hung up, gone) costs its own lines only.
        for mut file in list.iter() {
            let _ = file.write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// spore's own lines kept in memory, for `node.journal`.
pub const JOURNAL_LINES: usize = 2000;

fn book() -> &'static Mutex<LogBook> {
    static BOOK: OnceLock<Mutex<LogBook>> = OnceLock::new();
    BOOK.get_or_init(|| Mutex::new(LogBook::new(JOURNAL_LINES, None)))
}

/// Writes `spore: MESSAGE` with a timestamp to stderr, without waiting, and
/// keeps it in the journal's ring (and for its followers). The message is
/// escaped and capped here, once for every caller ([`crate::escape::line`]):
/// a peer's words in it can neither forge a line nor drive the console.
pub fn note(message: impl Display) {
    let time = SystemTime::now();
    let text = crate::escape::line(&message.to_string());
    console().push(format!("{} spore: {text}\n", timestamp(time)));
    keep_line(time, text);
}

/// Keeps `MESSAGE` as [`note`] does (the journal's ring, its followers,
/// the kept log), escaped and capped the same way, but writes nothing to
/// the console: for lines too many for a console (each signed call's audit
/// line), which the console sees counted instead.
pub fn record(message: impl Display) {
    keep_line(SystemTime::now(), crate::escape::line(&message.to_string()));
}

fn keep_line(time: SystemTime, text: String) {
    if let Ok(mut book) = book().lock() {
        book.push(LogLine {
            time,
            stream: Stream::Spore,
            text,
        });
    }
}

/// Puts lines an earlier spore wrote back in the ring (a live re-exec),
/// oldest first: they were on the console and in the kept log already.
pub fn restore(lines: impl IntoIterator<Item = (SystemTime, String)>) {
    if let Ok(mut book) = book().lock() {
        book.restore(lines.into_iter().map(|(time, text)| LogLine {
            time,
            stream: Stream::Spore,
            text,
        }));
    }
}

/// Keeps spore's own lines in `file` too, from now on (the node's kept
/// log: `STATE_DIR/logs/0/spore.log`).
pub fn keep(keeper: crate::rotating::Keeper) {
    if let Ok(mut book) = book().lock() {
        book.keep(keeper);
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
    // The kept logs first (a disk), then the console: each within `limit`.
    let kept = crate::rotating::flush_kept(limit);
    console().flush(limit) && kept
}
