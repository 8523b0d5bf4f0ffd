//! The operator's signer: their OpenSSH private key file (asking for the
//! passphrase on the terminal when it is encrypted) or ssh-agent.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey, Signature, SshSig};

use crate::agent::Agent;
use crate::handshake::NAMESPACE;

/// Loading a key or signing failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading the key file failed.
    #[error("{path}: {reason}")]
    File {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The agent failed.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// No usable key anywhere.
    #[error("{0}")]
    NoKey(String),
}

/// Who the operator is.
pub enum Identity {
    /// A private key held in memory.
    File(Box<PrivateKey>),
    /// A key held by ssh-agent at `socket`.
    Agent {
        /// The agent's socket.
        socket: PathBuf,
        /// The key to sign with.
        key: PublicKey,
    },
}

impl Identity {
    /// Reads an OpenSSH private key; an encrypted one asks for its
    /// passphrase on /dev/tty (never argv, never the environment).
    pub fn from_file(path: &Path) -> Result<Self, IdentityError> {
        let fail = |reason: String| IdentityError::File {
            path: path.to_owned(),
            reason,
        };
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?,
        );
        if PublicKey::from_openssh(text.trim()).is_ok() {
            return Err(fail(
                "this is a public key; the agent holds no matching key (load the private key with ssh-add), or give the private key file".into(),
            ));
        }
        let mut key = PrivateKey::from_openssh(text.trim()).map_err(|_| {
            fail("not an OpenSSH private key (expected -----BEGIN OPENSSH PRIVATE KEY-----; make one with ssh-keygen -t ed25519)".into())
        })?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(fail(format!(
                "{} keys are not supported; use ssh-ed25519",
                key.algorithm()
            )));
        }
        if key.is_encrypted() {
            let passphrase = prompt_passphrase(path).map_err(|e| {
                fail(format!(
                    "encrypted, and its passphrase cannot be asked ({e}: no terminal?); load it into ssh-agent with ssh-add {}",
                    path.display()
                ))
            })?;
            key = key
                .decrypt(passphrase.as_bytes())
                .map_err(|_| fail("wrong passphrase".into()))?;
        }
        Ok(Identity::File(Box::new(key)))
    }

    /// `-i FILE.pub`: the agent's key that FILE holds the public half of.
    pub fn from_agent_by_public(socket: &Path, public: &Path) -> Result<Self, IdentityError> {
        let fail = |reason: String| IdentityError::File {
            path: public.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(public).map_err(|e| fail(e.to_string()))?;
        let wanted = PublicKey::from_openssh(text.trim())
            .map_err(|_| fail("not an OpenSSH public key".into()))?;
        let keys = Agent::connect(socket)?.ed25519_keys()?;
        let key = keys
            .into_iter()
            .find(|k| k.key_data() == wanted.key_data())
            .ok_or_else(|| {
                fail(format!(
                    "the agent does not hold this key; load it with ssh-add {}",
                    public.with_extension("").display()
                ))
            })?;
        Ok(Identity::Agent {
            socket: socket.to_owned(),
            key,
        })
    }

    /// Uses the agent at `socket`: the key matching `preferred` when given
    /// and held, else its first ssh-ed25519 key.
    pub fn from_agent(socket: &Path, preferred: Option<&PublicKey>) -> Result<Self, IdentityError> {
        let keys = Agent::connect(socket)?.ed25519_keys()?;
        let key = preferred
            .and_then(|p| keys.iter().find(|k| k.key_data() == p.key_data()))
            .or_else(|| keys.first())
            .cloned()
            .ok_or_else(|| IdentityError::NoKey("ssh-agent holds no ssh-ed25519 key".into()))?;
        Ok(Identity::Agent {
            socket: socket.to_owned(),
            key,
        })
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        match self {
            Identity::File(key) => key.public_key().clone(),
            Identity::Agent { key, .. } => key.clone(),
        }
    }

    /// An SSHSIG over `message` in the spore RPC namespace.
    pub fn sign(&self, message: &[u8]) -> Result<SshSig, IdentityError> {
        self.sign_in(NAMESPACE, message)
    }

    /// An SSHSIG over `message` in `namespace` (each protocol its own, so
    /// a signature made for one is worthless in another).
    pub fn sign_in(&self, namespace: &str, message: &[u8]) -> Result<SshSig, IdentityError> {
        match self {
            Identity::File(key) => key
                .sign(namespace, HashAlg::Sha512, message)
                .map_err(|e| IdentityError::NoKey(e.to_string())),
            Identity::Agent { socket, key } => {
                let data = SshSig::signed_data(namespace, HashAlg::Sha512, message)
                    .map_err(|e| IdentityError::NoKey(e.to_string()))?;
                let raw = Agent::connect(socket)?.sign(key.key_data(), &data)?;
                let signature = Signature::new(Algorithm::Ed25519, raw)
                    .map_err(|e| IdentityError::NoKey(e.to_string()))?;
                SshSig::new(
                    key.key_data().clone(),
                    namespace,
                    HashAlg::Sha512,
                    signature,
                )
                .map_err(|e| IdentityError::NoKey(e.to_string()))
            }
        }
    }
}

/// Asks for the passphrase of `path` on the terminal.
fn prompt_passphrase(path: &Path) -> std::io::Result<zeroize::Zeroizing<String>> {
    read_hidden(&format!("Enter passphrase for {}: ", path.display()))
}

/// Shows `prompt` on /dev/tty and reads one line there with echo off
/// (a passphrase, a secret's value); the line is wiped when dropped.
pub fn read_hidden(prompt: &str) -> std::io::Result<zeroize::Zeroizing<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let saved = tcgetattr(&tty).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&tty, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
    let mut out = &tty;
    let _ = write!(out, "{prompt}");
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &saved);
    let _ = writeln!(out);
    read?;
    while line.ends_with(['\r', '\n']) {
        line.pop();
    }
    Ok(line)
}
