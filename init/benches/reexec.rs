//! A live re-exec with many services (run by hand: `cargo bench -p spore
//! --bench reexec`): `spore run` supervising `REEXEC_SERVICES` (1,000)
//! `sleep` services re-execs itself, three times, while a client asks
//! `node.info` on the control socket without pause; beside it, in the
//! same run, the same node restarted cold (SIGTERM, start again).
//!
//! Reported for the re-exec: the check (`node.reexec` asked to answered:
//! copying both binaries and running the new one's handoff check), spore's
//! own unavailability (the last answer from the old binary to the first
//! from the new one), and the services whose pid changed (the goal: none).
//! For the restart: the same unavailability (the last answer before
//! SIGTERM to the first after the start) and the time until every service
//! is ready again. Ratios are re-exec over restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn call(socket: &Path, method: &str, params: Value) -> Option<Value> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    stream.write_all(format!("{request}\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    let response: Value = serde_json::from_str(&line).ok()?;
    response.get("result").cloned()
}

fn start(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_spore"))
        .args(["run", "--config-dir"])
        .arg(dir.join("etc"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("spore.err")).unwrap())
        .spawn()
        .unwrap()
}

fn pids(socket: &Path) -> BTreeMap<String, i64> {
    call(socket, "service.list", json!({}))
        .and_then(|list| list.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["pid"].as_i64()?)))
        .collect()
}

fn wait_all_ready(socket: &Path, n: usize, limit: Duration) {
    let started = Instant::now();
    loop {
        let ready = call(socket, "service.list", json!({}))
            .and_then(|list| list.as_array().cloned())
            .map(|list| list.iter().filter(|s| s["state"] == "ready").count())
            .unwrap_or(0);
        if ready == n {
            return;
        }
        assert!(started.elapsed() < limit, "{ready} of {n} ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks `node.info` without pause until stopped; the answers' times and
/// generations.
struct Prober {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Prober {
    fn start(socket: PathBuf) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, answers) = (stop.clone(), answers.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match call(&socket, "node.info", json!({})) {
                        Some(info) => {
                            let answer = Answer {
                                at: Instant::now(),
                                generation: info["reexec"]["generation"].as_u64().unwrap_or(0),
                                pid: info["pid"].as_u64().unwrap_or(0),
                            };
                            answers.lock().unwrap().push(answer);
                        }
                        None => std::thread::sleep(Duration::from_micros(200)),
                    }
                }
            })
        };
        Prober {
            stop,
            answers,
            thread,
        }
    }

    /// Every answer it had.
    fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.answers).unwrap().into_inner().unwrap()
    }
}

/// One answer to `node.info`: when, from which generation and process.
#[derive(Debug)]
struct Answer {
    at: Instant,
    generation: u64,
    pid: u64,
}

/// The time from the last answer that is not `new` to the first that is.
fn gap(answers: &[Answer], new: impl Fn(&Answer) -> bool) -> Duration {
    let last_before = answers
        .iter()
        .filter(|a| !new(a))
        .map(|a| a.at)
        .max()
        .unwrap();
    let first_after = answers
        .iter()
        .filter(|a| new(a))
        .map(|a| a.at)
        .min()
        .unwrap();
    first_after.saturating_duration_since(last_before)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let n: usize = std::env::var("REEXEC_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("etc/services");
    std::fs::create_dir_all(&services).unwrap();
    for i in 0..n {
        std::fs::write(
            services.join(format!("s{i:04}.toml")),
            format!("[service]\nname = \"s{i:04}\"\nexec = \"sleep 100000\"\n"),
        )
        .unwrap();
    }
    let socket = dir.path().join("state/spore.sock");
    let mut child = start(dir.path());
    wait_all_ready(&socket, n, Duration::from_secs(120));
    let before = pids(&socket);
    assert_eq!(before.len(), n);

    // Three re-execs into the same binary, each with the prober running.
    let mut checks = Vec::new();
    let mut gaps = Vec::new();
    let mut taken_up = Vec::new();
    for generation in 1..=3u64 {
        let prober = Prober::start(socket.clone());
        std::thread::sleep(Duration::from_millis(100));
        let asked = Instant::now();
        let answer = call(
            &socket,
            "node.reexec",
            json!({ "path": env!("CARGO_BIN_EXE_spore") }),
        )
        .expect("node.reexec answered");
        assert_eq!(answer["accepted"], true, "{answer}");
        checks.push(asked.elapsed());
        let started = Instant::now();
        let facts = loop {
            if let Some(info) = call(&socket, "node.info", json!({})) {
                if info["reexec"]["generation"] == generation {
                    break info["reexec"].clone();
                }
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no re-exec");
            std::thread::sleep(Duration::from_millis(5));
        };
        std::thread::sleep(Duration::from_millis(100));
        let answers = prober.finish();
        gaps.push(gap(&answers, |a| a.generation >= generation));
        taken_up.push(facts["asked_to_taken_up_ms"].as_u64().unwrap());
        assert_eq!(facts["went_back"], false, "{facts}");
    }
    let after = pids(&socket);
    let changed = before
        .iter()
        .filter(|(name, pid)| after.get(*name) != Some(pid))
        .count();

    // Beside it: the cold restart.
    let prober = Prober::start(socket.clone());
    std::thread::sleep(Duration::from_millis(100));
    let stopped_at = Instant::now();
    // SAFETY: kill(2) with plain integers.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let mut child = start(dir.path());
    while call(&socket, "node.info", json!({})).is_none() {
        std::thread::sleep(Duration::from_micros(200));
    }
    wait_all_ready(&socket, n, Duration::from_secs(120));
    let all_ready = stopped_at.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let answers = prober.finish();
    // The old process answers while it stops its services: the new one
    // is told by its pid.
    let new_pid = u64::from(child.id());
    let restart_gap = gap(&answers, |a| a.pid == new_pid);
    let restarted = pids(&socket);
    let restarted_changed = before
        .iter()
        .filter(|(name, pid)| restarted.get(*name) != Some(pid))
        .count();
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();

    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    taken_up.sort_unstable();
    let gap = median(&mut gaps);
    println!("{n} services; re-exec: median of 3, restart: one");
    println!(
        "re-exec   check {:7.1} ms   unavailable {:7.1} ms   asked->taken up {:5} ms   services restarted {changed} of {n}",
        ms(median(&mut checks)),
        ms(gap),
        taken_up[1],
    );
    println!(
        "restart                      unavailable {:7.1} ms   until all ready {:8.1} ms   services restarted {restarted_changed} of {n}",
        ms(restart_gap),
        ms(all_ready),
    );
    println!(
        "ratio re-exec / restart: unavailable {:.3}, until every service runs again {:.3}",
        gap.as_secs_f64() / restart_gap.as_secs_f64(),
        gap.as_secs_f64() / all_ready.as_secs_f64(),
    );
    println!(
        "goal: unavailable at most 100 ms with 1,000 services: {}",
        if ms(gap) <= 100.0 { "met" } else { "not met" }
    );
}
