//! Two beacon replicas on one real PostgreSQL (a throwaway cluster made by
//! Debian's initdb): what one acknowledges the other lists, approvals and
//! order nonces are shared, a replica killed mid-burst loses nothing it
//! acknowledged, real nodes' heartbeats move to the replica that
//! survives, and an artifact published through one replica is fetched by a
//! node through the other.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::beacon::*;
use common::postgres::Postgres;
use common::{sha256sum, sporectl_bin};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A replica on `pg`, with `extra` flags.
fn replica(pg: &Postgres, data: &std::path::Path, extra: &[&str]) -> Beacon {
    let url = pg.url();
    let mut args = vec!["--store", url.as_str()];
    args.extend_from_slice(extra);
    Beacon::start(free_port(), data, &args)
}

/// `sporectl beacon serve --open --store STORE EXTRA…` run to its end (a
/// beacon that refuses to start); its output.
fn serve_refused(store: &str, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(sporectl_bin())
        .args(["beacon", "serve", "--listen", "127.0.0.1:0", "--open"])
        .args(["--store", store])
        .args(extra)
        .output()
        .unwrap()
}

fn register_url(beacon: &Beacon) -> String {
    format!("{}/api/v1/nodes/register", beacon.url())
}

#[test]
fn registrations_approvals_and_order_nonces_are_shared_by_the_replicas() {
    let pg = Postgres::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let op = operator(dir);
    let keys = op.with_extension("pub");
    let flags = ["--approve", "--authorized-keys", keys.to_str().unwrap()];
    let a = replica(&pg, &dir.join("a"), &flags);
    let b = replica(&pg, &dir.join("b"), &flags);
    // Both started on one database: the schema was created once.
    assert_eq!(
        pg.psql("SELECT version || ' ' || description FROM beacon_migrations"),
        "1 nodes, pending registrations, order nonces"
    );

    // A node that only knows replica A waits at A; B sees it waiting.
    let (spore, _) = node("node-a", a.port, &op, 0);
    spore.wait_for("node-a pending at B", Duration::from_secs(20), |_| {
        http(b.port, "GET", "/api/v1/pending", "")
            .1
            .contains("node-a")
    });
    // An operator approves it at B; A lists it, and the node's next try
    // at A is accepted.
    let fingerprint = common::fingerprint(&spore.path("state/node_key"));
    let approved = sporectl(&[
        "nodes",
        "--beacon",
        &b.url(),
        "-i",
        op.to_str().unwrap(),
        "approve",
        "node-a",
        "--fingerprint",
        &fingerprint,
    ]);
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    assert_eq!(listed(a.port), ["node-a"]);
    spore.wait_for("call-home accepted at A", Duration::from_secs(20), |s| {
        s.stderr().contains("registered node-a")
    });
    assert_eq!(http(b.port, "GET", "/api/v1/pending", "").1, "[]");

    // One signed removal: obeyed at A, and the same order replayed at B is
    // refused (the nonce is in the shared store).
    let identity = rpc::identity::Identity::from_file(&op).unwrap();
    let order = beacon::admin::Order::signed("remove", "node-a", "", &identity, now()).unwrap();
    let body = serde_json::to_string(&order).unwrap();
    let (status, answer) = http(a.port, "POST", "/api/v1/admin", &body);
    assert_eq!(status, 200, "{answer}");
    assert!(listed(b.port).is_empty());
    let (status, _) = http(b.port, "POST", "/api/v1/admin", &body);
    assert_eq!(
        status, 403,
        "a replayed order is refused by the other replica"
    );

    // A database whose schema is newer than this beacon is refused at
    // start, with the reason.
    pg.psql("INSERT INTO beacon_migrations (version, description) VALUES (99, 'from the future')");
    let refused = serve_refused(&pg.url(), &[]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("schema is version 99, newer than this beacon's 1"),
        "{stderr}"
    );
}

#[test]
fn an_artifact_published_through_one_replica_is_fetched_through_the_other() {
    let pg = Postgres::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let op = operator(dir);
    let keys = op.with_extension("pub");
    let cache = |name: &str| dir.join(name).join("cache");
    let a_cache = cache("a");
    let a = replica(
        &pg,
        &dir.join("a"),
        &[
            "--open",
            "--authorized-keys",
            keys.to_str().unwrap(),
            "--artifacts",
            a_cache.to_str().unwrap(),
        ],
    );
    let b_cache = cache("b");
    let a_url = a.url();
    let b = replica(
        &pg,
        &dir.join("b"),
        &[
            "--open",
            "--authorized-keys",
            keys.to_str().unwrap(),
            "--artifacts",
            b_cache.to_str().unwrap(),
            "--artifacts-peer",
            &a_url,
        ],
    );
    let mut program = b"#!/bin/sh\necho \"replicated tool runs\"\nexec sleep 1000\n".to_vec();
    program.extend(std::iter::repeat_n(b'#', 1 << 20));
    program.push(b'\n');
    let tool = dir.join("tool");
    std::fs::write(&tool, &program).unwrap();
    let digest = sha256sum(&tool);
    let published = sporectl(&[
        "--beacon",
        &a.url(),
        "-i",
        op.to_str().unwrap(),
        "artifact",
        "publish",
        tool.to_str().unwrap(),
    ]);
    assert!(published.status.success(), "{published:?}");
    // B does not hold it, and a peer's question (?local=1) is not passed on.
    let path = format!("/api/v1/artifacts/{digest}");
    assert_eq!(http(b.port, "GET", &format!("{path}?local=1"), "").0, 404);
    assert!(!b_cache.join("sha256").join(&digest).exists());

    // A node that only knows replica B fetches it there: B asks A, keeps it
    // verified, and serves it.
    let (spore, _) = node_calling("node-r", &[register_url(&b)], &op, 0, None);
    spore.wait_for("node-r listed", Duration::from_secs(20), |_| {
        listed(b.port) == ["node-r"]
    });
    let service = dir.join("tool.toml");
    std::fs::write(
        &service,
        format!(
            "[service]\nname = \"tool\"\nexec = \"$ARTIFACTS_DIRECTORY/tool\"\n\n[[artifacts]]\nname = \"tool\"\nsha256 = \"{digest}\"\nurl = \"beacon\"\nmode = \"0755\"\n"
        ),
    )
    .unwrap();
    let deploy = sporectl(&[
        "--beacon",
        &b.url(),
        "--all",
        "-i",
        op.to_str().unwrap(),
        "deploy",
        service.to_str().unwrap(),
    ]);
    assert!(deploy.status.success(), "{deploy:?}");
    spore.wait_for("the replicated tool to run", Duration::from_secs(30), |s| {
        s.state("tool") == "ready" && s.stderr().contains("replicated tool runs")
    });
    assert_eq!(sha256sum(&b_cache.join("sha256").join(&digest)), digest);
    assert!(spore.stderr().contains(&format!(
        "artifact tool: fetched from {}/api/v1/artifacts/{digest} and verified",
        b.url()
    )));
}

#[test]
fn a_replica_killed_mid_burst_loses_nothing_it_acknowledged() {
    let pg = Postgres::start();
    let work = tempfile::tempdir().unwrap();
    // One source address stands for many nodes here: lift its rate limit.
    let flags = ["--open", "--rate", "1000000", "--burst", "1000000"];
    let mut a = replica(&pg, &work.path().join("a"), &flags);
    let b = replica(&pg, &work.path().join("b"), &flags);
    const NODES: usize = 2_000;
    let registrations: Vec<(String, String)> = (0..NODES)
        .map(|i| {
            let hostname = format!("burst-{i:04}");
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let body = signed_registration(&hostname, &key, None);
            (hostname, body)
        })
        .collect();
    let registrations = Arc::new(registrations);
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let acked = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let port = a.port;
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let (registrations, acknowledged, acked, failed) = (
                registrations.clone(),
                acknowledged.clone(),
                acked.clone(),
                failed.clone(),
            );
            std::thread::spawn(move || {
                for (hostname, body) in registrations.iter().skip(t).step_by(8) {
                    match try_http(port, "POST", "/api/v1/nodes/register", body) {
                        Ok((200, _)) => {
                            acknowledged.lock().unwrap().insert(hostname.clone());
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((status, answer)) => panic!("{hostname}: {status} {answer}"),
                        Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    while acked.load(Ordering::SeqCst) < 100 {
        std::thread::sleep(Duration::from_millis(1));
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    for sender in senders {
        sender.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let failed = failed.load(Ordering::SeqCst);
    assert!(
        failed > 0 && acknowledged.len() < NODES,
        "the kill came mid-burst: {} acknowledged, {failed} failed",
        acknowledged.len()
    );
    // Everything A acknowledged, B lists.
    let at_b: BTreeSet<String> = listed(b.port).into_iter().collect();
    let lost: Vec<_> = acknowledged.difference(&at_b).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged by A are missing at B: {lost:?}",
        lost.len()
    );
    // The rest go to B: each is listed now, or was committed by A just
    // before it died and is refused as a replay of what is stored.
    for (hostname, body) in registrations.iter() {
        if !at_b.contains(hostname) {
            let (status, answer) = http(b.port, "POST", "/api/v1/nodes/register", body);
            assert!(
                status == 200 || status == 409,
                "{hostname}: {status} {answer}"
            );
        }
    }
    assert_eq!(listed(b.port).len(), NODES);
    eprintln!(
        "{} acknowledged by A before it was killed, {failed} failed; all at B",
        acknowledged.len()
    );
}

#[test]
fn heartbeats_move_to_the_surviving_replica() {
    let pg = Postgres::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let op = operator(dir);
    let mut a = replica(&pg, &dir.join("a"), &["--open"]);
    let b = replica(&pg, &dir.join("b"), &["--open"]);
    let urls = [register_url(&a), register_url(&b)];
    let (spore, _) = node_calling("node-h", &urls, &op, 1, None);
    spore.wait_for(
        "node-h registered through A",
        Duration::from_secs(20),
        |s| {
            s.stderr()
                .contains(&format!("registered node-h at ::1 with {}", urls[0]))
        },
    );
    assert_eq!(listed(b.port), ["node-h"], "B lists what A took");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = now();
    spore.wait_for("heartbeats at B", Duration::from_secs(20), |s| {
        s.stderr()
            .contains(&format!("registered node-h at ::1 with {}", urls[1]))
    });
    let stderr = spore.stderr();
    assert!(
        stderr.contains(&format!("call-home failed at {}", urls[0]))
            && stderr.contains(&format!("trying {}", urls[1])),
        "{stderr}"
    );
    // B's record keeps moving: heartbeats after the kill land there.
    let last_seen = || nodes(b.port)[0]["last_seen"].as_u64().unwrap();
    let first = last_seen();
    assert!(first >= killed, "{first} < {killed}");
    spore.wait_for("a later heartbeat at B", Duration::from_secs(10), |_| {
        last_seen() > first
    });
}

#[test]
fn a_replica_reaches_postgresql_over_tls_and_trusts_only_the_given_ca() {
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_material(work.path());
    let pg = Postgres::start_with_tls(&cert, &key);
    let url = format!("{}?sslmode=require", pg.url());
    // The system's roots do not know the test CA: refused at start.
    let refused = serve_refused(&url, &[]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    // A CA without TLS asked for is a mistake, said so.
    let plain = serve_refused(&pg.url(), &["--store-ca", ca.to_str().unwrap()]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("needs sslmode=require"));
    // With the CA it serves, and PostgreSQL says its connection is TLS.
    let beacon = Beacon::start(
        free_port(),
        &work.path().join("b"),
        &[
            "--open",
            "--store",
            &url,
            "--store-ca",
            ca.to_str().unwrap(),
        ],
    );
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let (status, answer) = http(
        beacon.port,
        "POST",
        "/api/v1/nodes/register",
        &signed_registration("tls-node", &key, None),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(listed(beacon.port), ["tls-node"]);
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name = 'spore-beacon' AND ssl"
        ),
        "1"
    );
}

#[test]
fn a_store_password_is_refused_on_argv_however_spelled_and_never_logged() {
    let pg = Postgres::start();
    for query in ["pass%77ord=PW-1", "%70assword=PW-1", "password=PW-1"] {
        let url = format!("{}?{query}", pg.url());
        let out = serve_refused(&url, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{query}: accepted on argv: {err}");
        assert!(err.contains("a password in the URL"), "{query}: {err}");
        assert!(!err.contains("PW-1"), "{query}: {err}");
    }
    // The documented route, the environment: it starts, and its start-up
    // line shows neither the password nor the user.
    let data = tempfile::tempdir().unwrap();
    let url = format!("{}?sslmode=disable&%70assword=PW-2", pg.url());
    let mut beacon = std::process::Command::new(sporectl_bin())
        .args([
            "beacon",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--open",
            "--data",
        ])
        .arg(data.path())
        .env("SPORECTL_BEACON_STORE", &url)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = beacon.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains('\n') {
        use std::io::Read;
        assert_eq!(err.read(&mut byte).unwrap(), 1, "the beacon ended early");
        seen.push(byte[0]);
    }
    let _ = beacon.kill();
    let _ = beacon.wait();
    let line = String::from_utf8_lossy(&seen);
    assert!(line.contains("beacon: listening on"), "{line}");
    assert!(line.contains("/postgres?sslmode=…&password=…"), "{line}");
    assert!(!line.contains("PW-2") && !line.contains("spore@"), "{line}");
}
