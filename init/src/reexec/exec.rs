//! The exec of a live re-exec: the state in a memfd, the output pipes
//! kept open across it, and spore's own arguments and environment given
//! to the new binary.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use runtime::journal;

use super::{Carried, FALLBACK_VARIABLE, HANDOFF_VARIABLE, PREVIOUS_VARIABLE};

/// Writes `carried` to a memfd, keeps it and the output pipes open across
/// the exec, and execs `next`. Returns only on failure, with every
/// descriptor as it was.
pub(super) fn exec_with(next: &Path, previous: &Path, carried: &Carried) -> String {
    let json = match serde_json::to_vec(carried) {
        Ok(json) => json,
        Err(error) => return format!("the state cannot be written: {error}"),
    };
    let memfd = match memfd_with(&json) {
        Ok(fd) => fd,
        Err(error) => return format!("memfd: {error}"),
    };
    let mut descriptors = carried.runtime.descriptors();
    descriptors.extend(carried.sockets.iter().map(|s| s.fd));
    for fd in &descriptors {
        if let Err(error) = set_cloexec(*fd, false) {
            restore(&descriptors);
            return format!("descriptor {fd}: {error}");
        }
    }
    // What the console still has to say, said before the exec.
    journal::flush(Duration::from_millis(500));
    let error = exec_as_spore(
        next,
        &[HANDOFF_VARIABLE, PREVIOUS_VARIABLE, FALLBACK_VARIABLE],
        &[
            format!("{HANDOFF_VARIABLE}={}", memfd.as_raw_fd()),
            format!("{PREVIOUS_VARIABLE}={}", previous.display()),
        ],
    );
    restore(&descriptors);
    drop(memfd);
    error.to_string()
}

/// Execs `binary` in place of this process with spore's own arguments
/// and environment, less the variables `without`, plus `with`
/// (`NAME=VALUE`); returns only when the exec fails, with why.
pub(super) fn exec_as_spore(binary: &Path, without: &[&str], with: &[String]) -> nix::errno::Errno {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(key, _)| !without.iter().any(|w| key == w))
        .filter_map(|(key, value)| {
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            CString::new(pair).ok()
        })
        .collect();
    env.extend(
        with.iter()
            .filter_map(|pair| CString::new(pair.as_str()).ok()),
    );
    let argv: Vec<CString> = std::env::args_os()
        .filter_map(|arg| CString::new(arg.as_bytes()).ok())
        .collect();
    let Ok(path) = CString::new(binary.as_os_str().as_bytes()) else {
        return nix::errno::Errno::EINVAL;
    };
    match nix::unistd::execve(&path, &argv, &env) {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

/// The state in a memfd open across exec, read from its start.
fn memfd_with(bytes: &[u8]) -> std::io::Result<OwnedFd> {
    let name = c"spore-handoff";
    // SAFETY: memfd_create(2) with a NUL-terminated name and no flags (the
    // descriptor must survive the exec); the result is owned here.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just made, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

fn set_cloexec(fd: i32, on: bool) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: a descriptor the runtime holds open (an output pipe) for the
    // whole of this call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(borrowed, FcntlArg::F_SETFD(flags)).map(|_| ())
}

/// The pipes close on a later exec again (a service's, spawned after a
/// failed re-exec, must not inherit them).
fn restore(descriptors: &[i32]) {
    for fd in descriptors {
        if let Err(error) = set_cloexec(*fd, true) {
            journal::note(format_args!("descriptor {fd}: FD_CLOEXEC: {error}"));
        }
    }
}
