//! `sporectl`: manage spore nodes over signed RPC.
//!
//! Exit codes: 0 done, 1 the node answered with an error, 2 usage,
//! 3 node unreachable, 4 authentication failed (node key or our key),
//! 5 protocol error.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rpc::client::{connect, ClientError, Pin, Session};
use rpc::identity::Identity;
use rpc::{nodekey, pins};
use serde_json::{json, Value};

const USAGE: &str = "\
usage: sporectl [--node ADDR] [--identity FILE] [--node-key 'ssh-ed25519 AAAA…']
                [--known-nodes FILE] [--accept-new] [--json] COMMAND
commands:
  info                      node.info
  list                      every service and its state
  status NAME               one service in detail
  start|stop|restart NAME   change a service
  logs NAME [-n N] [-f]     its output (follow with -f)
  deploy FILE [--start]     add or replace the service in FILE (validated whole)
  remove NAME               stop a service and delete its file
  secret set NAME [--file F] store a secret read from F or stdin (never argv)
  secret list               names of stored secrets
  reboot | poweroff         stop every service in order, then reboot / power off
  discover                  the node's OpenRPC document
defaults: --node 127.0.0.1:9999; identity: ssh-agent ($SSH_AUTH_SOCK) else
~/.ssh/id_ed25519; node keys pinned in ~/.config/spore/known_nodes.
exit codes: 1 RPC error, 2 usage, 3 unreachable, 4 authentication, 5 protocol";

struct Options {
    node: String,
    identity: Option<PathBuf>,
    node_key: Option<String>,
    known_nodes: PathBuf,
    accept_new: bool,
    json: bool,
    command: String,
    name: Option<String>,
    lines: u64,
    follow: bool,
    start: bool,
    file: Option<PathBuf>,
    extra: Option<String>,
}

fn parse(args: Vec<OsString>) -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut options = Options {
        node: "127.0.0.1:9999".into(),
        identity: None,
        node_key: None,
        known_nodes: pins::default_path(),
        accept_new: false,
        json: false,
        command: String::new(),
        name: None,
        lines: 100,
        follow: false,
        start: false,
        file: None,
        extra: None,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("node") => options.node = parser.value()?.string()?,
            Long("identity") | Short('i') => options.identity = Some(parser.value()?.into()),
            Long("node-key") => options.node_key = Some(parser.value()?.string()?),
            Long("known-nodes") => options.known_nodes = parser.value()?.into(),
            Long("accept-new") => options.accept_new = true,
            Long("json") => options.json = true,
            Short('f') | Long("follow") => options.follow = true,
            Short('n') | Long("lines") => options.lines = parser.value()?.parse()?,
            Long("help") | Short('h') => return Err("help".into()),
            Long("start") => options.start = true,
            Long("file") => options.file = Some(parser.value()?.into()),
            Value(value) if options.command.is_empty() => options.command = value.string()?,
            Value(value) if options.name.is_none() => options.name = Some(value.string()?),
            Value(value) if options.command == "secret" && options.extra.is_none() => {
                options.extra = Some(value.string()?)
            }
            other => return Err(other.unexpected()),
        }
    }
    if options.command == "secret" {
        return match (options.name.as_deref(), options.extra.is_some()) {
            (Some("set"), true) | (Some("list"), false) => Ok(options),
            _ => Err("usage: secret set NAME [--file F] | secret list".into()),
        };
    }
    let needs_name = matches!(
        options.command.as_str(),
        "status" | "start" | "stop" | "restart" | "logs" | "deploy" | "remove"
    );
    let known = needs_name
        || matches!(
            options.command.as_str(),
            "info" | "list" | "reboot" | "poweroff" | "discover"
        );
    if !known {
        return Err(format!("unknown command `{}`", options.command).into());
    }
    if needs_name != options.name.is_some() {
        return Err(format!(
            "`{}` {}",
            options.command,
            if needs_name {
                "needs a service name"
            } else {
                "takes no name"
            }
        )
        .into());
    }
    Ok(options)
}

fn identity(options: &Options) -> Result<Identity, ClientError> {
    let auth = |e: rpc::identity::IdentityError| ClientError::Auth(e.to_string());
    if let Some(path) = &options.identity {
        return Identity::from_file(path).map_err(auth);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let default_key = home.join(".ssh/id_ed25519");
    if let Some(socket) = std::env::var_os("SSH_AUTH_SOCK") {
        let preferred = std::fs::read_to_string(default_key.with_extension("pub"))
            .ok()
            .and_then(|line| ssh_key::PublicKey::from_openssh(line.trim()).ok());
        if let Ok(identity) =
            Identity::from_agent(PathBuf::from(socket).as_path(), preferred.as_ref())
        {
            return Ok(identity);
        }
    }
    Identity::from_file(&default_key).map_err(auth)
}

fn pin(options: &Options) -> Result<(Pin, bool), ClientError> {
    if let Some(text) = &options.node_key {
        let key = nodekey::parse_openssh_public(text).ok_or_else(|| {
            ClientError::Auth(format!(
                "--node-key `{text}` is not an ssh-ed25519 public key"
            ))
        })?;
        return Ok((Pin::Key(key), false));
    }
    if let Some(key) = pins::lookup(&options.known_nodes, &options.node) {
        return Ok((Pin::Key(key), false));
    }
    if options.accept_new {
        return Ok((Pin::AcceptAny, true));
    }
    Err(ClientError::Auth(format!(
        "{} is not in {}; pin its key with --node-key or connect once with --accept-new",
        options.node,
        options.known_nodes.display()
    )))
}

async fn run(options: &Options) -> Result<(), ClientError> {
    let identity = identity(options)?;
    let (pin, record) = pin(options)?;
    let mut session = connect(&options.node, &identity, &pin, Duration::from_secs(15)).await?;
    if record {
        pins::remember(&options.known_nodes, &options.node, &session.node_key)
            .map_err(|e| ClientError::Protocol(format!("cannot record the node key: {e}")))?;
        eprintln!(
            "sporectl: pinned {} as {} in {}",
            options.node,
            nodekey::fingerprint(&session.node_key),
            options.known_nodes.display()
        );
    }
    let name = options.name.clone().unwrap_or_default();
    let (method, params) = match (options.command.as_str(), name.as_str()) {
        ("deploy", file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| ClientError::Protocol(format!("cannot read {file}: {e}")))?;
            (
                "service.deploy",
                json!({ "toml": text, "start": options.start }),
            )
        }
        ("remove", _) => ("service.remove", json!({ "name": name })),
        ("secret", "list") => ("secret.list", json!({})),
        ("secret", _) => {
            let value = read_secret(options)?;
            (
                "secret.set",
                json!({ "name": options.extra.clone().unwrap_or_default(), "value": value }),
            )
        }
        _ => plain_method(options, &name),
    };
    let result = session.call(method, params).await?;
    print_result(options, &result);
    if options.command == "logs" && options.follow {
        follow(options, &mut session).await?;
    }
    Ok(())
}

/// A secret's value from `--file` or stdin, without a trailing newline.
fn read_secret(options: &Options) -> Result<String, ClientError> {
    use std::io::Read;
    let mut value = String::new();
    match &options.file {
        Some(path) => {
            value = std::fs::read_to_string(path).map_err(|e| {
                ClientError::Protocol(format!("cannot read {}: {e}", path.display()))
            })?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| ClientError::Protocol(format!("cannot read stdin: {e}")))?;
        }
    }
    if value.ends_with('\n') {
        value.pop();
    }
    Ok(value)
}

fn plain_method(options: &Options, name: &str) -> (&'static str, Value) {
    match options.command.as_str() {
        "info" => ("node.info", json!({})),
        "list" => ("service.list", json!({})),
        "status" => ("service.status", json!({ "name": name })),
        "start" => ("service.start", json!({ "name": name })),
        "stop" => ("service.stop", json!({ "name": name })),
        "restart" => ("service.restart", json!({ "name": name })),
        "logs" => (
            "service.logs",
            json!({ "name": name, "lines": options.lines, "follow": options.follow }),
        ),
        "reboot" => ("node.reboot", json!({})),
        "poweroff" => ("node.poweroff", json!({})),
        _ => ("rpc.discover", json!({})),
    }
}

async fn follow(options: &Options, session: &mut Session) -> Result<(), ClientError> {
    loop {
        let note = session.notification().await?;
        let params = note.get("params").cloned().unwrap_or(Value::Null);
        if options.json {
            println!("{params}");
        } else {
            println!("{}", log_line(&params));
        }
    }
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn log_line(line: &Value) -> String {
    format!(
        "{} {} {}",
        text(line, "time"),
        text(line, "stream"),
        text(line, "text")
    )
}

fn print_result(options: &Options, result: &Value) {
    if options.json {
        println!("{result}");
        return;
    }
    match options.command.as_str() {
        "list" => {
            println!(
                "{:<24} {:<9} {:<10} {:>8}  DETAIL",
                "SERVICE", "KIND", "STATE", "PID"
            );
            for s in result.as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<9} {:<10} {:>8}  {}",
                    text(s, "name"),
                    text(s, "kind"),
                    text(s, "state"),
                    text(s, "pid"),
                    text(s, "detail")
                );
            }
        }
        "logs" => {
            for line in result
                .get("lines")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!("{}", log_line(line));
            }
        }
        "start" | "stop" | "restart" | "deploy" => {
            println!("{}: {}", text(result, "name"), text(result, "detail"))
        }
        "remove" => println!("{}: removed", text(result, "name")),
        "secret" if options.name.as_deref() == Some("set") => {
            println!("{}: stored", text(result, "name"))
        }
        "secret" => {
            for name in result.as_array().into_iter().flatten() {
                println!("{}", name.as_str().unwrap_or_default());
            }
        }
        _ => println!(
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        ),
    }
}

fn main() -> ExitCode {
    let options = match parse(std::env::args_os().skip(1).collect()) {
        Ok(options) => options,
        Err(error) if error.to_string() == "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("sporectl: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match smol::block_on(run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sporectl: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
