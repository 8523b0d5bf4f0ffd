//! The thin shell around the [`Supervisor`]: carries out its actions
//! through the system interface ([`Sys`]) and turns what happens back into
//! events. Single-threaded: everything runs on one smol `LocalExecutor`.
//!
//! The owner of the event loop feeds [`Input`]s from [`Inputs::next`] to
//! [`Runtime::handle`] and calls [`Runtime::reap`] on every SIGCHLD.

use std::collections::{HashMap, HashSet, VecDeque};

use smol::channel::{Receiver, Sender};
use smol::LocalExecutor;

mod checks;
pub mod handoff;
mod launch;
mod report;

pub use crate::input::{Input, Prepared};
use crate::logbook::{LogBook, LogLine, Stream};
use crate::spawn::SpawnError;
use crate::sys::{RealSys, Sys, TimerKey};
use svc::service::Service;
use svc::supervisor::{Action, Event, State, Supervisor, UnitView, SIGKILL};

/// What the runtime tells the layer above (the node API) after it handled
/// something: taken with [`Runtime::take_notices`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A service's state changed to this one (later ones may follow in
    /// the same batch; [`Runtime::get`] shows the latest).
    Changed {
        /// The service.
        service: String,
        /// Its state then.
        state: State,
    },
    /// A timer armed with [`Runtime::arm_caller_timer`] fired.
    Timer(u64),
    /// A service could not start, and it pins artifacts the node may fetch
    /// (`[[artifacts]] url`): those not in the store are wanted.
    ArtifactsWanted {
        /// The service.
        service: String,
    },
}

struct ExecCheck {
    service: String,
    run: u64,
    check: usize,
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

    /// The next input already queued, without waiting: facts first.
    pub fn try_next(&self) -> Option<Input> {
        self.events
            .try_recv()
            .or_else(|_| self.lines.try_recv())
            .ok()
    }
}

/// Runs the supervisor's actions. See the module docs.
pub struct Runtime {
    supervisor: Supervisor,
    /// The only way to the system.
    sys: Box<dyn Sys>,
    tx: Sender<Input>,
    /// Main pid of each running service, for the reaper.
    service_pids: HashSet<i32>,
    exec_checks: HashMap<i32, ExecCheck>,
    watched_groups: HashSet<i32>,
    logs: HashMap<String, LogBook>,
    /// Where every service's output is kept across restarts of spore
    /// (`STATE_DIR/logs/0`), once [`Runtime::keep_logs`] named it.
    kept_logs: Option<std::path::PathBuf>,
    queue: VecDeque<Event>,
    shutdown_complete: bool,
    echo_output: bool,
    files: Option<Files>,
    /// Credential directories of running services, by main pid.
    credential_dirs: HashMap<i32, std::path::PathBuf>,
    ready_watchers: HashMap<String, Vec<Sender<()>>>,
    /// Told of every state change of their service ([`Runtime::watch_changes`]).
    change_watchers: HashMap<String, Vec<Sender<()>>>,
    /// Told whenever the services' definitions change.
    definition_watchers: Vec<Sender<()>>,
    /// Listening sockets handed to a service at each start (`[[sockets]]`
    /// in pass mode), with their names; see [`Runtime::hand_sockets`].
    passed_sockets: HashMap<String, Vec<(std::os::fd::OwnedFd, String)>>,
    /// What the layer above has not taken yet (see [`Notice`]).
    notices: Vec<Notice>,
    /// Services removed while still stopping: their books end once stopped.
    removing: HashSet<String>,
}

/// Where service files and secrets are kept.
#[derive(Debug, Clone)]
pub struct Files {
    /// The image's service files (`NAME.toml`): read, never written.
    pub services: std::path::PathBuf,
    /// The deployed layer over them, on the state directory: deploys are
    /// written here, a removed image service is masked here
    /// (`NAME.masked`), and a reboot reads both (see `svc::load_layers`).
    pub deployed: std::path::PathBuf,
    /// Secrets, one 0600 file each.
    pub secrets: std::path::PathBuf,
    /// Where each running service's credential directory is made
    /// (`/run/spore/credentials` on a node: a tmpfs).
    pub credentials: std::path::PathBuf,
    /// Whether the deployed layer survives a reboot (it is not on a RAM
    /// filesystem), for node.info.
    pub persistent: bool,
    /// Where output is kept across starts (`STATE_DIR/logs`: `0/` this
    /// start, `1/` the one before…), when it is.
    pub kept_logs: Option<std::path::PathBuf>,
    /// The artifact store's root (`STATE_DIR/artifacts`), when the node
    /// keeps one.
    pub artifacts: Option<std::path::PathBuf>,
    /// Where each service's `$ARTIFACTS_DIRECTORY` is made
    /// (`/run/spore/artifacts` on a node: a tmpfs).
    pub artifact_links: std::path::PathBuf,
}

impl Runtime {
    /// A runtime for `services` on the real system, spawning its tasks on
    /// `executor` and its services as `spawning` says. Returns the queues
    /// the event loop reads [`Input`]s from.
    pub fn new(
        services: Vec<Service>,
        executor: &'static LocalExecutor<'static>,
        spawning: crate::spawn::SpawnSettings,
    ) -> (Self, Inputs) {
        // Events are bounded by construction (one per timer, check or
        // request); lines are not, so they get a bounded queue of their own.
        let (tx, events) = smol::channel::unbounded();
        let (lines_tx, lines) = smol::channel::bounded(LINE_QUEUE);
        let sys = RealSys::new(executor, tx.clone(), lines_tx, spawning);
        let runtime = Self::with_sys(services, Box::new(sys), tx);
        (runtime, Inputs { events, lines })
    }

    /// Runs each service in a cgroup of its own under `tree` from its next
    /// start on (see [`crate::cgroup`]): a stop reaches all it started,
    /// however detached, and it counts as stopped when its cgroup is empty.
    pub fn use_cgroups(&mut self, tree: crate::cgroup::Tree) {
        self.sys.use_cgroups(tree);
    }

    /// What `service` uses of the node, from its cgroup (None when spore
    /// runs services without cgroups, or it never ran).
    pub fn usage(&self, service: &str) -> Option<crate::usage::Usage> {
        self.sys.usage(service)
    }

    /// A runtime for `services` on `sys` (the real system, or a fake in
    /// tests); `tx` reaches the event loop.
    pub fn with_sys(services: Vec<Service>, mut sys: Box<dyn Sys>, tx: Sender<Input>) -> Self {
        let mut logs = HashMap::new();
        for service in &services {
            logs.insert(service.name.clone(), log_book(sys.as_mut(), service));
        }
        Self {
            supervisor: Supervisor::new(services, sys.now()),
            sys,
            tx,
            service_pids: HashSet::new(),
            exec_checks: HashMap::new(),
            watched_groups: HashSet::new(),
            logs,
            kept_logs: None,
            queue: VecDeque::new(),
            shutdown_complete: false,
            echo_output: true,
            files: None,
            credential_dirs: HashMap::new(),
            ready_watchers: HashMap::new(),
            change_watchers: HashMap::new(),
            definition_watchers: Vec::new(),
            passed_sockets: HashMap::new(),
            notices: Vec::new(),
            removing: HashSet::new(),
        }
    }

    /// A queue that receives a token every time `name` becomes ready (for
    /// work that must follow a service, like listening on mycelium's address).
    pub fn watch_ready(&mut self, name: &str) -> Receiver<()> {
        watcher(self.ready_watchers.entry(name.to_owned()).or_default())
    }

    /// A queue that receives a token whenever `name` changes state (one
    /// token stands for any number of changes: read the state with
    /// [`Runtime::get`] once woken).
    pub fn watch_changes(&mut self, name: &str) -> Receiver<()> {
        watcher(self.change_watchers.entry(name.to_owned()).or_default())
    }

    /// From now on every start of `service` is handed `sockets` (listening
    /// descriptors, each with its `LISTEN_FDNAMES` name), fd 3 on; none:
    /// no more. The runtime keeps its own descriptors (close-on-exec).
    pub fn hand_sockets(&mut self, service: &str, sockets: Vec<(std::os::fd::OwnedFd, String)>) {
        if sockets.is_empty() {
            self.passed_sockets.remove(service);
        } else {
            self.passed_sockets.insert(service.to_owned(), sockets);
        }
    }

    /// The sockets handed to `service` at its starts, as descriptors and names.
    pub(crate) fn passed_sockets(&self, service: &str) -> Vec<(i32, String)> {
        use std::os::fd::AsRawFd;
        self.passed_sockets
            .get(service)
            .map(|sockets| {
                sockets
                    .iter()
                    .map(|(fd, name)| (fd.as_raw_fd(), name.clone()))
                    .collect()
            })
            .unwrap_or_default()
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

    /// Keeps every service's output, from now on, in `dir/NAME.log` too
    /// (rotated at [`crate::rotating::KEPT_LOG_BYTES`]), so it can be read
    /// after spore or the node restarted; services deployed later as well.
    pub fn keep_logs(&mut self, dir: std::path::PathBuf) {
        self.kept_logs = Some(dir);
        let names: Vec<String> = self.logs.keys().cloned().collect();
        for name in names {
            self.keep_output_of(&name);
        }
    }

    /// Adds the kept file to `name`'s book, when output is kept.
    fn keep_output_of(&mut self, name: &str) {
        let Some(dir) = &self.kept_logs else {
            return;
        };
        let path = dir.join(format!("{name}.log"));
        let keeper = self.sys.keep_log(&path);
        if let Some(book) = self.logs.get_mut(name) {
            book.keep(keeper);
        }
    }

    /// Adds or replaces a (validated) service, with a log book for a new one.
    pub fn deploy(&mut self, service: Service) {
        if !self.logs.contains_key(&service.name) {
            let book = log_book(self.sys.as_mut(), &service);
            self.logs.insert(service.name.clone(), book);
            self.keep_output_of(&service.name);
        }
        self.feed(Event::Deploy(Box::new(service)));
    }

    /// [`Runtime::deploy`] for many services at once (a reload): the
    /// supervisor builds its graph once for all of them.
    pub fn deploy_all(&mut self, services: Vec<Service>) {
        for service in &services {
            if !self.logs.contains_key(&service.name) {
                let book = log_book(self.sys.as_mut(), service);
                self.logs.insert(service.name.clone(), book);
                self.keep_output_of(&service.name);
            }
        }
        if !services.is_empty() {
            self.feed(Event::DeployAll(services));
        }
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
                    self.sys.echo(&service, &text);
                }
                if let Some(book) = self.logs.get_mut(&service) {
                    book.push(LogLine {
                        time: self.sys.wall_clock(),
                        stream,
                        text,
                    });
                }
            }
            Input::CheckTimedOut { pid } => {
                if self.exec_checks.contains_key(&pid) {
                    self.sys.signal_group(pid, SIGKILL);
                }
            }
            Input::Prepared {
                service,
                run,
                prepared,
            } => {
                self.launch(service, run, *prepared);
                // The spawn's outcome is queued for the supervisor.
                if let Some(event) = self.queue.pop_front() {
                    self.feed(event);
                }
            }
            Input::CallerTimer(key) => self.notices.push(Notice::Timer(key)),
        }
    }

    /// Tells the supervisor `event` and carries out what it decides,
    /// including everything that follows from it at once.
    pub fn feed(&mut self, event: Event) {
        self.queue.push_back(event);
        while let Some(event) = self.queue.pop_front() {
            let now = self.sys.now();
            let removed = match &event {
                Event::Remove(name) => Some(name.clone()),
                Event::Deploy(service) => {
                    self.removing.remove(&service.name);
                    None
                }
                _ => None,
            };
            let redefines = matches!(
                event,
                Event::Remove(_) | Event::Deploy(_) | Event::DeployAll(_) | Event::Boot
            );
            let actions = self.supervisor.handle(now, event);
            if let Some(name) = removed {
                let stopping = actions.iter().any(|a| {
                    matches!(a, Action::Changed { service, state: State::Stopping } if *service == name)
                });
                if stopping {
                    self.removing.insert(name);
                } else {
                    self.end_book(&name);
                }
            }
            for action in actions {
                self.apply(action);
            }
            if redefines {
                wake(&mut self.definition_watchers);
            }
        }
    }

    /// A queue that receives a token whenever services are added, changed
    /// or removed (and at boot): read them again once woken.
    pub fn watch_definitions(&mut self) -> Receiver<()> {
        watcher(&mut self.definition_watchers)
    }

    /// Reports [`Notice::Timer`]`(key)` after `after` (re-arming replaces).
    pub fn arm_caller_timer(&mut self, key: u64, after: std::time::Duration) {
        self.sys.arm_timer(TimerKey::Caller(key), after);
    }

    /// Forgets the timer `key`.
    pub fn cancel_caller_timer(&mut self, key: u64) {
        self.sys.cancel_timer(TimerKey::Caller(key));
    }

    /// What happened since the last call, in order (see [`Notice`]).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// The runtime's clock (the supervisor's time).
    pub fn now(&self) -> std::time::Instant {
        self.sys.now()
    }

    /// Ends the follows of a removed service's output, with a last marker.
    fn end_book(&mut self, name: &str) {
        if let Some(mut book) = self.logs.remove(name) {
            book.push(LogLine {
                time: self.sys.wall_clock(),
                stream: Stream::Spore,
                text: "removed".into(),
            });
            book.end_follows();
        }
    }

    /// Collects every exited child (signals coalesce, so loop until none is
    /// left) and reports the ones that matter. The only waitpid in spore.
    pub fn reap(&mut self) {
        while let Some((pid, exit)) = self.sys.reap() {
            if let Some(check) = self.exec_checks.remove(&pid) {
                self.sys.cancel_timer(TimerKey::CheckDeadline(pid));
                self.feed(Event::CheckDone {
                    service: check.service,
                    run: check.run,
                    check: check.check,
                    passed: exit.success(),
                });
            } else if self.service_pids.remove(&pid) {
                // The service stopped: its credentials go with it.
                if let Some(dir) = self.credential_dirs.remove(&pid) {
                    self.drop_credentials(&dir);
                }
                let group_empty = self.sys.group_is_empty(pid);
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
            .filter(|&pgid| self.sys.group_is_empty(pgid))
            .collect();
        for pgid in emptied {
            self.watched_groups.remove(&pgid);
            self.feed(Event::GroupEmpty { pgid });
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Spawn { service, run } => self.spawn_service(service, run),
            Action::Signal { pgid, signal } => self.sys.signal_group(pgid, signal),
            Action::WatchGroup { pgid } => {
                if self.sys.group_is_empty(pgid) {
                    self.queue.push_back(Event::GroupEmpty { pgid });
                } else {
                    self.watched_groups.insert(pgid);
                }
            }
            Action::ArmTimer { id, after } => {
                self.sys.arm_timer(TimerKey::Supervisor(id), after);
            }
            Action::CancelTimer(id) => self.sys.cancel_timer(TimerKey::Supervisor(id)),
            Action::RunCheck {
                service,
                run,
                check,
            } => self.run_check(service, run, check),
            Action::Changed { service, state } => {
                self.report(&service, &state);
                self.notices.push(Notice::Changed {
                    service: service.clone(),
                    state: state.clone(),
                });
                if state != State::Stopping && self.removing.remove(&service) {
                    self.end_book(&service);
                }
                if let Some(watchers) = self.change_watchers.get_mut(&service) {
                    wake(watchers);
                }
                if state == State::Ready {
                    if let Some(watchers) = self.ready_watchers.get_mut(&service) {
                        wake(watchers);
                    }
                }
            }
            Action::ShutdownComplete => {
                self.shutdown_complete = true;
                self.sys.note("all services stopped");
            }
        }
    }
}

/// A new service's log book, its `[logging] file` opened through `sys`; an
/// unopenable log file is noted and the book keeps lines in memory only.
fn log_book(sys: &mut dyn Sys, service: &Service) -> LogBook {
    let file = service.logging.file.as_deref().and_then(|path| {
        sys.open_log(path)
            .map_err(|error| {
                sys.note(&format!(
                    "{}: cannot open log file {}: {error}; keeping output in memory only",
                    service.name,
                    path.display()
                ))
            })
            .ok()
    });
    LogBook::new(service.logging.buffer_lines, file)
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;

/// A new watcher among `watchers`: a queue of one token.
fn watcher(watchers: &mut Vec<Sender<()>>) -> Receiver<()> {
    // Those whose receiver is gone go now, not only at the next wake: a
    // service that stays in its state would otherwise keep every one.
    watchers.retain(|w| !w.is_closed());
    let (tx, rx) = smol::channel::bounded(1);
    watchers.push(tx);
    rx
}

/// Gives every watcher a token, forgetting those that went away (a full
/// queue already holds one: nothing is lost).
fn wake(watchers: &mut Vec<Sender<()>>) {
    watchers.retain(|w| !matches!(w.try_send(()), Err(smol::channel::TrySendError::Closed(_))));
}
