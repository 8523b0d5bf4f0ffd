//! Pushing an artifact over signed RPC, against a real `spore run` on
//! loopback (run by hand: `cargo bench -p spore --bench artifacts`), beside
//! its anchor measured in the same run: the same bytes over a plain TCP
//! socket on loopback into a file on the same filesystem, fsynced, as the
//! node's store writes them. Three rounds each, alternating; medians.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use rpc::client::connect;
use rpc::upload::Source;

const SIZE: usize = 256 << 20;
const ROUNDS: usize = 3;

/// One `artifact put` of `file`, as sporectl makes it (hashing included).
/// CPU time (user and system) `pid` has used so far, in seconds.
fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// What one push took: its time, the time its hashing took, and the CPU
/// the node and the sender used.
struct Pushed {
    time: Duration,
    hashing: Duration,
    node_cpu: f64,
    sender_cpu: f64,
}

fn push(node: &common::BenchNode, file: &Path) -> Pushed {
    let node_cpu = cpu(node.child.id());
    let own_cpu = cpu(std::process::id());
    let started = Instant::now();
    let source = Source::read(file.to_str().unwrap()).unwrap();
    let hashing = started.elapsed();
    let mut time = Duration::ZERO;
    let mut cpu_after = (0.0, 0.0);
    smol::block_on(async {
        let mut session = connect(
            &node.address,
            &node.identity,
            &node.pin,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let answer = rpc::push::push(&mut session, &source, Duration::from_secs(60), &mut |_| {})
            .await
            .unwrap();
        assert_eq!(answer["complete"], true);
        // Stored, verified and visible: the push is done. Removing it for
        // the next round is not part of it.
        time = started.elapsed();
        cpu_after = (cpu(node.child.id()), cpu(std::process::id()));
        session
            .call(
                "artifact.remove",
                serde_json::json!({ "sha256": source.digest.hex() }),
            )
            .await
            .unwrap();
    });
    Pushed {
        time,
        hashing,
        node_cpu: cpu_after.0 - node_cpu,
        sender_cpu: cpu_after.1 - own_cpu,
    }
}

/// The same bytes over plain TCP into a file, fsynced.
fn plain(file: &Path, into: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let into = into.to_owned();
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut out = std::fs::File::create(&into).unwrap();
        let mut buffer = vec![0u8; 512 * 1024];
        loop {
            let n = stream.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            out.write_all(&buffer[..n]).unwrap();
        }
        out.sync_all().unwrap();
        stream.write_all(b"k").unwrap();
    });
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).unwrap();
    let mut source = std::fs::File::open(file).unwrap();
    std::io::copy(&mut source, &mut stream).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).unwrap();
    receiver.join().unwrap();
    started.elapsed()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let node = common::start(d, &[], "");
    let file = d.join("payload");
    std::fs::write(&file, common::noise(SIZE, 1)).unwrap();
    let (mut pushed, mut copied) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        pushed.push(push(&node, &file));
        copied.push(plain(&file, &d.join("state/copy")));
        std::fs::remove_file(d.join("state/copy")).unwrap();
    }
    let mib = SIZE as f64 / (1 << 20) as f64;
    let rate = |t: Duration| mib / t.as_secs_f64();
    pushed.sort_by_key(|p| p.time);
    let middle = &pushed[pushed.len() / 2];
    let (push, copy) = (middle.time, median(copied));
    println!(
        "{} MiB, median of {ROUNDS}; ratio is push / plain TCP",
        SIZE >> 20
    );
    println!("                       time (s)    MiB/s   ratio");
    println!(
        "artifact put (signed)  {:>8.2} {:>8.1} {:>7.2}",
        push.as_secs_f64(),
        rate(push),
        rate(push) / rate(copy)
    );
    println!(
        "plain TCP + fsync      {:>8.2} {:>8.1} {:>7.2}",
        copy.as_secs_f64(),
        rate(copy),
        1.0
    );
    println!(
        "the median push: {:.2} s hashing the file before it is named; CPU {:.2} s on the node, {:.2} s in the sender",
        middle.hashing.as_secs_f64(),
        middle.node_cpu,
        middle.sender_cpu
    );
    let scp = which("scp") && which("sshd");
    println!(
        "scp to a local sshd: {}",
        if scp {
            "not measured by this bench"
        } else {
            "no sshd on this machine"
        }
    );
}

fn which(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
