//! `node.metrics` and `spore metrics`: the node's figures in Prometheus'
//! text format, checked by Prometheus' own linter (`promtool check
//! metrics`, Debian's prometheus package) and against the node's state.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::Spore;
use serde_json::json;

#[test]
fn metrics_are_valid_prometheus_text_and_say_what_the_services_do() {
    let spore = Spore::start(&[
        (
            "flaky",
            "[service]\nname = \"flaky\"\nexec = \"/bin/sh -c 'exit 3'\"\n".to_string(),
        ),
        (
            "web",
            "[service]\nname = \"web\"\nexec = \"sleep 1000\"\n".to_string(),
        ),
    ]);
    spore.wait_state("web", "ready");
    spore.wait_for(
        "flaky to restart",
        std::time::Duration::from_secs(10),
        |s| {
            s.call("service.status", json!({ "name": "flaky" }))
                .unwrap()["restarts"]
                .as_u64()
                .unwrap_or(0)
                >= 1
        },
    );
    let figures = spore.call("node.metrics", json!({})).unwrap();
    let flaky = figures["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "flaky")
        .unwrap();
    assert_eq!(flaky["ready"], false, "{figures}");
    assert_eq!(flaky["last_exit_code"], 3, "{figures}");
    assert!(
        figures["start_time_s"].as_u64().unwrap() > 1_600_000_000,
        "{figures}"
    );

    let out = Command::new(common::spore_bin())
        .args(["--socket", spore.socket.to_str().unwrap(), "metrics"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert!(
        text.contains(&format!(
            "spore_service_ready{{node=\"{host}\",service=\"web\"}} 1\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "spore_service_last_exit_code{{node=\"{host}\",service=\"flaky\"}} 3\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("# TYPE spore_service_restarts_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("spore_node_up{{node=\"{host}\"}} 1\n")),
        "{text}"
    );

    // Prometheus' own linter reads it without a complaint.
    common::promtool_check(&text);
}
