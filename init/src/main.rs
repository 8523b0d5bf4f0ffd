//! `spore`: PID 1 and service supervisor for fleets of bare Linux nodes.
//! See `spore --help` and the README.

mod activation;
mod callhome;
mod check;
mod cli;
mod client;
mod config;
mod control;
mod cover;
mod delegated;
mod exec;
mod fault;
mod fetch;
mod kept_logs;
mod manual;
mod mountinfo;
mod node;
mod pid1;
mod reexec;
mod remote;
mod run;
mod signals;
mod sntp;
mod subreaper;
mod timeline;
mod update;
mod usage;
mod watchdog;

use std::path::PathBuf;
use std::process::ExitCode;

use runtime::journal;

use crate::config::Paths;

fn main() -> ExitCode {
    // Exec'd by a live re-exec: the state first, before anything is opened.
    if let Some(incoming) = reexec::Incoming::take() {
        return reexec::resume(incoming);
    }
    let pid1 = std::process::id() == 1;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // The kernel passes boot parameters it does not know to init as
    // arguments; as PID 1 anything that does not start with a subcommand
    // or an option means "boot".
    let names_a_command = args.first().is_some_and(|first| {
        let first = first.to_string_lossy();
        first.starts_with('-') || cli::COMMANDS.contains(&first.as_ref())
    });
    if pid1 && !names_a_command {
        return init(true);
    }
    // The helper spore starts services through once it holds many
    // descriptors (see runtime::spawner); never PID 1, never typed by hand.
    if !pid1
        && args.len() == 1
        && args
            .first()
            .is_some_and(|a| a == runtime::spawner::SUBCOMMAND)
    {
        return runtime::spawner::serve();
    }
    // A new binary checked before a live re-exec: which state it reads.
    if !pid1 && args.len() == 1 && args.first().is_some_and(|a| a == reexec::CHECK_SUBCOMMAND) {
        return reexec::answer_check();
    }
    match cli::parse(args) {
        Ok(cli::Invocation::Init) => init(pid1),
        // `spore run` never does machine duties, even as PID 1 of a PID
        // namespace: no mounts, and it exits instead of rebooting.
        Ok(cli::Invocation::Run {
            config_dir,
            state_dir,
            socket,
            cgroup,
        }) => {
            let socket = socket.unwrap_or_else(|| state_dir.join("spore.sock"));
            let paths = Paths {
                config_dir,
                state_dir,
                socket,
                cgroup,
            };
            run_supervisor(&paths, false, None)
        }
        Ok(cli::Invocation::Exec { group, argv }) => exec::run(&argv, group),
        Ok(cli::Invocation::CallHome {
            config_dir,
            state_dir,
        }) => callhome::main(&Paths {
            socket: state_dir.join("spore.sock"),
            config_dir,
            state_dir,
            cgroup: None,
        }),
        Ok(cli::Invocation::Check { paths, json }) => check::run(&paths, json),
        Ok(cli::Invocation::Client {
            socket,
            json,
            request,
        }) => client::run(&client::socket_path(socket), &request, json),
        Ok(cli::Invocation::Help) => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(cli::Invocation::CommandHelp(command)) => {
            println!(
                "{}",
                cli::command_usage(&command).unwrap_or_else(|| cli::USAGE.to_owned())
            );
            ExitCode::SUCCESS
        }
        Ok(cli::Invocation::Print(text)) => {
            use std::io::Write;
            // A reader that stops early (`spore man | head`) is no error.
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Ok(cli::Invocation::Version) => {
            println!("spore {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("spore: {error}\ntry `spore --help`");
            ExitCode::from(2)
        }
    }
}

/// Bare `spore`: the init. Outside PID 1 it explains itself instead.
fn init(pid1: bool) -> ExitCode {
    if !pid1 {
        eprintln!(
            "spore: not PID 1; use `spore run` to supervise as a subreaper\n\n{}",
            cli::USAGE
        );
        return ExitCode::from(2);
    }
    let paths = Paths {
        config_dir: PathBuf::from("/etc/spore"),
        state_dir: PathBuf::from("/var/lib/spore"),
        socket: PathBuf::from("/run/spore/spore.sock"),
        cgroup: None,
    };
    run_supervisor(&paths, true, None)
}

/// The new binary of a live re-exec, with the state read: supervises the
/// services it took up as the old binary did (see [`reexec`]).
fn resumed(carried: reexec::Carried, memfd: std::os::fd::OwnedFd, fallback: bool) -> ExitCode {
    let paths = Paths {
        config_dir: carried.config_dir.clone(),
        state_dir: carried.state_dir.clone(),
        socket: carried.socket.clone(),
        cgroup: carried.cgroup.clone(),
    };
    let machine = carried.pid1;
    run_supervisor(
        &paths,
        machine,
        Some(reexec::Resumed {
            carried,
            memfd,
            fallback,
        }),
    )
}

/// The state of a live re-exec could not be taken up and there was no
/// binary to go back to. As PID 1: every process left is killed (nobody
/// knows them any more) and the node boots its services afresh, so it
/// answers again; otherwise spore exits, its services left to its parent.
fn unresumed(pid1: bool) -> ExitCode {
    if !pid1 {
        journal::flush(std::time::Duration::from_secs(2));
        return ExitCode::from(1);
    }
    journal::note("re-exec: killing every process and starting the services afresh");
    if let Err(error) = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(-1),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        journal::note(format_args!("kill(-1): {error}"));
    }
    init(true)
}

/// Supervises until shutdown. With `machine` (the real init) it first
/// mounts and configures the node and at the end reboots it, never
/// returning; otherwise it exits 0.
fn run_supervisor(paths: &Paths, machine: bool, resumed: Option<reexec::Resumed>) -> ExitCode {
    let pid1 = machine;
    cover::install();
    // Block signals before anything else, so no thread ever takes one.
    let set = signals::handled_set();
    if let Err(error) = signals::block(&set) {
        journal::note(format_args!("cannot block signals: {error}"));
    }
    let spawning = runtime::spawn::SpawnSettings {
        always_spawner: std::env::var_os("SPORE_SPAWNER").is_some_and(|v| v == "always"),
        service_core_limit: no_core_dumps(),
        service_nofile_limit: more_descriptors(pid1),
    };
    if !pid1 {
        if std::process::id() != 1 {
            subreaper::become_subreaper();
        }
        // Outside PID 1 a panic ends spore (its services are left to its
        // parent, as when it is killed), with the reason on its stderr.
        let supervised = cover::under(
            || {
                journal::note("spore panicked; exiting");
                journal::flush(std::time::Duration::from_secs(2));
                std::process::exit(101)
            },
            || boot_and_supervise(paths, &set, spawning, false, resumed),
        );
        let Some(ending) = supervised else {
            journal::flush(std::time::Duration::from_secs(2));
            return ExitCode::from(1);
        };
        journal::note(ending.outside_pid1());
        // The last lines reach a console that reads them; one that reads
        // nothing delays the exit this long and no more.
        journal::flush(std::time::Duration::from_secs(2));
        return ExitCode::SUCCESS;
    }
    // As PID 1 a panic must not end the process (the kernel would panic):
    // everything from the first mount to the reboot runs under this cover,
    // and a panic anywhere falls back to reaping forever.
    let ending = cover::under(
        || {
            journal::note("PID 1 panicked; falling back to reaping only");
            pid1::last_resort()
        },
        || boot_and_supervise(paths, &set, spawning, true, resumed),
    );
    match ending {
        Some(ending) => cover::under(
            || {
                journal::note("the shutdown panicked; falling back to reaping only");
                pid1::last_resort()
            },
            || pid1::finish(ending),
        ),
        None => pid1::last_resort(),
    }
}

/// The boot (machine duties when `pid1`), then supervision until shutdown;
/// how the node should end, or None when the event loop cannot run.
fn boot_and_supervise(
    paths: &Paths,
    set: &nix::sys::signal::SigSet,
    spawning: runtime::spawn::SpawnSettings,
    pid1: bool,
    resumed: Option<reexec::Resumed>,
) -> Option<node::Ending> {
    let mut timeline = timeline::Timeline::begin();
    if pid1 && resumed.is_some() {
        // Mounted and on its consoles already; the consoles' descriptors
        // were not kept across the exec.
        pid1::consoles::use_every_console();
    } else if pid1 {
        pid1::early_mounts_and_console();
        timeline.mark("early mounts");
    }
    journal::note(format_args!(
        "spore {} starting (pid {}, {} s after kernel start)",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        since_boot()
    ));
    let (config, error) = config::load(&paths.node_config());
    if let Some(error) = error {
        journal::note(error);
    }
    fault::point("spore.toml");
    timeline.mark("spore.toml");
    if pid1 && resumed.is_none() {
        pid1::configure(&config, &mut timeline);
    } else if pid1 {
        sntp::start(sntp::Sources::of(&config), true);
    } else {
        // The clock is not spore's here: measured, never set.
        sntp::start(sntp::Sources::of(&config), false);
    }
    // After configure: a `[[mount]]` may have put a fresh filesystem on the
    // state directory or above it.
    if let Err(error) = prepare_state_dir(&paths.state_dir, pid1) {
        journal::note(format_args!(
            "state directory {}: {error}",
            paths.state_dir.display()
        ));
    }
    // Named once the state directory is there: a node with no name given
    // takes one from its key.
    if pid1 && resumed.is_none() {
        pid1::hostname::name_node(&config, &paths.state_dir);
    }
    timeline.mark("state and hostname");
    // As PID 1 spore owns the cgroup tree: each service in its own
    // (unless the kernel command line says SPORE_CGROUPS=off: a node
    // whose kernel misbehaves with them, and the benchmark's baseline).
    let owned;
    let paths = if pid1 && resumed.is_none() {
        let cgroup = if std::env::var_os("SPORE_CGROUPS").is_some_and(|v| v == "off") {
            journal::note("cgroups: off (SPORE_CGROUPS=off): services run in spore's cgroup");
            None
        } else {
            pid1::cgroups::setup()
        };
        owned = Paths {
            cgroup,
            ..paths.clone()
        };
        &owned
    } else if !pid1 && resumed.is_none() && paths.cgroup.is_none() {
        // `spore run` without --cgroup: the cgroup it was started in, when
        // that is delegated to it.
        match delegated::adopt() {
            Some(cgroup) => {
                owned = Paths {
                    cgroup: Some(cgroup),
                    ..paths.clone()
                };
                &owned
            }
            None => paths,
        }
    } else {
        paths
    };
    let signals = match signals::Signals::open(set) {
        Ok(signals) => signals,
        Err(error) => {
            journal::note(format_args!("signalfd: {error}"));
            return None;
        }
    };
    timeline.mark("cgroups and signals");
    Some(run::supervise(
        paths, &config, signals, spawning, pid1, timeline, resumed,
    ))
}

/// Seconds since the kernel started (CLOCK_BOOTTIME), as `S.mmm`; boot
/// figures are read off this line.
fn since_boot() -> String {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(now) => format!("{}.{:03}", now.tv_sec(), now.tv_nsec() / 1_000_000),
        Err(_) => "?".into(),
    }
}

/// Creates `dir` (and parents) 0700 if missing. As PID 1 an existing one is
/// made 0700 too: the node key and secrets live there, and a filesystem
/// fresh from mkfs mounted on it has a 0755 root.
fn prepare_state_dir(dir: &std::path::Path, pid1: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if pid1 && std::fs::metadata(dir)?.permissions().mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// spore holds secrets and the node key in memory: it must never leave a
/// core file (or be read through ptrace by a same-user process). Not
/// dumpable (prctl(2) PR_SET_DUMPABLE), and a core-file soft limit of 0;
/// services get the limit spore was started with back, and exec(2) makes
/// them dumpable again: the soft limit spore was started with, for them.
fn no_core_dumps() -> Option<u64> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        journal::note(format_args!(
            "PR_SET_DUMPABLE: {}",
            std::io::Error::last_os_error()
        ));
    }
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE) {
        Ok((soft, hard)) => {
            if let Err(error) =
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, hard)
            {
                journal::note(format_args!("RLIMIT_CORE: {error}"));
            }
            Some(soft)
        }
        Err(error) => {
            journal::note(format_args!("RLIMIT_CORE: {error}"));
            None
        }
    }
}

/// spore holds two pipe ends per service (their output): the kernel's
/// default of 1,024 descriptors runs out near 500 services (measured:
/// EMFILE at the 507th of 1,000 with spore as PID 1). Its soft limit goes
/// up to its hard one, and as PID 1 both go up to the kernel's most
/// (`fs.nr_open`). Services get the soft limit spore was started with.
fn more_descriptors(pid1: bool) -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            journal::note(format_args!("RLIMIT_NOFILE: {error}"));
            return None;
        }
    };
    let most = if pid1 {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map_or(hard, |nr_open| nr_open.max(hard))
    } else {
        hard
    };
    if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, most, most) {
        journal::note(format_args!("RLIMIT_NOFILE to {most}: {error}"));
    }
    Some(soft)
}
