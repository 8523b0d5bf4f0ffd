//! Signed RPC throughput and cost, against a real `spore run` on loopback
//! (run by hand: `cargo bench -p spore --bench rpc`). The node is one
//! single-threaded process, so its side runs on one core; the client runs
//! on the other. Each figure comes with an unauthenticated baseline measured
//! in the same run, and the ratio between them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rpc::client::{connect, Pin};
use rpc::identity::Identity;
use serde_json::json;

const WINDOW: Duration = Duration::from_secs(5);

fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        .unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("etc/services")).unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bench@host", "-f"])
        .arg(d.join("op"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::copy(d.join("op.pub"), d.join("etc/authorized_keys")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    std::fs::write(
        d.join("etc/spore.toml"),
        format!("[rpc]\nlisten = [\"{address}\"]\n"),
    )
    .unwrap();
    std::fs::write(
        d.join("etc/services/web.toml"),
        "[service]\nname = \"web\"\nexec = \"sleep 100000\"\n",
    )
    .unwrap();
    let mut node = Command::new(env!("CARGO_BIN_EXE_spore"))
        .args(["run", "--config-dir"])
        .arg(d.join("etc"))
        .arg("--state-dir")
        .arg(d.join("state"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = d.join("state/spore.sock");
    let started = Instant::now();
    while UnixStream::connect(&socket).is_err() || std::net::TcpStream::connect(&address).is_err() {
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
    let identity = Identity::from_file(&d.join("op")).unwrap();

    // 1. Handshakes per second, beside bare TCP connects.
    let (mut handshakes, mut connects) = (0u64, 0u64);
    let t = Instant::now();
    while t.elapsed() < WINDOW {
        smol::block_on(connect(&address, &identity, &pin, Duration::from_secs(5))).unwrap();
        handshakes += 1;
    }
    let handshake_rate = handshakes as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    while t.elapsed() < WINDOW {
        drop(std::net::TcpStream::connect(&address).unwrap());
        connects += 1;
    }
    let connect_rate = connects as f64 / t.elapsed().as_secs_f64();

    // 2. Signed requests per second on one session, beside the same request
    // on the unsigned local control socket.
    let signed_rate = smol::block_on(async {
        let mut session = connect(&address, &identity, &pin, Duration::from_secs(5))
            .await
            .unwrap();
        let mut n = 0u64;
        let t = Instant::now();
        while t.elapsed() < WINDOW {
            session
                .call("service.status", json!({ "name": "web" }))
                .await
                .unwrap();
            n += 1;
        }
        n as f64 / t.elapsed().as_secs_f64()
    });
    let local_rate = {
        let stream = UnixStream::connect(&socket).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let request = format!(
            "{}\n",
            json!({ "jsonrpc": "2.0", "id": 1, "method": "service.status", "params": { "name": "web" } })
        );
        let mut n = 0u64;
        let mut line = String::new();
        let t = Instant::now();
        while t.elapsed() < WINDOW {
            writer.write_all(request.as_bytes()).unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
            n += 1;
        }
        n as f64 / t.elapsed().as_secs_f64()
    };

    // 3. Memory per idle authenticated connection.
    let idle = 200;
    std::thread::sleep(Duration::from_millis(300));
    let before = pss_kib(node.id());
    let sessions: Vec<_> = (0..idle)
        .map(|_| {
            smol::block_on(connect(&address, &identity, &pin, Duration::from_secs(5))).unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let after = pss_kib(node.id());
    drop(sessions);

    let _ = node.kill();
    let _ = node.wait();
    println!("handshakes/s   {handshake_rate:>9.0}   bare TCP connects/s {connect_rate:>9.0}   ratio {:.3}", handshake_rate / connect_rate);
    println!(
        "signed req/s   {signed_rate:>9.0}   unsigned local req/s {local_rate:>8.0}   ratio {:.3}",
        signed_rate / local_rate
    );
    println!(
        "idle sessions  {idle}: node PSS {before} KiB -> {after} KiB, {:.1} KiB per connection",
        (after.saturating_sub(before)) as f64 / f64::from(idle)
    );
}
