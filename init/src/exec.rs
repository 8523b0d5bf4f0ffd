//! `spore exec [-g] [--] CMD ARGS…`: container entry mode, like tini or
//! dumb-init. Runs one command, forwards every catchable signal to it,
//! reaps orphans, and exits with its status (128+n when killed by signal n).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals that report a fault in spore itself: never blocked or forwarded.
const SYNCHRONOUS: &[Signal] = &[
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGABRT,
    Signal::SIGSYS,
];

/// Runs `argv`; `group`: signal the child's whole process group.
pub fn run(argv: &[OsString], group: bool) -> ExitCode {
    let mut set = SigSet::all();
    for signal in SYNCHRONOUS
        .iter()
        .chain(&[Signal::SIGKILL, Signal::SIGSTOP])
    {
        set.remove(*signal);
    }
    if let Err(error) = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        eprintln!("spore exec: cannot block signals: {error}");
        return ExitCode::from(1);
    }
    if std::process::id() != 1 {
        crate::become_subreaper();
    }
    let Some((program, args)) = argv.split_first() else {
        eprintln!("spore exec: no command given");
        return ExitCode::from(2);
    };
    let mut command = std::process::Command::new(program);
    command.args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // Its own process group, so `-g` can signal all of it.
            libc::setpgid(0, 0);
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
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
    let signals = match SignalFd::new(&set) {
        Ok(fd) => fd,
        Err(error) => {
            eprintln!("spore exec: signalfd: {error}");
            let _ = kill(child, Signal::SIGKILL);
            return ExitCode::from(1);
        }
    };
    let target = if group {
        Pid::from_raw(-child.as_raw())
    } else {
        child
    };
    loop {
        let info = match signals.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(error) => {
                eprintln!("spore exec: reading signals: {error}");
                continue;
            }
        };
        let Ok(signal) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) else {
            continue;
        };
        if signal != Signal::SIGCHLD {
            if let Err(error) = kill(target, signal) {
                if error != Errno::ESRCH {
                    eprintln!("spore exec: forwarding {signal}: {error}");
                }
            }
            continue;
        }
        if let Some(code) = reap(child) {
            return ExitCode::from(code);
        }
    }
}

/// Reaps every exited child; returns the exit code once `child` is among them.
fn reap(child: Pid) -> Option<u8> {
    let mut result = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                result = Some(u8::try_from(code & 0xff).unwrap_or(1));
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                result = Some(u8::try_from(128 + signal as i32).unwrap_or(255));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}
