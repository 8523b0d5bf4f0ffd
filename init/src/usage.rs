//! What spore says it does: the usage text `--help` prints and `spore man`
//! is made from, and every command word (for suggestions and completions).

/// Usage text printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage:
  spore                              as PID 1: boot the node (mounts, modules, network, services)
  spore run [--config-dir DIR] [--state-dir DIR] [--socket PATH]
                                     supervise DIR/services as a child subreaper (not PID 1)
  spore exec [-g] [--] CMD [ARGS...] container entry: run CMD, forward signals, reap orphans
  spore call-home [--config-dir DIR] [--state-dir DIR]
                                     register with the beacon ([beacon] in spore.toml)
  spore check PATH... [--json]       validate service files, directories of them and
                                     spore.toml; print the start plan
  spore [--socket PATH] [--json] COMMAND
                                     talk to the spore on this machine with sporectl's
                                     verbs (socket: --socket, $SPORE_SOCKET,
                                     /run/spore/spore.sock, /var/lib/spore/spore.sock)
commands:
  spore info                         the node: version, uptime, services, listeners
  spore list                         every service and its state
  spore status NAME...               services in detail (no NAME: list); exit 0 all
                                     running, 3 one is not, 4 one is unknown
  spore is-active NAME...            print each state; exit 0 when all run, else 3
  spore is-failed NAME...            print each state; exit 0 when one failed, else 1
  spore start NAME... [--no-wait] [--timeout 60s]
                                     start, and wait until each is ready or has failed
  spore restart NAME... [--no-wait] [--timeout 60s]
                                     restart, and wait until each is ready or has failed
  spore stop NAME...                 stop services
  spore logs [NAME] [-n LINES] [-f] [--since WHEN] [--until WHEN] [--boot -N] [-p LEVEL]
                                     a service's output (`logs spore`: spore's own journal;
                                     no NAME: every service and spore, merged by time);
                                     WHEN: 10m ago, today, 2026-12-07T03:00:00Z (UTC);
                                     --boot -1: what the start of spore before this kept;
                                     -p err: only lines that urgent (<N> first, stderr: err)
  spore deploy FILE... [--start] [--no-wait] [--timeout 60s]
                                     add or replace services (checked as `spore check` does)
  spore remove NAME...               stop services and delete their files
  spore reload                       read the service files again, apply what changed
  spore reexec [BINARY]              exec BINARY (default: this spore's) in place of the
                                     running spore, every service kept (a live re-exec)
  spore secret set NAME [--file F] | secret list | secret rm NAME
                                     secrets (a value from F, a prompt, or stdin)
  spore artifact put FILE... | artifact list | artifact rm SHA256...
                                     files named by their SHA-256, verified on the node
  spore reboot | poweroff | discover
  spore man | completions bash|zsh|fish
                                     the manual page (roff), a completion script
  spore --version | --help | COMMAND --help

signals to spore as PID 1: SIGTERM, SIGUSR2, SIGPWR power off; SIGINT
(ctrl-alt-del) reboots; SIGUSR1 halts; SIGHUP reloads. Services stop in reverse
order first.";

/// Every subcommand word.
pub const COMMANDS: &[&str] = &[
    "call-home",
    "run",
    "exec",
    "check",
    "info",
    "list",
    "status",
    "is-active",
    "is-failed",
    "show",
    "start",
    "stop",
    "restart",
    "logs",
    "deploy",
    "remove",
    "reload",
    "reexec",
    "secret",
    "artifact",
    "reboot",
    "poweroff",
    "discover",
    "man",
    "completions",
];
