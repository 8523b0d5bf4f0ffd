//! What an earlier start of spore kept (`STATE_DIR/logs/N`, N starts ago:
//! see the init's kept_logs), read on a thread of its own (a disk may be
//! slow; the event loop never waits for it) and answered as this start's
//! lines are: the newest of a window, within the answer's budget.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use proto::rpc::{code, ApiError};
use runtime::logbook::{LogLine, Stream};
use serde_json::{json, Value};
use smol::channel::Receiver;

use super::logs::{self, Window};

/// Reads of earlier starts under way, at most [`MAX_READERS`].
static READERS: AtomicUsize = AtomicUsize::new(0);

/// Threads reading kept logs at once.
const MAX_READERS: usize = 4;

/// Whose lines to read.
#[derive(Debug, Clone)]
pub enum Source {
    /// One service's output (`NAME.log`).
    Service(String),
    /// spore's own lines (`spore.log`).
    Journal,
    /// Every file of that start, merged by time.
    All,
}

/// How an answer is cut.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    /// Lines at most.
    pub count: usize,
    /// Bytes of JSON at most.
    pub budget: usize,
}

/// A service name that can stand in a file name: letters, digits and `_ . @ -`,
/// not starting with a dot (nothing that leaves the directory).
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

/// Reads `source` of the start `ago` starts before this one under `root`
/// on a thread; the answer comes on the returned queue.
pub fn read(
    root: PathBuf,
    ago: u64,
    source: Source,
    window: Window,
    cut: Cut,
) -> Receiver<Result<Value, ApiError>> {
    let (tx, rx) = smol::channel::bounded(1);
    // A reader's calls cost a thread each: a few at once, the rest told so.
    if READERS.fetch_add(1, Ordering::SeqCst) >= MAX_READERS {
        READERS.fetch_sub(1, Ordering::SeqCst);
        let _ = tx.try_send(Err(ApiError::new(
            code::BUSY,
            "node busy: too many reads of earlier starts' logs at once; try again",
        )));
        return rx;
    }
    let job = move || {
        let answer = answer(&root.join(ago.to_string()), ago, &source, &window, cut);
        READERS.fetch_sub(1, Ordering::SeqCst);
        let _ = tx.send_blocking(answer);
    };
    if let Err(error) = std::thread::Builder::new()
        .name("spore-kept-logs".into())
        .spawn(job)
    {
        // The job (and its sender) is gone: the caller gets an internal error.
        READERS.fetch_sub(1, Ordering::SeqCst);
        runtime::journal::note(format_args!("kept logs: no thread to read them: {error}"));
    }
    rx
}

fn answer(
    dir: &Path,
    ago: u64,
    source: &Source,
    window: &Window,
    cut: Cut,
) -> Result<Value, ApiError> {
    if !dir.is_dir() {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("no output is kept for {ago} start(s) ago (STATE_DIR/logs/{ago}; kept only on a state disk, for the last few starts)"),
        ));
    }
    let newest = |name: &str| newest_of(dir, name, window, cut.count);
    let (lines, omitted) = match source {
        Source::Service(name) => {
            let kept = newest(name);
            logs::of_one(kept.iter(), &Window::default(), cut.count, cut.budget)
        }
        Source::Journal => {
            let kept = newest("spore");
            logs::of_one(kept.iter(), &Window::default(), cut.count, cut.budget)
        }
        Source::All => {
            let names = kept_names(dir);
            let kept: Vec<(String, Vec<LogLine>)> = names
                .into_iter()
                .map(|name| {
                    let lines = newest(&name);
                    (name, lines)
                })
                .collect();
            let all: Vec<(&str, &LogLine)> = kept
                .iter()
                .flat_map(|(name, lines)| lines.iter().map(move |line| (name.as_str(), line)))
                .collect();
            logs::merged_json(all, cut.count, cut.budget)
        }
    };
    Ok(json!({ "boot": format!("-{ago}"), "lines": lines, "omitted": omitted }))
}

/// The names of the files kept in `dir` (`web` for `web.log`; `spore` is
/// spore's own).
fn kept_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// The newest `count` lines of `name`'s kept files (the older half first)
/// in `window`; lines that do not read back are skipped.
fn newest_of(dir: &Path, name: &str, window: &Window, count: usize) -> Vec<LogLine> {
    let current = dir.join(format!("{name}.log"));
    let older = runtime::rotating::Rotating::older(&current);
    let mut kept: VecDeque<LogLine> = VecDeque::new();
    for file in [older, current] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines().filter_map(Stream::read_line) {
            if window.holds(&line) {
                if kept.len() == count {
                    kept.pop_front();
                }
                if count > 0 {
                    kept.push_back(line);
                }
            }
        }
    }
    kept.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_reach_a_path() {
        for good in ["web", "call-home", "getty@tty1", "a.b_c"] {
            assert!(plain_name(good), "{good}");
        }
        for bad in ["", "..", ".hidden", "a/b", "../etc/passwd", "a b", "x\0y"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }
}
