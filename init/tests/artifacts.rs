//! Artifacts pushed over signed RPC to a real `spore run`: a 64 MiB file
//! sent with sporectl, cut off half way (sporectl killed) and resumed; a
//! flipped byte refused with nothing placed; a reader key refused; the
//! quota and a full disk (a tmpfs of 2 MiB) refused with nothing left
//! behind; spore's memory held to the chunk bound while it receives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
use common::fleet::{node, node_with, stdout, Fleet};
use common::{noise, sha256sum};
use rpc::client::ClientError;
use serde_json::{json, Value};

const MIB: usize = 1 << 20;

fn store(fleet: &Fleet) -> PathBuf {
    fleet.spore.path("state/artifacts")
}

/// Every file under the store's `partial/` (uploads under way).
fn partials(fleet: &Fleet) -> Vec<PathBuf> {
    std::fs::read_dir(store(fleet).join("partial"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// spore's peak resident memory so far (VmHWM), in bytes.
fn peak_rss(pid: i32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_64_mib_push_cut_off_half_way_resumes_and_is_verified_within_the_memory_bound() {
    let fleet = node();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("payload.bin");
    std::fs::write(&file, noise(64 * MIB, 1)).unwrap();
    let digest = sha256sum(&file);
    let before = peak_rss(fleet.spore.pid());

    // Cut off half way: sporectl killed once the node holds 32 MiB.
    let mut first = fleet
        .sporectl_command("admin", &["artifact", "put", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = store(&fleet)
        .join("partial")
        .join(format!("{digest}-{}", 64 * MIB));
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 32 * MIB as u64 {
        assert!(Instant::now() < deadline, "the upload never reached 32 MiB");
        assert!(first.try_wait().unwrap().is_none(), "sporectl ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // Chunks already sent (several are in flight) are still stored: wait
    // until the upload stops growing.
    let mut held = std::fs::metadata(&partial).unwrap().len();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = std::fs::metadata(&partial).unwrap().len();
        if now == held {
            break;
        }
        held = now;
    }
    assert!(!store(&fleet).join("sha256").join(&digest).exists());

    // What the node says it holds, to a reader.
    let list = fleet.sporectl("reader", &["artifact", "list"]);
    assert!(list.status.success(), "{list:?}");
    let text = stdout(&list);
    assert!(
        text.contains(&format!("uploading: {held} of {} bytes", 64 * MIB)),
        "{text}"
    );

    // Sent again: it resumes where it stopped (the node's answers show the
    // first chunk sent starts there) and is verified.
    let second = fleet.sporectl("admin", &["artifact", "put", file.to_str().unwrap()]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        stdout(&second).contains(&format!("sha256:{digest} ({} bytes) stored", 64 * MIB)),
        "{}",
        stdout(&second)
    );
    let stored = store(&fleet).join("sha256").join(&digest);
    assert_eq!(sha256sum(&stored), digest);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert!(partials(&fleet).is_empty());
    let grown = peak_rss(fleet.spore.pid()).saturating_sub(before);
    eprintln!(
        "spore's peak RSS grew by {:.1} MiB receiving 64 MiB",
        grown as f64 / MIB as f64
    );
    // At most the queue's chunks (8 × 512 KiB), each also held as its
    // frame and its base64 text, with room for the allocator.
    assert!(grown < 24 * MIB, "peak RSS grew by {grown} bytes");
    // The log says what arrived, once, not a line per chunk.
    let log = fleet.spore.stderr();
    let audits = log.lines().filter(|l| l.contains("artifact.put")).count();
    assert!(audits <= 6, "{audits} audit lines for two uploads:\n{log}");
}

/// The session's `artifact.put` of `data` under `digest`, chunk by chunk;
/// the last answer.
fn push(
    session: &mut rpc::client::Session,
    digest: &str,
    data: &[u8],
    chunk: usize,
) -> Result<Value, ClientError> {
    let mut answer = Value::Null;
    for (at, piece) in data.chunks(chunk).enumerate() {
        answer = smol::block_on(session.call(
            "artifact.put",
            json!({
                "sha256": digest,
                "size": data.len(),
                "offset": at * chunk,
                "data": base64_of(piece),
            }),
        ))?;
    }
    Ok(answer)
}

#[test]
fn a_flipped_byte_and_a_reader_are_refused_with_nothing_placed() {
    let fleet = node();
    let data = noise(3 * MIB, 2);
    let digest = artifacts::Digest::of_bytes(&data).hex();
    let mut flipped = data.clone();
    flipped[2 * MIB + 12_345] ^= 0x40;
    let mut session = fleet.open("admin").unwrap();
    let error = push(&mut session, &digest, &flipped, 512 * 1024).unwrap_err();
    let ClientError::Rpc { code, message, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(*code, -32602, "{message}");
    assert!(
        message.contains(&format!("not sha256:{digest}; nothing was stored")),
        "{message}"
    );
    assert!(partials(&fleet).is_empty());
    assert!(!store(&fleet).join("sha256").join(&digest).exists());
    // The same session goes on: the true bytes are taken.
    let answer = push(&mut session, &digest, &data, 512 * 1024).unwrap();
    assert_eq!(answer["complete"], true);

    // A reader may list but not put or remove.
    let mut reader = fleet.open("reader").unwrap();
    let refused = push(&mut reader, &digest, b"x", 1).unwrap_err();
    assert!(
        matches!(&refused, ClientError::Rpc { code: -32003, .. }),
        "{refused}"
    );
    let file = fleet.spore.path("small.bin");
    std::fs::write(&file, b"small").unwrap();
    let out = fleet.sporectl("reader", &["artifact", "put", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("artifact.put needs the admin role"),
        "{out:?}"
    );
    let out = fleet.sporectl("reader", &["artifact", "rm", &digest]);
    assert_eq!(out.status.code(), Some(1));
    let listed = smol::block_on(reader.call("artifact.list", json!({}))).unwrap();
    assert_eq!(listed["artifacts"][0]["sha256"], digest.as_str());
    // Removed by an admin, it is gone.
    let out = fleet.sporectl("admin", &["artifact", "rm", &digest]);
    assert!(stdout(&out).contains("removed"), "{out:?}");
    assert!(!store(&fleet).join("sha256").join(&digest).exists());
    // A name that is not a SHA-256 is refused before anything is touched.
    let bad = smol::block_on(session.call(
        "artifact.put",
        json!({ "sha256": "../../etc/passwd", "size": 1, "data": "eA==" }),
    ))
    .unwrap_err();
    assert!(bad.to_string().contains("not a SHA-256"), "{bad}");
}

#[test]
fn raw_chunks_keep_the_session_in_step_and_a_chunk_of_another_length_ends_it() {
    let fleet = node();
    let data = noise(MIB + 4321, 3);
    let digest = artifacts::Digest::of_bytes(&data).hex();
    let params = |offset: usize, bytes: usize| json!({ "sha256": digest, "size": data.len(), "offset": offset, "bytes": bytes });
    // Chunks raw, several in flight, then another call: answered in order.
    let mut session = fleet.open("admin").unwrap();
    let answers = smol::block_on(async {
        let first = session
            .send_chunk(params(0, 512 * 1024), &data[..512 * 1024])
            .await
            .unwrap();
        let second = session
            .send_chunk(params(512 * 1024, 512 * 1024), &data[512 * 1024..MIB])
            .await
            .unwrap();
        let third = session
            .send_chunk(params(MIB, 4321), &data[MIB..])
            .await
            .unwrap();
        let info = session.send_call("node.info", json!({})).await.unwrap();
        let mut answers = Vec::new();
        for id in [first, second, third, info] {
            answers.push(session.answer(id).await.unwrap());
        }
        answers
    });
    assert_eq!(answers[0]["held"], 512 * 1024);
    assert_eq!(answers[1]["held"], MIB);
    assert_eq!(answers[2]["complete"], true);
    assert!(answers[3]["hostname"].is_string(), "{}", answers[3]);
    assert_eq!(
        sha256sum(&store(&fleet).join("sha256").join(&digest)),
        digest
    );

    // A reader's raw chunk is refused, and the session goes on in step.
    let mut reader = fleet.open("reader").unwrap();
    let refused = smol::block_on(async {
        let id = reader.send_chunk(params(0, 3), b"abc").await.unwrap();
        reader.answer(id).await
    })
    .unwrap_err();
    assert!(
        matches!(&refused, ClientError::Rpc { code: -32003, .. }),
        "{refused}"
    );
    assert!(smol::block_on(reader.call("artifact.list", json!({}))).is_ok());

    // A chunk shorter than it was announced ends the session; the node
    // answers the next one.
    let other = noise(1000, 4);
    let other_digest = artifacts::Digest::of_bytes(&other).hex();
    let mut broken = fleet.open("admin").unwrap();
    let ended = smol::block_on(async {
        let id = broken
            .send_chunk(
                json!({ "sha256": other_digest, "size": 1000, "offset": 0, "bytes": 1000 }),
                &other[..10],
            )
            .await
            .unwrap();
        broken.answer(id).await
    });
    assert!(
        matches!(
            &ended,
            Err(ClientError::Unreachable(_) | ClientError::Protocol(_))
        ),
        "{ended:?}"
    );
    assert!(partials(&fleet).is_empty());
    let mut again = fleet.open("admin").unwrap();
    assert!(smol::block_on(again.call("node.info", json!({}))).is_ok());

    // The local control socket carries no raw frame: `bytes` there is
    // refused with what to send instead.
    let local = fleet.spore.call(
        "artifact.put",
        json!({ "sha256": other_digest, "size": 1000, "offset": 0, "bytes": 1000 }),
    );
    let error = local.unwrap_err().to_string();
    assert!(error.contains("send data (base64) here"), "{error}");
}

#[test]
fn over_the_quota_is_refused_with_nothing_left_behind() {
    let fleet = node_with("\n[artifacts]\nmax_bytes = \"2M\"\n");
    let work = tempfile::tempdir().unwrap();
    let small = work.path().join("small.bin");
    std::fs::write(&small, noise(MIB + 1, 3)).unwrap();
    let out = fleet.sporectl("admin", &["artifact", "put", small.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let big = work.path().join("big.bin");
    std::fs::write(&big, noise(MIB, 4)).unwrap();
    let out = fleet.sporectl("admin", &["artifact", "put", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains(&format!(
            "storing {MIB} bytes would exceed the artifact quota ({} of {} bytes in use)",
            MIB + 1,
            2 * MIB
        )),
        "{error}"
    );
    assert!(error.contains("[artifacts] max_bytes"), "{error}");
    assert!(partials(&fleet).is_empty());
    let info = fleet.spore.call("node.info", json!({})).unwrap();
    assert_eq!(info["artifacts"]["quota_bytes"], 2 * MIB);
}

/// A tmpfs of `size` mounted on `path`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount tmpfs (this test needs root, as spore does)"
        );
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_refused_with_nothing_half_written_and_the_rest_intact() {
    let mut fleet = node_with("\n[artifacts]\nmax_bytes = \"100M\"\n");
    // The store on a 2 MiB tmpfs: spore opens it there at its next start.
    let _disk = Tmpfs::mount(&store(&fleet), "2m");
    fleet.spore.restart();
    fleet
        .spore
        .wait_for("the RPC listener again", Duration::from_secs(10), |s| {
            s.stderr().matches("rpc: listening on").count() >= 2
        });
    // Too big for what is free: refused before a byte is written.
    let too_big = noise(3 * MIB, 5);
    let mut session = fleet.open("admin").unwrap();
    let digest = artifacts::Digest::of_bytes(&too_big).hex();
    let error = push(&mut session, &digest, &too_big, 512 * 1024).unwrap_err();
    assert!(error.to_string().contains("the disk is full"), "{error}");
    assert!(partials(&fleet).is_empty());
    // Two uploads each fit alone; the disk fills while the second is
    // written: it is refused and removed, the first stays whole.
    let first = noise(1_200_000, 6);
    let second = noise(1_200_000, 7);
    let (a, b) = (
        artifacts::Digest::of_bytes(&first).hex(),
        artifacts::Digest::of_bytes(&second).hex(),
    );
    smol::block_on(session.call(
        "artifact.put",
        json!({
            "sha256": b,
            "size": second.len(),
            "offset": 0,
            "data": base64_of(&second[..400_000]),
        }),
    ))
    .unwrap();
    let done = push(&mut session, &a, &first, 400_000).unwrap();
    assert_eq!(done["complete"], true);
    let mut failed = None;
    for offset in [400_000usize, 800_000] {
        let answer = smol::block_on(session.call(
            "artifact.put",
            json!({
                "sha256": b,
                "size": second.len(),
                "offset": offset,
                "data": base64_of(&second[offset..offset + 400_000]),
            }),
        ));
        if let Err(error) = answer {
            failed = Some(error);
            break;
        }
    }
    let failed = failed.expect("a 2 MiB disk took 2.4 MB");
    assert!(failed.to_string().contains("the disk is full"), "{failed}");
    assert!(partials(&fleet).is_empty());
    let stored = store(&fleet).join("sha256").join(&a);
    assert_eq!(std::fs::read(&stored).unwrap(), first);
    // The node answers on.
    assert_eq!(
        fleet
            .spore
            .call("service.status", json!({"name": "web"}))
            .unwrap()["state"],
        "ready"
    );
}

#[test]
fn spore_on_the_node_itself_puts_lists_and_removes_with_the_same_words() {
    let fleet = node();
    let file = fleet.spore.path("tool");
    std::fs::write(&file, noise(MIB + 7, 8)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    let digest = sha256sum(&file);
    let spore = |args: &[&str]| {
        Command::new(common::spore_bin())
            .arg("--socket")
            .arg(&fleet.spore.socket)
            .args(args)
            .output()
            .unwrap()
    };
    let put = spore(&["artifact", "put", file.to_str().unwrap()]);
    assert!(put.status.success(), "{put:?}");
    assert!(
        stdout(&put).contains(&format!("sha256:{digest} ({} bytes) stored", MIB + 7)),
        "{put:?}"
    );
    // Executable here, so executable there.
    let stored = store(&fleet).join("sha256").join(&digest);
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o555
    );
    let list = stdout(&spore(&["artifact", "list"]));
    assert!(list.contains(&format!("sha256:{digest}")), "{list}");
    assert!(list.contains("verified, executable"), "{list}");
    let rm = spore(&["artifact", "rm", &digest]);
    assert!(stdout(&rm).contains("removed"), "{rm:?}");
    assert!(!stored.exists());
    let wrong = spore(&["artifact", "frob"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .contains("expected put FILE..., list or rm SHA256..."),
        "{wrong:?}"
    );
}

#[test]
fn a_service_runs_a_program_that_was_never_in_its_image_once_it_is_put() {
    let fleet = node();
    let work = tempfile::tempdir().unwrap();
    let program = work.path().join("greeter");
    std::fs::write(
        &program,
        "#!/bin/sh\necho \"greeter from $0 with $1\"\nexec sleep 1000\n",
    )
    .unwrap();
    let digest = sha256sum(&program);
    // Deployed first: it waits, saying for what.
    let service = format!(
        "[service]\nname = \"greeter\"\nexec = \"$ARTIFACTS_DIRECTORY/greeter --hello\"\n\n[[artifacts]]\nname = \"greeter\"\nsha256 = \"{digest}\"\nmode = \"0755\"\n"
    );
    let file = common::fleet::service_file(&fleet, "greeter", &service);
    // (sporectl would refuse: it checks the node holds what the file pins;
    // the node's own socket takes the file as it is.)
    let deploy = Command::new(common::spore_bin())
        .arg("--socket")
        .arg(&fleet.spore.socket)
        .args(["deploy", file.to_str().unwrap(), "--no-wait"])
        .output()
        .unwrap();
    assert!(deploy.status.success(), "{deploy:?}");
    fleet
        .spore
        .wait_for("the start to wait", Duration::from_secs(10), |s| {
            s.stderr().contains(&format!(
                "waiting for artifact greeter (sha256:{digest}): not on the node"
            ))
        });
    let status = stdout(&fleet.sporectl("admin", &["status", "greeter"]));
    assert!(status.contains("waiting for artifact greeter"), "{status}");
    // Put (not executable here: the service file's mode makes it so).
    let put = fleet.sporectl("admin", &["artifact", "put", program.to_str().unwrap()]);
    assert!(put.status.success(), "{put:?}");
    let dir = fleet.spore.path("state/service-artifacts/greeter");
    fleet
        .spore
        .wait_for("greeter to run", Duration::from_secs(30), |s| {
            s.state("greeter") == "ready"
                && s.stderr().contains(&format!(
                    "greeter from {}/greeter with --hello",
                    dir.display()
                ))
        });
    let stored = store(&fleet).join("sha256").join(&digest);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o555
    );
    assert_eq!(std::fs::read_link(dir.join("greeter")).unwrap(), stored);
}

/// Python's http.server serving `dir` on loopback, over TLS with `tls`
/// (certificate, key); its port. Killed on drop.
struct FileServer {
    child: std::process::Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> FileServer {
        let wrap = match tls {
            Some((cert, key)) => format!(
                "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\nctx.load_cert_chain({:?}, {:?})\nserver.socket = ctx.wrap_socket(server.socket, server_side=True)\n",
                cert.to_str().unwrap(),
                key.to_str().unwrap()
            ),
            None => String::new(),
        };
        let script = format!(
            "import http.server, ssl, functools\nhandler = functools.partial(http.server.SimpleHTTPRequestHandler, directory={:?})\nserver = http.server.HTTPServer(('127.0.0.1', 0), handler)\n{wrap}print(server.server_address[1], flush=True)\nserver.serve_forever()\n",
            dir.to_str().unwrap()
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        FileServer {
            port: line.trim().parse().unwrap(),
            child,
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A service `name` pinning `pin` as `tool`, fetched from `url`.
fn fetching_service(name: &str, pin: &str, url: &str) -> String {
    format!(
        "[service]\nname = \"{name}\"\nexec = \"$ARTIFACTS_DIRECTORY/tool {name}\"\n\n[lifecycle]\nrestart_delay_ms = 200\n\n[[artifacts]]\nname = \"tool\"\nsha256 = \"{pin}\"\nurl = \"{url}\"\nmode = \"0755\"\n"
    )
}

#[test]
fn the_node_fetches_what_a_service_pins_over_https_and_a_wrong_pin_never_runs() {
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::beacon::tls_material(work.path());
    let served = work.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let mut program = b"#!/bin/sh\necho \"fetched tool runs for $1\"\nexec sleep 1000\n".to_vec();
    program.extend(std::iter::repeat_n(b'#', 3 * MIB));
    program.push(b'\n');
    std::fs::write(served.join("tool"), &program).unwrap();
    let digest = sha256sum(&served.join("tool"));
    let server = FileServer::start(&served, Some((&cert, &key)));
    let fleet = node_with(&format!("\n[artifacts]\nca_file = \"{}\"\n", ca.display()));
    let url = format!("https://127.0.0.1:{}/tool", server.port);
    let file = common::fleet::service_file(
        &fleet,
        "fetcher",
        &fetching_service("fetcher", &digest, &url),
    );
    // The deploy waits through the fetch and answers once the service runs.
    let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("fetcher: ready"), "{out:?}");
    fleet
        .spore
        .wait_for("the fetched tool to run", Duration::from_secs(30), |s| {
            s.state("fetcher") == "ready" && s.stderr().contains("fetched tool runs for fetcher")
        });
    let log = fleet.spore.stderr();
    assert!(
        log.contains(&format!(
            "artifact tool: fetched from {url} and verified (sha256:{digest}, {} bytes)",
            program.len()
        )),
        "{log}"
    );
    assert_eq!(
        sha256sum(&store(&fleet).join("sha256").join(&digest)),
        digest
    );

    // A pin the served bytes do not match: never placed, never run, and
    // the service says why.
    let wrong = "0".repeat(64);
    let file =
        common::fleet::service_file(&fleet, "pinned", &fetching_service("pinned", &wrong, &url));
    // The deploy waits for the fetch, then says the start failed and why.
    let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        format!("{out:?}").contains("waiting for artifact tool"),
        "{out:?}"
    );
    fleet
        .spore
        .wait_for("the refused fetch", Duration::from_secs(30), |s| {
            s.stderr()
                .contains(&format!("not sha256:{wrong}; nothing was stored"))
        });
    assert!(!store(&fleet).join("sha256").join(&wrong).exists());
    // The store's thread says so and then removes the partial file: wait
    // for the removal, bounded, rather than race it.
    fleet.spore.wait_for(
        "the refused fetch's partial removed",
        Duration::from_secs(10),
        |_| partials(&fleet).is_empty(),
    );
    let status = stdout(&fleet.sporectl("admin", &["status", "pinned"]));
    assert!(
        status.contains(&format!("waiting for artifact tool (sha256:{wrong})")),
        "{status}"
    );
    assert!(!fleet
        .spore
        .stderr()
        .contains("fetched tool runs for pinned"));
}

#[test]
fn a_server_that_stalls_mid_body_is_timed_out_while_the_node_answers() {
    // A server that sends the head and half the body, then nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..2 {
            let Ok((mut connection, _)) = listener.accept() else {
                return;
            };
            use std::io::{Read, Write};
            let mut request = [0u8; 1024];
            let _ = connection.read(&mut request);
            let _ = connection.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2000000\r\n\r\n");
            let _ = connection.write_all(&vec![b'x'; 1_000_000]);
            held.push(connection);
        }
        std::thread::sleep(Duration::from_secs(20));
    });
    let fleet = node_with("\n[artifacts]\nfetch_timeout_ms = 3000\n");
    let pin = "1".repeat(64);
    let url = format!("http://127.0.0.1:{port}/tool");
    let file = common::fleet::service_file(&fleet, "stuck", &fetching_service("stuck", &pin, &url));
    let out = fleet.sporectl("admin", &["deploy", file.to_str().unwrap(), "--no-wait"]);
    assert!(out.status.success(), "{out:?}");
    fleet
        .spore
        .wait_for("the fetch to start", Duration::from_secs(10), |s| {
            s.stderr()
                .contains(&format!("artifact tool: fetching from {url}"))
        });
    // While it hangs, the node answers at once, and says how far the fetch
    // got (one piece of the 2,000,000 bytes is stored).
    let started = Instant::now();
    let list = fleet.sporectl("reader", &["list"]);
    assert!(list.status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    fleet.spore.wait_for(
        "the fetch's progress in status",
        Duration::from_secs(10),
        |_| {
            let status = stdout(&fleet.sporectl("reader", &["status", "stuck"]));
            // At least one piece (512 KiB and what came with it) stored.
            ["0.5", "0.6"]
                .iter()
                .any(|held| status.contains(&format!("fetching: tool {held} of 1.9 MiB (")))
        },
    );
    fleet
        .spore
        .wait_for("the timeout", Duration::from_secs(20), |s| {
            s.stderr().contains(
                "the server stopped sending (timed out)); tried again at the service's next start",
            )
        });
    assert!(partials(&fleet).is_empty(), "a half fetch was left");
    drop(stalled);
}

#[test]
fn one_deploy_sends_the_program_a_service_pins_and_runs_it() {
    let fleet = node();
    let work = tempfile::tempdir().unwrap();
    let program = work.path().join("greeter");
    std::fs::write(
        &program,
        "#!/bin/sh\necho \"shipped greeter says $1\"\nexec sleep 1000\n",
    )
    .unwrap();
    let digest = sha256sum(&program);
    let service = format!(
        "[service]\nname = \"greeter\"\nexec = \"$ARTIFACTS_DIRECTORY/greeter hi\"\n\n[[artifacts]]\nname = \"greeter\"\nsha256 = \"{digest}\"\nmode = \"0755\"\n"
    );
    let file = common::fleet::service_file(&fleet, "greeter", &service);
    let file = file.to_str().unwrap();
    // Not on the node, and nothing to send: refused before the deploy.
    let bare = fleet.sporectl("admin", &["deploy", file]);
    assert_eq!(bare.status.code(), Some(2), "{bare:?}");
    assert!(
        String::from_utf8_lossy(&bare.stderr).contains(
            "is not on the node and the file gives no url: send it with --artifact greeter=PATH"
        ),
        "{bare:?}"
    );
    assert!(fleet
        .spore
        .call("service.status", json!({"name": "greeter"}))
        .is_err());
    // A file that is not what the pin says: nothing is sent.
    let other = work.path().join("other");
    std::fs::write(&other, "#!/bin/sh\necho impostor\n").unwrap();
    let wrong = fleet.sporectl(
        "admin",
        &[
            "deploy",
            file,
            "--artifact",
            &format!("greeter={}", other.display()),
        ],
    );
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains(&format!(
            "pins greeter to sha256:{digest}; nothing was sent"
        )),
        "{wrong:?}"
    );
    assert!(std::fs::read_dir(store(&fleet).join("sha256"))
        .unwrap()
        .next()
        .is_none());
    // One deploy: the program goes first, then the file, and it runs.
    let out = fleet.sporectl(
        "admin",
        &[
            "deploy",
            file,
            "--artifact",
            &format!("greeter={}", program.display()),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("sha256:{digest}")) && text.contains("stored"),
        "{text}"
    );
    assert!(text.contains("greeter: ready"), "{text}");
    fleet
        .spore
        .wait_for("the greeting", Duration::from_secs(10), |s| {
            s.stderr().contains("shipped greeter says hi")
        });
    // Deployed again: the node has it, nothing is sent.
    let again = fleet.sporectl(
        "admin",
        &[
            "deploy",
            file,
            "--artifact",
            &format!("greeter={}", program.display()),
        ],
    );
    assert!(again.status.success(), "{again:?}");
}

#[test]
fn room_for_a_new_artifact_is_made_from_old_ones_no_service_pins() {
    let fleet = node_with("\n[artifacts]\nmax_bytes = \"2M\"\n");
    let work = tempfile::tempdir().unwrap();
    let file = |name: &str, seed: u8| {
        let path = work.path().join(name);
        std::fs::write(&path, noise(800_000, seed)).unwrap();
        path
    };
    let (pinned, unpinned, new) = (file("pinned", 10), file("unpinned", 11), file("new", 12));
    for path in [&pinned, &unpinned] {
        let out = fleet.sporectl("admin", &["artifact", "put", path.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
    }
    let service = format!(
        "[service]\nname = \"keeper\"\nexec = \"$ARTIFACTS_DIRECTORY/p\"\nstatus = \"stop\"\n\n[[artifacts]]\nname = \"p\"\nsha256 = \"{}\"\n",
        sha256sum(&pinned)
    );
    let service = common::fleet::service_file(&fleet, "keeper", &service);
    let out = fleet.sporectl("admin", &["deploy", service.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    // Both were put two hours ago.
    for path in [&pinned, &unpinned] {
        let stored = store(&fleet).join("sha256").join(sha256sum(path));
        let aged = std::time::SystemTime::now() - Duration::from_secs(7_200);
        std::fs::File::open(&stored)
            .unwrap()
            .set_modified(aged)
            .unwrap();
    }
    let out = fleet.sporectl("admin", &["artifact", "put", new.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let held = |path: &Path| store(&fleet).join("sha256").join(sha256sum(path)).exists();
    assert!(held(&pinned), "a pinned artifact was collected");
    assert!(!held(&unpinned), "an unpinned one stayed");
    assert!(held(&new));
    assert!(
        fleet
            .spore
            .stderr()
            .contains("artifacts: removed 1 no service pins (800000 bytes)"),
        "{}",
        fleet.spore.stderr()
    );
}
