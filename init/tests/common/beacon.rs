//! The beacon side of fleet tests: a real `sporectl beacon serve`
//! process, plain HTTP requests to it, real `spore run` nodes that call it,
//! and signed registrations made here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rpc::registration::Registration;
use serde_json::Value;

use super::{keygen, sporectl_bin, Spore};

pub use super::free_port;

/// A beacon process on `port` keeping its data in `data`.
pub struct Beacon {
    pub child: Child,
    pub port: u16,
}

impl Beacon {
    pub fn start(port: u16, data: &Path, extra: &[&str]) -> Beacon {
        Self::start_with_stderr(port, data, extra, Stdio::null())
    }

    /// [`Beacon::start`] with the beacon's log written to `log`.
    pub fn start_logging(port: u16, data: &Path, extra: &[&str], log: &Path) -> Beacon {
        let file = std::fs::File::create(log).unwrap();
        Self::start_with_stderr(port, data, extra, Stdio::from(file))
    }

    fn start_with_stderr(port: u16, data: &Path, extra: &[&str], stderr: Stdio) -> Beacon {
        let child = Command::new(sporectl_bin())
            .args([
                "beacon",
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data",
            ])
            .arg(data)
            .args(extra)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let beacon = Beacon { child, port };
        for _ in 0..500 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return beacon;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("beacon did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request to the beacon: (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    try_http(port, method, path, body).unwrap()
}

/// [`http`], with failures (a beacon that is gone) as errors.
pub fn try_http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn nodes(port: u16) -> Vec<Value> {
    let (status, body) = http(port, "GET", "/api/v1/nodes", "");
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

/// A node named `hostname` whose mycelium stand-in claims `::1`, with a
/// call-home service pointed at `beacon_port`; RPC on `[::1]:rpc_port`.
pub fn node(hostname: &str, beacon_port: u16, operator: &Path, heartbeat_s: u64) -> (Spore, u16) {
    node_with(hostname, beacon_port, operator, heartbeat_s, None)
}

/// [`node`], with an enrollment credential (an image key and its
/// `-cert.pub`) in its configuration directory, as the image builder puts it.
pub fn node_with(
    hostname: &str,
    beacon_port: u16,
    operator: &Path,
    heartbeat_s: u64,
    credential: Option<&Path>,
) -> (Spore, u16) {
    let url = format!("http://127.0.0.1:{beacon_port}/api/v1/nodes/register");
    node_calling(hostname, &[url], operator, heartbeat_s, credential)
}

/// [`node_with`], calling home to any of `urls` (beacon replicas).
pub fn node_calling(
    hostname: &str,
    urls: &[String],
    operator: &Path,
    heartbeat_s: u64,
    credential: Option<&Path>,
) -> (Spore, u16) {
    // One URL as a string (as most nodes are configured), several as a
    // list.
    let url = match urls {
        [one] => format!("{one:?}"),
        many => format!("{many:?}"),
    };
    let (api, rpc_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("services")).unwrap();
    if let Some(key) = credential {
        std::fs::copy(key, etc.join("enrollment_key")).unwrap();
        let mut cert = key.as_os_str().to_owned();
        cert.push("-cert.pub");
        std::fs::copy(cert, etc.join("enrollment_key-cert.pub")).unwrap();
    }
    std::fs::copy(operator.with_extension("pub"), etc.join("authorized_keys")).unwrap();
    std::fs::write(
        etc.join("spore.toml"),
        format!(
            "hostname = \"{hostname}\"\n[rpc]\nlisten = [\"mycelium:{rpc_port}\"]\nmycelium_api = \"http://127.0.0.1:{api}/api/v1/admin\"\n\n[beacon]\nurl = {url}\nmycelium_api = \"http://127.0.0.1:{api}/api/v1/admin\"\nretry_first_ms = 100\nretry_max_ms = 400\nheartbeat_s = {heartbeat_s}\n"
        ),
    )
    .unwrap();
    super::mycelium_service(&etc, api, 0.2, &dir.path().join("ready"), "::1");
    std::fs::write(
        etc.join("services/call-home.toml"),
        format!(
            "[service]\nname = \"call-home\"\nexec = [\"{}\", \"call-home\", \"--config-dir\", \"{}\", \"--state-dir\", \"{}\"]\n\n[dependencies]\nrequires = [\"mycelium\"]\n",
            super::spore_bin(),
            etc.display(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    (Spore::start_in(dir), rpc_port)
}

pub fn operator(dir: &Path) -> PathBuf {
    let key = dir.join("op");
    if !key.exists() {
        keygen(&key, "op@fleet");
    }
    key
}

/// The node's public key as `ssh-keygen -y` reads it from its key file
/// (which must therefore be an OpenSSH key).
pub fn node_public_key(spore: &Spore) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(spore.path("state/node_key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the node key is an OpenSSH key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn sporectl(args: &[&str]) -> Output {
    Command::new(sporectl_bin())
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

/// A registration signed by `key` for `hostname`, reachable at `[::1]:1`
/// (a closed port), carrying `proof`.
pub fn signed_registration(
    hostname: &str,
    key: &ed25519_dalek::SigningKey,
    proof: Option<rpc::enrollment::Proof>,
) -> String {
    registration_json(hostname, key, proof, true)
}

/// A registration naming `key`'s public half, signed by it only if `sign`.
pub fn registration_json(
    hostname: &str,
    key: &ed25519_dalek::SigningKey,
    proof: Option<rpc::enrollment::Proof>,
    sign: bool,
) -> String {
    let mut r = Registration {
        hostname: hostname.into(),
        mycelium_pubkey: "ab".repeat(32),
        mycelium_subnet: "::/64".into(),
        mycelium_address: "::1".into(),
        hero_proc_port: 1,
        hero_proc_auth_pubkey: rpc::nodekey::openssh_public(&key.verifying_key()),
        spore_version: "test".into(),
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        enrollment: proof,
        extra: Default::default(),
        signature: String::new(),
    };
    if sign {
        r.sign(key).unwrap();
    }
    serde_json::to_string(&r).unwrap()
}

pub fn listed(port: u16) -> Vec<String> {
    nodes(port)
        .iter()
        .map(|r| r["registration"]["hostname"].as_str().unwrap().to_owned())
        .collect()
}

/// A test CA and a server certificate for 127.0.0.1 signed by it, made
/// by openssl in `dir`: (CA, certificate, key).
pub fn tls_material(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=spore-test-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null
"#;
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "openssl failed");
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}
