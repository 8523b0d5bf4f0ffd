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

mod exec;
mod prepare;
mod resume;

use exec::{exec_as_spore, exec_with};
pub use prepare::answer_check;
use prepare::prepare;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
