//! `spore run` and the init proper: load the node, supervise, serve the
//! control socket, and stop in order. One event loop, one thread.

use std::rc::Rc;
use std::time::Instant;

use nix::sys::signal::Signal;
use nodeapi::{Input, Inputs, NodeApi};
use runtime::journal;
use runtime::Runtime;
use smol::future::FutureExt;
use smol::LocalExecutor;
use svc::supervisor::Event;

use crate::config::{NodeConfig, Paths};
use crate::control;
use crate::node::{Ending, Node};
use crate::signals::Signals;

/// Whether files under `dir` survive a reboot: not on tmpfs or ramfs (an
/// initramfs root is one of those; a state disk mounted there is not).
fn survives_reboot(dir: &std::path::Path) -> bool {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    // linux/magic.h; nix names tmpfs but not ramfs.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    // The directory may not exist yet: judge the nearest that does.
    let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
    match statfs(existing) {
        Ok(fs) => fs.filesystem_type() != TMPFS_MAGIC && fs.filesystem_type() != RAMFS_MAGIC,
        Err(_) => false,
    }
}

/// Loads the services under `paths`, supervises them until a shutdown
/// signal or request, stops them in reverse order and returns how the node
/// should end. `signals` must already be blocked.
pub fn supervise(
    paths: &Paths,
    config: &NodeConfig,
    signals: Signals,
    spawning: runtime::spawn::SpawnSettings,
    pid1: bool,
    mut timeline: crate::timeline::Timeline,
    resumed: Option<crate::reexec::Resumed>,
) -> Ending {
    // Uptime goes on across a live re-exec.
    let started = resumed
        .as_ref()
        .and_then(|r| {
            Instant::now().checked_sub(std::time::Duration::from_millis(r.carried.uptime_ms))
        })
        .unwrap_or_else(Instant::now);
    let services_dir = paths.services();
    let deployed_dir = paths.deployed();
    // A crash mid-write (SIGKILL, power loss) leaves a temporary file
    // beside the old whole one; nothing writes yet, so all of them go.
    for dir in [
        services_dir.clone(),
        deployed_dir.clone(),
        paths.state_dir.join("secrets"),
        paths.state_dir.clone(),
    ] {
        match durable::atomic::remove_stale_temporaries(&dir) {
            Ok(0) => {}
            Ok(n) => journal::note(format_args!(
                "removed {n} temporary file(s) a crash left in {}",
                dir.display()
            )),
            Err(error) => journal::note(format_args!("{}: {error}", dir.display())),
        }
    }
    // Credential directories of services of an earlier run (spore was
    // killed, or the directory is on a disk): copies of secrets nobody uses.
    let credentials = paths
        .socket
        .parent()
        .unwrap_or(&paths.state_dir)
        .join("credentials");
    // After a live re-exec the running services' directories are in use.
    let sweep = |dir: &std::path::Path| match resumed {
        Some(_) => Ok(0),
        None => runtime::credentials::sweep(dir),
    };
    match sweep(&credentials) {
        Ok(0) => {}
        Ok(n) => journal::note(format_args!(
            "removed {n} credential directory(ies) an earlier run left in {}",
            credentials.display()
        )),
        Err(error) => journal::note(format_args!("{}: {error}", credentials.display())),
    }
    // Each service's $ARTIFACTS_DIRECTORY (links into the store), made
    // again at every start: any left are an earlier run's.
    let artifact_links = credentials.with_file_name("service-artifacts");
    if let Err(error) = sweep(&artifact_links) {
        journal::note(format_args!("{}: {error}", artifact_links.display()));
    }
    let (services, errors) = match svc::load_layers(&services_dir, &deployed_dir) {
        Ok(report) => (report.services, report.errors),
        Err(error) => {
            journal::note(format_args!("{error}; running no services"));
            (Vec::new(), Vec::new())
        }
    };
    for error in &errors {
        journal::note(format_args!("rejected: {error}"));
    }
    let persistent = survives_reboot(&paths.state_dir);
    journal::note(format_args!(
        "{} service(s) loaded from {} and the deployed layer {}{}, {} rejected",
        services.len(),
        services_dir.display(),
        deployed_dir.display(),
        if persistent {
            ""
        } else {
            " (in RAM: deploys do not survive a reboot)"
        },
        errors.len()
    ));
    timeline.mark("service files");
    let executor: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    let (mut runtime, inputs) = Runtime::new(services, executor, spawning);
    // Services in cgroups of their own, when spore was given a tree; said
    // plainly either way.
    match &paths.cgroup {
        Some(root) => match runtime::cgroup::Tree::at(root) {
            Ok(tree) => {
                journal::note(format_args!(
                    "cgroups: each service in its own under {}",
                    tree.path("").display()
                ));
                runtime.use_cgroups(tree);
            }
            Err(error) => journal::note(format_args!(
                "cgroups: --cgroup {}: {error}; services run in spore's cgroup",
                root.display()
            )),
        },
        None => {
            journal::note("cgroups: none given (--cgroup PATH) and none delegated to spore; services run in spore's cgroup")
        }
    }
    let (mut runtime, inputs) = NodeApi::new(runtime, inputs, executor);
    let deploys = serde_json::json!({
        "dir": deployed_dir.display().to_string(),
        "persistent": persistent,
        "note": if persistent { serde_json::Value::Null } else {
            serde_json::json!("the state directory is in RAM: deployed services and secrets are lost at reboot")
        },
    });
    let kept_root = paths.state_dir.join("logs");
    // A live re-exec goes on writing this start's directory.
    let kept = match &resumed {
        Some(r) => r.carried.kept_logs.clone().filter(|dir| dir.is_dir()),
        None => persistent
            .then(|| crate::kept_logs::begin(&kept_root))
            .flatten(),
    };
    if let Some(dir) = &kept {
        runtime.runtime_mut().keep_logs(dir.clone());
        journal::keep(runtime::rotating::keeper(dir.join("spore.log")));
    }
    let artifacts = open_artifacts(&paths.state_dir, config, persistent, &mut runtime);
    let artifact_store = runtime
        .artifacts()
        .is_some()
        .then(|| paths.state_dir.join("artifacts"));
    runtime.runtime_mut().set_files(runtime::Files {
        services: services_dir.clone(),
        deployed: deployed_dir,
        secrets: paths.state_dir.join("secrets"),
        // Beside the control socket: /run/spore (a tmpfs) on a node.
        credentials,
        persistent,
        kept_logs: kept.is_some().then_some(kept_root),
        artifacts: artifact_store,
        // Beside the credentials: /run/spore (a tmpfs) on a node.
        artifact_links,
    });
    let node = Rc::new(Node {
        runtime: std::cell::RefCell::new(runtime),
        ending: std::cell::Cell::new(None),
        executor,
        started,
        pid1,
        socket: paths.socket.clone(),
        paths: paths.clone(),
        kept_logs: kept.clone(),
        reexec: crate::reexec::Reexec::default(),
        rpc_server: std::cell::RefCell::new(std::rc::Weak::new()),
        config_errors: errors.len(),
        posture: std::cell::RefCell::new(serde_json::Value::Null),
        deploys,
        artifacts,
        updates: crate::update::Updates::new(&config.update),
        startup: std::cell::RefCell::new(serde_json::Value::Null),
        activation: crate::activation::Activation::default(),
    });
    crate::update::start(&node, executor, pid1, &config.update, &paths.state_dir);
    timeline.mark("node state");
    match control::bind(&paths.socket) {
        Ok(listener) => {
            journal::note(format_args!("control socket at {}", paths.socket.display()));
            executor
                .spawn(control::serve(listener, node.clone(), config.control))
                .detach();
        }
        Err(error) => journal::note(format_args!(
            "control socket {}: {error}; running without it",
            paths.socket.display()
        )),
    }
    timeline.mark("control socket");
    crate::remote::start(paths, config, &node);
    timeline.mark("node key and rpc");
    // A re-exec's listeners are taken up, not bound again: no connection
    // is refused meanwhile, and a passed socket a service holds stays its.
    let mut resumed = resumed;
    if let Some(resumed) = resumed.as_mut() {
        node.activation
            .adopt(std::mem::take(&mut resumed.carried.sockets));
    }
    crate::activation::start(node.clone());
    let start = match resumed {
        Some(resumed) => {
            // The boot's steps are the boot's: this start's are said only.
            journal::note(format_args!("re-exec: {}", timeline.line()));
            *node.startup.borrow_mut() = resumed.carried.startup.clone();
            Start::Adopt(Box::new(resumed))
        }
        None => {
            journal::note(timeline.line());
            *node.startup.borrow_mut() = timeline.json();
            Start::Boot
        }
    };
    let ending =
        smol::block_on(executor.run(event_loop(node.clone(), inputs, signals, pid1, start)));
    let _ = std::fs::remove_file(&paths.socket);
    ending
}

/// Opens the artifact store under `STATE_DIR/artifacts` and hands it to
/// the node API; returns what `node.info` says of it. A store that cannot
/// be opened is logged and leaves `artifact.*` answering that there is none.
fn open_artifacts(
    state_dir: &std::path::Path,
    config: &NodeConfig,
    persistent: bool,
    runtime: &mut NodeApi,
) -> serde_json::Value {
    let dir = state_dir.join("artifacts");
    let opened = artifacts::Store::open(&dir, config.artifacts.max_bytes)
        .map_err(|error| error.to_string())
        .and_then(|store| {
            runtime
                .open_artifacts(store)
                .map_err(|error| error.to_string())
        });
    match opened.map(|()| runtime.artifacts().map(nodeapi::artifacts::Artifacts::info)) {
        Ok(Some(mut info)) => {
            if let Some(map) = info.as_object_mut() {
                map.insert("persistent".into(), persistent.into());
                if !persistent {
                    map.insert(
                        "note".into(),
                        "the state directory is in RAM: artifacts are lost at reboot".into(),
                    );
                }
            }
            runtime.set_fetcher(crate::fetch::fetcher(&config.artifacts, &config.beacon));
            info
        }
        Ok(None) => serde_json::Value::Null,
        Err(error) => {
            journal::note(format_args!(
                "artifact store {}: {error}; running without one",
                dir.display()
            ));
            serde_json::json!({ "dir": dir.display().to_string(), "error": error })
        }
    }
}

/// How many inputs the event loop handles before it yields to other tasks.
const INPUTS_PER_TURN: u32 = 64;

enum Next {
    Signal(std::io::Result<Signal>),
    Input(Option<Input>),
    Reexec(crate::reexec::Staged),
}

/// How the event loop begins: boot the services, or take up those a live
/// re-exec handed over.
enum Start {
    Boot,
    Adopt(Box<crate::reexec::Resumed>),
}

async fn event_loop(
    node: Rc<Node>,
    inputs: Inputs,
    signals: Signals,
    pid1: bool,
    start: Start,
) -> Ending {
    match start {
        Start::Boot => {
            node.with_runtime(|runtime| runtime.feed(Event::Boot));
        }
        Start::Adopt(resumed) => crate::reexec::take_up(node.as_ref(), *resumed),
    }
    let mut handled_in_a_row = 0u32;
    loop {
        // A queue that is never empty (a service printing without pause)
        // would keep this task running without ever yielding: every
        // INPUTS_PER_TURN inputs, let the other tasks (control and RPC
        // connections, accepts) have their turn.
        handled_in_a_row += 1;
        if handled_in_a_row >= INPUTS_PER_TURN {
            handled_in_a_row = 0;
            smol::future::yield_now().await;
        }
        // Signals first (SIGCHLD, SIGTERM), then facts, then output lines.
        let next = async { Next::Signal(signals.next().await) }
            .or(async { Next::Input(inputs.next().await) })
            .or(async {
                match node.reexec.staged.recv().await {
                    Ok(staged) => Next::Reexec(staged),
                    // Node holds a sender: never closed while it lives.
                    Err(_) => std::future::pending().await,
                }
            })
            .await;
        match next {
            Next::Signal(Ok(Signal::SIGCHLD)) => {
                node.with_runtime(NodeApi::reap);
            }
            Next::Signal(Ok(signal)) => on_signal(&node, signal, pid1),
            Next::Signal(Err(error)) => {
                journal::note(format_args!("reading signals failed: {error}"));
                smol::Timer::after(std::time::Duration::from_millis(100)).await;
            }
            Next::Input(Some(input)) => {
                node.with_runtime(|api| nodeapi::api::handle(api, input));
            }
            Next::Reexec(staged) => crate::reexec::attempt(node.as_ref(), &inputs, staged),
            Next::Input(None) => {
                // The runtime holds the senders, so this cannot happen; survive it anyway.
                journal::note("event queue closed unexpectedly");
                smol::Timer::after(std::time::Duration::from_millis(100)).await;
            }
        }
        if node.with_runtime(|runtime| runtime.is_shutdown_complete()) == Some(true) {
            return node.ending.get().unwrap_or(Ending::Poweroff);
        }
    }
}

/// SIGTERM, SIGUSR2, SIGPWR: power off. SIGINT (ctrl-alt-del): reboot.
/// SIGUSR1: halt. SIGQUIT: ignored as PID 1. Outside PID 1 every one of
/// them means "stop and exit". SIGHUP: reload the service files.
fn on_signal(node: &Node, signal: Signal, pid1: bool) {
    let ending = match signal {
        Signal::SIGTERM | Signal::SIGUSR2 | Signal::SIGPWR => Ending::Poweroff,
        Signal::SIGINT => Ending::Reboot,
        Signal::SIGUSR1 => Ending::Halt,
        Signal::SIGQUIT if pid1 => {
            journal::note("SIGQUIT received; ignored (PID 1)");
            return;
        }
        Signal::SIGQUIT => Ending::Poweroff,
        Signal::SIGHUP => {
            // As node.reload: files edited or dropped into the service
            // directories are read again (off the loop) and applied.
            journal::note("SIGHUP received; reloading the service files");
            let pending = node.with_runtime(nodeapi::changes::reload);
            if let Some(Err(error)) = pending {
                journal::note(format_args!("reload: {}", error.message));
            }
            return;
        }
        other => {
            journal::note(format_args!("{other} received; nothing to do"));
            return;
        }
    };
    journal::note(format_args!("{signal} received"));
    node.shut_down(if pid1 { ending } else { Ending::Poweroff });
}
