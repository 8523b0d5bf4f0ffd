//! `service.why` and `spore why`: why a service is not running, named down
//! to the service that holds the others back, with what it last printed;
//! `service.tree` and `spore tree`: the dependency graph as it stands.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::Spore;
use serde_json::json;

#[test]
fn why_follows_the_chain_to_the_failing_dependency_and_its_last_output() {
    let spore = Spore::start(&[
        (
            "db",
            // It dies before its health check can pass: never ready.
            "[service]\nname = \"db\"\nexec = \"/bin/sh -c 'echo starting db; echo connection refused by disk; exit 3'\"\n\n[health]\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval_ms = 60000\n"
                .to_string(),
        ),
        (
            "api",
            "[service]\nname = \"api\"\nexec = \"sleep 1000\"\n[dependencies]\nrequires = [\"db\"]\n"
                .to_string(),
        ),
        (
            "web",
            "[service]\nname = \"web\"\nexec = \"sleep 1000\"\n[dependencies]\nrequires = [\"api\"]\n"
                .to_string(),
        ),
        (
            "fine",
            "[service]\nname = \"fine\"\nexec = \"sleep 1000\"\n".to_string(),
        ),
    ]);
    spore.wait_state("fine", "ready");
    // Failed once, and its words read: its exit and its output come by
    // separate ways (SIGCHLD, its pipe), and under load the exit may be
    // handled first.
    spore.wait_for(
        "db to have failed once and its output to be read",
        std::time::Duration::from_secs(10),
        |s| {
            let restarts = s.call("service.status", json!({ "name": "db" })).unwrap()["restarts"]
                .as_u64()
                .unwrap_or(0);
            let logs = s.call("service.logs", json!({ "name": "db" })).unwrap();
            restarts >= 1 && logs.to_string().contains("connection refused by disk")
        },
    );
    let why = spore.call("service.why", json!({ "name": "web" })).unwrap();
    assert_eq!(why["running"], false, "{why}");
    let chain: Vec<&str> = why["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(chain, ["web", "api", "db"], "{why}");
    assert_eq!(
        why["chain"][0]["detail"], "blocked: waiting for api",
        "{why}"
    );
    let db = &why["chain"][2];
    assert_eq!(
        db["lines"].as_array().unwrap().last().unwrap(),
        "connection refused by disk",
        "{why}"
    );
    let summary = why["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(
            "web is not running: blocked: waiting for api; api: blocked: waiting for db; db: "
        ),
        "{summary}"
    );
    assert!(summary.contains("exited with code 3"), "{summary}");
    assert!(
        summary.contains("last output: \"connection refused by disk\""),
        "{summary}"
    );

    // A running service says so; an unknown one is an error.
    let fine = spore
        .call("service.why", json!({ "name": "fine" }))
        .unwrap();
    assert_eq!(fine["running"], true, "{fine}");
    assert!(
        fine["summary"]
            .as_str()
            .unwrap()
            .starts_with("fine is ready"),
        "{fine}"
    );
    let error = spore
        .call("service.why", json!({ "name": "ghost" }))
        .unwrap_err();
    assert_eq!(error["code"], -32004, "{error}");

    // The local client prints the same chain.
    let out = std::process::Command::new(common::spore_bin())
        .args(["--socket", spore.socket.to_str().unwrap(), "why", "web"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web is not running"), "{text}");
    assert!(text.contains("db"), "{text}");
    assert!(text.contains("connection refused by disk"), "{text}");
}

#[test]
fn why_a_stopped_service_says_nothing_asks_it_to_run() {
    let spore = Spore::start(&[(
        "idle",
        "[service]\nname = \"idle\"\nexec = \"sleep 1000\"\nstatus = \"stop\"\n".to_string(),
    )]);
    let why = spore
        .call("service.why", json!({ "name": "idle" }))
        .unwrap();
    assert_eq!(why["running"], false, "{why}");
    assert!(
        why["summary"]
            .as_str()
            .unwrap()
            .contains("nothing asks it to run"),
        "{why}"
    );
}

#[test]
fn tree_shows_each_service_under_what_depends_on_it_with_its_state() {
    let spore = Spore::start(&[
        ("db", "[service]\nname = \"db\"\nexec = \"sleep 1000\"\n".to_string()),
        ("cache", "[service]\nname = \"cache\"\nexec = \"sleep 1000\"\n".to_string()),
        (
            "api",
            "[service]\nname = \"api\"\nexec = \"sleep 1000\"\n[dependencies]\nrequires = [\"db\"]\n"
                .to_string(),
        ),
        (
            "web",
            "[service]\nname = \"web\"\nexec = \"sleep 1000\"\n[dependencies]\nrequires = [\"api\"]\nwants = [\"cache\"]\nafter = [\"db\"]\n"
                .to_string(),
        ),
        ("lone", "[service]\nname = \"lone\"\nexec = \"sleep 1000\"\n".to_string()),
    ]);
    spore.wait_state("web", "ready");
    spore.wait_state("lone", "ready");
    let whole = spore.call("service.tree", json!({})).unwrap();
    let roots: Vec<&str> = whole["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(roots, ["lone", "web"], "{whole}");
    let web = &whole["tree"][1];
    let under: Vec<(&str, &str)> = web["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["relation"].as_str().unwrap()))
        .collect();
    assert_eq!(
        under,
        [("api", "requires"), ("cache", "wants"), ("db", "after")],
        "{whole}"
    );
    assert_eq!(
        web["dependencies"][0]["dependencies"][0]["name"], "db",
        "{whole}"
    );
    // db was drawn under api already: shown again without its subtree.
    assert_eq!(web["dependencies"][2]["again"], true, "{whole}");

    let out = std::process::Command::new(common::spore_bin())
        .args(["--socket", spore.socket.to_str().unwrap(), "tree", "web"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "web  ready\n├─ api  ready\n│  └─ db  ready\n├─ cache  ready (wants)\n└─ db  ready (after) …\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let error = spore
        .call("service.tree", json!({ "name": "ghost" }))
        .unwrap_err();
    assert_eq!(error["code"], -32004, "{error}");
}
