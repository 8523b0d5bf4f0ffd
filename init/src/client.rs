//! `spore status|start|stop|restart|logs|info`: talk to a running spore over
//! its local control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

use rpc::display::{log_line, service_table, text};
use serde_json::{json, Value};

/// What to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// service.list.
    Status,
    /// node.info.
    Info,
    /// service.status NAME.
    Show(String),
    /// service.start NAME.
    Start(String),
    /// service.stop NAME.
    Stop(String),
    /// service.restart NAME.
    Restart(String),
    /// service.logs NAME.
    Logs {
        /// Service.
        name: String,
        /// Lines of backlog.
        lines: u64,
        /// Keep printing new lines.
        follow: bool,
    },
    /// node.reboot.
    Reboot,
    /// node.poweroff.
    Poweroff,
}

impl Request {
    fn method_and_params(&self) -> (&'static str, Value) {
        match self {
            Request::Status => ("service.list", json!({})),
            Request::Info => ("node.info", json!({})),
            Request::Show(name) => ("service.status", json!({ "name": name })),
            Request::Start(name) => ("service.start", json!({ "name": name })),
            Request::Stop(name) => ("service.stop", json!({ "name": name })),
            Request::Restart(name) => ("service.restart", json!({ "name": name })),
            Request::Logs {
                name,
                lines,
                follow,
            } => (
                "service.logs",
                json!({ "name": name, "lines": lines, "follow": follow }),
            ),
            Request::Reboot => ("node.reboot", json!({})),
            Request::Poweroff => ("node.poweroff", json!({})),
        }
    }
}

/// Exit codes: 0 done, 1 the node answered with an error, 3 no connection.
pub fn run(socket: &Path, request: &Request, json_output: bool) -> ExitCode {
    let stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!("error: cannot reach spore at {}: {error}", socket.display());
            return ExitCode::from(3);
        }
    };
    match exchange(stream, request, json_output) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(3)
        }
    }
}

fn exchange(stream: UnixStream, request: &Request, json_output: bool) -> std::io::Result<ExitCode> {
    let (method, params) = request.method_and_params();
    let mut writer = stream.try_clone()?;
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    writer.write_all(format!("{body}\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "spore closed the connection",
        ));
    }
    let response: Value = serde_json::from_str(&line).map_err(std::io::Error::other)?;
    if let Some(error) = response.get("error") {
        if json_output {
            println!("{error}");
        } else {
            eprintln!(
                "error: {} ({})",
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error"),
                error.get("code").and_then(Value::as_i64).unwrap_or(0)
            );
        }
        return Ok(ExitCode::from(1));
    }
    let result = response.get("result").cloned().unwrap_or(Value::Null);
    if json_output {
        println!("{result}");
    } else {
        print_human(request, &result);
    }
    if let Request::Logs { follow: true, .. } = request {
        let stdout = std::io::stdout();
        for line in reader.lines() {
            let line = line?;
            let note: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let params = note.get("params").cloned().unwrap_or(Value::Null);
            let mut out = stdout.lock();
            if json_output {
                writeln!(out, "{params}")?;
            } else {
                writeln!(out, "{}", log_line(&params))?;
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(request: &Request, result: &Value) {
    match request {
        Request::Status => {
            for row in service_table(result) {
                println!("{row}");
            }
        }
        Request::Logs { .. } => {
            for line in result
                .get("lines")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!("{}", log_line(line));
            }
        }
        Request::Start(_) | Request::Stop(_) | Request::Restart(_) => {
            println!("{}: {}", text(result, "name"), text(result, "detail"));
        }
        _ => match serde_json::to_string_pretty(result) {
            Ok(pretty) => println!("{pretty}"),
            Err(_) => println!("{result}"),
        },
    }
}
