//! The beacon's artifact cache, against real processes: a program
//! published once by `sporectl --all deploy --artifact` reaches two real
//! `spore run` nodes, which fetch it from their beacon (`url = "beacon"`)
//! and run it; publishing is for admin keys made by `ssh-keygen` (a reader
//! and a stranger are refused), bytes that do not hash to their name are
//! refused with nothing kept, a captured order cannot be replayed, and an
//! upload cut off half way resumes where it stopped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::beacon::*;
use common::{keygen, noise, sha256sum, Spore};

/// Operators of a beacon: `op` (admin), `rd` (role=reader), and `stranger`
/// (not listed); the authorized_keys file listing the first two.
fn operators(dir: &Path) -> PathBuf {
    let op = operator(dir);
    keygen(&dir.join("rd"), "rd@fleet");
    keygen(&dir.join("stranger"), "stranger@fleet");
    let keys = dir.join("beacon_keys");
    std::fs::write(
        &keys,
        format!(
            "{}role=reader {}",
            std::fs::read_to_string(op.with_extension("pub")).unwrap(),
            std::fs::read_to_string(dir.join("rd.pub")).unwrap()
        ),
    )
    .unwrap();
    keys
}

/// A beacon with an artifact cache in `dir/cache`, logging to `dir/log`.
fn cache_beacon(dir: &Path, keys: &Path, extra: &[&str]) -> Beacon {
    let cache = dir.join("cache");
    let mut args = vec![
        "--open",
        "--authorized-keys",
        keys.to_str().unwrap(),
        "--artifacts",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Beacon::start_logging(free_port(), &dir.join("data"), &args, &dir.join("log"))
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(listing) => listing
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// One request with `headers` and a raw body; (status, head and body).
/// `cut` sends only that much of the body, then closes.
fn put(port: u16, path: &str, headers: &str, body: &[u8], length: usize) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let _ = stream.write_all(body);
    if body.len() < length {
        // Cut off: the rest never comes.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// The `Spore-Order` header of a publish order for (`hex`, `size`) signed
/// by the key at `key`.
fn order_header(key: &Path, hex: &str, size: u64) -> String {
    let id = rpc::identity::Identity::from_file(key).unwrap();
    let order = beacon::admin::Order::publish(
        hex,
        size,
        &id,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let json = serde_json::to_vec(&order).unwrap();
    format!(
        "Spore-Order: {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(json)
    )
}

/// GET of an artifact's bytes (status, body).
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, response[end..].to_vec())
}

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_program_published_once_is_fetched_from_the_beacon_and_run_by_every_node() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let keys = operators(dir);
    let op = dir.join("op");
    let beacon = cache_beacon(dir, &keys, &[]);
    let fleet: Vec<Spore> = ["node-a", "node-b"]
        .iter()
        .map(|name| node(name, beacon.port, &op, 0).0)
        .collect();
    fleet[0].wait_for("two registrations", Duration::from_secs(20), |_| {
        nodes(beacon.port).len() == 2
    });

    // A program no node has: a script, padded past one piece.
    let mut program =
        b"#!/bin/sh\necho \"tool from the beacon runs as $1\"\nexec sleep 1000\n".to_vec();
    program.extend(std::iter::repeat_n(b'#', 2 << 20));
    program.push(b'\n');
    let tool = dir.join("tool");
    std::fs::write(&tool, &program).unwrap();
    let digest = sha256sum(&tool);
    let service = dir.join("greeter.toml");
    std::fs::write(
        &service,
        format!(
            "[service]\nname = \"greeter\"\nexec = \"$ARTIFACTS_DIRECTORY/tool greeter\"\n\n[[artifacts]]\nname = \"tool\"\nsha256 = \"{digest}\"\nurl = \"beacon\"\nmode = \"0755\"\n"
        ),
    )
    .unwrap();

    let deploy = sporectl(&[
        "--beacon",
        &beacon.url(),
        "--all",
        "--identity",
        op.to_str().unwrap(),
        "--yes",
        "deploy",
        service.to_str().unwrap(),
        "--artifact",
        &format!("tool={}", tool.display()),
    ]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&deploy.stdout),
        String::from_utf8_lossy(&deploy.stderr)
    );
    assert!(deploy.status.success(), "{out}");
    assert!(
        out.contains(&format!("published to the beacon as sha256:{digest}")),
        "{out}"
    );
    // Stored once at the beacon, verified by another program.
    let stored = dir.join("cache/sha256").join(&digest);
    assert_eq!(sha256sum(&stored), digest);
    for spore in &fleet {
        spore.wait_for("the tool to run", Duration::from_secs(30), |s| {
            s.state("greeter") == "ready"
                && s.stderr().contains("tool from the beacon runs as greeter")
        });
        let log = spore.stderr();
        assert!(
            log.contains(&format!(
                "artifact tool: fetched from {}/api/v1/artifacts/{digest} and verified",
                beacon.url()
            )),
            "{log}"
        );
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert_eq!(
        log.matches(&format!("published sha256:{digest}")).count(),
        1,
        "{log}"
    );

    // Published again: the beacon holds it, nothing is sent.
    let again = sporectl(&[
        "--beacon",
        &beacon.url(),
        "--identity",
        op.to_str().unwrap(),
        "artifact",
        "publish",
        tool.to_str().unwrap(),
    ]);
    assert!(again.status.success(), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("held already"),
        "{again:?}"
    );
    // What anyone fetches is the bytes, whole.
    let (status, body) = get(beacon.port, &format!("/api/v1/artifacts/{digest}"));
    assert_eq!((status, sha256_of(&body)), (200, digest.clone()));
    let (status, listed) = http(beacon.port, "GET", "/api/v1/artifacts", "");
    assert_eq!(status, 200);
    assert!(listed.contains(&digest), "{listed}");
    let (status, _) = get(
        beacon.port,
        &format!("/api/v1/artifacts/{}", "0".repeat(64)),
    );
    assert_eq!(status, 404);
}

#[test]
fn publishing_takes_an_admin_order_and_bytes_that_match_it_and_resumes_when_cut_off() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let keys = operators(dir);
    let beacon = cache_beacon(dir, &keys, &[]);
    let cache = dir.join("cache");
    let file = dir.join("payload.bin");
    let bytes = noise(3 << 20, 7);
    std::fs::write(&file, &bytes).unwrap();
    let digest = sha256sum(&file);
    let publish = |key: &str| {
        sporectl(&[
            "--beacon",
            &beacon.url(),
            "--identity",
            dir.join(key).to_str().unwrap(),
            "artifact",
            "publish",
            file.to_str().unwrap(),
        ])
    };
    // A reader and a stranger are refused, and nothing is stored.
    for key in ["rd", "stranger"] {
        let out = publish(key);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("beacon refused: refused"),
            "{out:?}"
        );
    }
    assert!(entries(&cache.join("sha256")).is_empty());
    assert!(entries(&cache.join("partial")).is_empty());

    let path = format!("/api/v1/artifacts/{digest}");
    let size = bytes.len();
    // No order: refused before a byte is taken.
    let (status, _) = put(beacon.port, &path, "", &bytes, size);
    assert_eq!(status, 400);
    // An order for these bytes, with other bytes: refused, nothing kept.
    let op = dir.join("op");
    let header = order_header(&op, &digest, size as u64);
    let other = noise(size, 8);
    let (status, answer) = put(beacon.port, &path, &header, &other, size);
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("nothing was stored"), "{answer}");
    assert!(entries(&cache.join("sha256")).is_empty());
    assert!(entries(&cache.join("partial")).is_empty());
    // The same order again (captured): its nonce is spent.
    let (status, _) = put(beacon.port, &path, &header, &bytes, size);
    assert_eq!(status, 403);
    // An order whose size is not the upload's: refused.
    let short = order_header(&op, &digest, size as u64 - 1);
    let (status, _) = put(beacon.port, &path, &short, &bytes, size);
    assert_eq!(status, 400);

    // Cut off half way: what arrived stays, and the next publish resumes.
    let half = size / 2;
    let fresh = order_header(&op, &digest, size as u64);
    put(beacon.port, &path, &fresh, &bytes[..half], size);
    let partial = cache.join("partial").join(format!("{digest}-{size}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Every byte that came is kept.
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < half as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing of the cut-off upload stayed: {}",
            std::fs::read_to_string(dir.join("log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let held = std::fs::metadata(&partial).unwrap().len();
    assert_eq!(held, half as u64);
    let out = publish("op");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("published to the beacon as sha256:{digest}"))
            && text.contains(&format!("resumed at {held}")),
        "{text}"
    );
    assert_eq!(sha256sum(&cache.join("sha256").join(&digest)), digest);
    assert!(entries(&cache.join("partial")).is_empty());
    // Refusals were counted in the beacon's log, not echoed per attempt
    // to the peer.
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert!(log.contains("refused an order to publish"), "{log}");

    // Removing is an admin's order too; then it is gone, and a second
    // removal says the beacon holds no such artifact.
    let unpublish = |key: &str| {
        sporectl(&[
            "--beacon",
            &beacon.url(),
            "--identity",
            dir.join(key).to_str().unwrap(),
            "artifact",
            "unpublish",
            &digest,
        ])
    };
    let out = unpublish("rd");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(cache.join("sha256").join(&digest).exists());
    let out = unpublish("op");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed from the beacon"),
        "{out:?}"
    );
    assert!(!cache.join("sha256").join(&digest).exists());
    assert_eq!(get(beacon.port, &path).0, 404);
    let out = unpublish("op");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("the beacon holds no sha256:{digest}")),
        "{out:?}"
    );
}

#[test]
fn publishes_from_one_source_are_rate_limited_as_orders_are_and_fetches_are_not() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let keys = operators(dir);
    let beacon = cache_beacon(dir, &keys, &["--rate", "0.001", "--burst", "2"]);
    let path = format!("/api/v1/artifacts/{}", "ab".repeat(32));
    // Without an order: refused (400) while the bucket lasts, then 429.
    let statuses: Vec<u16> = (0..3)
        .map(|_| put(beacon.port, &path, "", b"", 0).0)
        .collect();
    assert_eq!(statuses, [400, 400, 429]);
    for _ in 0..5 {
        assert_eq!(get(beacon.port, &path).0, 404);
    }
}
