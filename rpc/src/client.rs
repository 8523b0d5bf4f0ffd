//! The operator's side: connect, check the node's key and signature, prove
//! who we are, then call methods on the sealed session.

use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::net::TcpStream;
use smol::Timer;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

use crate::frame::{read_frame, write_frame, FrameError, MAX_HANDSHAKE_FRAME, MAX_SESSION_FRAME};
use crate::handshake::{client_check, client_hello, encode_proof, HandshakeError, VERSION};
use crate::identity::Identity;
use crate::session::Channel;

/// Which node key to accept.
#[derive(Debug, Clone)]
pub enum Pin {
    /// Exactly this key (given on the command line or by the beacon).
    Key(VerifyingKey),
    /// Any key, reported back so the caller can record it (first contact).
    AcceptAny,
}

/// Why a call failed; each maps to a distinct exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// The node is not who it should be, or refused us.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The node does not know the key we signed with.
    #[error("the node refused our key {0}")]
    KeyRefused(String),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The node is full: too many connections or sessions (try again).
    #[error("{0}")]
    Busy(String),
    /// The node closed the connection before the handshake ended: under a
    /// flood it sheds unauthenticated connections (try again).
    #[error("node busy: it closed the connection during the handshake ({0}); it sheds unauthenticated connections when flooded")]
    Shed(String),
    /// sporectl declined to go on: not confirmed, or a node key that came
    /// over a channel that cannot be trusted for this command.
    #[error("{0}")]
    Declined(String),
    /// Something on this side is wrong (a file that cannot be read, a key
    /// file that is not a key): nothing was sent.
    #[error("{0}")]
    Local(String),
    /// A node or service named on the command line that the beacon does
    /// not list: nothing was sent.
    #[error("{0}")]
    Unknown(String),
    /// The node answered with a JSON-RPC error.
    #[error("{message} ({code})")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// Message.
        message: String,
    },
}

impl ClientError {
    /// 1 RPC error or an unknown name, 2 usage, local problem or declined, 3 unreachable,
    /// 4 authentication, 5 protocol, 6 node busy.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Declined(_) | ClientError::Local(_) => 2,
            ClientError::Busy(_) | ClientError::Shed(_) => 6,
            ClientError::Rpc { .. } | ClientError::Unknown(_) => 1,
            ClientError::Unreachable(_) => 3,
            ClientError::Auth(_) | ClientError::KeyRefused(_) => 4,
            ClientError::Protocol(_) => 5,
        }
    }
}

impl From<FrameError> for ClientError {
    fn from(error: FrameError) -> Self {
        ClientError::Protocol(error.to_string())
    }
}

/// An authenticated session with one node.
pub struct Session {
    stream: TcpStream,
    tx: Channel,
    rx: Channel,
    next_id: u64,
    /// The role the node granted.
    pub role: String,
    /// The node's verified identity key.
    pub node_key: VerifyingKey,
}

/// Connects to `address`, checks the node against `pin`, authenticates as
/// `identity`. The whole exchange is bounded by `timeout`.
pub async fn connect(
    address: &str,
    identity: &Identity,
    pin: &Pin,
    timeout: Duration,
) -> Result<Session, ClientError> {
    async { handshake(address, identity, pin).await }
        .or(async {
            Timer::after(timeout).await;
            Err(ClientError::Unreachable(format!(
                "no answer from {address} within {timeout:?}"
            )))
        })
        .await
}

/// The key a node at `address` proves it holds, read from its half of the
/// handshake, before anything of ours is signed or sent beyond a hello (as
/// ssh shows a new host's key before authenticating). The connection is
/// then dropped. For a first contact: show the key, ask, then [`connect`]
/// pinned to it.
pub async fn node_key(address: &str, timeout: Duration) -> Result<VerifyingKey, ClientError> {
    async {
        let mut stream = open(address).await?;
        let (hello, node_hello, ephemeral) = hellos(&mut stream).await?;
        let view = check_node(&hello, &node_hello, &ephemeral, None)?;
        Ok(view.node_key)
    }
    .or(async {
        Timer::after(timeout).await;
        Err(ClientError::Unreachable(format!(
            "no answer from {address} within {timeout:?}"
        )))
    })
    .await
}

/// A TCP connection to `address` (an address literal directly; only names
/// go through the resolver, which runs on a thread pool).
async fn open(address: &str) -> Result<TcpStream, ClientError> {
    let connected = match address.parse::<std::net::SocketAddr>() {
        Ok(socket) => TcpStream::connect(socket).await,
        Err(_) => TcpStream::connect(address).await,
    };
    let stream = connected.map_err(|e| ClientError::Unreachable(format!("{address}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends our hello and reads the node's: (ours, theirs, our ephemeral secret).
async fn hellos(stream: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>, StaticSecret), ClientError> {
    let ephemeral = StaticSecret::random_from_rng(OsRng);
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    let hello = client_hello(VERSION, &XPublic::from(&ephemeral), &nonce);
    write_frame(stream, &hello)
        .await
        .map_err(|e| ClientError::Unreachable(e.to_string()))?;
    let node_hello = read_frame(stream, MAX_HANDSHAKE_FRAME)
        .await
        .map_err(|e| match e {
            FrameError::Io(io) => ClientError::Shed(io.to_string()),
            other => ClientError::from(other),
        })?;
    if let Some(why) = busy_notice(&node_hello) {
        return Err(ClientError::Busy(why));
    }
    Ok((hello, node_hello, ephemeral))
}

/// Checks the node's hello (its signature, and its key against `pinned`).
fn check_node(
    hello: &[u8],
    node_hello: &[u8],
    ephemeral: &StaticSecret,
    pinned: Option<&VerifyingKey>,
) -> Result<proto::handshake::ClientView, ClientError> {
    client_check(hello, node_hello, ephemeral, pinned).map_err(|e| match e {
        HandshakeError::NodeKeyMismatch { .. } | HandshakeError::NodeSignature => {
            ClientError::Auth(e.to_string())
        }
        other => ClientError::Protocol(other.to_string()),
    })
}

async fn handshake(address: &str, identity: &Identity, pin: &Pin) -> Result<Session, ClientError> {
    let mut stream = open(address).await?;
    let (hello, node_hello, ephemeral) = hellos(&mut stream).await?;
    let pinned = match pin {
        Pin::Key(key) => Some(key),
        Pin::AcceptAny => None,
    };
    let view = check_node(&hello, &node_hello, &ephemeral, pinned)?;
    let mut tx = Channel::new(&view.keys.c2s);
    let mut rx = Channel::new(&view.keys.s2c);
    let signature = identity
        .sign(&view.client_transcript)
        .map_err(|e| ClientError::Auth(format!("cannot sign: {e}")))?;
    let proof = encode_proof(&signature).map_err(ClientError::Protocol)?;
    let sealed = tx
        .seal(&proof)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    // A node refuses a key with a sealed answer; closing without one is a
    // node shedding unauthenticated connections under a flood, whatever
    // the phase: said as such, and retried like any shed connection.
    write_frame(&mut stream, &sealed)
        .await
        .map_err(|e| ClientError::Shed(e.to_string()))?;
    let answer = read_frame(&mut stream, MAX_HANDSHAKE_FRAME)
        .await
        .map_err(|e| ClientError::Shed(e.to_string()))?;
    let answer = rx
        .open(&answer)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let answer: Value =
        serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
    match answer.get("role").and_then(Value::as_str) {
        Some(role) => Ok(Session {
            stream,
            tx,
            rx,
            next_id: 1,
            role: role.to_owned(),
            node_key: view.node_key,
        }),
        None if answer.get("busy").and_then(Value::as_bool) == Some(true) => {
            Err(ClientError::Busy(
                answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("node busy")
                    .to_owned(),
            ))
        }
        None => Err(ClientError::KeyRefused(identity_label(identity))),
    }
}

/// `SHA256:… (comment)` of the key an identity signs with.
fn identity_label(identity: &Identity) -> String {
    let key = identity.public();
    let source = match identity {
        Identity::File(_) => "key file",
        Identity::Agent { .. } => "ssh-agent",
    };
    format!(
        "{} ({}, {source})",
        key.fingerprint(ssh_key::HashAlg::Sha256),
        key.comment()
    )
}

/// A node at its connection limit answers the ClientHello with a JSON
/// notice instead of a NodeHello (which starts with a u16 version, so never
/// with `{`; PROTOCOL.md §2.5). It is not authenticated: it can only say
/// what an attacker on the path could cause anyway, a refused connection.
fn busy_notice(frame: &[u8]) -> Option<String> {
    if frame.first() != Some(&b'{') {
        return None;
    }
    let notice: Value = serde_json::from_slice(frame).ok()?;
    if notice.get("busy").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    Some(crate::display::printable(
        notice
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("node busy: too many connections"),
    ))
}

impl Session {
    async fn send(&mut self, value: &Value) -> Result<(), ClientError> {
        // The plaintext may carry a secret's value: wiped once sealed.
        let plain = zeroize::Zeroizing::new(value.to_string());
        let sealed = self
            .tx
            .seal(plain.as_bytes())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        write_frame(&mut self.stream, &sealed)
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))
    }

    async fn receive(&mut self) -> Result<Value, ClientError> {
        let frame = read_frame(&mut self.stream, MAX_SESSION_FRAME).await?;
        let plain = self
            .rx
            .open(&frame)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        serde_json::from_slice(&plain).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Calls `method` and waits for its answer.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.send_call(method, params).await?;
        self.answer(id).await
    }

    /// Sends a call without waiting for its answer; returns its id. The
    /// node answers calls in the order they were sent: read each answer
    /// with [`Session::answer`], oldest first.
    pub async fn send_call(&mut self, method: &str, params: Value) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let sent = self.send(&request).await;
        proto::wipe::wipe_strings(&mut request);
        sent?;
        Ok(id)
    }

    /// Sends `artifact.put` with `params` (which carry `bytes`) and then
    /// `chunk` raw, sealed in a frame of its own; returns the call's id.
    pub async fn send_chunk(&mut self, params: Value, chunk: &[u8]) -> Result<u64, ClientError> {
        let id = self
            .send_call(proto::method::Method::ArtifactPut.name(), params)
            .await?;
        let sealed = self
            .tx
            .seal(chunk)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        write_frame(&mut self.stream, &sealed)
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        Ok(id)
    }

    /// The answer to call `id`, the oldest one sent and not yet answered.
    pub async fn answer(&mut self, id: u64) -> Result<Value, ClientError> {
        let response = self.receive().await?;
        if response.get("id") != Some(&json!(id)) {
            return Err(ClientError::Protocol("answer to another request".into()));
        }
        if let Some(error) = response.get("error") {
            return Err(ClientError::Rpc {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        // Taken, not cloned: a fleet command holds thousands of answers.
        let mut response = response;
        Ok(response
            .as_object_mut()
            .and_then(|o| o.remove("result"))
            .unwrap_or(Value::Null))
    }

    /// Calls `method` and returns its whole answer: a paged method
    /// (`service.list`) is asked page after page and answered as one array;
    /// a node too old to page is asked once, unpaged.
    pub async fn call_whole(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let first = crate::verbs::first_page(method, params.clone());
        if first == params {
            return self.call(method, params).await;
        }
        let mut whole = Value::Null;
        let mut next = Some(first);
        while let Some(page) = next.take() {
            let answer = match self.call(method, page).await {
                // A node from before paging refuses `limit`.
                Err(ClientError::Rpc { code, message })
                    if code == proto::rpc::code::INVALID_PARAMS
                        && message.contains("`limit`")
                        && whole.is_null() =>
                {
                    return self.call(method, params).await;
                }
                other => other?,
            };
            next = crate::verbs::next_page(answer, &mut whole);
        }
        Ok(whole)
    }

    /// The next notification (e.g. a followed log line).
    pub async fn notification(&mut self) -> Result<Value, ClientError> {
        self.receive().await
    }

    /// Sends raw bytes as a frame without sealing (tests of the node's
    /// defences only).
    pub async fn send_raw_frame(&mut self, body: &[u8]) -> Result<(), ClientError> {
        write_frame(&mut self.stream, body)
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))
    }

    /// Seals `body` as the next frame and returns it without sending
    /// (tests: replay and reorder).
    pub fn seal_next(&mut self, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.tx
            .seal(body)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Reads one frame and opens it (tests).
    pub async fn receive_value(&mut self) -> Result<Value, ClientError> {
        self.receive().await
    }
}
