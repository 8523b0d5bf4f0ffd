//! README's first session, typed as a newcomer types it: its blocks are read
//! out of README.md and typed into an interactive shell on a real
//! pseudo-terminal, against a real `spore run` node and a real beacon on
//! loopback. Only the node's address and the beacon's URL are replaced.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::beacon::{free_port, node, nodes, operator, Beacon};
use common::pty::OnPty;
use common::{spore_bin, sporectl_bin};

/// Where README's first session starts.
const LEAD: &str = "A first session with a node at 10.0.2.15";
/// README's placeholders, and the beacon's.
const NODE_PLACEHOLDER: &str = "10.0.2.15:9999";
const BEACON_PLACEHOLDER: &str = "https://beacon.example:8443";

/// The first session's three pieces: first contact, the pasted block, the
/// follow.
struct Session {
    first_contact: String,
    pasted: String,
    follow: String,
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

/// The first ```sh block after the text `lead` in README.
fn block_after(lead: &str) -> String {
    let readme = readme();
    let from = readme
        .find(lead)
        .unwrap_or_else(|| panic!("README no longer has {lead:?}"));
    readme[from..]
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(code, _)| code.to_owned())
        .unwrap_or_else(|| panic!("no sh block after {lead:?}"))
}

fn readme_session() -> Session {
    let readme = readme();
    let from = readme
        .find(LEAD)
        .unwrap_or_else(|| panic!("README no longer has {LEAD:?}"));
    let rest = &readme[from..];
    let mut blocks = rest.split("```sh\n").skip(1).map(|block| {
        block
            .split_once("```")
            .map(|(code, _)| code.to_owned())
            .unwrap()
    });
    let first_contact = blocks.next().unwrap();
    let pasted = blocks.next().unwrap();
    let after = &rest[rest.find(&pasted).unwrap() + pasted.len()..];
    let follow = after
        .split_once("to watch a service: `")
        .and_then(|(_, tail)| tail.split_once('`'))
        .map(|(command, _)| command.to_owned())
        .expect("README says how to watch a service");
    Session {
        first_contact,
        pasted,
        follow,
    }
}

/// Waits until the terminal shows `needle` at least `count` times.
fn wait_shown(pty: &OnPty, needle: &str, count: usize, limit: Duration) {
    let start = Instant::now();
    while pty.shown().matches(needle).count() < count {
        assert!(
            start.elapsed() < limit,
            "the terminal never showed {needle:?} {count}×; it shows:\n{}",
            pty.shown()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A home directory whose `~/.ssh/id_ed25519` is the operator's key, as
/// `ssh-keygen -t ed25519` leaves it.
fn home_with_key(home: &Path, key: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::copy(key, ssh.join("id_ed25519")).unwrap();
    std::fs::copy(key.with_extension("pub"), ssh.join("id_ed25519.pub")).unwrap();
    std::fs::set_permissions(
        ssh.join("id_ed25519"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// An interactive bash on a fresh terminal in `cwd`, this build's spore
/// and sporectl first on its PATH, `home` its HOME.
fn shell_on_pty(cwd: &Path, home: &Path) -> OnPty {
    let bin = Path::new(spore_bin()).parent().unwrap().to_owned();
    assert_eq!(sporectl_bin().parent().unwrap(), bin);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut shell = Command::new("bash");
    shell
        .args(["--norc", "--noprofile", "-i"])
        .current_dir(cwd)
        .env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("TERM", "dumb")
        .env("PS1", "$ ")
        .env("PW", "correct horse battery staple");
    OnPty::spawn(&mut shell)
}

#[test]
fn readmes_local_session_works_as_pasted() {
    let block = block_after("On your own machine, pasted as is");
    let work = tempfile::tempdir().unwrap();
    let mut pty = shell_on_pty(work.path(), work.path());
    pty.type_in(&block);
    pty.type_in("wait; echo local-$((40+2))-$?\n");
    wait_shown(&pty, "local-42-", 1, Duration::from_secs(60));
    let shown = pty.shown();
    for expected in [
        "hello (daemon",   // status
        "ready (pid",      // status, logs
        "hello: stopping", // kill %1: an orderly stop
        "all services stopped\r\n",
        "spore: exiting\r\n",
        "local-42-0", // spore exited 0
    ] {
        assert!(shown.contains(expected), "{expected:?} in:\n{shown}");
    }
    assert!(!shown.contains("command not found"), "{shown}");
    assert!(!shown.contains("error:"), "{shown}");
    assert!(work.path().join("try/state").is_dir());
    pty.type_in("exit\n");
    assert!(pty.wait_exit().success());
}

#[test]
fn readmes_artifact_commands_work_as_pasted() {
    let block = block_after("### Deploying software");
    let work = tempfile::tempdir().unwrap();
    let op = operator(work.path());
    let beacon = Beacon::start(free_port(), &work.path().join("beacon"), &["--open"]);
    let (spore, rpc_port) = node("artifact-node", beacon.port, &op, 0);
    spore.wait_for("the registration", Duration::from_secs(20), |_| {
        nodes(beacon.port).len() == 1
    });
    let home = work.path().join("home");
    home_with_key(&home, &op);
    let cwd = work.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    // The file README sends, and its digest where README writes `9f2c…`.
    std::fs::write(cwd.join("mycelium"), "#!/bin/sh\nexec sleep 1000\n").unwrap();
    let out = Command::new("sha256sum")
        .arg(cwd.join("mycelium"))
        .output()
        .unwrap();
    let digest = String::from_utf8(out.stdout).unwrap()[..64].to_owned();
    let mut pty = shell_on_pty(&cwd, &home);
    pty.type_in(&format!(
        "export SPORECTL_NODE=[::1]:{rpc_port} SPORECTL_KNOWN_NODES=$HOME/known\nsporectl --accept-new info >/dev/null 2>&1\n"
    ));
    pty.type_in(&block.replace("9f2c…", &digest));
    pty.type_in("echo pasted-$((40+2))\n");
    wait_shown(&pty, "pasted-42", 1, Duration::from_secs(60));
    let shown = pty.shown();
    assert!(
        shown.contains(&format!("./mycelium: sha256:{digest} (26 bytes) stored")),
        "{shown}"
    );
    assert!(shown.contains(&format!("sha256:{digest}")), "{shown}");
    assert!(
        shown.contains(&format!("sha256:{digest}: removed")),
        "{shown}"
    );
    assert!(!shown.contains("sporectl: "), "{shown}");
    pty.type_in("exit\n");
    assert!(pty.wait_exit().success());
}

#[test]
fn readmes_first_session_works_as_typed() {
    let session = readme_session();
    let work = tempfile::tempdir().unwrap();
    let op = operator(work.path());
    let beacon = Beacon::start(free_port(), &work.path().join("beacon"), &["--open"]);
    let (mut spore, rpc_port) = node("readme-node", beacon.port, &op, 0);
    spore.wait_for("the registration", Duration::from_secs(20), |_| {
        nodes(beacon.port).len() == 1
    });
    // A node that has restarted once, so `logs --boot -1` has a start to
    // read.
    spore.restart();
    spore.wait_for("call-home again", Duration::from_secs(20), |spore| {
        spore.state("call-home").starts_with("exited")
    });
    let home = work.path().join("home");
    home_with_key(&home, &op);
    let cwd = work.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let place = |text: &str| {
        text.replace(NODE_PLACEHOLDER, &format!("[::1]:{rpc_port}"))
            .replace(BEACON_PLACEHOLDER, &beacon.url())
    };

    let mut pty = shell_on_pty(&cwd, &home);
    let minute = Duration::from_secs(60);

    // First contact: the fingerprint and the question, as ssh asks it.
    pty.type_in(&place(&session.first_contact));
    wait_shown(&pty, "(yes/no)? ", 1, minute);
    let fingerprint = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(spore.path("state/node_key"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8(fingerprint.stdout).unwrap();
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_owned();
    assert!(pty.shown().contains(&fingerprint), "{}", pty.shown());
    pty.type_in("yes\n");
    wait_shown(&pty, "node key: ", 1, minute);
    let known = std::fs::read_to_string(home.join(".config/spore/known_nodes")).unwrap();
    assert!(known.contains(&format!("[::1]:{rpc_port}")), "{known}");

    // The pasted block, then a marker that only its output can show.
    let before = pty.shown().len();
    pty.type_in(&place(&session.pasted));
    pty.type_in("echo pasted-$((40+2))\n");
    wait_shown(&pty, "pasted-42", 1, Duration::from_secs(120));
    let shown = pty.shown()[before..].to_owned();
    for expected in [
        "web: ready (pid",                        // deploy
        "web (daemon",                            // status
        "fine",                                   // is-failed || echo fine
        "db-password",                            // secret set
        "readme-node",                            // nodes
        "registered readme-node", // logs --boot -1: call-home's line of the start before
        "every node is up and no service failed", // --all status --failed
    ] {
        assert!(shown.contains(expected), "{expected:?} in:\n{shown}");
    }
    assert!(!shown.contains("command not found"), "{shown}");
    assert!(!shown.contains("error:"), "a usage error:\n{shown}");
    // Every sporectl in the block answered: none reported a failure.
    assert!(
        !shown.lines().any(|line| line.starts_with("sporectl: ")),
        "{shown}"
    );
    let secret = std::fs::read(spore.path("state/secrets/db-password")).unwrap();
    assert_eq!(secret, b"correct horse battery staple");

    // Following, then Ctrl-C, and the shell is there for the next command.
    let before = pty.shown().len();
    pty.type_in(&format!("{}\n", place(&session.follow)));
    let serving = pty.shown().matches("Serving HTTP").count();
    wait_shown(&pty, "Serving HTTP", serving + 1, minute);
    // Still following: the shell has not come back.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!pty.shown()[before..].contains("\n$ "), "{}", pty.shown());
    pty.type_in("\x03");
    pty.type_in("echo followed-$((40+2))\n");
    wait_shown(&pty, "followed-42", 1, minute);
    pty.type_in("exit\n");
    assert!(pty.wait_exit().success());
}
