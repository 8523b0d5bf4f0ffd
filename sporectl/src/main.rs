//! `sporectl`: manage spore nodes over signed RPC.
//!
//! Exit codes: 0 done, 1 the node answered with an error, 2 usage,
//! 3 node unreachable, 4 authentication failed (node key or our key),
//! 5 protocol error, 6 node busy.
//!
//! This crate is the operator's binary: its command line (clap, completions,
//! man page) and the fleet commands. It sits on top: `rpc` for the signed
//! calls, `beacon` for the fleet list and `sporectl beacon serve`.

#[macro_use]
mod out;
mod beacon_commands;
mod cli;
mod fleet;
mod reexec;
mod rollout;
mod ship;
mod trust;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use beacon::client::Channel;
use rpc::client::{connect, ClientError, Pin, Session};
use rpc::display::log_line;
use rpc::identity::Identity;
use rpc::verbs::{self, Shape, Verb};
use rpc::{nodekey, pins};
use serde_json::{json, Value};
pub(crate) use trust::{confirm, identities, identity};
use trust::{known_nodes, pin};

/// The command line, as the commands use it (see [`cli`]).
pub(crate) struct Options {
    node: String,
    identity: Option<PathBuf>,
    node_key: Option<String>,
    known_nodes: PathBuf,
    accept_new: bool,
    json: bool,
    /// What to do: a call to nodes, or one of the commands that talk to
    /// the beacon or the local pins instead.
    task: Task,
    /// The call's operands: services or files.
    names: Vec<String>,
    /// The verb, for commands that talk to nodes.
    verb: Option<Verb>,
    /// How its calls are made (lines, follow, start, wait).
    shape: Shape,
    /// `secret set --file`.
    file: Option<PathBuf>,
    /// `deploy --artifact NAME=PATH`: local files for what a service pins.
    artifact_files: Vec<(String, PathBuf)>,
    beacon: Option<String>,
    all: bool,
    only: Option<Vec<String>>,
    /// `--label KEY=VALUE`: what a fleet node's registration must carry.
    labels: Vec<(String, String)>,
    addresses: Vec<(String, String)>,
    concurrency: usize,
    beacon_ca: Option<PathBuf>,
    insecure_beacon: bool,
    yes: bool,
    /// How long a connection and handshake may take.
    connect_timeout: Duration,
    /// How long a call may take to be answered, beyond any wait it asked
    /// for (a node that went away mid-call sends no reset: without this,
    /// sporectl would wait for ever).
    call_timeout: Duration,
    /// `--all status` with no name: one row per node.
    summary: bool,
    /// `status --failed`: only what is wrong.
    failed_only: bool,
}

/// What a command line asks for, as its own type (not a word to compare).
pub(crate) enum Task {
    /// Calls to a node, or to every node of a fleet ([`Options::verb`]).
    Call,
    /// `sporectl beacon serve`.
    Serve(Box<beacon_commands::ServeOptions>),
    /// `sporectl nodes …`: the beacon's list and orders.
    Nodes(NodesAction),
    /// `sporectl known-nodes …`: the local pins.
    KnownNodes(KnownNodesAction),
    /// `sporectl artifact publish FILE…`: to the beacon's cache.
    Publish(Vec<PathBuf>),
    /// `sporectl artifact unpublish SHA256…`: out of the beacon's cache.
    Unpublish(Vec<String>),
    /// `sporectl rollout deploy FILE…`: a change in health-gated batches.
    Rollout(Box<rollout::Rollout>),
    /// `sporectl --all metrics --serve ADDRESS`: the fleet as one scrape
    /// target.
    ServeMetrics(fleet::ServeMetrics),
    /// `sporectl dashboard`: the fleet, or one node, as a web page on
    /// loopback.
    Dashboard(fleet::Dashboard),
}

/// `sporectl nodes [ACTION]`.
pub(crate) enum NodesAction {
    /// The enrolled nodes.
    List,
    /// The registrations waiting for approval.
    Pending,
    /// Approve a pending node (the key of `fingerprint` when several claim it).
    Approve {
        name: String,
        fingerprint: Option<String>,
    },
    /// Keep a pending node's entries while the operator decides.
    Hold {
        name: String,
        fingerprint: Option<String>,
    },
    /// Drop a node from the beacon.
    Remove { name: String },
}

/// `sporectl known-nodes [ACTION]`.
pub(crate) enum KnownNodesAction {
    /// Every pinned node.
    List,
    /// Forget the pin of an address.
    Forget { address: String },
}

/// The method and parameters for the command on `operand` (a service or
/// a file); files and stdin are read here, once.
fn request(
    options: &Options,
    verb: Verb,
    operand: &str,
) -> Result<(&'static str, Value), ClientError> {
    let secret = match verb {
        Verb::SecretSet => Some(
            verbs::read_secret(operand, options.file.as_deref())
                .map_err(|e| ClientError::Local(e.to_string()))?,
        ),
        // The image's signature, when one is given (it is not secret).
        Verb::Update | Verb::Reexec => match &options.file {
            Some(path) => Some(zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| ClientError::Local(format!("{}: {e}", path.display())))?,
            )),
            None => None,
        },
        _ => None,
    };
    let (method, params) = verbs::request(
        verb,
        operand,
        &options.shape,
        secret.as_deref().map(String::as_str),
    )
    .map_err(|e| ClientError::Local(e.to_string()))?;
    Ok((method.name(), params))
}

/// What each call of the command is made on: its services or files, or
/// once with nothing.
fn operands(options: &Options) -> Vec<String> {
    if options.names.is_empty() {
        vec![String::new()]
    } else {
        options.names.clone()
    }
}

/// Runs the command on one node, one call per operand over one session;
/// the exit status its answers make ([`verbs::Tally`]).
async fn run(options: &Options) -> Result<u8, ClientError> {
    let identities = identities(options)?;
    let (pin, record) = pin(options).await?;
    let mut session =
        connect_with_any(&options.node, &identities, &pin, options.connect_timeout).await?;
    if record {
        pins::remember(&options.known_nodes, &options.node, &session.node_key)
            .map_err(|e| ClientError::Local(format!("cannot record the node key: {e}")))?;
        eprintln!(
            "sporectl: pinned {} as {} in {}",
            options.node,
            nodekey::fingerprint(&session.node_key),
            options.known_nodes.display()
        );
    }
    let verb = options.verb.unwrap_or(Verb::Discover);
    let operands = operands(options);
    let several = operands.len() > 1;
    let mut tally = verbs::Tally::new(verb);
    // A re-exec is seen done once the node answers from a later generation.
    let generation = match verb {
        Verb::Reexec => Some(reexec::generation(options, &mut session).await?),
        _ => None,
    };
    for operand in &operands {
        let answer = if verb == Verb::ArtifactPut {
            upload(options, &mut session, operand).await
        } else if verb == Verb::Update || verb == Verb::Reexec {
            match upload(options, &mut session, operand).await {
                Ok(_) => {
                    let (method, params) = request(options, verb, operand)?;
                    let limit = call_limit(options, method);
                    call_within(&mut session, method, params, limit).await
                }
                Err(error) => Err(error),
            }
        } else if verb == Verb::Deploy {
            match ship::ship(options, &mut session, operand, &options.artifact_files).await {
                Ok(()) => {
                    let (method, params) = request(options, verb, operand)?;
                    let limit = call_limit(options, method);
                    call_within(&mut session, method, params, limit).await
                }
                Err(error) => Err(error),
            }
        } else {
            let (method, params) = request(options, verb, operand)?;
            let limit = call_limit(options, method);
            call_within(&mut session, method, params, limit).await
        };
        let result = match answer {
            Ok(result) => result,
            // One refusal does not stop the other operands, and counts
            // as its verb says (status: 4 for an unknown service).
            Err(error @ ClientError::Rpc { code, .. }) => {
                if several {
                    complain!("sporectl: {operand}: {error}");
                } else {
                    complain!("sporectl: {error}");
                }
                tally.error(code);
                if options.json {
                    say!("{}", json_error(&error, tally.code()));
                }
                continue;
            }
            Err(error) => return Err(error),
        };
        print_result(options, verb, &result);
        tally.answer(&result);
    }
    if verb == Verb::Logs && options.shape.follow {
        follow(options, &mut session).await?;
    }
    if let (Some(before), 0) = (generation, tally.code()) {
        drop(session);
        let facts = reexec::taken_up(options, &identities, &pin, before).await?;
        if options.json {
            say!("{}", json!({ "reexec": facts }));
        }
    }
    Ok(tally.code())
}

/// Whether the node holds the artifact `sha256`, verified.
pub(crate) async fn held(
    options: &Options,
    session: &mut Session,
    sha256: &str,
) -> Result<bool, ClientError> {
    let method = proto::method::Method::ArtifactList.name();
    let limit = call_limit(options, method);
    let list = call_within(session, method, json!({}), limit).await?;
    Ok(ship::listed(&list, sha256))
}

/// `artifact put FILE`: asks how much of it the node holds, then sends the
/// rest in chunks, one call each, showing progress on a terminal.
pub(crate) async fn upload(
    options: &Options,
    session: &mut Session,
    file: &str,
) -> Result<Value, ClientError> {
    let local = |e: rpc::upload::ReadError| ClientError::Local(e.to_string());
    let source = rpc::upload::Source::read(file).map_err(local)?;
    let limit = call_limit(options, proto::method::Method::ArtifactPut.name());
    let progress = Progress::new(options, file, source.size);
    let answer = rpc::push::push(session, &source, limit, &mut |held| progress.show(held)).await;
    progress.clear();
    answer
}

/// A line on the terminal saying how much of a file was sent, redrawn in
/// place (none with --json or without a terminal).
pub(crate) struct Progress<'a> {
    shown: bool,
    file: &'a str,
    size: u64,
}

impl<'a> Progress<'a> {
    /// For sending `file` of `size` bytes.
    pub(crate) fn new(options: &Options, file: &'a str, size: u64) -> Self {
        use std::io::IsTerminal;
        Progress {
            shown: !options.json && std::io::stderr().is_terminal(),
            file,
            size,
        }
    }

    /// `held` bytes are there.
    pub(crate) fn show(&self, held: u64) {
        if self.shown {
            // Our own numbers and the operator's own file name (escaped):
            // written raw, so the line is redrawn in place.
            eprint!(
                "\r{}: {held} of {} bytes ({}%)\x1b[K",
                rpc::display::printable(self.file),
                self.size,
                held.saturating_mul(100) / self.size.max(1)
            );
        }
    }

    /// Takes the line away.
    pub(crate) fn clear(&self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
}

/// Connects with each of `identities` in turn until the node accepts one,
/// as ssh offers each key; when it refuses them all, says which were
/// offered and what to do.
async fn connect_with_any(
    address: &str,
    identities: &[Identity],
    pin: &Pin,
    timeout: Duration,
) -> Result<Session, ClientError> {
    let mut refused = Vec::new();
    for identity in identities {
        match connect_patiently(address, identity, pin, timeout).await {
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
    timeout: Duration,
) -> Result<Session, ClientError> {
    let mut pause = Duration::from_millis(250);
    loop {
        match connect(address, identity, pin, timeout).await {
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

async fn follow(options: &Options, session: &mut Session) -> Result<(), ClientError> {
    loop {
        let note = session.notification().await?;
        if note.get("method").and_then(Value::as_str) == Some("service.log.end") {
            // The service was removed: the follow is over, by design.
            return Ok(());
        }
        let params = note.get("params").cloned().unwrap_or(Value::Null);
        if options.json {
            say!("{params}");
        } else {
            say!("{}", log_line(&params));
        }
    }
}

/// How long a call of `method` may take: `--call-timeout`, plus the wait
/// it asks the node for (start, restart and deploy wait for the service).
fn call_limit(options: &Options, method: &str) -> Duration {
    let waits = [
        proto::method::Method::ServiceStart,
        proto::method::Method::ServiceRestart,
        proto::method::Method::ServiceDeploy,
    ]
    .iter()
    .any(|m| m.name() == method);
    match (waits, options.shape.wait) {
        (true, Some(wait)) => options.call_timeout + wait,
        _ => options.call_timeout,
    }
}

/// [`Session::call_whole`], given up after `limit`: a node that powered
/// off (or lost its network) mid-call never answers and never resets.
async fn call_within(
    session: &mut Session,
    method: &str,
    params: Value,
    limit: Duration,
) -> Result<Value, ClientError> {
    use smol::future::FutureExt;
    async { Some(session.call_whole(method, params).await) }
        .or(async {
            smol::Timer::after(limit).await;
            None
        })
        .await
        .unwrap_or_else(|| {
            Err(ClientError::Unreachable(format!(
                "no answer within {:.0} s (--call-timeout)",
                limit.as_secs_f64()
            )))
        })
}

/// An error as `--json` prints it (on stdout, as answers are), with the
/// exit status it makes.
pub(crate) fn json_error(error: &ClientError, exit_code: u8) -> Value {
    let code = match error {
        ClientError::Rpc { code, .. } => json!(code),
        _ => Value::Null,
    };
    json!({ "error": { "message": error.to_string(), "code": code, "exit_code": exit_code } })
}

/// Prints one answer.
pub(crate) fn print_result(options: &Options, verb: Verb, result: &Value) {
    if options.json && verb == Verb::Logs && options.shape.follow {
        // One shape for the whole stream: the backlog line by line, as
        // the lines that follow it.
        for line in result
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            say!("{line}");
        }
    } else if options.failed_only && verb == Verb::List {
        let wrong = failing_services(result);
        if options.json {
            say!("{wrong}");
        } else if wrong.as_array().is_some_and(Vec::is_empty) {
            say!("no service failed, in backoff or unhealthy");
        } else {
            for line in verbs::render(verb, &wrong) {
                say!("{line}");
            }
        }
    } else if options.json {
        say!("{result}");
    } else {
        for line in verbs::render(verb, result) {
            say!("{line}");
        }
    }
}

/// The services of a `service.list` answer in a state that means trouble.
fn failing_services(list: &Value) -> Value {
    Value::Array(
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                s.get("state")
                    .and_then(Value::as_str)
                    .is_some_and(|state| rpc::display::PROBLEM_STATES.contains(&state))
            })
            .cloned()
            .collect(),
    )
}

fn main() -> ExitCode {
    let options = match cli::parse() {
        cli::Parsed::Run(options) => options,
        cli::Parsed::Print(text) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&text);
            return ExitCode::SUCCESS;
        }
    };
    let report = |error: ClientError| {
        complain!("sporectl: {error}");
        if options.json {
            say!("{}", json_error(&error, error.exit_code()));
        }
        ExitCode::from(error.exit_code())
    };
    match &options.task {
        Task::Serve(serve) => return beacon_commands::serve(serve),
        Task::KnownNodes(action) => {
            return match known_nodes(&options, action) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => report(error),
            }
        }
        Task::Nodes(action) => {
            return match beacon_commands::nodes(&options, action) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => report(error),
            }
        }
        Task::Publish(files) => {
            return match beacon_commands::publish(&options, files) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => report(error),
            }
        }
        Task::Unpublish(names) => {
            return match beacon_commands::unpublish(&options, names) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => report(error),
            }
        }
        Task::Rollout(settings) => {
            return match smol::block_on(rollout::run(&options, settings)) {
                Ok(code) => ExitCode::from(code),
                Err(error) => report(error),
            }
        }
        Task::ServeMetrics(settings) => {
            return match fleet::serve_metrics(&options, settings) {
                Ok(code) => ExitCode::from(code),
                Err(error) => report(error),
            }
        }
        Task::Dashboard(settings) => {
            return match fleet::serve_dashboard(&options, settings) {
                Ok(code) => ExitCode::from(code),
                Err(error) => report(error),
            }
        }
        Task::Call => {}
    }
    let outcome = if options.all || options.only.is_some() {
        smol::block_on(fleet::fleet(&options))
    } else {
        smol::block_on(run(&options))
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => report(error),
    }
}
