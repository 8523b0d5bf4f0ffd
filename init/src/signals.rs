//! The one owner of signals: they are blocked in every thread and read from
//! a signalfd on the event loop (signalfd(2)), so no handler ever runs.

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use smol::Async;

/// Signals spore acts on: SIGCHLD (reap), SIGTERM/SIGUSR2/SIGPWR
/// (poweroff), SIGINT (ctrl-alt-del: reboot), SIGUSR1 (halt), SIGHUP (reload),
/// SIGQUIT (an orderly stop outside PID 1, ignored as PID 1: its default
/// action would dump a core holding secrets and orphan every service).
pub const HANDLED: &[Signal] = &[
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPWR,
];

/// The set of [`HANDLED`] signals.
pub fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for signal in HANDLED {
        set.add(*signal);
    }
    set
}

/// Blocks `set` in the calling thread; threads started later inherit the
/// mask, so call this first thing in `main`.
pub fn block(set: &SigSet) -> io::Result<()> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(set), None)
        .map_err(io::Error::from)
}

/// A signalfd on the event loop.
pub struct Signals {
    fd: Async<SignalFd>,
}

impl Signals {
    /// Opens a non-blocking signalfd for `set` (which must be blocked).
    pub fn open(set: &SigSet) -> io::Result<Self> {
        let fd = SignalFd::with_flags(set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self {
            fd: Async::new(fd)?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&self) -> io::Result<Signal> {
        loop {
            let info = self
                .fd
                .read_with(|fd| match fd.read_signal() {
                    Ok(Some(info)) => Ok(info),
                    Ok(None) => Err(io::ErrorKind::WouldBlock.into()),
                    Err(errno) => Err(io::Error::from(errno)),
                })
                .await?;
            let number = i32::try_from(info.ssi_signo).unwrap_or(0);
            if let Ok(signal) = Signal::try_from(number) {
                return Ok(signal);
            }
        }
    }
}
