//! The node identity: a 32-byte X25519 secret in the key file (made on
//! first start, 0640, as mycelium v0.7.10 makes it, in a directory that
//! must already exist), its public key, and the overlay address in 400::/7
//! hashed from it with blake3.

use std::io::{Read, Write};
use std::net::Ipv6Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
        // mycelium (crypto.rs, PublicKey::address): the first byte becomes
        // 0x04, plus 1 when the hash's first byte has an odd number of bits
        // set, so the address falls in 400::/7.
        if let Some(first) = bytes.first_mut() {
            *first = 0x04 | (first.count_ones() % 2) as u8;
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

/// Reads the key file, or makes one (32 random bytes, 0640). Like mycelium,
/// it does not create the file's directory: a missing one is an error
/// (`No such file or directory`), and the daemon exits.
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
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)?;
    // The mode asked for, whatever the umask.
    file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
    file.write_all(&secret)?;
    file.sync_all()?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mycelium's address of an X25519 secret, computed here from the
    /// crates directly, not through [`Identity`].
    fn address_of(secret: [u8; 32]) -> Ipv6Addr {
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
        let mut hash = [0u8; 16];
        blake3::Hasher::new()
            .update(public.as_bytes())
            .finalize_xof()
            .fill(&mut hash);
        let parity = (0..8).filter(|bit| hash[0] & (1 << bit) != 0).count() % 2;
        hash[0] = 0x04 + parity as u8;
        Ipv6Addr::from(hash)
    }

    #[test]
    fn addresses_follow_mycelium_including_the_parity_bit() {
        let mut odd_and_even = [0, 0];
        for seed in 0..=255u8 {
            let id = Identity::from_secret([seed; 32]);
            assert_eq!(id.address, address_of([seed; 32]), "seed {seed}");
            assert_eq!(id.address.octets()[0] & 0xfe, 0x04);
            odd_and_even[usize::from(id.address.octets()[0] & 1)] += 1;
        }
        // Both halves of 400::/7 occur; the old low-bit rule disagreed
        // with mycelium on about 3 keys in 8.
        assert!(odd_and_even.iter().all(|n| *n > 50), "{odd_and_even:?}");
    }

    #[test]
    fn the_key_file_is_made_once_0640_and_its_directory_is_not_created() {
        let dir = std::env::temp_dir().join(format!("standin-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        let first = load_or_create(&path).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), first);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let missing = dir.join("missing/key");
        let error = load_or_create(&missing).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        assert!(!dir.join("missing").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
