//! A real `spore run` for the RPC benchmarks: an operator key made by
//! ssh-keygen, the RPC port on loopback, the node key pinned.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rpc::client::Pin;

#[path = "../../tests/common/shared.rs"]
mod shared;

use rpc::identity::Identity;
#[allow(unused_imports)]
pub use shared::{connect_from, free_port, noise};

/// A node under measurement; killed when dropped.
pub struct BenchNode {
    /// The `spore run` process.
    pub child: Child,
    /// Its RPC address.
    pub address: String,
    /// Its node key, pinned.
    pub pin: Pin,
    /// The operator.
    pub identity: Identity,
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `spore run` under `d` with `services` (name, file text) and
/// `rpc` lines added to its `[rpc]` table (and after it, more tables);
/// waits for its control socket and RPC port. The operator's key is
/// `d/op`, made when it is not there.
pub fn start(d: &Path, services: &[(&str, &str)], rpc: &str) -> BenchNode {
    std::fs::create_dir_all(d.join("etc/services")).unwrap();
    // The operator's key: one given (d/op already there), or a new one.
    if !d.join("op").exists() {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "bench@host", "-f"])
            .arg(d.join("op"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::fs::copy(d.join("op.pub"), d.join("etc/authorized_keys")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    std::fs::write(
        d.join("etc/spore.toml"),
        format!("[rpc]\nlisten = [\"{address}\"]\n{rpc}"),
    )
    .unwrap();
    for (name, text) in services {
        std::fs::write(d.join(format!("etc/services/{name}.toml")), text).unwrap();
    }
    let child = Command::new(env!("CARGO_BIN_EXE_spore"))
        .args(["run", "--config-dir"])
        .arg(d.join("etc"))
        .arg("--state-dir")
        .arg(d.join("state"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = d.join("state/spore.sock");
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err()
        || TcpStream::connect(&address).is_err()
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let node_key = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(d.join("state/node_key"))
        .output()
        .unwrap();
    let pin = Pin::Key(
        rpc::nodekey::parse_openssh_public(&String::from_utf8(node_key.stdout).unwrap()).unwrap(),
    );
    BenchNode {
        child,
        address,
        pin,
        identity: Identity::from_file(&d.join("op")).unwrap(),
    }
}

/// The proportional set size of `pid`, KiB.
pub fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        .unwrap()
}

/// sporectl, built in release as the benches are (for `beacon serve`).
pub fn sporectl() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "--release",
            "-p",
            "sporectl",
            "--bin",
            "sporectl",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    Path::new(env!("CARGO_BIN_EXE_spore")).with_file_name("sporectl")
}
