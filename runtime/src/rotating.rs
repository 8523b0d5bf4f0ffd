//! A log file that stays bounded: appended to until the next line would
//! take it past its size, then renamed to `NAME.1` (replacing the one
//! before) and begun afresh, so a service's kept output costs at most twice
//! its size on the disk. Written by a spool's thread, never by the event
//! loop; a failed rename or reopen costs lines, never spore.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes of one kept log file before it is rotated.
pub const KEPT_LOG_BYTES: u64 = 1024 * 1024;

/// An append-only file rotated at a size.
pub struct Rotating {
    path: PathBuf,
    max: u64,
    written: u64,
    file: Option<File>,
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Rotating {
    /// Appends to `path` (made when missing), rotating it at `max` bytes.
    pub fn open(path: &Path, max: u64) -> io::Result<Self> {
        let file = append(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path: path.to_owned(),
            max,
            written,
            file: Some(file),
        })
    }

    /// `path` with `.1` added: where the older half is kept.
    pub fn older(path: &Path) -> PathBuf {
        let mut older = path.as_os_str().to_owned();
        older.push(".1");
        PathBuf::from(older)
    }

    fn rotate(&mut self) {
        self.file = None;
        let _ = std::fs::rename(&self.path, Self::older(&self.path));
        self.file = append(&self.path).ok();
        self.written = 0;
    }
}

impl Write for Rotating {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let size = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if self.written > 0 && self.written.saturating_add(size) > self.max {
            self.rotate();
        }
        match &mut self.file {
            Some(file) => {
                file.write_all(buf)?;
                self.written = self.written.saturating_add(size);
                Ok(buf.len())
            }
            None => Err(io::Error::other("the kept log file could not be reopened")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

/// Where a book's lines are kept across restarts: called with each line
/// (`TIME STREAM TEXT\n`), it must not block (see [`keeper`]).
pub type Keeper = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Separates a kept line's file from the line on the router's queue.
const SEP: char = '\u{1f}';

/// Bytes of kept lines queued for the disk, for every file together.
const ROUTER_SPOOL_BYTES: usize = 1024 * 1024;

/// The one writer of every kept file: a spool's thread, whatever the number
/// of services, each batch written file by file (opened, appended, closed:
/// no descriptor is held between batches).
fn router() -> &'static crate::spool::Spool {
    static ROUTER: std::sync::OnceLock<crate::spool::Spool> = std::sync::OnceLock::new();
    ROUTER.get_or_init(|| {
        crate::spool::Spool::new(
            "spore-kept-logs",
            ROUTER_SPOOL_BYTES,
            "disk too slow for the kept logs",
            Box::new(Router::default()),
        )
    })
}

/// A [`Keeper`] appending to `path` (rotated at [`KEPT_LOG_BYTES`])
/// through the one router thread; never blocks: a full queue drops lines
/// and counts them.
pub fn keeper(path: PathBuf) -> Keeper {
    let key = path.display().to_string();
    std::sync::Arc::new(move |line: &str| router().push(format!("{key}{SEP}{line}")))
}

/// Routes `FILE<SEP>LINE` lines to their files.
#[derive(Default)]
struct Router {
    partial: Vec<u8>,
    /// Where a line without a file (the spool's drop summary) goes: the
    /// last file written.
    last: Option<PathBuf>,
}

impl Write for Router {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(buf);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(buf.len());
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        let text = String::from_utf8_lossy(&complete);
        // File by file, each file's lines in their order.
        let mut by_file: Vec<(PathBuf, Vec<&str>)> = Vec::new();
        for line in text.split_inclusive('\n') {
            let (path, line) = match line.split_once(SEP) {
                Some((path, line)) => (PathBuf::from(path), line),
                None => match &self.last {
                    Some(path) => (path.clone(), line),
                    None => continue,
                },
            };
            self.last = Some(path.clone());
            match by_file.iter_mut().find(|(p, _)| *p == path) {
                Some((_, lines)) => lines.push(line),
                None => by_file.push((path, vec![line])),
            }
        }
        for (path, lines) in by_file {
            // A file that cannot be opened costs its own lines.
            if let Ok(mut file) = Rotating::open(&path, KEPT_LOG_BYTES) {
                for line in lines {
                    let _ = file.write_all(line.as_bytes());
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Waits up to `limit` until every kept line pushed so far is written
/// (tests, and before exit); true when it was.
pub fn flush_kept(limit: std::time::Duration) -> bool {
    router().flush(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_writes_each_line_to_its_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        let mut router = Router::default();
        let text = format!(
            "{}{SEP}one\n{}{SEP}two\n{}{SEP}thr",
            a.display(),
            b.display(),
            a.display()
        );
        router.write_all(text.as_bytes()).unwrap();
        router.write_all(b"ee\ndropped 3 lines\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&a).unwrap(),
            "one\nthree\ndropped 3 lines\n"
        );
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "two\n");
    }

    #[test]
    fn a_file_is_rotated_at_its_size_and_keeps_one_older_half() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.log");
        let mut file = Rotating::open(&path, 100).unwrap();
        for n in 0..30 {
            file.write_all(format!("line {n:04}\n").as_bytes()).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let older = std::fs::read_to_string(Rotating::older(&path)).unwrap();
        assert!(
            current.len() <= 100 && older.len() <= 100,
            "{current:?} {older:?}"
        );
        assert!(current.ends_with("line 0029\n"), "{current}");
        // Every line whole: the older half ends where the current begins.
        let first_current: u32 = current[5..9].parse().unwrap();
        assert!(
            older.ends_with(&format!("line {:04}\n", first_current - 1)),
            "{older}"
        );
        // Reopened, it counts what is there.
        let mut again = Rotating::open(&path, 100).unwrap();
        again.write_all(b"line 0030\n").unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
    }
}
