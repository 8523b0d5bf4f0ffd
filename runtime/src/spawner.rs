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

mod helper;

pub use helper::serve;

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
    /// RLIMIT_NOFILE soft limit to set, if any.
    pub nofile_limit: Option<u64>,
    /// The `cgroup.procs` the child writes itself into, if any.
    pub cgroup: Option<Vec<u8>>,
    /// The child's `oom_score_adj`, if set.
    pub oom_score_adj: Option<i32>,
    /// Its resource limits: `(RLIMIT_*, value)`, `u64::MAX` for infinity.
    pub rlimits: Vec<(u32, u64)>,
    /// The user, groups and privileges it runs with; None: the spawner's.
    pub credentials: Option<crate::accounts::Identity>,
    /// Its mount namespace; None: the spawner's.
    pub mounts: Option<crate::mounts::MountPlan>,
}

fn put(out: &mut Vec<u8>, item: &[u8]) {
    out.extend_from_slice(&(item.len() as u32).to_le_bytes());
    out.extend_from_slice(item);
}

/// A flag byte, then the number's 8 bytes when there is one.
fn put_option(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(n) => {
            out.push(1);
            out.extend_from_slice(&n.to_le_bytes());
        }
        None => out.push(0),
    }
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

    fn byte(&mut self) -> Option<u8> {
        let (&byte, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(byte)
    }

    /// What [`put_option`] wrote: None when the bytes are not it, Some(None)
    /// for no number.
    fn option(&mut self) -> Option<Option<u64>> {
        match self.byte()? {
            1 => Some(Some(self.u64()?)),
            _ => Some(None),
        }
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
        put_option(&mut out, self.core_limit);
        put_option(&mut out, self.nofile_limit);
        put_list(&mut out, &self.cgroup.iter().cloned().collect::<Vec<_>>());
        // As its bits: -900 travels as 0xFFFF_FC7C.
        put_option(&mut out, self.oom_score_adj.map(|a| u64::from(a as u32)));
        out.extend_from_slice(&(self.rlimits.len() as u32).to_le_bytes());
        for (resource, value) in &self.rlimits {
            out.extend_from_slice(&resource.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        match &self.credentials {
            Some(c) => {
                out.push(1);
                out.extend_from_slice(&c.uid.to_le_bytes());
                out.extend_from_slice(&c.gid.to_le_bytes());
                out.extend_from_slice(&(c.groups.len() as u32).to_le_bytes());
                for gid in &c.groups {
                    out.extend_from_slice(&gid.to_le_bytes());
                }
                put_option(&mut out, c.capabilities);
                out.push(u8::from(c.no_new_privileges));
            }
            None => out.push(0),
        }
        match &self.mounts {
            Some(m) => {
                out.push(1);
                out.push(u8::from(m.private_tmp));
                out.push(u8::from(m.read_only_root));
                put_list(&mut out, &m.read_only);
                put_list(&mut out, &m.writable);
                put_list(&mut out, &m.inaccessible);
                put(&mut out, &m.cwd);
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
        let capture = r.byte()?;
        let core_limit = r.option()?;
        let nofile_limit = r.option()?;
        let cgroup = r.list()?.into_iter().next();
        let oom_score_adj = r.option()?.map(|bits| bits as u32 as i32);
        let count = r.u32()? as usize;
        let rlimits = (0..count.min(64))
            .map(|_| Some((r.u32()?, r.u64()?)))
            .collect::<Option<Vec<_>>>()?;
        if count > 64 {
            return None;
        }
        let credentials = match r.byte()? {
            1 => {
                let uid = r.u32()?;
                let gid = r.u32()?;
                let count = r.u32()? as usize;
                if count > crate::accounts::MAX_GROUPS {
                    return None;
                }
                let groups = (0..count).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
                let capabilities = r.option()?;
                let no_new_privileges = r.byte()? == 1;
                Some(crate::accounts::Identity {
                    uid,
                    gid,
                    groups,
                    capabilities,
                    no_new_privileges,
                })
            }
            _ => None,
        };
        let mounts = match r.byte()? {
            1 => Some(crate::mounts::MountPlan {
                private_tmp: r.byte()? == 1,
                read_only_root: r.byte()? == 1,
                read_only: r.list()?,
                writable: r.list()?,
                inaccessible: r.list()?,
                cwd: r.item()?,
            }),
            _ => None,
        };
        r.0.is_empty().then_some(Self {
            id,
            deadline_ns,
            argv,
            env,
            dir,
            capture: capture == 1,
            core_limit,
            nofile_limit,
            cgroup,
            oom_score_adj,
            rlimits,
            credentials,
            mounts,
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

/// The request for a service: argv, the environment as std's Command would
/// build it (base, then the service's own, later keys winning, sorted),
/// its directory; no core limit, cgroup or OOM score (the caller sets
/// those it has).
pub fn request_for(
    argv: &[String],
    base_env: &[(OsString, OsString)],
    env: &[(String, String)],
    dir: Option<&Path>,
    capture: bool,
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
        core_limit: None,
        nofile_limit: None,
        cgroup: None,
        oom_score_adj: None,
        rlimits: Vec::new(),
        credentials: None,
        mounts: None,
    }
}

#[cfg(test)]
mod tests {
    use super::helper::resolve;
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
            nofile_limit: Some(1024),
            cgroup: Some(b"/sys/fs/cgroup/spore/services/x/cgroup.procs".to_vec()),
            oom_score_adj: Some(-900),
            rlimits: vec![(7, 4096), (4, u64::MAX)],
            credentials: Some(crate::accounts::Identity {
                uid: 1001,
                gid: 1002,
                groups: vec![29, 500],
                capabilities: Some(1 << 10),
                no_new_privileges: true,
            }),
            mounts: Some(crate::mounts::MountPlan {
                private_tmp: true,
                read_only_root: true,
                read_only: vec![b"/etc".to_vec()],
                writable: vec![b"/proc".to_vec(), b"/var/lib/x".to_vec()],
                inaccessible: vec![b"/root".to_vec()],
                cwd: b"/".to_vec(),
            }),
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
            nofile_limit: None,
            capture: false,
            cgroup: None,
            oom_score_adj: None,
            rlimits: Vec::new(),
            credentials: None,
            mounts: None,
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
