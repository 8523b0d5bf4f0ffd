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
