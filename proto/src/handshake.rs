//! The handshake (PROTOCOL.md §2): pure functions from bytes to bytes and
//! keys, so both ends, the test vectors and the fuzzer share one code path.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use ssh_encoding::Encode;
use ssh_key::{HashAlg, SshSig};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

/// First bytes of every client hello.
pub const MAGIC: &[u8; 9] = b"spore-rpc";
/// The protocol version this code speaks.
pub const VERSION: u16 = 1;
/// The oldest version a node accepts; anything lower is a downgrade.
pub const MIN_VERSION: u16 = 1;
/// The SSHSIG namespace of operator signatures: an SSH login signature can
/// never pass for one, nor the other way round.
pub const NAMESPACE: &str = "spore-rpc-v1";
/// Prefix of what the node signs.
pub const NODE_CONTEXT: &[u8] = b"spore-rpc-v1 node signature\0";
/// HKDF info for the client-to-node key.
pub const INFO_C2S: &[u8] = b"spore-rpc-v1 client to node";
/// HKDF info for the node-to-client key.
pub const INFO_S2C: &[u8] = b"spore-rpc-v1 node to client";

/// Client hello length: magic, version, ephemeral key, nonce.
pub const CLIENT_HELLO_LEN: usize = 9 + 2 + 32 + 32;
/// Node hello length: version, ephemeral key, nonce, node key, signature.
pub const NODE_HELLO_LEN: usize = 2 + 32 + 32 + 32 + 64;

/// Why a handshake failed. The node logs these; the peer learns little.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Wrong length or magic.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The client offered a version below [`MIN_VERSION`].
    #[error("protocol version {0} refused (minimum {MIN_VERSION})")]
    Version(u16),
    /// The node's key is not the pinned one.
    #[error("node key {got} does not match the pinned {expected}")]
    NodeKeyMismatch {
        /// Fingerprint of the pinned key.
        expected: String,
        /// Fingerprint of the key presented.
        got: String,
    },
    /// The node's signature over the transcript is invalid.
    #[error("node signature does not verify")]
    NodeSignature,
    /// The key exchange produced a low-order (all-zero) secret.
    #[error("key exchange is not contributory")]
    NonContributory,
    /// The operator's SSHSIG is malformed or does not verify.
    #[error("operator signature invalid: {0}")]
    ClientSignature(String),
}

/// Keys for both directions of a session.
pub struct SessionKeys {
    /// Client to node.
    pub c2s: Zeroizing<[u8; 32]>,
    /// Node to client.
    pub s2c: Zeroizing<[u8; 32]>,
}

/// `ClientHello`: magic ‖ version (u16 BE) ‖ ephemeral X25519 ‖ nonce.
pub fn client_hello(version: u16, ephemeral: &XPublic, nonce: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CLIENT_HELLO_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(ephemeral.as_bytes());
    out.extend_from_slice(nonce);
    out
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

/// What the node reads from a client hello.
pub struct ClientHelloFields {
    /// The version offered.
    pub version: u16,
    /// The client's ephemeral key.
    pub ephemeral: XPublic,
}

/// Parses and checks a client hello.
pub fn parse_client_hello(bytes: &[u8]) -> Result<ClientHelloFields, HandshakeError> {
    if bytes.len() != CLIENT_HELLO_LEN || bytes.get(..9) != Some(MAGIC.as_slice()) {
        return Err(HandshakeError::Malformed("client hello"));
    }
    let version =
        u16::from_be_bytes(array(bytes, 9).ok_or(HandshakeError::Malformed("client hello"))?);
    if version < MIN_VERSION {
        return Err(HandshakeError::Version(version));
    }
    let ephemeral =
        XPublic::from(array::<32>(bytes, 11).ok_or(HandshakeError::Malformed("client hello"))?);
    Ok(ClientHelloFields { version, ephemeral })
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().into()
}

fn derive(
    shared: &x25519_dalek::SharedSecret,
    salt: &[u8; 32],
) -> Result<SessionKeys, HandshakeError> {
    if !shared.was_contributory() {
        return Err(HandshakeError::NonContributory);
    }
    let hkdf = Hkdf::<Sha256>::new(Some(salt), shared.as_bytes());
    let mut c2s = Zeroizing::new([0u8; 32]);
    let mut s2c = Zeroizing::new([0u8; 32]);
    hkdf.expand(INFO_C2S, c2s.as_mut_slice())
        .and_then(|()| hkdf.expand(INFO_S2C, s2c.as_mut_slice()))
        .map_err(|_| HandshakeError::NonContributory)?;
    Ok(SessionKeys { c2s, s2c })
}

/// What the node's side of the handshake produces.
pub struct NodeReply {
    /// The node hello to send.
    pub hello: Vec<u8>,
    /// Session keys.
    pub keys: SessionKeys,
    /// The transcript hash the operator must sign.
    pub client_transcript: [u8; 32],
}

/// The node answers `client_hello_bytes` with its ephemeral secret, nonce
/// and identity key: `NodeHello` = version ‖ ephemeral ‖ nonce ‖ node key ‖
/// Ed25519(node key, NODE_CONTEXT ‖ H1), H1 = SHA-256(ClientHello ‖
/// NodeHello without the signature).
pub fn node_reply(
    client_hello_bytes: &[u8],
    node_key: &SigningKey,
    ephemeral: &StaticSecret,
    nonce: &[u8; 32],
) -> Result<NodeReply, HandshakeError> {
    let hello = parse_client_hello(client_hello_bytes)?;
    let version = hello.version.min(VERSION);
    let mut reply = Vec::with_capacity(NODE_HELLO_LEN);
    reply.extend_from_slice(&version.to_be_bytes());
    reply.extend_from_slice(XPublic::from(ephemeral).as_bytes());
    reply.extend_from_slice(nonce);
    reply.extend_from_slice(node_key.verifying_key().as_bytes());
    let h1 = sha256(&[client_hello_bytes, &reply]);
    let signature = node_key.sign(&[NODE_CONTEXT, &h1].concat());
    reply.extend_from_slice(&signature.to_bytes());
    let keys = derive(&ephemeral.diffie_hellman(&hello.ephemeral), &h1)?;
    let client_transcript = sha256(&[client_hello_bytes, &reply]);
    Ok(NodeReply {
        hello: reply,
        keys,
        client_transcript,
    })
}

/// What the client learns from the node hello.
pub struct ClientView {
    /// Session keys.
    pub keys: SessionKeys,
    /// The transcript hash to sign (H2 = SHA-256(ClientHello ‖ NodeHello)).
    pub client_transcript: [u8; 32],
    /// The node's identity key, verified against the pin.
    pub node_key: VerifyingKey,
}

/// The client checks the node hello: the node key must equal `pinned`
/// (when given) and its signature must verify strictly.
pub fn client_check(
    client_hello_bytes: &[u8],
    node_hello_bytes: &[u8],
    ephemeral: &StaticSecret,
    pinned: Option<&VerifyingKey>,
) -> Result<ClientView, HandshakeError> {
    if node_hello_bytes.len() != NODE_HELLO_LEN {
        return Err(HandshakeError::Malformed("node hello"));
    }
    let version = u16::from_be_bytes(
        array(node_hello_bytes, 0).ok_or(HandshakeError::Malformed("node hello"))?,
    );
    if version < MIN_VERSION {
        return Err(HandshakeError::Version(version));
    }
    let node_ephemeral = XPublic::from(
        array::<32>(node_hello_bytes, 2).ok_or(HandshakeError::Malformed("node hello"))?,
    );
    let node_key_bytes: [u8; 32] =
        array(node_hello_bytes, 66).ok_or(HandshakeError::Malformed("node hello"))?;
    let signature: [u8; 64] =
        array(node_hello_bytes, 98).ok_or(HandshakeError::Malformed("node hello"))?;
    let node_key =
        VerifyingKey::from_bytes(&node_key_bytes).map_err(|_| HandshakeError::NodeSignature)?;
    if let Some(pinned) = pinned {
        if pinned != &node_key {
            return Err(HandshakeError::NodeKeyMismatch {
                expected: crate::keys::fingerprint(pinned),
                got: crate::keys::fingerprint(&node_key),
            });
        }
    }
    let signed = node_hello_bytes
        .get(..98)
        .ok_or(HandshakeError::Malformed("node hello"))?;
    let h1 = sha256(&[client_hello_bytes, signed]);
    node_key
        .verify_strict(
            &[NODE_CONTEXT, &h1].concat(),
            &Signature::from_bytes(&signature),
        )
        .map_err(|_| HandshakeError::NodeSignature)?;
    let keys = derive(&ephemeral.diffie_hellman(&node_ephemeral), &h1)?;
    Ok(ClientView {
        keys,
        client_transcript: sha256(&[client_hello_bytes, node_hello_bytes]),
        node_key,
    })
}

/// The operator's proof, checked by the node: an SSHSIG (binary) in the
/// [`NAMESPACE`] namespace over the transcript hash, by an ssh-ed25519 key.
/// Returns the operator's public key; whether it is authorized is the
/// caller's question.
pub fn verify_operator(
    proof: &[u8],
    client_transcript: &[u8; 32],
) -> Result<ssh_key::PublicKey, HandshakeError> {
    use ssh_encoding::Decode;
    let mut reader = proof;
    let signature =
        SshSig::decode(&mut reader).map_err(|e| HandshakeError::ClientSignature(e.to_string()))?;
    if !reader.is_empty() {
        return Err(HandshakeError::ClientSignature("trailing bytes".into()));
    }
    if signature.namespace() != NAMESPACE {
        return Err(HandshakeError::ClientSignature(format!(
            "wrong namespace `{}`",
            // The peer's words, before any key is known: capped here, and
            // escaped where they are written (the node's log).
            crate::cap::capped(signature.namespace(), 256)
        )));
    }
    if signature.algorithm() != ssh_key::Algorithm::Ed25519 {
        return Err(HandshakeError::ClientSignature(
            "only ssh-ed25519 keys are accepted".into(),
        ));
    }
    let key = ssh_key::PublicKey::from(signature.public_key().clone());
    key.verify(NAMESPACE, client_transcript, &signature)
        .map_err(|e| HandshakeError::ClientSignature(e.to_string()))?;
    Ok(key)
}

/// Encodes an SSHSIG for the wire.
pub fn encode_proof(signature: &SshSig) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    signature.encode(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The bytes an SSH signer (a key file or ssh-agent) signs to make the
/// SSHSIG for `client_transcript` (PROTOCOL.md §2.3).
pub fn signed_data(client_transcript: &[u8; 32]) -> Result<Vec<u8>, String> {
    SshSig::signed_data(NAMESPACE, HashAlg::Sha512, client_transcript).map_err(|e| e.to_string())
}
