//! The node identity: a 32-byte X25519 secret in the key file (made on
//! first start, 0600, as mycelium does), its public key, and the overlay
//! address in 400::/7 hashed from it with blake3.

use std::io::{Read, Write};
use std::net::Ipv6Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What the admin API reports about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The X25519 public key.
    pub public: [u8; 32],
    /// The overlay address.
    pub address: Ipv6Addr,
}

impl Identity {
    /// From a secret: the public key and the address derived from it.
    pub fn from_secret(secret: [u8; 32]) -> Identity {
        let secret = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        let mut bytes = [0u8; 16];
        let mut hasher = blake3::Hasher::new();
        hasher.update(&public);
        hasher.finalize_xof().fill(&mut bytes);
        // The first 7 bits are 0000_010: the address falls in 400::/7.
        if let Some(first) = bytes.first_mut() {
            *first = 0x04 | (*first & 0x01);
        }
        Identity {
            public,
            address: Ipv6Addr::from(bytes),
        }
    }

    /// The /64 the node routes for.
    pub fn subnet(&self) -> String {
        let [a, b, c, d, ..] = self.address.segments();
        format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
    }

    /// The public key as 64 hex digits.
    pub fn public_hex(&self) -> String {
        self.public.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Reads the key file, or makes one (32 random bytes, 0600).
pub fn load_or_create(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut secret = [0u8; 32];
    match std::fs::File::open(path) {
        Ok(mut file) => {
            file.read_exact(&mut secret)?;
            return Ok(secret);
        }
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        Err(_) => {}
    }
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&secret)?;
    file.sync_all()?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_in_400_slash_7_and_stable() {
        for seed in 0..=255u8 {
            let id = Identity::from_secret([seed; 32]);
            assert_eq!(id.address.octets()[0] & 0xfe, 0x04, "{}", id.address);
            assert_eq!(id, Identity::from_secret([seed; 32]));
        }
        assert_ne!(
            Identity::from_secret([1; 32]).address,
            Identity::from_secret([2; 32]).address
        );
    }

    #[test]
    fn the_key_file_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("standin-key-{}", std::process::id()));
        let path = dir.join("key");
        let first = load_or_create(&path).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), first);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
