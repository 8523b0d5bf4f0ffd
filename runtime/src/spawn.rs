//! Creating a service's process: its own session and process group, a clean
//! signal state, only stdin/stdout/stderr open, and captured output.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStderr, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use crate::spawner::{Failure, Spawner};

/// From this table size on, services start through the [`Spawner`]
/// (below it a fork of spore costs less than asking another process).
const SPAWNER_FROM: i32 = 256;

/// After the spawner failed, spore starts services itself this long before
/// it tries a new spawner.
const SPAWNER_RETRY: Duration = Duration::from_secs(60);

enum SpawnerState {
    Idle,
    Running(Spawner),
    Failed(Instant),
}

/// How services are started, decided once when spore starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpawnSettings {
    /// Start every service through the spawner, whatever the table size
    /// (`SPORE_SPAWNER=always` in spore's environment).
    pub always_spawner: bool,
    /// The RLIMIT_CORE soft limit spore was started with, given back to
    /// every service (spore lowers its own to 0: a core of spore would hold
    /// secrets); None leaves services spore's.
    pub service_core_limit: Option<u64>,
    /// The RLIMIT_NOFILE soft limit spore was started with, given back to
    /// every service (spore raises its own: it holds two pipes per
    /// service); None leaves services spore's.
    pub service_nofile_limit: Option<u64>,
}

/// The real system's way of starting processes, with what it learns on the
/// way: how large spore's descriptor table has grown (the highest
/// descriptor a service's pipe got lately: the kernel hands out the lowest
/// free one), and the spawner once that is large. Owned by the real
/// [`crate::sys::RealSys`]; no state of it is global.
pub struct Spawning {
    settings: SpawnSettings,
    table_hint: i32,
    spawner: SpawnerState,
}

pub use crate::child::DEFAULT_PATH;

/// What to start.
pub struct SpawnSpec<'a> {
    /// Program and arguments; the program is looked up in PATH.
    pub argv: &'a [String],
    /// Environment on top of `base_env`.
    pub env: &'a [(String, String)],
    /// spore's environment, with PATH filled in.
    pub base_env: &'a [(OsString, OsString)],
    /// Working directory.
    pub dir: Option<&'a Path>,
    /// Directories made before the process starts, each ending 0700 and
    /// owned by spore's user (who services run as); parents as needed.
    pub state_dirs: &'a [std::path::PathBuf],
    /// Capture stdout/stderr (services) or send them to /dev/null (checks).
    pub capture: bool,
    /// The `cgroup.procs` of the service's cgroup (see
    /// [`crate::cgroup::Tree::prepare`]): the process puts itself there
    /// before its exec.
    pub cgroup: Option<&'a Path>,
    /// Its `oom_score_adj`, set before its exec.
    pub oom_score_adj: Option<i32>,
    /// Its `limit_*` resource limits.
    pub rlimits: &'a [svc::service::Rlimit],
    /// The user, groups and privileges it runs with; None: spore's.
    pub identity: Option<&'a crate::accounts::Identity>,
    /// Its mount namespace (`[sandbox]`), planned; None: spore's.
    pub mounts: Option<&'a crate::mounts::MountPlan>,
    /// Listening sockets handed to it, fd 3 on ([`crate::passing`]).
    pub passed: &'a [(i32, String)],
}

/// A started process.
pub struct Spawned {
    /// Its pid, which is also its session and process group id.
    pub pid: i32,
    /// Its stdout pipe when captured.
    pub stdout: Option<ChildStdout>,
    /// Its stderr pipe when captured.
    pub stderr: Option<ChildStderr>,
}

/// Why a process could not be started, shell-style.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot run `{program}`: {message}")]
pub struct SpawnError {
    /// 127: not found; 126: found but not runnable; 1: anything else.
    pub code: i32,
    /// The program.
    pub program: String,
    /// What the system said.
    pub message: String,
}

/// spore's environment with PATH defaulted, for [`SpawnSpec::base_env`].
pub fn base_environment() -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

impl Spawning {
    /// Starting processes with `settings`; no spawner yet.
    pub fn new(settings: SpawnSettings) -> Self {
        Self {
            settings,
            table_hint: 0,
            spawner: SpawnerState::Idle,
        }
    }

    /// Starts a process. It never waits for it: the reaper owns every exit.
    pub fn spawn(&mut self, spec: &SpawnSpec<'_>) -> Result<Spawned, SpawnError> {
        let (program, args) = spec.argv.split_first().ok_or_else(|| SpawnError {
            code: 127,
            program: String::new(),
            message: "empty command".into(),
        })?;
        for dir in spec.state_dirs {
            make_state_dir(dir, spec.identity.map(|i| (i.uid, i.gid))).map_err(|error| {
                SpawnError {
                    code: 1,
                    program: program.clone(),
                    message: format!("state directory {}: {error}", dir.display()),
                }
            })?;
        }
        // A service handed sockets is forked here: the spawner takes no
        // descriptors.
        if spec.passed.is_empty()
            && (self.settings.always_spawner || self.table_hint >= SPAWNER_FROM)
        {
            if let Some(result) = self.spawn_through_spawner(spec, program) {
                return result;
            }
        }
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(spec.base_env.iter().map(|(k, v)| (k, v)))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if spec.capture {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        if let Some(dir) = spec.dir {
            command.current_dir(dir);
        }
        let core_limit = self.settings.service_core_limit;
        // Opened here (a missing cgroup fails the start before the fork);
        // close-on-exec, and closed here once the child exists.
        let cgroup = spec
            .cgroup
            .map(|path| std::fs::OpenOptions::new().write(true).open(path))
            .transpose()
            .map_err(|error| SpawnError {
                code: 1,
                program: program.clone(),
                message: format!(
                    "cgroup {}: {error}",
                    spec.cgroup
                        .map(Path::display)
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                ),
            })?;
        let cgroup_procs = cgroup.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
        let setup = crate::child::Setup {
            core_limit,
            nofile_limit: self.settings.service_nofile_limit,
            cgroup_procs,
            oom_score_adj: spec.oom_score_adj,
            rlimits: crate::child::rlimits_of(spec.rlimits),
            credentials: spec.identity.map(crate::child::Credentials::of),
        };
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (open, write, close, setsid,
        // sigprocmask, sigaction, setrlimit, close_range); it holds copied
        // integers, allocates nothing and touches no lock.
        let mounts = match spec.mounts {
            Some(plan) => Some(crate::mounts::Mounts::of(plan).ok_or_else(|| SpawnError {
                code: 1,
                program: program.clone(),
                message: "its sandbox: a path holds a NUL byte".into(),
            })?),
            None => None,
        };
        let mut passing = if spec.passed.is_empty() {
            None
        } else {
            let env = spec
                .base_env
                .iter()
                .cloned()
                .chain(spec.env.iter().map(|(k, v)| (k.into(), v.into())))
                .collect();
            Some(
                crate::passing::Passing::prepare(spec.argv, env, spec.passed).map_err(|error| {
                    SpawnError {
                        code: error.code(),
                        program: program.clone(),
                        message: error.to_string(),
                    }
                })?,
            )
        };
        unsafe {
            command.pre_exec(move || {
                crate::child::prepare(setup, mounts.as_ref())?;
                // With sockets to hand over, the exec is done here (its
                // LISTEN_PID is this process's pid); it returns on failure.
                match passing.as_mut() {
                    Some(passing) => Err(passing.exec()),
                    None => Ok(()),
                }
            });
        }
        let mut child = command.spawn().map_err(|error| SpawnError {
            code: exit_code_of(&error),
            program: program.clone(),
            message: crate::mounts::describe(&error).unwrap_or_else(|| error.to_string()),
        })?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let spawned = Spawned {
            pid,
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        };
        self.note_table_size(spawned.stderr.as_ref().map(std::os::fd::AsRawFd::as_raw_fd));
        Ok(spawned)
        // `child` is dropped without waiting: dropping a Child neither kills nor
        // reaps it, and the reaper's waitpid(-1) collects its status.
    }

    fn note_table_size(&mut self, fd: Option<i32>) {
        if let Some(fd) = fd {
            self.table_hint = fd;
        }
    }

    /// Starts `spec` through the spawner; None when there is no working
    /// spawner (the caller forks instead).
    fn spawn_through_spawner(
        &mut self,
        spec: &SpawnSpec<'_>,
        program: &str,
    ) -> Option<Result<Spawned, SpawnError>> {
        let core_limit = self.settings.service_core_limit;
        let state = &mut self.spawner;
        if let SpawnerState::Failed(when) = &*state {
            if when.elapsed() < SPAWNER_RETRY {
                return None;
            }
            *state = SpawnerState::Idle;
        }
        if matches!(*state, SpawnerState::Idle) {
            match Spawner::start(Path::new("/proc/self/exe")) {
                Ok(spawner) => {
                    crate::journal::note(
                        "services start through the spawner from now on (spore holds many descriptors)",
                    );
                    *state = SpawnerState::Running(spawner);
                }
                Err(error) => {
                    crate::journal::note(format_args!(
                        "cannot start the spawner: {error}; starting services directly"
                    ));
                    *state = SpawnerState::Failed(Instant::now());
                    return None;
                }
            }
        }
        let SpawnerState::Running(spawner) = &mut *state else {
            return None;
        };
        let request = crate::spawner::Request {
            core_limit,
            nofile_limit: self.settings.service_nofile_limit,
            cgroup: spec
                .cgroup
                .map(|c| std::os::unix::ffi::OsStrExt::as_bytes(c.as_os_str()).to_vec()),
            oom_score_adj: spec.oom_score_adj,
            rlimits: crate::child::rlimits_of(spec.rlimits)
                .iter()
                .flatten()
                .copied()
                .collect(),
            credentials: spec.identity.cloned(),
            mounts: spec.mounts.cloned(),
            ..crate::spawner::request_for(
                spec.argv,
                spec.base_env,
                spec.env,
                spec.dir,
                spec.capture,
            )
        };
        match spawner.start_one(&request) {
            Ok(started) => {
                let (stdout, stderr) = match started.pipes {
                    Some((out, err)) => {
                        self.note_table_size(Some(std::os::fd::AsRawFd::as_raw_fd(&err)));
                        (Some(ChildStdout::from(out)), Some(ChildStderr::from(err)))
                    }
                    None => (None, None),
                };
                Some(Ok(Spawned {
                    pid: started.pid,
                    stdout,
                    stderr,
                }))
            }
            Err(Failure::Start(error)) => Some(Err(SpawnError {
                code: exit_code_of(&error),
                program: program.to_owned(),
                message: error.to_string(),
            })),
            Err(Failure::TooLarge) => None,
            Err(Failure::Spawner(reason)) => {
                crate::journal::note(format_args!(
                    "the spawner failed ({reason}); starting services directly for {} s",
                    SPAWNER_RETRY.as_secs()
                ));
                *state = SpawnerState::Failed(Instant::now());
                None
            }
        }
    }
}

/// The shell-style code of a failed start.
fn exit_code_of(error: &io::Error) -> i32 {
    match error.kind() {
        io::ErrorKind::NotFound => 127,
        io::ErrorKind::PermissionDenied => 126,
        _ if error.raw_os_error() == Some(libc::ENOEXEC) => 126,
        _ => 1,
    }
}

/// Makes `dir` (and its parents) and sets it 0700, as systemd's
/// StateDirectory= does at each start. A symlink in its place is refused:
/// a service's state must not be redirected elsewhere.
fn make_state_dir(dir: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a directory (or is a symlink)",
        ));
    }
    if meta.permissions().mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // The service's own user owns it (the directory only: what is in it
    // is the service's business).
    if let Some((uid, gid)) = owner {
        if (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}
