//! The local control socket: JSON-RPC 2.0, one request per line, for root
//! (or spore's own user) only. No signatures: the kernel tells us who is
//! calling (SO_PEERCRED, unix(7)), and the file is 0600.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nodeapi::api::{self, code, ApiError, Reply, Role};
use nodeapi::jsonrpc::{self, Delivered};
use runtime::journal;
use serde_json::Value;
use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::net::unix::UnixStream;
use smol::Async;

use crate::config::Control;
use crate::node::Node;

mod request_reader;

use request_reader::{Next, RequestReader};

/// The longest request line accepted.
const MAX_REQUEST: usize = 1 << 20;
/// Refusals are summarised in one log line at most this often.
const REFUSAL_SUMMARY: Duration = Duration::from_secs(10);

/// Binds the socket at `path` (replacing a stale one), mode 0600.
pub fn bind(path: &Path) -> io::Result<Async<UnixListener>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    // Restrictive umask window is not needed: chmod before anyone can use it
    // matters less than SO_PEERCRED, which is checked on every connection.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Async::new(listener)
}

/// Accepts connections forever, each served on its own task, at most
/// `limits.max_connections` at once; beyond that a caller is told "too many
/// connections" and closed, and refusals are logged as counted summaries.
pub async fn serve(listener: Async<UnixListener>, node: Rc<Node>, limits: Control) {
    let active = Rc::new(std::cell::Cell::new(0usize));
    let mut refusals = Refusals::default();
    let idle = Duration::from_millis(limits.idle_timeout_ms.max(1));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                journal::note(format_args!("control socket: accept failed: {error}"));
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(stream) = stream.into_inner() else {
            continue;
        };
        if active.get() >= limits.max_connections {
            refuse(&stream, limits.max_connections);
            refusals.count(limits.max_connections);
            continue;
        }
        if !peer_allowed(&stream) {
            continue;
        }
        let Ok(stream) = UnixStream::try_from(stream) else {
            continue;
        };
        let active = active.clone();
        active.set(active.get() + 1);
        node.executor
            .spawn({
                let node = node.clone();
                async move {
                    if let Err(error) = connection(stream, &node, idle).await {
                        if error.kind() != io::ErrorKind::BrokenPipe {
                            journal::note(format_args!("control socket: {error}"));
                        }
                    }
                    active.set(active.get().saturating_sub(1));
                }
            })
            .detach();
    }
}

/// Tells a caller over the cap why it is turned away, without waiting: a
/// fresh socket's buffer takes the line at once, or the caller gets nothing.
fn refuse(stream: &std::os::unix::net::UnixStream, cap: usize) {
    use std::io::Write;
    let error = ApiError {
        code: code::BUSY,
        message: format!("node busy: too many connections ({cap}); try again"),
    };
    let mut line = jsonrpc::response(Value::Null, Err(error)).to_string();
    line.push('\n');
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write(line.as_bytes());
}

/// Counted refusals, logged as one summary line per [`REFUSAL_SUMMARY`] at
/// most (a flood must not write a line per attempt).
#[derive(Default)]
struct Refusals {
    pending: u64,
    last_logged: Option<Instant>,
}

impl Refusals {
    fn count(&mut self, cap: usize) {
        self.pending += 1;
        let due = self
            .last_logged
            .is_none_or(|at| at.elapsed() >= REFUSAL_SUMMARY);
        if due {
            journal::note(format_args!(
                "control socket: refused {} connection(s): too many connections (cap {cap})",
                self.pending
            ));
            self.pending = 0;
            self.last_logged = Some(Instant::now());
        }
    }
}

/// Root, or the user spore runs as (tests run it unprivileged).
fn peer_allowed(stream: &std::os::unix::net::UnixStream) -> bool {
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) => {
            let me = nix::unistd::geteuid().as_raw();
            let allowed = cred.uid() == 0 || cred.uid() == me;
            if !allowed {
                journal::note(format_args!(
                    "control socket: refused uid {} (pid {})",
                    cred.uid(),
                    cred.pid()
                ));
            }
            allowed
        }
        Err(error) => {
            journal::note(format_args!("control socket: SO_PEERCRED failed: {error}"));
            false
        }
    }
}

/// The local socket's side of [`jsonrpc::Transport`]: one JSON line per
/// message.
struct Lines<'a> {
    writer: UnixStream,
    reader: &'a mut RequestReader,
}

impl jsonrpc::Transport for Lines<'_> {
    type Error = io::Error;

    async fn send(&mut self, message: &Value) -> io::Result<()> {
        write_line(&mut self.writer, message).await
    }

    async fn hangup(&mut self) {
        // A follow takes no further request: anything read, or the end,
        // ends it.
        let _ = self.reader.next().await;
    }
}

async fn connection(stream: UnixStream, node: &Node, idle: Duration) -> io::Result<()> {
    let mut writer = stream.clone();
    let mut reader = RequestReader::new(stream, MAX_REQUEST);
    loop {
        let read = async { Some(reader.next().await) }
            .or(async {
                smol::Timer::after(idle).await;
                None
            })
            .await;
        let Some(read) = read else {
            // Idle too long: the slot goes to someone else.
            return Ok(());
        };
        let line = match read? {
            Next::Line(line) => line,
            Next::End => return Ok(()),
            Next::TooLarge => {
                let error = ApiError::new(code::INVALID_REQUEST, "request too large");
                write_line(&mut writer, &jsonrpc::response(Value::Null, Err(error))).await?;
                return Ok(());
            }
        };
        let (id, outcome) = match jsonrpc::parse(line.trim_ascii()) {
            Ok(request) => (request.id.clone(), call(node, &request)),
            Err((id, error)) => (id, Err(error)),
        };
        // The line may hold a secret's value: wiped as it goes.
        drop(line);
        // A caller that hangs up while it waits (start with wait) gives its
        // wait back at once: the answer's receiver goes with this future.
        let resolved = async { Some(jsonrpc::resolve(outcome).await) }
            .or(async {
                reader.closed().await;
                None
            })
            .await;
        let Some(outcome) = resolved else {
            return Ok(());
        };
        let mut transport = Lines {
            writer: writer.clone(),
            reader: &mut reader,
        };
        match jsonrpc::deliver(&mut transport, id, outcome, idle).await? {
            Delivered::Answered => {}
            Delivered::Power(power) => node.request_power(power),
            Delivered::FollowEnded | Delivered::Stalled => return Ok(()),
        }
    }
}

/// Calls one request as admin (the kernel vouched for the caller).
fn call(node: &Node, request: &jsonrpc::Request) -> Result<Reply, ApiError> {
    match node.runtime.try_borrow_mut() {
        Ok(mut runtime) => api::call(
            &mut runtime,
            Role::Admin,
            &request.method,
            &request.params,
            node,
        ),
        Err(_) => Err(ApiError::new(code::INVALID_REQUEST, "busy; try again")),
    }
}

async fn write_line(writer: &mut UnixStream, value: &Value) -> io::Result<()> {
    let mut text = value.to_string();
    text.push('\n');
    writer.write_all(text.as_bytes()).await
}
