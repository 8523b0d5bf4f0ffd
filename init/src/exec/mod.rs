//! `spore exec [-g] [--] CMD ARGS…`: container entry mode, like tini or
//! dumb-init. Runs one command in its own process group, forwards signals
//! to it, reaps orphans, and exits with its status (128+n when killed by
//! signal n).
//!
//! - **Terminal**: when spore holds the foreground of a terminal, the
//!   child's group gets it (tcsetpgrp), so shells and `read` work; spore
//!   takes it back when the child ends.
//! - **Job control**: SIGTSTP/SIGTTIN/SIGTTOU sent to spore are forwarded,
//!   then spore stops itself; when the child stops at the terminal (Ctrl-Z),
//!   spore stops too, so the shell that started it sees the job stopped. On
//!   SIGCONT spore hands the terminal back to the child if it is in the
//!   foreground again (`fg`, not `bg`) and continues the child's group. As
//!   PID 1 (no shell above it) spore never stops itself.
//! - **Signals**: every catchable signal is forwarded; the synchronous ones
//!   (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT, SIGSYS) only when
//!   another process sent them; a real fault in spore keeps its default
//!   action.
//! - **`-g`**: signals go to the child's whole process group (SIGTSTP,
//!   SIGTTIN and SIGTTOU as SIGSTOP, so the group stops whatever it
//!   catches), and when the child exits the rest of its group gets SIGTERM.
//! - The child starts with the signal mask and the ignored signals spore
//!   inherited (SIGPIPE too); spore moves to `/` so it keeps no directory
//!   busy.

mod faults;
mod inherited;
mod terminal;

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, Pid};

use faults::SYNCHRONOUS;

/// Runs `argv`; `group`: signal the child's whole process group.
pub fn run(argv: &[OsString], group: bool) -> ExitCode {
    // Before any handler is installed: what the caller left ignored.
    let ignored = inherited::ignored();
    let mut set = SigSet::all();
    for signal in SYNCHRONOUS
        .iter()
        .chain(&[Signal::SIGKILL, Signal::SIGSTOP])
    {
        set.remove(*signal);
    }
    let mut inherited = SigSet::empty();
    if let Err(error) =
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut inherited))
    {
        eprintln!("spore exec: cannot block signals: {error}");
        return ExitCode::from(1);
    }
    let pid1 = std::process::id() == 1;
    if !pid1 {
        crate::subreaper::become_subreaper();
    }
    let Some((program, args)) = argv.split_first() else {
        eprintln!("spore exec: no command given");
        return ExitCode::from(2);
    };
    let faults = match faults::catch() {
        Ok(pipe) => Some(pipe),
        Err(error) => {
            eprintln!("spore exec: cannot catch synchronous signals: {error}");
            None
        }
    };
    let tty = terminal::foreground();
    let hand_over = tty.is_some();
    let restore: libc::sigset_t = *inherited.as_ref();
    let mut command = std::process::Command::new(program);
    command.args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            terminal::child_takes_terminal(hand_over);
            // The mask spore was started with, not spore's own (tini does
            // the same): a program started with signals blocked keeps them.
            libc::sigprocmask(libc::SIG_SETMASK, &restore, std::ptr::null_mut());
            // And the dispositions: what was ignored stays ignored.
            inherited::restore(&ignored);
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
        Err(error) => {
            eprintln!(
                "spore exec: cannot run {}: {error}",
                program.to_string_lossy()
            );
            let code = if error.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return ExitCode::from(code);
        }
    };
    // The child does both itself; doing them here too closes the race in
    // which a signal or a read comes before the child got that far (shells
    // do the same). EACCES: the child already ran exec, and did it.
    let _ = nix::unistd::setpgid(child, child);
    if let Some(tty) = tty {
        terminal::give(tty, child);
    }
    // Keep no directory busy (dumb-init does the same).
    if let Err(error) = std::env::set_current_dir("/") {
        eprintln!("spore exec: chdir /: {error}");
    }
    let signals = match SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(error) => {
            eprintln!("spore exec: signalfd: {error}");
            let _ = kill(child, Signal::SIGKILL);
            return ExitCode::from(1);
        }
    };
    let mut forwarder = Forwarder {
        child,
        group,
        pid1,
        stopped_by_us: false,
    };
    loop {
        wait_readable(&signals, faults.as_ref());
        if let Some(pipe) = &faults {
            for signal in faults::drain(pipe) {
                forwarder.forward(signal);
            }
        }
        loop {
            let signal = match signals.read_signal() {
                Ok(Some(info)) => i32::try_from(info.ssi_signo).unwrap_or(0),
                Ok(None) | Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(error) => {
                    eprintln!("spore exec: reading signals: {error}");
                    break;
                }
            };
            let Ok(signal) = Signal::try_from(signal) else {
                continue;
            };
            if signal == Signal::SIGCHLD {
                if let Some(code) = forwarder.reap() {
                    forwarder.finish();
                    return ExitCode::from(code);
                }
            } else {
                forwarder.on_signal(signal);
            }
        }
    }
}

/// Sleeps until the signalfd or the fault pipe has something.
fn wait_readable(signals: &SignalFd, faults: Option<&std::os::fd::OwnedFd>) {
    let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    if let Some(pipe) = faults {
        fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
    }
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(error) => eprintln!("spore exec: poll: {error}"),
    }
}

/// Where signals go, and the job-control state.
struct Forwarder {
    child: Pid,
    group: bool,
    pid1: bool,
    /// spore forwarded a stop signal and stopped itself: the child's stop
    /// that follows is that one, not a new one to follow.
    stopped_by_us: bool,
}

impl Forwarder {
    fn target(&self) -> Pid {
        if self.group {
            Pid::from_raw(-self.child.as_raw())
        } else {
            self.child
        }
    }

    fn forward(&self, signal: Signal) {
        self.send(self.target(), signal);
    }

    fn send(&self, to: Pid, signal: Signal) {
        if let Err(error) = kill(to, signal) {
            if error != Errno::ESRCH {
                eprintln!("spore exec: forwarding {signal}: {error}");
            }
        }
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU => {
                // With -g the group is stopped for sure (dumb-init does the
                // same): a child that catches SIGTSTP would otherwise go on
                // running while spore, its job, is stopped.
                self.forward(if self.group { Signal::SIGSTOP } else { signal });
                if !self.pid1 {
                    self.stopped_by_us = true;
                    self.stop_self();
                }
            }
            Signal::SIGCONT => {
                // `fg` gave spore's group the terminal again: pass it on.
                // After `bg` the shell keeps it, and so does spore.
                if let Some(tty) = terminal::foreground() {
                    terminal::give(tty, self.child);
                }
                // A job stopped at the terminal is stopped as a whole group.
                self.send(Pid::from_raw(-self.child.as_raw()), Signal::SIGCONT);
            }
            other => self.forward(other),
        }
    }

    /// Stops spore (SIGSTOP cannot be caught); it goes on at SIGCONT.
    fn stop_self(&self) {
        let _ = kill(Pid::this(), Signal::SIGSTOP);
    }

    /// Reaps every exited child; returns the exit code once the main child
    /// is among them. A main child stopped at the terminal stops spore too.
    fn reap(&mut self) -> Option<u8> {
        let mut result = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.child => {
                    result = Some(u8::try_from(code & 0xff).unwrap_or(1));
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == self.child => {
                    result = Some(u8::try_from(128 + signal as i32).unwrap_or(255));
                }
                Ok(WaitStatus::Stopped(pid, _)) if pid == self.child => {
                    if std::mem::take(&mut self.stopped_by_us) || self.pid1 {
                        continue;
                    }
                    // Ctrl-Z reached the child's group: the shell above
                    // spore only sees the job stopped if spore stops.
                    self.stop_self();
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return result,
                Ok(_) => {}
            }
        }
    }

    /// The main child is gone: with `-g` the rest of its group gets SIGTERM
    /// (dumb-init does the same); the terminal goes back to spore's group.
    fn finish(&self) {
        if self.group {
            self.send(Pid::from_raw(-self.child.as_raw()), Signal::SIGTERM);
        }
        // SAFETY: stdin stays open; tcgetpgrp only reads.
        let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
        if nix::unistd::tcgetpgrp(stdin).ok() == Some(self.child) {
            terminal::give(stdin, getpgrp());
        }
    }
}
