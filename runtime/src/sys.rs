//! The one interface between the runtime and the system. The runtime spawns,
//! signals, reaps, arms timers, probes and logs only through [`Sys`]; the
//! real system is [`RealSys`], and the runtime's own tests drive it with a
//! fake that has a clock the test moves (as dinit's `bp_sys` does).
//!
//! Everything asynchronous comes back to the runtime as an [`Input`] on the
//! event loop's queues: a timer that fired, a probe's verdict, output lines.

use std::time::{Duration, Instant, SystemTime};

use svc::service::Probe;
use svc::supervisor::{ExitStatus, TimerId};

use crate::input::Input;
use crate::logbook::Stream;
use crate::spawn::SpawnError;

mod real;

pub use real::{take_lines, RealSys};

/// A timer the runtime arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKey {
    /// One of the supervisor's: reported as [`Event::TimerFired`].
    Supervisor(TimerId),
    /// The deadline of an exec health check with this pid: reported as
    /// [`Input::CheckTimedOut`].
    CheckDeadline(i32),
    /// A timer of the layer above (the node API's waiting calls), armed
    /// with [`crate::Runtime::arm_caller_timer`]: reported as
    /// [`Input::CallerTimer`].
    Caller(u64),
}

/// Identifies a health check run, echoed back in [`Event::CheckDone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    /// The service.
    pub service: String,
    /// Its spawn number.
    pub run: u64,
    /// The check's index.
    pub check: usize,
}

/// A process to start: what a service file says, nothing of spore's own.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// Program and arguments; the program is looked up in PATH.
    pub argv: &'a [String],
    /// Environment on top of spore's own.
    pub env: &'a [(String, String)],
    /// Working directory.
    pub dir: Option<&'a std::path::Path>,
    /// Directories made (0700) before the process starts (`state_dir`).
    pub state_dirs: &'a [std::path::PathBuf],
    /// Its `[resources]`: its cgroup's limits and OOM score (services;
    /// None for health checks).
    pub resources: Option<&'a svc::service::Resources>,
    /// The user, groups and privileges it runs with (`[sandbox]`,
    /// resolved); None: spore's.
    pub identity: Option<&'a crate::accounts::Identity>,
    /// Its mount namespace (`[sandbox]`, planned); None: spore's.
    pub mounts: Option<&'a crate::mounts::MountPlan>,
    /// Listening sockets handed to it (`[[sockets]]`, descriptor and
    /// name): fd 3 on, with `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`.
    pub passed: &'a [(i32, String)],
}

/// What the runtime asks of the system. Implementations never block.
pub trait Sys {
    /// The monotonic clock the supervisor is told.
    fn now(&self) -> Instant;
    /// The wall clock, stamped on the lines of services' output and of
    /// spore's reports in them.
    fn wall_clock(&self) -> SystemTime;
    /// Starts a process in its own session. With `output` the service's
    /// stdout and stderr are read line by line into the event loop under
    /// that name; without it they go to /dev/null (health checks).
    fn spawn(&mut self, launch: Launch<'_>, output: Option<&str>) -> Result<i32, SpawnError>;
    /// Sends `signal` to process group `pgid` (> 1; smaller is refused).
    fn signal_group(&mut self, pgid: i32, signal: i32);
    /// One exited child and how it ended; None when none is waiting.
    fn reap(&mut self) -> Option<(i32, ExitStatus)>;
    /// True when no process is left in group `pgid` (in the service's
    /// cgroup, when it has one).
    fn group_is_empty(&self, pgid: i32) -> bool;
    /// From now on, each service runs in a cgroup of its own under `tree`:
    /// a stop reaches everything in it and a service counts as stopped
    /// when it is empty. A system without cgroups ignores it.
    fn use_cgroups(&mut self, _tree: crate::cgroup::Tree) {}
    /// What `service` uses, from its cgroup; None without one.
    fn usage(&self, _service: &str) -> Option<crate::usage::Usage> {
        None
    }
    /// Reports `key` after `after` (see [`TimerKey`]); re-arming replaces.
    fn arm_timer(&mut self, key: TimerKey, after: Duration);
    /// Forgets `key`: it will not be reported.
    fn cancel_timer(&mut self, key: TimerKey);
    /// Runs a native (tcp/http) probe; reports [`Event::CheckDone`].
    fn probe(&mut self, run: CheckRun, probe: &Probe, timeout: Duration);
    /// Writes one of spore's own lines to its log.
    fn note(&mut self, line: &str);
    /// Echoes a line of a service's output to the console.
    fn echo(&mut self, service: &str, line: &str);
    /// Runs `job` off the event loop (it may block on a disk: reading a
    /// service's secrets) and feeds the input it returns to the loop.
    fn off_loop(&mut self, job: OffLoop);
    /// Removes the credential directory of a service that stopped (on the
    /// tmpfs beside the control socket).
    fn remove_credentials(&mut self, dir: &std::path::Path) -> std::io::Result<()>;
    /// Where a service's output is kept across restarts: `path`, rotated
    /// at a size, written by one thread for every service
    /// ([`crate::rotating::keeper`]).
    fn keep_log(&mut self, path: &std::path::Path) -> crate::rotating::Keeper;
    /// What a live re-exec hands on of the system's side: the output
    /// pipes being read (with any unfinished line) and which cgroup each
    /// running service is in. None here has a system to hand on.
    fn hand_off(&self) -> SysHandoff {
        SysHandoff::default()
    }
    /// Takes up what an earlier spore handed on: its pipes are read again
    /// from where it stopped, its services' cgroups are known again.
    fn adopt(&mut self, _handoff: SysHandoff) {}
    /// Opens a service's `[logging] file` for appending (made when missing).
    fn open_log(
        &mut self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn std::io::Write + Send>>;
}

/// The system's side of a live re-exec's handoff (see [`Sys::hand_off`]).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SysHandoff {
    /// Output pipes being read.
    pub pipes: Vec<HandedPipe>,
    /// Which cgroup each running service's main process is in.
    pub placed: Vec<HandedCgroup>,
}

/// One output pipe being read.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HandedPipe {
    /// Its descriptor, kept open across the exec.
    pub fd: i32,
    /// The service whose output it carries.
    pub service: String,
    /// Which of its streams.
    pub stream: Stream,
    /// Bytes read of a line not finished yet.
    pub pending: Vec<u8>,
}

/// A service's main process in its cgroup.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HandedCgroup {
    /// The main process.
    pub pid: i32,
    /// The service (its cgroup's name).
    pub service: String,
    /// The cgroup's OOM kills when it started.
    pub oom_kills: Option<u64>,
}

/// Blocking work for [`Sys::off_loop`]: what it returns goes to the loop.
pub type OffLoop = Box<dyn FnOnce() -> Input + Send + 'static>;
