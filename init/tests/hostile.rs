//! What a hostile peer or a bad file may try against a real `spore run`:
//! hostile strings through every entry point reach the console and the
//! journal escaped and capped, and a reader cannot grow spore's memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::fleet::{half_handshake, node, read_frame, service_file, stdout, write_frame, Fleet};
use rpc::client::ClientError;
use rpc::handshake::encode_proof;
use runtime::escape::{needs_escape, HOSTILE, LINE_BYTES};
use serde_json::{json, Value};

/// Every line of `text` holds nothing that could break a line or drive a
/// terminal, nothing longer than a sink allows, and no forged audit line.
fn assert_clean(text: &str, what: &str) {
    for line in text.lines() {
        assert!(
            !line.chars().any(needs_escape),
            "{what}: a raw control or bidi character reached it: {line:?}"
        );
        assert!(
            line.len() < LINE_BYTES + 200,
            "{what}: a line of {} bytes",
            line.len()
        );
        // The corpus's forged line may only appear inside a real one. (Its
        // fingerprint is `SHA256:x` alone: a real key's may start with x.)
        let body = line.split_once(' ').map_or(line, |(_, rest)| rest);
        assert!(
            !body.starts_with("spore: rpc audit: SHA256:x (root)")
                && !line.starts_with("rpc audit: SHA256:x (root)"),
            "{what}: a forged audit line: {line:?}"
        );
    }
}

/// The node's journal over RPC, each line's text.
fn journal(fleet: &Fleet) -> Vec<String> {
    let answer = fleet
        .spore
        .call("node.journal", json!({ "lines": 2000 }))
        .unwrap();
    answer["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn hostile_strings_through_every_entry_point_are_escaped_in_the_log_and_journal() {
    let fleet = node();
    let mut corpus: Vec<String> = HOSTILE.iter().map(|s| (*s).to_owned()).collect();
    corpus.push(format!("big\u{1b}[2J{}", "x".repeat(1_000_000)));
    // Before any key: a ClientAuth whose SSHSIG namespace is the attack.
    let admin = ssh_key::PrivateKey::read_openssh_file(&fleet.keys.join("admin")).unwrap();
    for hostile in HOSTILE {
        let (mut stream, transcript, mut tx) = half_handshake(&fleet);
        let signature =
            ssh_key::SshSig::sign(&admin, hostile, ssh_key::HashAlg::Sha512, &transcript).unwrap();
        write_frame(
            &mut stream,
            &tx.seal(&encode_proof(&signature).unwrap()).unwrap(),
        );
        let _ = read_frame(&mut stream);
    }
    smol::block_on(async {
        for key in ["reader", "admin"] {
            let mut session = fleet.open(key).unwrap();
            for hostile in &corpus {
                // A name, a method, a parameter key: each refused, each logged.
                let status = session
                    .call("service.status", json!({ "name": hostile }))
                    .await;
                assert!(matches!(status, Err(ClientError::Rpc { code: -32004, .. })));
                // A name that reaches a path: an earlier start's kept logs.
                let kept = session
                    .call("service.logs", json!({ "name": hostile, "boot": 1 }))
                    .await;
                assert!(matches!(kept, Err(ClientError::Rpc { code: -32602, .. })));
                // An artifact's name: refused (a reader's role first), its
                // words in the audit line.
                let put = session
                    .call(
                        "artifact.put",
                        json!({ "sha256": hostile, "size": 1, "data": "eA==" }),
                    )
                    .await;
                assert!(matches!(
                    put,
                    Err(ClientError::Rpc {
                        code: -32602 | -32003,
                        ..
                    })
                ));
                // The newer methods that take a name: why, tree, cat
                // (definition, an admin's), and an update's image name.
                for method in ["service.why", "service.tree", "service.definition"] {
                    let answer = session.call(method, json!({ "name": hostile })).await;
                    assert!(
                        matches!(
                            answer,
                            Err(ClientError::Rpc {
                                code: -32004 | -32003,
                                ..
                            })
                        ),
                        "{method}: {answer:?}"
                    );
                }
                let update = session
                    .call("node.update", json!({ "sha256": hostile }))
                    .await;
                assert!(
                    matches!(
                        update,
                        Err(ClientError::Rpc {
                            code: -32602 | -32003 | -32014,
                            ..
                        })
                    ),
                    "{update:?}"
                );
                // A re-exec's binary named by a hostile artifact or path:
                // refused before anything runs, its name escaped.
                for params in [
                    json!({ "sha256": hostile }),
                    json!({ "path": hostile }),
                    json!({ "path": format!("/{hostile}") }),
                ] {
                    let reexec = session.call("node.reexec", params).await;
                    assert!(
                        matches!(
                            reexec,
                            Err(ClientError::Rpc {
                                code: -32602 | -32003 | -32012 | -32016,
                                ..
                            })
                        ),
                        "{reexec:?}"
                    );
                }
                let method = session.call(hostile, json!({})).await;
                assert!(matches!(method, Err(ClientError::Rpc { code: -32601, .. })));
                let mut params = serde_json::Map::new();
                params.insert(hostile.clone(), json!(1));
                let key = session.call("service.list", Value::Object(params)).await;
                assert!(matches!(key, Err(ClientError::Rpc { code: -32602, .. })));
            }
        }
        // A deploy whose file name and contents are the attack.
        let mut session = fleet.open("admin").unwrap();
        for hostile in HOSTILE {
            let toml = format!("[service]\nname = \"x\"\nexec = \"/bin/true\"\n{hostile} = 1\n");
            let deploy = session
                .call(
                    "service.deploy",
                    json!({ "toml": toml, "file": format!("{hostile}.toml") }),
                )
                .await;
            assert!(matches!(deploy, Err(ClientError::Rpc { code: -32010, .. })));
        }
    });
    // A service that prints the attack: its lines on the console too.
    let printer = service_file(
        &fleet,
        "printer",
        "[service]\nname = \"printer\"\nexec = [\"/bin/printf\", 'out \\033[2J\\342\\200\\256 \\r\\n']\noneshot = true\n",
    );
    let out = fleet.sporectl("admin", &["deploy", printer.to_str().unwrap(), "--start"]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    fleet
        .spore
        .wait_for("the refusals to be logged", Duration::from_secs(10), |s| {
            s.stderr().contains("wrong namespace") && s.stderr().contains("[printer] out")
        });
    let log = fleet.spore.stderr();
    assert_clean(&log, "the console");
    assert!(
        log.contains("wrong namespace `a\\nspore: rpc audit"),
        "{log}"
    );
    assert!(log.contains("[printer] out \\u{1b}[2J\\u{202e}"), "{log}");
    let lines = journal(&fleet);
    let journal_text = lines.join("\n");
    assert_clean(&journal_text, "node.journal");
    // Audit lines (each call's) are in the journal; the console shows a
    // few per interval.
    assert!(
        journal_text.contains("big\\u{1b}[2Jxxx") && journal_text.contains("xxx…[999"),
        "the 1 MB name is cut and says so"
    );
}

#[test]
fn sporectl_escapes_what_a_node_sends_before_it_reaches_the_terminal() {
    let fleet = node();
    fleet.deploy_started(
        "shouter",
        "[service]\nname = \"shouter\"\nexec = [\"/bin/sh\", \"-c\", \"printf 'a\\\\033]0;owned\\\\007 \\\\342\\\\200\\\\256b\\\\n'; exec sleep 1000\"]\n",
    );
    let logs = fleet.sporectl("reader", &["logs", "shouter"]);
    let text = stdout(&logs);
    assert!(text.contains("a\\u{1b}]0;owned\\u{7} \\u{202e}b"), "{text}");
    assert_clean(&text, "sporectl logs");
    let json = fleet.sporectl("reader", &["--json", "logs", "shouter"]);
    let text = stdout(&json);
    assert_clean(&text, "sporectl --json logs");
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).expect("still JSON");
        if let Some(lines) = value["lines"].as_array() {
            assert!(lines.iter().any(|l| l["text"]
                .as_str()
                .is_some_and(|t| t.contains("\u{1b}]0;owned\u{7} \u{202e}b"))));
        }
    }
}

/// spore's resident memory in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_reader_with_megabyte_names_grows_no_memory_and_the_journal_still_reads() {
    let fleet = node();
    let before = rss_kib(fleet.spore.pid());
    smol::block_on(async {
        let mut session = fleet.open("reader").unwrap();
        for i in 0..40 {
            let name = format!("{i}{}", "m".repeat(1_000_000));
            let answer = session.call(&name, json!({})).await;
            assert!(matches!(answer, Err(ClientError::Rpc { code: -32601, .. })));
        }
    });
    let after = rss_kib(fleet.spore.pid());
    // Was 11.8 -> 216 MB after 100: every 1 MB name kept whole (twice) in
    // the journal.
    assert!(
        after < before + 32 * 1024,
        "spore grew from {before} KiB to {after} KiB"
    );
    let logs = fleet.sporectl("admin", &["logs", "spore", "-n", "20"]);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(stdout(&logs).lines().count(), 20, "{}", stdout(&logs));
    // A journal of 1,300 long lines (each audit line carries a capped
    // name twice): cut to what fits in one answer, and said.
    smol::block_on(async {
        let mut session = fleet.open("reader").unwrap();
        for i in 0..1300 {
            let name = format!("{i}{}", "n".repeat(600));
            let answer = session
                .call("service.status", json!({ "name": name }))
                .await;
            assert!(matches!(answer, Err(ClientError::Rpc { code: -32004, .. })));
        }
    });
    let full = fleet.sporectl("admin", &["logs", "spore", "-n", "2000"]);
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let text = stdout(&full);
    assert!(
        text.starts_with('(') && text.contains("older lines left out"),
        "{}",
        &text[..200]
    );
}

#[test]
fn ten_thousand_services_still_list_locally_and_over_rpc() {
    let fleet = node();
    let services = fleet.spore.path("state/services");
    std::fs::create_dir_all(&services).unwrap();
    for i in 0..10_000 {
        std::fs::write(
            services.join(format!("idle-service-with-a-longish-name-{i:05}.toml")),
            format!("[service]\nname = \"idle-service-with-a-longish-name-{i:05}\"\nexec = \"/bin/true\"\nstatus = \"stop\"\n"),
        )
        .unwrap();
    }
    fleet.spore.call("node.reload", json!({})).unwrap();
    fleet
        .spore
        .wait_for("10,000 services", Duration::from_secs(60), |s| {
            s.call(
                "service.status",
                json!({ "name": "idle-service-with-a-longish-name-09999" }),
            )
            .is_ok()
        });
    let unpaged = fleet.spore.call("service.list", json!({})).unwrap_err();
    assert_eq!(unpaged["code"], -32013, "{unpaged}");
    let list = fleet.sporectl("reader", &["list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    // A header, web, and every one of them, once each, in order.
    let rows: Vec<String> = stdout(&list).lines().map(str::to_owned).collect();
    assert_eq!(rows.len(), 10_002);
    assert!(rows[1].starts_with("idle-service-with-a-longish-name-00000"));
    assert!(rows[10_000].starts_with("idle-service-with-a-longish-name-09999"));
    assert!(rows[10_001].starts_with("web"));
    let json = fleet.sporectl("reader", &["--json", "list"]);
    let json: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 10_001);
    // `spore VERB` on the local socket: what it printed, once it succeeded.
    let local = |verb: &str| {
        let out = std::process::Command::new(common::spore_bin())
            .arg("--socket")
            .arg(&fleet.spore.socket)
            .arg(verb)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    assert_eq!(local("list").lines().count(), 10_002);
    // Their figures too: node.metrics is paged the same way, and sporectl
    // and spore put the pages together.
    let unpaged = fleet.spore.call("node.metrics", json!({})).unwrap_err();
    assert_eq!(unpaged["code"], -32013, "{unpaged}");
    let page = fleet
        .spore
        .call(
            "node.metrics",
            json!({ "limit": 100, "after": "idle-service-with-a-longish-name-00049" }),
        )
        .unwrap();
    assert_eq!(page["services"].as_array().unwrap().len(), 100);
    assert_eq!(
        page["services"][0]["name"],
        "idle-service-with-a-longish-name-00050"
    );
    assert_eq!(page["next"], "idle-service-with-a-longish-name-00149");
    assert!(page["start_time_s"].is_u64(), "{page}");
    let ready = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("spore_service_ready{"))
            .count()
    };
    let metrics = fleet.sporectl("reader", &["metrics"]);
    assert!(
        metrics.status.success(),
        "{}",
        String::from_utf8_lossy(&metrics.stderr)
    );
    assert_eq!(ready(&stdout(&metrics)), 10_001);
    assert_eq!(ready(&local("metrics")), 10_001);
}

#[test]
fn a_fifo_planted_as_a_secret_fails_its_service_and_never_stops_pid_1() {
    let fleet = node();
    let secrets = fleet.spore.path("state/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let fifo = std::ffi::CString::new(secrets.join("token").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let file = service_file(
        &fleet,
        "reader-of-token",
        "[service]\nname = \"reader-of-token\"\nexec = \"/bin/sleep 1000\"\n\n[credentials]\nload = [\"token\"]\n",
    );
    // Before: PID 1 blocked for good in the read of the FIFO.
    let out = fleet.sporectl(
        "admin",
        &[
            "deploy",
            file.to_str().unwrap(),
            "--start",
            "--timeout",
            "5s",
        ],
    );
    assert!(
        !out.status.success(),
        "the service cannot start: {}",
        stdout(&out)
    );
    let shown = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains("a FIFO, not a file"), "{shown}");
    let status = fleet
        .spore
        .call("service.status", json!({ "name": "reader-of-token" }))
        .unwrap();
    assert!(
        status.to_string().contains("a FIFO, not a file"),
        "{status}"
    );
    let list = fleet.sporectl("reader", &["list"]);
    assert!(list.status.success(), "the node still answers");
}

#[test]
fn credential_directories_a_killed_spore_left_are_swept_at_start() {
    let mut fleet = node();
    let secrets = fleet.spore.path("state/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("token"), "t0ps3cret").unwrap();
    fleet.deploy_started(
        "holder",
        "[service]\nname = \"holder\"\nexec = \"/bin/sleep 1000\"\n\n[credentials]\nload = [\"token\"]\n",
    );
    let dir = fleet.spore.path("state/credentials/holder");
    assert!(dir.join("token").exists());
    let services = common::service_children(fleet.spore.pid());
    common::signal(fleet.spore.pid(), libc::SIGKILL);
    fleet.spore.child.wait().unwrap();
    for pid in services {
        common::signal(-pid, libc::SIGKILL);
    }
    assert!(dir.join("token").exists(), "left behind by the kill");
    fleet.spore.start_again();
    fleet
        .spore
        .wait_for("the sweep", Duration::from_secs(10), |s| {
            s.stderr()
                .contains("credential directory(ies) an earlier run left")
        });
    // holder is started again with a fresh copy: the stale one went first.
    fleet.spore.wait_state("holder", "ready");
    assert_eq!(
        std::fs::read_to_string(dir.join("token")).unwrap(),
        "t0ps3cret"
    );
}

/// Deploys `deaf`: it runs, but its health check never passes, so a wait
/// for it lasts until its timeout.
fn deploy_deaf(fleet: &Fleet) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = service_file(
        fleet,
        "deaf",
        &format!("[service]\nname = \"deaf\"\nexec = \"sleep 1000\"\n\n[health]\ntype = \"tcp\"\ntarget = \"127.0.0.1:{port}\"\ninterval_ms = 60000\n"),
    );
    let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap(), "--no-wait"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn callers_that_hang_up_while_they_wait_give_their_slots_back_at_once() {
    let fleet = node();
    deploy_deaf(&fleet);
    // Was: 32 of these held that admin key's every session ("busy") for
    // the 10 minutes each asked to wait.
    for _ in 0..40 {
        let mut session = fleet.open("admin").unwrap();
        smol::block_on(async {
            let waiting = session.call(
                "service.start",
                json!({ "name": "deaf", "wait": true, "timeout_ms": 600_000 }),
            );
            let gave_up = async {
                smol::Timer::after(Duration::from_millis(300)).await;
                Err(ClientError::Protocol("gave up".into()))
            };
            assert!(smol::future::or(waiting, gave_up).await.is_err());
        });
        drop(session);
    }
    fleet
        .spore
        .wait_for("40 abandoned waits", Duration::from_secs(10), |_| {
            journal(&fleet)
                .iter()
                .filter(|l| l.contains("-> abandoned (the caller hung up"))
                .count()
                == 40
        });
    let out = fleet.sporectl("admin", &["start", "deaf", "--timeout", "1s"]);
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("deaf: not settled before the timeout"),
        "the same key still gets a session and a wait: {text}"
    );
    // The same on the control socket, whose table holds 64 connections.
    for _ in 0..70 {
        use std::io::Write;
        let mut local = std::os::unix::net::UnixStream::connect(&fleet.spore.socket).unwrap();
        let request = json!({ "jsonrpc": "2.0", "id": 1, "method": "service.start",
            "params": { "name": "deaf", "wait": true, "timeout_ms": 600_000 } });
        local.write_all(format!("{request}\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(300));
    let answer = fleet
        .spore
        .call(
            "service.start",
            json!({ "name": "deaf", "wait": true, "timeout_ms": 500 }),
        )
        .unwrap();
    assert_eq!(answer["outcome"], "timeout", "{answer}");
}

/// The status line a real beacon answers `request` with.
fn beacon_status(port: u16, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_beacon_refuses_a_signed_content_length_and_an_oversized_head() {
    let data = tempfile::tempdir().unwrap();
    let beacon =
        common::beacon::Beacon::start(common::beacon::free_port(), data.path(), &["--open"]);
    let plus = b"POST /api/v1/nodes/register HTTP/1.1\r\nHost: b\r\nContent-Length: +2\r\n\r\n{}";
    assert_eq!(beacon_status(beacon.port, plus), "HTTP/1.1 400 Bad Request");
    let mut big = b"GET /api/v1/nodes HTTP/1.1\r\nHost: b\r\n".to_vec();
    for i in 0..20 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "f".repeat(900)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    assert!(big.len() > 16 * 1024);
    assert_eq!(
        beacon_status(beacon.port, &big),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let fine = b"GET /api/v1/nodes HTTP/1.1\r\nHost: b\r\n\r\n";
    assert_eq!(beacon_status(beacon.port, fine), "HTTP/1.1 200 OK");
}

/// POSTs `body` to the beacon's registration endpoint from address `from`;
/// the status.
fn register_from(from: std::net::Ipv4Addr, port: u16, body: &str) -> u16 {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::io::{Read, Write};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(std::net::SocketAddrV4::new(from, 0)),
    )
    .unwrap();
    let to = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(to)).unwrap();
    let mut stream = std::net::TcpStream::from(fd);
    write!(
        stream,
        "POST /api/v1/nodes/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_registration_flood_from_many_sources_cannot_flush_an_honest_pending_node() {
    pending_flood(&[]);
}

#[test]
fn on_postgresql_too_a_flood_cannot_flush_an_honest_pending_node() {
    let pg = common::postgres::Postgres::start();
    pending_flood(&["--store", &pg.url()]);
}

/// A beacon (`extra` flags) that keeps new nodes pending until an operator
/// approves, with that operator's key (made in `dir`).
fn approving_beacon(
    dir: &std::path::Path,
    extra: &[&str],
) -> (common::beacon::Beacon, std::path::PathBuf) {
    let port = common::beacon::free_port();
    let operator = common::beacon::operator(dir);
    let keys = operator.with_extension("pub");
    let keys = keys.to_str().unwrap();
    let mut args = vec!["--approve", "--authorized-keys", keys];
    args.extend_from_slice(extra);
    (common::beacon::Beacon::start(port, dir, &args), operator)
}

/// An honest node pending at a beacon (`extra` flags), then a flood of
/// pending registrations from 60 other sources; the honest one stays.
fn pending_flood(extra: &[&str]) {
    let data = tempfile::tempdir().unwrap();
    let (beacon, _) = approving_beacon(data.path(), extra);
    let honest = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let body = common::beacon::signed_registration("honest-node", &honest, None);
    assert_eq!(
        register_from(std::net::Ipv4Addr::new(127, 0, 3, 1), beacon.port, &body),
        202
    );
    // Seen (in whole seconds) strictly before every flood entry.
    std::thread::sleep(Duration::from_millis(1100));
    // 60 sources, 20 registrations each (their burst), all different
    // names: 1,200 against a table of 1,000. Was: the honest entry, seen
    // longest ago, was the first to go.
    for source in 1..=60u8 {
        for i in 0..20u8 {
            let key = ed25519_dalek::SigningKey::from_bytes(&[
                source, i, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
            ]);
            let body =
                common::beacon::signed_registration(&format!("flood-{source}-{i}"), &key, None);
            let status = register_from(
                std::net::Ipv4Addr::new(127, 0, 2, source),
                beacon.port,
                &body,
            );
            assert!(status == 202 || status == 429, "{status}");
        }
    }
    let (status, pending) = common::beacon::http(beacon.port, "GET", "/api/v1/pending", "");
    assert_eq!(status, 200);
    let pending: Vec<Value> = serde_json::from_str(&pending).unwrap();
    assert_eq!(pending.len(), 1000, "the table is full");
    assert!(
        pending
            .iter()
            .any(|r| r["registration"]["hostname"] == "honest-node"),
        "the honest node is still pending"
    );
}

#[test]
fn a_pending_node_an_operator_holds_outlasts_a_flood_from_a_thousand_sources() {
    held_through_flood(&[]);
}

#[test]
fn on_postgresql_too_a_held_pending_node_outlasts_the_flood() {
    let pg = common::postgres::Postgres::start();
    held_through_flood(&["--store", &pg.url()]);
}

/// Two honest nodes pending at a beacon (`extra` flags), one of them held
/// by an operator (`sporectl nodes hold`), then one registration from each
/// of 1,100 other sources (as many /64s as an IPv6 flood has): every
/// source holds one entry, so fairness by source cannot tell the flood
/// from the honest, and the oldest go. The held one stays; the other is
/// flushed, as both were before holds.
fn held_through_flood(extra: &[&str]) {
    let data = tempfile::tempdir().unwrap();
    let (beacon, operator) = approving_beacon(data.path(), extra);
    let port = beacon.port;
    for (i, name) in ["held-node", "unheld-node"].into_iter().enumerate() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[20 + i as u8; 32]);
        let body = common::beacon::signed_registration(name, &key, None);
        let from = std::net::Ipv4Addr::new(127, 0, 3, 1 + i as u8);
        assert_eq!(register_from(from, beacon.port, &body), 202);
    }
    let url = format!("http://127.0.0.1:{port}");
    let hold = common::beacon::sporectl(&[
        "nodes",
        "--beacon",
        &url,
        "-i",
        operator.to_str().unwrap(),
        "hold",
        "held-node",
    ]);
    assert!(
        hold.status.success(),
        "{}",
        String::from_utf8_lossy(&hold.stderr)
    );
    assert!(
        String::from_utf8_lossy(&hold.stdout)
            .contains("held-node: 1 pending entries held for 24 h"),
        "{}",
        String::from_utf8_lossy(&hold.stdout)
    );
    let listed = common::beacon::sporectl(&["nodes", "pending", "--beacon", &url]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("(held)"));
    std::thread::sleep(Duration::from_millis(1100));
    // The node registers again while it waits: the hold stays with it.
    let key = ed25519_dalek::SigningKey::from_bytes(&[20; 32]);
    let body = common::beacon::signed_registration("held-node", &key, None);
    assert_eq!(
        register_from(std::net::Ipv4Addr::new(127, 0, 3, 1), beacon.port, &body),
        202
    );
    std::thread::sleep(Duration::from_millis(1100));
    for n in 0..1100u32 {
        let key_bytes: [u8; 32] = std::array::from_fn(|i| (n >> (8 * (i % 4))) as u8 ^ i as u8);
        let key = ed25519_dalek::SigningKey::from_bytes(&key_bytes);
        let body = common::beacon::signed_registration(&format!("flood-{n}"), &key, None);
        let from = std::net::Ipv4Addr::new(127, 0, 4 + (n / 250) as u8, 1 + (n % 250) as u8);
        assert_eq!(register_from(from, beacon.port, &body), 202, "flood {n}");
    }
    let (status, pending) = common::beacon::http(beacon.port, "GET", "/api/v1/pending", "");
    assert_eq!(status, 200);
    let pending: Vec<Value> = serde_json::from_str(&pending).unwrap();
    assert_eq!(pending.len(), 1000, "the table is full");
    let present = |name: &str| {
        pending
            .iter()
            .any(|r| r["registration"]["hostname"] == name)
    };
    assert!(present("held-node"), "the held node was flushed");
    assert!(
        !present("unheld-node"),
        "the flood flushes what is not held"
    );
    // A hold on a name nobody registered is a clear 404, not a success.
    let none = common::beacon::sporectl(&[
        "nodes",
        "--beacon",
        &url,
        "-i",
        operator.to_str().unwrap(),
        "hold",
        "unheld-node",
    ]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no pending registration of unheld-node"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
}

#[test]
fn a_power_order_is_answered_before_the_node_stops_its_services() {
    let mut fleet = node();
    let mut session = fleet.open("admin").unwrap();
    let request = br#"{"jsonrpc":"2.0","id":1,"method":"node.poweroff"}"#;
    let sealed = session.seal_next(request).unwrap();
    smol::block_on(session.send_raw_frame(&sealed)).unwrap();
    // The operator has not read the answer yet (its packets are still on
    // the overlay): the node must not take the overlay down under it.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        fleet.spore.state("web"),
        "ready",
        "the node began to stop before its answer was read"
    );
    let answer = smol::block_on(session.notification()).unwrap();
    assert_eq!(answer["result"]["accepted"], true, "{answer}");
    drop(session);
    let start = std::time::Instant::now();
    while fleet.spore.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "spore did not power off"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hostile_registrations_reach_the_beacons_log_escaped() {
    let data = tempfile::tempdir().unwrap();
    let port = common::beacon::free_port();
    let log = data.path().join("beacon.err");
    let beacon = common::beacon::Beacon::start_logging(port, data.path(), &["--open"], &log);
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    for hostile in HOSTILE {
        // As a hostname (refused before anything else is read) …
        let body = common::beacon::signed_registration(hostile, &key, None);
        let (status, _) = common::beacon::http(port, "POST", "/api/v1/nodes/register", &body);
        assert_eq!(status, 400, "{hostile:?}");
        // … and in a field of a registration whose signature fails.
        let mut record: Value =
            serde_json::from_str(&common::beacon::signed_registration("node-x", &key, None))
                .unwrap();
        record["spore_version"] = json!(hostile);
        let (status, _) =
            common::beacon::http(port, "POST", "/api/v1/nodes/register", &record.to_string());
        assert_eq!(status, 403, "{hostile:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    drop(beacon);
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert!(text.contains("refused a registration"), "{text}");
    assert_clean(&text, "the beacon's log");
}
