//! The beacon under a fleet's load (run by hand:
//! `cargo bench -p spore --bench beacon`). 10,000 simulated nodes (their
//! own Ed25519 keys, registrations signed before the clock starts) enroll
//! and then heartbeat once each, over real TCP with one request per
//! connection as call-home sends them; then the whole list is read. Side by
//! side in one run: one beacon on its redb file, and two replicas on one
//! real PostgreSQL (a throwaway cluster, `initdb` in a temporary
//! directory) with the nodes split between them. Every answer must be 200:
//! each registration was verified and committed before it was answered.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    dead_code
)]

#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use beacon::{Beacon, Location, Settings};
use rpc::registration::Registration;

fn nodes() -> usize {
    std::env::var("BEACON_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

/// Requests in flight at once (call-home connections).
const CONCURRENCY: usize = 32;

/// An in-process beacon on its own thread; its port.
fn start(location: Location) -> u16 {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::thread::Builder::new()
        .name("beacon".into())
        .spawn(move || {
            let settings = Settings {
                // One source address stands for 10,000 nodes.
                rate_per_second: 1e9,
                burst: 1e9,
                max_per_source: 1024,
                policy: beacon::Policy {
                    open: true,
                    ..Default::default()
                },
                ..Settings::default()
            };
            let beacon = Beacon::open(&location, settings).unwrap();
            let listener = smol::net::TcpListener::try_from(
                std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
            )
            .unwrap();
            let executor: &'static smol::LocalExecutor<'static> =
                Box::leak(Box::new(smol::LocalExecutor::new()));
            smol::block_on(executor.run(beacon.serve(listener, None, executor)));
        })
        .unwrap();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    port
}

fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = std::str::from_utf8(&response[9..12])
        .unwrap()
        .parse()
        .unwrap();
    (status, response.split_off(head_end + 4))
}

/// Registrations for every node, signed with its own key, at `timestamp`.
fn signed(keys: &[ed25519_dalek::SigningKey], timestamp: u64) -> Vec<String> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let mut r = Registration {
                hostname: format!("node-{i:05}"),
                mycelium_pubkey: "ab".repeat(32),
                mycelium_subnet: "415::/64".into(),
                mycelium_address: "415::1".into(),
                hero_proc_port: 9999,
                hero_proc_auth_pubkey: rpc::nodekey::openssh_public(&key.verifying_key()),
                spore_version: "bench".into(),
                timestamp,
                enrollment: None,
                extra: BTreeMap::new(),
                signature: String::new(),
            };
            r.sign(key).unwrap();
            serde_json::to_string(&r).unwrap()
        })
        .collect()
}

/// CPU seconds this thread has used.
fn thread_cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds used so far by `pids`' processes or this process's threads
/// named `thread`: utime + stime from /proc (clock ticks of 1/100 s).
fn proc_cpu(stat: &str) -> f64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of this process's threads, by name.
fn threads_cpu(name: &str) -> f64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter(|stat| stat.contains(&format!("({name})")))
        .map(|stat| proc_cpu(&stat))
        .sum()
}

/// CPU seconds of process `pid` and its children (PostgreSQL's postmaster
/// and backends).
fn tree_cpu(pid: u32) -> f64 {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let own: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let parent: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (own == pid || parent == pid).then(|| proc_cpu(&stat))
        })
        .sum()
}

/// Where a burst's CPU went, in microseconds per registration.
#[derive(Default, Clone, Copy)]
struct Cpu {
    load: f64,
    beacon: f64,
    store: f64,
    postgres: f64,
}

/// Posts every registration, `CONCURRENCY` at a time, spread over
/// `ports`; registrations per second and where the CPU went.
fn burst(ports: &[u16], registrations: &[String], postgres: Option<u32>) -> (f64, Cpu) {
    let before = (
        threads_cpu("beacon"),
        threads_cpu("beacon-store"),
        postgres.map_or(0.0, tree_cpu),
    );
    let started = Instant::now();
    let load: f64 = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..CONCURRENCY)
            .map(|t| {
                scope.spawn(move || {
                    for (i, body) in registrations
                        .iter()
                        .enumerate()
                        .skip(t)
                        .step_by(CONCURRENCY)
                    {
                        let port = ports[i % ports.len()];
                        let (status, answer) =
                            request(port, "POST", "/api/v1/nodes/register", body);
                        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    }
                    thread_cpu()
                })
            })
            .collect();
        senders.into_iter().map(|s| s.join().unwrap()).sum()
    });
    let rate = registrations.len() as f64 / started.elapsed().as_secs_f64();
    let per = |seconds: f64| seconds * 1e6 / registrations.len() as f64;
    let cpu = Cpu {
        load: per(load),
        beacon: per(threads_cpu("beacon") - before.0),
        store: per(threads_cpu("beacon-store") - before.1),
        postgres: per(postgres.map_or(0.0, tree_cpu) - before.2),
    };
    (rate, cpu)
}

/// The median time to read the whole list (checked: every node in it).
fn listing(port: u16, expected: usize) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let (status, body) = request(port, "GET", "/api/v1/nodes", "");
            let took = started.elapsed();
            assert_eq!(status, 200);
            let list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            assert_eq!(list.len(), expected);
            took
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

struct Figures {
    enroll: f64,
    heartbeat: f64,
    cpu: Cpu,
    list: Duration,
}

fn run(
    ports: &[u16],
    keys: &[ed25519_dalek::SigningKey],
    now: u64,
    postgres: Option<u32>,
) -> Figures {
    let enroll = signed(keys, now);
    let heartbeat = signed(keys, now + 1);
    let (enroll, _) = burst(ports, &enroll, postgres);
    let (heartbeat, cpu) = burst(ports, &heartbeat, postgres);
    let list = listing(ports[0], keys.len());
    Figures {
        enroll,
        heartbeat,
        cpu,
        list,
    }
}

fn main() {
    let n = nodes();
    let keys: Vec<ed25519_dalek::SigningKey> = (0..n)
        .map(|i| {
            let mut seed = [9u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            ed25519_dalek::SigningKey::from_bytes(&seed)
        })
        .collect();
    let now = nodeapi::api::unix_time();
    let dir = tempfile::tempdir().unwrap();
    let file = start(Location::File(dir.path().join("beacon.redb")));
    let embedded = run(&[file], &keys, now, None);
    let pg = postgres::Postgres::start();
    let location = Location::Postgres {
        url: pg.url(),
        password_file: None,
        ca_file: None,
    };
    let replicas = [start(location.clone()), start(location)];
    let shared = run(&replicas, &keys, now, Some(pg.pid()));
    println!("{n} nodes, {CONCURRENCY} requests in flight, one request per connection:");
    println!("  store                      enroll/s   heartbeat/s   per replica   list {n}");
    let row = |name: &str, f: &Figures, replicas: f64| {
        println!(
            "  {name:<24} {:>10.0} {:>13.0} {:>13.0} {:>9.1} ms",
            f.enroll,
            f.heartbeat,
            f.heartbeat / replicas,
            f.list.as_secs_f64() * 1e3
        );
    };
    row("redb, one beacon", &embedded, 1.0);
    row("PostgreSQL, two replicas", &shared, 2.0);
    println!(
        "CPU per heartbeat (µs): load generator, beacon event loop(s), store thread(s), PostgreSQL"
    );
    for (name, f) in [("redb", &embedded), ("PostgreSQL", &shared)] {
        let c = f.cpu;
        println!(
            "  {name:<24} {:>6.0} {:>6.0} {:>6.0} {:>6.0}  (sum {:.0}: {:.0}/s on 2 cores)",
            c.load,
            c.beacon,
            c.store,
            c.postgres,
            c.load + c.beacon + c.store + c.postgres,
            2e6 / (c.load + c.beacon + c.store + c.postgres)
        );
    }
}
