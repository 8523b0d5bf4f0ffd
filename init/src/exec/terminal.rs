//! Handing the controlling terminal to the child's process group, as a
//! shell does for a foreground job (tcsetpgrp(3)).
//!
//! The child runs in its own process group (so `-g` can signal all of it);
//! without the terminal, its first read from it would stop it with SIGTTIN
//! and spore would wait forever. spore only hands the terminal over when
//! its own group holds it (it was started in the foreground), never steals
//! it from a shell that put spore in the background.

use std::os::fd::BorrowedFd;

use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};

/// The terminal on stdin, when spore's process group is its foreground
/// group; None otherwise (no terminal, or spore runs in the background).
pub fn foreground() -> Option<BorrowedFd<'static>> {
    // SAFETY: stdin stays open for spore's whole life; nothing closes it.
    let stdin = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
    (tcgetpgrp(stdin).ok()? == getpgrp()).then_some(stdin)
}

/// Gives `tty` to process group `pgid`. spore blocks SIGTTOU, so the call
/// cannot stop it even from the background (tty_check_change treats a
/// blocked SIGTTOU as ignored).
pub fn give(tty: BorrowedFd<'_>, pgid: Pid) {
    if let Err(error) = tcsetpgrp(tty, pgid) {
        eprintln!("spore exec: tcsetpgrp({pgid}): {error}");
    }
}

/// In the child between fork and exec: its own process group, and the
/// terminal for it when `hand_over`. Only async-signal-safe calls.
pub fn child_takes_terminal(hand_over: bool) {
    // SAFETY: plain system calls on the calling process.
    unsafe {
        libc::setpgid(0, 0);
        if hand_over {
            // SIGTTOU is still blocked here (the mask is restored after),
            // so a background caller is not stopped. ENOTTY: no terminal.
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
        }
    }
}
