//! The end of a node: after every service stopped in order, terminate what
//! is left, sync, unmount, and reboot — from a forked child, so PID 1 never
//! exits even if reboot(2) fails.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use runtime::journal;

use crate::node::Ending;

/// How long leftover processes get between SIGTERM and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(3);

/// Ends the node; never returns.
pub fn finish(ending: Ending) -> ! {
    journal::note("terminating leftover processes");
    signal_all(Signal::SIGTERM);
    reap_until_empty(LEFTOVER_GRACE);
    signal_all(Signal::SIGKILL);
    reap_until_empty(Duration::from_secs(1));
    // What was said is on the state disk before it is unmounted.
    runtime::rotating::flush_kept(Duration::from_secs(2));
    nix::unistd::sync();
    unmount_all();
    nix::unistd::sync();
    let mode = match ending {
        Ending::Reboot => RebootMode::RB_AUTOBOOT,
        Ending::Poweroff => RebootMode::RB_POWER_OFF,
        Ending::Halt => RebootMode::RB_HALT_SYSTEM,
    };
    journal::note(format_args!("{ending:?} now"));
    // Give the console a moment to show the last lines; a console that takes
    // nothing costs this much and no more.
    journal::flush(Duration::from_secs(2));
    // SAFETY: the child of a multi-threaded process (the console writer,
    // smol's reactor) may only make async-signal-safe calls: it calls only
    // reboot(2) and _exit.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = reboot(mode);
            // SAFETY: leave the child without running destructors.
            unsafe { libc::_exit(1) }
        }
        Ok(ForkResult::Parent { .. }) => {}
        Err(error) => {
            journal::note(format_args!(
                "fork for reboot failed: {error}; calling reboot directly"
            ));
            let _ = reboot(mode);
        }
    }
    last_resort()
}

/// PID 1's floor: reap children forever. Reached when reboot(2) failed, or
/// when the event loop itself failed; the node stays up, reaping.
pub fn last_resort() -> ! {
    journal::note("PID 1 keeps reaping");
    let signals = crate::signals::handled_set();
    let _ = crate::signals::block(&signals);
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => {
                // Nothing to reap: sleep until a signal is pending (they are
                // blocked, so sigwait(3) takes them off the queue).
                let _ = signals.wait();
            }
            Ok(_) => {}
        }
    }
}

fn signal_all(signal: Signal) {
    // kill(-1) reaches every process but PID 1 itself (kill(2)).
    match kill(Pid::from_raw(-1), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => journal::note(format_args!("kill(-1, {signal}): {error}")),
    }
}

/// Reaps until no child is left or `limit` passes, sleeping in
/// sigtimedwait(2) for SIGCHLD between rounds.
fn reap_until_empty(limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                wait_for_child(left);
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Sleeps until SIGCHLD is pending (it is blocked) or `limit` passes.
fn wait_for_child(limit: Duration) {
    let timeout = libc::timespec {
        // At most an hour: small enough for any time_t.
        tv_sec: limit.as_secs().min(3600) as _,
        tv_nsec: libc::c_long::from(limit.subsec_nanos()),
    };
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(Signal::SIGCHLD);
    // SAFETY: valid set and timeout pointers; a null siginfo is allowed.
    unsafe {
        libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &timeout);
    }
}

fn unmount_all() {
    for point in super::mounts::mount_points() {
        if matches!(point.as_str(), "/proc" | "/sys" | "/dev") {
            continue;
        }
        if let Err(error) = umount2(point.as_str(), MntFlags::MNT_DETACH) {
            if error != Errno::EINVAL {
                journal::note(format_args!("umount {point}: {error}"));
            }
        }
    }
    // The root cannot be unmounted; make it read-only so nothing is lost.
    if let Err(error) = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    ) {
        journal::note(format_args!("remount / read-only: {error}"));
    }
}
