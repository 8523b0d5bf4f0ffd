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

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rpc::client::connect;
use serde_json::json;

const WINDOW: Duration = Duration::from_secs(5);

/// `service.status` on the local control socket, one at a time, until
/// `WINDOW` after `t`; how many were answered.
fn local_requests(socket: &std::path::Path, t: Instant) -> u64 {
    let stream = UnixStream::connect(socket).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let request = format!(
        "{}\n",
        json!({ "jsonrpc": "2.0", "id": 1, "method": "service.status", "params": { "name": "web" } })
    );
    let mut n = 0u64;
    let mut line = String::new();
    while t.elapsed() < WINDOW {
        writer.write_all(request.as_bytes()).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        n += 1;
    }
    n
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let node = common::start(
        d,
        &[(
            "web",
            "[service]\nname = \"web\"\nexec = \"sleep 100000\"\n",
        )],
        // 200 idle sessions of one key are measured below (default cap 32).
        "max_sessions_per_key = 256\n",
    );
    let (address, identity, pin) = (node.address.clone(), &node.identity, &node.pin);
    let socket = d.join("state/spore.sock");

    // Memory per idle authenticated connection, first: later phases leave
    // freed heap behind that new sessions would reuse unseen.
    let idle = 200;
    std::thread::sleep(Duration::from_millis(300));
    let before = common::pss_kib(node.child.id());
    let sessions: Vec<_> = (0..idle)
        .map(|_| smol::block_on(connect(&address, identity, pin, Duration::from_secs(5))).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let after = common::pss_kib(node.child.id());
    drop(sessions);

    // 1. Handshakes per second, beside bare TCP connects.
    let (mut handshakes, mut connects) = (0u64, 0u64);
    let t = Instant::now();
    while t.elapsed() < WINDOW {
        smol::block_on(connect(&address, identity, pin, Duration::from_secs(5))).unwrap();
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
        let mut session = connect(&address, identity, pin, Duration::from_secs(5))
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
        let t = Instant::now();
        local_requests(&socket, t) as f64 / t.elapsed().as_secs_f64()
    };

    // 3. The same with 64 sessions at once (64 tasks on one client thread),
    // beside 64 unsigned local connections at once (64 threads).
    let concurrent = 64;
    let signed_many = smol::block_on(async {
        let mut open = Vec::new();
        for _ in 0..concurrent {
            open.push(
                connect(&address, identity, pin, Duration::from_secs(5))
                    .await
                    .unwrap(),
            );
        }
        let executor = smol::LocalExecutor::new();
        let t = Instant::now();
        let tasks: Vec<_> = open
            .into_iter()
            .map(|mut session| {
                executor.spawn(async move {
                    let mut n = 0u64;
                    while t.elapsed() < WINDOW {
                        session
                            .call("service.status", json!({ "name": "web" }))
                            .await
                            .unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let total: u64 = executor
            .run(async {
                let mut total = 0;
                for task in tasks {
                    total += task.await;
                }
                total
            })
            .await;
        total as f64 / t.elapsed().as_secs_f64()
    });
    let local_many = {
        let t = Instant::now();
        let counts: Vec<_> = (0..concurrent)
            .map(|_| {
                let socket = socket.clone();
                std::thread::spawn(move || local_requests(&socket, t))
            })
            .collect();
        let total: u64 = counts.into_iter().map(|c| c.join().unwrap()).sum();
        total as f64 / t.elapsed().as_secs_f64()
    };

    // 4. Handshakes from 8 clients at once (the node's one core is the
    // limit, not one client's round trips).
    let clients = 8;
    let handshakes_many = {
        let t = Instant::now();
        let address = &address;
        let total: u64 = std::thread::scope(|scope| {
            let counts: Vec<_> = (0..clients)
                .map(|_| {
                    scope.spawn(move || {
                        let mut n = 0u64;
                        while t.elapsed() < WINDOW {
                            smol::block_on(connect(address, identity, pin, Duration::from_secs(5)))
                                .unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            counts.into_iter().map(|c| c.join().unwrap()).sum()
        });
        total as f64 / t.elapsed().as_secs_f64()
    };

    drop(node);
    println!("handshakes/s   {handshake_rate:>9.0}   bare TCP connects/s {connect_rate:>9.0}   ratio {:.3}", handshake_rate / connect_rate);
    println!(
        "signed req/s   {signed_rate:>9.0}   unsigned local req/s {local_rate:>8.0}   ratio {:.3}",
        signed_rate / local_rate
    );
    println!(
        "signed req/s, {concurrent} sessions {signed_many:>7.0}   unsigned local, {concurrent} connections {local_many:>7.0}   ratio {:.3}",
        signed_many / local_many
    );
    println!(
        "handshakes/s, {clients} clients {handshakes_many:>8.0}   (one client: {handshake_rate:.0})"
    );
    println!(
        "idle sessions  {idle}: node PSS {before} KiB -> {after} KiB, {:.1} KiB per connection",
        (after.saturating_sub(before)) as f64 / f64::from(idle)
    );
}
