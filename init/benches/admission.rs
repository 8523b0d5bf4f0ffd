//! Admission under a flood (run by hand: `cargo bench -p spore --bench
//! admission`). A real `spore run` listens on loopback; an attacker opens
//! connections as fast as it can from the same source address as the
//! operator and holds every one open without a byte sent, while an operator
//! does full signed handshakes back to back. Reported side by side from one
//! run: the operator's handshake times without the flood and during it, and
//! how many pre-auth connections per second the node sheds (closes to make
//! room) meanwhile.
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

/// What an operator saw over the window.
struct Seen {
    /// Each successful call's time, retries included, sorted.
    times: Vec<Duration>,
    /// First attempts that failed, by error.
    first_failures: std::collections::BTreeMap<String, usize>,
    /// Calls that still failed after sporectl's retries (0.25, 0.5, 1 s).
    failed: usize,
}

/// Signed handshakes back to back for `WINDOW`, retried as sporectl
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

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start(dir.path(), &[], "");
    let (address, identity, pin) = (&node.address, &node.identity, &node.pin);
    let quiet = operator_handshakes(address, identity, pin);

    // The flood: as many connections as the descriptor limit allows (minus
    // room for the operator), opened as fast as one thread can, all held.
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
        .saturating_sub(200)
        .min(18_000) as usize;
    let flooding = Arc::new(AtomicBool::new(true));
    let attacker = {
        let flooding = flooding.clone();
        let address = address.to_owned();
        std::thread::spawn(move || {
            // A ring of held sockets: when it is full the oldest goes (the
            // node closed nearly all of those long ago), so the flood lasts
            // as long as the operator measures.
            let mut held = std::collections::VecDeque::with_capacity(limit);
            let (mut opened, mut shed) = (0usize, 0usize);
            let start = Instant::now();
            while flooding.load(Ordering::Relaxed) {
                if held.len() >= limit {
                    if let Some(old) = held.pop_front() {
                        shed += usize::from(closed_by_peer(&old));
                    }
                }
                if let Ok(stream) = TcpStream::connect(&address) {
                    held.push_back(stream);
                    opened += 1;
                }
            }
            shed += held.iter().filter(|s| closed_by_peer(s)).count();
            (opened, shed, start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let flood = operator_handshakes(address, identity, pin);
    flooding.store(false, Ordering::Relaxed);
    let (opened, shed, flood_time) = attacker.join().unwrap();
    drop(node);

    println!(
        "flood from the operator's own address, up to {limit} held at once: {opened} connections opened in {:.1} s ({:.0}/s); the node shed {shed} ({:.0}/s)",
        flood_time.as_secs_f64(),
        opened as f64 / flood_time.as_secs_f64(),
        shed as f64 / flood_time.as_secs_f64()
    );
    println!(
        "operator handshakes  median ms   p99 ms   max ms     ok  first try failed  failed after retries"
    );
    for (name, seen) in [("no flood", &quiet), ("flood", &flood)] {
        println!(
            "{name:<20} {:>9.2} {:>8.2} {:>8.2} {:>6} {:>17} {:>21}",
            quantile(&seen.times, 0.5),
            quantile(&seen.times, 0.99),
            quantile(&seen.times, 1.0),
            seen.times.len(),
            seen.first_failures.values().sum::<usize>(),
            seen.failed
        );
        for (why, n) in &seen.first_failures {
            println!("    {n} x {why}");
        }
    }
    println!(
        "median during the flood / without it: {:.2}",
        quantile(&flood.times, 0.5) / quantile(&quiet.times, 0.5)
    );
}
