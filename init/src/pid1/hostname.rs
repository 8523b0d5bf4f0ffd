//! The node's name. One image boots many machines as many nodes, so the
//! name comes from the most specific source there is:
//!
//! 1. `spore.hostname=` on the kernel command line (per boot: a netboot
//!    script per MAC address, a boot entry);
//! 2. `hostname` in `spore-node.toml` on the EFI system partition (per
//!    machine: a file the operator drops on the stick, read where a
//!    `[[mount]]` puts the ESP, `/boot/efi`);
//! 3. `hostname` in spore.toml (per image);
//! 4. `node-` and the first 8 hex digits of the SHA-256 of the node key
//!    (per machine, with nothing to set: each node makes its own key).
//!
//! A name that is not an RFC 1123 hostname is logged and the next source
//! is asked.

use std::path::Path;

use runtime::journal;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::NodeConfig;

/// Where the per-machine file is read.
pub const NODE_FILE: &str = "/boot/efi/spore-node.toml";

/// `spore-node.toml`: what one machine says about itself.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// This machine's hostname.
    pub hostname: Option<String>,
}

/// Where the chosen name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The kernel command line.
    Cmdline,
    /// spore-node.toml on the ESP.
    NodeFile,
    /// spore.toml.
    Config,
    /// Derived from the node key.
    NodeKey,
}

impl Source {
    fn describe(self) -> &'static str {
        match self {
            Source::Cmdline => "from spore.hostname= on the kernel command line",
            Source::NodeFile => "from spore-node.toml on the EFI system partition",
            Source::Config => "from spore.toml",
            Source::NodeKey => "derived from the node key",
        }
    }
}

/// The name a node key gives: `node-` and 8 hex digits of its SHA-256.
pub fn from_key(public: &[u8]) -> String {
    let digest = Sha256::digest(public);
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("node-{hex}")
}

/// Picks the name from the sources in order (see the module docs); `key`
/// is asked only when nothing else names the node.
pub fn choose(
    cmdline: &str,
    node_file: Option<&NodeFile>,
    config: &NodeConfig,
    key: impl FnOnce() -> Option<String>,
    log: &mut dyn FnMut(String),
) -> Option<(String, Source)> {
    let from_cmdline = cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix("spore.hostname="))
        .map(str::to_owned);
    let candidates = [
        (from_cmdline, Source::Cmdline),
        (node_file.and_then(|f| f.hostname.clone()), Source::NodeFile),
        (config.hostname.clone(), Source::Config),
    ];
    for (name, source) in candidates {
        let Some(name) = name else {
            continue;
        };
        match rpc::hostname::check(&name) {
            Ok(()) => return Some((name, source)),
            Err(error) => log(format!(
                "hostname {} {}: {error}; ignored",
                rpc::display::printable(&name),
                source.describe()
            )),
        }
    }
    key().map(|name| (name, Source::NodeKey))
}

/// Reads the sources, sets the hostname, and says where it came from.
pub fn name_node(config: &NodeConfig, state_dir: &Path) {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let node_file = match std::fs::read_to_string(NODE_FILE) {
        Ok(text) => match toml::from_str::<NodeFile>(&text) {
            Ok(file) => Some(file),
            Err(error) => {
                journal::note(format_args!(
                    "{NODE_FILE}: {}; ignored",
                    error.to_string().trim().replace('\n', " ")
                ));
                None
            }
        },
        Err(_) => None,
    };
    let key = || match rpc::nodekey::NodeKey::load_or_generate(&state_dir.join("node_key")) {
        Ok((key, created)) => {
            if created {
                journal::note(format_args!(
                    "generated node key {}",
                    state_dir.join("node_key").display()
                ));
            }
            Some(from_key(key.public().as_bytes()))
        }
        Err(error) => {
            journal::note(format_args!("hostname: node key: {error}"));
            None
        }
    };
    let chosen = choose(&cmdline, node_file.as_ref(), config, key, &mut |line| {
        journal::note(line)
    });
    let Some((name, source)) = chosen else {
        return;
    };
    match nix::unistd::sethostname(&name) {
        Ok(()) => journal::note(format_args!("hostname {name} ({})", source.describe())),
        Err(error) => journal::note(format_args!("sethostname {name}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hostname: Option<&str>) -> NodeConfig {
        NodeConfig {
            hostname: hostname.map(str::to_owned),
            ..NodeConfig::default()
        }
    }

    #[test]
    fn the_most_specific_source_wins() {
        let file = NodeFile {
            hostname: Some("rack2-node7".into()),
        };
        let mut log = |_: String| {};
        let key = || Some("node-0badc0de".to_owned());
        let pick = |cmdline: &str, file: Option<&NodeFile>, name: Option<&str>| {
            choose(cmdline, file, &config(name), key, &mut |_| {}).unwrap()
        };
        assert_eq!(
            pick("quiet spore.hostname=edge1", Some(&file), Some("image")),
            ("edge1".into(), Source::Cmdline)
        );
        assert_eq!(
            pick("quiet", Some(&file), Some("image")),
            ("rack2-node7".into(), Source::NodeFile)
        );
        assert_eq!(
            pick("quiet", None, Some("image")),
            ("image".into(), Source::Config)
        );
        assert_eq!(
            pick("quiet", None, None),
            ("node-0badc0de".into(), Source::NodeKey)
        );
        let mut asked = false;
        let _ = choose(
            "spore.hostname=x",
            None,
            &config(None),
            || {
                asked = true;
                None
            },
            &mut log,
        );
        assert!(!asked, "the key is made only when nothing names the node");
    }

    #[test]
    fn a_bad_name_is_logged_and_the_next_source_asked() {
        let mut lines = Vec::new();
        let chosen = choose(
            "spore.hostname=Bad_Name\u{1b}",
            None,
            &config(Some("good")),
            || None,
            &mut |line| lines.push(line),
        );
        assert_eq!(chosen, Some(("good".into(), Source::Config)));
        assert!(
            lines[0].contains("Bad_Name\\u{1b}") && lines[0].contains("ignored"),
            "{lines:?}"
        );
    }

    #[test]
    fn key_names_are_stable_hostnames() {
        let name = from_key(&[7u8; 32]);
        assert_eq!(name, from_key(&[7u8; 32]));
        assert_ne!(name, from_key(&[8u8; 32]));
        assert!(rpc::hostname::check(&name).is_ok());
        assert_eq!(name.len(), "node-".len() + 8);
    }
}
