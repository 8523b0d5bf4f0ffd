//! A node with operators: a real `spore run` whose RPC listens on
//! loopback, with `admin`, `reader` (role=reader) and an unauthorized
//! `stranger` key made by the real `ssh-keygen`, and a running service
//! `web`; and the raw frames of the protocol, for tests that speak it by
//! hand.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use rpc::client::{connect, ClientError, Pin};
use rpc::handshake::{client_check, client_hello, VERSION};
use rpc::identity::Identity;
use serde_json::json;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

use super::{keygen, sporectl_bin, Spore};

pub struct Fleet {
    pub spore: Spore,
    pub keys: PathBuf,
    pub address: String,
    pub node_key: String,
}

/// A node with operators `admin` and `reader` (role=reader) and a running
/// service `web`; `stranger` has a key nobody authorized.
pub fn node() -> Fleet {
    node_with("")
}

/// [`node`] with more lines in spore.toml's `[rpc]`.
pub fn node_with(rpc_settings: &str) -> Fleet {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for name in ["admin", "reader", "stranger"] {
        keygen(&keys.join(name), &format!("{name}@test"));
    }
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("services")).unwrap();
    let admin = std::fs::read_to_string(keys.join("admin.pub")).unwrap();
    let reader = std::fs::read_to_string(keys.join("reader.pub")).unwrap();
    std::fs::write(
        etc.join("authorized_keys"),
        format!("{admin}role=reader {reader}"),
    )
    .unwrap();
    std::fs::write(
        etc.join("spore.toml"),
        format!(
            "[rpc]\nlisten = [\"127.0.0.1:{port}\"]\nhandshake_timeout_ms = 2000\n{rpc_settings}"
        ),
    )
    .unwrap();
    std::fs::write(
        etc.join("services/web.toml"),
        "[service]\nname = \"web\"\nexec = \"/bin/sh -c 'echo web says hello; exec sleep 1000'\"\n",
    )
    .unwrap();
    let spore = Spore::start_in(dir);
    spore.wait_for("the RPC listener", Duration::from_secs(10), |s| {
        s.stderr().contains("rpc: listening on")
    });
    spore.wait_state("web", "ready");
    let node_key = super::beacon::node_public_key(&spore);
    Fleet {
        keys: spore.path("keys"),
        spore,
        address: format!("127.0.0.1:{port}"),
        node_key,
    }
}

impl Fleet {
    /// sporectl pointed at this node with operator `key`, not yet run.
    pub fn sporectl_command(&self, key: &str, args: &[&str]) -> Command {
        let mut command = Command::new(sporectl_bin());
        command
            .args([
                "--node",
                &self.address,
                "--node-key",
                &self.node_key,
                "--identity",
            ])
            .arg(self.keys.join(key))
            .args(args)
            .env_remove("SSH_AUTH_SOCK");
        command
    }

    pub fn sporectl(&self, key: &str, args: &[&str]) -> Output {
        self.sporectl_command(key, args).output().unwrap()
    }

    pub fn identity(&self, key: &str) -> Identity {
        Identity::from_file(&self.keys.join(key)).unwrap()
    }

    /// Writes `text` as `NAME.toml` beside the node and deploys it with
    /// `--start`, as an operator would; panics if the deploy fails.
    pub fn deploy_started(&self, name: &str, text: &str) {
        let file = service_file(self, name, text);
        let out = self.sporectl("admin", &["deploy", file.to_str().unwrap(), "--start"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A signed session as operator `key`, through the client library.
    pub fn open(&self, key: &str) -> Result<rpc::client::Session, ClientError> {
        smol::block_on(connect(
            &self.address,
            &self.identity(key),
            &self.pin(),
            Duration::from_secs(10),
        ))
    }

    pub fn pin(&self) -> Pin {
        Pin::Key(rpc::nodekey::parse_openssh_public(&self.node_key).unwrap())
    }

    /// The web service's pid: unchanged means nothing happened to it.
    pub fn web_pid(&self) -> i64 {
        self.spore
            .call("service.status", json!({ "name": "web" }))
            .unwrap()["pid"]
            .as_i64()
            .unwrap()
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `text` as `NAME.toml` in a fresh directory of the test and
/// returns its path (the file name must match the service's name).
pub fn service_file(fleet: &Fleet, name: &str, text: &str) -> PathBuf {
    let dir = fleet.spore.path("operator");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

pub fn half_handshake(fleet: &Fleet) -> (TcpStream, [u8; 32], rpc::session::Channel) {
    let mut stream = TcpStream::connect(&fleet.address).unwrap();
    let ephemeral = StaticSecret::random_from_rng(OsRng);
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    let hello = client_hello(VERSION, &XPublic::from(&ephemeral), &nonce);
    write_frame(&mut stream, &hello);
    let node_hello = read_frame(&mut stream).unwrap();
    let pinned = rpc::nodekey::parse_openssh_public(&fleet.node_key).unwrap();
    let view = client_check(&hello, &node_hello, &ephemeral, Some(&pinned)).unwrap();
    let tx = rpc::session::Channel::new(&view.keys.c2s);
    (stream, view.client_transcript, tx)
}

pub fn write_frame(stream: &mut TcpStream, body: &[u8]) {
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(body).unwrap();
}

pub fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

/// True when the node closed the connection (EOF or reset) within 10 s.
pub fn closed_by_node(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = [0u8; 256];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}
