//! `sporectl`: manage spore nodes over signed RPC.
//!
//! Exit codes: 0 done, 1 the node answered with an error, 2 usage,
//! 3 node unreachable, 4 authentication failed (node key or our key),
//! 5 protocol error, 6 node busy.

#[macro_use]
mod out;
mod beacon;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rpc::beacon::client::Channel;
use rpc::client::{connect, ClientError, Pin, Session};
use rpc::display::{log_line, service_table, text};
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
  secret rm NAME            delete a stored secret
  secret list               names of stored secrets
  reload                    read the service files again, apply what changed
  reboot | poweroff         stop every service in order, then reboot / power off
  nodes --beacon URL        the nodes a beacon lists, with last-seen age
  nodes pending             registrations waiting for an operator's approval
  nodes approve NAME [--fingerprint SHA256:…]
                            list a pending node (signed with your key)
  nodes remove NAME         drop a node from the beacon (signed with your key)
  beacon serve --listen ADDR --data DIR
               [--enrollment-ca FILE [--revoke KEY_ID]…] [--approve]
               [--open] [--authorized-keys FILE] [--allow-rekey]
               [--tls-cert FILE --tls-key FILE]
                            run a beacon; nodes are listed when enrolled by a
                            credential of the CA, or approved, or (--open) always
beacon: https://… (--beacon-ca FILE to trust your own CA), or http:// to a
loopback or mycelium address; --insecure-beacon reads plain http elsewhere,
and fleet commands that change state then refuse its nodes.
fleet: --beacon URL --all COMMAND, or --beacon URL --nodes a,b,c COMMAND, runs
COMMAND on every node concurrently (--concurrency N, default 64), pinning
each node's key to what the beacon published; exit 1 if any node failed;
reboot, poweroff, remove and secret set ask first (--yes: do not ask).
  --address NAME=HOST:PORT  reach node NAME there instead of at its overlay
                            address (a port forward, a NAT); its key is still
                            the one the beacon published (repeatable)
  discover                  the node's OpenRPC document
defaults: --node 127.0.0.1:9999; identity: ssh-agent ($SSH_AUTH_SOCK) else
~/.ssh/id_ed25519; node keys pinned in ~/.config/spore/known_nodes.
exit codes: 1 RPC error, 2 usage or declined, 3 unreachable, 4 authentication,
5 protocol, 6 node busy";

/// The command line.
pub(crate) struct Options {
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
    beacon: Option<String>,
    all: bool,
    only: Option<Vec<String>>,
    addresses: Vec<(String, String)>,
    concurrency: usize,
    listen: String,
    data: PathBuf,
    allow_rekey: bool,
    beacon_ca: Option<PathBuf>,
    insecure_beacon: bool,
    yes: bool,
    fingerprint: Option<String>,
    enrollment_ca: Option<PathBuf>,
    revoke: Vec<String>,
    approve: bool,
    open: bool,
    authorized_keys: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
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
        beacon: None,
        all: false,
        only: None,
        addresses: Vec::new(),
        concurrency: 64,
        listen: "127.0.0.1:8080".into(),
        data: PathBuf::from("beacon-data"),
        allow_rekey: false,
        beacon_ca: None,
        insecure_beacon: false,
        yes: false,
        fingerprint: None,
        enrollment_ca: None,
        revoke: Vec::new(),
        approve: false,
        open: false,
        authorized_keys: None,
        tls_cert: None,
        tls_key: None,
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
            Long("version") | Short('V') => return Err("version".into()),
            Long("start") => options.start = true,
            Long("beacon") => options.beacon = Some(parser.value()?.string()?),
            Long("all") => options.all = true,
            Long("nodes") => {
                let list = parser.value()?.string()?;
                options.only = Some(
                    list.split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            Long("address") => {
                let text = parser.value()?.string()?;
                let (name, address) = text
                    .split_once('=')
                    .filter(|(n, a)| !n.is_empty() && !a.is_empty())
                    .ok_or_else(|| format!("--address `{text}`: expected NAME=HOST:PORT"))?;
                options
                    .addresses
                    .push((name.to_owned(), address.to_owned()));
            }
            Long("concurrency") => options.concurrency = parser.value()?.parse::<usize>()?.max(1),
            Long("listen") => options.listen = parser.value()?.string()?,
            Long("data") => options.data = parser.value()?.into(),
            Long("allow-rekey") => options.allow_rekey = true,
            Long("beacon-ca") => options.beacon_ca = Some(parser.value()?.into()),
            Long("insecure-beacon") => options.insecure_beacon = true,
            Long("yes") | Short('y') => options.yes = true,
            Long("fingerprint") => options.fingerprint = Some(parser.value()?.string()?),
            Long("enrollment-ca") => options.enrollment_ca = Some(parser.value()?.into()),
            Long("revoke") => options.revoke.push(parser.value()?.string()?),
            Long("approve") => options.approve = true,
            Long("open") => options.open = true,
            Long("authorized-keys") => options.authorized_keys = Some(parser.value()?.into()),
            Long("tls-cert") => options.tls_cert = Some(parser.value()?.into()),
            Long("tls-key") => options.tls_key = Some(parser.value()?.into()),
            Long("file") => options.file = Some(parser.value()?.into()),
            Value(value) if options.command.is_empty() => options.command = value.string()?,
            Value(value) if options.name.is_none() => options.name = Some(value.string()?),
            Value(value)
                if matches!(options.command.as_str(), "secret" | "nodes")
                    && options.extra.is_none() =>
            {
                options.extra = Some(value.string()?)
            }
            other => return Err(other.unexpected()),
        }
    }
    if options.command == "beacon" {
        if options.tls_cert.is_some() != options.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together".into());
        }
        return match options.name.as_deref() {
            Some("serve") => Ok(options),
            _ => Err("usage: beacon serve --listen ADDR --data DIR [--enrollment-ca FILE] [--approve] [--open] …".into()),
        };
    }
    if options.command == "nodes" {
        let usage = "usage: nodes --beacon URL [pending | approve NAME | remove NAME]";
        if options.beacon.is_none() {
            return Err(usage.into());
        }
        return match (options.name.as_deref(), options.extra.is_some()) {
            (None | Some("pending"), false) | (Some("approve" | "remove"), true) => Ok(options),
            _ => Err(usage.into()),
        };
    }
    if (options.all || options.only.is_some()) && options.beacon.is_none() {
        return Err("--all and --nodes need --beacon URL".into());
    }
    let fleet = options.all || options.only.is_some();
    if !options.addresses.is_empty() && !fleet {
        return Err("--address applies to fleet commands (--all or --nodes)".into());
    }
    if options.command == "secret" {
        return match (options.name.as_deref(), options.extra.is_some()) {
            (Some("set" | "rm"), true) | (Some("list"), false) => Ok(options),
            _ => Err("usage: secret set NAME [--file F] | secret rm NAME | secret list".into()),
        };
    }
    let needs_name = matches!(
        options.command.as_str(),
        "status" | "start" | "stop" | "restart" | "logs" | "deploy" | "remove"
    );
    let known = needs_name
        || options.command == "nodes"
        || matches!(
            options.command.as_str(),
            "info" | "list" | "reboot" | "poweroff" | "discover" | "reload"
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

/// Asks `question` on the terminal (not stdin: it may carry a secret);
/// `yes` answers it. Without a terminal, declines and says to add --yes.
pub(crate) fn confirm(question: &str, yes: bool) -> Result<(), ClientError> {
    use std::io::{BufRead, Write};
    if yes {
        return Ok(());
    }
    let declined = || {
        ClientError::Declined(format!(
            "{question} not confirmed (no terminal to ask; add --yes)"
        ))
    };
    let Ok(tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return Err(declined());
    };
    let mut out = &tty;
    let _ = write!(out, "{question} [y/N] ");
    let _ = out.flush();
    let mut answer = String::new();
    std::io::BufReader::new(&tty)
        .read_line(&mut answer)
        .map_err(|_| declined())?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
        Ok(())
    } else {
        Err(ClientError::Declined(format!("{question} declined")))
    }
}

/// The one signer for a beacon order: the first key [`identities`] offers.
pub(crate) fn identity(options: &Options) -> Result<Identity, ClientError> {
    identities(options)?
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Auth("no ssh-ed25519 key to sign with".into()))
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

/// Methods a fleet command may send to nodes whose keys came from an
/// unauthenticated beacon: they only read.
const READ_ONLY: &[&str] = &[
    "node.info",
    "service.list",
    "service.status",
    "service.logs",
    "rpc.discover",
    "secret.list",
];

/// Methods a fleet command asks about first (unless --yes).
const ASK_FIRST: &[&str] = &[
    "node.reboot",
    "node.poweroff",
    "service.remove",
    "secret.set",
];

/// The method `request` will send, without reading files or stdin.
fn request_method(options: &Options, plain: &'static str) -> &'static str {
    match (options.command.as_str(), options.name.as_deref()) {
        ("deploy", _) => "service.deploy",
        ("remove", _) => "service.remove",
        ("secret", Some("list")) => "secret.list",
        ("secret", Some("rm")) => "secret.remove",
        ("secret", _) => "secret.set",
        _ => plain,
    }
}

/// The method and parameters for the command (files and stdin read once).
fn request(options: &Options) -> Result<(&'static str, Value), ClientError> {
    let name = options.name.clone().unwrap_or_default();
    Ok(match (options.command.as_str(), name.as_str()) {
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
        ("secret", "rm") => (
            "secret.remove",
            json!({ "name": options.extra.clone().unwrap_or_default() }),
        ),
        ("secret", _) => {
            let value = read_secret(options)?;
            (
                "secret.set",
                json!({ "name": options.extra.clone().unwrap_or_default(), "value": value }),
            )
        }
        _ => plain_method(options, &name),
    })
}

async fn run(options: &Options) -> Result<(), ClientError> {
    let identities = identities(options)?;
    let (pin, record) = pin(options)?;
    let (method, params) = request(options)?;
    let mut session = connect_with_any(&options.node, &identities, &pin).await?;
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
    let result = session.call(method, params).await?;
    print_result(options, &result);
    if options.command == "logs" && options.follow {
        follow(options, &mut session).await?;
    }
    Ok(())
}

/// The keys to offer, in ssh's order: `-i FILE` alone when given; else
/// every ssh-ed25519 key the agent holds (the one of ~/.ssh/id_ed25519.pub
/// first), then ~/.ssh/id_ed25519 itself unless the agent holds it.
pub(crate) fn identities(options: &Options) -> Result<Vec<Identity>, ClientError> {
    let auth = |e: rpc::identity::IdentityError| ClientError::Auth(e.to_string());
    if let Some(path) = &options.identity {
        return Ok(vec![Identity::from_file(path).map_err(auth)?]);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let default_key = home.join(".ssh/id_ed25519");
    let preferred = std::fs::read_to_string(default_key.with_extension("pub"))
        .ok()
        .and_then(|line| ssh_key::PublicKey::from_openssh(line.trim()).ok());
    let mut offered = Vec::new();
    let mut agent_note = None;
    if let Some(socket) = std::env::var_os("SSH_AUTH_SOCK") {
        let socket = PathBuf::from(socket);
        match rpc::agent::Agent::connect(&socket).and_then(|mut a| a.ed25519_keys()) {
            Ok(mut keys) => {
                if let Some(p) = &preferred {
                    keys.sort_by_key(|k| k.key_data() != p.key_data());
                }
                if keys.is_empty() {
                    agent_note = Some("the agent holds no ssh-ed25519 key".to_owned());
                }
                offered.extend(keys.into_iter().map(|key| Identity::Agent {
                    socket: socket.clone(),
                    key,
                }));
            }
            Err(error) => agent_note = Some(format!("ssh-agent: {error}")),
        }
    }
    let in_agent = offered.iter().any(|i| {
        preferred
            .as_ref()
            .is_some_and(|p| i.public().key_data() == p.key_data())
    });
    if !in_agent && default_key.exists() {
        match Identity::from_file(&default_key) {
            Ok(identity) => offered.push(identity),
            Err(error) if offered.is_empty() => return Err(auth(error)),
            Err(error) => eprintln!("sporectl: skipping {}: {error}", default_key.display()),
        }
    }
    if offered.is_empty() {
        return Err(ClientError::Auth(format!(
            "no ssh-ed25519 key in the agent{} or at {}; make one with ssh-keygen -t ed25519, or give one with -i FILE",
            agent_note.map(|n| format!(" ({n})")).unwrap_or_default(),
            default_key.display()
        )));
    }
    Ok(offered)
}

/// Connects with each of `identities` in turn until the node accepts one,
/// as ssh offers each key; when it refuses them all, says which were
/// offered and what to do.
async fn connect_with_any(
    address: &str,
    identities: &[Identity],
    pin: &Pin,
) -> Result<Session, ClientError> {
    let mut refused = Vec::new();
    for identity in identities {
        match connect_patiently(address, identity, pin).await {
            Err(ClientError::KeyRefused(key)) => refused.push(key),
            other => return other,
        }
    }
    Err(ClientError::Auth(format!(
        "the node refused every key offered: {}; add yours to the node's authorized_keys",
        refused.join(", ")
    )))
}

/// Connects; a node that says it is busy, or that shed the connection
/// before its hello (a flood), is asked again after 0.25, 0.5 and 1 s
/// (safe: nothing was sent yet), then the error stands.
async fn connect_patiently(
    address: &str,
    identity: &Identity,
    pin: &Pin,
) -> Result<Session, ClientError> {
    let mut pause = Duration::from_millis(250);
    loop {
        match connect(address, identity, pin, Duration::from_secs(15)).await {
            Err(error @ (ClientError::Busy(_) | ClientError::Shed(_)))
                if pause <= Duration::from_secs(1) =>
            {
                eprintln!(
                    "sporectl: {address}: {error}; retrying in {} ms",
                    pause.as_millis()
                );
                smol::Timer::after(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
}

/// Where to reach a node the beacon lists: its overlay address and RPC port.
fn node_address(record: &Value) -> Option<(String, String, Pin)> {
    let registration = record.get("registration")?;
    let hostname = registration.get("hostname")?.as_str()?.to_owned();
    // A beacon that stored a name no node could register is not followed.
    rpc::hostname::check(&hostname).ok()?;
    let ip: std::net::IpAddr = registration
        .get("mycelium_address")?
        .as_str()?
        .parse()
        .ok()?;
    let port = registration.get("hero_proc_port")?.as_u64()?;
    let key = nodekey::parse_openssh_public(registration.get("hero_proc_auth_pubkey")?.as_str()?)?;
    Some((
        hostname,
        std::net::SocketAddr::new(ip, u16::try_from(port).ok()?).to_string(),
        Pin::Key(key),
    ))
}

/// One node's outcome in a fleet command.
struct Outcome {
    hostname: String,
    result: Result<Value, ClientError>,
}

async fn fleet(options: &Options) -> Result<bool, ClientError> {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::io::IsTerminal;
    use std::rc::Rc;
    if options.follow {
        return Err(ClientError::Protocol(
            "logs -f cannot follow a whole fleet".into(),
        ));
    }
    let beacon = beacon::client(options)?;
    let records = beacon.nodes()?;
    let mut targets: Vec<(String, String, Pin)> = records.iter().filter_map(node_address).collect();
    for (name, address) in &options.addresses {
        let target = targets.iter_mut().find(|(h, _, _)| h == name);
        let Some((_, reach, _)) = target else {
            return Err(ClientError::Protocol(format!(
                "--address {name}=…: the beacon knows no node {name}"
            )));
        };
        *reach = address.clone();
    }
    if let Some(only) = &options.only {
        for wanted in only {
            if !targets.iter().any(|(h, _, _)| h == wanted) {
                return Err(ClientError::Protocol(format!(
                    "the beacon knows no node {wanted}"
                )));
            }
        }
        targets.retain(|(h, _, _)| only.contains(h));
    }
    let (method, _) = plain_method(options, options.name.as_deref().unwrap_or_default());
    let method = request_method(options, method);
    if beacon.channel == Channel::Unauthenticated && !READ_ONLY.contains(&method) {
        return Err(ClientError::Declined(format!(
            "refusing {method} on nodes whose keys came over plain http from {} (--insecure-beacon): a node key from an unauthenticated beacon may be anyone's; use https or a loopback beacon",
            options.beacon.as_deref().unwrap_or_default()
        )));
    }
    if ASK_FIRST.contains(&method) {
        let names: Vec<&str> = targets.iter().map(|(h, _, _)| h.as_str()).take(5).collect();
        let more = targets.len().saturating_sub(names.len());
        confirm(
            &format!(
                "{method} on {} node(s): {}{}?",
                targets.len(),
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            options.yes,
        )?;
    }
    // Files and stdin are read once the command is confirmed.
    let identities = Rc::new(identities(options)?);
    let (method, mut params) = request(options)?;
    let total = targets.len();
    let queue = Rc::new(RefCell::new(targets.into_iter().collect::<VecDeque<_>>()));
    let outcomes = Rc::new(RefCell::new(Vec::with_capacity(total)));
    let progress = std::io::stderr().is_terminal();
    let executor = smol::LocalExecutor::new();
    let workers: Vec<_> = (0..options.concurrency.min(total.max(1)))
        .map(|_| {
            let queue = queue.clone();
            let outcomes = outcomes.clone();
            let identities = identities.clone();
            let mut params = params.clone();
            executor.spawn(async move {
                loop {
                    let job = queue.borrow_mut().pop_front();
                    let Some((hostname, address, pin)) = job else {
                        break;
                    };
                    let result = async {
                        let mut session = connect_with_any(&address, &identities, &pin).await?;
                        session.call(method, params.clone()).await
                    }
                    .await;
                    outcomes.borrow_mut().push(Outcome { hostname, result });
                    if progress {
                        eprint!("\r{}/{total} nodes done", outcomes.borrow().len());
                    }
                }
                runtime::secret::wipe_strings(&mut params);
            })
        })
        .collect();
    executor
        .run(async {
            for worker in workers {
                worker.await;
            }
        })
        .await;
    // A secret.set's value: each node's copy was wiped once sent.
    runtime::secret::wipe_strings(&mut params);
    if progress {
        eprintln!();
    }
    let mut outcomes = Rc::try_unwrap(outcomes)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    outcomes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.hostname.as_str())
        .collect();
    if options.json {
        let rows: Vec<Value> = outcomes
            .iter()
            .map(|o| match &o.result {
                Ok(result) => json!({ "hostname": o.hostname, "ok": true, "result": result }),
                Err(e) => json!({ "hostname": o.hostname, "ok": false, "error": e.to_string(), "exit_code": e.exit_code() }),
            })
            .collect();
        say!("{}", Value::Array(rows));
    } else {
        say!("{:<24} RESULT", "NODE");
        for o in &outcomes {
            match &o.result {
                Ok(result) => say!("{:<24} ok   {}", o.hostname, summary(result)),
                Err(e) => say!("{:<24} FAIL {e}", o.hostname),
            }
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "sporectl: failed on {} of {total} node(s): {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(failed.is_empty())
}

/// One line about a result, for the fleet table.
fn summary(result: &Value) -> String {
    if let Some(list) = result.as_array() {
        let ready = list
            .iter()
            .filter(|s| s["state"] == "ready" || s["state"] == "succeeded")
            .count();
        return format!("{} service(s), {ready} ready or done", list.len());
    }
    if let Some(version) = result.get("version") {
        return format!(
            "{} spore {} up {}s",
            text(result, "hostname"),
            version.as_str().unwrap_or("?"),
            text(result, "uptime_s")
        );
    }
    if result.get("detail").is_some() {
        return format!("{}: {}", text(result, "name"), text(result, "detail"));
    }
    result.to_string().chars().take(80).collect()
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
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            // A person at a terminal: asked, with echo off, one line.
            let name = options.extra.as_deref().unwrap_or_default();
            let typed =
                rpc::identity::read_hidden(&format!("Value for secret {name} (not shown): "))
                    .map_err(|e| ClientError::Declined(format!("cannot read the value: {e}")))?;
            value.push_str(&typed);
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
    if value.is_empty() {
        return Err(ClientError::Declined(
            "the secret is empty (nothing came on stdin or in --file); nothing was stored".into(),
        ));
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
        "reload" => ("node.reload", json!({})),
        "poweroff" => ("node.poweroff", json!({})),
        _ => ("rpc.discover", json!({})),
    }
}

async fn follow(options: &Options, session: &mut Session) -> Result<(), ClientError> {
    loop {
        let note = session.notification().await?;
        let params = note.get("params").cloned().unwrap_or(Value::Null);
        if options.json {
            say!("{params}");
        } else {
            say!("{}", log_line(&params));
        }
    }
}

fn print_result(options: &Options, result: &Value) {
    if options.json {
        say!("{result}");
        return;
    }
    match options.command.as_str() {
        "list" => {
            for row in service_table(result) {
                say!("{row}");
            }
        }
        "logs" => {
            for line in result
                .get("lines")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                say!("{}", log_line(line));
            }
        }
        "start" | "stop" | "restart" | "deploy" => {
            say!("{}: {}", text(result, "name"), text(result, "detail"))
        }
        "remove" => say!("{}: removed", text(result, "name")),
        "secret" if options.name.as_deref() == Some("set") => {
            say!("{}: stored", text(result, "name"));
            let services = |key: &str| {
                result
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            for service in services("restarted") {
                say!("{service}: restarted to load it");
            }
            for service in services("signalled") {
                say!("{service}: told to read it again");
            }
        }
        "secret" if options.name.as_deref() == Some("rm") => {
            say!("{}: removed", text(result, "name"))
        }
        "secret" => {
            for name in result.as_array().into_iter().flatten() {
                say!("{}", name.as_str().unwrap_or_default());
            }
        }
        _ => say!(
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        ),
    }
}

fn main() -> ExitCode {
    let options = match parse(std::env::args_os().skip(1).collect()) {
        Ok(options) => options,
        Err(error) if error.to_string() == "help" => {
            say!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) if error.to_string() == "version" => {
            say!("sporectl {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("sporectl: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.command == "beacon" {
        return beacon::serve(&options);
    }
    if options.command == "nodes" {
        return match beacon::nodes(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("sporectl: {error}");
                ExitCode::from(error.exit_code())
            }
        };
    }
    if options.all || options.only.is_some() {
        return match smol::block_on(fleet(&options)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(error) => {
                eprintln!("sporectl: {error}");
                ExitCode::from(error.exit_code())
            }
        };
    }
    match smol::block_on(run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sporectl: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
