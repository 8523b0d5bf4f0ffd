//! The validated model of one service, as the supervisor consumes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::exec::Command;

/// One service, loaded from `NAME.toml` and valid on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Unique name; equals the file's stem.
    pub name: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Free text for people.
    pub description: Option<String>,
    /// Daemon, oneshot, or target (a name with dependencies and no process).
    pub kind: Kind,
    /// What to run; `None` only for targets.
    pub command: Option<Command>,
    /// Whether the supervisor starts it, keeps it stopped, or leaves it alone.
    pub status: Status,
    /// `system` services are skipped by bulk operations.
    pub class: Class,
    /// Working directory; inherited when absent.
    pub dir: Option<PathBuf>,
    /// `state_dir`: absolute directories made (0700) before each start,
    /// as systemd's StateDirectory= makes them, so a daemon's key and state
    /// land on the state disk.
    pub state_dirs: Vec<PathBuf>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// zinit: in PID-1 mode a failure of a critical service is an emergency.
    pub critical: bool,
    /// zinit: TCP ports the service binds.
    pub ports: Vec<u16>,
    /// zinit: kill other holders of `ports` before starting.
    pub kill_others: bool,
    /// zinit: process-name filters for conflict detection.
    pub process_filters: Vec<String>,
    /// Relations to other services.
    pub dependencies: Dependencies,
    /// Restart and stop behaviour.
    pub lifecycle: Lifecycle,
    /// Health checks; all must pass for the service to be healthy.
    pub health: Vec<HealthCheck>,
    /// Where output goes.
    pub logging: Logging,
    /// `[secrets]`: environment variable → secret name; each secret stored
    /// with `secret.set` is read at every start and handed over in that
    /// variable.
    pub secrets: BTreeMap<String, String>,
    /// `[credentials] load`: secrets handed over as files (0400) in a
    /// private directory named by `$CREDENTIALS_DIRECTORY`, made at each
    /// start and removed when the service stops; never in the environment.
    pub credentials: Vec<String>,
    /// `[credentials] reload_signal`: when a loaded secret changes, its file
    /// is rewritten and this signal sent to the service's group, instead of
    /// a restart.
    pub reload_signal: Option<i32>,
    /// `[[artifacts]]`: files from the node's artifact store, pinned by
    /// hash, linked at each start into `$ARTIFACTS_DIRECTORY`.
    pub artifacts: Vec<ArtifactRef>,
    /// `[resources]`: its cgroup's limits and its OOM score adjustment.
    pub resources: Resources,
    /// `[sandbox]`: who it runs as and what it may do.
    pub sandbox: Sandbox,
    /// `[[sockets]]`: listening sockets spore binds for it; its first
    /// connection starts it (socket activation).
    pub sockets: Vec<Socket>,
}

/// One `[[sockets]]` table: a socket spore listens on for a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// Where it listens.
    pub listen: Endpoint,
    /// Its name in `LISTEN_FDNAMES` (default: the service's name).
    pub name: String,
    /// Handed to the service, or proxied to it.
    pub mode: SocketMode,
    /// Stop the service once it has had no connection on any of its
    /// sockets for this long (`idle_stop`); None: never.
    pub idle_stop: Option<std::time::Duration>,
    /// 1-based line of its `listen` in the service's file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// A socket address: TCP (IPv4 or IPv6) or a Unix socket's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Endpoint {
    /// `tcp:127.0.0.1:8080`, `tcp:[::]:8080`.
    Tcp(std::net::SocketAddr),
    /// `unix:/run/app.sock`.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(address) => write!(f, "tcp:{address}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// What spore does with a socket's connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SocketMode {
    /// The listening socket is handed to the service at its start (fd 3
    /// on, with `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, as
    /// `sd_listen_fds` reads them); the service accepts.
    Pass,
    /// spore accepts, and once the service is ready joins each connection
    /// to the service's own `backend` address (hero_proc's xinet).
    Proxy {
        /// Where the service listens.
        backend: Endpoint,
    },
}

/// `[sandbox]`: the user and groups a service runs as, and the privileges
/// it keeps (systemd's `User=`, `Group=`, `SupplementaryGroups=`,
/// `NoNewPrivileges=`, `AmbientCapabilities=`/`CapabilityBoundingSet=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sandbox {
    /// The user: a name in the node's `/etc/passwd`, or a number. None:
    /// root, as spore.
    pub user: Option<Principal>,
    /// The group: a name in `/etc/group`, or a number. None: the user's
    /// primary group.
    pub group: Option<Principal>,
    /// Further groups, besides those `/etc/group` lists the user in.
    pub supplementary_groups: Vec<Principal>,
    /// `PR_SET_NO_NEW_PRIVS`: setuid binaries and file capabilities grant
    /// nothing. None: on for a service with a `user` other than root.
    pub no_new_privileges: Option<bool>,
    /// The capabilities it keeps (numbers, `CAP_NET_BIND_SERVICE` is 10):
    /// ambient for a non-root user, and the bounding set is cut to them.
    /// None: root keeps all, another user has none.
    pub capabilities: Option<Vec<u8>>,
    /// `PrivateTmp=`: a /tmp of its own (an empty tmpfs per run).
    pub private_tmp: bool,
    /// `ProtectSystem=`: what of the node's filesystem it sees read-only.
    pub protect_system: ProtectSystem,
    /// `ReadOnlyPaths=`: absolute paths it sees read-only.
    pub read_only_paths: Vec<std::path::PathBuf>,
    /// `InaccessiblePaths=`: absolute directories it cannot enter (an
    /// empty, mode 000 tmpfs over each).
    pub inaccessible_paths: Vec<std::path::PathBuf>,
}

/// `protect_system`: systemd's `ProtectSystem=`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum ProtectSystem {
    /// Nothing (the default).
    #[default]
    No,
    /// `true`: /usr, /boot and /efi read-only.
    Yes,
    /// `"full"`: /etc too.
    Full,
    /// `"strict"`: the whole filesystem read-only except /dev, /proc,
    /// /sys, its `state_dir`s and its private /tmp.
    Strict,
}

impl Sandbox {
    /// True when it asks for a mount namespace of its own.
    pub fn needs_mounts(&self) -> bool {
        self.private_tmp
            || self.protect_system != ProtectSystem::No
            || !self.read_only_paths.is_empty()
            || !self.inaccessible_paths.is_empty()
    }
}

impl Sandbox {
    /// True when the file asks for nothing here.
    pub fn is_empty(&self) -> bool {
        self == &Sandbox::default()
    }
}

/// A user or a group: a name to look up, or its number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Principal {
    /// A name in `/etc/passwd` or `/etc/group`.
    Name(String),
    /// A uid or gid.
    Id(u32),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Name(name) => f.write_str(name),
            Principal::Id(id) => write!(f, "{id}"),
        }
    }
}

/// `[resources]`: what a service may take of the node (cgroup v2, named as
/// systemd's settings: `memory_max` is `MemoryMax=`). None: no limit set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// `memory.max`: above it the OOM killer acts in the service's cgroup.
    pub memory_max: Option<Memory>,
    /// `memory.high`: above it the service is throttled and reclaimed.
    pub memory_high: Option<Memory>,
    /// `memory.min`: memory kept for it under pressure (protect mycelium
    /// and call-home with it).
    pub memory_min: Option<Memory>,
    /// `cpu.weight`, 1 to 10,000 (100 by default).
    pub cpu_weight: Option<u32>,
    /// `cpu.max`: its time on the CPUs.
    pub cpu_max: Option<CpuMax>,
    /// `pids.max`: processes and threads at once.
    pub pids_max: Option<Limit>,
    /// `io.weight`, 1 to 10,000 (100 by default).
    pub io_weight: Option<u32>,
    /// `/proc/PID/oom_score_adj`, -1000 to 1000.
    pub oom_score_adj: Option<i32>,
    /// Resource limits (`setrlimit`, soft and hard alike): `limit_nofile`,
    /// `limit_core`, … as systemd's `LimitNOFILE=`, in the order read.
    pub rlimits: Vec<Rlimit>,
    /// `delegate = true`: the service's cgroup is its own to manage, as
    /// systemd's `Delegate=yes` (marked `trusted.delegate`, and owned by
    /// its user): a supervisor it runs (`spore run`) boxes its own
    /// services in it.
    pub delegate: bool,
}

/// One `limit_*` key: the resource and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    /// Which (the key's name without `limit_`).
    pub resource: RlimitResource,
    /// The limit; None is `"infinity"`.
    pub value: Option<u64>,
}

/// The resources a `limit_*` key can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RlimitResource {
    /// `limit_nofile`: open descriptors.
    Nofile,
    /// `limit_core`: core file size, bytes.
    Core,
    /// `limit_nproc`: processes of its user.
    Nproc,
    /// `limit_memlock`: locked memory, bytes.
    Memlock,
    /// `limit_stack`: stack size, bytes.
    Stack,
    /// `limit_fsize`: file size, bytes.
    Fsize,
}

/// A memory amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Memory {
    /// Bytes.
    Bytes(u64),
    /// A share of the node's memory, in hundredths of a percent.
    Percent(u32),
    /// No limit.
    Unlimited,
}

/// A time share of the CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CpuMax {
    /// Of one CPU, in hundredths of a percent (`"200%"`, two CPUs, is
    /// 20,000).
    Percent(u32),
    /// No limit.
    Unlimited,
}

/// A count limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Limit {
    /// At most this many.
    Count(u64),
    /// No limit.
    Unlimited,
}

/// One `[[artifacts]]` entry: a file the service needs, pinned by its
/// SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactRef {
    /// Its name in `$ARTIFACTS_DIRECTORY`.
    pub name: String,
    /// The SHA-256 of its bytes: 64 lowercase hex digits.
    pub sha256: String,
    /// Where the node may fetch it from, in order (`http://…`,
    /// `https://…`); none: it must be put on the node.
    pub urls: Vec<String>,
    /// Made executable (0555) rather than read-only (0444).
    pub executable: bool,
}

/// What sort of unit a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Runs until stopped; ready when running (or when its health check passes).
    Daemon,
    /// Runs to completion; ready when it exits 0.
    Oneshot,
    /// No process: ready when what it requires is ready (zinit's `[target]`).
    Target,
}

/// The desired status (`[service].status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started at boot and kept running.
    #[default]
    Start,
    /// Kept stopped until asked.
    Stop,
    /// Not managed automatically; started and stopped only on request.
    Ignore,
}

/// `[service].class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// An ordinary service.
    #[default]
    User,
    /// Essential to the node; bulk operations leave it alone.
    System,
}

/// A reference to another service, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyRef {
    /// The other service's name.
    pub name: String,
    /// 1-based line of the reference in this service's file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// `[dependencies]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Dependencies {
    /// Ordered before this one, and this one fails if they fail or vanish.
    pub requires: Vec<DependencyRef>,
    /// Ordered before this one; nothing more.
    pub after: Vec<DependencyRef>,
    /// Ordered before this one when present; failure or absence is tolerated.
    pub wants: Vec<DependencyRef>,
    /// Never run at the same time as this one.
    pub conflicts: Vec<DependencyRef>,
}

impl Dependencies {
    /// Every service that must come before this one: requires, after, wants.
    pub fn ordering(&self) -> impl Iterator<Item = &DependencyRef> {
        self.requires
            .iter()
            .chain(self.after.iter())
            .chain(self.wants.iter())
    }
}

/// When a stopped process is started again (`[lifecycle].restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Whatever the exit status.
    Always,
    /// Only after a non-zero exit or a signal.
    #[default]
    OnFailure,
    /// Never.
    Never,
}

/// `[lifecycle]`: restarts, backoff and stopping. Defaults are zinit 0.3's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// When to restart.
    pub restart: RestartPolicy,
    /// First restart delay; doubles after each quick failure.
    pub restart_delay: Duration,
    /// The cap for the doubling delay.
    pub restart_delay_max: Duration,
    /// Give up after this many restarts in a row; 0 means never give up.
    pub max_restarts: u32,
    /// Running this long resets the backoff.
    pub stability_period: Duration,
    /// How long a start may take before it counts as failed.
    pub start_timeout: Duration,
    /// Grace between the stop signal and SIGKILL.
    pub stop_timeout: Duration,
    /// The stop signal's number (e.g. 15 for SIGTERM).
    pub stop_signal: i32,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            restart: RestartPolicy::OnFailure,
            restart_delay: Duration::from_millis(1_000),
            restart_delay_max: Duration::from_millis(300_000),
            max_restarts: 10,
            stability_period: Duration::from_millis(30_000),
            start_timeout: Duration::from_millis(30_000),
            stop_timeout: Duration::from_millis(10_000),
            stop_signal: 15,
        }
    }
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Probe {
    /// Healthy when a TCP connection to `target` (`host:port`) succeeds.
    Tcp {
        /// `host:port`.
        target: String,
    },
    /// Healthy when `GET target` answers `expect_status`.
    Http {
        /// An `http://` URL.
        target: String,
        /// The expected status code.
        expect_status: u16,
    },
    /// Healthy when the command exits 0.
    Exec {
        /// The command to run.
        command: Command,
    },
}

/// One health check with its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// Name for logs (`health`, or the hero_proc action's name).
    pub name: String,
    /// What to probe.
    pub probe: Probe,
    /// Time between checks.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Consecutive failures before the service counts as unhealthy.
    pub retries: u32,
    /// Grace after start before failures count.
    pub start_period: Duration,
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Logging {
    /// Lines kept in memory per service.
    pub buffer_lines: usize,
    /// Also append lines to this file.
    pub file: Option<PathBuf>,
    /// zinit: forward lines to this destination.
    pub forward: Option<String>,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            buffer_lines: 1_000,
            file: None,
            forward: None,
        }
    }
}

/// Signal names accepted by `stop_signal`, with their Linux numbers.
pub const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGUSR2", 12),
    ("SIGTERM", 15),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGWINCH", 28),
    ("SIGPWR", 30),
];
