//! A small ssh-agent client (draft-miller-ssh-agent): list identities and
//! sign. Enough to make an SSHSIG with a key that never leaves the agent.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use ssh_key::public::KeyData;
use ssh_key::{Algorithm, PublicKey};

const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
/// Agent messages larger than this are refused.
const MAX_MESSAGE: usize = 256 * 1024;

/// Talking to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Socket trouble.
    #[error("ssh-agent: {0}")]
    Io(#[from] std::io::Error),
    /// The agent answered something unexpected or refused.
    #[error("ssh-agent: {0}")]
    Protocol(String),
}

/// A connection to a running ssh-agent.
pub struct Agent {
    stream: UnixStream,
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_u32(input: &mut &[u8]) -> Result<u32, AgentError> {
    let (head, rest) = input
        .split_at_checked(4)
        .ok_or_else(|| AgentError::Protocol("truncated".into()))?;
    *input = rest;
    Ok(u32::from_be_bytes(
        head.try_into()
            .map_err(|_| AgentError::Protocol("truncated".into()))?,
    ))
}

fn take_string<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], AgentError> {
    let len = take_u32(input)? as usize;
    let (head, rest) = input
        .split_at_checked(len)
        .ok_or_else(|| AgentError::Protocol("truncated".into()))?;
    *input = rest;
    Ok(head)
}

impl Agent {
    /// Connects to the agent at `socket` (usually `$SSH_AUTH_SOCK`).
    pub fn connect(socket: &Path) -> Result<Self, AgentError> {
        Ok(Self {
            stream: UnixStream::connect(socket)?,
        })
    }

    fn request(&mut self, body: &[u8]) -> Result<Vec<u8>, AgentError> {
        let mut message = Vec::with_capacity(body.len() + 4);
        put_string(&mut message, body);
        self.stream.write_all(&message)?;
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header)?;
        let len = u32::from_be_bytes(header) as usize;
        if len == 0 || len > MAX_MESSAGE {
            return Err(AgentError::Protocol(format!("bad reply length {len}")));
        }
        let mut reply = vec![0u8; len];
        self.stream.read_exact(&mut reply)?;
        Ok(reply)
    }

    /// The agent's ssh-ed25519 keys.
    pub fn ed25519_keys(&mut self) -> Result<Vec<PublicKey>, AgentError> {
        let reply = self.request(&[REQUEST_IDENTITIES])?;
        let (kind, mut rest) = reply
            .split_first()
            .ok_or_else(|| AgentError::Protocol("empty reply".into()))?;
        if *kind != IDENTITIES_ANSWER {
            return Err(AgentError::Protocol(format!(
                "unexpected reply {kind} to a list request"
            )));
        }
        let count = take_u32(&mut rest)?;
        let mut keys = Vec::new();
        for _ in 0..count {
            let blob = take_string(&mut rest)?;
            let comment = String::from_utf8_lossy(take_string(&mut rest)?).into_owned();
            if let Ok(mut key) = PublicKey::from_bytes(blob) {
                if key.algorithm() == Algorithm::Ed25519 {
                    key.set_comment(comment);
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }

    /// Has the agent sign `data` with `key`; returns the raw 64-byte
    /// Ed25519 signature.
    pub fn sign(&mut self, key: &KeyData, data: &[u8]) -> Result<Vec<u8>, AgentError> {
        let blob = PublicKey::from(key.clone())
            .to_bytes()
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        let mut body = vec![SIGN_REQUEST];
        put_string(&mut body, &blob);
        put_string(&mut body, data);
        body.extend_from_slice(&0u32.to_be_bytes());
        let reply = self.request(&body)?;
        let (kind, mut rest) = reply
            .split_first()
            .ok_or_else(|| AgentError::Protocol("empty reply".into()))?;
        if *kind != SIGN_RESPONSE {
            return Err(AgentError::Protocol("the agent refused to sign".into()));
        }
        let mut signature = take_string(&mut rest)?;
        let algorithm = take_string(&mut signature)?;
        if algorithm != b"ssh-ed25519" {
            return Err(AgentError::Protocol(
                "unexpected signature algorithm".into(),
            ));
        }
        Ok(take_string(&mut signature)?.to_vec())
    }
}
