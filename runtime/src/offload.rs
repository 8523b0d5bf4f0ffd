//! Blocking work (file writes, fsync, hashing, reading secrets) on a
//! thread of its own, its result awaited on the event loop. Not smol's
//! `unblock`: its pool keeps every idle thread it ever started, each waking
//! twice a second for good (blocking 1.7 stops one only above its thread
//! limit), and an idle node makes no wake-ups. These jobs are rare (a
//! deploy, a secret, a start that reads credentials), so a short-lived
//! thread each costs nothing that matters.

use std::sync::{Arc, Mutex};

/// Runs `work` on a new thread named `name` and waits for its result
/// without blocking the loop. When no thread can be started (the process
/// is out of them), the work runs here instead: late, but done. None only
/// when the work itself panicked.
pub async fn run<T, F>(name: &str, work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (answer, result) = smol::channel::bounded(1);
    let held = Arc::new(Mutex::new(Some(work)));
    let for_thread = held.clone();
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let work = for_thread.lock().ok().and_then(|mut w| w.take());
            if let Some(work) = work {
                let _ = answer.send_blocking(work());
            }
        });
    if spawned.is_err() {
        let work = held.lock().ok().and_then(|mut w| w.take());
        return work.map(|work| work());
    }
    result.recv().await.ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_work_runs_on_a_named_thread_and_its_result_comes_back() {
        let name = smol::block_on(run("spore-test-job", || {
            std::thread::current().name().map(str::to_owned)
        }));
        assert_eq!(name, Some(Some("spore-test-job".to_owned())));
    }

    #[test]
    fn the_thread_is_gone_once_the_work_is_done() {
        let named = || {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "spore-test-gone")
                })
                .count()
        };
        for _ in 0..5 {
            assert_eq!(smol::block_on(run("spore-test-gone", || 1 + 1)), Some(2));
        }
        // Each ends right after sending its result; give them a moment.
        let mut left = named();
        for _ in 0..50 {
            if left == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            left = named();
        }
        assert_eq!(left, 0, "threads of finished jobs are still there");
    }
}
