//! What call-home sends and the beacon stores: the seed's payload fields,
//! spore's version, a timestamp, and the node key's signature over the
//! canonical JSON (keys sorted, no whitespace, `signature` left out).

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::nodekey::parse_openssh_public;

/// Prefix of the signed bytes, so a registration signature can never be
/// mistaken for one made in another protocol.
pub const CONTEXT: &[u8] = b"spore-beacon-v1\0";

/// One node's registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The node's hostname (the beacon's key).
    pub hostname: String,
    /// Mycelium's public key (hex).
    pub mycelium_pubkey: String,
    /// The node's /64 in 400::/7.
    pub mycelium_subnet: String,
    /// The node's overlay address.
    pub mycelium_address: String,
    /// The signed RPC port.
    pub hero_proc_port: u16,
    /// The node's Ed25519 key, `ssh-ed25519 AAAA…`: operators pin it.
    pub hero_proc_auth_pubkey: String,
    /// spore's version.
    pub spore_version: String,
    /// Seconds since the Unix epoch when it was signed.
    pub timestamp: u64,
    /// The image's enrollment proof (see [`crate::enrollment`]); signed by
    /// the node key with the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<crate::enrollment::Proof>,
    /// Fields added by later versions, kept and signed as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
    /// Hex Ed25519 signature over [`CONTEXT`] ‖ canonical JSON.
    #[serde(default)]
    pub signature: String,
}

/// Why a registration does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The key field is not an ssh-ed25519 public key.
    #[error("hero_proc_auth_pubkey is not an ssh-ed25519 public key")]
    BadKey,
    /// The signature is not 64 hex-encoded bytes.
    #[error("signature is not 128 hex digits")]
    BadSignature,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Forged,
    /// JSON encoding failed.
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl Registration {
    /// The bytes that are signed.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, RegistrationError> {
        let mut value =
            serde_json::to_value(self).map_err(|e| RegistrationError::Encode(e.to_string()))?;
        if let Value::Object(map) = &mut value {
            map.remove("signature");
        }
        // serde_json's map is ordered by key, so this is canonical.
        let json =
            serde_json::to_string(&value).map_err(|e| RegistrationError::Encode(e.to_string()))?;
        Ok([CONTEXT, json.as_bytes()].concat())
    }

    /// Signs with the node key.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), RegistrationError> {
        let signature = key.sign(&self.signed_bytes()?);
        self.signature = crate::hex::encode(&signature.to_bytes());
        Ok(())
    }

    /// Checks the signature against the key the registration names.
    pub fn verify(&self) -> Result<VerifyingKey, RegistrationError> {
        let key =
            parse_openssh_public(&self.hero_proc_auth_pubkey).ok_or(RegistrationError::BadKey)?;
        let bytes = crate::hex::decode(&self.signature).ok_or(RegistrationError::BadSignature)?;
        let signature: [u8; 64] = bytes
            .try_into()
            .map_err(|_| RegistrationError::BadSignature)?;
        key.verify_strict(&self.signed_bytes()?, &Signature::from_bytes(&signature))
            .map_err(|_| RegistrationError::Forged)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &SigningKey) -> Registration {
        let mut r = Registration {
            hostname: "node-01".into(),
            mycelium_pubkey: "ab".repeat(32),
            mycelium_subnet: "415:6e6d:c26c:5c97::/64".into(),
            mycelium_address: "415:6e6d:c26c:5c97:2ed6:4726:fc4:27e4".into(),
            hero_proc_port: 9999,
            hero_proc_auth_pubkey: crate::nodekey::openssh_public(&key.verifying_key()),
            spore_version: "0.1.0".into(),
            timestamp: 1_795_400_000,
            enrollment: None,
            extra: BTreeMap::new(),
            signature: String::new(),
        };
        r.sign(key).unwrap();
        r
    }

    #[test]
    fn signed_registration_verifies_and_any_change_breaks_it() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let r = sample(&key);
        assert_eq!(r.verify().unwrap(), key.verifying_key());
        let mut moved = r.clone();
        moved.mycelium_address = "415::1".into();
        assert_eq!(moved.verify(), Err(RegistrationError::Forged));
        let mut rekeyed = r.clone();
        rekeyed.hero_proc_auth_pubkey =
            crate::nodekey::openssh_public(&SigningKey::from_bytes(&[8; 32]).verifying_key());
        assert_eq!(rekeyed.verify(), Err(RegistrationError::Forged));
    }

    #[test]
    fn json_round_trip_keeps_the_signature_valid_and_unknown_fields() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut r = sample(&key);
        r.extra.insert("rack".into(), Value::String("b7".into()));
        r.sign(&key).unwrap();
        let text = serde_json::to_string_pretty(&r).unwrap();
        let back: Registration = serde_json::from_str(&text).unwrap();
        assert_eq!(back.extra.get("rack"), Some(&Value::String("b7".into())));
        assert!(back.verify().is_ok());
    }
}
