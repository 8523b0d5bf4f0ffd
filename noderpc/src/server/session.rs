//! An authenticated session: sealed requests in, each handed to the node
//! API, sealed answers and follow notifications out, until the peer hangs
//! up, idles out, or the node stops.

use super::*;

/// Artifact chunks whose answers a session may owe at once: while the
/// store writes one, the next is read and opened (the client keeps
/// `rpc::push::WINDOW` in flight). Answers still go out in order.
const PIPELINE: usize = 4;

/// A call that was handed to the node API and is not answered yet.
struct Owed {
    id: Value,
    method: String,
    target: Option<String>,
    outcome: Result<Reply, ApiError>,
}

/// What reading the session's next input gave.
enum Next {
    /// A frame.
    Frame(Vec<u8>),
    /// The peer closed.
    Closed,
    /// Nothing for the idle time.
    Idle,
}

impl Server {
    pub(super) async fn session(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        operator: &Operator,
        mut rx: Channel,
        mut tx: Channel,
    ) -> Result<(), Failure> {
        let idle = self.limits.session_idle;
        // Artifact chunks handed to the store, oldest first.
        let mut owed: std::collections::VecDeque<Owed> = std::collections::VecDeque::new();
        loop {
            // The oldest chunk's answer is sent once the store has it;
            // meanwhile a request that starts to arrive is read (up to
            // PIPELINE owed). Only a peek races the store: a frame is
            // never read half and dropped.
            let room = owed.len() < PIPELINE;
            if let Some(head) = owed.front_mut() {
                let settled = match &head.outcome {
                    Ok(Reply::Pending(answer)) if room => {
                        let answer = answer.clone();
                        // Receiving is cancel-safe: an answer not taken
                        // stays in its channel.
                        let got = async { Some(nodeapi::api::settle(&answer).await) }
                            .or(async {
                                let mut probe = [0u8; 1];
                                let _ = stream.peek(&mut probe).await;
                                None
                            })
                            .await;
                        match got {
                            Some(result) => {
                                head.outcome = result.map(Reply::Value);
                                true
                            }
                            None => false,
                        }
                    }
                    _ => true,
                };
                if settled {
                    if let Some(owed) = owed.pop_front() {
                        if let Some(end) = self
                            .answer(&mut stream, &mut tx, peer, operator, owed)
                            .await?
                        {
                            return end;
                        }
                    }
                    continue;
                }
            }
            // An operator that sends nothing for `session_idle` gives its
            // slot back (a follow is not read here: it counts as active).
            let next = async {
                match read_frame(&mut stream, MAX_SESSION_FRAME).await {
                    Ok(frame) => Ok(Next::Frame(frame)),
                    Err(FrameError::Io(error))
                        if error.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        Ok(Next::Closed)
                    }
                    Err(error) => Err(error),
                }
            }
            .or(async {
                Timer::after(idle).await;
                Ok(Next::Idle)
            })
            .await?;
            let frame = match next {
                Next::Frame(frame) => frame,
                Next::Closed => return Ok(()),
                Next::Idle => {
                    self.dispatcher.log(format!(
                        "rpc: {peer}: {} ({}) idle for {idle:?}; session closed",
                        operator.fingerprint, operator.comment
                    ));
                    return Ok(());
                }
            };
            // The plaintext may hold a secret's value (secret.set): wiped
            // as soon as the request is handled.
            let plain = zeroize::Zeroizing::new(rx.open(&frame)?);
            let parsed = jsonrpc::parse(&plain);
            drop(plain);
            // An artifact's chunk follows its request raw, in a frame of
            // its own: read it whatever becomes of the request, so the
            // session stays in step.
            let chunk = match &parsed {
                Ok(request) => match proto::method::raw_chunk(&request.method, &request.params) {
                    Some(bytes) => Some(read_chunk(&mut stream, &mut rx, bytes, idle).await?),
                    None => None,
                },
                Err(_) => None,
            };
            let call = match &parsed {
                Ok(request) => Owed {
                    id: request.id.clone(),
                    method: request.method.clone(),
                    target: request.target().map(str::to_owned),
                    outcome: self.dispatcher.call(
                        operator,
                        &request.method,
                        &request.params,
                        chunk,
                    ),
                },
                Err((id, error)) => Owed {
                    id: id.clone(),
                    method: "-".to_owned(),
                    target: None,
                    outcome: Err(error.clone()),
                },
            };
            drop(parsed);
            // A chunk in the store's hands waits its turn to be answered;
            // any other call is answered once those before it are.
            let chunk_in_store = call.method == proto::method::Method::ArtifactPut.name()
                && matches!(call.outcome, Ok(Reply::Pending(_)));
            owed.push_back(call);
            if chunk_in_store {
                continue;
            }
            while let Some(owed) = owed.pop_front() {
                if let Some(end) = self
                    .answer(&mut stream, &mut tx, peer, operator, owed)
                    .await?
                {
                    return end;
                }
            }
        }
    }

    /// Waits for `owed`'s outcome and answers it. `Some` ends the session
    /// with that result.
    async fn answer(
        &self,
        stream: &mut TcpStream,
        tx: &mut Channel,
        peer: SocketAddr,
        operator: &Operator,
        owed: Owed,
    ) -> Result<Option<Result<(), Failure>>, Failure> {
        let idle = self.limits.session_idle;
        let Owed {
            id,
            method,
            target,
            outcome,
        } = owed;
        // Disk work (deploy, remove, secret.set) runs off the loop; its
        // outcome is the call's outcome, for the caller and the audit.
        // A caller that hangs up while it waits (service.start with
        // wait) gives its wait back at once: the answer's receiver goes
        // with this future, and the wait table drops closed ones.
        let resolved = async { Some(jsonrpc::resolve(outcome).await) }
            .or(async {
                peer_gone(stream).await;
                None
            })
            .await;
        let Some(outcome) = resolved else {
            let verdict = "abandoned (the caller hung up while it waited)";
            self.audit(peer, operator, &method, target.as_deref(), verdict);
            return Ok(Some(Ok(())));
        };
        let verdict = match &outcome {
            Ok(_) => "ok".to_owned(),
            Err(error) => format!("error {} {}", error.code, escape::field(&error.message)),
        };
        if jsonrpc::audited(&method, &outcome) {
            self.audit(peer, operator, &method, target.as_deref(), &verdict);
        }
        let mut transport = Sealed { stream, tx };
        match jsonrpc::deliver(&mut transport, id, outcome, idle).await? {
            Delivered::Answered => Ok(None),
            Delivered::Power(power) => {
                // The node is about to stop its services, the overlay
                // (mycelium) among them, and with it the only path
                // this answer has: let the operator read it first.
                // Our side is closed, then we wait for the client to
                // close its own (it has read the answer) or at most
                // POWER_FLUSH.
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let mut drained = [0u8; 256];
                let _ = async {
                    while let Ok(n) = smol::io::AsyncReadExt::read(stream, &mut drained).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
                .or(async {
                    Timer::after(POWER_FLUSH).await;
                })
                .await;
                self.dispatcher.power(power);
                Ok(Some(Ok(())))
            }
            Delivered::FollowEnded => Ok(Some(Ok(()))),
            Delivered::Stalled => {
                self.dispatcher.log(format!(
                    "rpc: {peer}: {} ({}) stopped reading its follow for {idle:?}; session closed",
                    operator.fingerprint, operator.comment
                ));
                Ok(Some(Ok(())))
            }
        }
    }
}

/// A sealed session's side of [`jsonrpc::Transport`]: one sealed frame per
/// message.
struct Sealed<'a> {
    stream: &'a mut TcpStream,
    tx: &'a mut Channel,
}

impl jsonrpc::Transport for Sealed<'_> {
    type Error = Failure;

    async fn send(&mut self, message: &Value) -> Result<(), Failure> {
        send(self.stream, self.tx, message).await
    }

    async fn hangup(&mut self) {
        // A follow takes no further request: anything read, or the end,
        // ends it.
        let mut closed = self.stream.clone();
        let mut scratch = [0u8; 64];
        let _ = smol::io::AsyncReadExt::read(&mut closed, &mut scratch).await;
    }
}

/// Resolves once the peer of `stream` has closed its side (or the
/// connection broke). Bytes it sent meanwhile (a pipelined request) are
/// only peeked, never taken; while they wait unread the peer is there, so
/// this never resolves.
async fn peer_gone(stream: &TcpStream) {
    let mut probe = [0u8; 1];
    match stream.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending::<()>().await,
    }
}

/// Reads the frame of raw bytes that follows an `artifact.put` with
/// `bytes` (it must come within `idle`, and be that long); a frame that is
/// not ends the session.
async fn read_chunk(
    stream: &mut TcpStream,
    rx: &mut Channel,
    bytes: u64,
    idle: Duration,
) -> Result<Vec<u8>, Failure> {
    let frame = async { Some(read_frame(stream, MAX_SESSION_FRAME).await) }
        .or(async {
            Timer::after(idle).await;
            None
        })
        .await
        .ok_or(Failure::Protocol("the raw chunk never came"))??;
    let chunk = rx.open(&frame)?;
    if chunk.len() as u64 != bytes {
        return Err(Failure::Protocol(
            "a raw chunk of another length than announced",
        ));
    }
    Ok(chunk)
}

async fn send(stream: &mut TcpStream, tx: &mut Channel, value: &Value) -> Result<(), Failure> {
    let sealed = tx.seal(value.to_string().as_bytes())?;
    write_frame(stream, &sealed).await?;
    Ok(())
}
