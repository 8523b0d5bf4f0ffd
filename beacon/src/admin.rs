//! Operators' orders to the beacon (`approve` a pending node, `remove` a
//! node, `publish` an artifact to its cache): a JSON body signed by an operator key listed in the beacon's
//! authorized_keys (admin role), as an SSHSIG in its own namespace over
//! [`CONTEXT`] ‖ the canonical JSON of the other fields. A timestamp within
//! [`MAX_SKEW`] of the beacon's clock and a nonce the beacon has not seen
//! in that window make a captured order worthless.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ssh_key::{Algorithm, SshSig};

use rpc::authorized::{AuthorizedKeys, Operator};
use rpc::identity::Identity;

/// The SSHSIG namespace of beacon orders.
pub const NAMESPACE: &str = "spore-beacon-admin-v1";
/// Prefix of the signed bytes.
pub const CONTEXT: &[u8] = b"spore-beacon-admin-v1\0";
/// Orders may be this far from the beacon's clock, either way (seconds).
pub const MAX_SKEW: u64 = 300;

/// One signed order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// `approve`, `hold`, `remove` (on `POST /api/v1/admin`), `publish` or
    /// `unpublish` (in the `Spore-Order` header of `PUT` or `DELETE
    /// /api/v1/artifacts/HEX`).
    pub action: String,
    /// The node it is about.
    pub hostname: String,
    /// For `approve`: the fingerprint (`SHA256:…`) of the pending node key
    /// the operator approves; for `hold`, the one entry to hold (empty:
    /// every pending entry of the name); ignored by `remove`.
    #[serde(default)]
    pub node_key: String,
    /// Unix seconds when it was signed.
    pub timestamp: u64,
    /// 32 hex digits, fresh for each order.
    pub nonce: String,
    /// The operator's key, `ssh-ed25519 AAAA…`.
    pub operator: String,
    /// For `publish`: the artifact's SHA-256 (64 lowercase hex digits).
    /// Left out of the signed JSON when empty, so orders of the other
    /// actions sign what they always signed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// For `publish`: its size in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// The SSHSIG, PEM (`-----BEGIN SSH SIGNATURE-----`).
    #[serde(default)]
    pub signature: String,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Why an order is refused (the beacon answers 403 with little detail and
/// logs this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The beacon has no operators configured.
    #[error("this beacon takes no orders (start it with --authorized-keys FILE)")]
    NoOperators,
    /// Bad fields.
    #[error("malformed order: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    Forged,
    /// Not an authorized key.
    #[error("key {0} is not authorized at this beacon")]
    Unknown(String),
    /// A reader key.
    #[error("key {0} may only read")]
    Reader(String),
    /// Too old, too new, or a nonce seen before.
    #[error("stale or replayed order")]
    Replayed,
}

impl Order {
    /// The bytes that are signed.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, String> {
        let mut value = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let Value::Object(map) = &mut value {
            map.remove("signature");
        }
        // serde_json's map is ordered by key, so this is canonical.
        let json = serde_json::to_string(&value).map_err(|e| e.to_string())?;
        Ok([CONTEXT, json.as_bytes()].concat())
    }

    /// A new order signed by `identity` (key file or ssh-agent).
    pub fn signed(
        action: &str,
        hostname: &str,
        node_key: &str,
        identity: &Identity,
        now: u64,
    ) -> Result<Self, String> {
        Self::unsigned(action, hostname, node_key, identity, now)?.sign(identity)
    }

    /// A new order to publish the artifact `sha256` of `size` bytes to the
    /// beacon's cache, signed by `identity`.
    pub fn publish(sha256: &str, size: u64, identity: &Identity, now: u64) -> Result<Self, String> {
        let mut order = Self::unsigned("publish", "", "", identity, now)?;
        order.sha256 = sha256.to_owned();
        order.size = size;
        order.sign(identity)
    }

    /// A new order to remove the artifact `sha256` from the beacon's
    /// cache, signed by `identity`.
    pub fn unpublish(sha256: &str, identity: &Identity, now: u64) -> Result<Self, String> {
        let mut order = Self::unsigned("unpublish", "", "", identity, now)?;
        order.sha256 = sha256.to_owned();
        order.sign(identity)
    }

    /// An order with a fresh nonce, not yet signed.
    fn unsigned(
        action: &str,
        hostname: &str,
        node_key: &str,
        identity: &Identity,
        now: u64,
    ) -> Result<Self, String> {
        use rand_core::{OsRng, RngCore};
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        Ok(Order {
            action: action.to_owned(),
            hostname: hostname.to_owned(),
            node_key: node_key.to_owned(),
            timestamp: now,
            nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
            operator: identity.public().to_openssh().map_err(|e| e.to_string())?,
            ..Order::default()
        })
    }

    /// Signs this order with `identity`.
    fn sign(mut self, identity: &Identity) -> Result<Self, String> {
        self.signature = String::new();
        let signature = identity
            .sign_in(NAMESPACE, &self.signed_bytes()?)
            .map_err(|e| e.to_string())?;
        self.signature = signature
            .to_pem(ssh_key::LineEnding::LF)
            .map_err(|e| e.to_string())?;
        Ok(self)
    }
}

/// Nonces remembered at most by a store (a flood of signed orders cannot
/// grow it without bound; only admins can sign one).
pub const MAX_NONCES: usize = 10_000;

impl Order {
    /// Verifies this order at `now` against `operators`: signature,
    /// operator, role, freshness. Returns the operator. Its nonce is the
    /// store's to take (every replica must see it used).
    pub fn check(
        &self,
        operators: Option<&mut AuthorizedKeys>,
        now: u64,
        log: &mut dyn FnMut(String),
    ) -> Result<Operator, OrderError> {
        let order = self;
        let operators = operators.ok_or(OrderError::NoOperators)?;
        if !matches!(
            order.action.as_str(),
            "approve" | "hold" | "remove" | "publish" | "unpublish"
        ) {
            return Err(OrderError::Malformed(format!(
                "unknown action `{}`",
                rpc::display::printable(&order.action)
            )));
        }
        if order.nonce.len() != 32 || !order.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(OrderError::Malformed("nonce is not 32 hex digits".into()));
        }
        let key = ssh_key::PublicKey::from_openssh(order.operator.trim())
            .map_err(|_| OrderError::Malformed("operator is not an OpenSSH public key".into()))?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(OrderError::Malformed("only ssh-ed25519 operators".into()));
        }
        let signature = SshSig::from_pem(order.signature.trim()).map_err(|_| OrderError::Forged)?;
        if signature.namespace() != NAMESPACE
            || signature.public_key() != key.key_data()
            || key
                .verify(
                    NAMESPACE,
                    &order.signed_bytes().map_err(OrderError::Malformed)?,
                    &signature,
                )
                .is_err()
        {
            return Err(OrderError::Forged);
        }
        operators.refresh(log);
        let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        let operator = operators
            .find(&key)
            .cloned()
            .ok_or_else(|| OrderError::Unknown(fingerprint.clone()))?;
        if operator.role != proto::rpc::Role::Admin {
            return Err(OrderError::Reader(fingerprint));
        }
        if order.timestamp + MAX_SKEW < now || order.timestamp > now + MAX_SKEW {
            return Err(OrderError::Replayed);
        }
        Ok(operator)
    }

    /// How long the store keeps this order's nonce: until the order is too
    /// old to be taken anyway.
    pub fn nonce_expires(&self) -> u64 {
        self.timestamp + MAX_SKEW + 1
    }
}
