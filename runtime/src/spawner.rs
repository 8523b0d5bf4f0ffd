//! The spawner: a small helper process that starts services for spore
//! once spore holds many descriptors.
//!
//! Every fork copies the parent's descriptor table and every exec closes
//! what was copied. With 1,000 services spore holds ~2,000 pipe ends, so
//! each start cost the kernel ~2,000 reference counts up and down. The
//! spawner is spore itself, exec'd once (`spore __spawner`) with only a
//! socket and /dev/null open; it makes each service's pipes, starts the
//! service with a fork-like `clone` of itself (cheap: its memory and its
//! descriptor table are small) with `CLONE_PARENT`, so the service is
//! spore's child
//! (spore reaps it and signals it as before), and hands the read ends back
//! over the socket (SCM_RIGHTS). Its descriptor table stays a handful.
//!
//! The spawner checks what it can before the clone (the program in PATH,
//! the directory) and answers as soon as the child exists, without waiting
//! for its exec: the exec runs on the other core while spore takes the
//! answer and asks for the next start. spore waits for each answer (at most
//! [`ANSWER_TIMEOUT`]). Anything wrong with the spawner (gone,
//! slow, a garbled answer) makes spore kill it and start the service
//! itself, as it does when it holds few descriptors.
//!
//! A start spore gave up on must never happen anyway, or a second copy of
//! the service would run that spore does not know (it would survive `stop`
//! and outlive spore). So each request carries an id and a deadline
//! ([`EXEC_DEADLINE`] after it was sent, well inside [`ANSWER_TIMEOUT`],
//! on CLOCK_MONOTONIC, which both processes share): the spawner refuses a
//! request whose deadline has passed, and the cloned child checks it once
//! more just before its exec and exits instead. A spawner that was stopped
//! or slow is killed when spore gives up on it, so what it still had
//! queued dies with it.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// The hidden subcommand the spawner runs as.
pub const SUBCOMMAND: &str = "__spawner";

/// The descriptor the spawner's socket is given as.
pub const SOCKET_FD: RawFd = 3;

/// Longest request (argv, environment, directory).
const MAX_REQUEST: usize = 256 * 1024;

/// How long spore waits for an answer before it gives up on the spawner.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A request may turn into a process only this long after spore sent it;
/// later, the spawner and the child drop it (spore has given up by
/// [`ANSWER_TIMEOUT`], and starts the service itself).
pub const EXEC_DEADLINE: Duration = Duration::from_secs(1);

/// Errno-like code of a request dropped because its deadline passed.
const EXPIRED: i32 = libc::ETIMEDOUT;

/// CLOCK_MONOTONIC now, in nanoseconds (no allocation: safe between clone
/// and exec).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

/// What the spawner is asked to start. Everything is bytes: argv and the
/// environment need not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Set by [`Spawner::start_one`]: the answer must carry it back.
    pub id: u64,
    /// Set by [`Spawner::start_one`]: CLOCK_MONOTONIC nanoseconds after
    /// which nothing may be started for this request.
    pub deadline_ns: u64,
    /// Program and arguments.
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries, the whole environment.
    pub env: Vec<Vec<u8>>,
    /// Working directory.
    pub dir: Option<Vec<u8>>,
    /// Pipes for stdout and stderr (else /dev/null).
    pub capture: bool,
    /// RLIMIT_CORE soft limit to set, if any.
    pub core_limit: Option<u64>,
}

fn put(out: &mut Vec<u8>, item: &[u8]) {
    out.extend_from_slice(&(item.len() as u32).to_le_bytes());
    out.extend_from_slice(item);
}

fn put_list(out: &mut Vec<u8>, items: &[Vec<u8>]) {
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for item in items {
        put(out, item);
    }
}

/// Reads what [`put`] and [`put_list`] wrote.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*head))
    }

    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*head))
    }

    fn item(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()? as usize;
        let item = self.0.get(..len)?.to_vec();
        self.0 = self.0.get(len..)?;
        Some(item)
    }

    fn list(&mut self) -> Option<Vec<Vec<u8>>> {
        let count = self.u32()? as usize;
        (0..count).map(|_| self.item()).collect()
    }
}

impl Request {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.deadline_ns.to_le_bytes());
        put_list(&mut out, &self.argv);
        put_list(&mut out, &self.env);
        put_list(&mut out, &self.dir.iter().cloned().collect::<Vec<_>>());
        out.push(u8::from(self.capture));
        match self.core_limit {
            Some(limit) => {
                out.push(1);
                out.extend_from_slice(&limit.to_le_bytes());
            }
            None => out.push(0),
        }
        out
    }

    /// Parses the wire form; None if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let id = r.u64()?;
        let deadline_ns = r.u64()?;
        let argv = r.list()?;
        let env = r.list()?;
        let dir = r.list()?.into_iter().next();
        let (&capture, rest) = r.0.split_first()?;
        r.0 = rest;
        let (&has_limit, rest) = r.0.split_first()?;
        r.0 = rest;
        let core_limit = if has_limit == 1 { Some(r.u64()?) } else { None };
        r.0.is_empty().then_some(Self {
            id,
            deadline_ns,
            argv,
            env,
            dir,
            capture: capture == 1,
            core_limit,
        })
    }
}

/// The calling thread's errno (no allocation: safe between clone and exec).
fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// spore's end: the socket to a running spawner.
pub struct Spawner {
    socket: OwnedFd,
    /// The spawner's pid, killed when spore drops it.
    pid: i32,
    /// The id of the next request.
    next_id: u64,
}

impl Drop for Spawner {
    /// Kills the spawner: spore dropped it because it failed, was slow or
    /// stopped, and a request still queued there must not start later.
    /// (spore's reaper collects it.)
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: kill(2) with plain integers; the pid is our child,
            // not reaped before this kill (only the reaper reaps, on the
            // loop, after it).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// What the spawner started: the pid and, when captured, the read ends of
/// stdout and stderr.
pub struct Started {
    /// The service's pid (spore's child).
    pub pid: i32,
    /// Read ends of stdout and stderr.
    pub pipes: Option<(OwnedFd, OwnedFd)>,
}

impl Spawner {
    /// Starts `exe __spawner` with the other end of a new socket pair as
    /// descriptor [`SOCKET_FD`] and nothing else open but /dev/null.
    pub fn start(exe: &Path) -> io::Result<Self> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let theirs_fd = theirs.as_raw_fd();
        let mut command = std::process::Command::new(exe);
        command
            .arg0("spore-spawner")
            .arg(SUBCOMMAND)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: between fork and exec only dup2 and close_range are
        // called; neither allocates or takes a lock.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(theirs_fd, SOCKET_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::syscall(
                    libc::SYS_close_range,
                    (SOCKET_FD + 1) as u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                Ok(())
            });
        }
        // The child is reaped by spore's reaper when it ends (an orphan
        // there); dropping the handle neither kills nor waits.
        let child = command.spawn()?;
        let pid = i32::try_from(child.id()).unwrap_or(0);
        drop(child);
        drop(theirs);
        Ok(Self {
            socket: ours,
            pid,
            next_id: 1,
        })
    }

    /// Asks for `request` to be started (its id and deadline are set
    /// here). A [`Failure::Spawner`] means the spawner must be dropped,
    /// which kills it.
    pub fn start_one(&mut self, request: &Request) -> Result<Started, Failure> {
        let mut request = request.clone();
        request.id = self.next_id;
        self.next_id += 1;
        request.deadline_ns = monotonic_ns().saturating_add(EXEC_DEADLINE.as_nanos() as u64);
        let request = &request;
        let bytes = request.encode();
        if bytes.len() > MAX_REQUEST {
            return Err(Failure::TooLarge);
        }
        let sent = sendmsg::<()>(
            self.socket.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| Failure::Spawner(format!("send: {e}")))?;
        if sent != bytes.len() {
            return Err(Failure::Spawner("short send".into()));
        }
        let timeout = ANSWER_TIMEOUT.as_millis() as u16;
        let mut poll = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&self.socket),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut poll, timeout) {
            Ok(n) if n > 0 => {}
            Ok(_) => return Err(Failure::Spawner("no answer in time".into())),
            Err(e) => return Err(Failure::Spawner(format!("poll: {e}"))),
        }
        let mut answer = [0u8; 16];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [IoSliceMut::new(&mut answer)];
        let message = recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Failure::Spawner(format!("receive: {e}")))?;
        let mut fds = Vec::new();
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    // SAFETY: the kernel just installed these descriptors
                    // for us; nothing else owns them.
                    fds.extend(
                        received
                            .into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        if message.bytes != answer.len() {
            return Err(Failure::Spawner("the spawner hung up".into()));
        }
        let (id, value) = answer.split_at(8);
        let id = u64::from_le_bytes(id.try_into().unwrap_or_default());
        let value = i64::from_le_bytes(value.try_into().unwrap_or_default());
        if id != request.id {
            return Err(Failure::Spawner(format!(
                "answer to request {id}, not {}",
                request.id
            )));
        }
        if value == -i64::from(EXPIRED) {
            return Err(Failure::Spawner("the request expired in its queue".into()));
        }
        if value < 0 {
            let errno = i32::try_from(-value).unwrap_or(libc::EINVAL);
            return Err(Failure::Start(io::Error::from_raw_os_error(errno)));
        }
        let pid = i32::try_from(value).map_err(|_| Failure::Spawner("bad pid".into()))?;
        let mut fds = fds.into_iter();
        let pipes = match (request.capture, fds.next(), fds.next()) {
            (false, None, None) => None,
            (true, Some(out), Some(err)) => Some((out, err)),
            _ => return Err(Failure::Spawner("pipes missing from the answer".into())),
        };
        Ok(Started { pid, pipes })
    }
}

/// Why a start through the spawner did not happen.
#[derive(Debug)]
pub enum Failure {
    /// The program could not be started (what exec or the lookup said).
    Start(io::Error),
    /// The spawner itself failed; start the service some other way.
    Spawner(String),
    /// This request does not fit a message (a huge environment): start
    /// this one service some other way; the spawner is fine.
    TooLarge,
}

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
fn resolve(program: &[u8], env: &[Vec<u8>]) -> Result<CString, i32> {
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
    let child = ChildArgs {
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
        core_limit: request.core_limit,
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
    core_limit: Option<u64>,
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
        let ok = crate::child::prepare(child.core_limit).is_ok()
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
        let message = format!(
            "spore: cannot run `{}`: {}\n",
            std::ffi::CStr::from_ptr(child.program).to_string_lossy(),
            io::Error::from_raw_os_error(errno)
        );
        libc::write(2, message.as_ptr().cast(), message.len());
        let code = match errno {
            libc::EACCES | libc::ENOEXEC | libc::EPERM => 126,
            _ => 127,
        };
        libc::_exit(code)
    }
}

/// The request for a service: argv, the environment as std's Command would
/// build it (base, then the service's own, later keys winning, sorted),
/// its directory.
pub fn request_for(
    argv: &[String],
    base_env: &[(OsString, OsString)],
    env: &[(String, String)],
    dir: Option<&Path>,
    capture: bool,
    core_limit: Option<u64>,
) -> Request {
    let mut merged: std::collections::BTreeMap<OsString, OsString> =
        base_env.iter().cloned().collect();
    for (key, value) in env {
        merged.insert(key.into(), value.into());
    }
    Request {
        id: 0,
        deadline_ns: 0,
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: merged
            .into_iter()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect(),
        dir: dir.map(|d| d.as_os_str().as_bytes().to_vec()),
        capture,
        core_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        let request = Request {
            id: 42,
            deadline_ns: 1 << 40,
            argv: vec![b"sleep".to_vec(), b"\xff1".to_vec()],
            env: vec![b"PATH=/bin".to_vec(), b"A=".to_vec()],
            dir: Some(b"/tmp".to_vec()),
            capture: true,
            core_limit: Some(7),
        };
        let bytes = request.encode();
        assert_eq!(Request::decode(&bytes), Some(request.clone()));
        assert_eq!(Request::decode(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Request::decode(&longer), None);
        let plain = Request {
            dir: None,
            core_limit: None,
            capture: false,
            ..request
        };
        assert_eq!(Request::decode(&plain.encode()), Some(plain));
    }

    #[test]
    fn programs_are_found_in_the_environments_path() {
        let env = vec![b"PATH=/nonexistent:/bin:/usr/bin".to_vec()];
        let found = resolve(b"sh", &env).unwrap();
        assert!(found.as_bytes().ends_with(b"/sh"), "{found:?}");
        assert_eq!(resolve(b"no-such-program-here", &env), Err(libc::ENOENT));
        assert_eq!(resolve(b"/bin/sh", &[]).unwrap().as_bytes(), b"/bin/sh");
        assert_eq!(resolve(b"/nonexistent/program", &[]), Err(libc::ENOENT));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain"), "not runnable").unwrap();
        let env = vec![[b"PATH=".as_slice(), dir.path().as_os_str().as_bytes()].concat()];
        assert_eq!(resolve(b"plain", &env), Err(libc::EACCES));
    }
}
