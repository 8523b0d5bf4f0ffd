//! The operator on the host: an OpenSSH key made by ssh-keygen and sporectl
//! run with it, as a person would run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use crate::overlay::Overlay;

/// An operator's key and the sporectl they use.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The private key (the public one is beside it, `.pub`).
    pub key: PathBuf,
    /// sporectl.
    pub sporectl: PathBuf,
    /// Their known_nodes file.
    pub known_nodes: PathBuf,
    /// The overlay they are on, if any (sporectl runs in its namespace).
    pub overlay: Option<Arc<Overlay>>,
}

impl Operator {
    /// Makes a fresh ed25519 key in `dir` with ssh-keygen.
    pub fn new(dir: &Path, sporectl: &Path) -> Result<Operator, String> {
        let key = dir.join("operator");
        crate::keygen(&key, "operator@host")?;
        Ok(Operator {
            key,
            sporectl: sporectl.to_path_buf(),
            known_nodes: dir.join("known_nodes"),
            overlay: None,
        })
    }

    /// The public key file, for the image's authorized_keys.
    pub fn public(&self) -> PathBuf {
        self.key.with_extension("pub")
    }

    /// `sporectl --identity KEY ARGS…` (no agent, a private known_nodes).
    pub fn sporectl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.sporectl);
        if let Some(overlay) = &self.overlay {
            overlay.enter(&mut command);
        }
        command
            .arg("--identity")
            .arg(&self.key)
            .arg("--known-nodes")
            .arg(&self.known_nodes)
            .args(args)
            .env_remove("SSH_AUTH_SOCK");
        command.output().unwrap_or_else(|e| Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: format!("cannot run sporectl: {e}").into_bytes(),
        })
    }

    /// sporectl against one node at 127.0.0.1:`port`, its key pinned.
    pub fn on_node(&self, port: u16, node_key: &str, args: &[&str]) -> Output {
        let node = format!("127.0.0.1:{port}");
        let mut all = vec!["--node", node.as_str(), "--node-key", node_key];
        all.extend_from_slice(args);
        self.sporectl(&all)
    }
}
