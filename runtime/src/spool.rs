//! A bounded queue of text drained by its own writer thread, for output
//! spore must never wait for (the console, a service's log file).
//!
//! [`Spool::push`] never blocks: when the queue holds `capacity` bytes, the
//! line is dropped and counted, and once the writer catches up it writes
//! `spore: N lines dropped (WHY)` where the lost lines were. Only the writer
//! thread ever blocks on the slow target.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::text::{thousands, timestamp};

/// Text waiting for a slow writer. Cheap to push to from any thread; its
/// writer thread ends once the spool is dropped and everything is written.
pub struct Spool {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Lines (or a drop count) are waiting for the writer.
    pending: Condvar,
    /// The writer finished a batch.
    written: Condvar,
    capacity: usize,
    why: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    NotStarted,
    Running,
    /// No thread could be started: lines are counted as dropped.
    Failed,
}

struct Queue {
    lines: VecDeque<String>,
    bytes: usize,
    /// Dropped since the last summary.
    dropped: u64,
    dropped_total: u64,
    /// The writer holds a batch it has not finished writing.
    busy: bool,
    writer: Writer,
    /// The spool was dropped: the writer ends once the queue is empty.
    closed: bool,
    /// Taken by the writer thread when it starts.
    target: Option<Box<dyn Write + Send>>,
    name: &'static str,
}

impl Spool {
    /// A spool holding at most `capacity` bytes for `target`; its thread,
    /// named `name`, starts with the first line. `why` ends the drop summary.
    pub fn new(
        name: &'static str,
        capacity: usize,
        why: &'static str,
        target: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    lines: VecDeque::new(),
                    bytes: 0,
                    dropped: 0,
                    dropped_total: 0,
                    busy: false,
                    writer: Writer::NotStarted,
                    closed: false,
                    target: Some(target),
                    name,
                }),
                pending: Condvar::new(),
                written: Condvar::new(),
                capacity,
                why,
            }),
        }
    }

    /// Queues `line` (which carries its own newline), or drops and counts it
    /// when the queue is full. Never blocks on the target.
    pub fn push(&self, line: String) {
        let mut queue = self.shared.lock();
        if queue.writer == Writer::NotStarted {
            queue.writer = match queue.target.take() {
                Some(target) => {
                    let shared = self.shared.clone();
                    let started = std::thread::Builder::new()
                        .name(queue.name.into())
                        .spawn(move || shared.write_forever(target));
                    if started.is_ok() {
                        Writer::Running
                    } else {
                        Writer::Failed
                    }
                }
                None => Writer::Failed,
            };
        }
        if queue.writer == Writer::Failed || queue.bytes + line.len() > self.shared.capacity {
            // A waiting writer must learn of the first drop to report it.
            let writer_waits = queue.lines.is_empty() && queue.dropped == 0 && !queue.busy;
            queue.dropped += 1;
            queue.dropped_total += 1;
            drop(queue);
            if writer_waits {
                self.shared.pending.notify_one();
            }
            return;
        }
        // The writer waits only when it found the queue empty and is not
        // writing: wake it then, and only then (one futex call per batch,
        // not per line).
        let writer_waits = queue.lines.is_empty() && queue.dropped == 0 && !queue.busy;
        queue.bytes += line.len();
        queue.lines.push_back(line);
        drop(queue);
        if writer_waits {
            self.shared.pending.notify_one();
        }
    }

    /// Waits until everything pushed so far is written, at most `limit`.
    /// True when all of it was.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut queue = self.shared.lock();
        while queue.writer == Writer::Running
            && (!queue.lines.is_empty() || queue.busy || queue.dropped > 0)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = match self.shared.written.wait_timeout(queue, left) {
                Ok((queue, _)) => queue,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// Lines dropped since the spool was made.
    pub fn dropped_total(&self) -> u64 {
        self.shared.lock().dropped_total
    }
}

impl Shared {
    /// The queue, even if a thread panicked while holding it (plain lines
    /// and counters: nothing is left half-updated that matters).
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer thread: takes everything queued, writes it (blocking only
    /// this thread), says how much was dropped, and waits for more. It ends
    /// when the [`Spool`] is gone and nothing is left.
    fn write_forever(self: Arc<Self>, mut target: Box<dyn Write + Send>) {
        block_all_signals();
        loop {
            let (batch, dropped) = {
                let mut queue = self.lock();
                while queue.lines.is_empty() && queue.dropped == 0 {
                    if queue.closed {
                        return;
                    }
                    queue = self
                        .pending
                        .wait(queue)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                queue.busy = true;
                queue.bytes = 0;
                (
                    std::mem::take(&mut queue.lines),
                    std::mem::take(&mut queue.dropped),
                )
            };
            let mut text = String::with_capacity(batch.iter().map(String::len).sum::<usize>());
            for line in batch {
                text.push_str(&line);
            }
            if dropped > 0 {
                text.push_str(&format!(
                    "{} spore: {} lines dropped ({})\n",
                    timestamp(SystemTime::now()),
                    thousands(dropped),
                    self.why
                ));
            }
            // A closed console or a full disk must never stop the init:
            // errors are ignored, the next batch tries again.
            let _ = target.write_all(text.as_bytes());
            let _ = target.flush();
            self.lock().busy = false;
            self.written.notify_all();
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // The writer may be waiting for lines that will never come: wake it
        // so it sees the spool is closed and ends.
        self.shared.lock().closed = true;
        self.shared.pending.notify_all();
    }
}

/// The writer thread takes no signal: spore reads its signals from a
/// signalfd, which works only while every thread blocks them.
fn block_all_signals() {
    let all = nix::sys::signal::SigSet::all();
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&all),
        None,
    );
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A target that blocks until the test lets it write, and reports what
    /// it got.
    struct Gate {
        open: mpsc::Receiver<()>,
        out: mpsc::Sender<String>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.open.recv();
            let _ = self.out.send(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_target_drops_and_counts_without_blocking_the_pusher() {
        let (open_tx, open) = mpsc::channel();
        let (out, got) = mpsc::channel();
        let spool = Spool::new(
            "test-spool",
            100,
            "target too slow",
            Box::new(Gate { open, out }),
        );
        // The first line is taken by the writer, which then blocks on the gate.
        spool.push("first\n".into());
        std::thread::sleep(Duration::from_millis(50));
        let pushed = Instant::now();
        for n in 0..1000 {
            spool.push(format!("line {n:04}\n"));
        }
        assert!(pushed.elapsed() < Duration::from_secs(5));
        assert!(
            !spool.flush(Duration::from_millis(50)),
            "flush cannot finish while stuck"
        );
        // 100 bytes hold 10 lines of 10 bytes; the other 990 are dropped.
        assert_eq!(spool.dropped_total(), 990);
        for _ in 0..3 {
            let _ = open_tx.send(());
        }
        assert!(spool.flush(Duration::from_secs(5)));
        let text: String = got.try_iter().collect();
        assert!(text.starts_with("first\nline 0000\n"), "{text}");
        assert!(
            text.contains("line 0009\n") && !text.contains("line 0010"),
            "{text}"
        );
        assert!(
            text.ends_with("spore: 990 lines dropped (target too slow)\n"),
            "{text}"
        );
    }
}
