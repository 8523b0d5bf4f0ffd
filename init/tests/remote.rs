//! Signed RPC against a real `spore run` on loopback, with operator keys
//! made by the real `ssh-keygen`: what is allowed works, and every attack
//! is refused with nothing changed on the node.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::fleet::{
    closed_by_node, half_handshake, node, node_with, read_frame, service_file, stdout, write_frame,
    Fleet,
};
use common::{agent_add, fingerprint, keygen, sporectl_bin, start_agent, Spore};
use rand_core::OsRng;
use rpc::client::{connect, ClientError};
use rpc::handshake::{client_hello, encode_proof, VERSION};
use serde_json::{json, Value};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

/// `outcome` must be a "node busy" refusal whose message has `needle`.
fn assert_busy(outcome: Result<rpc::client::Session, ClientError>, needle: &str, what: &str) {
    match outcome {
        Err(ClientError::Busy(message)) => assert!(message.contains(needle), "{what}: {message}"),
        Err(other) => panic!("{what}: {other}"),
        Ok(_) => panic!("{what} was granted"),
    }
}

#[test]
fn admin_key_lists_reads_logs_stops_and_starts() {
    let fleet = node();
    let list = fleet.sporectl("admin", &["list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(stdout(&list)
        .lines()
        .any(|l| l.starts_with("web") && l.contains("ready")));
    let logs = fleet.sporectl("admin", &["logs", "web"]);
    assert!(
        stdout(&logs).contains("stdout web says hello"),
        "{}",
        stdout(&logs)
    );
    let stop = fleet.sporectl("admin", &["stop", "web"]);
    assert!(stop.status.success());
    fleet.spore.wait_state("web", "stopped");
    let start = fleet.sporectl("admin", &["start", "web"]);
    assert!(start.status.success());
    fleet.spore.wait_state("web", "ready");
    let info = fleet.sporectl("admin", &["--json", "info"]);
    let info: Value = serde_json::from_str(&stdout(&info)).unwrap();
    assert_eq!(info["rpc"]["auth"], true);
    assert_eq!(
        info["rpc"]["node_key_fingerprint"],
        fingerprint(&fleet.spore.path("state/node_key"))
    );
    // Audit: one line per call with the caller's fingerprint as ssh-keygen prints it.
    let admin = fingerprint(&fleet.keys.join("admin.pub"));
    let log = fleet.spore.stderr();
    assert!(
        log.contains(&format!("rpc audit: {admin} (admin@test) from 127.0.0.1:")),
        "{log}"
    );
    assert!(log.contains(": service.stop web -> ok"), "{log}");
}

#[test]
fn interrupted_follows_free_their_connections() {
    // 8 connections at most: 24 follows that each leaked one would lock
    // every operator out.
    let fleet = node_with("max_connections = 8\n");
    for _ in 0..24 {
        let mut follow = fleet
            .sporectl_command("reader", &["logs", "web", "-f"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut seen = Vec::new();
        let mut out = follow.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("web says hello") {
            assert_eq!(out.read(&mut byte).unwrap(), 1, "the follow ended early");
            seen.push(byte[0]);
        }
        // Ctrl-C while the service prints nothing.
        follow.kill().unwrap();
        follow.wait().unwrap();
    }
    let list = fleet.sporectl("admin", &["list"]);
    assert!(
        list.status.success(),
        "an admin still gets in: {}{}",
        stdout(&list),
        String::from_utf8_lossy(&list.stderr)
    );
}

#[test]
fn a_follow_whose_client_stops_reading_gives_its_slot_back() {
    let fleet = node_with("session_idle_timeout_ms = 1500\n");
    fleet.deploy_started(
        "chatty",
        "[service]\nname = \"chatty\"\nexec = [\"/bin/sh\", \"-c\", \"while :; do echo a-line-of-output-that-fills-the-socket-buffer-quickly; done\"]\n",
    );
    // A follow whose client reads its first answer, then nothing more.
    let session = smol::block_on(async {
        let mut session = connect(
            &fleet.address,
            &fleet.identity("reader"),
            &fleet.pin(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        session
            .call(
                "service.logs",
                json!({ "name": "chatty", "lines": 1, "follow": true }),
            )
            .await
            .unwrap();
        session
    });
    fleet.spore.wait_for(
        "the stalled follow to be closed",
        Duration::from_secs(30),
        |s| s.stderr().contains("stopped reading its follow"),
    );
    drop(session);
    let list = fleet.sporectl("reader", &["list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(fleet
        .sporectl("admin", &["stop", "chatty"])
        .status
        .success());
}

/// The anonymous part of `pid`'s PSS (its heap and stacks), KiB. The
/// file-backed part moves as other processes sharing the binary come and
/// go (tests run in parallel), which says nothing about what spore holds.
fn pss_anon_kib(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Pss_Anon:"))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        .unwrap()
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// `count` follows of the quiet `web` service, each interrupted (the
/// operator presses Ctrl-C while the service prints nothing).
fn interrupted_follows(fleet: &Fleet, count: usize) {
    smol::block_on(async {
        for _ in 0..count {
            let mut session = connect(
                &fleet.address,
                &fleet.identity("reader"),
                &fleet.pin(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            session
                .call("service.logs", json!({ "name": "web", "follow": true }))
                .await
                .unwrap();
            drop(session);
        }
    });
}

#[test]
fn after_256_interrupted_follows_an_admin_gets_in_and_memory_is_back() {
    // The node's default cap is 256: each leaked follow would hold one.
    let fleet = node();
    let pid = fleet.spore.pid();
    // A few first, so the baseline has the allocator's steady state.
    interrupted_follows(&fleet, 16);
    let fds_before = open_fds(pid);
    let closed = |_: &Spore| open_fds(pid) <= fds_before;
    fleet.spore.wait_for(
        "the warm-up sockets to close",
        Duration::from_secs(10),
        closed,
    );
    let pss_before = pss_anon_kib(pid);
    interrupted_follows(&fleet, 256);
    fleet.spore.wait_for(
        "the follows' sockets to close",
        Duration::from_secs(10),
        closed,
    );
    let list = fleet.sporectl("admin", &["list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let pss_after = pss_anon_kib(pid);
    assert!(
        pss_after <= pss_before + 1024,
        "anonymous PSS {pss_before} KiB -> {pss_after} KiB after 256 interrupted follows"
    );
}

#[test]
fn idle_connections_held_open_do_not_lock_operators_out() {
    // On main, 32 idle connections (the pre-auth cap) kept every operator
    // out; a flood now only evicts its own idle sockets to make room.
    // Room for the flood's descriptors in this test process.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let fleet = node();
    // Built before the clock starts (the first call builds sporectl).
    sporectl_bin();
    // 5,000, or what the hard descriptor limit allows (the test holds
    // every one, and 400 more it reopens).
    let flood = usize::try_from(hard)
        .unwrap_or(usize::MAX)
        .saturating_sub(1_000)
        .min(5_000);
    assert!(
        flood >= 500,
        "RLIMIT_NOFILE's hard limit {hard} is too low for a flood"
    );
    let held: Vec<TcpStream> = (0..flood)
        .map(|_| TcpStream::connect(&fleet.address).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut reopened = Vec::new();
    for call in 0..20 {
        let start = Instant::now();
        let list = fleet.sporectl("admin", &["list"]);
        let took = start.elapsed();
        assert!(
            list.status.success(),
            "operator call {call} with {} idle connections held: {}{}",
            held.len(),
            stdout(&list),
            String::from_utf8_lossy(&list.stderr)
        );
        assert!(
            took < Duration::from_secs(2),
            "operator call {call} took {took:?}"
        );
        // The attacker reopens: 20 more idle connections between calls.
        for _ in 0..20 {
            if let Ok(stream) = TcpStream::connect(&fleet.address) {
                reopened.push(stream);
            }
        }
    }
    let log = fleet.spore.stderr();
    let summaries = log
        .lines()
        .filter(|l| l.contains("unauthenticated connections since the last summary"))
        .count();
    assert!(
        (1..=5).contains(&summaries),
        "{} idle connections summarised in {summaries} lines:\n{log}",
        flood + 400
    );
    assert!(!log.contains("too many connections"), "no line per refusal");
}

#[test]
fn readers_cannot_take_the_admins_slots_and_idle_sessions_give_theirs_back() {
    // 4 connections, 2 kept for admins: readers may hold 2 sessions.
    sporectl_bin();
    let fleet =
        node_with("max_connections = 4\nadmin_reserved = 2\nsession_idle_timeout_ms = 4000\n");
    let readers: Vec<_> = (0..2).map(|_| fleet.open("reader").unwrap()).collect();
    assert_busy(
        fleet.open("reader"),
        "kept for admins",
        "a third reader session",
    );
    let busy = fleet.sporectl("reader", &["list"]);
    assert_eq!(
        busy.status.code(),
        Some(6),
        "sporectl's own exit code for a busy node"
    );
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("node busy"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    let admin = fleet.sporectl("admin", &["list"]);
    assert!(admin.status.success(), "an admin still gets in");
    // The readers' sessions idle out; then a reader gets in again.
    fleet
        .spore
        .wait_for("the idle sessions to close", Duration::from_secs(10), |s| {
            s.stderr().matches("session closed").count() >= 2
        });
    drop(readers);
    let again = fleet.sporectl("reader", &["list"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn a_full_node_says_busy_per_key_and_in_total_and_a_garbage_flood_is_counted() {
    sporectl_bin();
    let fleet = node_with("max_connections = 3\nmax_sessions_per_key = 2\nadmin_reserved = 0\n");
    // 300 malformed hellos: one line in the log, the rest counted.
    for _ in 0..300 {
        let mut stream = TcpStream::connect(&fleet.address).unwrap();
        write_frame(&mut stream, b"this is not a ClientHello at all");
        assert!(closed_by_node(&mut stream));
    }
    // The per-key cap: a third session of one key is refused as busy.
    let admins: Vec<_> = (0..2).map(|_| fleet.open("admin").unwrap()).collect();
    assert_busy(
        fleet.open("admin"),
        "this key holds 2 sessions",
        "a third admin session",
    );
    // The node's own cap: with 3 sessions held, a newcomer is told the
    // node is full before any handshake (not a protocol error), and
    // sporectl retries, then exits 6.
    let reader = fleet.open("reader").unwrap();
    assert_busy(
        fleet.open("reader"),
        "too many connections",
        "a fourth connection",
    );
    let busy = fleet.sporectl("admin", &["list"]);
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert_eq!(busy.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("too many connections"), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    drop(reader);
    drop(admins);
    fleet
        .spore
        .wait_for("the sessions to end", Duration::from_secs(10), |_| {
            fleet.sporectl("admin", &["list"]).status.success()
        });
    let log = fleet.spore.stderr();
    let detailed = log
        .lines()
        .filter(|l| l.contains("rpc: 127.0.0.1:") && !l.contains("authenticated"))
        .filter(|l| !l.contains("audit"))
        .count();
    assert!(
        detailed <= 2 * rpc::refusals::DETAILED_PER_KIND as usize,
        "300 malformed hellos wrote {detailed} lines:\n{log}"
    );
}

#[test]
fn a_reader_that_closes_sporectls_output_early_is_no_error() {
    let fleet = node();
    // `sporectl discover | head -0`: the reader is gone before the output.
    let mut child = fleet
        .sporectl_command("admin", &["discover"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let version = Command::new(sporectl_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("sporectl {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn every_call_is_audited_in_the_journal_and_the_console_gets_a_few_and_a_count() {
    let fleet = node();
    let admin = fingerprint(&fleet.keys.join("admin.pub"));
    let mine = format!("rpc audit: {admin} (admin@test)");
    let mut session = fleet.open("admin").unwrap();
    for _ in 0..40 {
        smol::block_on(session.call("service.status", json!({ "name": "web" }))).unwrap();
    }
    let journal = |fleet: &Fleet| -> Vec<String> {
        fleet
            .spore
            .call("node.journal", json!({ "lines": 2000 }))
            .unwrap()["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let audited = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.starts_with(&mine) && l.ends_with(": service.status web -> ok"))
            .count()
    };
    // The journal (and so `sporectl logs spore`) has every call.
    assert_eq!(audited(&journal(&fleet)), 40);
    // The console, the first five of the interval.
    let console = |fleet: &Fleet| -> Vec<String> {
        fleet
            .spore
            .stderr()
            .lines()
            .filter_map(|l| l.split_once(" spore: ").map(|(_, text)| text.to_owned()))
            .collect()
    };
    assert_eq!(audited(&console(&fleet)), 5, "{}", fleet.spore.stderr());
    // Once the interval is over, the next call brings the count with it.
    std::thread::sleep(rpc::admission::SUMMARY_EVERY);
    smol::block_on(session.call("service.status", json!({ "name": "web" }))).unwrap();
    fleet.spore.wait_for("the count on the console", Duration::from_secs(10), |s| {
        s.stderr().contains(
            "rpc audit: 35 more call(s) in the 10 s before are in the journal only (sporectl logs spore)",
        )
    });
    fleet.spore.wait_for(
        "the call itself on the console",
        Duration::from_secs(10),
        |_| audited(&console(&fleet)) == 6,
    );
    assert_eq!(audited(&journal(&fleet)), 41);
}

#[test]
fn reader_can_list_but_not_stop() {
    let fleet = node();
    let pid = fleet.web_pid();
    assert!(fleet.sporectl("reader", &["list"]).status.success());
    let stop = fleet.sporectl("reader", &["stop", "web"]);
    assert_eq!(stop.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stop.stderr).contains("needs the admin role"));
    assert_eq!(fleet.web_pid(), pid);
    // A service file may hold what a reader should not see: `cat` is an
    // admin's; an admin gets the file as the node holds it.
    let cat = fleet.sporectl("reader", &["cat", "web"]);
    assert_eq!(cat.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cat.stderr).contains("needs the admin role"));
    let cat = fleet.sporectl("admin", &["cat", "web"]);
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    let text = String::from_utf8_lossy(&cat.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("# ") && lines[0].ends_with("/web.toml (image)"),
        "{text}"
    );
    assert_eq!(
        lines[1..].join("\n") + "\n",
        std::fs::read_to_string(fleet.spore.path("etc/services/web.toml")).unwrap()
    );
}

#[test]
fn unknown_key_is_refused_with_little_said_and_the_reason_logged() {
    let fleet = node();
    let pid = fleet.web_pid();
    let out = fleet.sporectl("stranger", &["stop", "web"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "auth failure has its own exit code"
    );
    let stranger = fingerprint(&fleet.keys.join("stranger.pub"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the node refused every key offered")
            && stderr.contains(&stranger)
            && stderr.contains("authorized_keys"),
        "says which key was offered and what to do: {stderr}"
    );
    assert!(fleet.spore.stderr().contains(&format!("key {stranger}")));
    assert_eq!(fleet.web_pid(), pid);
}

#[test]
fn like_ssh_every_agent_key_is_offered_then_the_key_file() {
    let fleet = node();
    let socket = fleet.spore.path("agent2.sock");
    let mut agent = start_agent(&socket);
    // The agent holds only a key the node does not know; the authorized
    // key is the operator's ~/.ssh/id_ed25519.
    agent_add(&socket, &fleet.keys.join("stranger"));
    let home = fleet.spore.path("operator-home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(fleet.keys.join("admin"), home.join(".ssh/id_ed25519")).unwrap();
    std::fs::copy(
        fleet.keys.join("admin.pub"),
        home.join(".ssh/id_ed25519.pub"),
    )
    .unwrap();
    let run = |home: &Path| {
        Command::new(sporectl_bin())
            .args([
                "--node",
                &fleet.address,
                "--node-key",
                &fleet.node_key,
                "list",
            ])
            .env("SSH_AUTH_SOCK", &socket)
            .env("HOME", home)
            .output()
            .unwrap()
    };
    let out = run(&home);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = fleet.spore.stderr();
    let stranger = fingerprint(&fleet.keys.join("stranger.pub"));
    let admin = fingerprint(&fleet.keys.join("admin.pub"));
    assert!(
        log.contains(&format!("key {stranger}")),
        "the agent's key was offered first"
    );
    assert!(
        log.contains(&format!("{admin} (admin@test) authenticated as admin")),
        "{log}"
    );
    // Without the file, the refusal names the key the agent offered.
    let bare = fleet.spore.path("bare-home");
    std::fs::create_dir_all(&bare).unwrap();
    let out = run(&bare);
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&stranger) && stderr.contains("ssh-agent"),
        "{stderr}"
    );
}

#[test]
fn wrong_node_pin_is_refused_before_we_authenticate() {
    let fleet = node();
    let other = std::fs::read_to_string(fleet.keys.join("stranger.pub")).unwrap();
    let out = Command::new(sporectl_bin())
        .args([
            "--node",
            &fleet.address,
            "--node-key",
            other.trim(),
            "--identity",
        ])
        .arg(fleet.keys.join("admin"))
        .args(["stop", "web"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the pinned"));
    assert!(
        !fleet.spore.stderr().contains("authenticated as"),
        "we never proved who we are to an impostor"
    );
    assert_eq!(fleet.spore.state("web"), "ready");
}

#[test]
fn unreachable_node_has_its_own_exit_code() {
    let fleet = node();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(sporectl_bin())
        .args([
            "--node",
            &format!("127.0.0.1:{port}"),
            "--node-key",
            &fleet.node_key,
            "--identity",
        ])
        .arg(fleet.keys.join("admin"))
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

/// Runs a handshake up to the operator proof by hand; returns the stream,
/// the transcript hash to sign, and the sealing channel.
#[test]
fn signature_over_another_sessions_transcript_is_refused() {
    let fleet = node();
    let identity = fleet.identity("admin");
    let (_first, first_transcript, _) = half_handshake(&fleet);
    let (mut second, _second_transcript, mut tx) = half_handshake(&fleet);
    // A valid signature by an authorized key — over the other session.
    let proof = encode_proof(&identity.sign(&first_transcript).unwrap()).unwrap();
    write_frame(&mut second, &tx.seal(&proof).unwrap());
    assert!(read_frame(&mut second).is_some(), "one sealed refusal");
    assert!(closed_by_node(&mut second), "then the node hangs up");
    fleet
        .spore
        .wait_for("the refusal to be logged", Duration::from_secs(10), |s| {
            s.stderr().contains("operator signature invalid")
        });
    assert!(!fleet.spore.stderr().contains("authenticated as"));
}

#[test]
fn replayed_reordered_flipped_and_truncated_frames_change_nothing() {
    let fleet = node();
    let pid = fleet.web_pid();
    smol::block_on(async {
        // Replay: a stop that was executed once cannot be executed again.
        let mut session = connect(
            &fleet.address,
            &fleet.identity("admin"),
            &fleet.pin(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let restart = json!({ "jsonrpc": "2.0", "id": 1, "method": "service.restart", "params": { "name": "web" } });
        let frame = session.seal_next(restart.to_string().as_bytes()).unwrap();
        session.send_raw_frame(&frame).await.unwrap();
        let answer = session.receive_value().await.unwrap();
        assert_eq!(answer["result"]["name"], "web");
        session.send_raw_frame(&frame).await.unwrap();
        assert!(
            session.receive_value().await.is_err(),
            "the replay must end the session"
        );
    });
    fleet.spore.wait_state("web", "ready");
    let after_one_restart = fleet.web_pid();
    assert_ne!(after_one_restart, pid, "the genuine restart happened");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        fleet.web_pid(),
        after_one_restart,
        "the replay restarted nothing"
    );
    assert!(fleet.spore.stderr().contains("failed authentication"));

    smol::block_on(async {
        // Reorder: the second frame arrives first.
        let mut session = connect(
            &fleet.address,
            &fleet.identity("admin"),
            &fleet.pin(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let stop = json!({ "jsonrpc": "2.0", "id": 1, "method": "service.stop", "params": { "name": "web" } });
        let _first = session
            .seal_next(b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"node.info\"}")
            .unwrap();
        let second = session.seal_next(stop.to_string().as_bytes()).unwrap();
        session.send_raw_frame(&second).await.unwrap();
        assert!(session.receive_value().await.is_err());

        // A flipped bit.
        let mut session = connect(
            &fleet.address,
            &fleet.identity("admin"),
            &fleet.pin(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let mut frame = session.seal_next(stop.to_string().as_bytes()).unwrap();
        frame[5] ^= 0x10;
        session.send_raw_frame(&frame).await.unwrap();
        assert!(session.receive_value().await.is_err());
    });
    // A truncated frame: the header promises more than ever arrives.
    let (mut stream, transcript, mut tx) = half_handshake(&fleet);
    let proof = encode_proof(&fleet.identity("admin").sign(&transcript).unwrap()).unwrap();
    write_frame(&mut stream, &tx.seal(&proof).unwrap());
    assert!(read_frame(&mut stream).is_some(), "authenticated");
    let stop =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "service.stop", "params": { "name": "web" } });
    let sealed = tx.seal(stop.to_string().as_bytes()).unwrap();
    stream
        .write_all(&(sealed.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(&sealed[..sealed.len() / 2]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_node(&mut stream));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fleet.spore.state("web"), "ready");
    assert_eq!(fleet.web_pid(), after_one_restart);
}

#[test]
fn oversize_length_and_data_before_handshake_and_downgrade_are_refused() {
    let fleet = node();
    // 0xFFFFFFFF: refused before allocating; the connection just ends.
    let mut stream = TcpStream::connect(&fleet.address).unwrap();
    stream.write_all(&[0xff; 4]).unwrap();
    assert!(closed_by_node(&mut stream));
    // A JSON-RPC request where the client hello belongs.
    let mut stream = TcpStream::connect(&fleet.address).unwrap();
    let request =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "service.stop", "params": { "name": "web" } });
    write_frame(&mut stream, request.to_string().as_bytes());
    assert!(closed_by_node(&mut stream));
    // Version 0: a downgrade below what the node accepts.
    let mut stream = TcpStream::connect(&fleet.address).unwrap();
    let ephemeral = StaticSecret::random_from_rng(OsRng);
    write_frame(
        &mut stream,
        &client_hello(0, &XPublic::from(&ephemeral), &[1; 32]),
    );
    assert!(
        read_frame(&mut stream).is_none(),
        "no node hello for a downgraded client"
    );
    fleet
        .spore
        .wait_for("the refusals to be logged", Duration::from_secs(10), |s| {
            let log = s.stderr();
            log.contains("exceeds the 16384-byte limit")
                && log.contains("malformed client hello")
                && log.contains("protocol version 0 refused")
        });
    assert_eq!(fleet.spore.state("web"), "ready");
}

#[test]
fn slow_client_is_cut_off_at_the_handshake_deadline() {
    let fleet = node();
    let mut stream = TcpStream::connect(&fleet.address).unwrap();
    let ephemeral = StaticSecret::random_from_rng(OsRng);
    let hello = client_hello(VERSION, &XPublic::from(&ephemeral), &[2; 32]);
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello);
    let started = Instant::now();
    let mut cut_off = false;
    for byte in frame {
        if stream.write_all(&[byte]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    assert!(cut_off || closed_by_node(&mut stream));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut off long before the whole hello was sent"
    );
    fleet
        .spore
        .wait_for("the deadline to be logged", Duration::from_secs(10), |s| {
            s.stderr().contains("handshake not finished within 2s")
        });
    assert_eq!(fleet.spore.state("web"), "ready");
}

#[test]
fn unknown_method_returns_32601() {
    let fleet = node();
    smol::block_on(async {
        let mut session = connect(
            &fleet.address,
            &fleet.identity("admin"),
            &fleet.pin(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        match session.call("service.frobnicate", json!({})).await {
            Err(ClientError::Rpc { code, .. }) => assert_eq!(code, -32601),
            other => panic!("expected -32601, got {other:?}"),
        }
        // The session survives an RPC error.
        let list = session.call("service.list", json!({})).await.unwrap();
        assert_eq!(list[0]["name"], "web");
    });
}

#[test]
fn signing_through_a_real_ssh_agent_works() {
    let fleet = node();
    let socket = fleet.spore.path("agent.sock");
    let mut agent = start_agent(&socket);
    agent_add(&socket, &fleet.keys.join("admin"));
    // No --identity and a HOME without keys: the agent is the only signer.
    let home = fleet.spore.path("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(sporectl_bin())
        .args([
            "--node",
            &fleet.address,
            "--node-key",
            &fleet.node_key,
            "list",
        ])
        .env("SSH_AUTH_SOCK", &socket)
        .env("HOME", &home)
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = fingerprint(&fleet.keys.join("admin.pub"));
    assert!(fleet
        .spore
        .stderr()
        .contains(&format!("{admin} (admin@test) authenticated as admin")));
}

#[test]
fn admin_deploys_starts_reads_logs_stops_and_removes_a_service() {
    let fleet = node();
    let file = fleet.spore.path("hello.toml");
    std::fs::write(
        &file,
        "[service]\nname = \"hello\"\nexec = \"/bin/sh -c 'echo deployed and running; exec sleep 1000'\"\n",
    )
    .unwrap();
    let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = fleet.spore.path("state/services/hello.toml");
    assert_eq!(
        std::fs::read(&written).unwrap(),
        std::fs::read(&file).unwrap(),
        "persisted as sent, in the deployed layer"
    );
    fleet.spore.wait_state("hello", "ready");
    fleet
        .spore
        .wait_for("its output", Duration::from_secs(10), |_| {
            stdout(&fleet.sporectl("admin", &["logs", "hello"])).contains("deployed and running")
        });
    assert!(fleet.sporectl("admin", &["stop", "hello"]).status.success());
    fleet.spore.wait_state("hello", "stopped");
    assert!(fleet
        .sporectl("admin", &["start", "hello"])
        .status
        .success());
    fleet.spore.wait_state("hello", "ready");
    // Removing a service others need is refused; removing this one works.
    let web_user = fleet.spore.path("user.toml");
    std::fs::write(
        &web_user,
        "[service]\nname = \"user\"\nexec = \"sleep 1000\"\n[dependencies]\nafter = [\"hello\"]\n",
    )
    .unwrap();
    assert!(fleet
        .sporectl("admin", &["deploy", web_user.to_str().unwrap()])
        .status
        .success());
    let refused = fleet.sporectl("admin", &["remove", "hello"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("user"),
        "names who uses it"
    );
    assert!(fleet
        .sporectl("admin", &["remove", "user"])
        .status
        .success());
    assert!(fleet
        .sporectl("admin", &["remove", "hello"])
        .status
        .success());
    assert!(!written.exists());
    let gone = fleet
        .spore
        .call("service.status", json!({ "name": "hello" }))
        .unwrap_err();
    assert_eq!(gone["code"], -32004);
}

#[test]
fn deploys_and_removals_survive_a_restart_and_status_says_where_a_service_comes_from() {
    let mut fleet = node();
    let file = fleet.spore.path("extra.toml");
    std::fs::write(
        &file,
        "[service]\nname = \"extra\"\nexec = \"sleep 1000\"\n",
    )
    .unwrap();
    assert!(fleet
        .sporectl("admin", &["deploy", file.to_str().unwrap()])
        .status
        .success());
    let source = |fleet: &Fleet, name: &str| {
        let out = fleet.sporectl("admin", &["--json", "status", name]);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        status["source"].as_str().unwrap().to_owned()
    };
    assert_eq!(source(&fleet, "extra"), "deployed");
    assert_eq!(source(&fleet, "web"), "image");
    // Removing the image's own service masks it; the image is untouched.
    assert!(fleet.sporectl("admin", &["remove", "web"]).status.success());
    assert!(fleet.spore.path("etc/services/web.toml").exists());
    assert!(fleet.spore.path("state/services/web.masked").exists());
    let info = fleet.spore.call("node.info", json!({})).unwrap();
    assert!(info["deploys"]["persistent"].is_boolean(), "{info}");

    fleet.spore.restart();
    fleet.spore.wait_state("extra", "ready");
    assert_eq!(source(&fleet, "extra"), "deployed");
    let gone = fleet
        .spore
        .call("service.status", json!({ "name": "web" }))
        .unwrap_err();
    assert_eq!(
        gone["code"], -32004,
        "the removed image service stays removed"
    );
    // Deployed again, the mask goes and the deployed copy wins.
    let file = fleet.spore.path("web.toml");
    std::fs::write(&file, "[service]\nname = \"web\"\nexec = \"sleep 999\"\n").unwrap();
    assert!(fleet
        .sporectl("admin", &["deploy", file.to_str().unwrap()])
        .status
        .success());
    assert!(!fleet.spore.path("state/services/web.masked").exists());
    fleet.spore.restart();
    fleet.spore.wait_state("web", "ready");
    assert_eq!(source(&fleet, "web"), "deployed");
}

#[test]
fn invalid_deploy_is_refused_whole_and_changes_nothing() {
    let fleet = node();
    let cases = [
        ("typo", "[service]\nname = \"typo\"\nexec = \"sleep 1\"\n[dependencies]\nrequire = [\"web\"]\n", "did you mean `requires`"),
        ("lost", "[service]\nname = \"lost\"\nexec = \"sleep 1\"\n[dependencies]\nrequires = [\"ghost\"]\n", "`ghost`"),
        ("web", "[service]\nname = \"web\"\nexec = \"\"\n", "`exec` in [service] is empty"),
    ];
    let before = std::fs::read(fleet.spore.path("etc/services/web.toml")).unwrap();
    let pid = fleet.web_pid();
    std::fs::create_dir_all(fleet.spore.path("candidates")).unwrap();
    for (name, text, expected) in cases {
        let file = fleet.spore.path(&format!("candidates/{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains("-32010"),
            "{name}: {stderr}"
        );
    }
    assert!(!fleet.spore.path("etc/services/typo.toml").exists());
    assert!(!fleet.spore.path("etc/services/lost.toml").exists());
    assert_eq!(
        std::fs::read(fleet.spore.path("etc/services/web.toml")).unwrap(),
        before
    );
    assert_eq!(fleet.web_pid(), pid);
    let reader = fleet.sporectl(
        "reader",
        &[
            "deploy",
            fleet.spore.path("candidates/typo.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(reader.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&reader.stderr).contains("needs the admin role"));
}

/// How many times `needle` occurs in the writable memory of process `pid`
/// (heap, stacks, anonymous maps), read through /proc/PID/mem as root.
fn occurrences_in_memory(pid: i32, needle: &[u8]) -> usize {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut found = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") || line.contains("[vvar]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut region = vec![0u8; (end - start) as usize];
        if mem.read_exact_at(&mut region, start).is_err() {
            continue;
        }
        found += region
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count();
    }
    found
}

#[test]
fn a_stored_secret_does_not_linger_in_the_nodes_memory() {
    let fleet = node();
    let secret = "zq7-linger-check-4b1e9d0c-value";
    for round in 0..3 {
        let mut child = fleet
            .sporectl_command("admin", &["secret", "set", "db-password"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(secret.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "round {round}");
    }
    assert_eq!(
        std::fs::read_to_string(fleet.spore.path("state/secrets/db-password")).unwrap(),
        secret
    );
    // Later work reuses freed memory; the value must be gone before that,
    // not by luck of reuse.
    let copies = occurrences_in_memory(fleet.spore.pid(), secret.as_bytes());
    assert_eq!(copies, 0, "copies of the secret left in spore's memory");
}

#[test]
fn a_secret_set_on_the_control_socket_or_refused_leaves_no_copy() {
    let fleet = node();
    let secret = "zq8-local-linger-5c2f1e7a-value";
    for round in 0..3 {
        let set = fleet
            .spore
            .call("secret.set", json!({ "name": "token", "value": secret }));
        assert!(set.is_ok(), "round {round}: {set:?}");
        // Refused for an unknown parameter, after the value was read.
        let refused = fleet.spore.call(
            "secret.set",
            json!({ "name": "token", "value": secret, "colour": "red" }),
        );
        assert_eq!(refused.unwrap_err()["code"], -32602);
    }
    let copies = occurrences_in_memory(fleet.spore.pid(), secret.as_bytes());
    assert_eq!(copies, 0, "copies of the secret left in spore's memory");
}

/// `sporectl secret set NAME` with `value` on stdin.
fn set_secret(fleet: &Fleet, name: &str, value: &str) -> Output {
    let mut child = fleet
        .sporectl_command("admin", &["secret", "set", name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn credentials_are_private_files_not_environment_and_follow_the_secret() {
    let fleet = node();
    assert!(set_secret(&fleet, "db-password", "first-value-81c2")
        .status
        .success());
    let seen = fleet.spore.path("seen");
    fleet.deploy_started(
        "loader",
        &format!(
            "[service]\nname = \"loader\"\nexec = \"/bin/sh -c 'cat $CREDENTIALS_DIRECTORY/db-password > {seen}.value; stat -c %a $CREDENTIALS_DIRECTORY $CREDENTIALS_DIRECTORY/db-password > {seen}.mode; env > {seen}.env; echo $CREDENTIALS_DIRECTORY > {seen}.dir; exec sleep 1000'\"\n\n[credentials]\nload = [\"db-password\"]\n",
            seen = seen.display()
        ),
    );
    let read = |suffix: &str| {
        std::fs::read_to_string(format!("{}.{suffix}", seen.display())).unwrap_or_default()
    };
    fleet.spore.wait_for(
        "the service to read its credential",
        Duration::from_secs(10),
        |_| !read("dir").is_empty(),
    );
    assert_eq!(read("value"), "first-value-81c2");
    assert_eq!(
        read("mode").split_whitespace().collect::<Vec<_>>(),
        ["500", "400"]
    );
    let env = read("env");
    assert!(env.contains("CREDENTIALS_DIRECTORY="), "{env}");
    assert!(
        !env.contains("first-value"),
        "the value is not in the environment"
    );
    let dir = std::path::PathBuf::from(read("dir").trim());
    // A new value restarts the service, which sees it.
    let out = set_secret(&fleet, "db-password", "second-value-77");
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("loader: restarted"),
        "{}",
        stdout(&out)
    );
    fleet.spore.wait_for(
        "the restarted service to read the new value",
        Duration::from_secs(10),
        |_| read("value") == "second-value-77",
    );
    // Stopped, its credentials are gone.
    assert!(fleet
        .sporectl("admin", &["stop", "loader"])
        .status
        .success());
    fleet.spore.wait_state("loader", "stopped");
    assert!(!dir.exists(), "{} outlived the service", dir.display());
    // secret rm.
    assert!(fleet
        .sporectl("admin", &["secret", "rm", "db-password"])
        .status
        .success());
    assert!(!stdout(&fleet.sporectl("admin", &["secret", "list"])).contains("db-password"));
    let again = fleet.sporectl("admin", &["secret", "rm", "db-password"]);
    assert_eq!(again.status.code(), Some(1), "no such secret any more");
    // An empty value is refused before anything is sent.
    let empty = set_secret(&fleet, "db-password", "");
    assert_eq!(empty.status.code(), Some(2));
    assert!(!fleet.spore.path("state/secrets/db-password").exists());
}

#[test]
fn at_a_terminal_secret_set_asks_with_echo_off() {
    let fleet = node();
    let mut command = fleet.sporectl_command("admin", &["secret", "set", "typed"]);
    let mut pty = common::pty::OnPty::spawn(&mut command);
    pty.wait_for("Value for secret typed (not shown): ");
    pty.type_in("typed-secret-9\n");
    let status = pty.wait_exit();
    assert!(status.success(), "{}", pty.shown());
    assert!(pty.shown().contains("typed: stored"), "{}", pty.shown());
    assert!(
        !pty.shown().contains("typed-secret-9"),
        "echoed: {}",
        pty.shown()
    );
    assert_eq!(
        std::fs::read_to_string(fleet.spore.path("state/secrets/typed")).unwrap(),
        "typed-secret-9"
    );
}

#[test]
fn a_service_with_a_reload_signal_reads_a_new_secret_without_a_restart() {
    let fleet = node();
    assert!(set_secret(&fleet, "token", "token-one").status.success());
    let seen = fleet.spore.path("token-seen");
    // A shell that reads its credential at start and again on SIGHUP.
    fleet.deploy_started(
        "reloader",
        &format!(
            "[service]\nname = \"reloader\"\nexec = [\"/bin/sh\", \"-c\", \"read_it() {{ cat $CREDENTIALS_DIRECTORY/token > {seen}; }}; trap read_it HUP; read_it; while :; do sleep 0.1; done\"]\n\n[credentials]\nload = [\"token\"]\nreload_signal = \"SIGHUP\"\n",
            seen = seen.display()
        ),
    );
    fleet
        .spore
        .wait_for("the first read", Duration::from_secs(10), |_| {
            std::fs::read_to_string(&seen).is_ok_and(|t| t == "token-one")
        });
    let pid = |fleet: &Fleet| {
        fleet
            .spore
            .call("service.status", json!({ "name": "reloader" }))
            .unwrap()["pid"]
            .as_i64()
    };
    let before = pid(&fleet);
    let out = set_secret(&fleet, "token", "token-two");
    assert!(
        stdout(&out).contains("reloader: told to read it again"),
        "{}",
        stdout(&out)
    );
    fleet
        .spore
        .wait_for("the reread on SIGHUP", Duration::from_secs(10), |_| {
            std::fs::read_to_string(&seen).is_ok_and(|t| t == "token-two")
        });
    assert_eq!(pid(&fleet), before, "not restarted");
}

#[test]
fn secrets_reach_services_and_never_the_log_or_the_wire_back() {
    let fleet = node();
    let secret = "s3cr3t-value-7f1d";
    let mut child = fleet
        .sporectl_command("admin", &["secret", "set", "db-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout(&out).contains(secret));
    let stored = fleet.spore.path("state/secrets/db-password");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), secret);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = fleet.sporectl("admin", &["secret", "list"]);
    assert_eq!(stdout(&list).trim(), "db-password");
    let seen = fleet.spore.path("seen");
    let file = fleet.spore.path("db.toml");
    std::fs::write(
        &file,
        format!(
            "[service]\nname = \"db\"\nexec = \"/bin/sh -c 'printf %s \\\"$DB_PASSWORD\\\" > {}; exec sleep 1000'\"\n\n[secrets]\nDB_PASSWORD = \"db-password\"\n",
            seen.display()
        ),
    )
    .unwrap();
    assert!(fleet
        .sporectl("admin", &["deploy", file.to_str().unwrap()])
        .status
        .success());
    fleet.spore.wait_for(
        "the service to see its secret",
        Duration::from_secs(10),
        |_| std::fs::read_to_string(&seen).unwrap_or_default() == secret,
    );
    assert!(
        !fleet.spore.stderr().contains(secret),
        "a secret reached the node's log"
    );
    let status = fleet.sporectl("admin", &["--json", "status", "db"]);
    assert!(!stdout(&status).contains(secret));
    let reader = fleet.sporectl("reader", &["secret", "list"]);
    assert_eq!(reader.status.code(), Some(1));
}

#[test]
fn node_listens_on_the_mycelium_address_once_mycelium_is_ready() {
    let free = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (rpc_port, overlay_port, api_port) = (free(), free(), free());
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    keygen(&keys.join("admin"), "admin@test");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("services")).unwrap();
    std::fs::copy(keys.join("admin.pub"), etc.join("authorized_keys")).unwrap();
    std::fs::write(
        etc.join("spore.toml"),
        format!(
            "[rpc]\nlisten = [\"127.0.0.1:{rpc_port}\", \"mycelium:{overlay_port}\"]\nmycelium_api = \"http://127.0.0.1:{api_port}/api/v1/admin\"\n"
        ),
    )
    .unwrap();
    // The stand-in claims ::1 as its overlay address, so the test needs no
    // 400::/7 address on this machine.
    common::mycelium_service(&etc, api_port, 0.5, &dir.path().join("ready"), "::1");
    let spore = Spore::start_in(dir);
    spore.wait_state("mycelium", "ready");
    spore.wait_for("the overlay listener", Duration::from_secs(10), |s| {
        s.stderr().contains(&format!(
            "rpc: listening on [::1]:{overlay_port} (mycelium)"
        ))
    });
    let node_key = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(spore.path("state/node_key"))
        .output()
        .unwrap();
    let out = Command::new(sporectl_bin())
        .args(["--node", &format!("[::1]:{overlay_port}"), "--node-key"])
        .arg(String::from_utf8(node_key.stdout).unwrap().trim())
        .arg("--identity")
        .arg(spore.path("keys/admin"))
        .args(["--json", "info"])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listen = info["rpc"]["listen"].to_string();
    assert!(
        listen.contains(&format!("[::1]:{overlay_port}")),
        "{listen}"
    );
}

#[test]
fn authorized_keys_changes_apply_without_a_restart() {
    let fleet = node();
    assert_eq!(fleet.sporectl("stranger", &["list"]).status.code(), Some(4));
    let file = fleet.spore.path("etc/authorized_keys");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&std::fs::read_to_string(fleet.keys.join("stranger.pub")).unwrap());
    std::fs::write(&file, text).unwrap();
    let out = fleet.sporectl("stranger", &["list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fleet
        .spore
        .stderr()
        .contains("authorized keys reloaded: 3 operator(s)"));
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_deploy_that_fails_exits_non_zero_and_shows_its_last_lines() {
    let fleet = node();
    let file = service_file(
        &fleet,
        "flaky",
        "[service]\nname = \"flaky\"\nexec = \"/bin/sh -c 'echo bad config line 7 >&2; exit 3'\"\n",
    );
    let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap()]);
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("flaky: FAILED"), "{text}");
    assert!(text.contains("last run: exited with code 3"), "{text}");
    assert!(text.contains("stderr bad config line 7"), "{text}");
    // --json says the same to a script.
    let out = fleet.sporectl("admin", &["--json", "restart", "flaky"]);
    assert_eq!(out.status.code(), Some(1));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["outcome"], "failed", "{answer}");
    assert_eq!(answer["last_exit_code"], 3, "{answer}");
    // --no-wait returns once the order is taken, as before.
    let out = fleet.sporectl("admin", &["--json", "restart", "flaky", "--no-wait"]);
    assert!(out.status.success(), "{}", stdout_of(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer.get("outcome").is_none(), "{answer}");
}

#[test]
fn an_identical_deploy_changes_nothing_and_a_changed_one_waits_for_ready() {
    let fleet = node();
    let before = fleet.web_pid();
    let image = std::fs::read_to_string(fleet.spore.path("etc/services/web.toml")).unwrap();
    let file = service_file(&fleet, "web", &image);
    let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout_of(&out));
    assert!(
        stdout_of(&out).contains("web: unchanged"),
        "{}",
        stdout_of(&out)
    );
    assert_eq!(
        fleet.web_pid(),
        before,
        "an identical deploy restarts nothing"
    );
    assert!(!fleet.spore.path("state/services/web.toml").exists());
    // Changed: restarted, and the answer comes once it is up.
    std::fs::write(
        &file,
        "[service]\nname = \"web\"\nexec = \"/bin/sh -c 'echo web two; exec sleep 1000'\"\n",
    )
    .unwrap();
    let out = fleet.sporectl("admin", &["--json", "deploy", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout_of(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["outcome"], "ready", "{answer}");
    assert_eq!(answer["state"], "ready", "{answer}");
    assert_ne!(answer["pid"].as_i64().unwrap(), before, "{answer}");
    assert_eq!(answer["pid"].as_i64().unwrap(), fleet.web_pid());
}

#[test]
fn start_takes_several_names_and_a_service_that_never_gets_ready_times_out() {
    let fleet = node();
    for name in ["one", "two"] {
        let file = service_file(
            &fleet,
            name,
            &format!("[service]\nname = \"{name}\"\nexec = \"sleep 1000\"\nstatus = \"stop\"\n"),
        );
        let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stdout_of(&out));
    }
    let out = fleet.sporectl("admin", &["start", "one", "two"]);
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text}");
    for name in ["one", "two"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name}: ready (pid "))),
            "{text}"
        );
    }
    // A name the node does not know fails alone; the others still go.
    let out = fleet.sporectl("admin", &["stop", "one", "ghost", "two"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost: no such service"));
    assert!(stdout_of(&out).contains("one: stopp") && stdout_of(&out).contains("two: stopp"));
    // A health check that never passes: the wait ends at --timeout, not ready.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = service_file(
        &fleet,
        "deaf",
        &format!("[service]\nname = \"deaf\"\nexec = \"sleep 1000\"\n\n[health]\ntype = \"tcp\"\ntarget = \"127.0.0.1:{port}\"\ninterval_ms = 200\n"),
    );
    let out = fleet.sporectl(
        "admin",
        &["deploy", file.to_str().unwrap(), "--timeout", "1500ms"],
    );
    let text = format!(
        "{}{}",
        stdout_of(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("deaf: not settled before the timeout: running"),
        "{text}"
    );
}

#[test]
fn the_node_journal_and_service_markers_are_read_over_rpc_and_a_follow_ends_with_its_service() {
    let fleet = node();
    let out = fleet.sporectl("reader", &["logs", "spore", "-n", "500"]);
    let journal = stdout_of(&out);
    assert!(out.status.success(), "{journal}");
    assert!(
        journal.contains(" spore rpc: listening on 127.0.0.1:"),
        "{journal}"
    );
    assert!(journal.contains("web: ready (pid "), "{journal}");
    // Lifecycle markers among the service's own lines.
    let logs = stdout_of(&fleet.sporectl("reader", &["logs", "web"]));
    assert!(logs.contains(" stdout web says hello"), "{logs}");
    assert!(logs.contains(" spore ready (pid "), "{logs}");
    // A follow of a removed service ends, with a last word.
    let file = service_file(
        &fleet,
        "brief",
        "[service]\nname = \"brief\"\nexec = \"/bin/sh -c 'echo here; exec sleep 1000'\"\n",
    );
    assert!(fleet
        .sporectl("admin", &["deploy", file.to_str().unwrap()])
        .status
        .success());
    let mut follow = fleet
        .sporectl_command("reader", &["logs", "brief", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(fleet
        .sporectl("admin", &["remove", "brief"])
        .status
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = follow.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the follow outlived its service");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    follow
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains(" spore stopping"), "{text}");
    assert!(text.trim_end().ends_with(" spore removed"), "{text}");
}

#[test]
fn info_and_status_read_as_text_and_help_is_per_command() {
    let fleet = node();
    let info = stdout_of(&fleet.sporectl("reader", &["info"]));
    assert!(
        info.contains(": spore ") && info.contains(", up "),
        "{info}"
    );
    assert!(info.contains("services: 1 (1 ready)"), "{info}");
    assert!(
        info.contains(&format!("rpc:      listening on {}", fleet.address)),
        "{info}"
    );
    let status = stdout_of(&fleet.sporectl("reader", &["status", "web"]));
    assert!(status.starts_with("web (daemon, image)"), "{status}");
    assert!(status.contains("  state:    ready for "), "{status}");
    assert!(
        status.contains("    ") && status.contains("web says hello"),
        "{status}"
    );
    let help = Command::new(sporectl_bin())
        .args(["logs", "--help"])
        .output()
        .unwrap();
    let text = stdout_of(&help);
    assert!(help.status.success());
    assert!(
        text.contains("Usage: sporectl logs [OPTIONS] [NAME]"),
        "{text}"
    );
    // Only the verb's own options, then examples, then where the options
    // every command takes are listed (they are still accepted after it).
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {text}"))
    };
    assert!(!text.contains("--node <NODE>"), "{text}");
    assert!(!text.contains("--concurrency"), "{text}");
    assert!(
        at("--lines") < at("Examples:\n  sporectl logs web -n 50"),
        "{text}"
    );
    assert!(
        at("Examples:\n  sporectl logs web -n 50") < at("Options every command takes"),
        "{text}"
    );
    let top = stdout_of(&Command::new(sporectl_bin()).arg("--help").output().unwrap());
    assert!(top.contains("--node <NODE>"), "{top}");
    let wrong = Command::new(sporectl_bin()).arg("lsit").output().unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    let text = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        text.contains("a similar subcommand exists: 'list'"),
        "{text}"
    );
    assert!(text.contains("try '--help'"), "{text}");
    let bare = Command::new(sporectl_bin()).output().unwrap();
    assert_eq!(bare.status.code(), Some(2));
    let completions = Command::new(sporectl_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(stdout_of(&completions).contains("sporectl"));
    let man = Command::new(sporectl_bin()).arg("man").output().unwrap();
    assert!(
        stdout_of(&man).contains(".TH sporectl"),
        "{}",
        stdout_of(&man)
    );
}

#[test]
fn key_problems_are_local_errors_that_say_what_to_do() {
    let fleet = node();
    let socket = fleet.spore.path("agent3.sock");
    let mut agent = start_agent(&socket);
    agent_add(&socket, &fleet.keys.join("admin"));
    let run_with = |socket: &Path, args: &[&str], home: &Path| {
        Command::new("setsid")
            .arg(sporectl_bin())
            .args(["--node", &fleet.address, "--node-key", &fleet.node_key])
            .args(args)
            .env("SSH_AUTH_SOCK", socket)
            .env("HOME", home)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let run = |args: &[&str], home: &Path| run_with(&socket, args, home);
    let home = fleet.spore.path("home-keys");
    std::fs::create_dir_all(&home).unwrap();
    // -i KEY.pub, as ssh takes it: that key, held by the agent.
    let public = fleet.keys.join("admin.pub");
    let out = run(&["-i", public.to_str().unwrap(), "list"], &home);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stranger = fleet.keys.join("stranger.pub");
    let out = run(&["-i", stranger.to_str().unwrap(), "list"], &home);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the agent does not hold this key; load it with ssh-add"),
        "{stderr}"
    );
    // A file that is no key at all.
    let out = run(&["-i", "/etc/hostname", "list"], &home);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/etc/hostname: not an OpenSSH private key"),
        "{stderr}"
    );
    // An encrypted key and no terminal to ask its passphrase: use the agent.
    let locked = fleet.keys.join("locked");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(&locked)
        .status()
        .unwrap();
    assert!(made.success());
    let out = run(&["-i", locked.to_str().unwrap(), "list"], &home);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ssh-add") && stderr.contains("passphrase"),
        "{stderr}"
    );
    // An agent with only an RSA key, and no key file: the agent is named.
    let _ = agent.kill();
    let _ = agent.wait();
    let rsa_socket = fleet.spore.path("agent4.sock");
    let mut agent = start_agent(&rsa_socket);
    let rsa = fleet.keys.join("rsa");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&rsa)
        .status()
        .unwrap();
    assert!(made.success());
    agent_add(&rsa_socket, &rsa);
    let out = run_with(&rsa_socket, &["list"], &home);
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the agent holds no ssh-ed25519 key")
            && stderr.contains("ssh-keygen -t ed25519"),
        "{stderr}"
    );
}

#[test]
fn known_nodes_are_listed_and_forgotten_and_a_silent_node_costs_the_connect_timeout() {
    let fleet = node();
    let pins = fleet.spore.path("operator-known_nodes");
    let with_pins = |args: &[&str]| {
        Command::new(sporectl_bin())
            .args(["--node", &fleet.address, "--known-nodes"])
            .arg(&pins)
            .arg("--identity")
            .arg(fleet.keys.join("admin"))
            .args(args)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    };
    assert!(with_pins(&["--accept-new", "info"]).status.success());
    let listed = stdout_of(&with_pins(&["known-nodes", "list"]));
    let fingerprint = {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(fleet.spore.path("state/node_key"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(listed.trim(), format!("{}  {fingerprint}", fleet.address));
    let forgotten = with_pins(&["known-nodes", "forget", &fleet.address]);
    assert!(
        forgotten.status.success(),
        "{}",
        String::from_utf8_lossy(&forgotten.stderr)
    );
    assert!(stdout_of(&with_pins(&["known-nodes", "list"])).is_empty());
    let again = without_terminal(
        Command::new(sporectl_bin())
            .args(["--node", &fleet.address, "--known-nodes"])
            .arg(&pins)
            .arg("--identity")
            .arg(fleet.keys.join("admin"))
            .arg("info")
            .env_remove("SSH_AUTH_SOCK"),
    );
    assert_eq!(
        again.status.code(),
        Some(4),
        "no pin: refused until pinned again"
    );
    let missing = with_pins(&["known-nodes", "forget", "10.9.9.9:1"]);
    assert_eq!(missing.status.code(), Some(2));
    // A node that accepts and then says nothing (a black hole): the
    // connect timeout bounds the wait.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = Command::new(sporectl_bin())
        .args([
            "--node",
            &address,
            "--node-key",
            &fleet.node_key,
            "--identity",
        ])
        .arg(fleet.keys.join("admin"))
        .args(["--connect-timeout", "1s", "info"])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let took = started.elapsed();
    drop(silent);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(10),
        "the default 15 s was used: {took:?}"
    );
}

#[test]
fn a_fix_or_a_missing_secret_takes_effect_at_once_not_after_the_backoff() {
    let fleet = node();
    // A broken service in a long backoff, then its fix.
    let broken = service_file(
        &fleet,
        "flaky",
        "[service]\nname = \"flaky\"\nexec = \"/bin/sh -c 'exit 3'\"\n\n[lifecycle]\nrestart_delay_ms = 60000\n",
    );
    let out = fleet.sporectl(
        "admin",
        &[
            "deploy",
            broken.to_str().unwrap(),
            "--start",
            "--timeout",
            "3s",
        ],
    );
    assert!(!out.status.success());
    fleet.spore.wait_state("flaky", "backoff");
    let fixed = service_file(
        &fleet,
        "flaky",
        "[service]\nname = \"flaky\"\nexec = \"sleep 1000\"\n\n[lifecycle]\nrestart_delay_ms = 60000\n",
    );
    // Was: "FAILED: backoff: restart in 59… ms" with the old run's output.
    let out = fleet.sporectl(
        "admin",
        &["deploy", fixed.to_str().unwrap(), "--timeout", "10s"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fleet.spore.state("flaky"), "ready");
    // A service whose secret is missing waits in backoff; the secret makes
    // it start now.
    let needs = service_file(
        &fleet,
        "needs-token",
        "[service]\nname = \"needs-token\"\nexec = \"sleep 1000\"\n\n[lifecycle]\nrestart_delay_ms = 60000\n\n[credentials]\nload = [\"late-token\"]\n",
    );
    let out = fleet.sporectl(
        "admin",
        &[
            "deploy",
            needs.to_str().unwrap(),
            "--start",
            "--timeout",
            "3s",
        ],
    );
    assert!(!out.status.success());
    fleet.spore.wait_state("needs-token", "backoff");
    let out = set_secret(&fleet, "late-token", "v4lue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("needs-token: restarted"),
        "{}",
        stdout(&out)
    );
    fleet.spore.wait_state("needs-token", "ready");
}

/// `spore` on the control socket and `sporectl` over signed RPC, with `args`.
fn both(fleet: &Fleet, args: &[&str]) -> [Output; 2] {
    let local = Command::new(common::spore_bin())
        .args(["--socket", fleet.spore.socket.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    [local, fleet.sporectl("reader", args)]
}

#[test]
fn status_is_active_and_is_failed_exit_as_systemctls_on_both_sockets() {
    let fleet = node();
    let file = service_file(
        &fleet,
        "broken",
        "[service]\nname = \"broken\"\nexec = \"/bin/sh -c 'exit 3'\"\n[lifecycle]\nrestart = \"never\"\n",
    );
    let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap(), "--start"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    fleet.spore.wait_state("broken", "exited");
    let cases: &[(&[&str], i32, &str)] = &[
        (&["status", "web"], 0, "web (daemon"),
        (&["status", "broken"], 3, "exited with code 3"),
        (&["status", "web", "broken"], 3, "web (daemon"),
        (&["status", "nosuch"], 4, ""),
        (&["status", "web", "nosuch"], 4, "web (daemon"),
        (&["status"], 0, "broken"),
        (&["is-active", "web"], 0, "ready"),
        (&["is-active", "web", "broken"], 3, "exited"),
        (&["is-active", "nosuch"], 3, ""),
        (&["is-failed", "broken"], 0, "exited"),
        (&["is-failed", "web"], 1, "ready"),
    ];
    // On one node, status --failed lists only the services in trouble.
    let flaky = service_file(
        &fleet,
        "flaky",
        "[service]\nname = \"flaky\"\nexec = \"/bin/sh -c 'exit 1'\"\n",
    );
    fleet.sporectl(
        "admin",
        &["deploy", flaky.to_str().unwrap(), "--start", "--no-wait"],
    );
    fleet.spore.wait_state("flaky", "backoff");
    let failed = stdout_of(&fleet.sporectl("reader", &["status", "--failed"]));
    assert!(
        failed.contains("flaky") && failed.contains("backoff"),
        "{failed}"
    );
    assert!(
        !failed.contains("web") && !failed.contains("broken"),
        "{failed}"
    );
    let named = fleet.sporectl("reader", &["status", "--failed", "web"]);
    assert_eq!(named.status.code(), Some(2), "--failed takes no name");
    for (args, code, shown) in cases {
        for out in both(&fleet, args) {
            let text = stdout_of(&out);
            assert_eq!(
                out.status.code(),
                Some(*code),
                "{args:?}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains(shown), "{args:?}: {text}");
        }
    }
}

#[test]
fn reload_that_rejects_a_file_exits_1_on_both_sockets() {
    let fleet = node();
    std::fs::write(
        fleet.spore.path("etc/services/typo.toml"),
        "[service]\nname = \"typo\"\nexce = \"/bin/true\"\n",
    )
    .unwrap();
    for out in [
        Command::new(common::spore_bin())
            .args(["--socket", fleet.spore.socket.to_str().unwrap(), "reload"])
            .output()
            .unwrap(),
        fleet.sporectl("admin", &["reload"]),
    ] {
        let text = stdout_of(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("rejected"), "{text}");
    }
}

/// Runs `command` in a session of its own: no controlling terminal, as
/// under cron or CI, whatever terminal the tests were started from.
fn without_terminal(command: &mut Command) -> Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; nothing else runs in the child.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    command.output().unwrap()
}

#[test]
fn first_contact_shows_the_nodes_fingerprint_and_asks_as_ssh_does() {
    let fleet = node();
    let pins = fleet.spore.path("operator-known_nodes");
    let sporectl = |node: &str| {
        let mut command = Command::new(sporectl_bin());
        command
            .args(["--node", node, "--known-nodes"])
            .arg(&pins)
            .arg("--identity")
            .arg(fleet.keys.join("admin"))
            .arg("info")
            .env_remove("SSH_AUTH_SOCK");
        command
    };
    let fingerprint = common::fingerprint(&fleet.spore.path("state/node_key"));
    // Declined at the prompt: nothing pinned, nothing signed.
    let mut pty = common::pty::OnPty::spawn(&mut sporectl(&fleet.address));
    pty.wait_for("(yes/no)? ");
    assert!(pty.shown().contains(&fingerprint), "{}", pty.shown());
    pty.type_in("no\n");
    assert_eq!(pty.wait_exit().code(), Some(2), "{}", pty.shown());
    assert!(!pins.exists() || std::fs::read_to_string(&pins).unwrap().is_empty());
    // Without a terminal: refused, saying what the key is and what to do.
    let out = without_terminal(&mut sporectl(&fleet.address));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(
        said.contains(&fingerprint) && said.contains("--accept-new"),
        "{said}"
    );
    // Accepted: the call goes on, the key is pinned, and the next call asks nothing.
    let mut pty = common::pty::OnPty::spawn(&mut sporectl(&fleet.address));
    pty.wait_for("(yes/no)? ");
    pty.type_in("yes\n");
    assert_eq!(pty.wait_exit().code(), Some(0), "{}", pty.shown());
    assert!(pty.shown().contains(": spore "), "{}", pty.shown());
    let out = without_terminal(&mut sporectl(&fleet.address));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A closed port with no pin is unreachable (3), not an authentication failure.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = without_terminal(&mut sporectl(&closed.to_string()));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logs_without_a_name_merge_every_service_and_spore_in_time_order_within_a_window() {
    let fleet = node();
    fleet.deploy_started(
        "ticker",
        "[service]\nname = \"ticker\"\nexec = \"/bin/sh -c 'echo tick one; sleep 0.3; echo tick two; exec sleep 1000'\"\n",
    );
    fleet
        .spore
        .wait_for("tick two", Duration::from_secs(10), |s| {
            s.call("service.logs", serde_json::json!({ "name": "ticker" }))
                .map(|r| r.to_string().contains("tick two"))
                .unwrap_or(false)
        });
    for out in both(&fleet, &["logs", "-n", "1000"]) {
        let text = stdout_of(&out);
        assert!(out.status.success(), "{text}");
        let at = |needle: &str| {
            text.lines()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("`{needle}` not in:\n{text}"))
        };
        // Whose each line is, and in the order they were written.
        assert!(
            at("[web] stdout web says hello") < at("[ticker] stdout tick one"),
            "{text}"
        );
        assert!(
            at("[ticker] stdout tick one") < at("[ticker] stdout tick two"),
            "{text}"
        );
        assert!(
            at("[spore] spore ticker: ready") < at("[ticker] stdout tick two"),
            "{text}"
        );
        let times: Vec<&str> = text.lines().filter_map(|l| l.split(' ').next()).collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "merged by time:\n{text}");
    }
    // -n keeps the newest; a window in the future holds nothing; one in the
    // past everything.
    let newest = stdout_of(&fleet.sporectl("reader", &["logs", "-n", "1"]));
    assert_eq!(newest.lines().count(), 1, "{newest}");
    let [local, remote] = both(&fleet, &["logs", "--since", "2099-01-01"]);
    assert!(stdout_of(&local).trim().is_empty() && stdout_of(&remote).trim().is_empty());
    let [local, _] = both(
        &fleet,
        &["logs", "ticker", "--since", "1h ago", "--until", "now"],
    );
    let window = stdout_of(&local);
    assert!(
        window.contains("tick one") && window.contains("tick two"),
        "{window}"
    );
    let [local, _] = both(&fleet, &["logs", "ticker", "--until", "2020-01-01"]);
    assert!(stdout_of(&local).trim().is_empty(), "{}", stdout_of(&local));
    // -p: a line's <N> first, stderr as err, the rest info.
    fleet.deploy_started(
        "alarm",
        "[service]\nname = \"alarm\"\nexec = [\"/bin/sh\", \"-c\", \"echo '<3>disk failed'; echo calm; echo on-stderr >&2; exec sleep 1000\"]\n",
    );
    fleet
        .spore
        .wait_for("alarm's lines", Duration::from_secs(10), |s| {
            s.call("service.logs", serde_json::json!({ "name": "alarm" }))
                .map(|r| r.to_string().contains("on-stderr"))
                .unwrap_or(false)
        });
    for out in both(&fleet, &["logs", "alarm", "-p", "err"]) {
        let text = stdout_of(&out);
        assert!(
            text.contains("<3>disk failed") && text.contains("on-stderr"),
            "{text}"
        );
        assert!(
            !text.contains("calm") && !text.contains(" spore "),
            "{text}"
        );
    }
    let bad = fleet.sporectl("reader", &["logs", "-p", "loud"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = fleet.sporectl("reader", &["logs", "--since", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    let follow = fleet.sporectl("reader", &["logs", "-f"]);
    assert_eq!(follow.status.code(), Some(2), "-f needs a name");
}
