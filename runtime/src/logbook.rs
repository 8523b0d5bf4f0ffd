//! Each service's output: a bounded ring of timestamped lines, an optional
//! file, and followers.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::Path;
use std::time::SystemTime;

use smol::channel::{Receiver, Sender};

use crate::spool::Spool;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// spore's own words: its journal, or a marker in a service's output
    /// (started, exited with code 3, removed).
    Spore,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Spore => "spore",
        }
    }

    /// The stream named `name` (as [`Stream::name`] writes it).
    pub fn parse(name: &str) -> Option<Stream> {
        [Stream::Stdout, Stream::Stderr, Stream::Spore]
            .into_iter()
            .find(|stream| stream.name() == name)
    }

    /// A line as a log file holds it (`TIME STREAM TEXT`, what
    /// [`LogBook`] appends), read back; None for one that is not.
    pub fn read_line(line: &str) -> Option<LogLine> {
        let (time, rest) = line.split_once(' ')?;
        let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(LogLine {
            time: crate::text::parse_timestamp(time)?,
            stream: Stream::parse(stream)?,
            text: text.to_owned(),
        })
    }
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When spore read it.
    pub time: SystemTime,
    /// Where it came from.
    pub stream: Stream,
    /// The text, without its newline; at most [`MAX_LINE`] bytes.
    pub text: String,
}

/// Longer lines are cut into pieces of this many bytes.
pub const MAX_LINE: usize = 4096;

/// A follower's queue holds at most this many lines; a follower that falls
/// further behind loses lines rather than making spore hold them.
const FOLLOW_QUEUE: usize = 1024;

/// Bytes of a service's output held for its log file while the disk is
/// slow; beyond it lines are dropped from the file (the ring keeps them) and
/// the file says how many.
pub const FILE_SPOOL_BYTES: usize = 1 << 20;

/// The output of one service.
pub struct LogBook {
    lines: VecDeque<LogLine>,
    capacity: usize,
    /// Append to `[logging] file` and the node's kept log, each written by
    /// its spool's own thread so a slow disk never holds the event loop.
    files: Vec<Spool>,
    /// Where lines are kept across restarts (one shared writer for all).
    keepers: Vec<crate::rotating::Keeper>,
    followers: Vec<Sender<LogLine>>,
}

/// A log file's spool: its own thread writes what is pushed.
fn file_spool(file: Box<dyn std::io::Write + Send>) -> Spool {
    Spool::new("spore-logfile", FILE_SPOOL_BYTES, "log file too slow", file)
}

impl LogBook {
    /// A book keeping the last `capacity` lines, appending to `file` too
    /// when given (opened by the caller: the runtime opens it through its
    /// system interface).
    pub fn new(capacity: usize, file: Option<Box<dyn std::io::Write + Send>>) -> Self {
        Self {
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            files: file.map(file_spool).into_iter().collect(),
            keepers: Vec::new(),
            followers: Vec::new(),
        }
    }

    /// Hands every line from now on to `keeper` too (the node's kept log).
    pub fn keep(&mut self, keeper: crate::rotating::Keeper) {
        self.keepers.push(keeper);
    }

    /// Opens `path` for appending, as a book's file (made when missing).
    pub fn open_file(path: &Path) -> std::io::Result<Box<dyn std::io::Write + Send>> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Box::new(file))
    }

    /// Adds a line: to the ring (dropping the oldest when full), the file
    /// and every follower.
    pub fn push(&mut self, line: LogLine) {
        if !self.files.is_empty() || !self.keepers.is_empty() {
            let text = format!(
                "{} {} {}\n",
                crate::text::timestamp(line.time),
                line.stream.name(),
                line.text
            );
            for file in &self.files {
                file.push(text.clone());
            }
            for keeper in &self.keepers {
                keeper(&text);
            }
        }
        self.followers.retain(|follower| {
            !matches!(
                follower.try_send(line.clone()),
                Err(smol::channel::TrySendError::Closed(_))
            )
        });
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// Puts lines an earlier spore held back in the ring (a live re-exec),
    /// oldest first: they were written to the files and followed already.
    pub fn restore(&mut self, lines: impl IntoIterator<Item = LogLine>) {
        for line in lines {
            if self.lines.len() == self.capacity {
                self.lines.pop_front();
            }
            self.lines.push_back(line);
        }
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> impl DoubleEndedIterator<Item = &LogLine> {
        self.lines.iter().skip(self.lines.len().saturating_sub(n))
    }

    /// A queue receiving every line pushed from now on.
    pub fn follow(&mut self) -> Receiver<LogLine> {
        // Followers that went away are otherwise dropped only when a line
        // comes: a quiet service would keep every one (and its queue).
        self.followers.retain(|follower| !follower.is_closed());
        let (tx, rx) = smol::channel::bounded(FOLLOW_QUEUE);
        self.followers.push(tx);
        rx
    }

    /// Ends every follow: each follower gets what is queued, then sees its
    /// queue closed (the service was removed).
    pub fn end_follows(&mut self) {
        self.followers.clear();
    }

    /// Number of lines kept.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when no line is kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

impl LogBook {
    /// Waits up to `limit` for the log file's writer to catch up (tests,
    /// and before exit); true when it did.
    pub fn flush_file(&self, limit: std::time::Duration) -> bool {
        self.files.iter().all(|file| file.flush(limit))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn line(text: &str) -> LogLine {
        LogLine {
            time: SystemTime::now(),
            stream: Stream::Stdout,
            text: text.into(),
        }
    }

    #[test]
    fn ring_keeps_only_the_newest_lines() {
        let mut book = LogBook::new(3, None);
        for n in 0..5 {
            book.push(line(&n.to_string()));
        }
        let kept: Vec<&str> = book.tail(10).map(|l| l.text.as_str()).collect();
        assert_eq!(kept, ["2", "3", "4"]);
        let last: Vec<&str> = book.tail(2).map(|l| l.text.as_str()).collect();
        assert_eq!(last, ["3", "4"]);
    }

    #[test]
    fn followers_get_new_lines_and_closed_ones_are_dropped() {
        let mut book = LogBook::new(10, None);
        let rx = book.follow();
        let gone = book.follow();
        drop(gone);
        book.push(line("hello"));
        assert_eq!(rx.try_recv().unwrap().text, "hello");
        assert_eq!(book.followers.len(), 1);
    }

    #[test]
    fn a_quiet_service_does_not_keep_followers_that_went_away() {
        let mut book = LogBook::new(10, None);
        for _ in 0..100 {
            drop(book.follow());
        }
        let _live = book.follow();
        assert_eq!(book.followers.len(), 1, "no line came, none piled up");
    }

    #[test]
    fn lines_are_appended_to_the_file_with_time_and_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let mut book = LogBook::new(10, Some(LogBook::open_file(&path).unwrap()));
        book.push(line("one"));
        book.push(LogLine {
            stream: Stream::Stderr,
            ..line("two")
        });
        assert!(book.flush_file(Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("Z stdout one"), "{}", lines[0]);
        assert!(lines[1].ends_with("Z stderr two"), "{}", lines[1]);
    }
}
