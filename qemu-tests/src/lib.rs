//! Boots real Debian kernels under QEMU (TCG) with spore's initramfs, one
//! node and five, and drives them from the host exactly as an operator
//! would: a beacon on the host (the guests reach it as 10.0.2.2), `sporectl`
//! over each node's forwarded RPC port, the serial console read for marks.
//!
//! Nothing here is faked but mycelium, whose stand-in
//! (`qemu-tests/mycelium-standin`) takes its flags, makes its TUN, serves
//! its admin API and carries the overlay between nodes; a fleet booted
//! with [`Fleet::boot_on_overlay`] is driven over it, the operator's own
//! stand-in in a network namespace of its own ([`Overlay`]).

pub mod artifacts;
pub mod beacon;
pub mod chrony;
pub mod console;
pub mod fleet;
pub mod node;
pub mod operator;
pub mod overlay;
pub mod vm;

pub use artifacts::{artifacts, Artifacts};
pub use beacon::Beacon;
pub use fleet::{Fleet, Node};
pub use node::NodeSpec;
pub use operator::Operator;
pub use overlay::Overlay;
pub use vm::Vm;

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// An ed25519 key pair made by the real ssh-keygen at `path` (and `.pub`).
pub fn keygen(path: &std::path::Path, comment: &str) -> Result<(), String> {
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ssh-keygen failed for {}", path.display()))
    }
}

/// The fleet's enrollment, made as an operator makes it with the real
/// ssh-keygen: a CA key, and an image key signed by it as a host
/// certificate for the hostnames `node*` (`IMAGE_KEY-cert.pub`).
pub struct Enrollment {
    /// The CA's public key, for the beacon's `--enrollment-ca`.
    pub ca_public: std::path::PathBuf,
    /// The image key, for the manifest's `enrollment_key`.
    pub image_key: std::path::PathBuf,
}

impl Enrollment {
    /// Makes the CA and one image credential under `dir`.
    pub fn new(dir: &std::path::Path) -> Result<Enrollment, String> {
        let ca = dir.join("enrollment_ca");
        let image_key = dir.join("image_key");
        keygen(&ca, "fleet enrollment CA")?;
        keygen(&image_key, "qemu image")?;
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca)
            .args(["-h", "-I", "qemu-image-1", "-n", "node*", "-V", "-5m:+1d"])
            .arg(image_key.with_extension("pub"))
            .status()
            .map_err(|e| format!("ssh-keygen -s: {e}"))?;
        if !status.success() {
            return Err("ssh-keygen could not sign the image key".into());
        }
        // ssh-keygen names the certificate after the .pub file; spore looks
        // for it beside the private key, as ssh does.
        Ok(Enrollment {
            ca_public: ca.with_extension("pub"),
            image_key,
        })
    }
}

/// The name a node took, from its console's `spore: hostname NAME (…)`.
pub fn hostname_on(console: &str) -> Option<&str> {
    console
        .lines()
        .find_map(|l| l.split("spore: hostname ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
}
