//! An authenticated session: sealed requests in, each handed to the node
//! API, sealed answers and follow notifications out, until the peer hangs
//! up, idles out, or the node stops.

use super::*;

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
        loop {
            // An operator that sends nothing for `session_idle` gives its
            // slot back (a follow is not read here: it counts as active).
            let next = async { Some(read_frame(&mut stream, MAX_SESSION_FRAME).await) }
                .or(async {
                    Timer::after(idle).await;
                    None
                })
                .await;
            let Some(next) = next else {
                self.dispatcher.log(format!(
                    "rpc: {peer}: {} ({}) idle for {idle:?}; session closed",
                    operator.fingerprint, operator.comment
                ));
                return Ok(());
            };
            let frame = match next {
                Ok(frame) => frame,
                Err(FrameError::Io(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(())
                }
                Err(error) => return Err(error.into()),
            };
            // The plaintext may hold a secret's value (secret.set): wiped
            // as soon as the request is handled.
            let plain = zeroize::Zeroizing::new(rx.open(&frame)?);
            let parsed = jsonrpc::parse(&plain);
            drop(plain);
            let (id, method, target, outcome) = match &parsed {
                Ok(request) => (
                    request.id.clone(),
                    request.method.clone(),
                    request.target().map(str::to_owned),
                    self.dispatcher
                        .call(operator, &request.method, &request.params),
                ),
                Err((id, error)) => (id.clone(), "-".to_owned(), None, Err(error.clone())),
            };
            drop(parsed);
            // Disk work (deploy, remove, secret.set) runs off the loop; its
            // outcome is the call's outcome, for the caller and the audit.
            // A caller that hangs up while it waits (service.start with
            // wait) gives its wait back at once: the answer's receiver goes
            // with this future, and the wait table drops closed ones.
            let resolved = async { Some(jsonrpc::resolve(outcome).await) }
                .or(async {
                    peer_gone(&stream).await;
                    None
                })
                .await;
            let Some(outcome) = resolved else {
                let verdict = "abandoned (the caller hung up while it waited)";
                self.audit(peer, operator, &method, target.as_deref(), verdict);
                return Ok(());
            };
            let verdict = match &outcome {
                Ok(_) => "ok".to_owned(),
                Err(error) => format!("error {} {}", error.code, escape::field(&error.message)),
            };
            if jsonrpc::audited(&method, &outcome) {
                self.audit(peer, operator, &method, target.as_deref(), &verdict);
            }
            let mut transport = Sealed {
                stream: &mut stream,
                tx: &mut tx,
            };
            match jsonrpc::deliver(&mut transport, id, outcome, idle).await? {
                Delivered::Answered => {}
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
                        while let Ok(n) =
                            smol::io::AsyncReadExt::read(&mut stream, &mut drained).await
                        {
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
                    return Ok(());
                }
                Delivered::FollowEnded => return Ok(()),
                Delivered::Stalled => {
                    self.dispatcher.log(format!(
                        "rpc: {peer}: {} ({}) stopped reading its follow for {idle:?}; session closed",
                        operator.fingerprint, operator.comment
                    ));
                    return Ok(());
                }
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

async fn send(stream: &mut TcpStream, tx: &mut Channel, value: &Value) -> Result<(), Failure> {
    let sealed = tx.seal(value.to_string().as_bytes())?;
    write_frame(stream, &sealed).await?;
    Ok(())
}
