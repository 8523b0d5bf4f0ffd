//! What a panic does in a supervising spore.
//!
//! No panic in spore is ever unwound. The release binary is built with
//! `panic = "abort"` and without unwind tables (Cargo.toml, `init/build.rs`),
//! which keeps it small; in every build the panic hook, which runs on the
//! panicking thread before any unwinding could start, logs the panic and
//! then runs that thread's cover, which never returns:
//! - the supervising thread of PID 1 falls back to reaping forever (PID 1
//!   exiting would panic the kernel);
//! - a new binary reading the state of a live re-exec goes back to the
//!   previous binary;
//! - any other thread of a supervising spore (a helper: the console's
//!   writer, a blocking job) stops where it is, parked, and the process
//!   goes on without it.
//!
//! So a test build, which can unwind, takes the same path as the release
//! binary, which cannot. Outside supervision (the command-line verbs) no
//! hook is installed and a panic ends the process as Rust's default does.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use runtime::journal;

thread_local! {
    /// This thread's covers, innermost last.
    static COVERS: RefCell<Vec<Box<dyn Fn()>>> = const { RefCell::new(Vec::new()) };
}

/// Set once the hook is installed (a re-exec's new binary installs it
/// before reading the state, and supervision asks again).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the panic hook of a supervising spore (PID 1, `spore run`, a
/// re-exec's new binary).
pub fn install() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        journal::note(format_args!(
            "internal error in thread {}: {info}",
            thread.name().unwrap_or("unnamed")
        ));
        let cover = COVERS
            .try_with(|covers| covers.try_borrow_mut().ok().and_then(|mut c| c.pop()))
            .ok()
            .flatten();
        if let Some(cover) = cover {
            cover();
        }
        journal::note(format_args!(
            "thread {} stops here; spore goes on without it",
            thread.name().unwrap_or("unnamed")
        ));
        loop {
            std::thread::park();
        }
    }));
}

/// Runs `body` on this thread with `cover` as what a panic in it does
/// instead (see the module's comment); `cover` must not return.
pub fn under<T>(
    cover: impl Fn() -> std::convert::Infallible + 'static,
    body: impl FnOnce() -> T,
) -> T {
    COVERS.with(|covers| {
        covers.borrow_mut().push(Box::new(move || {
            let _never = cover();
        }))
    });
    let value = body();
    COVERS.with(|covers| covers.borrow_mut().pop());
    value
}
