//! Handing listening sockets to a service as `sd_listen_fds(3)` reads
//! them: descriptors 3 on, `LISTEN_FDS` (how many), `LISTEN_FDNAMES`
//! (their names, `:`-separated) and `LISTEN_PID`, the pid of the service
//! itself. That pid is known only after the fork, so such a service is
//! exec'd from the child by [`Passing::exec`], with its environment and
//! arguments laid out before the fork: the child only writes its pid's
//! digits into a buffer made for them, moves descriptors and execs.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// Sockets handed to one service at most.
pub const MAX_PASSED: usize = 16;

/// `LISTEN_PID=` and room for any pid and the NUL.
const PID_ENTRY: &[u8] = b"LISTEN_PID=";
const PID_ENTRY_LEN: usize = 11 + 20 + 1;

/// An exec prepared before the fork. Holds addresses as integers (the
/// closure that uses it must be `Send`); each points into a buffer this
/// value owns and never grows.
pub(crate) struct Passing {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<usize>,
    _env: Vec<CString>,
    env_ptrs: Vec<usize>,
    pid_entry: Vec<u8>,
    fds: [i32; MAX_PASSED],
    count: usize,
}

/// Why a passing exec could not be prepared, as the spawn says it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    /// The program is not in PATH (or not executable there).
    #[error("No such file or directory (os error 2)")]
    NotFound,
    /// An argument or variable holds a NUL byte.
    #[error("a NUL byte in its command or environment")]
    Nul,
    /// More sockets than [`MAX_PASSED`].
    #[error("more than {MAX_PASSED} sockets to hand over")]
    TooMany,
}

impl PrepareError {
    /// The exit code a shell gives it: 127 not found, else 1.
    pub(crate) fn code(&self) -> i32 {
        match self {
            PrepareError::NotFound => 127,
            _ => 1,
        }
    }
}

impl Passing {
    /// Lays out the exec of `argv` with `env` (every variable, `LISTEN_*`
    /// added here), handing it `sockets` (descriptor, name) from fd 3.
    /// The program is looked up in `env`'s PATH, as execvp would.
    pub(crate) fn prepare(
        argv: &[String],
        env: Vec<(OsString, OsString)>,
        sockets: &[(i32, String)],
    ) -> Result<Self, PrepareError> {
        if sockets.len() > MAX_PASSED {
            return Err(PrepareError::TooMany);
        }
        let program = argv.first().ok_or(PrepareError::NotFound)?;
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| crate::child::DEFAULT_PATH.into());
        let resolved = resolve(program, &path).ok_or(PrepareError::NotFound)?;
        let program =
            CString::new(resolved.as_os_str().as_bytes()).map_err(|_| PrepareError::Nul)?;
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| PrepareError::Nul)?;
        let names: Vec<&str> = sockets.iter().map(|(_, name)| name.as_str()).collect();
        let mut env: Vec<CString> = env
            .into_iter()
            .filter(|(k, _)| !k.as_bytes().starts_with(b"LISTEN_"))
            .map(|(k, v)| {
                let mut entry = k.into_vec();
                entry.push(b'=');
                entry.extend_from_slice(v.as_bytes());
                CString::new(entry)
            })
            .collect::<Result<_, _>>()
            .map_err(|_| PrepareError::Nul)?;
        for (key, value) in [
            ("LISTEN_FDS", sockets.len().to_string()),
            ("LISTEN_FDNAMES", names.join(":")),
        ] {
            env.push(CString::new(format!("{key}={value}")).map_err(|_| PrepareError::Nul)?);
        }
        let mut pid_entry = Vec::with_capacity(PID_ENTRY_LEN);
        pid_entry.extend_from_slice(PID_ENTRY);
        pid_entry.resize(PID_ENTRY_LEN, 0);
        let mut argv_ptrs: Vec<usize> = argv.iter().map(|a| a.as_ptr() as usize).collect();
        argv_ptrs.push(0);
        let mut env_ptrs: Vec<usize> = env.iter().map(|e| e.as_ptr() as usize).collect();
        env_ptrs.push(pid_entry.as_ptr() as usize);
        env_ptrs.push(0);
        let mut fds = [-1; MAX_PASSED];
        for (slot, (fd, _)) in fds.iter_mut().zip(sockets) {
            *slot = *fd;
        }
        Ok(Passing {
            program,
            _argv: argv,
            argv_ptrs,
            _env: env,
            env_ptrs,
            pid_entry,
            fds,
            count: sockets.len(),
        })
    }

    /// In the child, after its setup: puts the sockets at 3, 4, … (in
    /// blocking mode, as a service expects them), writes its pid into
    /// `LISTEN_PID` and execs. Returns only on failure. Async-signal-safe:
    /// no allocation, no lock.
    pub(crate) fn exec(&mut self) -> io::Error {
        let count = self.count;
        let first_free = 3 + count as i32;
        let mut moved = [-1i32; MAX_PASSED];
        // SAFETY: plain system calls on descriptors this child holds; the
        // buffers written are this value's own, sized when prepared.
        unsafe {
            // Above the targets first, so no socket lands on another's place.
            for (slot, &fd) in moved.iter_mut().zip(&self.fds).take(count) {
                *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, first_free);
                if *slot < 0 {
                    return io::Error::last_os_error();
                }
            }
            for (target, &fd) in (3..).zip(moved.iter().take(count)) {
                // dup2 leaves the new descriptor open across the exec.
                if libc::dup2(fd, target) < 0 {
                    return io::Error::last_os_error();
                }
                let flags = libc::fcntl(target, libc::F_GETFL);
                if flags >= 0 {
                    libc::fcntl(target, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
            }
            let (digits, len) = crate::child::decimal(libc::getpid());
            let start = PID_ENTRY.len();
            if let Some(slot) = self.pid_entry.get_mut(start..start + len) {
                slot.copy_from_slice(digits.get(..len).unwrap_or_default());
            }
            if let Some(end) = self.pid_entry.get_mut(start + len) {
                *end = 0;
            }
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr().cast(),
                self.env_ptrs.as_ptr().cast(),
            );
        }
        io::Error::last_os_error()
    }
}

/// `program` as execvp finds it in `path`: as given when it holds a `/`,
/// else the first executable file of that name in a PATH directory.
fn resolve(program: &str, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
