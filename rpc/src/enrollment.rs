//! Enrollment: how a node proves to the beacon that it belongs to the fleet
//! on its first registration, with no manual step.
//!
//! The operator makes one **enrollment CA** (`ssh-keygen -t ed25519 -f
//! enroll_ca`) and gives its public half to the beacon. For each image they
//! make an **image key** and sign it as an OpenSSH *host* certificate
//! (`ssh-keygen -s enroll_ca -h -I ID [-n 'node*'] [-V +52w] image_key.pub`).
//! The image builder bakes the image key and its certificate into the image;
//! call-home signs `CONTEXT ‖ hostname ‖ 0 ‖ node public key` with the image
//! key and sends the certificate beside that signature. The beacon checks the
//! certificate against its CAs (signature, validity window, host type, no
//! critical options, key ID not revoked, hostname among the principals) and
//! the signature against the certificate's key.
//!
//! The CA's private half never enters an image: a copy of an image lets its
//! holder enroll new hostnames the certificate allows, until it expires or
//! its key ID is revoked, but never take over an enrolled hostname (its node
//! key is pinned) nor issue credentials.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::{Deserialize, Serialize};
use ssh_key::certificate::CertType;
use ssh_key::public::KeyData;
use ssh_key::{Certificate, Fingerprint, HashAlg, PublicKey};

use crate::nodekey::{NodeKey, NodeKeyError};

/// Prefix of the bytes an image key signs, so the signature cannot be
/// mistaken for one made in another protocol.
pub const CONTEXT: &[u8] = b"spore-enroll-v1\0";

/// What call-home attaches to a registration: the image's certificate and
/// the image key's signature binding this hostname to this node key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The OpenSSH certificate line, `ssh-ed25519-cert-v01@openssh.com AAAA…`.
    pub certificate: String,
    /// Hex Ed25519 signature by the certified key over [`signed_bytes`].
    pub signature: String,
}

/// The bytes an image key signs for one node.
pub fn signed_bytes(hostname: &str, node_key: &VerifyingKey) -> Vec<u8> {
    [
        CONTEXT,
        hostname.as_bytes(),
        b"\0",
        node_key.as_bytes().as_slice(),
    ]
    .concat()
}

/// Loading a credential failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The image key could not be used (permissions, format, …).
    #[error("enrollment key: {0}")]
    Key(#[from] NodeKeyError),
    /// The certificate file could not be read or parsed.
    #[error("{path}: {reason}")]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// An image's enrollment credential: the image key and its certificate.
/// The key never leaves this type (NodeKey has no Debug and zeroizes).
pub struct Credential {
    key: NodeKey,
    certificate: Certificate,
}

/// The certificate file beside a key file, as ssh names it: `KEY-cert.pub`.
pub fn certificate_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push("-cert.pub");
    PathBuf::from(name)
}

impl Credential {
    /// Loads the image key at `key` (0600, as the node key) and its
    /// certificate at `KEY-cert.pub`; the certificate must certify that key.
    pub fn load(key: &Path) -> Result<Self, CredentialError> {
        let image_key = NodeKey::load(key)?;
        let path = certificate_path(key);
        let fail = |reason: String| CredentialError::Certificate {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        let certificate =
            Certificate::from_openssh(text.trim()).map_err(|e| match e {
                // ssh-key 0.6 cannot represent ssh-keygen's "forever"
                // (RustCrypto/SSH#503); a credential nobody can retire is
                // unwise anyway.
                ssh_key::Error::Time => fail(
                    "the certificate never expires; sign the image key with a validity period (ssh-keygen -s CA -h -V +52w …)".into(),
                ),
                other => fail(other.to_string()),
            })?;
        check_certifies(&certificate, &image_key.public()).map_err(fail)?;
        Ok(Self {
            key: image_key,
            certificate,
        })
    }

    /// The proof for `hostname` registering with `node_key`.
    pub fn prove(&self, hostname: &str, node_key: &VerifyingKey) -> Result<Proof, String> {
        let signature = self
            .key
            .signing_key()
            .sign(&signed_bytes(hostname, node_key));
        Ok(Proof {
            certificate: self.certificate.to_openssh().map_err(|e| e.to_string())?,
            signature: crate::hex::encode(&signature.to_bytes()),
        })
    }

    /// The certificate's key ID (`ssh-keygen -I`).
    pub fn key_id(&self) -> &str {
        self.certificate.key_id()
    }
}

/// Checks that `certificate` is a host certificate of `key` (what the image
/// builder and call-home both check before using a credential).
pub fn check_certifies(certificate: &Certificate, key: &VerifyingKey) -> Result<(), String> {
    if certificate.cert_type() != CertType::Host {
        return Err(
            "not a host certificate (sign the image key with `ssh-keygen -s CA -h …`)".into(),
        );
    }
    match certificate.public_key() {
        KeyData::Ed25519(public) if public.0 == key.to_bytes() => Ok(()),
        KeyData::Ed25519(_) => Err("the certificate is for another key".into()),
        _ => Err("not an ssh-ed25519 certificate".into()),
    }
}

/// Why a proof does not enroll a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollmentError {
    /// The registration carries no proof.
    #[error("no enrollment credential")]
    Missing,
    /// The certificate is not an OpenSSH certificate.
    #[error("the enrollment certificate does not parse")]
    Malformed,
    /// Not signed by a trusted CA, or outside its validity window.
    #[error("the enrollment certificate is not signed by a trusted CA or is not valid now")]
    Untrusted,
    /// A user certificate, a critical option, a non-Ed25519 key.
    #[error("the enrollment certificate is not usable: {0}")]
    Unusable(String),
    /// Its key ID was revoked.
    #[error("the enrollment credential `{0}` is revoked")]
    Revoked(String),
    /// The hostname is not among its principals.
    #[error("the enrollment credential `{0}` does not cover this hostname")]
    Hostname(String),
    /// The image key's signature does not verify.
    #[error("the enrollment signature does not verify")]
    Forged,
}

/// What the beacon trusts: the enrollment CAs and the revoked key IDs.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    cas: Vec<Fingerprint>,
    revoked: Vec<String>,
}

/// Reading the CA file failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct TrustError {
    /// The file.
    pub path: PathBuf,
    /// The line (1-based; 0 when the file could not be read).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl Trust {
    /// Reads CA public keys from `path`: OpenSSH public key lines
    /// (`ssh-ed25519 AAAA… comment`), `#` comments and blank lines
    /// ignored. Several lines let an operator rotate: add the new CA, move
    /// images to it, remove the old one.
    pub fn from_file(path: &Path, revoked: Vec<String>) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrustError {
            path: path.to_owned(),
            line: 0,
            reason: e.to_string(),
        })?;
        let mut cas = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The node reads the CA's key inside its credential's
            // certificate, and a node decodes ssh-ed25519 keys only.
            let kind = line.split_whitespace().next().unwrap_or_default();
            if kind != "ssh-ed25519" {
                return Err(TrustError {
                    path: path.to_owned(),
                    line: index + 1,
                    reason: format!(
                        "a {} CA: enrollment CAs must be ssh-ed25519 (ssh-keygen -t ed25519), the only key type a node reads",
                        crate::display::printable(kind)
                    ),
                });
            }
            let key = PublicKey::from_openssh(line).map_err(|e| TrustError {
                path: path.to_owned(),
                line: index + 1,
                reason: format!("not an OpenSSH public key: {e}"),
            })?;
            cas.push(key.fingerprint(HashAlg::Sha256));
        }
        if cas.is_empty() {
            return Err(TrustError {
                path: path.to_owned(),
                line: 0,
                reason: "no CA key in the file".into(),
            });
        }
        Ok(Self { cas, revoked })
    }

    /// How many CAs are trusted.
    pub fn len(&self) -> usize {
        self.cas.len()
    }

    /// Whether no CA is trusted.
    pub fn is_empty(&self) -> bool {
        self.cas.is_empty()
    }

    /// Checks `proof` for `hostname` registering with `node_key` at
    /// `now` (Unix seconds); returns the credential's key ID.
    pub fn verify(
        &self,
        proof: Option<&Proof>,
        hostname: &str,
        node_key: &VerifyingKey,
        now: u64,
    ) -> Result<String, EnrollmentError> {
        let proof = proof.ok_or(EnrollmentError::Missing)?;
        let certificate = Certificate::from_openssh(proof.certificate.trim())
            .map_err(|_| EnrollmentError::Malformed)?;
        certificate
            .validate_at(now, &self.cas)
            .map_err(|_| EnrollmentError::Untrusted)?;
        // validate_at checks signature, CA and window only; the rest is ours
        // (PROTOCOL.certkeys: unknown critical options must be refused).
        if certificate.cert_type() != CertType::Host {
            return Err(EnrollmentError::Unusable("not a host certificate".into()));
        }
        if let Some((name, _)) = certificate.critical_options().iter().next() {
            return Err(EnrollmentError::Unusable(format!(
                "critical option `{}`",
                crate::display::printable(name)
            )));
        }
        let id = certificate.key_id().to_owned();
        if self.revoked.contains(&id) {
            return Err(EnrollmentError::Revoked(crate::display::printable(&id)));
        }
        let principals = certificate.valid_principals();
        if !principals.is_empty() && !principals.iter().any(|p| matches(p, hostname)) {
            return Err(EnrollmentError::Hostname(crate::display::printable(&id)));
        }
        let KeyData::Ed25519(public) = certificate.public_key() else {
            return Err(EnrollmentError::Unusable("not an ssh-ed25519 key".into()));
        };
        let image_key = VerifyingKey::from_bytes(&public.0).map_err(|_| EnrollmentError::Forged)?;
        let signature: [u8; 64] = crate::hex::decode(&proof.signature)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(EnrollmentError::Forged)?;
        image_key
            .verify_strict(
                &signed_bytes(hostname, node_key),
                &Signature::from_bytes(&signature),
            )
            .map_err(|_| EnrollmentError::Forged)?;
        Ok(id)
    }
}

/// An OpenSSH-style pattern: `*` any run of characters, `?` one.
pub fn matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    // Iterative glob with one backtrack point: linear in practice, never
    // exponential on hostile patterns.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if *c == b'?' || Some(c) == name.get(n) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|c| *c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enrollment_ca_of_another_key_type_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cas.pub");
        std::fs::write(
            &file,
            "# fleet CAs\necdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg= ca\n",
        )
        .unwrap();
        let error = Trust::from_file(&file, Vec::new())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains(":2"), "{error}");
        assert!(
            error.contains("a ecdsa-sha2-nistp256 CA: enrollment CAs must be ssh-ed25519"),
            "{error}"
        );
    }

    #[test]
    fn patterns_match_as_openssh_does() {
        assert!(matches("node*", "node1"));
        assert!(matches("node*", "node"));
        assert!(matches("*", "anything"));
        assert!(matches("n?de-*-b", "node-7-b"));
        assert!(!matches("node*", "mode1"));
        assert!(!matches("node?", "node"));
        assert!(!matches("a*b", "aXc"));
        assert!(matches("web", "web"));
        assert!(!matches("web", "web2"));
        // A hostile pattern stays fast.
        let long = "a".repeat(200);
        assert!(!matches(&"*a".repeat(50).replace("a*a", "a*b"), &long));
    }
}
