//! Live re-exec: spore replaces its own binary without stopping a service.
//!
//! `node.reexec` names the new binary (an artifact held, or a file on the
//! node). Off the event loop, spore copies it to `RUN/reexec/next` (RUN is
//! the control socket's directory: `/run/spore` on a node), copies itself
//! to `RUN/reexec/outgoing` (`previous` once the new binary took over: a
//! revert's target), and runs the new one once as
//! `next __handoff-check`: it must answer, within [`CHECK_WITHIN`], that it
//! is a spore that reads this handoff format. Only then does the call
//! answer, and the event loop, once no spawn is in flight, writes the
//! state down ([`Carried`]: the runtime's [`runtime::handoff::Handoff`]
//! and what the init itself needs) in a memfd, keeps the services' output
//! pipes open across the exec, and execs the new binary in place: the
//! same process, the same pid (1 on a node), every service still its
//! child. [`resume`] in the new binary takes the state up.
//!
//! What is kept: every service's process, its pipes (no line lost: bytes
//! of a line not finished travel too), restart counts, readiness, last
//! exits, backoff and stop timers (as time left), credentials, cgroups,
//! recent output and spore's recent journal, the uptime. What is dropped:
//! RPC and control sessions (clients reconnect; the listeners are bound
//! again at once), waiting calls, and health checks running at that moment
//! (run again at once).

mod resume;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nodeapi::api::{code, ApiError, Reply};
use nodeapi::NodeApi;
use runtime::journal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// What a re-exec needs of the node (the init's `Node`).
pub trait Host {
    /// Runs `f` on the node API (None when it is busy).
    fn with_api<T>(&self, f: impl FnOnce(&mut NodeApi) -> T) -> Option<T>;
    /// The re-exec state.
    fn reexec(&self) -> &Reexec;
    /// The executor every task runs on.
    fn executor(&self) -> &'static smol::LocalExecutor<'static>;
    /// True while this boot is an update on trial.
    fn on_trial(&self) -> bool;
    /// The running binary's SHA-256 (empty before it was hashed).
    fn build_id(&self) -> String;
    /// The `[update] keys` a new binary must be signed by (none: any).
    fn update_keys(&self) -> Vec<String>;
    /// Where the node runs and what it has done since its start.
    fn whereabouts(&self) -> Whereabouts;
}

/// The node's directories and history, handed on (see [`Carried`]).
pub struct Whereabouts {
    /// True as the machine's init.
    pub pid1: bool,
    /// The directories spore runs with.
    pub paths: crate::config::Paths,
    /// Where this start keeps output.
    pub kept_logs: Option<PathBuf>,
    /// How long spore has run.
    pub uptime: Duration,
    /// The boot's own steps.
    pub startup: Value,
    /// The activated services' listening sockets.
    pub sockets: Vec<crate::activation::CarriedSocket>,
}

pub use resume::{resume, Incoming};

/// The hidden subcommand a new binary is checked with before the exec.
pub const CHECK_SUBCOMMAND: &str = "__handoff-check";

/// The handoff's format: a binary reads only its own.
pub const FORMAT: u32 = 1;

/// The variable naming the memfd the state is in.
const HANDOFF_VARIABLE: &str = "SPORE_HANDOFF";

/// The variable naming the binary to go back to when taking the state up
/// fails.
const PREVIOUS_VARIABLE: &str = "SPORE_HANDOFF_PREVIOUS";

/// Set when the state comes back to the previous binary: it must not go
/// back again.
const FALLBACK_VARIABLE: &str = "SPORE_HANDOFF_FALLBACK";

/// The copy of the running binary a re-exec keeps to go back to, in the
/// re-exec directory; renamed to `previous` once the new binary took over.
const OUTGOING: &str = "outgoing";

/// How long the new binary has to answer the check.
const CHECK_WITHIN: Duration = Duration::from_secs(5);

/// How long the event loop tries to hand off while spawns are in flight.
const HANDOFF_TRIES: u32 = 100;

/// Between tries.
const HANDOFF_RETRY: Duration = Duration::from_millis(50);

/// The largest binary taken: spore is a few MiB.
const MAX_BINARY: u64 = 256 << 20;

/// What the old binary hands the new one (see the module docs).
#[derive(Serialize, Deserialize)]
pub struct Carried {
    /// [`FORMAT`].
    pub format: u32,
    /// The runtime's state.
    pub runtime: runtime::handoff::Handoff,
    /// True as the machine's init.
    pub pid1: bool,
    /// The directories spore was started with.
    pub config_dir: PathBuf,
    /// See [`crate::config::Paths`].
    pub state_dir: PathBuf,
    /// See [`crate::config::Paths`].
    pub socket: PathBuf,
    /// The services' cgroup tree, when spore has one.
    pub cgroup: Option<PathBuf>,
    /// Where this start of spore keeps output (`STATE_DIR/logs/0`), not
    /// shifted again by a re-exec.
    pub kept_logs: Option<PathBuf>,
    /// How long spore had been running.
    pub uptime_ms: u64,
    /// The boot's own steps, for node.info.
    pub startup: Value,
    /// Re-execs before this one since the boot.
    pub generation: u32,
    /// The version and build left.
    pub from_version: String,
    /// See `from_version`.
    pub from_build: String,
    /// spore's recent journal lines.
    pub journal: Vec<(u64, String)>,
    /// When `node.reexec` was asked (Unix ms): the new binary says how long
    /// spore was away.
    pub asked_unix_ms: u64,
    /// The activated services' listening sockets, open across the exec
    /// (a binary from before socket activation reads none).
    #[serde(default)]
    pub sockets: Vec<crate::activation::CarriedSocket>,
}

/// Where a re-exec keeps its binaries: `reexec/` beside the control
/// socket (`/run/spore/reexec` on a node).
fn reexec_dir(node: &impl Host) -> PathBuf {
    node.whereabouts()
        .paths
        .socket
        .parent()
        .unwrap_or(Path::new("/run/spore"))
        .join("reexec")
}

/// A handoff read by the new binary, to be taken up by the event loop.
pub struct Resumed {
    /// The state.
    pub carried: Carried,
    /// Where it came in: kept open until the services are taken up, so
    /// the previous binary can be given it back until then.
    pub memfd: OwnedFd,
    /// This binary is the previous one, given the state back.
    pub fallback: bool,
}

/// A new binary checked and ready: the event loop execs it.
#[derive(Debug, Clone)]
pub struct Staged {
    next: PathBuf,
    previous: PathBuf,
    asked: u64,
    tries: u32,
}

/// The node's re-exec state: one at a time, and the way a checked binary
/// reaches the event loop.
pub struct Reexec {
    busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    staged_tx: smol::channel::Sender<Staged>,
    /// The event loop reads checked binaries here.
    pub staged: smol::channel::Receiver<Staged>,
    /// This process's place in the chain since the boot (0: booted so).
    pub generation: std::cell::Cell<u32>,
    /// What node.info says of the last re-exec, when there was one.
    pub last: std::cell::RefCell<Value>,
}

impl Default for Reexec {
    fn default() -> Self {
        let (staged_tx, staged) = smol::channel::bounded(1);
        Self {
            busy: Default::default(),
            staged_tx,
            staged,
            generation: std::cell::Cell::new(0),
            last: std::cell::RefCell::new(Value::Null),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `node.reexec`: checks the new binary off the loop and answers once it
/// passed; the exec follows on the event loop.
pub fn stage(
    node: &impl Host,
    api: &mut NodeApi,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    use std::sync::atomic::Ordering;
    if node.on_trial() {
        return Err(ApiError::new(
            code::BUSY,
            "this boot is an update on trial: it is confirmed or reverted first",
        ));
    }
    let dir = reexec_dir(node);
    let previous = params.get("previous") == Some(&Value::Bool(true));
    let source = match (
        params.get("sha256").and_then(Value::as_str),
        params.get("path").and_then(Value::as_str),
    ) {
        // The binary this node ran before its last re-exec (kept there):
        // trusted as it was when it ran, so no signature is asked for.
        (None, None) if previous => {
            let path = dir.join("previous");
            if !path.is_file() {
                return Err(ApiError::new(
                    code::INVALID_PARAMS,
                    "previous: this node has not re-exec'd since it started, so it keeps no binary before this one",
                ));
            }
            path
        }
        _ if previous => {
            return Err(ApiError::new(
                code::INVALID_PARAMS,
                "name the new binary one way: sha256, path or previous",
            ))
        }
        (Some(sha256), None) => {
            let digest = artifacts::Digest::parse(sha256)
                .map_err(|e| ApiError::new(code::INVALID_PARAMS, e.to_string()))?;
            let Some(store) = api.runtime_mut().files().and_then(|f| f.artifacts.clone()) else {
                return Err(ApiError::new(
                    code::NO_STORE,
                    "this node keeps no artifacts: send the binary as one, or name a path on the node",
                ));
            };
            store.join("sha256").join(digest.hex())
        }
        (None, Some(path)) if path.starts_with('/') => PathBuf::from(path),
        (None, Some(_)) => {
            return Err(ApiError::new(
                code::INVALID_PARAMS,
                "path: an absolute path on the node",
            ))
        }
        _ => {
            return Err(ApiError::new(
                code::INVALID_PARAMS,
                "name the new binary: sha256 (an artifact held), path (a file on the node) or previous (the one before the last re-exec), one of them",
            ))
        }
    };
    if node.reexec().busy.swap(true, Ordering::SeqCst) {
        return Err(ApiError::new(code::BUSY, "a re-exec is under way"));
    }
    let signature = params
        .get("signature")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let keys = if previous {
        Vec::new()
    } else {
        node.update_keys()
    };
    let busy = node.reexec().busy.clone();
    let staged_tx = node.reexec().staged_tx.clone();
    let (answer, pending) = smol::channel::bounded(1);
    let asked = unix_ms();
    journal::note(format_args!(
        "re-exec: checking {}",
        runtime::escape::field(&source.display().to_string())
    ));
    let work = move || {
        let outcome = prepare(&source, &dir, signature.as_deref(), &keys);
        match outcome {
            Ok((staged, answered)) => {
                let reply = json!({
                    "accepted": true,
                    "version": answered.version,
                    "build_id": answered.build_id,
                    "note": "spore execs the new binary now; sessions drop: reconnect",
                });
                let _ = answer.send_blocking(Ok(reply));
                let _ = staged_tx.send_blocking(Staged {
                    asked,
                    tries: 0,
                    ..staged
                });
            }
            Err(error) => {
                busy.store(false, std::sync::atomic::Ordering::SeqCst);
                journal::note(format_args!("re-exec refused: {}", error.message));
                let _ = answer.send_blocking(Err(error));
            }
        }
    };
    if let Err(error) = std::thread::Builder::new()
        .name("spore-reexec".into())
        .spawn(work)
    {
        node.reexec().busy.store(false, Ordering::SeqCst);
        return Err(ApiError::new(
            code::INTERNAL,
            format!("cannot start the re-exec thread: {error}"),
        ));
    }
    Ok(Reply::Pending(pending))
}

/// What a binary answered the check.
struct Answered {
    version: String,
    build_id: String,
}

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::new(code::BINARY_REFUSED, message.into())
}

/// Copies the new binary and this one beside the control socket and runs
/// the check (on a thread: it reads files and waits for a process).
fn prepare(
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

/// On the event loop: hands the state to the staged binary and execs it.
/// Returns only when that could not be done (said in the journal); a spawn
/// in flight makes it try again shortly (up to 5 s).
pub fn attempt(node: &impl Host, inputs: &nodeapi::Inputs, staged: Staged) {
    // The call's answer goes out first: it is written by its connection's
    // task, which runs in the meantime.
    if staged.tries == 0 {
        defer(node, staged);
        return;
    }
    // What is queued now is handled now: no line read is left behind.
    while let Some(input) = inputs.try_next() {
        node.with_api(|api| nodeapi::api::handle(api, input));
    }
    let handoff = node.with_api(|api| api.runtime_mut().hand_off());
    let handoff = match handoff {
        Some(Ok(handoff)) => handoff,
        Some(Err(refusal)) if staged.tries < HANDOFF_TRIES => {
            defer(node, staged);
            if staged_first_try(refusal.to_string()) {
                journal::note(format_args!("re-exec: waiting: {refusal}"));
            }
            return;
        }
        Some(Err(refusal)) => {
            let waited = HANDOFF_RETRY.saturating_mul(HANDOFF_TRIES);
            give_up(
                node,
                &format!("{refusal}, for {:.1} s", waited.as_secs_f64()),
            );
            return;
        }
        None => {
            give_up(node, "the runtime was busy");
            return;
        }
    };
    let here = node.whereabouts();
    let carried = Carried {
        format: FORMAT,
        pid1: here.pid1,
        config_dir: here.paths.config_dir,
        state_dir: here.paths.state_dir,
        socket: here.paths.socket,
        cgroup: here.paths.cgroup,
        kept_logs: here.kept_logs,
        uptime_ms: u64::try_from(here.uptime.as_millis()).unwrap_or(u64::MAX),
        startup: here.startup,
        generation: node.reexec().generation.get(),
        from_version: env!("CARGO_PKG_VERSION").into(),
        from_build: node.build_id(),
        journal: journal::tail(journal::JOURNAL_LINES)
            .into_iter()
            .map(|line| {
                let ns = line
                    .time
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                (ns, line.text)
            })
            .collect(),
        asked_unix_ms: staged.asked,
        sockets: here.sockets,
        runtime: handoff,
    };
    journal::note(format_args!(
        "re-exec: handing {} service(s) to {}",
        carried.runtime.services(),
        staged.next.display()
    ));
    let error = exec_with(&staged.next, &staged.previous, &carried);
    give_up(node, &format!("exec {}: {error}", staged.next.display()));
}

/// Tries `staged` again in [`HANDOFF_RETRY`].
fn defer(node: &impl Host, staged: Staged) {
    let again = node.reexec().staged_tx.clone();
    let staged = Staged {
        tries: staged.tries + 1,
        ..staged
    };
    node.executor()
        .spawn(async move {
            smol::Timer::after(HANDOFF_RETRY).await;
            let _ = again.send(staged).await;
        })
        .detach();
}

thread_local! {
    static SAID: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// True the first time `reason` comes up in a row: a wait is said once.
fn staged_first_try(reason: String) -> bool {
    SAID.with(|said| {
        let mut said = said.borrow_mut();
        let first = *said != reason;
        *said = reason;
        first
    })
}

fn give_up(node: &impl Host, why: &str) {
    node.reexec()
        .busy
        .store(false, std::sync::atomic::Ordering::SeqCst);
    journal::note(format_args!(
        "re-exec abandoned: {why}; this binary keeps running"
    ));
}

/// Writes `carried` to a memfd, keeps it and the output pipes open across
/// the exec, and execs `next`. Returns only on failure, with every
/// descriptor as it was.
fn exec_with(next: &Path, previous: &Path, carried: &Carried) -> String {
    let json = match serde_json::to_vec(carried) {
        Ok(json) => json,
        Err(error) => return format!("the state cannot be written: {error}"),
    };
    let memfd = match memfd_with(&json) {
        Ok(fd) => fd,
        Err(error) => return format!("memfd: {error}"),
    };
    let mut descriptors = carried.runtime.descriptors();
    descriptors.extend(carried.sockets.iter().map(|s| s.fd));
    for fd in &descriptors {
        if let Err(error) = set_cloexec(*fd, false) {
            restore(&descriptors);
            return format!("descriptor {fd}: {error}");
        }
    }
    // What the console still has to say, said before the exec.
    journal::flush(Duration::from_millis(500));
    let error = exec_as_spore(
        next,
        &[HANDOFF_VARIABLE, PREVIOUS_VARIABLE, FALLBACK_VARIABLE],
        &[
            format!("{HANDOFF_VARIABLE}={}", memfd.as_raw_fd()),
            format!("{PREVIOUS_VARIABLE}={}", previous.display()),
        ],
    );
    restore(&descriptors);
    drop(memfd);
    error.to_string()
}

/// Execs `binary` in place of this process with spore's own arguments
/// and environment, less the variables `without`, plus `with`
/// (`NAME=VALUE`); returns only when the exec fails, with why.
fn exec_as_spore(binary: &Path, without: &[&str], with: &[String]) -> nix::errno::Errno {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(key, _)| !without.iter().any(|w| key == w))
        .filter_map(|(key, value)| {
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            CString::new(pair).ok()
        })
        .collect();
    env.extend(
        with.iter()
            .filter_map(|pair| CString::new(pair.as_str()).ok()),
    );
    let argv: Vec<CString> = std::env::args_os()
        .filter_map(|arg| CString::new(arg.as_bytes()).ok())
        .collect();
    let Ok(path) = CString::new(binary.as_os_str().as_bytes()) else {
        return nix::errno::Errno::EINVAL;
    };
    match nix::unistd::execve(&path, &argv, &env) {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

/// The state in a memfd open across exec, read from its start.
fn memfd_with(bytes: &[u8]) -> std::io::Result<OwnedFd> {
    let name = c"spore-handoff";
    // SAFETY: memfd_create(2) with a NUL-terminated name and no flags (the
    // descriptor must survive the exec); the result is owned here.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just made, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

fn set_cloexec(fd: i32, on: bool) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: a descriptor the runtime holds open (an output pipe) for the
    // whole of this call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(borrowed, FcntlArg::F_SETFD(flags)).map(|_| ())
}

/// The pipes close on a later exec again (a service's, spawned after a
/// failed re-exec, must not inherit them).
fn restore(descriptors: &[i32]) {
    for fd in descriptors {
        if let Err(error) = set_cloexec(*fd, true) {
            journal::note(format_args!("descriptor {fd}: FD_CLOEXEC: {error}"));
        }
    }
}

/// First on the event loop after a live re-exec: the services handed over
/// are taken up (no way back after this), and node.info says how it went.
pub fn take_up(node: &impl Host, resumed: Resumed) {
    resume::adopting();
    let Resumed {
        carried,
        memfd,
        fallback,
    } = resumed;
    let services = carried.runtime.services();
    let generation = carried.generation.saturating_add(1);
    let adoption = node
        .with_api(|api| api.runtime_mut().adopt(carried.runtime))
        .unwrap_or_default();
    // Taken up: the previous binary will not need it.
    drop(memfd);
    // What ran before this re-exec is `previous` now (a revert's target);
    // after a hand-back the binary that runs is that copy itself.
    if !fallback {
        let dir = reexec_dir(node);
        if let Err(error) = std::fs::rename(dir.join(OUTGOING), dir.join("previous")) {
            journal::note(format_args!(
                "re-exec: keeping the binary before as {}: {error}",
                dir.join("previous").display()
            ));
        }
    }
    let away_ms = unix_ms().saturating_sub(carried.asked_unix_ms);
    node.reexec().generation.set(generation);
    let unknown: Vec<Value> = adoption
        .unknown
        .iter()
        .map(|(service, pid)| json!({ "service": service, "pid": pid }))
        .collect();
    if let Ok(mut last) = node.reexec().last.try_borrow_mut() {
        *last = json!({
            "generation": generation,
            "from_version": carried.from_version,
            "from_build": carried.from_build,
            "at": unix_ms() / 1000,
            "asked_to_taken_up_ms": away_ms,
            "services": services,
            "processes": adoption.processes,
            "pipes": adoption.pipes,
            "unknown": unknown,
            "went_back": fallback,
        });
    }
    if fallback {
        journal::note(
            "re-exec: the new binary could not take the state up; the previous binary has it again",
        );
    }
    journal::note(format_args!(
        "re-exec: took up {services} service(s), {} process(es), {} output pipe(s) from spore {} (build {}), {away_ms} ms after node.reexec",
        adoption.processes,
        adoption.pipes,
        runtime::escape::field(&carried.from_version),
        carried.from_build.get(..12).unwrap_or(&carried.from_build),
    ));
}
