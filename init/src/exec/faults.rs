//! Synchronous signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT,
//! SIGSYS) cannot simply be blocked and read from the signalfd: a real
//! fault while blocked kills the process at once. Instead a handler looks
//! at `si_code`: sent by another process (kill(2), sigqueue(3), tgkill(2):
//! si_code ≤ 0), the number goes down a self-pipe for the loop to forward;
//! a real fault in spore restores the default action, so returning re-runs
//! the faulting instruction and the kernel ends spore as it should.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The synchronous signals.
pub const SYNCHRONOUS: &[Signal] = &[
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGABRT,
    Signal::SIGSYS,
];

/// The write end of the self-pipe, for the handler (-1: none).
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// Installs the handler for every synchronous signal; returns the read end
/// of the pipe on which each externally sent one arrives as one byte.
pub fn catch() -> std::io::Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    PIPE.store(write.as_raw_fd(), Ordering::SeqCst);
    // The write end lives as long as the process: the handler may run at
    // any time.
    std::mem::forget(write);
    let action = SigAction::new(
        SigHandler::SigAction(on_signal),
        SaFlags::SA_SIGINFO | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in SYNCHRONOUS {
        // SAFETY: the handler only makes async-signal-safe calls.
        unsafe { sigaction(*signal, &action) }?;
    }
    Ok(read)
}

extern "C" fn on_signal(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    let code = if info.is_null() {
        1
    } else {
        unsafe { (*info).si_code }
    };
    if code <= 0 {
        // From another process (SI_USER 0, SI_QUEUE -1, SI_TKILL -6):
        // forward it. A full pipe loses the byte, never blocks.
        let byte = u8::try_from(signal).unwrap_or(0);
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking.
        unsafe {
            libc::write(PIPE.load(Ordering::Relaxed), (&byte as *const u8).cast(), 1);
        }
    } else {
        // A real fault in spore: default action, then the instruction runs
        // again and the kernel ends spore (with a core, where allowed).
        // SAFETY: signal(2) is async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
}

/// Reads the signals waiting in the pipe.
pub fn drain(read: &OwnedFd) -> Vec<Signal> {
    let mut bytes = [0u8; 64];
    let mut found = Vec::new();
    loop {
        match nix::unistd::read(read, &mut bytes) {
            Ok(0) | Err(_) => return found,
            Ok(n) => found.extend(
                bytes
                    .iter()
                    .take(n)
                    .filter_map(|b| Signal::try_from(i32::from(*b)).ok()),
            ),
        }
    }
}
