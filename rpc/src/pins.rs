//! The operator's pins of node keys, like ssh's known_hosts:
//! `~/.config/spore/known_nodes`, one `ADDRESS ssh-ed25519 BASE64` a line.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::nodekey::{openssh_public, parse_openssh_public};

/// The default pin file: `$XDG_CONFIG_HOME/spore/known_nodes` or
/// `~/.config/spore/known_nodes`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("spore/known_nodes")
}

/// The key pinned for `address` in `file`, if any.
pub fn lookup(file: &Path, address: &str) -> Option<VerifyingKey> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let (addr, key) = line.trim().split_once(' ')?;
        (addr == address)
            .then(|| parse_openssh_public(key))
            .flatten()
    })
}

/// Adds `address key` to `file` (creating it and its directory).
pub fn remember(file: &Path, address: &str, key: &VerifyingKey) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    writeln!(out, "{address} {}", openssh_public(key))
}

/// The pin file's text; none yet reads as empty.
fn read(file: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(file) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other,
    }
}

/// Every pin in `file`: address and key, in file order (lines that are
/// not pins are skipped).
pub fn list(file: &Path) -> std::io::Result<Vec<(String, VerifyingKey)>> {
    Ok(read(file)?
        .lines()
        .filter_map(|line| {
            let (address, key) = line.trim().split_once(' ')?;
            Some((address.to_owned(), parse_openssh_public(key)?))
        })
        .collect())
}

/// Removes every pin of `address` from `file`, written atomically; how
/// many there were.
pub fn forget(file: &Path, address: &str) -> std::io::Result<usize> {
    let text = read(file)?;
    let (gone, kept): (Vec<&str>, Vec<&str>) = text.lines().partition(|line| {
        line.trim()
            .split_once(' ')
            .is_some_and(|(a, _)| a == address)
    });
    if !gone.is_empty() {
        let mut rest = kept.join("\n");
        if !rest.is_empty() {
            rest.push('\n');
        }
        durable::atomic::write_atomically(file, rest.as_bytes(), 0o600)?;
    }
    Ok(gone.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_listed_and_forgotten_one_address_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spore/known_nodes");
        let key = |n: u8| ed25519_dalek::SigningKey::from_bytes(&[n; 32]).verifying_key();
        remember(&file, "10.0.0.1:9999", &key(1)).unwrap();
        remember(&file, "10.0.0.2:9999", &key(2)).unwrap();
        let listed: Vec<String> = list(&file).unwrap().into_iter().map(|(a, _)| a).collect();
        assert_eq!(listed, ["10.0.0.1:9999", "10.0.0.2:9999"]);
        assert_eq!(forget(&file, "10.0.0.1:9999").unwrap(), 1);
        assert_eq!(forget(&file, "10.0.0.1:9999").unwrap(), 0);
        assert_eq!(lookup(&file, "10.0.0.1:9999"), None);
        assert_eq!(lookup(&file, "10.0.0.2:9999"), Some(key(2)));
        assert!(list(&dir.path().join("absent")).unwrap().is_empty());
    }
}
