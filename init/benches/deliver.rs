//! One program to a fleet (run by hand: `cargo bench -p spore --bench
//! deliver`): a 20 MiB artifact to 100 `spore run` nodes on loopback, two
//! ways side by side in one run, each ending when the service that pins it
//! is ready on every node:
//!
//! - **pushed**: the operator sends it to each node over signed RPC
//!   (`artifact.put`, as `sporectl deploy --artifact` does), then deploys;
//! - **via the beacon**: the operator publishes it once to a real beacon's
//!   artifact cache (`sporectl beacon serve --artifacts`), then deploys the
//!   file to each node, and each node fetches it from the beacon
//!   (`url = "beacon"`), as `sporectl --all deploy --artifact` does.
//!
//! Both use 16 operator connections at once. Reported: wall time and the
//! bytes the operator sent (counted by a forwarder on loopback in front of
//! each node and the beacon, through which the operator reaches them; the
//! nodes fetch from the beacon directly), and their ratios. `DELIVER_NODES` and
//! `DELIVER_MIB` change the fleet and the size.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc::client::connect;
use rpc::upload::Source;
use serde_json::json;

const WORKERS: usize = 16;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A forwarder on loopback in front of `target`: what the operator sends
/// through it is counted in `sent` (the bytes that would leave the
/// operator's machine).
fn forwarder(target: String, sent: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(upstream) = TcpStream::connect(&target) else {
                continue;
            };
            let (mut up_write, mut down_read) = (upstream.try_clone().unwrap(), upstream);
            let (mut client_read, mut client_write) = (client.try_clone().unwrap(), client);
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 256 * 1024];
                loop {
                    match client_read.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            sent.fetch_add(n as u64, Ordering::Relaxed);
                            if up_write.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = up_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut down_read, &mut client_write);
                let _ = client_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    address
}

/// A program of `size` bytes that runs (a shell script that execs sleep,
/// noise after it), in `dir`.
fn program(dir: &Path, size: usize, seed: u8) -> PathBuf {
    let mut bytes = b"#!/bin/sh\nexec sleep 100000\n".to_vec();
    bytes.extend(common::noise(size - bytes.len(), seed));
    let path = dir.join(format!("tool-{seed}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn service(name: &str, digest: &str, url: &str) -> String {
    format!(
        "[service]\nname = \"{name}\"\nexec = \"$ARTIFACTS_DIRECTORY/tool\"\n\n[[artifacts]]\nname = \"tool\"\nsha256 = \"{digest}\"\n{url}mode = \"0755\"\n"
    )
}

/// Runs `job` on every node (with the forwarder's address in front of
/// it), `WORKERS` at once.
fn each(nodes: &[(common::BenchNode, String)], job: impl Fn(&common::BenchNode, &str) + Sync) {
    let queue = Mutex::new(nodes.iter().collect::<VecDeque<_>>());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let Some((node, address)) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                job(node, address);
            });
        }
    });
}

/// Deploys `toml` on `node` (reached at `address`) and waits for it to
/// be ready; first pushes `push` when given.
fn deploy(node: &common::BenchNode, address: &str, toml: &str, push: Option<&Source>) {
    smol::block_on(async {
        let mut session = connect(address, &node.identity, &node.pin, Duration::from_secs(10))
            .await
            .unwrap();
        if let Some(source) = push {
            let answer =
                rpc::push::push(&mut session, source, Duration::from_secs(120), &mut |_| {})
                    .await
                    .unwrap();
            assert_eq!(answer["complete"], true);
        }
        let answer = session
            .call(
                "service.deploy",
                json!({ "toml": toml, "wait": true, "timeout_ms": 120_000 }),
            )
            .await
            .unwrap();
        let text = answer.to_string();
        assert!(text.contains("ready"), "{text}");
    });
}

struct Beacon(Child);

impl Drop for Beacon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let count = env_or("DELIVER_NODES", 100);
    let size = env_or("DELIVER_MIB", 20) << 20;
    let sporectl = common::sporectl();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "op@bench", "-f"])
        .arg(root.join("op"))
        .status()
        .unwrap();
    assert!(status.success());

    // A real beacon with a cache; every node here shares one source
    // address, as nodes behind one NAT do.
    let port = common::free_port();
    let beacon_url = format!("http://127.0.0.1:{port}");
    let beacon = Beacon(
        Command::new(&sporectl)
            .args(["beacon", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(root.join("beacon"))
            .arg("--open")
            .arg("--authorized-keys")
            .arg(root.join("op.pub"))
            .arg("--artifacts")
            .arg(root.join("beacon/artifacts"))
            .args(["--max-per-source", "512", "--max-connections", "1024"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }

    eprintln!("starting {count} nodes");
    let sent = Arc::new(AtomicU64::new(0));
    let nodes: Vec<(common::BenchNode, String)> = (0..count)
        .map(|i| {
            let d = root.join(format!("node-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(root.join("op"), d.join("op")).unwrap();
            std::fs::copy(root.join("op.pub"), d.join("op.pub")).unwrap();
            let node = common::start(&d, &[], &format!("\n[beacon]\nurl = \"{beacon_url}\"\n"));
            let address = forwarder(node.address.clone(), sent.clone());
            (node, address)
        })
        .collect();

    // Pushed to each node.
    let file = program(root, size, 1);
    let source = Source::read(file.to_str().unwrap()).unwrap();
    let toml = service("pushed", &source.digest.hex(), "");
    let before = sent.load(Ordering::Relaxed);
    let started = Instant::now();
    each(&nodes, |node, address| {
        deploy(node, address, &toml, Some(&source))
    });
    let push_time = started.elapsed();
    let push_bytes = sent.load(Ordering::Relaxed) - before;

    // Published once, fetched by each node from the beacon.
    let file = program(root, size, 2);
    let identity = rpc::identity::Identity::from_file(&root.join("op")).unwrap();
    let through = format!(
        "http://{}",
        forwarder(format!("127.0.0.1:{port}"), sent.clone())
    );
    let client = beacon::client::BeaconClient::new(&through, None, false).unwrap();
    let toml_fetched = |digest: &str| service("fetched", digest, "url = \"beacon\"\n");
    let before = sent.load(Ordering::Relaxed);
    let started = Instant::now();
    let source = Source::read(file.to_str().unwrap()).unwrap();
    client.publish(&source, &identity, &mut |_| {}).unwrap();
    let toml = toml_fetched(&source.digest.hex());
    each(&nodes, |node, address| deploy(node, address, &toml, None));
    let beacon_time = started.elapsed();
    let beacon_bytes = sent.load(Ordering::Relaxed) - before;
    drop(beacon);

    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "one {} MiB artifact to {count} nodes on loopback, {WORKERS} operator connections at once; ratio is via the beacon / pushed",
        size >> 20
    );
    println!("                          time (s)   sent by the operator (MiB)");
    println!(
        "pushed to each node       {:>8.2}   {:>10.1}",
        push_time.as_secs_f64(),
        mib(push_bytes)
    );
    println!(
        "published once, fetched   {:>8.2}   {:>10.1}",
        beacon_time.as_secs_f64(),
        mib(beacon_bytes)
    );
    println!(
        "ratio                     {:>8.2}   {:>10.3}",
        beacon_time.as_secs_f64() / push_time.as_secs_f64(),
        beacon_bytes as f64 / push_bytes as f64
    );
}
