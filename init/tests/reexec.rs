//! Live re-exec (`node.reexec`) under `spore run`: spore execs a binary in
//! place and every service keeps its process and its output; a binary that
//! is not a spore is refused before anything happens, and one that cannot
//! take the state up hands it back to the old binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{spore_bin, Spore};
use serde_json::{json, Value};

/// 18 quiet daemons, a counter printing every 10 ms, and a service that
/// fails and waits 6 s in backoff before its restart, writing the time of
/// each start (ms) to `starts`.
fn node() -> Spore {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let mut services: Vec<(String, String)> = (0..18)
        .map(|i| {
            let name = format!("quiet-{i:02}");
            let text = format!("[service]\nname = \"{name}\"\nexec = \"sleep 1000\"\n");
            (name, text)
        })
        .collect();
    services.push((
        "counter".into(),
        "[service]\nname = \"counter\"\nexec = \"/bin/sh -c 'i=0; while :; do echo $i; i=$((i+1)); sleep 0.01; done'\"\n".into(),
    ));
    services.push((
        "crash".into(),
        format!(
            "[service]\nname = \"crash\"\nexec = \"/bin/sh -c 'date +%s%3N >> {}; exit 1'\"\n[lifecycle]\nrestart = \"always\"\nrestart_delay_ms = 6000\nrestart_delay_max_ms = 60000\n",
            starts.display()
        ),
    ));
    let services_dir = dir.path().join("etc/services");
    std::fs::create_dir_all(&services_dir).unwrap();
    for (name, text) in &services {
        std::fs::write(services_dir.join(format!("{name}.toml")), text).unwrap();
    }
    Spore::start_in(dir)
}

/// Every service's pid, by name.
fn pids(spore: &Spore) -> BTreeMap<String, i64> {
    spore
        .call("service.list", json!({}))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["pid"].as_i64()?)))
        .collect()
}

/// The pids of every service but `crash` (which restarts by design).
fn steady(mut pids: BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    pids.remove("crash");
    pids
}

/// The counter's numbers as its output holds them, in order.
fn counted(spore: &Spore) -> Vec<u64> {
    let logs = spore
        .call("service.logs", json!({ "name": "counter", "lines": 1000 }))
        .unwrap();
    logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["stream"] == "stdout")
        .map(|l| l["text"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// A call that may meet spore between two binaries: None then.
fn try_call(spore: &Spore, method: &str, params: Value) -> Option<Value> {
    spore.try_call(method, params)
}

/// node.info's `reexec` once the new binary answers with one of
/// `generation`.
fn reexec_facts(spore: &Spore, generation: u64) -> Value {
    let facts = std::cell::RefCell::new(Value::Null);
    spore.wait_for(
        "the new binary to answer",
        Duration::from_secs(20),
        |s| match try_call(s, "node.info", json!({})) {
            Some(info) if info["reexec"]["generation"] == generation => {
                *facts.borrow_mut() = info["reexec"].clone();
                true
            }
            _ => false,
        },
    );
    facts.into_inner()
}

fn start_times(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_reexec_keeps_every_process_its_output_and_its_timers() {
    let spore = node();
    let starts = spore.path("starts");
    for i in 0..18 {
        spore.wait_state(&format!("quiet-{i:02}"), "ready");
    }
    spore.wait_for("the crash's first start", Duration::from_secs(10), |_| {
        start_times(&starts).len() == 1
    });
    let first_start = start_times(&starts)[0];
    spore.wait_for("100 lines of the counter", Duration::from_secs(20), |s| {
        counted(s).len() >= 100
    });
    let before = pids(&spore);
    assert_eq!(before.len(), 19, "{before:?}");
    // Half-way through the crash's 6 s backoff.
    let half_way = first_start + 3000;
    std::thread::sleep(Duration::from_millis(half_way.saturating_sub(now_ms())));
    assert_eq!(spore.state("crash"), "backoff");
    let answer = spore
        .call("node.reexec", json!({ "path": spore_bin() }))
        .unwrap();
    assert_eq!(answer["accepted"], true, "{answer}");
    assert_eq!(answer["version"], env!("CARGO_PKG_VERSION"), "{answer}");
    assert_eq!(answer["build_id"].as_str().unwrap().len(), 64, "{answer}");
    let facts = reexec_facts(&spore, 1);
    assert_eq!(facts["processes"], 19, "{facts}");
    assert_eq!(facts["pipes"], 38, "{facts}");
    assert_eq!(facts["went_back"], false, "{facts}");
    assert_eq!(facts["unknown"], json!([]), "{facts}");
    // The same spore process, the same services.
    let mut spore = spore;
    assert!(
        spore.child.try_wait().unwrap().is_none(),
        "{}",
        spore.stderr()
    );
    assert_eq!(pids(&spore), before);
    for name in before.keys() {
        assert_ne!(spore.state(name), "starting");
    }
    // Output kept flowing through the same pipes: every number once, in
    // order, across the exec.
    let at_exec = counted(&spore).last().copied().unwrap();
    spore.wait_for("100 more lines", Duration::from_secs(20), |s| {
        counted(s).last().copied().unwrap_or(0) >= at_exec + 100
    });
    let numbers = counted(&spore);
    let gaps: Vec<(u64, u64)> = numbers
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(gaps.is_empty(), "gaps or repeats {gaps:?} in {numbers:?}");
    assert!(numbers.first().unwrap() < &at_exec.saturating_sub(50));
    // The restart waiting in backoff came when it was due (6 s after the
    // exit), not 6 s after the exec, and not at once.
    spore.wait_for("the crash's restart", Duration::from_secs(15), |_| {
        start_times(&starts).len() >= 2
    });
    let waited = start_times(&starts)[1] - first_start;
    assert!(
        (5900..8500).contains(&waited),
        "the restart came {waited} ms after the first start\n{}",
        spore.stderr()
    );
    let log = spore.stderr();
    assert!(log.contains("re-exec: took up 20 service(s)"), "{log}");
    // A second re-exec works as the first: `spore reexec` on the node,
    // with no binary named, execs the one it runs (the spore on disk).
    let out = std::process::Command::new(spore_bin())
        .arg("--socket")
        .arg(&spore.socket)
        .arg("reexec")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("answered the check"),
        "{out:?}"
    );
    reexec_facts(&spore, 2);
    assert_eq!(steady(pids(&spore)), steady(before));
    // And the node still stops in order, as one spore.
    assert!(spore.terminate().success(), "{}", spore.stderr());
}

fn script(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[test]
fn a_binary_that_is_not_a_spore_is_refused_and_nothing_changes() {
    let spore = node();
    for i in 0..18 {
        spore.wait_state(&format!("quiet-{i:02}"), "ready");
    }
    let before = pids(&spore);
    let dir = spore.path("binaries");
    std::fs::create_dir_all(&dir).unwrap();
    let junk = script(&dir, "junk", "not a program at all\n");
    let silent = script(&dir, "silent", "#!/bin/sh\nexit 0\n");
    let liar = script(
        &dir,
        "liar",
        "#!/bin/sh\necho spore-handoff 999 9.9.9 abc\n",
    );
    let hangs = script(&dir, "hangs", "#!/bin/sh\nexec sleep 1000\n");
    let cases = [
        (junk.as_str(), "not an executable"),
        (silent.as_str(), "did not answer as a spore"),
        (liar.as_str(), "reads handoff format 999"),
        (
            hangs.as_str(),
            "did not answer the check: no answer within 5 s",
        ),
        ("/nonexistent/spore", "not on this node"),
        ("relative/spore", "an absolute path"),
    ];
    for (path, says) in cases {
        let started = Instant::now();
        let error = spore
            .call("node.reexec", json!({ "path": path }))
            .unwrap_err();
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{path}: {error}"
        );
        assert!(
            [-32016, -32602].contains(&error["code"].as_i64().unwrap()),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(15));
        // Still this spore, still these services.
        let info = spore.call("node.info", json!({})).unwrap();
        assert!(info["reexec"].is_null(), "{info}");
        assert_eq!(pids(&spore), before);
    }
    let error = spore.call("node.reexec", json!({})).unwrap_err();
    assert_eq!(error["code"], -32602, "{error}");
    // Nothing to go back to on a node that never re-exec'd; and one way
    // of naming the binary at a time.
    let error = spore
        .call("node.reexec", json!({ "previous": true }))
        .unwrap_err();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("has not re-exec'd"),
        "{error}"
    );
    let error = spore
        .call(
            "node.reexec",
            json!({ "previous": true, "path": spore_bin() }),
        )
        .unwrap_err();
    assert_eq!(error["code"], -32602, "{error}");
    let log = spore.stderr();
    assert!(log.contains("re-exec refused:"), "{log}");
    assert!(!log.contains("re-exec: handing"), "{log}");
}

#[test]
fn a_binary_that_cannot_take_the_state_up_hands_it_back() {
    let spore = node();
    for i in 0..18 {
        spore.wait_state(&format!("quiet-{i:02}"), "ready");
    }
    spore.wait_for("100 lines of the counter", Duration::from_secs(20), |s| {
        counted(s).len() >= 100
    });
    let before = pids(&spore);
    let dir = spore.path("binaries");
    std::fs::create_dir_all(&dir).unwrap();
    // A spore that answers the check but panics reading the state (the
    // debug build's fault point).
    let broken = script(
        &dir,
        "broken",
        &format!(
            "#!/bin/sh\nSPORE_FAULT=handoff exec {} \"$@\"\n",
            spore_bin()
        ),
    );
    spore
        .call("node.reexec", json!({ "path": broken }))
        .unwrap();
    let facts = reexec_facts(&spore, 1);
    assert_eq!(facts["went_back"], true, "{facts}");
    assert_eq!(facts["processes"], 19, "{facts}");
    assert_eq!(pids(&spore).len(), 19);
    assert_eq!(steady(pids(&spore)), steady(before));
    let at = counted(&spore).last().copied().unwrap();
    spore.wait_for("more lines", Duration::from_secs(20), |s| {
        counted(s).last().copied().unwrap_or(0) >= at + 50
    });
    let numbers = counted(&spore);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    let log = spore.stderr();
    assert!(log.contains("fault injected at handoff"), "{log}");
    assert!(
        log.contains("the handed state cannot be taken up (reading it panicked); going back to"),
        "{log}"
    );
}

/// A line as README shows it and as sporectl prints it, with the figures
/// (counts, times, the build) taken out.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut words = line.split(' ').peekable();
    while let Some(word) = words.next() {
        let word = if word.chars().all(|c| c.is_ascii_hexdigit() || c == ')') && word.len() >= 12 {
            "HEX"
        } else {
            word
        };
        // A run of digits, however long, reads as one N.
        let mut last_digit = false;
        for c in word.chars() {
            if c.is_ascii_digit() {
                if !last_digit {
                    out.push('N');
                }
                last_digit = true;
            } else {
                out.push(c);
                last_digit = false;
            }
        }
        if words.peek().is_some() {
            out.push(' ');
        }
    }
    out
}

/// Over the signed RPC, as README's "Live re-exec" shows it: `sporectl
/// update --spore` sends the binary as an artifact, the node execs it,
/// sporectl connects again and says what the new binary took up; a reader
/// may not, and the RPC port answers again.
#[test]
fn sporectl_update_spore_reexecs_a_node_over_the_signed_rpc() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme
        .split_once("### Live re-exec")
        .and_then(|(_, rest)| rest.split_once("```sh\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("README's live re-exec example");
    let command = block.lines().next().unwrap();
    let args: Vec<&str> = command
        .strip_prefix("sporectl --node 10.0.2.15:9999 ")
        .expect("README's command")
        .split(' ')
        .map(|arg| {
            if arg.ends_with("/spore") {
                spore_bin()
            } else {
                arg
            }
        })
        .collect();
    let shown: Vec<String> = block
        .lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix("# "))
        .map(shape)
        .collect();
    let fleet = common::fleet::node();
    let web = fleet.web_pid();
    let out = fleet.sporectl("reader", &args);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden")
            || String::from_utf8_lossy(&out.stderr).contains("admin"),
        "{out:?}"
    );
    let out = fleet.sporectl("admin", &args);
    assert!(out.status.success(), "{out:?}\n{}", fleet.spore.stderr());
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(shape)
        .collect();
    assert_eq!(printed, shown, "{out:?}");
    assert_eq!(fleet.web_pid(), web);
    // The same port, the same node key: a fresh session works.
    let out = fleet.sporectl("admin", &["--json", "info"]);
    assert!(out.status.success(), "{out:?}");
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["reexec"]["generation"], 1, "{info}");
    assert_eq!(info["reexec"]["processes"], 1, "{info}");
    assert_eq!(info["pid"], fleet.spore.pid(), "{info}");
    // --image and --spore are one or the other.
    let out = fleet.sporectl(
        "admin",
        &["update", "--spore", spore_bin(), "--image", spore_bin()],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// With `[update] keys` a binary must carry an `ssh-keygen -Y sign -n
/// spore-update` signature by one of them, as an update image must.
#[test]
fn a_node_with_update_keys_execs_only_a_signed_binary() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    common::keygen(&keys.join("release"), "release@test");
    common::keygen(&keys.join("other"), "other@test");
    let release = std::fs::read_to_string(keys.join("release.pub")).unwrap();
    std::fs::create_dir_all(dir.path().join("etc/services")).unwrap();
    std::fs::write(
        dir.path().join("etc/spore.toml"),
        format!("[update]\nkeys = [\"{}\"]\n", release.trim()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("etc/services/quiet.toml"),
        "[service]\nname = \"quiet\"\nexec = \"sleep 1000\"\n",
    )
    .unwrap();
    let binary = dir.path().join("spore-new");
    std::fs::copy(spore_bin(), &binary).unwrap();
    let spore = Spore::start_in(dir);
    spore.wait_state("quiet", "ready");
    let sign = |key: &str| {
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", "spore-update", "-f"])
            .arg(keys_of(&spore).join(key))
            .arg(&binary)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(format!("{}.sig", binary.display())).unwrap()
    };
    let path = binary.display().to_string();
    let error = spore
        .call("node.reexec", json!({ "path": path }))
        .unwrap_err();
    assert_eq!(error["code"], -32016, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("it is not signed"),
        "{error}"
    );
    let by_other = sign("other");
    let error = spore
        .call(
            "node.reexec",
            json!({ "path": path, "signature": by_other }),
        )
        .unwrap_err();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("not by one of this node's [update] keys"),
        "{error}"
    );
    std::fs::remove_file(format!("{}.sig", binary.display())).unwrap();
    let by_release = sign("release");
    let answer = spore
        .call(
            "node.reexec",
            json!({ "path": path, "signature": by_release }),
        )
        .unwrap();
    assert_eq!(answer["accepted"], true, "{answer}");
    let facts = reexec_facts(&spore, 1);
    assert_eq!(facts["processes"], 1, "{facts}");
}

fn keys_of(spore: &Spore) -> std::path::PathBuf {
    spore.path("keys")
}

/// Registrations name the build of the spore that runs (`build_id`), and
/// `sporectl nodes` shows it beside the version; after a re-exec into
/// another build the next heartbeat names that one.
#[test]
fn registrations_name_the_running_build_and_follow_a_reexec() {
    use common::beacon::{node, nodes, operator, sporectl, Beacon};
    let work = tempfile::tempdir().unwrap();
    let op = operator(work.path());
    let beacon = Beacon::start(
        common::free_port(),
        &work.path().join("beacon"),
        &["--open"],
    );
    let (spore, _) = node("node-01", beacon.port, &op, 1);
    let registered_build = || -> String {
        nodes(beacon.port)
            .iter()
            .find(|n| n["registration"]["hostname"] == "node-01")
            .and_then(|n| n["registration"]["build_id"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let running = common::sha256sum(Path::new(spore_bin()));
    spore.wait_for(
        "a registration with the build",
        Duration::from_secs(30),
        |_| registered_build() == running,
    );
    let listed = sporectl(&["nodes", "--beacon", &beacon.url()]);
    let table = String::from_utf8_lossy(&listed.stdout);
    let version = format!("{} {}", env!("CARGO_PKG_VERSION"), &running[..8]);
    assert!(table.contains(&version), "{table}");
    // Another build: the same program with bytes after it (it runs the
    // same, its SHA-256 differs).
    let other = spore.path("spore-other");
    let mut bytes = std::fs::read(spore_bin()).unwrap();
    bytes.extend_from_slice(b"another build\n");
    std::fs::write(&other, &bytes).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let other_build = common::sha256sum(&other);
    let answer = spore
        .call(
            "node.reexec",
            json!({ "path": other.display().to_string() }),
        )
        .unwrap();
    assert_eq!(answer["build_id"], other_build, "{answer}");
    reexec_facts(&spore, 1);
    spore.wait_for(
        "a registration with the new build",
        Duration::from_secs(30),
        |_| registered_build() == other_build,
    );
}
