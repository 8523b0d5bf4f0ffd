//! [`RealSys`]: the [`Sys`] of a running spore, on the real system.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use smol::channel::Sender;
use smol::{Async, LocalExecutor, Task, Timer};
use svc::service::Probe;
use svc::supervisor::{Event, ExitStatus};

use super::{CheckRun, HandedCgroup, HandedPipe, Launch, OffLoop, Sys, SysHandoff, TimerKey};
use crate::input::Input;
use crate::logbook::{Stream, MAX_LINE};
use crate::spawn::{SpawnError, SpawnSpec};

/// The real system: processes, signals, waitpid, smol timers, the journal.
pub struct RealSys {
    executor: &'static LocalExecutor<'static>,
    /// Facts for the event loop.
    events: Sender<Input>,
    /// Output lines for the event loop (bounded: see [`crate::LINE_QUEUE`]).
    lines: Sender<Input>,
    timers: HashMap<TimerKey, Task<()>>,
    base_env: Vec<(OsString, OsString)>,
    /// How processes are started, and the spawner once there is one.
    spawning: crate::spawn::Spawning,
    /// The services' cgroups, when spore has a cgroup2 tree.
    cgroups: Option<crate::cgroup::Tree>,
    /// The service each running group (its main pid) has its cgroup for;
    /// an entry goes when the cgroup is found empty.
    cgroup_of: RefCell<HashMap<i32, Placed>>,
    /// Every output pipe being read, by descriptor, with the bytes read
    /// and not yet a whole line: what a live re-exec hands on.
    pipes: Rc<RefCell<HashMap<RawFd, OpenPipe>>>,
}

/// An output pipe a reader task holds.
struct OpenPipe {
    service: String,
    stream: Stream,
    /// Read, and not yet a whole line.
    pending: Rc<RefCell<Vec<u8>>>,
}

/// A service's main process in its cgroup.
#[derive(Debug, Clone)]
struct Placed {
    /// The service.
    service: String,
    /// The cgroup's OOM kill count when it started, to tell an OOM kill
    /// from another SIGKILL when it ends.
    oom_kills: Option<u64>,
}

impl RealSys {
    /// The real system, running its tasks on `executor`, reporting on
    /// `events` and `lines`, and starting processes as `spawning` says.
    pub fn new(
        executor: &'static LocalExecutor<'static>,
        events: Sender<Input>,
        lines: Sender<Input>,
        spawning: crate::spawn::SpawnSettings,
    ) -> Self {
        Self {
            executor,
            events,
            lines,
            timers: HashMap::new(),
            base_env: crate::spawn::base_environment(),
            spawning: crate::spawn::Spawning::new(spawning),
            cgroups: None,
            cgroup_of: RefCell::new(HashMap::new()),
            pipes: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// The cgroup of group `pgid`, if it is a service that has one.
    fn cgroup(&self, pgid: i32) -> Option<(&crate::cgroup::Tree, String)> {
        let tree = self.cgroups.as_ref()?;
        let placed = self.cgroup_of.try_borrow().ok()?.get(&pgid).cloned()?;
        Some((tree, placed.service))
    }

    /// Whether the OOM killer killed in the cgroup of the service whose
    /// main process `pid` was just killed (its `oom_kill` count rose since
    /// the start): then the cgroup's memory limit, if it has one.
    fn oom_killed(&self, pid: i32) -> Option<Option<u64>> {
        let tree = self.cgroups.as_ref()?;
        let placed = self.cgroup_of.try_borrow().ok()?.get(&pid).cloned()?;
        let now = tree.oom_kills(&placed.service)?;
        (now > placed.oom_kills.unwrap_or(0)).then(|| tree.memory_max(&placed.service))
    }

    /// Reads a pipe line by line until every writer has closed it. An idle
    /// pipe costs no buffer: bytes are read into one shared scratch buffer
    /// only when the pipe is readable. A full line queue makes this task
    /// wait, so the service blocks on its own pipe. `pending` is what an
    /// earlier spore had read of an unfinished line (a live re-exec).
    fn read_lines(&self, service: String, stream: Stream, fd: OwnedFd, pending: Vec<u8>) {
        let tx = self.lines.clone();
        let raw = fd.as_raw_fd();
        let Ok(pipe) = Async::new(std::fs::File::from(fd)) else {
            crate::journal::note(format_args!(
                "{service}: cannot watch its {} pipe",
                stream.name()
            ));
            return;
        };
        let pending = Rc::new(RefCell::new(pending));
        if let Ok(mut pipes) = self.pipes.try_borrow_mut() {
            pipes.insert(
                raw,
                OpenPipe {
                    service: service.clone(),
                    stream,
                    pending: pending.clone(),
                },
            );
        }
        let pipes = self.pipes.clone();
        self.executor
            .spawn(async move {
                loop {
                    if pipe.readable().await.is_err() {
                        break;
                    }
                    // No await while the buffer is borrowed.
                    let (done, lines) = match pending.try_borrow_mut() {
                        Ok(mut pending) => {
                            let done = match read_available(pipe.get_ref(), &mut pending) {
                                Ok(eof) => eof,
                                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                                    false
                                }
                                Err(_) => true,
                            };
                            (done, take_lines(&mut pending))
                        }
                        Err(_) => (true, Vec::new()),
                    };
                    for text in lines {
                        let line = Input::Line {
                            service: service.clone(),
                            stream,
                            text,
                        };
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                    if done {
                        break;
                    }
                }
                // The descriptor closes with this task: no longer handed on.
                if let Ok(mut pipes) = pipes.try_borrow_mut() {
                    pipes.remove(&raw);
                }
                let rest = pending
                    .try_borrow_mut()
                    .map(|mut p| std::mem::take(&mut *p))
                    .unwrap_or_default();
                if !rest.is_empty() {
                    let text = String::from_utf8_lossy(&rest).into_owned();
                    let _ = tx
                        .send(Input::Line {
                            service,
                            stream,
                            text,
                        })
                        .await;
                }
            })
            .detach();
    }
}

impl Sys for RealSys {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    fn spawn(&mut self, launch: Launch<'_>, output: Option<&str>) -> Result<i32, SpawnError> {
        // A service (not a health check) runs in its cgroup, with its
        // limits; one that cannot be made or limited fails the start,
        // saying why, and so does a limit where there is no cgroup.
        let failed = |message: String| SpawnError {
            code: 1,
            program: launch.argv.first().cloned().unwrap_or_default(),
            message,
        };
        let cgroup = match (&self.cgroups, output) {
            (Some(tree), Some(service)) => {
                let (procs, fresh) = tree.prepare(service).map_err(|error| {
                    failed(format!(
                        "its cgroup {}: {error}",
                        tree.path(service).display()
                    ))
                })?;
                let settings = crate::limits::settings(
                    launch
                        .resources
                        .unwrap_or(&svc::service::Resources::default()),
                    crate::limits::node_memory(),
                );
                let settings = crate::limits::to_write(settings, fresh);
                tree.apply(service, &settings)
                    .map_err(|error| failed(error.to_string()))?;
                if launch.resources.is_some_and(|r| r.delegate) {
                    let owner = launch.identity.map(|i| (i.uid, i.gid));
                    tree.delegate(service, owner)
                        .map_err(|error| failed(format!("delegate: {error}")))?;
                }
                Some((procs, fresh))
            }
            _ => {
                if let Some(key) = launch.resources.and_then(crate::limits::first_cgroup_limit) {
                    return Err(failed(format!(
                        "{key} needs a cgroup, and spore has none here (services run in cgroups with spore as PID 1, or under `spore run --cgroup PATH`)"
                    )));
                }
                None
            }
        };
        let child = self.spawning.spawn(&SpawnSpec {
            argv: launch.argv,
            env: launch.env,
            base_env: &self.base_env,
            dir: launch.dir,
            state_dirs: launch.state_dirs,
            capture: output.is_some(),
            cgroup: cgroup.as_ref().map(|(procs, _)| procs.as_path()),
            oom_score_adj: launch.resources.and_then(|r| r.oom_score_adj),
            rlimits: launch.resources.map_or(&[], |r| r.rlimits.as_slice()),
            identity: launch.identity,
            mounts: launch.mounts,
            passed: launch.passed,
        })?;
        if let (Some(tree), Some((_, fresh)), Some(service), Ok(mut map)) = (
            &self.cgroups,
            &cgroup,
            output,
            self.cgroup_of.try_borrow_mut(),
        ) {
            // A fresh cgroup has had no OOM kill: nothing to read.
            let oom_kills = if *fresh {
                Some(0)
            } else {
                tree.oom_kills(service)
            };
            map.insert(
                child.pid,
                Placed {
                    service: service.to_owned(),
                    oom_kills,
                },
            );
        }
        if let Some(service) = output {
            if let Some(stdout) = child.stdout {
                self.read_lines(
                    service.to_owned(),
                    Stream::Stdout,
                    stdout.into(),
                    Vec::new(),
                );
            }
            if let Some(stderr) = child.stderr {
                self.read_lines(
                    service.to_owned(),
                    Stream::Stderr,
                    stderr.into(),
                    Vec::new(),
                );
            }
        }
        Ok(child.pid)
    }

    fn signal_group(&mut self, pgid: i32, signal: i32) {
        if pgid <= 1 {
            // Never signal group 0 (our own) or 1: that would hit spore itself.
            return;
        }
        let Ok(signal) = Signal::try_from(signal) else {
            crate::journal::note(format_args!("invalid signal {signal} for group {pgid}"));
            return;
        };
        match kill(Pid::from_raw(-pgid), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(error) => {
                crate::journal::note(format_args!("kill(-{pgid}, {signal}) failed: {error}"))
            }
        }
        // What left the group (setsid, a double fork) is still in the
        // service's cgroup: a kill takes all of it at once, another signal
        // reaches each of its processes.
        if let Some((tree, service)) = self.cgroup(pgid) {
            let done = if signal == Signal::SIGKILL {
                tree.kill(&service)
            } else {
                tree.pids(&service).map(|pids| {
                    for pid in pids {
                        let _ = kill(Pid::from_raw(pid), signal);
                    }
                })
            };
            if let Err(error) = done {
                crate::journal::note(format_args!("{service}: signalling its cgroup: {error}"));
            }
        }
    }

    fn reap(&mut self) -> Option<(i32, ExitStatus)> {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return None,
                Ok(WaitStatus::Exited(pid, code)) => {
                    return Some((pid.as_raw(), ExitStatus::Code(code)))
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    let pid = pid.as_raw();
                    if signal == Signal::SIGKILL {
                        if let Some(limit) = self.oom_killed(pid) {
                            return Some((pid, ExitStatus::OomKilled { limit }));
                        }
                    }
                    return Some((pid, ExitStatus::Signal(signal as i32)));
                }
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(error) => {
                    crate::journal::note(format_args!("waitpid failed: {error}"));
                    return None;
                }
            }
        }
    }

    fn group_is_empty(&self, pgid: i32) -> bool {
        if let Some((tree, service)) = self.cgroup(pgid) {
            match tree.populated(&service) {
                Ok(true) => return false,
                Ok(false) => {
                    if let Ok(mut map) = self.cgroup_of.try_borrow_mut() {
                        map.remove(&pgid);
                    }
                    return true;
                }
                // Unreadable: as without a cgroup.
                Err(_) => {}
            }
        }
        pgid > 1 && kill(Pid::from_raw(-pgid), None) == Err(Errno::ESRCH)
    }

    fn use_cgroups(&mut self, tree: crate::cgroup::Tree) {
        self.cgroups = Some(tree);
    }

    fn usage(&self, service: &str) -> Option<crate::usage::Usage> {
        let dir = self.cgroups.as_ref()?.path(service);
        dir.is_dir().then(|| crate::usage::of_cgroup(&dir))
    }

    fn arm_timer(&mut self, key: TimerKey, after: Duration) {
        let tx = self.events.clone();
        let task = self.executor.spawn(async move {
            Timer::after(after).await;
            let input = match key {
                TimerKey::Supervisor(id) => Input::Event(Event::TimerFired(id)),
                TimerKey::CheckDeadline(pid) => Input::CheckTimedOut { pid },
                TimerKey::Caller(key) => Input::CallerTimer(key),
            };
            let _ = tx.send(input).await;
        });
        // Fired timers have done their job; dropping a task cancels it.
        self.timers.retain(|_, task| !task.is_finished());
        self.timers.insert(key, task);
    }

    fn cancel_timer(&mut self, key: TimerKey) {
        // Dropping the task cancels it: the timer never wakes us.
        self.timers.remove(&key);
    }

    fn off_loop(&mut self, job: OffLoop) {
        let tx = self.events.clone();
        self.executor
            .spawn(async move {
                // A thread of its own, not smol's pool (see offload).
                if let Some(input) = crate::offload::run("spore-off-loop", job).await {
                    let _ = tx.send(input).await;
                }
            })
            .detach();
    }

    fn probe(&mut self, run: CheckRun, probe: &Probe, timeout: Duration) {
        let tx = self.events.clone();
        let probe = probe.clone();
        self.executor
            .spawn(async move {
                let passed = match &probe {
                    Probe::Tcp { target } => crate::probe::tcp(target, timeout).await,
                    Probe::Http {
                        target,
                        expect_status,
                    } => crate::probe::http(target, *expect_status, timeout).await,
                    Probe::Exec { .. } => false,
                };
                let done = Event::CheckDone {
                    service: run.service,
                    run: run.run,
                    check: run.check,
                    passed,
                };
                let _ = tx.send(Input::Event(done)).await;
            })
            .detach();
    }

    fn note(&mut self, line: &str) {
        crate::journal::note(line);
    }

    fn open_log(
        &mut self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn std::io::Write + Send>> {
        crate::logbook::LogBook::open_file(path)
    }

    fn keep_log(&mut self, path: &std::path::Path) -> crate::rotating::Keeper {
        crate::rotating::keeper(path.to_path_buf())
    }

    fn remove_credentials(&mut self, dir: &std::path::Path) -> std::io::Result<()> {
        crate::credentials::remove(dir)
    }

    fn echo(&mut self, service: &str, line: &str) {
        crate::journal::service_line(service, line);
    }

    fn hand_off(&self) -> SysHandoff {
        let pipes = self.pipes.try_borrow().map_or_else(
            |_| Vec::new(),
            |pipes| {
                pipes
                    .iter()
                    .map(|(fd, pipe)| HandedPipe {
                        fd: *fd,
                        service: pipe.service.clone(),
                        stream: pipe.stream,
                        pending: pipe
                            .pending
                            .try_borrow()
                            .map(|p| p.clone())
                            .unwrap_or_default(),
                    })
                    .collect()
            },
        );
        let placed = self.cgroup_of.try_borrow().map_or_else(
            |_| Vec::new(),
            |map| {
                map.iter()
                    .map(|(pid, placed)| HandedCgroup {
                        pid: *pid,
                        service: placed.service.clone(),
                        oom_kills: placed.oom_kills,
                    })
                    .collect()
            },
        );
        SysHandoff { pipes, placed }
    }

    fn adopt(&mut self, handoff: SysHandoff) {
        for pipe in handoff.pipes {
            // SAFETY: the earlier spore held this descriptor open for this
            // pipe and kept it across the exec (it cleared FD_CLOEXEC);
            // nothing else in this process has taken it (adoption runs
            // before any file is opened for a service), and it is owned
            // here from now on. A descriptor that is not open is refused
            // by the check first.
            if nix::fcntl::fcntl(
                unsafe { std::os::fd::BorrowedFd::borrow_raw(pipe.fd) },
                nix::fcntl::FcntlArg::F_GETFD,
            )
            .is_err()
            {
                crate::journal::note(format_args!(
                    "{}: its {} pipe (descriptor {}) did not survive the re-exec",
                    pipe.service,
                    pipe.stream.name(),
                    pipe.fd
                ));
                continue;
            }
            // SAFETY: see above.
            let fd = unsafe { OwnedFd::from_raw_fd(pipe.fd) };
            if let Err(error) = nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            ) {
                crate::journal::note(format_args!("{}: FD_CLOEXEC: {error}", pipe.service));
            }
            self.read_lines(pipe.service, pipe.stream, fd, pipe.pending);
        }
        if let Ok(mut map) = self.cgroup_of.try_borrow_mut() {
            for placed in handoff.placed {
                map.insert(
                    placed.pid,
                    Placed {
                        service: placed.service,
                        oom_kills: placed.oom_kills,
                    },
                );
            }
        }
    }
}

thread_local! {
    /// The one read buffer every output pipe shares (one thread reads them all).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// Reads what a non-blocking pipe holds now into `pending`; Ok(true) at
/// end of file.
fn read_available(mut pipe: &std::fs::File, pending: &mut Vec<u8>) -> std::io::Result<bool> {
    use std::io::Read;
    SCRATCH.with(|scratch| {
        // Only this function borrows it, and never re-enters: a failed
        // borrow cannot happen, but would read into a fresh buffer.
        let mut own = Vec::new();
        let mut borrowed = scratch.try_borrow_mut();
        let buffer: &mut Vec<u8> = match borrowed.as_deref_mut() {
            Ok(buffer) => buffer,
            Err(_) => {
                own.resize(64 * 1024, 0);
                &mut own
            }
        };
        loop {
            let n = match pipe.read(buffer) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            pending.extend_from_slice(buffer.get(..n).unwrap_or_default());
            // Leave the rest for the next turn so one noisy service cannot
            // hold the loop.
            if pending.len() >= 4 * MAX_LINE {
                return Ok(false);
            }
        }
    })
}

/// Splits complete lines off the front of `pending`; a line longer than
/// [`MAX_LINE`] is cut so one chatty process cannot grow memory unbounded.
/// One pass and one move of the rest, however many lines there are (a
/// copy of the rest per line made a 64 KiB backlog cost seconds).
pub fn take_lines(pending: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut start = 0;
    loop {
        let rest = pending.get(start..).unwrap_or_default();
        let (len, newline) = match rest.iter().position(|b| *b == b'\n') {
            Some(at) if at <= MAX_LINE => (at, 1),
            _ if rest.len() >= MAX_LINE => (MAX_LINE, 0),
            _ => break,
        };
        let mut line = rest.get(..len).unwrap_or_default();
        if let Some((b'\r', head)) = line.split_last() {
            line = head;
        }
        lines.push(String::from_utf8_lossy(line).into_owned());
        start += len + newline;
    }
    pending.drain(..start.min(pending.len()));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_on_newlines_and_long_ones_are_cut() {
        let mut pending = b"one\r\ntwo\nthr".to_vec();
        assert_eq!(take_lines(&mut pending), ["one", "two"]);
        assert_eq!(pending, b"thr");
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.push(b'\n');
        let lines = take_lines(&mut long);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[1].len(), 10);
        assert!(long.is_empty());
        let mut exact = vec![b'y'; MAX_LINE];
        exact.extend_from_slice(b"\nz\n");
        assert_eq!(
            take_lines(&mut exact)
                .iter()
                .map(String::len)
                .collect::<Vec<_>>(),
            [MAX_LINE, 1]
        );
    }

    #[test]
    fn a_big_backlog_is_split_in_one_pass() {
        let mut pending: Vec<u8> = b"flood line 1\n".repeat(100_000);
        pending.extend_from_slice(b"partial");
        let lines = take_lines(&mut pending);
        assert_eq!(lines.len(), 100_000);
        assert!(lines.iter().all(|l| l == "flood line 1"));
        assert_eq!(pending, b"partial");
    }
}
