//! `spore list|status|start|…`: talk to the spore on this machine over its
//! local control socket, with sporectl's verbs, calls and output
//! ([`rpc::verbs`]): only the socket differs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rpc::display::log_line;
use rpc::verbs::{self, Shape, Verb};
use serde_json::{json, Value};

/// What to ask: a verb, its operands, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The verb.
    pub verb: Verb,
    /// Services or files (one call each).
    pub operands: Vec<String>,
    /// Lines, follow, start, wait.
    pub shape: Shape,
    /// `secret set --file`.
    pub secret_file: Option<PathBuf>,
    /// `secret` or `artifact` was read; its action comes next.
    action_pending: Option<&'static str>,
}

impl Request {
    /// The request for command `word` (`show` and a bare `status` are the
    /// old spellings of `status NAME` and `list`); `secret` takes its
    /// action as the first operand.
    pub fn new(word: &str) -> Result<Self, String> {
        let verb = match word {
            "show" => Verb::Status,
            "secret" => Verb::SecretList,
            "artifact" => Verb::ArtifactList,
            other => Verb::parse(other, None).ok_or_else(|| {
                let hint = svc::suggest::nearest(other, crate::usage::COMMANDS)
                    .map(|near| format!("; did you mean `{near}`?"))
                    .unwrap_or_default();
                format!(
                    "unknown command `{}`{hint} (spore --help lists them)",
                    rpc::display::printable(other)
                )
            })?,
        };
        Ok(Self {
            verb,
            operands: Vec::new(),
            shape: Shape {
                lines: 100,
                follow: false,
                start: false,
                wait: Some(Duration::from_secs(60)),
                since: None,
                until: None,
                boot: None,
                priority: None,
            },
            secret_file: None,
            action_pending: match word {
                "secret" => Some("secret"),
                "artifact" => Some("artifact"),
                _ => None,
            },
        })
    }

    /// True for verbs that wait for their services.
    pub fn waits(&self) -> bool {
        matches!(self.verb, Verb::Start | Verb::Restart | Verb::Deploy)
    }

    /// Adds an operand (for `secret`, first its action).
    pub fn push(&mut self, operand: String) -> Result<(), String> {
        if let Some(word) = self.action_pending.take() {
            self.verb = Verb::parse(word, Some(&operand)).ok_or_else(|| {
                format!(
                    "`{word} {}`: expected {}",
                    rpc::display::printable(&operand),
                    actions(word)
                )
            })?;
            return Ok(());
        }
        self.operands.push(operand);
        Ok(())
    }

    /// Checks the operands once the command line is read.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(word) = self.action_pending {
            return Err(format!("`{word}` needs {}", actions(word)));
        }
        if self.verb == Verb::Status && self.operands.is_empty() {
            self.verb = Verb::List;
        }
        // `reexec` with no binary: the one this command runs (the spore
        // on disk now, after an upgrade replaced it).
        if self.verb == Verb::Reexec && self.operands.is_empty() {
            let own = std::env::current_exe()
                .map_err(|e| format!("reexec: which binary this is: {e}"))?;
            self.operands.push(own.display().to_string());
        }
        let takes = self.verb.takes_operands();
        let count = self.operands.len();
        let single = matches!(
            self.verb,
            Verb::Logs | Verb::SecretSet | Verb::SecretRm | Verb::Tree | Verb::Reexec
        );
        if self.verb == Verb::Logs && self.shape.follow && count == 0 {
            return Err("logs -f follows one service (or spore's own journal: logs spore -f); without a name, logs shows every service's last lines".into());
        }
        match (takes, count) {
            // logs with no name: every service and spore, merged.
            (true, 0) if self.verb == Verb::Logs => Ok(()),
            // tree with no name: the whole graph.
            (true, 0) if self.verb == Verb::Tree => Ok(()),
            (true, 0) => {
                Err("this command needs a name (or a file, for deploy and artifact put)".into())
            }
            (true, n) if single && n > 1 => Err("this command takes one name".into()),
            (false, n) if n > 0 => Err(format!(
                "this command takes no name (got `{}`)",
                self.operands.join(" ")
            )),
            _ => Ok(()),
        }
    }
}

/// The actions of `secret` or `artifact`, for errors.
fn actions(word: &str) -> &'static str {
    match word {
        "artifact" => "put FILE..., list or rm SHA256...",
        _ => "set NAME, list or rm NAME",
    }
}

/// Where the control socket is: `--socket`, else `$SPORE_SOCKET`, else
/// PID 1's `/run/spore/spore.sock`, else `spore run`'s default
/// `/var/lib/spore/spore.sock` when that one exists.
pub fn socket_path(given: Option<PathBuf>) -> PathBuf {
    let pid1 = PathBuf::from("/run/spore/spore.sock");
    let run = PathBuf::from("/var/lib/spore/spore.sock");
    given
        .or_else(|| std::env::var_os("SPORE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| {
            if !pid1.exists() && run.exists() {
                run
            } else {
                pid1
            }
        })
}

/// Exit codes: 0 done, 1 the node answered with an error, a service did
/// not come up or a file was rejected, 2 usage or a local problem, 3 no
/// connection; `status`, `is-active` and `is-failed` answer as systemctl's
/// ([`verbs::Tally`]: 3 not running, 4 unknown).
pub fn run(socket: &Path, request: &Request, json_output: bool) -> ExitCode {
    let stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!(
                "spore: cannot reach spore at {}: {error} (--socket or $SPORE_SOCKET names another)",
                socket.display()
            );
            return ExitCode::from(3);
        }
    };
    match exchange(stream, request, json_output) {
        Ok(code) => code,
        Err(Failure::Local(error)) => {
            eprintln!("spore: {error}");
            ExitCode::from(2)
        }
        Err(Failure::Io(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(Failure::Io(error)) => {
            eprintln!("spore: {error}");
            ExitCode::from(3)
        }
    }
}

enum Failure {
    Local(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Io(error)
    }
}

fn exchange(stream: UnixStream, request: &Request, json_output: bool) -> Result<ExitCode, Failure> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let operands = if request.operands.is_empty() {
        vec![String::new()]
    } else {
        request.operands.clone()
    };
    let stdout = std::io::stdout();
    let mut tally = verbs::Tally::new(request.verb);
    for (id, operand) in operands.iter().enumerate() {
        let secret = match request.verb {
            Verb::SecretSet => Some(
                verbs::read_secret(operand, request.secret_file.as_deref())
                    .map_err(|e| Failure::Local(e.to_string()))?,
            ),
            _ => None,
        };
        let local = |e: &dyn std::fmt::Display| Failure::Local(e.to_string());
        // artifact put: asks what the node holds, then sends the rest in
        // chunks (see rpc::upload), one call each.
        let upload = match request.verb {
            Verb::ArtifactPut => Some(rpc::upload::Source::read(operand).map_err(|e| local(&e))?),
            _ => None,
        };
        let (method, params) = match &upload {
            Some(source) => (nodeapi::api::Method::ArtifactPut, source.held_params()),
            // On this machine the node reads the binary where it is.
            None if request.verb == Verb::Reexec => {
                let path = std::path::absolute(operand).map_err(|e| local(&e))?;
                (
                    nodeapi::api::Method::NodeReexec,
                    json!({ "path": path.display().to_string() }),
                )
            }
            None => verbs::request(
                request.verb,
                operand,
                &request.shape,
                secret.as_deref().map(String::as_str),
            )
            .map_err(|e| local(&e))?,
        };
        let mut whole = Value::Null;
        let mut next = Some(verbs::first_page(method.name(), params.clone()));
        let mut response = Value::Null;
        while let Some(page) = next.take() {
            response = ask(&mut writer, &mut reader, id, method.name(), page)?;
            if let (Some(source), Some(result)) = (&upload, response.get_mut("result")) {
                match rpc::upload::next_offset(result) {
                    Some(offset) => next = source.chunk_params(offset).map_err(|e| local(&e))?,
                    None => *result = source.done(result),
                }
                continue;
            }
            let paged = verbs::is_paged(method.name());
            if let (true, Some(result)) = (paged, response.get_mut("result")) {
                next = verbs::next_page(result.take(), &mut whole);
                if next.is_none() {
                    *result = std::mem::take(&mut whole);
                }
            }
        }
        let mut out = stdout.lock();
        if let Some(error) = response.get("error") {
            tally.error(error.get("code").and_then(Value::as_i64).unwrap_or(0));
            if json_output {
                put(&mut out, &json!({ "error": error }).to_string())?;
            } else {
                eprintln!(
                    "{}",
                    rpc::display::terminal(&format!(
                        "spore: {}{} ({})",
                        if operands.len() > 1 {
                            format!("{operand}: ")
                        } else {
                            String::new()
                        },
                        error
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown error"),
                        error.get("code").and_then(Value::as_i64).unwrap_or(0)
                    ))
                );
            }
            continue;
        }
        let result = response.get("result").cloned().unwrap_or(Value::Null);
        if json_output && request.verb == Verb::Logs && request.shape.follow {
            // One shape for the whole stream, as sporectl prints it.
            for line in result
                .get("lines")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                put(&mut out, &line.to_string())?;
            }
        } else if json_output {
            put(&mut out, &result.to_string())?;
        } else {
            for text in verbs::render(request.verb, &result) {
                put(&mut out, &text)?;
            }
        }
        tally.answer(&result);
    }
    if request.verb == Verb::Logs && request.shape.follow {
        for line in reader.lines() {
            let line = line?;
            let note: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if note.get("method").and_then(Value::as_str) == Some("service.log.end") {
                break;
            }
            let params = note.get("params").cloned().unwrap_or(Value::Null);
            let mut out = stdout.lock();
            if json_output {
                put(&mut out, &params.to_string())?;
            } else {
                put(&mut out, &log_line(&params))?;
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::from(tally.code()))
}

/// Writes one line of an answer, escaped for the terminal
/// ([`rpc::display::terminal`]): service names and output a remote admin
/// deployed cannot drive the local operator's terminal either.
fn put(out: &mut impl Write, line: &str) -> std::io::Result<()> {
    writeln!(out, "{}", rpc::display::terminal(line))
}

/// Sends one request and reads its response. secret.set's value is in the
/// request: every copy is wiped once sent (the Value, the line), as
/// sporectl's client does.
fn ask(
    writer: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
    id: usize,
    method: &str,
    params: Value,
) -> Result<Value, Failure> {
    let mut call = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    let mut body = call.to_string();
    nodeapi::wipe::wipe_strings(&mut call);
    body.push('\n');
    let sent = writer.write_all(body.as_bytes());
    runtime::secret::wipe(&mut body);
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    // A full socket answers "busy" and closes, maybe before the request
    // was written: its answer, if any, is the answer. A broken pipe here
    // is spore's side closing, never a reader of our stdout going away, so
    // it must not end as success with nothing said.
    if let Ok(value) = serde_json::from_str::<Value>(&line) {
        return Ok(value);
    }
    let closed = |why: String| {
        Failure::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            format!("spore closed the connection ({why})"),
        ))
    };
    if let Err(error) = sent {
        return Err(closed(format!("sending: {error}")));
    }
    match read {
        Ok(0) => Err(closed("no answer".into())),
        Ok(_) => Err(closed("an answer that is not JSON".into())),
        Err(error) => Err(closed(format!("reading: {error}"))),
    }
}
