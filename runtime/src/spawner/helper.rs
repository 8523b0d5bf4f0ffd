//! The spawner's own side, in the helper process: read each request,
//! check what can be checked, make the pipes, clone the child that execs
//! the service, and send the read ends back.

use super::*;

/// The spawner's main loop: answer requests until spore hangs up.
pub fn serve() -> std::process::ExitCode {
    // SAFETY: prctl and sigprocmask with valid arguments. The spawner dies
    // with spore, and takes the signals spore blocked (the mask survives
    // exec), so a shutdown's SIGTERM ends it at once.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    // SAFETY: spore gave us this descriptor and nothing else uses it.
    let socket = unsafe { OwnedFd::from_raw_fd(SOCKET_FD) };
    let devnull = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        Ok(file) => OwnedFd::from(file),
        Err(_) => return std::process::ExitCode::from(1),
    };
    let mut buffer = vec![0u8; MAX_REQUEST];
    loop {
        let received = nix::sys::socket::recv(socket.as_raw_fd(), &mut buffer, MsgFlags::empty());
        let n = match received {
            Ok(0) => return std::process::ExitCode::SUCCESS,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return std::process::ExitCode::from(1),
        };
        let request = buffer.get(..n).and_then(Request::decode);
        let id = request.as_ref().map_or(0, |r| r.id);
        let outcome = match request {
            // spore gave up on it (we were stopped or slow): never start it.
            Some(request) if monotonic_ns() > request.deadline_ns => Err(EXPIRED),
            Some(request) => launch(&request, &devnull),
            None => Err(libc::EINVAL),
        };
        let (value, pipes) = match outcome {
            Ok((pid, pipes)) => (i64::from(pid), pipes),
            Err(errno) => (-i64::from(errno), None),
        };
        let answer = [id.to_le_bytes(), value.to_le_bytes()].concat();
        let fds: Vec<RawFd> = pipes
            .iter()
            .flat_map(|(out, err)| [out.as_raw_fd(), err.as_raw_fd()])
            .collect();
        let rights = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        if sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(&answer)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .is_err()
        {
            return std::process::ExitCode::from(1);
        }
        // Our copies of the read ends close here.
        drop(pipes);
    }
}

/// Whether `path` names an executable file: Ok, or ENOENT / EACCES as
/// exec would say.
fn runnable(path: &CString) -> Result<(), i32> {
    let meta = std::fs::metadata(OsStr::from_bytes(path.as_bytes()))
        .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    // SAFETY: access with a valid C string.
    let executable = unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0;
    if meta.is_file() && executable {
        Ok(())
    } else {
        Err(libc::EACCES)
    }
}

/// The program to exec: `argv[0]` itself when it has a slash (checked),
/// else the first executable match in the environment's PATH (ENOENT when
/// there is none, EACCES when only unrunnable ones exist).
pub(super) fn resolve(program: &[u8], env: &[Vec<u8>]) -> Result<CString, i32> {
    let cstring = |bytes: &[u8]| CString::new(bytes).map_err(|_| libc::EINVAL);
    if program.contains(&b'/') {
        let path = cstring(program)?;
        runnable(&path)?;
        return Ok(path);
    }
    let path = env
        .iter()
        .find_map(|entry| entry.strip_prefix(b"PATH="))
        .unwrap_or(crate::child::DEFAULT_PATH.as_bytes());
    let mut found_unrunnable = false;
    for dir in path.split(|b| *b == b':') {
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let mut candidate = dir.to_vec();
        candidate.push(b'/');
        candidate.extend_from_slice(program);
        let candidate = cstring(&candidate)?;
        match runnable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(libc::EACCES) => found_unrunnable = true,
            Err(_) => {}
        }
    }
    Err(if found_unrunnable {
        libc::EACCES
    } else {
        libc::ENOENT
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), i32> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e as i32)
}

/// Starts one service as spore's child; its pid and the read ends.
fn launch(request: &Request, devnull: &OwnedFd) -> Result<(i32, Option<(OwnedFd, OwnedFd)>), i32> {
    let program = resolve(request.argv.first().ok_or(libc::ENOENT)?, &request.env)?;
    let to_c = |items: &[Vec<u8>]| {
        items
            .iter()
            .map(|item| CString::new(item.as_slice()).map_err(|_| libc::EINVAL))
            .collect::<Result<Vec<_>, _>>()
    };
    let argv = to_c(&request.argv)?;
    let env = to_c(&request.env)?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let dir = request
        .dir
        .as_deref()
        .map(|d| CString::new(d).map_err(|_| libc::EINVAL))
        .transpose()?;
    // A missing directory is an error of the start, as with a fork.
    if let Some(dir) = &request.dir {
        match std::fs::metadata(OsStr::from_bytes(dir)) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(libc::ENOTDIR),
            Err(error) => return Err(error.raw_os_error().unwrap_or(libc::ENOENT)),
        }
    }
    let (out, err) = if request.capture {
        (Some(pipe()?), Some(pipe()?))
    } else {
        (None, None)
    };
    // The service's cgroup, opened here so a missing one fails the start
    // before the clone (closed in the child at exec, here when we return).
    let cgroup = request
        .cgroup
        .as_deref()
        .map(|path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(OsStr::from_bytes(path))
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
        })
        .transpose()?;
    let mounts = match &request.mounts {
        Some(plan) => Some(crate::mounts::Mounts::of(plan).ok_or(libc::EINVAL)?),
        None => None,
    };
    let child = ChildArgs {
        mounts,
        program: program.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        env: env_ptrs.as_ptr(),
        dir: dir.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()),
        null_fd: devnull.as_raw_fd(),
        out_fd: out
            .as_ref()
            .map_or(devnull.as_raw_fd(), |(_, w)| w.as_raw_fd()),
        err_fd: err
            .as_ref()
            .map_or(devnull.as_raw_fd(), |(_, w)| w.as_raw_fd()),
        setup: crate::child::Setup {
            core_limit: request.core_limit,
            nofile_limit: request.nofile_limit,
            cgroup_procs: cgroup.as_ref().map_or(-1, |f| f.as_raw_fd()),
            oom_score_adj: request.oom_score_adj,
            rlimits: {
                let mut rlimits = [None; crate::child::MAX_RLIMITS];
                for (slot, limit) in rlimits.iter_mut().zip(&request.rlimits) {
                    *slot = Some(*limit);
                }
                rlimits
            },
            credentials: request
                .credentials
                .as_ref()
                .map(crate::child::Credentials::of),
        },
        deadline_ns: request.deadline_ns,
    };
    // SAFETY: a fork-like clone (no new stack: the child runs on a copy of
    // ours) of this single-threaded process, so the child may do anything
    // before exec. CLONE_PARENT makes it spore's child, not ours. We do not
    // wait for its exec: it runs while spore handles the answer and asks
    // for the next start.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_PARENT | libc::SIGCHLD,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(errno());
    }
    if pid == 0 {
        child_main(&child);
    }
    let pid = i32::try_from(pid).map_err(|_| libc::EINVAL)?;
    // Our copies of the write ends go, so the service holds the only ones.
    let pipes = match (out, err) {
        (Some((out_read, _)), Some((err_read, _))) => Some((out_read, err_read)),
        _ => None,
    };
    Ok((pid, pipes))
}

/// What the child needs, prepared before the clone.
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    env: *const *const libc::c_char,
    dir: *const libc::c_char,
    null_fd: RawFd,
    out_fd: RawFd,
    err_fd: RawFd,
    /// Its core limit, cgroup and OOM score adjustment.
    setup: crate::child::Setup,
    /// Its mount namespace, if it has one.
    mounts: Option<crate::mounts::Mounts>,
    deadline_ns: u64,
}

/// How a child whose request expired before its exec ends (nobody waits
/// for it: spore reaps it as an orphan).
const EXPIRED_EXIT: i32 = 124;

/// The cloned child: a clean slate, the descriptors, the directory, exec.
/// When exec fails (what the spawner could not check first: a file that
/// is no program, say), it says why on the service's stderr, which spore
/// captures, and exits as a shell would: 126 when the file cannot be run,
/// 127 otherwise.
fn child_main(child: &ChildArgs) -> ! {
    // SAFETY: we are a fork-like clone of a single-threaded process; the
    // pointers in `child` point into our copy of its memory.
    unsafe {
        let prepared = crate::child::prepare(child.setup, child.mounts.as_ref());
        let ok = prepared.is_ok()
            && libc::dup2(child.null_fd, 0) >= 0
            && libc::dup2(child.out_fd, 1) >= 0
            && libc::dup2(child.err_fd, 2) >= 0
            && (child.dir.is_null() || libc::chdir(child.dir) >= 0);
        // The last moment to notice spore gave up on this start (the
        // spawner was stopped between its check and the clone): leave
        // without a trace rather than run a copy spore does not know.
        if monotonic_ns() > child.deadline_ns {
            libc::_exit(EXPIRED_EXIT);
        }
        if ok {
            libc::execve(child.program, child.argv, child.env);
        }
        let errno = errno();
        // A step before exec failed (its sandbox, its user): say which,
        // on the service's stderr.
        let reason = match &prepared {
            Err(error) => {
                libc::dup2(child.err_fd, 2);
                crate::mounts::describe(error).unwrap_or_else(|| error.to_string())
            }
            Ok(()) => io::Error::from_raw_os_error(errno).to_string(),
        };
        let message = format!(
            "spore: cannot run `{}`: {reason}\n",
            std::ffi::CStr::from_ptr(child.program).to_string_lossy(),
        );
        libc::write(2, message.as_ptr().cast(), message.len());
        let code = match errno {
            libc::EACCES | libc::ENOEXEC | libc::EPERM => 126,
            _ => 127,
        };
        libc::_exit(code)
    }
}
