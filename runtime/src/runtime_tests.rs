//! The runtime against a fake system: no process, no signal, no timer is
//! real; the clock moves only when a test moves it. Each test is a story of
//! what the runtime asks the system to do and what it does with the answers.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use svc::service::Probe;
use svc::supervisor::ExitStatus;

use crate::sys::{CheckRun, Launch};

use super::*;

const TERM: i32 = 15;
const KILL: i32 = 9;

/// What the fake system was asked and what it will answer.
struct World {
    now: Instant,
    next_pid: i32,
    /// (pid, argv, name the output is read under).
    spawned: Vec<(i32, Vec<String>, Option<String>)>,
    signals: Vec<(i32, i32)>,
    exits: VecDeque<(i32, ExitStatus)>,
    /// Process groups that still have members.
    groups: HashSet<i32>,
    timers: BTreeMap<(Instant, u64), TimerKey>,
    next_timer: u64,
    probes: Vec<CheckRun>,
    notes: Vec<String>,
    echoes: Vec<(String, String)>,
    fail_spawns: bool,
    /// Work handed off the loop, not run until a test runs it.
    offloaded: Vec<crate::sys::OffLoop>,
    /// Credential directories removed.
    removed: Vec<std::path::PathBuf>,
    /// Log files opened, and what was written to them.
    log_files: Vec<(
        std::path::PathBuf,
        std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    )>,
}

/// A log file of the fake system: bytes kept in memory.
struct MemoryFile(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for MemoryFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct FakeSys(Rc<RefCell<World>>);

impl Sys for FakeSys {
    fn now(&self) -> Instant {
        self.0.borrow().now
    }

    fn wall_clock(&self) -> std::time::SystemTime {
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn keep_log(&mut self, path: &Path) -> crate::rotating::Keeper {
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        self.0
            .borrow_mut()
            .log_files
            .push((path.to_path_buf(), bytes.clone()));
        std::sync::Arc::new(move |line: &str| {
            if let Ok(mut kept) = bytes.lock() {
                kept.extend_from_slice(line.as_bytes());
            }
        })
    }

    fn open_log(&mut self, path: &Path) -> std::io::Result<Box<dyn std::io::Write + Send>> {
        if path.starts_with("/unwritable") {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        self.0
            .borrow_mut()
            .log_files
            .push((path.to_path_buf(), bytes.clone()));
        Ok(Box::new(MemoryFile(bytes)))
    }

    fn remove_credentials(&mut self, dir: &Path) -> std::io::Result<()> {
        self.0.borrow_mut().removed.push(dir.to_path_buf());
        Ok(())
    }

    fn spawn(&mut self, launch: Launch<'_>, output: Option<&str>) -> Result<i32, SpawnError> {
        let mut world = self.0.borrow_mut();
        if world.fail_spawns {
            return Err(SpawnError {
                code: 127,
                program: launch.argv.first().cloned().unwrap_or_default(),
                message: "No such file or directory".into(),
            });
        }
        world.next_pid += 1;
        let pid = world.next_pid;
        world.groups.insert(pid);
        world
            .spawned
            .push((pid, launch.argv.to_vec(), output.map(str::to_owned)));
        Ok(pid)
    }

    fn signal_group(&mut self, pgid: i32, signal: i32) {
        assert!(pgid > 1, "signal {signal} to group {pgid}");
        self.0.borrow_mut().signals.push((pgid, signal));
    }

    fn reap(&mut self) -> Option<(i32, ExitStatus)> {
        self.0.borrow_mut().exits.pop_front()
    }

    fn group_is_empty(&self, pgid: i32) -> bool {
        !self.0.borrow().groups.contains(&pgid)
    }

    fn arm_timer(&mut self, key: TimerKey, after: Duration) {
        let mut world = self.0.borrow_mut();
        world.timers.retain(|_, k| *k != key);
        world.next_timer += 1;
        let at = (world.now + after, world.next_timer);
        world.timers.insert(at, key);
    }

    fn cancel_timer(&mut self, key: TimerKey) {
        self.0.borrow_mut().timers.retain(|_, k| *k != key);
    }

    fn probe(&mut self, run: CheckRun, _probe: &Probe, _timeout: Duration) {
        self.0.borrow_mut().probes.push(run);
    }

    fn note(&mut self, line: &str) {
        self.0.borrow_mut().notes.push(line.to_owned());
    }

    fn echo(&mut self, service: &str, line: &str) {
        self.0
            .borrow_mut()
            .echoes
            .push((service.to_owned(), line.to_owned()));
    }

    fn off_loop(&mut self, job: crate::sys::OffLoop) {
        self.0.borrow_mut().offloaded.push(job);
    }
}

struct Fixture {
    runtime: Runtime,
    world: Rc<RefCell<World>>,
    _events: Receiver<Input>,
}

fn service(text: &str) -> Service {
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    svc::parse_service(Path::new(&format!("{name}.toml")), text).unwrap()
}

impl Fixture {
    fn new(texts: &[&str]) -> Fixture {
        let world = Rc::new(RefCell::new(World {
            now: Instant::now(),
            next_pid: 100,
            spawned: Vec::new(),
            signals: Vec::new(),
            exits: VecDeque::new(),
            groups: HashSet::new(),
            timers: BTreeMap::new(),
            next_timer: 0,
            probes: Vec::new(),
            notes: Vec::new(),
            echoes: Vec::new(),
            fail_spawns: false,
            offloaded: Vec::new(),
            removed: Vec::new(),
            log_files: Vec::new(),
        }));
        let (tx, events) = smol::channel::unbounded();
        let services = texts.iter().map(|t| service(t)).collect();
        let runtime = Runtime::with_sys(services, Box::new(FakeSys(world.clone())), tx);
        Fixture {
            runtime,
            world,
            _events: events,
        }
    }

    fn spawned(&self) -> Vec<(i32, Vec<String>, Option<String>)> {
        self.world.borrow().spawned.clone()
    }

    fn last_pid(&self) -> i32 {
        self.world.borrow().next_pid
    }

    fn signals(&self) -> Vec<(i32, i32)> {
        self.world.borrow().signals.clone()
    }

    fn state(&self, name: &str) -> String {
        self.runtime.get(name).unwrap().state.word().to_owned()
    }

    /// The main process (and, with `group_gone`, its whole group) ends; the
    /// reaper runs as on SIGCHLD.
    fn exit(&mut self, pid: i32, status: ExitStatus, group_gone: bool) {
        {
            let mut world = self.world.borrow_mut();
            world.exits.push_back((pid, status));
            if group_gone {
                world.groups.remove(&pid);
            }
        }
        self.runtime.reap();
    }

    /// Moves the fake clock by `by`, delivering due timers in order.
    fn advance(&mut self, by: Duration) {
        let end = self.world.borrow().now + by;
        loop {
            let due = {
                let mut world = self.world.borrow_mut();
                let first = world.timers.keys().next().copied();
                match first {
                    Some(at) if at.0 <= end => {
                        world.now = world.now.max(at.0);
                        world.timers.remove(&at)
                    }
                    _ => None,
                }
            };
            let Some(key) = due else { break };
            let input = match key {
                TimerKey::Supervisor(id) => Input::Event(Event::TimerFired(id)),
                TimerKey::CheckDeadline(pid) => Input::CheckTimedOut { pid },
                TimerKey::Caller(key) => Input::CallerTimer(key),
            };
            self.runtime.handle(input);
        }
        self.world.borrow_mut().now = end;
    }
}

#[test]
fn boot_spawns_through_the_system_and_restarts_after_the_backoff_timer() {
    let mut f = Fixture::new(&[
        "[service]\nname = \"a\"\nexec = \"/bin/a --flag\"\n[lifecycle]\nrestart = \"always\"\nrestart_delay_ms = 100\n",
    ]);
    f.runtime.feed(Event::Boot);
    let spawned = f.spawned();
    assert_eq!(spawned.len(), 1);
    assert_eq!(spawned[0].1, ["/bin/a", "--flag"]);
    assert_eq!(
        spawned[0].2.as_deref(),
        Some("a"),
        "its output is read as a's"
    );
    assert_eq!(f.state("a"), "ready");
    f.exit(spawned[0].0, ExitStatus::Code(1), true);
    assert_eq!(f.state("a"), "backoff");
    f.advance(Duration::from_millis(99));
    assert_eq!(f.spawned().len(), 1, "not before the backoff delay");
    f.advance(Duration::from_millis(1));
    assert_eq!(f.spawned().len(), 2, "restarted when the timer fires");
    assert!(
        f.world
            .borrow()
            .notes
            .iter()
            .any(|n| n == "a: backoff: restart in 100 ms (last run exited with code 1)"),
        "{:?}",
        f.world.borrow().notes
    );
}

#[test]
fn stop_signals_the_group_and_waits_until_it_is_empty() {
    let mut f = Fixture::new(&[
        "[service]\nname = \"a\"\nexec = \"/bin/a\"\n[lifecycle]\nstop_timeout_ms = 1000\n",
    ]);
    f.runtime.feed(Event::Boot);
    let pid = f.last_pid();
    f.runtime.feed(Event::Stop("a".into()));
    assert_eq!(f.signals(), [(pid, TERM)]);
    // The leader exits, a child of it lingers in the group.
    f.exit(pid, ExitStatus::Signal(TERM), false);
    assert_eq!(f.state("a"), "stopping", "waits for the rest of the group");
    f.world.borrow_mut().groups.remove(&pid);
    f.runtime.reap();
    assert_eq!(f.state("a"), "stopped");
    assert!(
        f.world.borrow().timers.is_empty(),
        "the grace timer is cancelled: nothing will wake the node"
    );
    f.advance(Duration::from_secs(5));
    assert_eq!(f.signals(), [(pid, TERM)], "no SIGKILL after a clean stop");
}

#[test]
fn a_group_that_ignores_the_stop_signal_is_killed_after_the_timeout() {
    let mut f = Fixture::new(&[
        "[service]\nname = \"a\"\nexec = \"/bin/a\"\n[lifecycle]\nstop_timeout_ms = 1000\n",
    ]);
    f.runtime.feed(Event::Boot);
    let pid = f.last_pid();
    f.runtime.feed(Event::Stop("a".into()));
    f.advance(Duration::from_millis(999));
    assert_eq!(f.signals(), [(pid, TERM)]);
    f.advance(Duration::from_millis(1));
    assert_eq!(f.signals(), [(pid, TERM), (pid, KILL)]);
    f.exit(pid, ExitStatus::Signal(KILL), true);
    assert_eq!(f.state("a"), "stopped");
}

#[test]
fn an_exec_check_that_overruns_its_timeout_is_killed_and_counts_as_failed() {
    let mut f = Fixture::new(&[
        "[service]\nname = \"a\"\nexec = \"/bin/a\"\n[[actions]]\nname = \"health\"\nscript = \"/bin/check\"\ntrigger = \"check\"\ntimeout_ms = 500\n",
    ]);
    f.runtime.feed(Event::Boot);
    let spawned = f.spawned();
    assert_eq!(spawned.len(), 2, "the service, then its check");
    let (check_pid, argv, output) = spawned[1].clone();
    assert_eq!(argv, ["/bin/check"]);
    assert_eq!(output, None, "a check's output is not kept");
    f.advance(Duration::from_millis(500));
    assert!(
        f.signals().contains(&(check_pid, KILL)),
        "{:?}",
        f.signals()
    );
    f.exit(check_pid, ExitStatus::Signal(KILL), true);
    assert_eq!(f.state("a"), "running", "not ready: its check failed");
    // The next check comes after the first-pass retry, and its deadline
    // replaced the old one.
    f.advance(Duration::from_millis(10));
    assert_eq!(f.spawned().len(), 3, "the check runs again");
}

#[test]
fn a_passing_exec_check_makes_the_service_ready_and_cancels_its_deadline() {
    let mut f = Fixture::new(&[
        "[service]\nname = \"a\"\nexec = \"/bin/a\"\n[[actions]]\nname = \"health\"\nscript = \"/bin/check\"\ntrigger = \"check\"\ntimeout_ms = 500\ninterval_ms = 60000\n",
    ]);
    f.runtime.feed(Event::Boot);
    let check_pid = f.last_pid();
    f.exit(check_pid, ExitStatus::Code(0), true);
    assert_eq!(f.state("a"), "ready");
    let timers: Vec<TimerKey> = f.world.borrow().timers.values().copied().collect();
    assert!(
        !timers.contains(&TimerKey::CheckDeadline(check_pid)),
        "{timers:?}"
    );
}

#[test]
fn native_probes_are_asked_of_the_system_and_their_verdict_comes_back_as_an_event() {
    let mut f = Fixture::new(&[
        "[service]\nname = \"a\"\nexec = \"/bin/a\"\n[health]\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\n",
    ]);
    f.runtime.feed(Event::Boot);
    let probe = f.world.borrow().probes.first().cloned().unwrap();
    assert_eq!(probe.service, "a");
    f.runtime.handle(Input::Event(Event::CheckDone {
        service: probe.service,
        run: probe.run,
        check: probe.check,
        passed: true,
    }));
    assert_eq!(f.state("a"), "ready");
}

#[test]
fn orphans_are_reaped_and_change_nothing() {
    let mut f = Fixture::new(&["[service]\nname = \"a\"\nexec = \"/bin/a\"\n"]);
    f.runtime.feed(Event::Boot);
    f.exit(4242, ExitStatus::Code(0), true);
    f.exit(4243, ExitStatus::Signal(KILL), true);
    assert_eq!(f.state("a"), "ready");
    assert_eq!(f.spawned().len(), 1);
    assert!(f.signals().is_empty());
}

#[test]
fn a_spawn_the_system_refuses_is_noted_and_retried_after_backoff() {
    let mut f = Fixture::new(&[
        "[service]\nname = \"a\"\nexec = \"/bin/missing\"\n[lifecycle]\nrestart_delay_ms = 200\n",
    ]);
    f.world.borrow_mut().fail_spawns = true;
    f.runtime.feed(Event::Boot);
    assert_eq!(f.state("a"), "backoff");
    assert!(f
        .world
        .borrow()
        .notes
        .iter()
        .any(|n| n.contains("cannot run `/bin/missing`")));
    f.world.borrow_mut().fail_spawns = false;
    f.advance(Duration::from_millis(200));
    assert_eq!(f.spawned().len(), 1);
    assert_eq!(f.state("a"), "ready");
}

#[test]
fn output_lines_are_kept_and_echoed_only_when_asked() {
    let mut f = Fixture::new(&["[service]\nname = \"a\"\nexec = \"/bin/a\"\n"]);
    let line = |text: &str| Input::Line {
        service: "a".into(),
        stream: Stream::Stdout,
        text: text.into(),
    };
    f.runtime.handle(line("one"));
    f.runtime.set_echo_output(false);
    f.runtime.handle(line("two"));
    let kept: Vec<String> = f
        .runtime
        .logs("a")
        .unwrap()
        .tail(10)
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(kept, ["one", "two"]);
    assert_eq!(
        f.world.borrow().echoes,
        [("a".to_owned(), "one".to_owned())]
    );
}

#[test]
fn shutdown_completes_once_every_group_is_gone() {
    let mut f = Fixture::new(&[
        "[service]\nname = \"a\"\nexec = \"/bin/a\"\n",
        "[service]\nname = \"b\"\nexec = \"/bin/b\"\n[dependencies]\nrequires = [\"a\"]\n",
    ]);
    f.runtime.feed(Event::Boot);
    let (a, b) = (f.spawned()[0].0, f.spawned()[1].0);
    f.runtime.feed(Event::Shutdown);
    assert_eq!(f.signals(), [(b, TERM)], "dependents stop first");
    f.exit(b, ExitStatus::Signal(TERM), true);
    assert_eq!(f.signals(), [(b, TERM), (a, TERM)]);
    assert!(!f.runtime.is_shutdown_complete());
    f.exit(a, ExitStatus::Signal(TERM), true);
    assert!(f.runtime.is_shutdown_complete());
    assert!(f
        .world
        .borrow()
        .notes
        .iter()
        .any(|n| n == "all services stopped"));
    assert!(
        f.world.borrow().timers.is_empty(),
        "an idle node arms nothing"
    );
}

#[test]
fn a_service_with_secrets_starts_only_once_they_were_read_off_the_loop() {
    let store = tempfile::tempdir().unwrap();
    let secrets = store.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("token"), "t0k3n").unwrap();
    let mut f = Fixture::new(&[
        "[service]\nname = \"vault\"\nexec = \"/bin/vault\"\nstatus = \"stop\"\n\n[credentials]\nload = [\"token\"]\n\n[secrets]\nTOKEN = \"token\"\n",
    ]);
    f.runtime.set_files(Files {
        services: store.path().join("services"),
        deployed: store.path().join("deployed"),
        secrets,
        credentials: store.path().join("credentials"),
        persistent: true,
        kept_logs: None,
        artifacts: None,
        artifact_links: store.path().join("artifact-links"),
    });
    f.runtime.feed(Event::Start("vault".into()));
    // Nothing started on the loop: the read waits on its thread.
    assert!(
        f.spawned().is_empty(),
        "started before its secrets were read"
    );
    let job = f
        .world
        .borrow_mut()
        .offloaded
        .pop()
        .expect("the read went off the loop");
    let input = job();
    f.runtime.handle(input);
    let spawned = f.spawned();
    assert_eq!(spawned.len(), 1);
    assert_eq!(spawned[0].1, vec!["/bin/vault".to_owned()]);
    assert_eq!(
        std::fs::read_to_string(store.path().join("credentials/vault/token")).unwrap(),
        "t0k3n"
    );
    assert_eq!(f.state("vault"), "ready");
    // Its credentials go when it stops, through the system interface.
    assert!(f.world.borrow().removed.is_empty());
    f.exit(spawned[0].0, ExitStatus::Code(0), true);
    assert_eq!(
        f.world.borrow().removed,
        vec![store.path().join("credentials/vault")]
    );
}

#[test]
fn a_secret_that_cannot_be_read_off_the_loop_fails_the_start_with_why() {
    let store = tempfile::tempdir().unwrap();
    let mut f = Fixture::new(&[
        "[service]\nname = \"vault\"\nexec = \"/bin/vault\"\nstatus = \"stop\"\n\n[credentials]\nload = [\"missing\"]\n",
    ]);
    f.runtime.set_files(Files {
        services: store.path().join("services"),
        deployed: store.path().join("deployed"),
        secrets: store.path().join("secrets"),
        credentials: store.path().join("credentials"),
        persistent: true,
        kept_logs: None,
        artifacts: None,
        artifact_links: store.path().join("artifact-links"),
    });
    f.runtime.feed(Event::Start("vault".into()));
    let job = f.world.borrow_mut().offloaded.pop().unwrap();
    f.runtime.handle(job());
    assert!(f.spawned().is_empty());
    let notes = f.world.borrow().notes.join("\n");
    assert!(notes.contains("secret `missing` is not set"), "{notes}");
    assert_ne!(f.state("vault"), "running");
}

#[test]
fn a_log_file_is_opened_through_the_system_and_one_that_cannot_be_is_noted() {
    let mut f = Fixture::new(&[
        "[service]\nname = \"a\"\nexec = \"/bin/a\"\n[logging]\nfile = \"/var/log/a.log\"\n",
        "[service]\nname = \"b\"\nexec = \"/bin/b\"\n[logging]\nfile = \"/unwritable/b.log\"\n",
    ]);
    f.runtime.handle(Input::Line {
        service: "a".into(),
        stream: Stream::Stderr,
        text: "disk full".into(),
    });
    let (path, bytes) = f.world.borrow().log_files[0].clone();
    assert_eq!(path, Path::new("/var/log/a.log"));
    assert!(f
        .runtime
        .logs("a")
        .unwrap()
        .flush_file(Duration::from_secs(5)));
    let text = String::from_utf8(bytes.lock().unwrap().clone()).unwrap();
    // The fake wall clock: 1,800,000,000 s after the epoch.
    assert_eq!(text, "2027-01-15T08:00:00.000Z stderr disk full\n");
    assert_eq!(f.world.borrow().log_files.len(), 1);
    assert!(f.world.borrow().notes.iter().any(|n| n
        == "b: cannot open log file /unwritable/b.log: permission denied; keeping output in memory only"));
}

#[test]
fn output_is_kept_through_the_system_for_services_there_and_deployed_later() {
    let mut f = Fixture::new(&["[service]\nname = \"a\"\nexec = \"/bin/a\"\n"]);
    f.runtime
        .keep_logs(std::path::PathBuf::from("/var/lib/spore/logs/0"));
    f.runtime
        .deploy(service("[service]\nname = \"b\"\nexec = \"/bin/b\"\n"));
    for name in ["a", "b"] {
        f.runtime.handle(Input::Line {
            service: name.into(),
            stream: Stream::Stdout,
            text: format!("{name} says hi"),
        });
        assert!(f
            .runtime
            .logs(name)
            .unwrap()
            .flush_file(Duration::from_secs(5)));
    }
    let world = f.world.borrow();
    let kept: Vec<(String, String)> = world
        .log_files
        .iter()
        .map(|(path, bytes)| {
            (
                path.display().to_string(),
                String::from_utf8(bytes.lock().unwrap().clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0].0, "/var/lib/spore/logs/0/a.log");
    assert!(kept[0].1.ends_with(" stdout a says hi\n"), "{kept:?}");
    assert_eq!(kept[1].0, "/var/lib/spore/logs/0/b.log");
    assert!(kept[1].1.ends_with(" stdout b says hi\n"), "{kept:?}");
}

#[test]
fn pinned_artifacts_are_linked_off_the_loop_and_named_in_argv_or_the_start_waits() {
    let place = tempfile::tempdir().unwrap();
    let store = place.path().join("artifacts");
    std::fs::create_dir_all(store.join("sha256")).unwrap();
    let held = "c".repeat(64);
    std::fs::write(store.join("sha256").join(&held), b"tool").unwrap();
    let absent = "d".repeat(64);
    let mut f = Fixture::new(&[
        &format!("[service]\nname = \"app\"\nexec = \"$ARTIFACTS_DIRECTORY/tool --conf ${{ARTIFACTS_DIRECTORY}}/tool\"\nstatus = \"stop\"\n\n[[artifacts]]\nname = \"tool\"\nsha256 = \"{held}\"\nmode = \"0755\"\n"),
        &format!("[service]\nname = \"later\"\nexec = \"$ARTIFACTS_DIRECTORY/x\"\nstatus = \"stop\"\n\n[[artifacts]]\nname = \"x\"\nsha256 = \"{absent}\"\n"),
    ]);
    let links = place.path().join("run/service-artifacts");
    f.runtime.set_files(Files {
        services: place.path().join("services"),
        deployed: place.path().join("deployed"),
        secrets: place.path().join("secrets"),
        credentials: place.path().join("run/credentials"),
        persistent: true,
        kept_logs: None,
        artifacts: Some(store.clone()),
        artifact_links: links.clone(),
    });
    f.runtime.feed(Event::Start("app".into()));
    assert!(f.spawned().is_empty(), "linked on the loop");
    let job = f.world.borrow_mut().offloaded.pop().unwrap();
    f.runtime.handle(job());
    let spawned = f.spawned();
    let dir = links.join("app");
    assert_eq!(
        spawned[0].1,
        vec![
            format!("{}/tool", dir.display()),
            "--conf".to_owned(),
            format!("{}/tool", dir.display())
        ]
    );
    assert_eq!(std::fs::read(dir.join("tool")).unwrap(), b"tool");
    // Not on the node: the start fails, naming what it waits for.
    f.runtime.feed(Event::Start("later".into()));
    let job = f.world.borrow_mut().offloaded.pop().unwrap();
    f.runtime.handle(job());
    assert_eq!(f.spawned().len(), 1);
    let notes = f.world.borrow().notes.join("\n");
    assert!(
        notes.contains(&format!(
            "waiting for artifact x (sha256:{absent}): not on the node"
        )),
        "{notes}"
    );
}

/// A live re-exec at the runtime's level: the state through JSON into a
/// second runtime on the same (fake) system, as the new binary's.
#[test]
fn a_handoff_is_taken_up_by_a_new_runtime_with_its_processes_output_and_lingering_groups() {
    let texts = [
        "[service]\nname = \"a\"\nexec = \"/bin/a\"\n",
        "[service]\nname = \"b\"\nexec = \"/bin/b\"\n[lifecycle]\nstop_timeout_ms = 1000\n",
        "[service]\nname = \"c\"\nexec = \"/bin/c\"\n[lifecycle]\nrestart = \"always\"\nrestart_delay_ms = 500\n",
    ];
    let mut f = Fixture::new(&texts);
    f.runtime.feed(Event::Boot);
    let pid = |f: &Fixture, name: &str| f.runtime.get(name).unwrap().pid.unwrap();
    let (a, b, c) = (pid(&f, "a"), pid(&f, "b"), pid(&f, "c"));
    f.runtime.handle(Input::Line {
        service: "a".into(),
        stream: Stream::Stdout,
        text: "hello from a".into(),
    });
    // b stops, its leader gone and a child lingering; c waits in backoff.
    f.runtime.feed(Event::Stop("b".into()));
    f.exit(b, ExitStatus::Signal(TERM), false);
    f.exit(c, ExitStatus::Code(1), true);
    f.advance(Duration::from_millis(200));
    assert_eq!(
        (f.state("a"), f.state("b"), f.state("c")),
        ("ready".into(), "stopping".into(), "backoff".into())
    );
    let handoff = f.runtime.hand_off().unwrap();
    let json = serde_json::to_string(&handoff).unwrap();
    let handoff: handoff::Handoff = serde_json::from_str(&json).unwrap();

    // The new binary's runtime: the same system, the timers of the old
    // process gone with it.
    f.world.borrow_mut().timers.clear();
    let spawned_before = f.spawned().len();
    let (tx, events) = smol::channel::unbounded();
    let services = texts.iter().map(|t| service(t)).collect();
    let mut g = Fixture {
        runtime: Runtime::with_sys(services, Box::new(FakeSys(f.world.clone())), tx),
        world: f.world.clone(),
        _events: events,
    };
    let adoption = g.runtime.adopt(handoff);
    // a runs; b's leader was reaped (its group lingers); c waits.
    assert_eq!(adoption.processes, 1, "{adoption:?}");
    assert!(adoption.unknown.is_empty());
    assert_eq!(g.spawned().len(), spawned_before, "nothing spawned again");
    assert_eq!(pid(&g, "a"), a);
    assert_eq!(g.state("b"), "stopping");
    let lines: Vec<String> = g
        .runtime
        .logs("a")
        .unwrap()
        .tail(10)
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(
        lines,
        [
            "starting",
            &format!("ready (pid {a})"),
            "hello from a",
            &format!("re-exec: the new spore took up pid {a}")
        ]
    );
    assert!(lines
        .iter()
        .any(|l| l == &format!("re-exec: the new spore took up pid {a}")));
    // b's lingering group is watched again: once it empties, b is stopped.
    g.world.borrow_mut().groups.remove(&b);
    g.runtime.reap();
    assert_eq!(g.state("b"), "stopped");
    // c restarts when its backoff was due: 300 ms after the handoff.
    g.advance(Duration::from_millis(299));
    assert_eq!(g.spawned().len(), spawned_before);
    g.advance(Duration::from_millis(1));
    assert_eq!(g.spawned().len(), spawned_before + 1);
    // a's exit is known: it was its main process.
    g.exit(a, ExitStatus::Code(0), true);
    assert_ne!(g.state("a"), "ready");
}
