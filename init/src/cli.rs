//! Command-line parsing for `spore` (lexopt: tiny, no proc macros, keeps the
//! static binary small).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::client::Request;
use rpc::verbs::Verb;

pub use crate::usage::{COMMANDS, USAGE};

/// The usage of one command (its lines of [`USAGE`]), for `spore COMMAND
/// --help`.
pub fn command_usage(command: &str) -> Option<String> {
    let words = [
        format!("  spore {command} "),
        format!("  spore {command}\n"),
    ];
    let mut lines = USAGE.lines().peekable();
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        let with_newline = format!("{line}\n");
        if words.iter().any(|w| with_newline.starts_with(w.as_str())) {
            out.push(line.trim().to_owned());
            while let Some(more) = lines.next_if(|l| l.starts_with("        ")) {
                out.push(format!("    {}", more.trim()));
            }
        }
    }
    (!out.is_empty()).then(|| format!("usage: {}", out.join("\n")))
}

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
        /// A cgroup2 directory delegated to spore (`--cgroup`).
        cgroup: Option<PathBuf>,
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
    /// `spore check PATH... [--json]`.
    Check {
        /// Service files, directories of them, spore.toml.
        paths: Vec<PathBuf>,
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
    /// `COMMAND --help`: that command's usage.
    CommandHelp(String),
    /// `--version`.
    Version,
    /// `spore man`, `spore completions SHELL`: text to print.
    Print(String),
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
    match command.as_str() {
        "run" => {
            let mut cgroup = None;
            let Some((config_dir, state_dir)) =
                directories_with(&mut parser, Some(&mut socket), Some(&mut cgroup))?
            else {
                return Ok(Invocation::CommandHelp(command));
            };
            Ok(Invocation::Run {
                config_dir,
                state_dir,
                socket,
                cgroup,
            })
        }
        "call-home" => {
            let Some((config_dir, state_dir)) = directories(&mut parser, None)? else {
                return Ok(Invocation::CommandHelp(command));
            };
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
                    Long("help") | Short('h') if argv.is_empty() => {
                        return Ok(Invocation::CommandHelp(command))
                    }
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
        "man" => match parser.next()? {
            None => Ok(Invocation::Print(crate::manual::page())),
            Some(Long("help") | Short('h')) => Ok(Invocation::CommandHelp(command)),
            Some(other) => Err(other.unexpected()),
        },
        "completions" => match parser.next()? {
            Some(Long("help") | Short('h')) => Ok(Invocation::CommandHelp(command)),
            Some(Value(shell)) => {
                let shell = shell.string()?;
                crate::manual::completions(&shell)
                    .map(Invocation::Print)
                    .ok_or_else(|| {
                        format!(
                            "no completions for `{shell}`; shells: {}",
                            crate::manual::SHELLS.join(", ")
                        )
                        .into()
                    })
            }
            Some(other) => Err(other.unexpected()),
            None => Err("`completions` needs a shell: bash, zsh or fish".into()),
        },
        "check" => {
            let mut paths = Vec::new();
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("json") => json = true,
                    Long("help") | Short('h') => return Ok(Invocation::CommandHelp(command)),
                    Value(value) => paths.push(PathBuf::from(value)),
                    other => return Err(other.unexpected()),
                }
            }
            if paths.is_empty() {
                return Err("`check` needs a path: service files, a directory, spore.toml".into());
            }
            Ok(Invocation::Check { paths, json })
        }
        _ => {
            let mut request = Request::new(&command)?;
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("help") | Short('h') => return Ok(Invocation::CommandHelp(command)),
                    Long("json") => json = true,
                    Short('f') | Long("follow") if request.verb == Verb::Logs => {
                        request.shape.follow = true
                    }
                    Short('n') | Long("lines") if request.verb == Verb::Logs => {
                        request.shape.lines = parser.value()?.parse()?
                    }
                    Short('S') | Long("since") if request.verb == Verb::Logs => {
                        let text = parser.value()?.string()?;
                        request.shape.since = Some(rpc::verbs::parse_moment(&text)?);
                    }
                    Short('p') | Long("priority") if request.verb == Verb::Logs => {
                        let text = parser.value()?.string()?;
                        request.shape.priority = Some(rpc::verbs::parse_priority(&text)?);
                    }
                    Short('b') | Long("boot") if request.verb == Verb::Logs => {
                        let text = parser.value()?.string()?;
                        request.shape.boot = Some(rpc::verbs::parse_boot(&text)?);
                    }
                    Short('U') | Long("until") if request.verb == Verb::Logs => {
                        let text = parser.value()?.string()?;
                        request.shape.until = Some(rpc::verbs::parse_moment(&text)?);
                    }
                    Long("start") if request.verb == Verb::Deploy => request.shape.start = true,
                    Long("no-wait") if request.waits() => request.shape.wait = None,
                    Long("timeout") if request.waits() => {
                        let text = parser.value()?.string()?;
                        request.shape.wait = Some(rpc::verbs::parse_duration(&text)?);
                    }
                    Long("file") if request.verb == Verb::SecretSet => {
                        request.secret_file = Some(parser.value()?.into())
                    }
                    Value(value) => request.push(value.string()?)?,
                    other => return Err(other.unexpected()),
                }
            }
            request.finish()?;
            Ok(Invocation::Client {
                socket,
                json,
                request,
            })
        }
    }
}

/// `--config-dir` and `--state-dir` (default /etc/spore, /var/lib/spore),
/// and `--socket` where the command takes one; None for `--help`.
fn directories(
    parser: &mut lexopt::Parser,
    socket: Option<&mut Option<PathBuf>>,
) -> Result<Option<(PathBuf, PathBuf)>, lexopt::Error> {
    directories_with(parser, socket, None)
}

/// [`directories`], and `--cgroup` where the command takes it (`run`).
fn directories_with(
    parser: &mut lexopt::Parser,
    mut socket: Option<&mut Option<PathBuf>>,
    mut cgroup: Option<&mut Option<PathBuf>>,
) -> Result<Option<(PathBuf, PathBuf)>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut config_dir = PathBuf::from("/etc/spore");
    let mut state_dir = PathBuf::from("/var/lib/spore");
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config-dir") => config_dir = parser.value()?.into(),
            Long("state-dir") => state_dir = parser.value()?.into(),
            Long("help") | Short('h') => return Ok(None),
            Long("socket") if socket.is_some() => {
                if let Some(slot) = socket.as_deref_mut() {
                    *slot = Some(parser.value()?.into());
                }
            }
            Long("cgroup") if cgroup.is_some() => {
                if let Some(slot) = cgroup.as_deref_mut() {
                    *slot = Some(parser.value()?.into());
                }
            }
            other => return Err(other.unexpected()),
        }
    }
    Ok(Some((config_dir, state_dir)))
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
                paths: vec!["d".into()],
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
                socket: Some("x.sock".into()),
                cgroup: None,
            }
        );
        assert!(matches!(
            parse_args(&["run", "--cgroup", "/sys/fs/cgroup/spore"]).unwrap(),
            Invocation::Run { cgroup: Some(c), .. } if c == std::path::Path::new("/sys/fs/cgroup/spore")
        ));
        assert!(parse_args(&["call-home", "--cgroup", "x"]).is_err());
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

    fn request(args: &[&str]) -> Request {
        match parse_args(args).unwrap() {
            Invocation::Client { request, .. } => request,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn client_commands_take_global_socket_and_json() {
        let Invocation::Client {
            socket,
            json,
            request,
        } = parse_args(&["--socket", "s", "--json", "logs", "web", "-f", "-n", "5"]).unwrap()
        else {
            panic!("not a client command");
        };
        assert_eq!((socket, json), (Some("s".into()), true));
        assert_eq!(request.verb, Verb::Logs);
        assert_eq!(request.operands, ["web"]);
        assert_eq!((request.shape.lines, request.shape.follow), (5, true));
    }

    #[test]
    fn the_verbs_are_sporectls() {
        let restart = request(&["restart", "web", "db", "--timeout", "30s"]);
        assert_eq!(restart.verb, Verb::Restart);
        assert_eq!(restart.operands, ["web", "db"]);
        assert_eq!(restart.shape.wait, Some(std::time::Duration::from_secs(30)));
        assert_eq!(request(&["start", "web", "--no-wait"]).shape.wait, None);
        assert_eq!(request(&["status"]).verb, Verb::List);
        assert_eq!(request(&["show", "web"]).verb, Verb::Status);
        assert_eq!(request(&["status", "web", "db"]).operands, ["web", "db"]);
        let set = request(&["secret", "set", "token", "--file", "f"]);
        assert_eq!(
            (set.verb, set.operands.clone()),
            (Verb::SecretSet, vec!["token".to_owned()])
        );
        assert_eq!(set.secret_file, Some("f".into()));
        assert_eq!(request(&["secret", "list"]).verb, Verb::SecretList);
        assert!(request(&["deploy", "a.toml", "--start"]).shape.start);
        assert!(matches!(
            parse_args(&["logs", "--help"]).unwrap(),
            Invocation::CommandHelp(c) if c == "logs"
        ));
        assert!(matches!(
            parse_args(&["run", "--help"]).unwrap(),
            Invocation::CommandHelp(_)
        ));
        let help = command_usage("logs").unwrap();
        assert!(help.starts_with("usage: spore logs [NAME]"), "{help}");
        assert!(command_usage("start").unwrap().contains("--no-wait"));
    }

    #[test]
    fn bad_usage_is_an_error() {
        for args in [
            &["check"][..],
            &["frobnicate"],
            &["start"],
            &["exec"],
            &["list", "x"],
            &["logs", "a", "b"],
            &["secret", "frob"],
            &["stop", "--start", "x"],
        ] {
            assert!(parse_args(args).is_err(), "{args:?}");
        }
    }
}
