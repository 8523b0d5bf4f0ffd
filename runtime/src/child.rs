//! What every process spore starts gets, whether spore forks it or its
//! spawner does: PATH when spore has none, and the state it is handed
//! between fork and exec.

use std::io;

/// PATH for services when spore's own environment has none (the kernel
/// starts PID 1 without one).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a child is given between fork and exec, prepared before the fork
/// (plain integers: the child allocates nothing).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    /// The RLIMIT_CORE soft limit to set (spore's own is 0).
    pub core_limit: Option<u64>,
    /// An open `cgroup.procs` of the service's cgroup; -1: none.
    pub cgroup_procs: i32,
    /// Written to `/proc/self/oom_score_adj` (inherited by what it starts).
    pub oom_score_adj: Option<i32>,
}

/// Runs in a child between fork and exec: into its cgroup first (it
/// writes `0` to the open `cgroup.procs`), its OOM score adjustment, its
/// own session, a clean signal mask and dispositions, the core-file
/// limit, and every descriptor above stderr closed at exec.
pub(crate) fn prepare(setup: Setup) -> io::Result<()> {
    // Into the service's cgroup before anything else, so whatever it
    // starts is there too. SAFETY: a write of two bytes from a static.
    let procs = setup.cgroup_procs;
    if procs >= 0 && unsafe { libc::write(procs, b"0\n".as_ptr().cast(), 2) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(adjust) = setup.oom_score_adj {
        write_oom_score_adj(adjust)?;
    }
    let core_limit = setup.core_limit;
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

/// Writes `adjust` to `/proc/self/oom_score_adj` without allocating (the
/// number is formatted on the stack).
fn write_oom_score_adj(adjust: i32) -> io::Result<()> {
    let (text, len) = decimal(adjust);
    // SAFETY: open, write and close with a static path and a stack buffer.
    unsafe {
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let written = libc::write(fd, text.as_ptr().cast(), len);
        let error = io::Error::last_os_error();
        libc::close(fd);
        if written < 0 {
            return Err(error);
        }
    }
    Ok(())
}

/// `value` in decimal in a stack buffer, and how many bytes of it are used.
fn decimal(value: i32) -> ([u8; 12], usize) {
    let mut digits = [0u8; 12];
    let mut n = value.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'-';
        }
    }
    let mut out = [0u8; 12];
    let len = digits.len() - start;
    for (to, from) in out.iter_mut().zip(digits.iter().skip(start)) {
        *to = *from;
    }
    (out, len)
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn numbers_are_written_in_decimal_without_allocating() {
        for value in [0, 7, -1, 1000, -1000, i32::MAX, i32::MIN] {
            let (bytes, len) = decimal(value);
            assert_eq!(&bytes[..len], value.to_string().as_bytes());
        }
    }
}
