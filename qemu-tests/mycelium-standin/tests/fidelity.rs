//! The stand-in run as a program, checked against what the real mycelium
//! daemon (v0.7.10) does in every way a node could notice: where its key
//! goes and how, what it does without a TUN, what it listens on, how its
//! APIs answer, what its log lines look like and when it is ready. Values
//! are computed here independently (x25519 and blake3 used directly).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{address_of, free_port};

use serde_json::Value;

/// The stand-in with `args`; stdout and stderr piped.
fn standin(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

struct Ports {
    tcp: u16,
    quic: u16,
    api: u16,
    rpc: u16,
}

fn args(key: &Path, ports: &Ports, extra: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = vec![
        "-k".into(),
        key.display().to_string(),
        "-t".into(),
        ports.tcp.to_string(),
        "-q".into(),
        ports.quic.to_string(),
        "--api-addr".into(),
        format!("127.0.0.1:{}", ports.api),
        "--jsonrpc-addr".into(),
        format!("127.0.0.1:{}", ports.rpc),
        "--disable-peer-discovery".into(),
    ];
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}

fn fresh_ports() -> Ports {
    Ports {
        tcp: free_port(),
        quic: free_port(),
        api: free_port(),
        rpc: free_port(),
    }
}

/// One request on `stream` (kept open); returns the status and JSON body.
fn request(stream: &mut TcpStream, method: &str, path: &str, body: &str) -> (u16, Value) {
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn wait_for_api(port: u16) -> TcpStream {
    let start = Instant::now();
    loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            return stream;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "API never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_missing_key_directory_is_fatal_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("state/key");
    let out = standin(&args(&key, &fresh_ports(), &["--no-tun"]))
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kind: NotFound"), "{stderr}");
    assert!(!dir.path().join("state").exists());
}

#[test]
fn without_its_tun_it_exits_unless_told_no_tun() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    // A name the kernel refuses, so the TUN cannot be made (and no host
    // interface is ever created by this test).
    let out = standin(&args(
        &key,
        &fresh_ports(),
        &["--tun-name", "a-name-far-too-long-for-linux"],
    ))
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "no TUN, no daemon");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("level=error"), "{stdout}");
}

#[test]
fn it_answers_listens_logs_and_keeps_its_key_as_mycelium_does() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    // A peer for it to connect to.
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_address = peer.local_addr().unwrap();
    let peers = format!("tcp://{peer_address}");
    let ports = fresh_ports();
    let started = Instant::now();
    let mut child = standin(&args(&key, &ports, &["--no-tun", "--peers", &peers]));
    // Not ready before mycelium would be.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        TcpStream::connect(("127.0.0.1", ports.api)).is_err()
            || started.elapsed() > Duration::from_millis(550),
        "the API came up sooner than mycelium's would"
    );
    let mut stream = wait_for_api(ports.api);
    let _held = peer.accept().unwrap();

    // The key file: 32 bytes, 0640; the address derived from it.
    let secret: [u8; 32] = std::fs::read(&key).unwrap().try_into().unwrap();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let expected = address_of(secret);
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
    let public_hex: String = public
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    // Two requests on one connection: kept alive.
    let (status, admin) = request(&mut stream, "GET", "/api/v1/admin", "");
    assert_eq!(status, 200);
    assert_eq!(admin["nodeIp"], expected.to_string());
    assert_eq!(admin["nodePubkey"], public_hex);
    let [a, b, c, d, ..] = expected.segments();
    assert_eq!(admin["nodeSubnet"], format!("{a:x}:{b:x}:{c:x}:{d:x}::/64"));
    assert!(admin["nodeStartTime"].as_u64().is_some());
    let (status, peers) = request(&mut stream, "GET", "/api/v1/admin/peers", "");
    assert_eq!(status, 200, "a second request on the same connection");
    let first = &peers[0];
    assert_eq!(first["endpoint"]["proto"], "tcp");
    assert_eq!(
        first["endpoint"]["addr"]["socket"],
        peer_address.to_string()
    );
    assert!(first["discovered"].as_u64().is_some(), "{first}");
    assert!(
        first["lastConnected"].is_null() || first["lastConnected"].as_u64().is_some(),
        "{first}"
    );
    assert_eq!(first["type"], "static");
    assert!(["alive", "connecting", "dead"].contains(&first["connectionState"].as_str().unwrap()));
    assert!(first["txBytes"].as_u64().is_some() && first["rxBytes"].as_u64().is_some());

    // JSON-RPC on its own port.
    let mut rpc = TcpStream::connect(("127.0.0.1", ports.rpc)).unwrap();
    let (_, info) = request(
        &mut rpc,
        "POST",
        "/",
        r#"{"jsonrpc":"2.0","id":1,"method":"getInfo","params":[]}"#,
    );
    assert_eq!(info["result"]["nodeSubnet"], admin["nodeSubnet"]);
    assert_eq!(info["result"]["nodePubkey"], public_hex);
    let (_, unknown) = request(
        &mut rpc,
        "POST",
        "/",
        r#"{"jsonrpc":"2.0","id":2,"method":"nope"}"#,
    );
    assert_eq!(unknown["error"]["code"], -32601);

    // QUIC's UDP port is taken.
    let taken = UdpSocket::bind(("::", ports.quic)).unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);

    // A second daemon on the same JSON-RPC port panics, as mycelium does.
    let mut clash = fresh_ports();
    clash.rpc = ports.rpc;
    let other = dir.path().join("other-key");
    let out = standin(&args(&other, &clash, &["--no-tun", "--disable-quic"]))
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101));

    // SIGTERM: a clean exit; every line it wrote is
    // `ts=… level=… target=… message="…" key=value…`.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(stdout.lines().count() >= 4, "{stdout}");
    for line in stdout.lines() {
        let mut words = line.splitn(4, ' ');
        let (ts, level, target, message) = (
            words.next().unwrap(),
            words.next().unwrap(),
            words.next().unwrap(),
            words.next().unwrap(),
        );
        assert!(ts.starts_with("ts=20") && ts.ends_with('Z'), "{line}");
        assert!(
            ["level=info", "level=error", "level=warn"].contains(&level),
            "{line}"
        );
        assert!(target.starts_with("target=mycelium"), "{line}");
        assert!(message.starts_with("message=\""), "{line}");
    }
    assert!(
        stdout.contains(&format!("message=\"Node overlay IP: {expected}\"")),
        "{stdout}"
    );
}
