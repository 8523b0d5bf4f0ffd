//! An artifact's name: the SHA-256 of its bytes, written as 64 lowercase
//! hex digits (as `sha256sum` prints it).

use std::fmt;
use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::ArtifactError;

/// The SHA-256 of an artifact's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Reads 64 hex digits (either case; a `sha256:` prefix is allowed).
    pub fn parse(text: &str) -> Result<Digest, ArtifactError> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        let bad = || ArtifactError::BadDigest(text.chars().take(80).collect());
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let digit = |c: u8| char::from(c).to_digit(16);
            match pair {
                [high, low] => match (digit(*high), digit(*low)) {
                    (Some(h), Some(l)) => *byte = u8::try_from(h * 16 + l).map_err(|_| bad())?,
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            }
        }
        Ok(Digest(bytes))
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of the file at `path`, read in 256 KiB pieces.
    pub fn of_file(path: &Path) -> std::io::Result<Digest> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(buffer.get(..n).unwrap_or_default());
        }
        Ok(Digest(hasher.finalize().into()))
    }

    /// The digest of what a hasher was given.
    pub(crate) fn of_hasher(hasher: Sha256) -> Digest {
        Digest(hasher.finalize().into())
    }

    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_abc_is_fips_180_2s() {
        // FIPS 180-2, appendix B.1.
        let abc = Digest::of_bytes(b"abc");
        assert_eq!(
            abc.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&abc.hex()).unwrap(), abc);
        assert_eq!(
            Digest::parse(&format!("sha256:{}", abc.hex().to_uppercase())).unwrap(),
            abc
        );
    }

    #[test]
    fn a_file_hashes_as_sha256sum_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new("sha256sum")
            .arg(&path)
            .output()
            .unwrap();
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            Digest::of_file(&path).unwrap().hex(),
            printed.split_whitespace().next().unwrap()
        );
    }

    #[test]
    fn anything_but_64_hex_digits_is_refused() {
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            "../etc/passwd",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(ArtifactError::BadDigest(_))),
                "{bad}"
            );
        }
    }
}
