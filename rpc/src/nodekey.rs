//! The node's Ed25519 identity: one file, 0600, owned by spore's user, never
//! a symlink. Generated on first boot. The secret never leaves this type:
//! no Debug, no Display.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey};

/// Why the node key cannot be used; the API stays closed and PID 1 runs on.
#[derive(Debug, thiserror::Error)]
pub enum NodeKeyError {
    /// A symlink could point anywhere.
    #[error("{0} is a symlink; refusing it")]
    Symlink(PathBuf),
    /// Not a regular file.
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    /// Group or others may read or write it.
    #[error("{path} has mode {mode:o}; it must be 0600 (no group or world access)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Someone else owns it.
    #[error("{path} is owned by uid {owner}, not {expected}")]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// spore's uid.
        expected: u32,
    },
    /// Not an unencrypted OpenSSH ed25519 private key.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// The node's identity key.
pub struct NodeKey {
    signing: SigningKey,
}

impl NodeKey {
    /// Loads `path` after checking it, or creates it (0600, written
    /// atomically) when it does not exist. Returns the key and whether it
    /// was created.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), NodeKeyError> {
        match fs::symlink_metadata(path) {
            Ok(meta) => {
                check_file(path, &meta)?;
                Ok((Self::read(path)?, false))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok((Self::generate(path)?, true))
            }
            Err(source) => Err(NodeKeyError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Loads an existing key file after the same checks (a symlink, group
    /// or world access, another owner are refused); never creates one.
    pub fn load(path: &Path) -> Result<Self, NodeKeyError> {
        let meta = fs::symlink_metadata(path).map_err(|source| NodeKeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        check_file(path, &meta)?;
        Self::read(path)
    }

    /// A key from raw secret bytes (tests and test vectors).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    fn read(path: &Path) -> Result<Self, NodeKeyError> {
        // The file's text holds the seed: wiped once parsed.
        let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(|source| {
            NodeKeyError::Io {
                path: path.to_owned(),
                source,
            }
        })?);
        let format = |reason: String| NodeKeyError::Format {
            path: path.to_owned(),
            reason,
        };
        let key = PrivateKey::from_openssh(text.trim()).map_err(|e| format(e.to_string()))?;
        if key.is_encrypted() {
            return Err(format(
                "the node key must not be encrypted (PID 1 has nobody to ask)".into(),
            ));
        }
        match key.key_data() {
            KeypairData::Ed25519(pair) => Ok(Self {
                signing: SigningKey::from_bytes(&pair.private.to_bytes()),
            }),
            _ => Err(format("not an ssh-ed25519 key".into())),
        }
    }

    fn generate(path: &Path) -> Result<Self, NodeKeyError> {
        let io = |source| NodeKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let signing = SigningKey::generate(&mut OsRng);
        let pair = Ed25519Keypair::from_bytes(&signing.to_keypair_bytes()).map_err(|e| {
            NodeKeyError::Format {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let key = PrivateKey::new(KeypairData::Ed25519(pair), "spore-node").map_err(|e| {
            NodeKeyError::Format {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let text = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| NodeKeyError::Format {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        durable::atomic::write_atomically(path, text.as_bytes(), 0o600).map_err(io)?;
        Ok(Self { signing })
    }

    /// The signing half, for the handshake.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public half.
    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public())
    }

    /// The public key as an OpenSSH line (`ssh-ed25519 AAAA… spore-node`).
    pub fn openssh_public(&self) -> String {
        openssh_public(&self.public())
    }
}

pub use proto::keys::{fingerprint, openssh_public, parse_openssh_public};

fn check_file(path: &Path, meta: &fs::Metadata) -> Result<(), NodeKeyError> {
    if meta.file_type().is_symlink() {
        return Err(NodeKeyError::Symlink(path.to_owned()));
    }
    if !meta.is_file() {
        return Err(NodeKeyError::NotAFile(path.to_owned()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(NodeKeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let expected = nix::unistd::geteuid().as_raw();
    if meta.uid() != expected {
        return Err(NodeKeyError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_load_generates_a_0600_key_and_later_loads_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/node_key");
        let (key, created) = NodeKey::load_or_generate(&path).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, created) = NodeKey::load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(key.public(), again.public());
        assert!(key.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn readable_by_others_or_symlinked_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node_key");
        NodeKey::load_or_generate(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            NodeKey::load_or_generate(&path),
            Err(NodeKeyError::Permissions { mode: 0o640, .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            NodeKey::load_or_generate(&link),
            Err(NodeKeyError::Symlink(_))
        ));
        fs::write(dir.path().join("garbage"), "not a key").unwrap();
        fs::set_permissions(
            dir.path().join("garbage"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(matches!(
            NodeKey::load_or_generate(&dir.path().join("garbage")),
            Err(NodeKeyError::Format { .. })
        ));
    }
}
