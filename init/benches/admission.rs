//! Admission under a flood (run by hand: `cargo bench -p spore --bench
//! admission`). A real `spore run` listens on loopback; an attacker opens
//! connections as fast as it can and holds every one open, reopening as the
//! node sheds them, while an operator on 127.0.0.1 does full signed
//! handshakes, ten a second ([`PACE`]), each retried as sporectl retries a
//! shed or busy connection. (Ten a second is a person or a script driving
//! sporectl hard; one address making more than 20 a second while the node
//! is flooded meets the per-source hello budget, `noderpc/src/hello_budget.rs`,
//! and sees some handshakes shed and retried.) Three floods, side by side in one run against the same
//! operator without a flood: from the operator's own address, idle; from
//! 64 other addresses (127.0.1.1-64), idle; and from those 64 with a valid
//! ClientHello sent on each (the node then does its half of the handshake
//! and waits for a proof that never comes). Reported: the operator's
//! handshake times, how many succeeded, how many took over 2 s, and how
//! many pre-auth connections per second the node shed meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc::client::{connect, ClientError, Pin};
use rpc::identity::Identity;

const WINDOW: Duration = Duration::from_secs(10);

/// One operator call starts this long after the previous one started.
const PACE: Duration = Duration::from_millis(100);

/// What an operator saw over the window.
struct Seen {
    /// Each successful call's time, retries included, sorted.
    times: Vec<Duration>,
    /// First attempts that failed, by error.
    first_failures: std::collections::BTreeMap<String, usize>,
    /// Calls that still failed after sporectl's retries (0.25, 0.5, 1 s).
    failed: usize,
}

/// Signed handshakes for `WINDOW`, one each [`PACE`], retried as sporectl
/// retries a shed or busy connection.
fn operator_handshakes(address: &str, identity: &Identity, pin: &Pin) -> Seen {
    let mut seen = Seen {
        times: Vec::new(),
        first_failures: std::collections::BTreeMap::new(),
        failed: 0,
    };
    let start = Instant::now();
    while start.elapsed() < WINDOW {
        let t = Instant::now();
        let mut pause = Duration::from_millis(250);
        let mut first = true;
        loop {
            match smol::block_on(connect(address, identity, pin, Duration::from_secs(5))) {
                Ok(session) => {
                    seen.times.push(t.elapsed());
                    drop(session);
                    break;
                }
                Err(error) => {
                    if first {
                        *seen.first_failures.entry(error.to_string()).or_insert(0) += 1;
                        first = false;
                    }
                    let retry = matches!(error, ClientError::Busy(_) | ClientError::Shed(_));
                    if !retry || pause > Duration::from_secs(1) {
                        seen.failed += 1;
                        break;
                    }
                    std::thread::sleep(pause);
                    pause *= 2;
                }
            }
        }
        std::thread::sleep(PACE.saturating_sub(t.elapsed()));
    }
    seen.times.sort();
    seen
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted
        .get(at)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// True when the node has closed `stream` (EOF or reset).
fn closed_by_peer(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    stream.set_nonblocking(true).unwrap();
    matches!(stream.peek(&mut byte), Ok(0) | Err(_))
        && !matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// One flood: `sources` in turn, each connection held (with `hello` sent
/// first when given) until `limit` are held; then the oldest goes.
fn flood(
    address: &str,
    sources: Vec<std::net::Ipv4Addr>,
    hello: Option<Vec<u8>>,
    limit: usize,
    flooding: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, usize, Duration)> {
    let to: std::net::SocketAddr = address.parse().unwrap();
    std::thread::spawn(move || {
        let mut held = std::collections::VecDeque::with_capacity(limit);
        let (mut opened, mut shed) = (0usize, 0usize);
        let start = Instant::now();
        let mut next = 0usize;
        while flooding.load(Ordering::Relaxed) {
            if held.len() >= limit {
                if let Some(old) = held.pop_front() {
                    shed += usize::from(closed_by_peer(&old));
                }
            }
            let source = sources[next % sources.len()];
            next += 1;
            if let Ok(mut stream) = common::connect_from(source, to) {
                if let Some(hello) = &hello {
                    use std::io::Write;
                    let _ = stream.write_all(hello);
                }
                held.push_back(stream);
                opened += 1;
            }
        }
        shed += held.iter().filter(|s| closed_by_peer(s)).count();
        (opened, shed, start.elapsed())
    })
}

/// A framed, valid ClientHello (the node answers it with its half of the
/// handshake).
fn client_hello_frame() -> Vec<u8> {
    use rand_core::{OsRng, RngCore};
    let ephemeral = x25519_dalek::StaticSecret::random_from_rng(OsRng);
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    let hello = rpc::handshake::client_hello(
        rpc::handshake::VERSION,
        &x25519_dalek::PublicKey::from(&ephemeral),
        &nonce,
    );
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello);
    frame
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path(), &[], "");
    let (address, identity, pin) = (&node.address, &node.identity, &node.pin);
    let quiet = operator_handshakes(address, identity, pin);

    // As many connections as the descriptor limit allows (minus room for
    // the operator), at most 5,000 held at once, as in the probe.
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
        .saturating_sub(200)
        .min(5_000) as usize;
    let own = vec![std::net::Ipv4Addr::LOCALHOST];
    let many: Vec<std::net::Ipv4Addr> = (1..=64)
        .map(|i| std::net::Ipv4Addr::new(127, 0, 1, i))
        .collect();
    let mut rows = vec![("no flood".to_owned(), quiet, String::new())];
    for (name, sources, hello) in [
        ("own address, idle", own, None),
        ("64 sources, idle", many.clone(), None),
        ("64 sources, hellos", many, Some(client_hello_frame())),
    ] {
        let flooding = Arc::new(AtomicBool::new(true));
        let attacker = flood(address, sources, hello, limit, flooding.clone());
        std::thread::sleep(Duration::from_millis(500));
        let seen = operator_handshakes(address, identity, pin);
        flooding.store(false, Ordering::Relaxed);
        let (opened, shed, time) = attacker.join().unwrap();
        let what = format!(
            "{opened} opened in {:.1} s ({:.0}/s), {shed} shed by the node ({:.0}/s)",
            time.as_secs_f64(),
            opened as f64 / time.as_secs_f64(),
            shed as f64 / time.as_secs_f64()
        );
        rows.push((name.to_owned(), seen, what));
        // Let the node close what is left before the next flood.
        std::thread::sleep(Duration::from_secs(3));
    }
    drop(node);

    println!("floods hold up to {limit} connections at once, reopening as they are shed");
    println!(
        "operator handshakes   median ms   p99 ms   max ms   calls  ok (%)  over 2 s  first try failed"
    );
    for (name, seen, _) in &rows {
        let total = seen.times.len() + seen.failed;
        let slow = seen
            .times
            .iter()
            .filter(|t| **t > Duration::from_secs(2))
            .count();
        println!(
            "{name:<21} {:>9.2} {:>8.2} {:>8.2} {:>7} {:>7.1} {:>9} {:>17}",
            quantile(&seen.times, 0.5),
            quantile(&seen.times, 0.99),
            quantile(&seen.times, 1.0),
            total,
            100.0 * seen.times.len() as f64 / total.max(1) as f64,
            slow,
            seen.first_failures.values().sum::<usize>(),
        );
    }
    for (name, seen, what) in &rows {
        if !what.is_empty() {
            println!("{name}: {what}");
        }
        for (why, n) in &seen.first_failures {
            println!("    {n} x {why}");
        }
    }
}
