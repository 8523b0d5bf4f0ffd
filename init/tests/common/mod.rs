//! A real `spore run` in a temporary directory, driven over its control
//! socket.
#![allow(dead_code)]

pub mod beacon;
pub mod browser;
pub mod fleet;
pub mod postgres;
pub mod pty;
#[path = "shared.rs"]
mod shared;

#[allow(unused_imports)]
pub use shared::{connect_from, free_port, noise};

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The spore binary under test.
pub fn spore_bin() -> &'static str {
    env!("CARGO_BIN_EXE_spore")
}

pub struct Spore {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Spore {
    /// Writes `services` (name, TOML text) and starts `spore run` on them.
    pub fn start(services: &[(&str, String)]) -> Spore {
        let dir = tempfile::tempdir().unwrap();
        let services_dir = dir.path().join("etc/services");
        std::fs::create_dir_all(&services_dir).unwrap();
        for (name, text) in services {
            std::fs::write(services_dir.join(format!("{name}.toml")), text).unwrap();
        }
        Self::start_in(dir)
    }

    /// Starts `spore run` on an already populated `DIR/etc`.
    pub fn start_in(dir: tempfile::TempDir) -> Spore {
        let console = std::fs::File::create(dir.path().join("spore.err")).unwrap();
        Self::start_with_console(dir, Stdio::from(console))
    }

    /// Starts `spore run` on `DIR/etc` with its stderr (its console) on
    /// `console`.
    pub fn start_with_console(dir: tempfile::TempDir, console: Stdio) -> Spore {
        Self::start_with_env(dir, console, &[])
    }

    /// [`Spore::start_with_console`] with `env` added to spore's
    /// environment (`SPORE_SPAWNER=always`, say).
    pub fn start_with_env(dir: tempfile::TempDir, console: Stdio, env: &[(&str, &str)]) -> Spore {
        Self::start_with(dir, console, env, &[])
    }

    /// `spore run` on `DIR/etc` with `args` after its directories
    /// (`--cgroup PATH`, say), its console in `DIR/spore.err`.
    pub fn start_with_args(dir: tempfile::TempDir, args: &[&str]) -> Spore {
        let console = std::fs::File::create(dir.path().join("spore.err")).unwrap();
        Self::start_with(dir, Stdio::from(console), &[], args)
    }

    fn start_with(
        dir: tempfile::TempDir,
        console: Stdio,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Spore {
        let socket = dir.path().join("state/spore.sock");
        let log = dir.path().join("spore.log");
        let child = spawn_run(dir.path(), &log, console, env, args);
        let spore = Spore {
            child,
            dir,
            socket,
            log,
        };
        spore.wait_for("the control socket", Duration::from_secs(10), |s| {
            UnixStream::connect(&s.socket).is_ok()
        });
        spore
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// One JSON-RPC call; Ok(result) or Err(error object).
    pub fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let mut stream = UnixStream::connect(&self.socket).unwrap();
        let request = json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params });
        stream.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        let response: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(response["id"], 7);
        match response.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(response["result"].clone()),
        }
    }

    /// One JSON-RPC call that may find no socket or no answer (spore is
    /// re-exec'ing, say): its result, else None.
    pub fn try_call(&self, method: &str, params: Value) -> Option<Value> {
        let mut stream = UnixStream::connect(&self.socket).ok()?;
        let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        stream.write_all(format!("{request}\n").as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        let response: Value = serde_json::from_str(&line).ok()?;
        response.get("result").cloned()
    }

    /// The state word of `name`.
    pub fn state(&self, name: &str) -> String {
        let status = self
            .call("service.status", json!({ "name": name }))
            .unwrap();
        status["state"].as_str().unwrap().to_owned()
    }

    /// Polls `done` (tests may poll; spore may not) until it holds.
    pub fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Spore) -> bool) {
        let start = Instant::now();
        while !done(self) {
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}\n--- spore log ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_state(&self, name: &str, state: &str) {
        self.wait_for(
            &format!("{name} to be {state}"),
            Duration::from_secs(20),
            |s| s.state(name) == state,
        );
    }

    /// spore's own log (stderr).
    pub fn stderr(&self) -> String {
        // Lossy: a raw control byte spore let through must show, not
        // turn the whole log into "".
        std::fs::read(self.dir.path().join("spore.err"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Stops spore in order and starts it again on the same directories,
    /// as a reboot would (its console appended to the same file).
    pub fn restart(&mut self) {
        assert!(self.terminate().success(), "{}", self.stderr());
        self.start_again();
    }

    /// Starts spore again on the same directories after it ended (killed,
    /// say), its console appended to the same file.
    pub fn start_again(&mut self) {
        let console = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("spore.err"))
            .unwrap();
        self.child = spawn_run(self.dir.path(), &self.log, Stdio::from(console), &[], &[]);
        self.wait_for("the control socket", Duration::from_secs(10), |s| {
            UnixStream::connect(&s.socket).is_ok()
        });
    }

    /// SIGTERM, then wait for spore to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!("spore did not exit after SIGTERM\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `spore run` on `dir/etc` and `dir/state`.
fn spawn_run(dir: &Path, log: &Path, console: Stdio, env: &[(&str, &str)], args: &[&str]) -> Child {
    Command::new(spore_bin())
        .envs(env.iter().copied())
        .arg("run")
        .arg("--config-dir")
        .arg(dir.join("etc"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(console)
        .spawn()
        .unwrap()
}

impl Drop for Spore {
    /// An orderly stop first, so the services (in sessions of their own)
    /// do not outlive the test; SIGKILL to spore and their groups if it
    /// takes more than a few seconds.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.pid();
            // SAFETY: kill(2) with plain integers.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                // SAFETY: as above; each service leads its own group.
                unsafe { libc::kill(-child, libc::SIGKILL) };
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with plain integers.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid} {signal}");
}

/// The children of `pid` but the spawner (spore's helper once it holds
/// many descriptors, or with SPORE_SPAWNER=always): what callers look for.
pub fn service_children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|child| {
            !std::fs::read(format!("/proc/{child}/cmdline"))
                .unwrap_or_default()
                .starts_with(b"spore-spawner\0")
        })
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// The first child of process `pid` (waits up to 10 s for one): spore
/// under `unshare --fork`, or the service under spore.
pub fn child_of(pid: i32) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(child) = service_children(pid).first() {
            return *child;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{pid} has no child"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to 10 s until the file at `path` contains `needle`.
pub fn wait_for_file(path: &Path, needle: &str) {
    let start = Instant::now();
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(needle)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never contained {needle}: {:?}",
            path.display(),
            std::fs::read_to_string(path)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when process `pid` exists (zombies included).
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Pids whose parent is `parent` and which are zombies.
pub fn zombies_of(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z")
            && fields.get(1).and_then(|p| p.parse().ok()) == Some(parent)
        {
            found.push(pid);
        }
    }
    found
}

/// Seconds since the epoch as written by `date +%s.%N`.
pub fn read_time(path: &Path) -> f64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Writes `etc/services/mycelium.toml`: the [`mycelium_standin`] on `port`
/// (ready after `delay`, claiming `node_ip`), healthy once its API answers.
pub fn mycelium_service(etc: &Path, port: u16, delay: f64, ready_file: &Path, node_ip: &str) {
    let script = mycelium_standin(port, delay, ready_file, node_ip);
    std::fs::write(
        etc.join("services/mycelium.toml"),
        format!(
            "[service]\nname = \"mycelium\"\nexec = [\"python3\", \"{script}\"]\n\n[health]\ntype = \"http\"\ntarget = \"http://127.0.0.1:{port}/api/v1/admin\"\n"
        ),
    )
    .unwrap();
}

/// A stand-in for mycelium's API: after `delay` it records the time and
/// serves `GET /api/v1/admin` with mycelium's four fields on `port`,
/// claiming `node_ip` as its overlay address. Returns the script's path.
pub fn mycelium_standin(
    port: u16,
    delay: f64,
    ready_file: &std::path::Path,
    node_ip: &str,
) -> String {
    let script = format!(
        r#"
import http.server, json, time
time.sleep({delay})
class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/api/v1/admin":
            self.send_response(404); self.end_headers(); return
        body = json.dumps({{"nodeSubnet": "415:6e6d:c26c:5c97::/64",
                            "nodeIp": "{node_ip}",
                            "nodePubkey": "ab" * 32, "nodeStartTime": int(time.time())}}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", {port}), Api)
open("{ready}", "w").write("%.6f" % time.time())
server.serve_forever()
"#,
        ready = ready_file.display()
    );
    let path = ready_file.with_extension("py");
    std::fs::write(&path, script).unwrap();
    path.display().to_string()
}

/// sporectl, built from the current source once per test run (it belongs
/// to its own package, so cargo does not build it for spore's tests).
pub fn sporectl_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "sporectl", "--bin", "sporectl"])
                .status()
                .unwrap();
            assert!(status.success(), "building sporectl failed");
            Path::new(spore_bin()).with_file_name("sporectl")
        })
        .clone()
}

/// An ed25519 key pair made by the real ssh-keygen at `path` (+ .pub).
pub fn keygen(path: &Path, comment: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// `SHA256:…` of the key in `path` (public or private), as `ssh-keygen -lf`
/// prints it.
pub fn fingerprint(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// A real ssh-agent listening on `socket` (killed by the caller).
pub fn start_agent(socket: &Path) -> Child {
    let agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(socket)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "ssh-agent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    agent
}

/// `ssh-add KEY` into the agent at `socket`.
pub fn agent_add(socket: &Path, key: &Path) {
    let started = Instant::now();
    let add = loop {
        let add = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", socket)
            .output()
            .unwrap();
        // The agent's socket exists from bind(2), before it listens.
        let early = String::from_utf8_lossy(&add.stderr).contains("Connection refused");
        if !early || started.elapsed() > Duration::from_secs(10) {
            break add;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
}

/// `sha256sum`'s digest of `path`: computed by another program than spore.
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Prometheus' own linter (`promtool check metrics`, Debian's prometheus)
/// on `text`: panics with what it said unless it says nothing.
pub fn promtool_check(text: &str) {
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup installs prometheus)");
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let linted = lint.wait_with_output().unwrap();
    assert!(
        linted.status.success() && linted.stdout.is_empty() && linted.stderr.is_empty(),
        "{}{}\n{text}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );
}

/// A child killed when the test ends, however it ends.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Held sockets to `to` from `sources` loopback addresses 127.0.`net`.N,
/// opened one after another on a thread and renewed as the listener
/// sheds them (at most `keep` held at once), until [`Flood::stop`].
pub struct Flood {
    flooding: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Flood {
    /// Starts flooding; a pause of `pause` after each connection.
    pub fn start(
        to: std::net::SocketAddr,
        net: u8,
        sources: u8,
        keep: usize,
        pause: Duration,
    ) -> Flood {
        let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let going = flooding.clone();
        let thread = std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            let mut opened = 0u64;
            for i in 0u64.. {
                if !going.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let from =
                    std::net::Ipv4Addr::new(127, 0, net, 1 + (i % u64::from(sources.max(1))) as u8);
                if let Ok(stream) = connect_from(from, to) {
                    opened += 1;
                    held.push_back(stream);
                }
                if held.len() > keep {
                    held.pop_front();
                }
                std::thread::sleep(pause);
            }
            opened
        });
        Flood { flooding, thread }
    }

    /// Stops it; how many connections it opened.
    pub fn stop(self) -> u64 {
        self.flooding
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}
