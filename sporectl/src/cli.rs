//! sporectl's command line, defined once: parsing, per-command help,
//! suggestions, `--version`, shell completions and the man page all come
//! from [`Cli`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::Options;

mod groups;
mod options;

use groups::{
    ArtifactCommand, BeaconCommand, KnownNodesCommand, NodesCommand, RolloutCommand, SecretCommand,
};
use options::into_options;

const EXIT_CODES: &str = "\
Exit codes: 0 done; 1 the node answered with an error, a service did not come
up, or reload rejected a file; 2 usage, a local problem (a file or key that
cannot be read) or a question declined; 3 node unreachable; 4 authentication
(node key or ours); 5 protocol error; 6 node busy. status: 0 every service
runs, 3 one does not, 4 one is unknown; is-active: 0 all run, else 3;
is-failed: 0 one has failed, else 1.

Identity: every ssh-ed25519 key of the ssh-agent ($SSH_AUTH_SOCK), then
~/.ssh/id_ed25519; node keys are pinned in ~/.config/spore/known_nodes.
Beacon: https://… (--beacon-ca to trust your own CA), or http:// to a loopback
or mycelium address; --insecure-beacon reads plain http elsewhere, and then
commands that change state refuse its nodes.";

/// The heading of the options every command takes, in `sporectl --help`.
const GLOBAL: &str = "Options of every command";

/// Manage spore nodes over signed RPC.
#[derive(Parser, Debug)]
#[command(name = "sporectl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The node's RPC address
    #[arg(
        long,
        global = true, help_heading = GLOBAL,
        env = "SPORECTL_NODE",
        default_value = "127.0.0.1:9999"
    )]
    node: String,
    /// Offer only this key (a private key file, or FILE.pub to use that key of the agent)
    #[arg(short = 'i', long, global = true, help_heading = GLOBAL, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Pin the node's key instead of looking it up in known_nodes
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "'ssh-ed25519 AAAA…'")]
    node_key: Option<String>,
    /// Where node keys are pinned
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILE", env = "SPORECTL_KNOWN_NODES")]
    known_nodes: Option<PathBuf>,
    /// Trust and pin the key of a node met for the first time
    #[arg(long, global = true, help_heading = GLOBAL)]
    accept_new: bool,
    /// Print JSON (one document per answer) instead of text
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    /// The beacon that lists the fleet (for `nodes`, `--all`, `--nodes`)
    #[arg(long, global = true, help_heading = GLOBAL, env = "SPORECTL_BEACON", value_name = "URL")]
    beacon: Option<String>,
    /// Run the command on every node the beacon lists
    #[arg(long, global = true, help_heading = GLOBAL)]
    all: bool,
    /// Run the command on these nodes of the beacon (a name with `*`
    /// matches many: 'rack3-*')
    #[arg(
        long = "nodes",
        global = true, help_heading = GLOBAL,
        value_delimiter = ',',
        value_name = "A,B,…"
    )]
    only: Option<Vec<String>>,
    /// Only the nodes of --all or --nodes whose registration carries this
    /// label (spore.toml's [node] labels; repeatable: all must match)
    #[arg(long = "label", global = true, help_heading = GLOBAL, value_name = "KEY=VALUE", value_parser = key_value)]
    labels: Vec<(String, String)>,
    /// Reach fleet node NAME at HOST:PORT instead of its overlay address (repeatable)
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "NAME=HOST:PORT", value_parser = name_address)]
    address: Vec<(String, String)>,
    /// Nodes a fleet command talks to at once
    #[arg(long, global = true, help_heading = GLOBAL, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Trust this CA for an https beacon
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILE")]
    beacon_ca: Option<PathBuf>,
    /// Read a plain-http beacon that is not on loopback or mycelium
    #[arg(long, global = true, help_heading = GLOBAL)]
    insecure_beacon: bool,
    /// Do not ask before reboot, poweroff, remove or secrets on a fleet
    #[arg(short = 'y', long, global = true, help_heading = GLOBAL)]
    yes: bool,
    /// Give up on a node that does not complete the handshake in this long
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "DURATION", default_value = "15s", value_parser = duration)]
    connect_timeout: Duration,
    /// Give up on a call the node has not answered in this long (beyond
    /// the wait of start, restart and deploy)
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    call_timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

/// How a command that starts services waits for them.
#[derive(Args, Debug, Clone, Copy)]
struct Wait {
    /// Return once the node accepted the order, without waiting for the outcome
    #[arg(long)]
    no_wait: bool,
    /// Wait at most this long for each service (e.g. 90, 30s, 2m)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    timeout: Duration,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The node: hostname, version, uptime, listeners, posture
    #[command(
        after_help = "Examples:\n  sporectl --node 10.0.2.15:9999 info\n  sporectl --beacon https://beacon:8443 --all info"
    )]
    Info,
    /// Every service and its state
    #[command(after_help = "Examples:\n  sporectl list\n  sporectl --json list")]
    List,
    /// The node's figures in Prometheus' text format: state, readiness,
    /// restarts, last exit code, CPU and memory of every service
    #[command(
        after_help = "Examples:\n  sporectl metrics\n  sporectl metrics > /var/lib/node_exporter/textfile/spore.prom\n  sporectl --beacon URL --all metrics --serve 127.0.0.1:9464"
    )]
    Metrics {
        /// Serve the fleet's figures (with --all or --nodes) at
        /// http://ADDRESS/metrics for Prometheus to scrape, until killed
        #[arg(long, value_name = "ADDRESS")]
        serve: Option<String>,
        /// With --serve: hand the last figures out again to scrapes that
        /// come sooner than this after them (the nodes are asked at most
        /// once per interval)
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration, requires = "serve")]
        min_interval: Duration,
    },
    /// The fleet as a web page on loopback: what is wrong first, every
    /// node and service, a node's lines live, restart/stop/start after a
    /// confirmation. With --beacon: every node it lists (or --nodes,
    /// --label); without: the one --node. Prints the page's URL (its token
    /// is the password) and serves until killed
    #[command(
        after_help = "Examples:\n  sporectl --beacon https://beacon:8443 dashboard\n  sporectl --beacon URL --nodes 'rack3-*' dashboard --listen 127.0.0.1:8088\n  sporectl --node 10.0.2.15:9999 dashboard"
    )]
    Dashboard {
        /// Where to listen: a loopback address and port (0: any free port)
        #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Services in detail: state, since, last exit, restarts, recent lines
    /// (no name: every service, as `list`). Exits 0 when every one runs, 3
    /// when one does not, 4 when one is unknown
    ///
    /// On a fleet (--all, --nodes) with no name: one row per node (up,
    /// version, services by state), failing nodes first
    #[command(
        after_help = "Examples:\n  sporectl status web\n  sporectl status            # every service, as list\n  sporectl status --failed\n  sporectl --beacon URL --all status --failed"
    )]
    Status {
        /// Services to show
        names: Vec<String>,
        /// Only what is wrong: services failed, in backoff or unhealthy
        /// (with no name), or on a fleet the nodes with such a service or
        /// that cannot be reached
        #[arg(long)]
        failed: bool,
    },
    /// Print each service's state; exit 0 when all run (or their oneshot
    /// succeeded), else 3
    #[command(after_help = "Examples:\n  sporectl is-active web && echo up")]
    IsActive {
        /// Services to ask about
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print each service's state; exit 0 when one has failed, else 1
    #[command(after_help = "Examples:\n  sporectl is-failed web && echo needs a look")]
    IsFailed {
        /// Services to ask about
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Start services (and what they require); waits until each is ready or has failed
    #[command(
        after_help = "Examples:\n  sporectl start web\n  sporectl start web db --timeout 2m"
    )]
    Start {
        /// Services to start
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Stop services (stop signal, grace, SIGKILL)
    #[command(after_help = "Examples:\n  sporectl stop web")]
    Stop {
        /// Services to stop
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Restart services; waits until each is ready or has failed
    #[command(after_help = "Examples:\n  sporectl restart web --no-wait")]
    Restart {
        /// Services to restart
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// A service's output (`spore`: the node's own journal; no name: every
    /// service and spore's own lines, merged by time)
    #[command(
        after_help = "Examples:\n  sporectl logs web -n 50\n  sporectl logs web -f\n  sporectl logs --since \"10m ago\" -p err\n  sporectl logs web --boot -1\n  sporectl --beacon URL --all logs -f web"
    )]
    Logs {
        /// The service, or `spore`; none: all of them
        name: Option<String>,
        /// Lines of backlog
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: u64,
        /// Then follow new lines until the service is removed
        #[arg(short = 'f', long, requires = "name")]
        follow: bool,
        /// Only lines at or after this: 10m ago, -1h, today, 2026-12-07T03:00:00Z (UTC)
        #[arg(short = 'S', long, value_name = "WHEN", value_parser = moment)]
        since: Option<u64>,
        /// Only lines at or before this (as --since)
        #[arg(short = 'U', long, value_name = "WHEN", value_parser = moment)]
        until: Option<u64>,
        /// The lines an earlier start of spore kept: -1 the one before this
        /// (kept on a state disk, for the last few starts)
        #[arg(short = 'b', long, value_name = "-N", allow_hyphen_values = true, value_parser = boot, conflicts_with = "follow")]
        boot: Option<u64>,
        /// Only lines this urgent or more: emerg, alert, crit, err, warning,
        /// notice, info, debug or 0-7 (a line's <N> first; stderr counts as err)
        #[arg(short = 'p', long, value_name = "LEVEL", value_parser = priority)]
        priority: Option<u64>,
    },
    /// Add or replace services from files (checked as `spore check` does); waits for each
    #[command(
        after_help = "Examples:\n  sporectl deploy web.toml\n  sporectl deploy *.toml --start\n  sporectl deploy greeter.toml --artifact greeter=./greeter   # the program it pins, sent first\n  sporectl --beacon URL --all deploy greeter.toml --artifact greeter=./greeter   # published once, fetched by each node"
    )]
    Deploy {
        /// Service files
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Start them even if their status is not start
        #[arg(long)]
        start: bool,
        /// Send this local file for the artifact NAME the service file pins
        /// (it must hash to the pin), unless the node has it (repeatable);
        /// with --all or --nodes, publish it to the beacon once and let the
        /// nodes fetch it (its url must include "beacon")
        #[arg(long = "artifact", value_name = "NAME=PATH", value_parser = name_path)]
        artifacts: Vec<(String, PathBuf)>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Stop services and delete their files
    #[command(after_help = "Examples:\n  sporectl remove web")]
    Remove {
        /// Services to remove
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Why a service is not running: the service that holds it back, and
    /// so on down to the one to fix, with its last exit and its last lines
    #[command(after_help = "Examples:\n  sporectl why web\n  sporectl --json why web")]
    Why {
        /// The service
        name: String,
    },
    /// Change a fleet in steps: a canary first, then batches, each node
    /// healthy only when the change came up and stayed up; stops after too
    /// many failures and can put the failed batch back as it was
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Each service's file as the node holds it, headed by where it lives
    /// and whether it came with the image or was deployed
    #[command(after_help = "Examples:\n  sporectl cat web\n  sporectl --json cat web mycelium")]
    Cat {
        /// Services whose file to print
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// The dependency graph as it stands: each service with its state and
    /// what it requires, wants and is ordered after (no name: from the
    /// services nothing depends on)
    #[command(after_help = "Examples:\n  sporectl tree\n  sporectl tree web")]
    Tree {
        /// Start from this service
        name: Option<String>,
    },
    /// Read the service files again and apply what changed
    #[command(after_help = "Examples:\n  sporectl reload")]
    Reload,
    /// Secrets stored on the node
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Files on the node named by their SHA-256: store one, list, remove
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Stop every service in order, then reboot
    #[command(
        after_help = "Examples:\n  sporectl reboot\n  sporectl --beacon URL --nodes a,b --yes reboot"
    )]
    Reboot,
    /// Stop every service in order, then power off
    #[command(after_help = "Examples:\n  sporectl poweroff")]
    Poweroff,
    /// Send a unified kernel image (spore-mkinitramfs --uki) and write it
    /// to the node's boot slot not in use; the next boot tries it once, and
    /// spore there confirms it when its critical services are ready, or the
    /// old slot comes back. Or send a spore binary (--spore) that the node
    /// execs in place at once, keeping every service running (a live
    /// re-exec)
    #[command(
        after_help = "Examples:\n  sporectl --node 10.0.2.15:9999 update --image node.efi\n  ssh-keygen -Y sign -f update_key -n spore-update node.efi   # when the node has [update] keys\n  sporectl --node 10.0.2.15:9999 update --image node.efi --signature node.efi.sig\n  sporectl --node 10.0.2.15:9999 reboot\n  sporectl --node 10.0.2.15:9999 update --spore target/x86_64-unknown-linux-musl/release/spore"
    )]
    Update {
        /// The image
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "spore",
            conflicts_with = "spore"
        )]
        image: Option<PathBuf>,
        /// A spore binary: the node checks it, then execs it in place of
        /// the running spore without stopping a service
        #[arg(long, value_name = "BINARY")]
        spore: Option<PathBuf>,
        /// Its `ssh-keygen -Y sign -n spore-update` signature (default
        /// FILE.sig, when it exists)
        #[arg(long, value_name = "SIG")]
        signature: Option<PathBuf>,
    },
    /// The node's OpenRPC document
    #[command(after_help = "Examples:\n  sporectl discover")]
    Discover,
    /// The nodes a beacon lists (needs --beacon)
    Nodes {
        #[command(subcommand)]
        action: Option<NodesCommand>,
    },
    /// Run a beacon
    #[command(subcommand)]
    Beacon(BeaconCommand),
    /// The node keys pinned in known_nodes
    #[command(subcommand)]
    KnownNodes(KnownNodesCommand),
    /// Print a shell completion script
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff); with --dir, write it and one page per
    /// command (sporectl-info.1, …), which it refers to, into DIR
    Man {
        /// Write sporectl.1 and every command's page here
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// What `main` does after parsing.
pub enum Parsed {
    /// Talk to a node, the fleet or a beacon.
    Run(Box<Options>),
    /// Print this text (completions, the man page) and exit 0.
    Print(Vec<u8>),
}

/// Ends sporectl with a usage error (exit 2), as clap's own.
fn usage_error(message: &str) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

fn name_path(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("`{text}`: expected NAME=PATH")),
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}`: expected KEY=VALUE"))
}

fn name_address(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(n, a)| !n.is_empty() && !a.is_empty())
        .map(|(n, a)| (n.to_owned(), a.to_owned()))
        .ok_or_else(|| format!("`{text}`: expected NAME=HOST:PORT"))
}

fn priority(text: &str) -> Result<u64, String> {
    rpc::verbs::parse_priority(text)
}

fn boot(text: &str) -> Result<u64, String> {
    rpc::verbs::parse_boot(text)
}

fn moment(text: &str) -> Result<u64, String> {
    rpc::verbs::parse_moment(text)
}

fn duration(text: &str) -> Result<Duration, String> {
    rpc::verbs::parse_duration(text)
}

/// Parses the command line (clap prints help, versions and usage errors
/// and exits: 0 for help, 2 for errors).
pub fn parse() -> Parsed {
    let matches = with_verb_help_own_options(Cli::command()).get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => into_options(cli),
        Err(error) => error.exit(),
    }
}

/// The command line as it parses, with each verb's help listing only the
/// verb's own options: the options every command takes are still accepted
/// after any verb but listed once, in `sporectl --help`.
///
/// clap copies each global option into every subcommand unless one of the
/// same name is there already, so each verb is given a hidden copy first.
/// (Completions and man pages use [`Cli::command`] as it is.)
fn with_verb_help_own_options(command: clap::Command) -> clap::Command {
    let shared: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|arg| arg.is_global_set())
        .map(|arg| arg.clone().hide(true))
        .collect();
    hide_in_verbs(command, &shared)
}

fn hide_in_verbs(command: clap::Command, shared: &[clap::Arg]) -> clap::Command {
    command.mut_subcommands(|verb| {
        let verb = shared.iter().fold(verb, |verb, arg| verb.arg(arg.clone()));
        let verb = if LOCAL_ONLY.contains(&verb.get_name()) {
            verb
        } else {
            let pointer = match verb.get_after_help() {
                Some(after) => format!("{after}\n\n{SHARED_POINTER}"),
                None => SHARED_POINTER.to_string(),
            };
            verb.after_help(pointer)
        };
        hide_in_verbs(verb, shared)
    })
}

/// Commands that reach no node and read no beacon: their help does not point
/// at the options every command takes.
const LOCAL_ONLY: [&str; 4] = ["beacon", "serve", "completions", "man"];

/// Closes every verb's help, in place of the options every command takes.
const SHARED_POINTER: &str = "Options every command takes (--node, --json, --all, --nodes, \
--beacon, -i, …): sporectl --help";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
        with_verb_help_own_options(Cli::command()).debug_assert();
    }

    fn parsed(words: &[&str]) -> Cli {
        let command = with_verb_help_own_options(Cli::command());
        let matches = command
            .try_get_matches_from(words)
            .unwrap_or_else(|error| panic!("{words:?}: {error}"));
        Cli::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn options_every_command_takes_parse_before_and_after_the_verb() {
        for words in [
            &[
                "sporectl",
                "--node",
                "10.0.0.1:1",
                "--json",
                "status",
                "web",
            ][..],
            &[
                "sporectl",
                "status",
                "--node",
                "10.0.0.1:1",
                "web",
                "--json",
            ][..],
        ] {
            let cli = parsed(words);
            assert_eq!(cli.node, "10.0.0.1:1", "{words:?}");
            assert!(cli.json, "{words:?}");
            assert!(matches!(cli.command, Command::Status { ref names, .. } if names == &["web"]));
        }
        let cli = parsed(&[
            "sporectl",
            "secret",
            "set",
            "api",
            "-y",
            "--concurrency",
            "3",
        ]);
        assert!(cli.yes);
        assert_eq!(cli.concurrency, 3);
        let cli = parsed(&["sporectl", "list"]);
        assert_eq!(cli.node, "127.0.0.1:9999");
        assert_eq!(cli.call_timeout, Duration::from_secs(30));
    }

    #[test]
    fn a_verbs_help_lists_its_own_options_and_points_at_the_rest() {
        let mut command = with_verb_help_own_options(Cli::command());
        command.build();
        let mut help = |path: &[&str]| {
            let verb = path.iter().fold(&mut command, |command, name| {
                command.find_subcommand_mut(name).unwrap()
            });
            verb.render_long_help().to_string()
        };
        let logs = help(&["logs"]);
        assert!(logs.contains("--lines"), "{logs}");
        assert!(!logs.contains("--node <NODE>"), "{logs}");
        assert!(!logs.contains("--call-timeout"), "{logs}");
        assert!(logs.ends_with(&format!("{SHARED_POINTER}\n")), "{logs}");
        let set = help(&["secret", "set"]);
        assert!(set.contains("--file"), "{set}");
        assert!(!set.contains("--accept-new"), "{set}");
        let serve = help(&["beacon", "serve"]);
        assert!(!serve.contains("--node "), "{serve}");
        assert!(!serve.contains(SHARED_POINTER), "{serve}");
        let top = Cli::command().render_long_help().to_string();
        assert!(top.contains("--node <NODE>"), "{top}");
    }
}
