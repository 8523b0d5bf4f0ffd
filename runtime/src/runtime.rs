//! The thin shell around the [`Supervisor`]: carries out its actions with
//! real processes, signals and timers, and turns what happens back into
//! events. Single-threaded: everything runs on one smol `LocalExecutor`.
//!
//! The owner of the event loop feeds [`Input`]s from [`Inputs::next`] to
//! [`Runtime::handle`] and calls [`Runtime::reap`] on every SIGCHLD.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::time::{Instant, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use smol::channel::{Receiver, Sender};
use smol::{Async, LocalExecutor, Task, Timer};

use crate::journal;
use crate::logbook::{LogBook, LogLine, Stream, MAX_LINE};
use crate::probe;
use crate::spawn::{self, SpawnError, SpawnSpec};
use svc::service::{Probe, Service};
use svc::supervisor::{Action, Event, ExitStatus, State, Supervisor, TimerId, UnitView};

/// Something for the runtime to handle, sent by its own tasks.
#[derive(Debug)]
pub enum Input {
    /// A fact for the supervisor (timer fired, probe done).
    Event(Event),
    /// A line of a service's output.
    Line {
        /// The service.
        service: String,
        /// Its stream.
        stream: Stream,
        /// The text.
        text: String,
    },
    /// An exec health check ran out of time.
    CheckTimedOut {
        /// The check's process.
        pid: i32,
    },
    /// A file write or deletion finished off the loop.
    Stored(Box<crate::store::Done>),
}

struct ExecCheck {
    service: String,
    run: u64,
    check: usize,
    _deadline: Task<()>,
}

/// Lines of service output waiting for the event loop. A pipe reader that
/// finds the queue full waits, stops reading, and the service blocks on its
/// own full pipe: a service printing faster than spore stores pushes back
/// on itself, not on spore (as s6-log does).
pub const LINE_QUEUE: usize = 1024;

/// What the event loop reads: facts first, then output lines.
pub struct Inputs {
    events: Receiver<Input>,
    lines: Receiver<Input>,
}

impl Inputs {
    /// The next input: a pending event (timer, check) before any line of
    /// output, so a flood of output never delays a fact. None only if the
    /// runtime is gone.
    pub async fn next(&self) -> Option<Input> {
        use smol::future::FutureExt;
        async { self.events.recv().await.ok() }
            .or(async { self.lines.recv().await.ok() })
            .await
    }
}

/// Runs the supervisor's actions. See the module docs.
pub struct Runtime {
    supervisor: Supervisor,
    executor: &'static LocalExecutor<'static>,
    tx: Sender<Input>,
    /// Bounded: see [`LINE_QUEUE`].
    lines_tx: Sender<Input>,
    /// Disk work for the storage task (see [`crate::store`]).
    store_tx: Sender<crate::store::Job>,
    timers: HashMap<TimerId, Task<()>>,
    /// Main pid of each running service, for the reaper.
    service_pids: HashSet<i32>,
    exec_checks: HashMap<i32, ExecCheck>,
    watched_groups: HashSet<i32>,
    logs: HashMap<String, LogBook>,
    base_env: Vec<(OsString, OsString)>,
    queue: VecDeque<Event>,
    shutdown_complete: bool,
    echo_output: bool,
    files: Option<Files>,
    ready_watchers: HashMap<String, Vec<Sender<()>>>,
}

/// Where deployed service files and secrets are kept.
#[derive(Debug, Clone)]
pub struct Files {
    /// Service files (`NAME.toml`).
    pub services: std::path::PathBuf,
    /// Secrets, one 0600 file each.
    pub secrets: std::path::PathBuf,
}

impl Runtime {
    /// A runtime for `services`, spawning its tasks on `executor`. Returns the
    /// receiver the event loop reads [`Input`]s from.
    pub fn new(
        services: Vec<Service>,
        executor: &'static LocalExecutor<'static>,
    ) -> (Self, Inputs) {
        // Events are bounded by construction (one per timer, check or
        // request); lines are not, so they get a bounded queue of their own.
        let (tx, events) = smol::channel::unbounded();
        let (lines_tx, lines) = smol::channel::bounded(LINE_QUEUE);
        let (store_tx, jobs) = smol::channel::unbounded();
        executor
            .spawn(crate::store::serve(jobs, tx.clone()))
            .detach();
        let mut logs = HashMap::new();
        for service in &services {
            let (book, error) = LogBook::new(
                service.logging.buffer_lines,
                service.logging.file.as_deref(),
            );
            if let Some(error) = error {
                journal::note(format_args!(
                    "{}: cannot open log file {}: {error}; keeping output in memory only",
                    service.name,
                    service
                        .logging
                        .file
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ));
            }
            logs.insert(service.name.clone(), book);
        }
        let runtime = Self {
            supervisor: Supervisor::new(services, Instant::now()),
            executor,
            tx,
            lines_tx,
            store_tx,
            timers: HashMap::new(),
            service_pids: HashSet::new(),
            exec_checks: HashMap::new(),
            watched_groups: HashSet::new(),
            logs,
            base_env: spawn::base_environment(),
            queue: VecDeque::new(),
            shutdown_complete: false,
            echo_output: true,
            files: None,
            ready_watchers: HashMap::new(),
        };
        (runtime, Inputs { events, lines })
    }

    /// A queue that receives a token every time `name` becomes ready (for
    /// work that must follow a service, like listening on mycelium's address).
    pub fn watch_ready(&mut self, name: &str) -> Receiver<()> {
        let (tx, rx) = smol::channel::bounded(1);
        self.ready_watchers
            .entry(name.to_owned())
            .or_default()
            .push(tx);
        rx
    }

    /// Sets where deploys and secrets are written (without it, those
    /// methods are refused).
    pub fn set_files(&mut self, files: Files) {
        self.files = Some(files);
    }

    /// Where deploys and secrets are written.
    pub fn files(&self) -> Option<&Files> {
        self.files.as_ref()
    }

    /// Adds or replaces a (validated) service, with a log book for a new one.
    pub fn deploy(&mut self, service: Service) {
        if !self.logs.contains_key(&service.name) {
            let (book, error) = LogBook::new(
                service.logging.buffer_lines,
                service.logging.file.as_deref(),
            );
            if let Some(error) = error {
                journal::note(format_args!(
                    "{}: cannot open its log file: {error}",
                    service.name
                ));
            }
            self.logs.insert(service.name.clone(), book);
        }
        self.feed(Event::Deploy(Box::new(service)));
    }

    /// Whether service output is also echoed to spore's stderr (default on).
    pub fn set_echo_output(&mut self, echo: bool) {
        self.echo_output = echo;
    }

    /// The supervisor, for status queries.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The view of one service.
    pub fn get(&self, name: &str) -> Option<UnitView<'_>> {
        self.supervisor.get(name)
    }

    /// A service's output.
    pub fn logs(&self, name: &str) -> Option<&LogBook> {
        self.logs.get(name)
    }

    /// Follows a service's output from now on.
    pub fn follow(&mut self, name: &str) -> Option<Receiver<LogLine>> {
        self.logs.get_mut(name).map(LogBook::follow)
    }

    /// A sender into the event loop's queue, for other channels (a control
    /// connection asking for shutdown) to hand events in.
    pub fn sender(&self) -> Sender<Input> {
        self.tx.clone()
    }

    /// True once a shutdown has stopped every service.
    pub fn is_shutdown_complete(&self) -> bool {
        self.shutdown_complete
    }

    /// Handles one input from [`Runtime::new`]'s receiver.
    pub fn handle(&mut self, input: Input) {
        match input {
            Input::Event(event) => self.feed(event),
            Input::Line {
                service,
                stream,
                text,
            } => {
                if self.echo_output {
                    journal::service_line(&service, &text);
                }
                if let Some(book) = self.logs.get_mut(&service) {
                    book.push(LogLine {
                        time: SystemTime::now(),
                        stream,
                        text,
                    });
                }
            }
            Input::CheckTimedOut { pid } => {
                if self.exec_checks.contains_key(&pid) {
                    signal_group(pid, Signal::SIGKILL);
                }
            }
            Input::Stored(done) => {
                let crate::store::Done { job, outcome } = *done;
                let answer = crate::api::after_store(self, &job.work, job.then, outcome);
                // A caller that hung up no longer needs the answer.
                let _ = job.reply.try_send(answer);
            }
        }
    }

    /// Queues disk work to run off the loop; the receiver gets the answer
    /// once it is done and applied (see [`crate::store`]).
    pub fn store(
        &self,
        work: crate::store::Work,
        then: crate::store::Then,
    ) -> Receiver<Result<serde_json::Value, crate::api::ApiError>> {
        let (reply, answer) = smol::channel::bounded(1);
        let job = crate::store::Job { work, then, reply };
        if let Err(
            smol::channel::TrySendError::Closed(job) | smol::channel::TrySendError::Full(job),
        ) = self.store_tx.try_send(job)
        {
            let _ = job.reply.try_send(Err(crate::api::ApiError {
                code: crate::api::code::STORAGE,
                message: "the storage task is gone".into(),
            }));
        }
        answer
    }

    /// Tells the supervisor `event` and carries out what it decides,
    /// including everything that follows from it at once.
    pub fn feed(&mut self, event: Event) {
        self.queue.push_back(event);
        while let Some(event) = self.queue.pop_front() {
            let actions = self.supervisor.handle(Instant::now(), event);
            for action in actions {
                self.apply(action);
            }
        }
    }

    /// Collects every exited child (signals coalesce, so loop until none is
    /// left) and reports the ones that matter. The only waitpid in spore.
    pub fn reap(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => status,
                Err(Errno::EINTR) => continue,
                Err(error) => {
                    journal::note(format_args!("waitpid failed: {error}"));
                    break;
                }
            };
            let (pid, exit) = match status {
                WaitStatus::Exited(pid, code) => (pid.as_raw(), ExitStatus::Code(code)),
                WaitStatus::Signaled(pid, signal, _) => {
                    (pid.as_raw(), ExitStatus::Signal(signal as i32))
                }
                _ => continue,
            };
            if let Some(check) = self.exec_checks.remove(&pid) {
                self.feed(Event::CheckDone {
                    service: check.service,
                    run: check.run,
                    check: check.check,
                    passed: exit.success(),
                });
            } else if self.service_pids.remove(&pid) {
                let group_empty = group_is_empty(pid);
                self.feed(Event::Exited {
                    pid,
                    status: exit,
                    group_empty,
                });
            }
            // Anything else is an orphan: reaped, nothing more to do.
        }
        let emptied: Vec<i32> = self
            .watched_groups
            .iter()
            .copied()
            .filter(|&pgid| group_is_empty(pgid))
            .collect();
        for pgid in emptied {
            self.watched_groups.remove(&pgid);
            self.feed(Event::GroupEmpty { pgid });
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Spawn { service, run } => self.spawn_service(service, run),
            Action::Signal { pgid, signal } => match Signal::try_from(signal) {
                Ok(signal) => signal_group(pgid, signal),
                Err(_) => journal::note(format_args!("invalid signal {signal} for group {pgid}")),
            },
            Action::WatchGroup { pgid } => {
                if group_is_empty(pgid) {
                    self.queue.push_back(Event::GroupEmpty { pgid });
                } else {
                    self.watched_groups.insert(pgid);
                }
            }
            Action::ArmTimer { id, after } => {
                let tx = self.tx.clone();
                let task = self.executor.spawn(async move {
                    Timer::after(after).await;
                    let _ = tx.send(Input::Event(Event::TimerFired(id))).await;
                });
                self.timers.insert(id, task);
            }
            Action::CancelTimer(id) => {
                // Dropping the task cancels it: the timer never wakes us.
                self.timers.remove(&id);
            }
            Action::RunCheck {
                service,
                run,
                check,
            } => self.run_check(service, run, check),
            Action::Changed { service, state } => {
                self.report(&service, &state);
                if state == State::Ready {
                    if let Some(watchers) = self.ready_watchers.get_mut(&service) {
                        // A full queue already holds a token: nothing is lost.
                        watchers.retain(|w| {
                            !matches!(w.try_send(()), Err(smol::channel::TrySendError::Closed(_)))
                        });
                    }
                }
            }
            Action::ShutdownComplete => {
                self.shutdown_complete = true;
                journal::note("all services stopped");
            }
        }
        // Fired timers have done their job.
        self.timers.retain(|_, task| !task.is_finished());
    }

    fn report(&self, service: &str, state: &State) {
        let view = self.supervisor.get(service);
        let mut line = match state {
            State::Backoff { delay, .. } => {
                format!("{service}: backoff: restart in {} ms", delay.as_millis())
            }
            _ => format!("{service}: {}", state.describe(Instant::now())),
        };
        if let (State::Ready | State::Running, Some(pid)) =
            (state, view.as_ref().and_then(|v| v.pid))
        {
            line.push_str(&format!(" (pid {pid})"));
        }
        if let (State::Backoff { .. } | State::Exited(_) | State::Failed(_), Some(view)) =
            (state, &view)
        {
            if let Some(exit) = view.last_exit {
                line.push_str(&format!(" (last run {exit})"));
            }
            if let Some(error) = view.last_error {
                line.push_str(&format!(" ({error})"));
            }
        }
        journal::note(line);
    }

    fn spawn_service(&mut self, name: String, run: u64) {
        let Some(service) = self.supervisor.get(&name).map(|v| v.service.clone()) else {
            return;
        };
        let secrets = self.secret_env(&service);
        let result = match (&service.command, secrets) {
            (_, Err(error)) => Err(error),
            (Some(command), Ok(secrets)) => {
                let argv = command.argv();
                let mut env: Vec<(String, String)> = service
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                env.extend(secrets);
                spawn::spawn(&SpawnSpec {
                    argv: &argv,
                    env: &env,
                    base_env: &self.base_env,
                    dir: service.dir.as_deref(),
                    capture: true,
                })
            }
            (None, Ok(_)) => Err(SpawnError {
                code: 127,
                program: name.clone(),
                message: "a target has no command".into(),
            }),
        };
        match result {
            Ok(child) => {
                self.service_pids.insert(child.pid);
                if let Some(stdout) = child.stdout {
                    self.read_lines(name.clone(), Stream::Stdout, stdout.into());
                }
                if let Some(stderr) = child.stderr {
                    self.read_lines(name.clone(), Stream::Stderr, stderr.into());
                }
                self.queue.push_back(Event::Spawned {
                    service: name,
                    run,
                    pid: child.pid,
                });
            }
            Err(error) => {
                journal::note(format_args!("{name}: {error}"));
                self.queue.push_back(Event::SpawnFailed {
                    service: name,
                    run,
                    code: error.code,
                    error: error.to_string(),
                });
            }
        }
    }

    /// The `[secrets]` a service asks for, read now (so a changed secret
    /// takes effect at the next start). Values never reach a log.
    fn secret_env(&self, service: &Service) -> Result<Vec<(String, String)>, SpawnError> {
        let mut env = Vec::with_capacity(service.secrets.len());
        for (variable, secret) in &service.secrets {
            let missing = |why: String| SpawnError {
                code: 1,
                program: service.name.clone(),
                message: format!("secret `{secret}` {why}"),
            };
            let dir = self
                .files
                .as_ref()
                .map(|f| f.secrets.clone())
                .ok_or_else(|| missing("has no store".into()))?;
            let value = std::fs::read(dir.join(secret))
                .map_err(|e| missing(format!("is not set ({e})")))?;
            let value = String::from_utf8(value).map_err(|_| missing("is not UTF-8".into()))?;
            env.push((variable.clone(), value));
        }
        Ok(env)
    }

    /// Reads a pipe line by line until every writer has closed it. An idle
    /// pipe costs no buffer: bytes are read into one shared scratch buffer
    /// only when the pipe is readable.
    fn read_lines(&self, service: String, stream: Stream, fd: OwnedFd) {
        let tx = self.lines_tx.clone();
        let Ok(pipe) = Async::new(std::fs::File::from(fd)) else {
            journal::note(format_args!(
                "{service}: cannot watch its {} pipe",
                stream.name()
            ));
            return;
        };
        self.executor
            .spawn(async move {
                let mut pending: Vec<u8> = Vec::new();
                loop {
                    if pipe.readable().await.is_err() {
                        break;
                    }
                    let done = match read_available(pipe.get_ref(), &mut pending) {
                        Ok(eof) => eof,
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => false,
                        Err(_) => true,
                    };
                    for text in take_lines(&mut pending) {
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
                if !pending.is_empty() {
                    let text = String::from_utf8_lossy(&pending).into_owned();
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

    fn run_check(&mut self, service: String, run: u64, check: usize) {
        let Some(spec) = self
            .supervisor
            .get(&service)
            .and_then(|v| v.service.health.get(check).cloned())
        else {
            return;
        };
        let tx = self.tx.clone();
        let timeout = spec.timeout;
        let native: Option<std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>> =
            match &spec.probe {
                Probe::Tcp { target } => {
                    let target = target.clone();
                    Some(Box::pin(async move { probe::tcp(&target, timeout).await }))
                }
                Probe::Http {
                    target,
                    expect_status,
                } => {
                    let (target, expect) = (target.clone(), *expect_status);
                    Some(Box::pin(async move {
                        probe::http(&target, expect, timeout).await
                    }))
                }
                Probe::Exec { .. } => None,
            };
        if let Some(native) = native {
            self.executor
                .spawn(async move {
                    let passed = native.await;
                    let done = Event::CheckDone {
                        service,
                        run,
                        check,
                        passed,
                    };
                    let _ = tx.send(Input::Event(done)).await;
                })
                .detach();
            return;
        }
        match spec.probe {
            Probe::Tcp { .. } | Probe::Http { .. } => {}
            Probe::Exec { command } => {
                let view = self.supervisor.get(&service);
                let env: Vec<(String, String)> = view
                    .as_ref()
                    .map(|v| {
                        v.service
                            .env
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let dir = view.and_then(|v| v.service.dir.clone());
                let argv = command.argv();
                let spawned = spawn::spawn(&SpawnSpec {
                    argv: &argv,
                    env: &env,
                    base_env: &self.base_env,
                    dir: dir.as_deref(),
                    capture: false,
                });
                match spawned {
                    Ok(child) => {
                        let pid = child.pid;
                        let deadline = self.executor.spawn(async move {
                            Timer::after(timeout).await;
                            let _ = tx.send(Input::CheckTimedOut { pid }).await;
                        });
                        self.exec_checks.insert(
                            pid,
                            ExecCheck {
                                service,
                                run,
                                check,
                                _deadline: deadline,
                            },
                        );
                    }
                    Err(error) => {
                        journal::note(format_args!("{service}: health check: {error}"));
                        self.queue.push_back(Event::CheckDone {
                            service,
                            run,
                            check,
                            passed: false,
                        });
                    }
                }
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
        let mut scratch = scratch.borrow_mut();
        loop {
            let n = match pipe.read(&mut scratch) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            pending.extend_from_slice(scratch.get(..n).unwrap_or_default());
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
fn take_lines(pending: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let newline = pending.iter().position(|b| *b == b'\n');
        let cut = match newline {
            Some(at) if at <= MAX_LINE => at,
            _ if pending.len() >= MAX_LINE => MAX_LINE,
            _ => break,
        };
        let rest = pending.split_off(cut);
        let mut line = std::mem::replace(pending, rest);
        if pending.first() == Some(&b'\n') && newline == Some(cut) {
            pending.remove(0);
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        lines.push(String::from_utf8_lossy(&line).into_owned());
    }
    lines
}

/// Sends `signal` to process group `pgid`; a group already gone is fine.
fn signal_group(pgid: i32, signal: Signal) {
    if pgid <= 1 {
        // Never signal group 0 (our own) or 1: that would hit spore itself.
        return;
    }
    match kill(Pid::from_raw(-pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => journal::note(format_args!("kill(-{pgid}, {signal}) failed: {error}")),
    }
}

/// True when no process is left in group `pgid` (kill(2) with signal 0).
fn group_is_empty(pgid: i32) -> bool {
    pgid > 1 && kill(Pid::from_raw(-pgid), None) == Err(Errno::ESRCH)
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
    }
}
