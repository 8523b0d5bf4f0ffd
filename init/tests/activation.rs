//! Socket activation under `spore run`: a service with `[[sockets]]` is
//! not started at boot but by its first connection. A passed socket
//! reaches a real sd_listen_fds-style program (Python: it checks
//! `LISTEN_PID` against its own pid, `LISTEN_FDS`, `LISTEN_FDNAMES`, and
//! that fd 3 and 4 are listening sockets); a proxied one is joined to the
//! service's own port once it is ready; `idle_stop` stops the service
//! after a quiet spell and the next connection starts it again; a service
//! that dies at once is not started without end; a flood of connections
//! to an activated socket leaves the node answering and a newcomer served.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{connect_from, free_port, Spore};
use serde_json::json;

/// An sd_listen_fds-style server: the descriptors it was handed, checked
/// as libsystemd's sd_listen_fds checks them, then answers each
/// connection with what it found.
const LISTEN_FDS_PROGRAM: &str = r#"
import os, socket, sys
pid = int(os.environ["LISTEN_PID"])
count = int(os.environ["LISTEN_FDS"])
names = os.environ["LISTEN_FDNAMES"].split(":")
assert pid == os.getpid(), ("LISTEN_PID", pid, os.getpid())
assert count == len(names) == 2, (count, names)
sockets = [socket.socket(fileno=3 + i) for i in range(count)]
for s in sockets:
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    assert s.getblocking()
assert sockets[0].family in (socket.AF_INET, socket.AF_INET6)
assert sockets[1].family == socket.AF_UNIX
print("handed", count, "sockets:", ":".join(names), flush=True)
import selectors
selector = selectors.DefaultSelector()
for s, name in zip(sockets, names):
    selector.register(s, selectors.EVENT_READ, name)
while True:
    for key, _ in selector.select():
        connection, _ = key.fileobj.accept()
        connection.sendall(f"pid={os.getpid()} on={key.data}\n".encode())
        connection.close()
"#;

/// A backend that listens on its port after a pause (as a real server
/// takes time to come up), then echoes what each connection sends.
const BACKEND_PROGRAM: &str = r#"
import socket, sys, time, threading
time.sleep(0.3)
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("backend up", flush=True)
def serve(c):
    with c:
        while True:
            data = c.recv(4096)
            if not data:
                return
            c.sendall(b"echo:" + data)
while True:
    c, _ = server.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn write_program(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Reads one line from `stream`.
fn line_of(stream: impl Read) -> String {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// The inode of the socket listening on 127.0.0.1:`port`
/// (/proc/net/tcp: state 0A is LISTEN).
fn listening_inode(port: u16) -> String {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
        .map(|fields| fields[9].to_owned())
        .unwrap_or_else(|| panic!("nothing listens on {local}"))
}

fn tcp(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

#[test]
fn a_passed_socket_starts_its_service_which_gets_it_as_sd_listen_fds_reads_it() {
    let programs = tempfile::tempdir().unwrap();
    let program = write_program(programs.path(), "listen_fds.py", LISTEN_FDS_PROGRAM);
    let port = free_port();
    let unix = programs.path().join("run/echo.sock");
    let spore = Spore::start(&[(
        "echo",
        format!(
            "[service]\nname = \"echo\"\nexec = \"python3 {program}\"\n\n[[sockets]]\nlisten = \"tcp:127.0.0.1:{port}\"\nname = \"http\"\n\n[[sockets]]\nlisten = \"unix:{}\"\nname = \"admin\"\n",
            unix.display()
        ),
    )]);
    // Bound, not started.
    spore.wait_for("the sockets", Duration::from_secs(10), |s| {
        s.stderr().matches("activation: echo: listening on").count() == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let status = spore
        .call("service.status", json!({ "name": "echo" }))
        .unwrap();
    assert!(
        status["pid"].is_null(),
        "started before any connection: {status}"
    );
    assert_eq!(
        status["sockets"][0]["listen"],
        format!("tcp:127.0.0.1:{port}")
    );
    assert_eq!(status["sockets"][1]["name"], "admin");
    assert_eq!(status["sockets"][1]["mode"], "pass");
    // The first connection starts it; it answers that connection itself.
    let answer = line_of(tcp(port));
    assert!(answer.starts_with("pid="), "{answer}");
    let pid: i64 = answer["pid=".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(answer.trim_end().ends_with("on=http"), "{answer}");
    let status = spore
        .call("service.status", json!({ "name": "echo" }))
        .unwrap();
    assert_eq!(status["pid"], json!(pid), "{status}");
    // The Unix socket reaches the same process.
    let mut over_unix = UnixStream::connect(&unix).unwrap();
    over_unix
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(line_of(&mut over_unix), format!("pid={pid} on=admin\n"));
    // Its own line, read from its output as it comes.
    spore.wait_for("its line", Duration::from_secs(10), |s| {
        s.stderr().contains("handed 2 sockets: http:admin")
    });
    let log = spore.stderr();
    assert!(
        log.contains("activation: echo: started by a connection on tcp:127.0.0.1:"),
        "{log}"
    );
    // Stopped, the next connection starts it again.
    spore
        .call("service.stop", json!({ "name": "echo" }))
        .unwrap();
    spore.wait_state("echo", "stopped");
    let again = line_of(tcp(port));
    assert!(
        again.starts_with("pid=") && !again.starts_with(&format!("pid={pid} ")),
        "{again}"
    );
}

/// spore with `web`, the [`BACKEND_PROGRAM`] behind a proxied socket
/// (`extra` lines added to the socket), once the socket is bound; where
/// the program lives (kept while the test runs) and the socket's port.
fn proxied(extra: &str) -> (tempfile::TempDir, Spore, u16) {
    let programs = tempfile::tempdir().unwrap();
    let program = write_program(programs.path(), "backend.py", BACKEND_PROGRAM);
    let (front, back) = (free_port(), free_port());
    let spore = Spore::start(&[(
        "web",
        format!(
            "[service]\nname = \"web\"\nexec = \"python3 {program} {back}\"\n\n[[sockets]]\nlisten = \"tcp:127.0.0.1:{front}\"\nmode = \"proxy\"\nbackend = \"tcp:127.0.0.1:{back}\"\n{extra}"
        ),
    )]);
    spore.wait_for("the socket", Duration::from_secs(10), |s| {
        s.stderr().contains("activation: web: listening on")
    });
    (programs, spore, front)
}

#[test]
fn a_deploy_on_an_address_another_service_listens_on_is_refused_and_changes_nothing() {
    let (_programs, spore, front) = proxied("");
    let error = spore
        .call(
            "service.deploy",
            json!({
                "toml": format!("[service]\nname = \"other\"\nexec = \"sleep 1000\"\n\n[[sockets]]\nlisten = \"tcp:127.0.0.1:{front}\"\n"),
                "start": true,
            }),
        )
        .unwrap_err();
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "tcp:127.0.0.1:{front} is service `web`'s already; two services cannot listen on one address"
        )),
        "{error}"
    );
    let listed = spore.call("service.list", json!({})).unwrap();
    assert!(!listed.to_string().contains("\"other\""), "{listed}");
    // web's socket still answers.
    let mut stream = tcp(front);
    stream.write_all(b"still\n").unwrap();
    assert_eq!(line_of(&mut stream), "echo:still\n");
}

#[test]
fn a_proxied_socket_waits_for_its_service_and_idle_stop_stops_it() {
    let (_programs, spore, front) = proxied("idle_stop = \"1500ms\"\n");
    // Not started until a connection comes; then served through it.
    assert_eq!(spore.state("web"), "inactive");
    let mut stream = tcp(front);
    stream.write_all(b"first\n").unwrap();
    assert_eq!(line_of(&mut stream), "echo:first\n");
    drop(stream);
    let started = Instant::now();
    spore.wait_for("web to stop when idle", Duration::from_secs(20), |s| {
        s.state("web") == "stopped"
    });
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(spore
        .stderr()
        .contains("activation: web: no connection for 1500 ms; stopping it (idle_stop)"));
    // A connection starts it again and is answered through it, both ways.
    let mut stream = tcp(front);
    stream.write_all(b"hello\n").unwrap();
    assert_eq!(line_of(&mut stream), "echo:hello\n");
    // An open connection keeps it up past idle_stop.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(spore.state("web"), "ready");
    stream.write_all(b"still here\n").unwrap();
    assert_eq!(line_of(&mut stream), "echo:still here\n");
    drop(stream);
    spore.wait_for(
        "web to stop once the last connection closed",
        Duration::from_secs(20),
        |s| s.state("web") == "stopped",
    );
}

#[test]
fn a_service_that_dies_at_once_is_not_started_without_end() {
    let port = free_port();
    let spore = Spore::start(&[(
        "dies",
        format!(
            "[service]\nname = \"dies\"\nexec = \"/bin/sh -c 'exit 0'\"\n\n[[sockets]]\nlisten = \"tcp:127.0.0.1:{port}\"\n\n[lifecycle]\nrestart = \"never\"\n"
        ),
    )]);
    spore.wait_for("the socket", Duration::from_secs(10), |_| {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // The connection is never accepted: it stays waiting, and each run
    // of the service leaves it there.
    spore.wait_for("the trigger limit", Duration::from_secs(30), |s| {
        s.stderr()
            .contains("activation: dies: 20 starts by connections within 10 s")
    });
    let log = spore.stderr();
    let starts = log
        .matches("activation: dies: started by a connection")
        .count();
    assert_eq!(starts, 20, "{log}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        spore
            .stderr()
            .matches("activation: dies: started by a connection")
            .count(),
        20
    );
    // Started by hand, it is watched again.
    spore
        .call("service.start", json!({ "name": "dies" }))
        .unwrap();
    spore.wait_for("activation again", Duration::from_secs(30), |s| {
        s.stderr()
            .matches("activation: dies: started by a connection")
            .count()
            > 20
    });
}

#[test]
fn a_flood_on_an_activated_socket_leaves_the_node_answering_and_a_newcomer_served() {
    let (_programs, spore, front) = proxied("");
    let to: std::net::SocketAddr = format!("127.0.0.1:{front}").parse().unwrap();
    // 16 sources hold as many connections as they can, renewed as spore
    // sheds them.
    let flood = common::Flood::start(to, 2, 16, 2000, Duration::from_micros(200));
    std::thread::sleep(Duration::from_secs(2));
    // The node answers its control socket throughout.
    for _ in 0..20 {
        let started = Instant::now();
        spore.call("node.info", json!({})).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(50));
    }
    // A newcomer from its own address is served.
    let newcomer = connect_from(std::net::Ipv4Addr::new(127, 0, 3, 1), to).unwrap();
    newcomer
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut newcomer = newcomer;
    newcomer.write_all(b"let me in\n").unwrap();
    assert_eq!(line_of(&mut newcomer), "echo:let me in\n");
    let opened = flood.stop();
    assert!(opened > 1000, "the flood opened {opened} connections");
    // Refusals are counted into summaries, never a line each.
    let log = spore.stderr();
    assert!(log.contains("refused over its bounds"), "{log}");
    assert!(log.matches("refused over its bounds").count() < 10, "{log}");
}

#[test]
fn a_live_reexec_hands_the_sockets_on_without_closing_them() {
    let programs = tempfile::tempdir().unwrap();
    let listen_fds = write_program(programs.path(), "listen_fds.py", LISTEN_FDS_PROGRAM);
    let backend = write_program(programs.path(), "backend.py", BACKEND_PROGRAM);
    let (passed, front, back) = (free_port(), free_port(), free_port());
    let unix = programs.path().join("echo.sock");
    let spore = Spore::start(&[
        (
            "echo",
            format!(
                "[service]\nname = \"echo\"\nexec = \"python3 {listen_fds}\"\n\n[[sockets]]\nlisten = \"tcp:127.0.0.1:{passed}\"\nname = \"http\"\n\n[[sockets]]\nlisten = \"unix:{}\"\nname = \"admin\"\n",
                unix.display()
            ),
        ),
        (
            "web",
            format!(
                "[service]\nname = \"web\"\nexec = \"python3 {backend} {back}\"\n\n[[sockets]]\nlisten = \"tcp:127.0.0.1:{front}\"\nmode = \"proxy\"\nbackend = \"tcp:127.0.0.1:{back}\"\n"
            ),
        ),
    ]);
    spore.wait_for("the sockets", Duration::from_secs(10), |s| {
        s.stderr()
            .lines()
            .filter(|l| l.contains("activation: ") && l.contains(": listening on"))
            .count()
            == 3
    });
    let answer = line_of(tcp(passed));
    let pid = answer.split(' ').next().unwrap().to_owned();
    // The proxied socket, as the kernel knows it (its inode), and a
    // connection served through it.
    let socket_before = listening_inode(front);
    let mut stream = tcp(front);
    stream.write_all(b"before\n").unwrap();
    assert_eq!(line_of(&mut stream), "echo:before\n");
    drop(stream);
    let answer = spore
        .call("node.reexec", json!({ "path": common::spore_bin() }))
        .unwrap();
    assert_eq!(answer["accepted"], true, "{answer}");
    spore.wait_for("the new binary", Duration::from_secs(20), |s| {
        s.try_call("node.info", json!({}))
            .is_some_and(|info| info["reexec"]["generation"] == 1)
    });
    // The passed socket is the same one: the service that holds it
    // answers, and was not started again.
    assert_eq!(line_of(tcp(passed)), format!("{pid} on=http\n"));
    // The proxied socket was never closed: the same socket listens, and
    // the new binary serves it.
    assert_eq!(listening_inode(front), socket_before);
    let mut stream = tcp(front);
    stream.write_all(b"after\n").unwrap();
    assert_eq!(line_of(&mut stream), "echo:after\n");
    let log = spore.stderr();
    assert!(
        !log.lines()
            .any(|l| l.contains("activation: ") && l.contains("cannot listen")),
        "{log}"
    );
    assert_eq!(
        log.matches("activation: echo: started by a connection")
            .count(),
        1,
        "{log}"
    );
}
