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

/// The signed RPC's refusals since spore started, by reason, as a counter:
/// garbage instead of a handshake and a stranger's key show, each counted
/// once per connection, and the text still passes promtool.
#[test]
fn rpc_refusals_are_counted_by_reason() {
    use std::io::Write;
    let fleet = common::fleet::node();
    for _ in 0..7 {
        let mut stream = std::net::TcpStream::connect(&fleet.address).unwrap();
        let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut sink);
    }
    for _ in 0..3 {
        let out = fleet.sporectl("stranger", &["info"]);
        assert!(!out.status.success());
    }
    let count = |reason: &str| -> u64 {
        let info = fleet.spore.call("node.info", json!({})).unwrap();
        info["rpc"]["refusals"][reason].as_u64().unwrap_or(0)
    };
    fleet.spore.wait_for(
        "the refusals counted",
        std::time::Duration::from_secs(10),
        |_| count("malformed_handshake") + count("broken_frame") >= 7 && count("refused_key") >= 3,
    );
    let out = fleet.sporectl("admin", &["metrics"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("# TYPE spore_rpc_refusals_total counter\n"),
        "{text}"
    );
    let sample = |reason: &str| -> u64 {
        text.lines()
            .find(|l| {
                l.starts_with("spore_rpc_refusals_total{")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(sample("refused_key"), count("refused_key"), "{text}");
    assert!(sample("refused_key") >= 3, "{text}");
    assert!(
        sample("malformed_handshake") + sample("broken_frame") >= 7,
        "{text}"
    );
    common::promtool_check(&text);
}
