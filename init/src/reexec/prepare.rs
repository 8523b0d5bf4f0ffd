//! Before a live re-exec: the new binary is read, its signature checked,
//! copied beside this one, and asked which handoff format it reads
//! (`__handoff-check`), off the event loop.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nodeapi::api::{code, ApiError};
use runtime::journal;

use super::{
    Staged, CHECK_SUBCOMMAND, CHECK_WITHIN, FALLBACK_VARIABLE, FORMAT, HANDOFF_VARIABLE,
    MAX_BINARY, OUTGOING, PREVIOUS_VARIABLE,
};

/// What a binary answered the check.
pub(super) struct Answered {
    pub(super) version: String,
    pub(super) build_id: String,
}

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::new(code::BINARY_REFUSED, message.into())
}

/// Copies the new binary and this one beside the control socket and runs
/// the check (on a thread: it reads files and waits for a process).
pub(super) fn prepare(
    source: &Path,
    dir: &Path,
    signature: Option<&str>,
    keys: &[String],
) -> Result<(Staged, Answered), ApiError> {
    use std::os::unix::fs::DirBuilderExt;
    let bytes = read_binary(source)?;
    bootslots::image::verify_signature(&bytes, signature, keys).map_err(|e| match e {
        bootslots::SlotError::Refused(why) => refused(format!("the binary is refused: {why}")),
        other => refused(other.to_string()),
    })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ApiError::new(code::STORAGE, format!("{}: {e}", dir.display())))?;
    let next = dir.join("next");
    // Named `previous` only once the new binary has taken the state up
    // (see [`take_up`]): a refused or handed-back re-exec leaves the
    // previous binary of the last one that took.
    let previous = dir.join(OUTGOING);
    let storage = |path: &Path, e: std::io::Error| {
        ApiError::new(code::STORAGE, format!("{}: {e}", path.display()))
    };
    durable::atomic::write_atomically(&next, &bytes, 0o700).map_err(|e| storage(&next, e))?;
    let own = std::fs::read("/proc/self/exe")
        .map_err(|e| ApiError::new(code::STORAGE, format!("/proc/self/exe: {e}")))?;
    durable::atomic::write_atomically(&previous, &own, 0o700).map_err(|e| storage(&previous, e))?;
    let answered = check(&next)?;
    journal::note(format_args!(
        "re-exec: the new binary answered (spore {}, build {})",
        answered.version,
        answered.build_id.get(..12).unwrap_or(&answered.build_id)
    ));
    Ok((
        Staged {
            next,
            previous,
            asked: 0,
            tries: 0,
        },
        answered,
    ))
}

/// The new binary's bytes: a regular file, not too large, an executable
/// (ELF, or a script with `#!`).
fn read_binary(source: &Path) -> Result<Vec<u8>, ApiError> {
    let shown = runtime::escape::field(&source.display().to_string());
    let file = std::fs::File::open(source).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::new(code::INVALID_PARAMS, format!("{shown}: not on this node"))
        } else {
            ApiError::new(code::STORAGE, format!("{shown}: {e}"))
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| ApiError::new(code::STORAGE, format!("{shown}: {e}")))?;
    if !meta.is_file() {
        return Err(refused(format!("{shown}: not a regular file")));
    }
    if meta.len() > MAX_BINARY {
        return Err(refused(format!(
            "{shown}: {} bytes, more than a spore binary can be ({MAX_BINARY})",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BINARY)
        .read_to_end(&mut bytes)
        .map_err(|e| ApiError::new(code::STORAGE, format!("{shown}: {e}")))?;
    if !(bytes.starts_with(b"\x7fELF") || bytes.starts_with(b"#!")) {
        return Err(refused(format!(
            "{shown}: not an executable (no ELF header)"
        )));
    }
    Ok(bytes)
}

/// Runs `next __handoff-check` and reads its one line: `spore-handoff
/// FORMAT VERSION BUILD_ID`. Its exit is not waited for (the event loop
/// reaps every child); its stdout closing, or the deadline, ends the wait.
fn check(next: &Path) -> Result<Answered, ApiError> {
    let child = std::process::Command::new(next)
        .arg(CHECK_SUBCOMMAND)
        .env_remove(HANDOFF_VARIABLE)
        .env_remove(PREVIOUS_VARIABLE)
        .env_remove(FALLBACK_VARIABLE)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| refused(format!("the new binary does not start: {e}")))?;
    let pid = child.id();
    // Held until the read ends: a pid that has not been reaped yet.
    let pidfd = pidfd_open(pid);
    let Some(stdout) = child.stdout else {
        return Err(refused("the new binary's output could not be read"));
    };
    let stdout = OwnedFd::from(stdout);
    let text = read_within(&stdout, CHECK_WITHIN, 4096);
    if let Some(pidfd) = &pidfd {
        // Done or not, it has nothing more to say.
        pidfd_kill(pidfd);
    }
    let text =
        text.map_err(|e| refused(format!("the new binary did not answer the check: {e}")))?;
    let line = text.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (Some("spore-handoff"), Some(format), Some(version), Some(build_id)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(refused(format!(
            "the new binary did not answer as a spore: {}",
            runtime::escape::field(line.get(..120).unwrap_or(line))
        )));
    };
    if format != FORMAT.to_string() {
        return Err(refused(format!(
            "the new binary reads handoff format {} and this one writes {FORMAT}: it cannot take this state up",
            runtime::escape::field(format)
        )));
    }
    Ok(Answered {
        version: runtime::escape::field(version),
        build_id: runtime::escape::field(build_id),
    })
}

/// Reads `fd` to its end, waiting at most `within` in all.
fn read_within(fd: &OwnedFd, within: Duration, most: usize) -> std::io::Result<String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + within;
    let mut text = Vec::new();
    let mut buffer = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", within.as_secs()),
            ));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(fd), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(error) => return Err(error.into()),
        }
        match nix::unistd::read(fd, &mut buffer) {
            Ok(0) => return Ok(String::from_utf8_lossy(&text).into_owned()),
            Ok(n) => {
                text.extend_from_slice(buffer.get(..n).unwrap_or_default());
                if text.len() >= most {
                    return Ok(String::from_utf8_lossy(&text).into_owned());
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(error) => return Err(error.into()),
        }
    }
}

/// A pidfd for `pid`, while it has not been reaped.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) with a pid and no flags; the result is a new
    // descriptor owned here, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: just opened, owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SIGKILL through a pidfd: never another process that took the pid.
fn pidfd_kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal(2) with a valid pidfd, SIGKILL, no info.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// `spore __handoff-check`: says which handoff format this binary reads.
pub fn answer_check() -> std::process::ExitCode {
    let line = format!(
        "spore-handoff {FORMAT} {} {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::update::build_id()
    );
    match std::io::stdout().write_all(line.as_bytes()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}
