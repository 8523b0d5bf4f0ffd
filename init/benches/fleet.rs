//! One operator command against 1,000 nodes (run by hand:
//! `cargo bench -p spore --bench fleet`). One `spore run` listens on 1,000
//! loopback ports, each registered at an in-process beacon as its own node;
//! `sporectl --all info` reaches every one under a 256-descriptor limit,
//! with concurrency 1 and 64 side by side (the ratio is the speed-up). The
//! one process stands in for 1,000 nodes, so its per-source and per-key
//! bounds are raised to what 1,000 nodes would each allow one operator.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use beacon::{Beacon, Settings};
use rpc::registration::Registration;

fn nodes() -> u16 {
    std::env::var("FLEET_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// The fleet command: `info` unless FLEET_COMMAND says otherwise (the one
/// stand-in process lists all its listeners in each `info`, so at 10,000
/// nodes `list` shows sporectl's own cost better).
fn command_word() -> String {
    std::env::var("FLEET_COMMAND").unwrap_or_else(|_| "info".into())
}

fn post(port: u16, body: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "POST /api/v1/nodes/register HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `sporectl --all info` with `concurrency`; returns (seconds, ok
/// count, peak RSS KiB of sporectl).
fn fleet_info(sporectl: &Path, beacon: &str, key: &Path, concurrency: usize) -> (f64, usize, i64) {
    let started = Instant::now();
    // GNU time reports sporectl's own peak RSS (%M, KiB); measuring from
    // here would count this process's pages shared before exec.
    let mut command = Command::new("/usr/bin/time");
    command.args(["-f", "peak-rss-kib %M"]);
    if let Ok(tool) = std::env::var("FLEET_WRAP") {
        command.args(tool.split_whitespace());
    }
    command
        .arg(sporectl)
        .args([
            "--beacon",
            beacon,
            "--all",
            "--concurrency",
            &concurrency.to_string(),
            "--identity",
        ])
        .arg(key)
        .args(["--json", &command_word()])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    // SAFETY: setrlimit between fork and exec, plain integers.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
    let out = command.output().unwrap();
    let stdout = out.stdout;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss: i64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let seconds = started.elapsed().as_secs_f64();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&stdout).unwrap_or_default();
    let ok = rows.iter().filter(|r| r["ok"] == true).count();
    if ok == 0 {
        eprintln!("sporectl: {stderr}");
    }
    (seconds, ok, rss)
}

fn main() {
    let sporectl = common::sporectl();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(d.join("op"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(d.join("etc/services")).unwrap();
    std::fs::copy(d.join("op.pub"), d.join("etc/authorized_keys")).unwrap();
    let ports: Vec<u16> = (0..nodes())
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let listen: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    std::fs::write(
        d.join("etc/spore.toml"),
        format!(
            "[rpc]\nlisten = [{}]\nmax_connections = 4096\nmax_handshaking = 4096\nmax_handshaking_per_source = 4096\nmax_sessions_per_key = 4096\n",
            listen.join(", ")
        ),
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
    let last = *ports.last().unwrap();
    while TcpStream::connect(("127.0.0.1", last)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // An in-process beacon without the per-source rate limit.
    let beacon_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = d.join("beacon");
    std::thread::spawn(move || {
        let settings = Settings {
            rate_per_second: 1e9,
            burst: 1e9,
            policy: beacon::Policy {
                open: true,
                ..Default::default()
            },
            ..Settings::default()
        };
        let location = beacon::Location::File(data.join("beacon.redb"));
        let beacon = Beacon::open(&location, settings).unwrap();
        let listener = smol::net::TcpListener::try_from(
            std::net::TcpListener::bind(("127.0.0.1", beacon_port)).unwrap(),
        )
        .unwrap();
        let executor: &'static smol::LocalExecutor<'static> =
            Box::leak(Box::new(smol::LocalExecutor::new()));
        smol::block_on(executor.run(beacon.serve(listener, None, executor)));
    });
    while TcpStream::connect(("127.0.0.1", beacon_port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let key = rpc::nodekey::NodeKey::load_or_generate(&d.join("state/node_key"))
        .unwrap()
        .0;
    let now = nodeapi::api::unix_time();
    for (i, port) in ports.iter().enumerate() {
        let mut r = Registration {
            hostname: format!("node-{i:04}"),
            mycelium_pubkey: "ab".repeat(32),
            mycelium_subnet: "415::/64".into(),
            mycelium_address: "127.0.0.1".into(),
            hero_proc_port: *port,
            hero_proc_auth_pubkey: key.openssh_public(),
            spore_version: "bench".into(),
            timestamp: now,
            enrollment: None,
            extra: BTreeMap::new(),
            signature: String::new(),
        };
        r.sign(key.signing_key()).unwrap();
        assert_eq!(post(beacon_port, &serde_json::to_string(&r).unwrap()), 200);
    }
    let beacon = format!("http://127.0.0.1:{beacon_port}");
    let (serial_s, serial_ok, serial_rss) = fleet_info(&sporectl, &beacon, &d.join("op"), 1);
    let (parallel_s, parallel_ok, rss) = fleet_info(&sporectl, &beacon, &d.join("op"), 64);
    let _ = node.kill();
    let _ = node.wait();
    println!(
        "sporectl --all {}, {} nodes, sporectl limited to 256 file descriptors:",
        command_word(),
        nodes()
    );
    println!(
        "  concurrency  1: {serial_ok:>4} ok in {serial_s:>6.2} s ({:.0} nodes/s)",
        f64::from(nodes()) / serial_s
    );
    println!(
        "  concurrency 64: {parallel_ok:>4} ok in {parallel_s:>6.2} s ({:.0} nodes/s)",
        f64::from(nodes()) / parallel_s
    );
    println!(
        "  speed-up {:.2}x; sporectl peak RSS {serial_rss} KiB serial, {rss} KiB at 64",
        serial_s / parallel_s
    );
}
