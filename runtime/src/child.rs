//! What every process spore starts gets, whether spore forks it or its
//! spawner does: PATH when spore has none, and the state it is handed
//! between fork and exec.

use std::io;

/// PATH for services when spore's own environment has none (the kernel
/// starts PID 1 without one).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs in a child between fork and exec: into its cgroup first (it
/// writes `0` to `cgroup_procs`, an open `cgroup.procs`, when that is not
/// -1), its own session, a clean signal mask and dispositions, the
/// core-file limit `core_limit` (spore's own is 0), and every descriptor
/// above stderr closed at exec.
pub(crate) fn prepare(core_limit: Option<u64>, cgroup_procs: i32) -> io::Result<()> {
    // Into the service's cgroup before anything else, so whatever it
    // starts is there too. SAFETY: a write of two bytes from a static.
    if cgroup_procs >= 0 && unsafe { libc::write(cgroup_procs, b"0\n".as_ptr().cast(), 2) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Own session, so the service's process group is its pid and a stop
    // signal to the group reaches everything it started (setsid(2)).
    // SAFETY: plain system calls with valid arguments.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        // spore blocks the signals it reads from its signalfd; the mask and
        // ignored dispositions survive exec, so hand the service a clean slate.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        for signal in 1..libc::SIGRTMAX() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        // The core-file limit spore was started with, not spore's own 0.
        if let Some(core) = core_limit {
            let mut limit: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_CORE, &mut limit) == 0 {
                limit.rlim_cur = core.min(limit.rlim_max);
                libc::setrlimit(libc::RLIMIT_CORE, &limit);
            }
        }
        // Every descriptor above stderr closes at exec (close_range(2),
        // CLOSE_RANGE_CLOEXEC; std's own exec-error pipe is already CLOEXEC).
        let rc = libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        if rc != 0 {
            // Kernels before 5.11 lack the flag: mark them one by one.
            let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(256, 65_536) as i32;
            for fd in 3..max {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}
