//! PID 1 never waits on I/O it does not control: a console nobody reads and
//! services that print without pause must not stall reaping, the control
//! socket or the stop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{signal, Spore};
use serde_json::{json, Value};

/// A pipe: (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors from pipe2, owned once each.
    unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            std::fs::File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// One control-socket call answered within `limit`, or an error saying what
/// happened instead.
fn call_within(socket: &std::path::Path, method: &str, limit: Duration) -> Result<Value, String> {
    let start = Instant::now();
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method });
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("no answer within {limit:?}: {e}"))?;
    if start.elapsed() > limit {
        return Err(format!("answered after {:?}", start.elapsed()));
    }
    serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))
}

#[test]
fn console_nobody_reads_does_not_stall_status_or_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("etc/services");
    std::fs::create_dir_all(&services).unwrap();
    for n in 0..3 {
        std::fs::write(
            services.join(format!("chatty{n}.toml")),
            format!(
                "[service]\nname = \"chatty{n}\"\nexec = [\"yes\", \"chatty line {n}\"]\n\
                 [lifecycle]\nstop_timeout_ms = 3000\n"
            ),
        )
        .unwrap();
    }
    // spore's stderr (its console) is a pipe that nobody reads: the first
    // 64 KiB fill it and every later write would block.
    let (console_read, console_write) = pipe();
    let spore = Spore::start_with_console(dir, Stdio::from(OwnedFd::from(console_write)));
    let socket = spore.socket.clone();
    // Let the services fill every buffer there is.
    std::thread::sleep(Duration::from_secs(2));
    for attempt in 0..5 {
        let answer = call_within(&socket, "service.list", Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("status call {attempt} with a full console: {e}"));
        let list = answer["result"].as_array().expect("a list");
        assert_eq!(list.len(), 3, "{answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Now read the console for a while: spore says how much it dropped.
    let reader = std::thread::spawn(move || {
        let mut console = console_read;
        let mut seen = Vec::new();
        let mut chunk = [0u8; 65536];
        let begin = Instant::now();
        while begin.elapsed() < Duration::from_secs(3) {
            match console.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&chunk[..n]);
                    if seen.len() > 64 << 20 {
                        seen.drain(..32 << 20);
                    }
                }
            }
            let text = String::from_utf8_lossy(&seen);
            if text.contains("lines dropped") {
                return (text.into_owned(), console);
            }
        }
        (String::from_utf8_lossy(&seen).into_owned(), console)
    });
    let (console, unread) = reader.join().unwrap();
    let dropped = console
        .lines()
        .find(|l| l.contains("lines dropped"))
        .unwrap_or_else(|| panic!("no drop summary in {} bytes of console", console.len()));
    assert!(dropped.contains("spore: "), "{dropped}");
    // Stop reading again; SIGTERM stops the node within the services' stop
    // timeout while the console is full.
    std::thread::sleep(Duration::from_secs(1));
    signal(spore.pid(), libc::SIGTERM);
    let stop = Instant::now();
    let mut spore = spore;
    let status = loop {
        if let Some(status) = spore.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(3 + 5),
            "spore did not stop within the stop timeout while its console was full"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "spore exited with {status}");
    drop(unread);
}
