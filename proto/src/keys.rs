//! Ed25519 public keys in OpenSSH's text forms, as nodes and operators
//! write and pin them: `ssh-ed25519 AAAA…` and `SHA256:…` fingerprints.

use ed25519_dalek::VerifyingKey;
use ssh_key::public::{Ed25519PublicKey, KeyData};
use ssh_key::{HashAlg, PublicKey};

/// `SHA256:…` of an Ed25519 public key, as `ssh-keygen -lf` prints it.
pub fn fingerprint(key: &VerifyingKey) -> String {
    ssh_public(key).fingerprint(HashAlg::Sha256).to_string()
}

/// `ssh-ed25519 AAAA…` for an Ed25519 public key.
pub fn openssh_public(key: &VerifyingKey) -> String {
    ssh_public(key).to_openssh().unwrap_or_default()
}

fn ssh_public(key: &VerifyingKey) -> PublicKey {
    PublicKey::new(
        KeyData::Ed25519(Ed25519PublicKey(key.to_bytes())),
        "spore-node",
    )
}

/// Parses `ssh-ed25519 AAAA…` into a verifying key.
pub fn parse_openssh_public(line: &str) -> Option<VerifyingKey> {
    let key = PublicKey::from_openssh(line.trim()).ok()?;
    match key.key_data() {
        KeyData::Ed25519(Ed25519PublicKey(bytes)) => VerifyingKey::from_bytes(bytes).ok(),
        _ => None,
    }
}
