//! Command-line parsing for `spore` (lexopt: tiny, no proc macros, keeps the
//! static binary small).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::client::Request;

/// Usage text printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage:
  spore                              as PID 1: boot the node (mounts, modules, network, services)
  spore run [--config-dir DIR] [--state-dir DIR] [--socket PATH]
                                     supervise DIR/services as a child subreaper (not PID 1)
  spore exec [-g] [--] CMD [ARGS...] container entry: run CMD, forward signals, reap orphans
  spore call-home [--config-dir DIR] [--state-dir DIR]
                                     register with the beacon ([beacon] in spore.toml)
  spore check DIR [--json]           validate service files and print the start plan
  spore [--socket PATH] [--json] status | info | show NAME | start NAME | stop NAME
        | restart NAME | logs NAME [-n LINES] [-f] | reboot | poweroff
                                     talk to a running spore (default socket:
                                     $SPORE_SOCKET or /run/spore/spore.sock)
  spore --version | --help

signals to spore as PID 1: SIGTERM, SIGUSR2, SIGPWR power off; SIGINT
(ctrl-alt-del) reboots; SIGUSR1 halts. Services stop in reverse order first.";

/// Every subcommand word.
pub const COMMANDS: &[&str] = &[
    "call-home",
    "run",
    "exec",
    "check",
    "status",
    "info",
    "show",
    "start",
    "stop",
    "restart",
    "logs",
    "reboot",
    "poweroff",
];

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// No arguments: the init (only meaningful as PID 1).
    Init,
    /// `spore run`.
    Run {
        /// Holds spore.toml and services/.
        config_dir: PathBuf,
        /// Node key, secrets.
        state_dir: PathBuf,
        /// Control socket; default STATE_DIR/spore.sock.
        socket: Option<PathBuf>,
    },
    /// `spore call-home`.
    CallHome {
        /// Holds spore.toml.
        config_dir: PathBuf,
        /// Holds the node key.
        state_dir: PathBuf,
    },
    /// `spore exec`.
    Exec {
        /// Signal the child's process group.
        group: bool,
        /// The command.
        argv: Vec<OsString>,
    },
    /// `spore check DIR [--json]`.
    Check {
        /// The directory of service files.
        dir: PathBuf,
        /// Machine-readable output.
        json: bool,
    },
    /// A request to a running spore.
    Client {
        /// Its control socket.
        socket: Option<PathBuf>,
        /// Print raw JSON.
        json: bool,
        /// What to ask.
        request: Request,
    },
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut socket = None;
    let mut json = false;
    let command = loop {
        match parser.next()? {
            Some(Value(command)) => break command.string()?,
            Some(Long("help") | Short('h')) => return Ok(Invocation::Help),
            Some(Long("version") | Short('V')) => return Ok(Invocation::Version),
            Some(Long("socket")) => socket = Some(PathBuf::from(parser.value()?)),
            Some(Long("json")) => json = true,
            Some(other) => return Err(other.unexpected()),
            None if socket.is_none() && !json => return Ok(Invocation::Init),
            None => return Err("missing a command".into()),
        }
    };
    let client = |request| {
        Ok(Invocation::Client {
            socket: socket.clone(),
            json,
            request,
        })
    };
    match command.as_str() {
        "run" => {
            let (config_dir, state_dir) = directories(&mut parser, Some(&mut socket))?;
            Ok(Invocation::Run {
                config_dir,
                state_dir,
                socket,
            })
        }
        "call-home" => {
            let (config_dir, state_dir) = directories(&mut parser, None)?;
            Ok(Invocation::CallHome {
                config_dir,
                state_dir,
            })
        }
        "exec" => {
            let mut group = false;
            let mut argv = Vec::new();
            while let Some(arg) = parser.next()? {
                match arg {
                    Short('g') if argv.is_empty() => group = true,
                    Value(value) => {
                        argv.push(value);
                        argv.extend(parser.raw_args()?);
                    }
                    other => return Err(other.unexpected()),
                }
            }
            if argv.is_empty() {
                return Err("`exec` needs a command".into());
            }
            Ok(Invocation::Exec { group, argv })
        }
        "check" => {
            let mut dir = None;
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("json") => json = true,
                    Value(value) if dir.is_none() => dir = Some(PathBuf::from(value)),
                    other => return Err(other.unexpected()),
                }
            }
            let dir = dir.ok_or("`check` needs a directory")?;
            Ok(Invocation::Check { dir, json })
        }
        "status" | "info" | "reboot" | "poweroff" => {
            if let Some(arg) = parser.next()? {
                return Err(arg.unexpected());
            }
            client(match command.as_str() {
                "status" => Request::Status,
                "info" => Request::Info,
                "reboot" => Request::Reboot,
                _ => Request::Poweroff,
            })
        }
        "show" | "start" | "stop" | "restart" => {
            let name = match parser.next()? {
                Some(Value(name)) => name.string()?,
                Some(other) => return Err(other.unexpected()),
                None => return Err(format!("`{command}` needs a service name").into()),
            };
            if let Some(arg) = parser.next()? {
                return Err(arg.unexpected());
            }
            client(match command.as_str() {
                "show" => Request::Show(name),
                "start" => Request::Start(name),
                "stop" => Request::Stop(name),
                _ => Request::Restart(name),
            })
        }
        "logs" => {
            let mut name = None;
            let mut lines = 100;
            let mut follow = false;
            while let Some(arg) = parser.next()? {
                match arg {
                    Short('f') | Long("follow") => follow = true,
                    Short('n') | Long("lines") => lines = parser.value()?.parse()?,
                    Long("json") => json = true,
                    Value(value) if name.is_none() => name = Some(value.string()?),
                    other => return Err(other.unexpected()),
                }
            }
            let name = name.ok_or("`logs` needs a service name")?;
            Ok(Invocation::Client {
                socket,
                json,
                request: Request::Logs {
                    name,
                    lines,
                    follow,
                },
            })
        }
        other => Err(format!("unknown command `{other}`").into()),
    }
}

/// `--config-dir` and `--state-dir` (default /etc/spore, /var/lib/spore),
/// and `--socket` where the command takes one.
fn directories(
    parser: &mut lexopt::Parser,
    mut socket: Option<&mut Option<PathBuf>>,
) -> Result<(PathBuf, PathBuf), lexopt::Error> {
    use lexopt::prelude::*;
    let mut config_dir = PathBuf::from("/etc/spore");
    let mut state_dir = PathBuf::from("/var/lib/spore");
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config-dir") => config_dir = parser.value()?.into(),
            Long("state-dir") => state_dir = parser.value()?.into(),
            Long("socket") if socket.is_some() => {
                if let Some(slot) = socket.as_deref_mut() {
                    *slot = Some(parser.value()?.into());
                }
            }
            other => return Err(other.unexpected()),
        }
    }
    Ok((config_dir, state_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(list: &[&str]) -> Result<Invocation, lexopt::Error> {
        parse(list.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn no_arguments_means_init() {
        assert_eq!(parse_args(&[]).unwrap(), Invocation::Init);
    }

    #[test]
    fn check_takes_a_directory_and_json_flag() {
        assert_eq!(
            parse_args(&["check", "d", "--json"]).unwrap(),
            Invocation::Check {
                dir: "d".into(),
                json: true
            }
        );
    }

    #[test]
    fn run_takes_directories_and_a_socket() {
        assert_eq!(
            parse_args(&[
                "run",
                "--config-dir",
                "c",
                "--state-dir",
                "s",
                "--socket",
                "x.sock"
            ])
            .unwrap(),
            Invocation::Run {
                config_dir: "c".into(),
                state_dir: "s".into(),
                socket: Some("x.sock".into())
            }
        );
    }

    #[test]
    fn exec_keeps_the_command_and_its_flags_verbatim() {
        assert_eq!(
            parse_args(&["exec", "-g", "--", "sh", "-c", "exit 3"]).unwrap(),
            Invocation::Exec {
                group: true,
                argv: vec!["sh".into(), "-c".into(), "exit 3".into()]
            }
        );
        assert_eq!(
            parse_args(&["exec", "ls", "-l"]).unwrap(),
            Invocation::Exec {
                group: false,
                argv: vec!["ls".into(), "-l".into()]
            }
        );
    }

    #[test]
    fn client_commands_take_global_socket_and_json() {
        assert_eq!(
            parse_args(&["--socket", "s", "--json", "logs", "web", "-f", "-n", "5"]).unwrap(),
            Invocation::Client {
                socket: Some("s".into()),
                json: true,
                request: Request::Logs {
                    name: "web".into(),
                    lines: 5,
                    follow: true
                }
            }
        );
        assert_eq!(
            parse_args(&["restart", "web"]).unwrap(),
            Invocation::Client {
                socket: None,
                json: false,
                request: Request::Restart("web".into())
            }
        );
    }

    #[test]
    fn bad_usage_is_an_error() {
        for args in [
            &["check"][..],
            &["frobnicate"],
            &["check", "a", "b"],
            &["start"],
            &["exec"],
            &["status", "x"],
        ] {
            assert!(parse_args(args).is_err(), "{args:?}");
        }
    }
}
