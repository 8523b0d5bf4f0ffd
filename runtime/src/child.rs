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
    /// The RLIMIT_NOFILE soft limit to set (spore's own is raised).
    pub nofile_limit: Option<u64>,
    /// An open `cgroup.procs` of the service's cgroup; -1: none.
    pub cgroup_procs: i32,
    /// Written to `/proc/self/oom_score_adj` (inherited by what it starts).
    pub oom_score_adj: Option<i32>,
    /// Resource limits to set, soft and hard: `(RLIMIT_*, value)`, the
    /// value `u64::MAX` for infinity.
    pub rlimits: [Option<(u32, u64)>; MAX_RLIMITS],
    /// The user, groups and privileges it runs with; None: spore's.
    pub credentials: Option<Credentials>,
}

/// How many resource limits a child is handed at most.
pub(crate) const MAX_RLIMITS: usize = 8;

/// The user, groups and privileges a child takes before its exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Its supplementary groups: the first `group_count`.
    pub groups: [u32; crate::accounts::MAX_GROUPS],
    /// How many of `groups` are used.
    pub group_count: usize,
    /// The capabilities it keeps (bit N: capability N): the bounding set
    /// is cut to them, and they are raised as ambient ones. None: as the
    /// kernel does for the uid.
    pub capabilities: Option<u64>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privileges: bool,
}

impl Credentials {
    /// The credentials of `identity` (its groups beyond the array's size
    /// were refused when it was resolved).
    pub(crate) fn of(identity: &crate::accounts::Identity) -> Self {
        let mut groups = [0u32; crate::accounts::MAX_GROUPS];
        for (slot, gid) in groups.iter_mut().zip(&identity.groups) {
            *slot = *gid;
        }
        Credentials {
            uid: identity.uid,
            gid: identity.gid,
            groups,
            group_count: identity.groups.len().min(crate::accounts::MAX_GROUPS),
            capabilities: identity.capabilities,
            no_new_privileges: identity.no_new_privileges,
        }
    }
}

/// The `setrlimit` resource of a `limit_*` key. (glibc's constants are
/// u32, musl's c_int: the cast is needed for one of them.)
#[allow(clippy::unnecessary_cast)]
pub(crate) fn rlimit_resource(resource: svc::service::RlimitResource) -> u32 {
    use svc::service::RlimitResource as R;
    (match resource {
        R::Nofile => libc::RLIMIT_NOFILE,
        R::Core => libc::RLIMIT_CORE,
        R::Nproc => libc::RLIMIT_NPROC,
        R::Memlock => libc::RLIMIT_MEMLOCK,
        R::Stack => libc::RLIMIT_STACK,
        R::Fsize => libc::RLIMIT_FSIZE,
    }) as u32
}

/// The rlimits of a service file, as a child takes them.
pub(crate) fn rlimits_of(limits: &[svc::service::Rlimit]) -> [Option<(u32, u64)>; MAX_RLIMITS] {
    let mut out = [None; MAX_RLIMITS];
    for (slot, limit) in out.iter_mut().zip(limits) {
        *slot = Some((
            rlimit_resource(limit.resource),
            limit.value.unwrap_or(u64::MAX),
        ));
    }
    out
}

/// Runs in a child between fork and exec: into its cgroup first (it
/// writes `0` to the open `cgroup.procs`), its OOM score adjustment, its
/// own session, a clean signal mask and dispositions, the core-file
/// limit, and every descriptor above stderr closed at exec.
pub(crate) fn prepare(setup: Setup, mounts: Option<&crate::mounts::Mounts>) -> io::Result<()> {
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
        // The descriptor limit spore was started with (a program using
        // select(2) breaks above 1,024), not spore's raised one.
        if let Some(nofile) = setup.nofile_limit {
            let mut limit: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur = nofile.min(limit.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
        // Its own limits, then its user and privileges, last (the steps
        // before need root's).
        for &(resource, value) in setup.rlimits.iter().flatten() {
            let value = if value == u64::MAX {
                libc::RLIM_INFINITY
            } else {
                value
            };
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource as _, &limit) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Its own view of the filesystem, while it is root still.
        if let Some(mounts) = mounts {
            crate::mounts::enter(mounts)?;
        }
        if let Some(credentials) = &setup.credentials {
            become_user(credentials)?;
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
pub(crate) fn decimal(value: i32) -> ([u8; 12], usize) {
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

/// `capset(2)`'s header (`_LINUX_CAPABILITY_VERSION_3`: two data words).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `capset(2)`'s data, one per 32 capabilities.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Takes `c`'s groups, gid and uid, keeping only its capabilities: the
/// bounding set is cut first (that needs CAP_SETPCAP, which root still
/// has), the kept ones survive the uid change (PR_SET_KEEPCAPS), are set
/// again and raised as ambient (so the exec of an ordinary program keeps
/// them), and no_new_privs is set last. Only system calls: no allocation.
///
/// # Safety
/// Called in a child between fork and exec.
unsafe fn become_user(c: &Credentials) -> io::Result<()> {
    let fail = || Err(io::Error::last_os_error());
    if let Some(mask) = c.capabilities {
        for cap in 0..64u64 {
            if mask & (1 << cap) == 0 && libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 {
                // Past the kernel's last capability.
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                    break;
                }
                return fail();
            }
        }
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 {
            return fail();
        }
    }
    let count = c.group_count.min(c.groups.len());
    if libc::setgroups(count, c.groups.as_ptr()) < 0 {
        return fail();
    }
    if libc::setresgid(c.gid, c.gid, c.gid) < 0 || libc::setresuid(c.uid, c.uid, c.uid) < 0 {
        return fail();
    }
    if let Some(mask) = c.capabilities {
        let word = |shift: u32| {
            let bits = (mask >> shift) as u32;
            CapData {
                effective: bits,
                permitted: bits,
                inheritable: bits,
            }
        };
        let header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [word(0), word(32)];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) < 0 {
            return fail();
        }
        for cap in 0..64u64 {
            if mask & (1 << cap) != 0
                && libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0
            {
                return fail();
            }
        }
    }
    if c.no_new_privileges && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
        return fail();
    }
    Ok(())
}
