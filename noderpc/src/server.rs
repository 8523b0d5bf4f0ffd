//! The node's side: accept TCP connections, run the handshake under a
//! deadline, then serve JSON-RPC on the sealed session. Caps bound the
//! connections in handshake and in all; nothing here can block reaping (it
//! all runs as tasks on the init's event loop).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use escape;
use nodeapi::api::{ApiError, Power, Reply};
use nodeapi::jsonrpc::{self, Delivered};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Timer};
use x25519_dalek::StaticSecret;

use rpc::admission::{Admission, Bounds, Ending, Ticket};
use rpc::authorized::{AuthorizedKeys, Operator};
use rpc::frame::{read_frame, write_frame, FrameError, MAX_HANDSHAKE_FRAME, MAX_SESSION_FRAME};
use rpc::handshake::{node_reply, verify_operator, HandshakeError};
use rpc::nodekey::NodeKey;
use rpc::session::{Channel, SessionError};

mod audit;
mod session;

/// What the node does with authenticated calls.
pub trait Dispatcher {
    /// Runs `method` for `operator` (whose role the method table checks);
    /// `chunk` is the raw frame that followed an `artifact.put` with
    /// `bytes` ([`proto::method::raw_chunk`]).
    fn call(
        &self,
        operator: &Operator,
        method: &str,
        params: &Value,
        chunk: Option<Vec<u8>>,
    ) -> Result<Reply, ApiError>;
    /// Ends the node after a power method was answered.
    fn power(&self, power: Power);
    /// Writes a line to the node's log (its journal and its console).
    fn log(&self, line: String);
    /// Keeps a line in the node's journal only, not on its console.
    fn record(&self, line: String);
}

/// Bounds on what the network may cost the node.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Authenticated sessions at once (connections still in their
    /// handshake are bounded by `max_handshaking`, and make their own room).
    pub max_connections: usize,
    /// Connections still in their handshake (see [`rpc::admission`]).
    pub max_handshaking: usize,
    /// Connections in their handshake from one source address.
    pub max_handshaking_per_source: usize,
    /// Time allowed from accept to the end of the handshake.
    pub handshake_deadline: Duration,
    /// The handshake deadline while the pre-auth table is half full.
    pub pressure_deadline: Duration,
    /// An authenticated session that sends no request for this long is
    /// closed; a follow counts as active while its client reads, and one
    /// whose writes stay blocked this long is closed too.
    pub session_idle: Duration,
    /// Authenticated sessions at once for one operator key.
    pub max_sessions_per_key: usize,
    /// Of `max_connections`, this many (at most half) are kept for admin
    /// keys: readers cannot starve admins.
    pub admin_reserved: usize,
    /// Pause before a refusal, so guessing is slow and timing says nothing.
    pub refusal_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_handshaking: 256,
            max_handshaking_per_source: 16,
            handshake_deadline: Duration::from_secs(10),
            pressure_deadline: Duration::from_secs(2),
            session_idle: Duration::from_secs(300),
            max_sessions_per_key: 32,
            admin_reserved: 16,
            refusal_delay: Duration::from_secs(1),
        }
    }
}

/// The server's state, shared by its connection tasks.
pub struct Server {
    node_key: NodeKey,
    authorized: RefCell<AuthorizedKeys>,
    dispatcher: Rc<dyn Dispatcher>,
    limits: Limits,
    admission: Admission,
    /// Authenticated sessions by operator key fingerprint.
    sessions: RefCell<std::collections::HashMap<String, usize>>,
    /// Connections being told the node is full (bounded: past the bound
    /// they are dropped without a word).
    busy_notices: Rc<Cell<usize>>,
    /// Malformed handshakes and refused keys: a few lines per kind per
    /// interval, the rest counted.
    refusals: rpc::refusals::RefusalLog,
    /// Which audit lines reach the console too.
    audits: audit::AuditConsole,
    /// Hellos each source may have answered while the table is under
    /// pressure.
    hello_budget: RefCell<crate::hello_budget::HelloBudget>,
    /// Every connection refused, or ended in error, since spore started,
    /// by reason (never reset: `node.metrics` counts them).
    refused: RefCell<std::collections::BTreeMap<&'static str, u64>>,
}

/// How long a power order's answer may take to reach the operator before
/// the node stops anyway.
const POWER_FLUSH: Duration = Duration::from_secs(2);

/// Connections told "node busy" at once, at most.
const MAX_BUSY_NOTICES: usize = 64;

/// Why a connection ended early (for the node's log only).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("handshake not finished within {0:?}")]
    Deadline(Duration),
    #[error("closed to make room for a newer connection")]
    Evicted,
    #[error("hello closed unanswered: its source spent its hello budget")]
    OverBudget,
    #[error("{0}")]
    Busy(String),
    #[error("internal error: the operator keys were busy")]
    KeysBusy,
    #[error("key {fingerprint} ({comment}) is not authorized")]
    Unauthorized {
        fingerprint: String,
        comment: String,
    },
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// An authenticated peer broke the session's rules (an artifact's raw
    /// chunk that never came, or of another length than announced).
    #[error("{0}")]
    Protocol(&'static str),
}

impl Server {
    /// A server with `node_key`, operators from `authorized`, answering
    /// through `dispatcher`.
    pub fn new(
        node_key: NodeKey,
        authorized: AuthorizedKeys,
        dispatcher: Rc<dyn Dispatcher>,
        limits: Limits,
    ) -> Rc<Self> {
        Rc::new(Self {
            node_key,
            authorized: RefCell::new(authorized),
            dispatcher,
            admission: Admission::new(Bounds {
                label: "rpc",
                task: "handshake",
                total: limits.max_handshaking,
                per_source: limits.max_handshaking_per_source,
                deadline: limits.handshake_deadline,
                pressure_deadline: limits.pressure_deadline,
            }),
            limits,
            sessions: RefCell::new(std::collections::HashMap::new()),
            busy_notices: Rc::new(Cell::new(0)),
            refusals: rpc::refusals::RefusalLog::new("rpc", rpc::admission::SUMMARY_EVERY),
            audits: audit::AuditConsole::new(rpc::admission::SUMMARY_EVERY),
            hello_budget: RefCell::new(crate::hello_budget::HelloBudget::default()),
            refused: RefCell::new(std::collections::BTreeMap::new()),
        })
    }

    /// Connections refused or ended in error since spore started, by
    /// reason (`node_full`, `evicted`, `over_budget`, `handshake_timeout`,
    /// `io_error`, `refused_key`, `busy`, `broken_frame`,
    /// `malformed_handshake`, `forged_frame`, `broken_session`, `other`).
    pub fn refusals(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.refused
            .try_borrow()
            .map(|counts| counts.clone())
            .unwrap_or_default()
    }

    fn count_refusal(&self, reason: &'static str) {
        if let Ok(mut counts) = self.refused.try_borrow_mut() {
            *counts.entry(reason).or_insert(0) += 1;
        }
    }

    /// Accepts connections on `listener` forever.
    pub async fn serve(
        self: Rc<Self>,
        listener: TcpListener,
        executor: &'static LocalExecutor<'static>,
    ) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    self.dispatcher.log(format!("rpc: accept failed: {error}"));
                    Timer::after(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Only sessions can fill the node: the pre-auth table is bounded
            // on its own and makes its own room.
            if self.open_sessions() >= self.limits.max_connections {
                self.count_refusal("node_full");
                if let Some(line) = self.admission.count(Ending::Full) {
                    self.dispatcher.log(line);
                }
                self.tell_busy(stream, executor);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let ticket = self.admission.admit(peer.ip(), stream.as_raw_fd());
            let server = self.clone();
            executor
                .spawn(async move {
                    match server.connection(stream, peer, ticket).await {
                        Ok(()) => {}
                        // Pre-auth endings a flood causes by the thousand:
                        // counted and summarised, not a line each.
                        Err(Failure::Evicted) => {
                            server.count_refusal("evicted");
                            server.summary(Ending::Evicted)
                        }
                        Err(Failure::OverBudget) => {
                            server.count_refusal("over_budget");
                            server.summary(Ending::OverBudget)
                        }
                        Err(Failure::Deadline(_)) => {
                            server.count_refusal("handshake_timeout");
                            server.summary(Ending::TimedOut)
                        }
                        Err(Failure::Io(_)) => {
                            server.count_refusal("io_error");
                            server.summary(Ending::Failed)
                        }
                        // Malformed handshakes and refused keys say what
                        // was tried: the first few of each kind per interval are
                        // logged whole, a flood of them is counted.
                        Err(failure) => {
                            let (kind, reason) = match failure {
                                Failure::Unauthorized { .. } => ("refused keys", "refused_key"),
                                Failure::Busy(_) => ("sessions refused (node busy)", "busy"),
                                Failure::Frame(_) => ("broken frames", "broken_frame"),
                                Failure::Handshake(_) => {
                                    ("malformed handshakes", "malformed_handshake")
                                }
                                Failure::Session(_) => {
                                    ("forged or replayed frames", "forged_frame")
                                }
                                Failure::Protocol(_) => ("broken sessions", "broken_session"),
                                _ => ("other connection failures", "other"),
                            };
                            server.count_refusal(reason);
                            for line in server
                                .refusals
                                .refuse(kind, || format!("rpc: {peer}: {failure}"))
                            {
                                server.dispatcher.log(line);
                            }
                        }
                    }
                })
                .detach();
        }
    }

    /// Tells a connection that arrived while the node holds
    /// `max_connections` that it is full (a JSON notice in place of the
    /// NodeHello, PROTOCOL.md §2.5), so the operator sees "node busy", not
    /// a protocol error. At most [`MAX_BUSY_NOTICES`] at once, each for at
    /// most a second; past that the connection is dropped.
    fn tell_busy(&self, stream: TcpStream, executor: &'static LocalExecutor<'static>) {
        let notices = self.busy_notices.clone();
        if notices.get() >= MAX_BUSY_NOTICES {
            return;
        }
        notices.set(notices.get() + 1);
        let notice = json!({
            "busy": true,
            "error": format!("node busy: too many connections (at most {})", self.limits.max_connections),
        })
        .to_string();
        executor
            .spawn(async move {
                let mut stream = stream;
                let _ = async {
                    write_frame(&mut stream, notice.as_bytes()).await?;
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    // Read what the client sent before closing: closing
                    // with unread bytes sends a reset, which can destroy
                    // the notice before the client reads it.
                    let mut sink = [0u8; 1024];
                    while smol::io::AsyncReadExt::read(&mut stream, &mut sink).await? > 0 {}
                    Ok::<(), FrameError>(())
                }
                .or(async {
                    Timer::after(Duration::from_secs(1)).await;
                    Ok(())
                })
                .await;
                notices.set(notices.get().saturating_sub(1));
            })
            .detach();
    }

    /// Counts a new session of `operator`, or says why the node is full
    /// for it: its key holds `max_sessions_per_key` sessions already, or it
    /// is a reader and only the slots kept for admins are left.
    fn take_session(&self, operator: &Operator) -> Result<(), Failure> {
        let Ok(mut sessions) = self.sessions.try_borrow_mut() else {
            return Err(Failure::KeysBusy);
        };
        let mine = sessions.get(&operator.fingerprint).copied().unwrap_or(0);
        if mine >= self.limits.max_sessions_per_key {
            return Err(Failure::Busy(format!(
                "node busy: this key holds {mine} sessions (at most {})",
                self.limits.max_sessions_per_key
            )));
        }
        let total: usize = sessions.values().sum();
        let reader = operator.role == proto::rpc::Role::Reader;
        // At most half the slots are kept: a small node still serves readers.
        let reserved = self
            .limits
            .admin_reserved
            .min(self.limits.max_connections / 2);
        let for_readers = self.limits.max_connections.saturating_sub(reserved);
        if reader && total >= for_readers {
            return Err(Failure::Busy(format!(
                "node busy: the sessions left are kept for admins ({reserved} of {})",
                self.limits.max_connections
            )));
        }
        sessions.insert(operator.fingerprint.clone(), mine + 1);
        Ok(())
    }

    /// Authenticated sessions open now (connections being evicted or
    /// timing out in their handshake are not among them).
    fn open_sessions(&self) -> usize {
        self.sessions
            .try_borrow()
            .map_or(0, |sessions| sessions.values().sum())
    }

    /// The session of `operator` ended.
    fn end_session(&self, operator: &Operator) {
        if let Ok(mut sessions) = self.sessions.try_borrow_mut() {
            if let Some(count) = sessions.get_mut(&operator.fingerprint) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    sessions.remove(&operator.fingerprint);
                }
            }
        }
    }

    /// The audit line of one call. The method, its target and the error
    /// echo the caller's words: each is capped and escaped, so a reader
    /// cannot forge an audit line or grow the journal (the sink escapes the
    /// whole line again).
    fn audit(
        &self,
        peer: SocketAddr,
        operator: &Operator,
        method: &str,
        target: Option<&str>,
        verdict: &str,
    ) {
        let line = format!(
            "rpc audit: {} ({}) from {peer}: {}{} -> {verdict}",
            operator.fingerprint,
            escape::field(&operator.comment),
            escape::field(method),
            target
                .map(|t| format!(" {}", escape::field(t)))
                .unwrap_or_default()
        );
        let route = self.audits.route(std::time::Instant::now());
        if let Some(summary) = route.summary {
            self.dispatcher.log(summary);
        }
        if route.console {
            self.dispatcher.log(line);
        } else {
            self.dispatcher.record(line);
        }
    }

    fn summary(&self, ending: Ending) {
        if let Some(line) = self.admission.count(ending) {
            self.dispatcher.log(line);
        }
    }

    async fn connection(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        ticket: Ticket,
    ) -> Result<(), Failure> {
        let deadline = ticket.deadline;
        let handshake = self
            .handshake(&mut stream, peer, ticket.id())
            .or(async {
                Timer::after(deadline).await;
                Err(Failure::Deadline(deadline))
            })
            .or(async {
                let _ = ticket.evicted.recv().await;
                Err(Failure::Evicted)
            })
            .await;
        self.admission.done(ticket.id());
        let (operator, rx, tx) = handshake?;
        let outcome = self.authenticated(stream, peer, &operator, rx, tx).await;
        self.end_session(&operator);
        outcome
    }

    async fn authenticated(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        operator: &Operator,
        rx: Channel,
        tx: Channel,
    ) -> Result<(), Failure> {
        self.dispatcher.log(format!(
            "rpc: {peer}: {} ({}) authenticated as {}",
            operator.fingerprint,
            operator.comment,
            role_word(operator)
        ));
        self.session(stream, peer, operator, rx, tx).await
    }

    async fn handshake(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        ticket: u64,
    ) -> Result<(Operator, Channel, Channel), Failure> {
        let hello = read_frame(stream, MAX_HANDSHAKE_FRAME).await?;
        // Flooded: a source may make the node sign only so many hellos a
        // second, so the core is not spent on a flood's (never borrowed
        // across an await; a failed borrow answers, as without pressure).
        if self.admission.under_pressure() {
            let source = rpc::admission::source_of(peer.ip());
            let spent = self
                .hello_budget
                .try_borrow_mut()
                .is_ok_and(|mut budget| !budget.take(source, std::time::Instant::now()));
            if spent {
                return Err(Failure::OverBudget);
            }
        }
        let ephemeral = StaticSecret::random_from_rng(OsRng);
        let mut nonce = [0u8; 32];
        OsRng.fill_bytes(&mut nonce);
        let reply = node_reply(&hello, self.node_key.signing_key(), &ephemeral, &nonce)?;
        // A well-formed hello: this one is evicted only after the idle.
        self.admission.progressed(ticket);
        write_frame(stream, &reply.hello).await?;
        let mut rx = Channel::new(&reply.keys.c2s);
        let mut tx = Channel::new(&reply.keys.s2c);
        let sealed = read_frame(stream, MAX_HANDSHAKE_FRAME).await?;
        let proof = rx.open(&sealed)?;
        let verdict = match verify_operator(&proof, &reply.client_transcript) {
            Ok(key) => {
                // Never held across an await, so always free; a failed
                // borrow refuses this one connection instead of panicking.
                let Ok(mut authorized) = self.authorized.try_borrow_mut() else {
                    return Err(Failure::KeysBusy);
                };
                authorized.refresh(&mut |line| self.dispatcher.log(format!("rpc: {line}")));
                authorized
                    .find(&key)
                    .cloned()
                    .ok_or_else(|| Failure::Unauthorized {
                        fingerprint: key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
                        comment: key.comment().to_owned(),
                    })
            }
            Err(error) => Err(Failure::Handshake(error)),
        };
        let verdict = verdict.and_then(|operator| {
            self.take_session(&operator)?;
            Ok(operator)
        });
        match verdict {
            Ok(operator) => {
                let granted = json!({ "role": role_word(&operator) }).to_string();
                if let Err(error) = async {
                    write_frame(stream, &tx.seal(granted.as_bytes())?).await?;
                    Ok::<(), Failure>(())
                }
                .await
                {
                    self.end_session(&operator);
                    return Err(error);
                }
                Ok((operator, rx, tx))
            }
            Err(Failure::Busy(why)) => {
                // Said plainly, at once: the key is good, the node is full.
                let refusal = json!({ "error": why, "busy": true }).to_string();
                if let Ok(sealed) = tx.seal(refusal.as_bytes()) {
                    let _ = write_frame(stream, &sealed).await;
                }
                Err(Failure::Busy(why))
            }
            Err(failure) => {
                // One answer for every refusal, after the same pause.
                Timer::after(self.limits.refusal_delay).await;
                let refusal = json!({ "error": "access denied" }).to_string();
                if let Ok(sealed) = tx.seal(refusal.as_bytes()) {
                    let _ = write_frame(stream, &sealed).await;
                }
                Err(failure)
            }
        }
    }
}

fn role_word(operator: &Operator) -> &'static str {
    match operator.role {
        proto::rpc::Role::Admin => "admin",
        proto::rpc::Role::Reader => "reader",
    }
}
