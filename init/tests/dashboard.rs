//! `sporectl dashboard` in a real headless Chromium: three real `spore
//! run` nodes at a real beacon, one with a service that keeps failing.
//! The page lists the nodes and shows the failing service first; a
//! restart clicked on the page (and confirmed) restarts the service on
//! its node; the page's requests go to no host but the dashboard's own;
//! a wrong token or Host is refused; a followed service's lines arrive as
//! they are written. A screenshot is kept as the test's artefact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::beacon::*;
use common::browser::Browser;
use common::{sporectl_bin, Killed, Spore};
use serde_json::{json, Value};

/// One request on loopback with the given extra header lines; status and
/// the whole answer.
fn request(port: u16, method: &str, path: &str, headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    (status, answer)
}

/// A running `sporectl dashboard` and what its first line said.
struct Served {
    _process: Killed,
    url: String,
    port: u16,
    token: String,
}

/// Starts `sporectl ARGS --identity OPERATOR dashboard`, its stderr into
/// `log`, and reads the URL it prints.
fn dashboard(args: &[&str], operator: &std::path::Path, log: std::fs::File) -> Served {
    let mut process = Command::new(sporectl_bin())
        .args(args)
        .arg("--identity")
        .arg(operator)
        .arg("dashboard")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(process.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let port = url
        .split('/')
        .nth(2)
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let token = url.split('/').nth(3).unwrap().to_owned();
    Served {
        _process: Killed(process),
        url,
        port,
        token,
    }
}

fn pid_of(node: &Spore, service: &str) -> Value {
    node.call("service.status", json!({ "name": service }))
        .unwrap()["pid"]
        .clone()
}

#[test]
fn the_dashboard_shows_the_fleet_and_restarts_a_service_from_the_page() {
    let work = tempfile::tempdir().unwrap();
    let op = operator(work.path());
    let beacon = Beacon::start(free_port(), &work.path().join("beacon"), &["--open"]);
    let (fleet, rpc_ports): (Vec<Spore>, Vec<u16>) = (1..=3)
        .map(|i| node(&format!("node-0{i}"), beacon.port, &op, 0))
        .unzip();
    fleet[0].wait_for("three registrations", Duration::from_secs(60), |_| {
        nodes(beacon.port).len() == 3
    });
    // node-01 runs web, which writes a line now and then; node-02 has
    // flaky, which fails every time it starts.
    std::fs::write(
        fleet[0].path("etc/services/web.toml"),
        "[service]\nname = \"web\"\nexec = \"/bin/sh -c 'echo web started; while sleep 0.3; do echo web tick; done'\"\n",
    )
    .unwrap();
    fleet[0].call("node.reload", json!({})).unwrap();
    fleet[0].wait_state("web", "ready");
    std::fs::write(
        fleet[1].path("etc/services/flaky.toml"),
        "[service]\nname = \"flaky\"\nexec = \"/bin/sh -c 'echo flaky cannot open its database; exit 3'\"\n",
    )
    .unwrap();
    fleet[1].call("node.reload", json!({})).unwrap();
    fleet[1].wait_for("flaky in trouble", Duration::from_secs(30), |n| {
        matches!(n.state("flaky").as_str(), "backoff" | "failed")
    });

    let served = dashboard(
        &["--beacon", &beacon.url()],
        &op,
        std::fs::File::create(work.path().join("dashboard.log")).unwrap(),
    );
    let (url, port, token) = (served.url.clone(), served.port, served.token.clone());
    let origin = format!("http://127.0.0.1:{port}");
    assert_eq!(token.len(), 32, "{url}");

    // Without the token, or with another, nothing is said.
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    assert_eq!(request(port, "GET", "/", &host).0, 403);
    let wrong: String = token.chars().rev().collect();
    let (status, answer) = request(port, "GET", &format!("/{wrong}/"), &host);
    assert_eq!(status, 403);
    assert!(!answer.contains("node-01"), "{answer}");
    // A page whose name was rebound to 127.0.0.1 sends its own Host.
    let (status, _) = request(
        port,
        "GET",
        &format!("/{token}/"),
        "Host: evil.example:80\r\n",
    );
    assert_eq!(status, 403);
    // A change posted from another site is refused, and nothing restarts.
    let web_pid = pid_of(&fleet[0], "web");
    let (status, _) = request(
        port,
        "POST",
        &format!("/{token}/node/node-01/restart/web"),
        &format!("{host}Origin: http://evil.example\r\n"),
    );
    assert_eq!(status, 403);
    assert_eq!(pid_of(&fleet[0], "web"), web_pid);

    // The first screen, in a real browser.
    let mut browser = Browser::start(&work.path().join("chromium"));
    browser.open(&url);
    let nodes_listed = browser.eval(
        "[...document.querySelectorAll('#nodes tbody tr td:first-child')].map(td => td.innerText)",
    );
    assert_eq!(nodes_listed, json!(["node-02", "node-01", "node-03"]));
    let trouble = browser.eval("document.querySelector('#trouble').innerText");
    let trouble = trouble.as_str().unwrap();
    assert!(
        trouble.contains("node-02") && trouble.contains("flaky"),
        "{trouble}"
    );
    let first_service = browser
        .eval("[...document.querySelector('#services tbody tr').cells].map(c => c.innerText)");
    assert_eq!(first_service[0], "node-02", "{first_service}");
    assert_eq!(first_service[1], "flaky", "{first_service}");
    assert_eq!(browser.eval("document.scripts.length"), json!(0));
    let artefact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&artefact);
    eprintln!("screenshot: {}", artefact.display());

    // node-02's page says why flaky is not running, with its last line.
    browser.click("#nodes a[href$='/node/node-02']");
    let text = browser.text();
    assert!(text.contains("flaky cannot open its database"), "{text}");

    // On node-01's page: restart web, confirm, and it is restarted on
    // the node.
    browser.open(&format!("{url}node/node-01"));
    browser.click("#service-web form[action$='/restart/web'] button");
    let text = browser.text();
    assert!(text.contains("restart web on node-01?"), "{text}");
    browser.click("#confirm");
    let note =
        browser.eval("document.querySelector('#note')?.innerText ?? document.body.innerText");
    assert!(
        note.as_str()
            .unwrap()
            .starts_with("restart web on node-01:"),
        "{note}"
    );
    let restarted = pid_of(&fleet[0], "web");
    assert_ne!(restarted, web_pid, "web was not restarted");
    assert!(restarted.is_u64());

    // Every request went to the dashboard itself; each got an answer.
    let requests = browser.requests();
    assert!(requests.len() >= 5, "{requests:?}");
    for request in &requests {
        assert!(
            request.starts_with(&format!("{origin}/")),
            "a request left the dashboard: {request}"
        );
    }
    for (url, status) in browser.responses() {
        assert!(
            status < 400 || url.ends_with("/favicon.ico"),
            "{url}: {status}"
        );
    }
    drop(browser);

    // Following web: the backlog, then lines written after the page opened.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /{token}/node/node-01/follow/web HTTP/1.1\r\n{host}\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut chunk = [0u8; 4096];
    let mut read_some = |stream: &mut TcpStream, seen: &mut String| -> bool {
        match stream.read(&mut chunk) {
            Ok(0) => panic!("the follow ended: {seen}"),
            Ok(n) => {
                seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
                true
            }
            Err(_) => false,
        }
    };
    while !seen.contains("web tick") {
        assert!(read_some(&mut stream, &mut seen), "no backlog: {seen}");
    }
    assert!(seen.starts_with("HTTP/1.1 200 OK"), "{seen}");
    // The backlog was written at once: what is left of it comes now.
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while read_some(&mut stream, &mut seen) {}
    let started = seen.matches("web started").count();
    // A line written after the page opened arrives on it.
    fleet[0]
        .call("service.restart", json!({ "name": "web" }))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.matches("web started").count() == started {
        assert!(Instant::now() < deadline, "no new line: {seen}");
        read_some(&mut stream, &mut seen);
    }
    drop(stream);

    // One node's dashboard (--node): the same page, its services only.
    let address = format!("[::1]:{}", rpc_ports[0]);
    let one = dashboard(
        &[
            "--node",
            &address,
            "--node-key",
            &node_public_key(&fleet[0]),
        ],
        &op,
        std::fs::File::create(work.path().join("one.log")).unwrap(),
    );
    let (one_port, one_path) = (one.port, format!("/{}/", one.token));
    let (status, page) = request(
        one_port,
        "GET",
        &one_path,
        &format!("Host: 127.0.0.1:{one_port}\r\n"),
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(">web<"), "{page}");
    assert!(!page.contains("flaky"), "{page}");
    assert!(page.contains("/node/%5B%3A%3A1%5D%3A"), "{page}");

    // What the dashboard did is in the operator's terminal.
    let log = std::fs::read_to_string(work.path().join("dashboard.log")).unwrap();
    assert!(log.contains("dashboard: restart web on node-01:"), "{log}");
}
