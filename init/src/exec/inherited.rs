//! The signal dispositions spore exec was started with. tini keeps them:
//! a signal the caller left ignored (`nohup`, a shell's `trap '' PIPE`)
//! stays ignored in the child. Two things undo that unless spore puts them
//! back before exec: the handlers spore installs for the synchronous
//! signals (exec resets a handled signal to its default), and Rust's
//! runtime, which ignores SIGPIPE before `main` and resets it to the
//! default in every child it spawns. So SIGPIPE's disposition is read
//! before the runtime starts, from `.init_array`, which the C library runs
//! before `main`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether SIGPIPE was ignored when the process started.
static SIGPIPE_IGNORED: AtomicBool = AtomicBool::new(false);

/// Runs before `main` (and so before Rust's runtime ignores SIGPIPE).
extern "C" fn record_sigpipe() {
    // SAFETY: sigaction with a null new action only reads the old one.
    let ignored = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    };
    SIGPIPE_IGNORED.store(ignored, Ordering::Relaxed);
}

#[used]
#[link_section = ".init_array"]
static RECORD_SIGPIPE: extern "C" fn() = record_sigpipe;

/// The signals ignored now (call it before installing any handler), with
/// SIGPIPE as it was at start.
pub fn ignored() -> Vec<libc::c_int> {
    let mut found = Vec::new();
    for signal in 1..=libc::SIGRTMAX() {
        if matches!(signal, libc::SIGKILL | libc::SIGSTOP | libc::SIGPIPE) {
            continue;
        }
        // SAFETY: as above, a read of the current disposition.
        let ignored = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
        };
        if ignored {
            found.push(signal);
        }
    }
    if SIGPIPE_IGNORED.load(Ordering::Relaxed) {
        found.push(libc::SIGPIPE);
    }
    found
}

/// In the child, between fork and exec: ignores `signals` again (exec
/// keeps an ignored signal ignored). Async-signal-safe.
pub fn restore(signals: &[libc::c_int]) {
    for &signal in signals {
        // SAFETY: signal(2) is async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}
