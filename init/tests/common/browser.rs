//! A real headless Chromium (Debian's, installed by scripts/setup), driven
//! over the DevTools protocol on a pipe (`--remote-debugging-pipe`: it
//! reads commands on fd 3 and writes answers and events on fd 4, each
//! message JSON ended by a NUL). Every request the page makes is recorded
//! from the Network domain's events, so a test can say which hosts a page
//! reached.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// How long a command or a page load may take.
const LIMIT: Duration = Duration::from_secs(60);

/// One browser with one page open.
pub struct Browser {
    child: Child,
    commands: std::fs::File,
    messages: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Events seen while waiting for answers, oldest first.
    events: Vec<Value>,
}

impl Browser {
    /// Starts Chromium with a fresh profile under `dir` and opens a blank
    /// page, with its network events recorded.
    pub fn start(dir: &Path) -> Browser {
        let (their_commands, commands) = pipe();
        let (answers, their_answers) = pipe();
        let (read_fd, write_fd) = (their_commands.as_raw_fd(), their_answers.as_raw_fd());
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only fcntl and dup2 between fork and exec
        // (async-signal-safe).
        unsafe {
            command.pre_exec(move || {
                // Above 4 first, so neither lands on the other's place.
                let read_fd = libc::fcntl(read_fd, libc::F_DUPFD, 10);
                let write_fd = libc::fcntl(write_fd, libc::F_DUPFD, 10);
                if read_fd < 0
                    || write_fd < 0
                    || libc::dup2(read_fd, 3) < 0
                    || libc::dup2(write_fd, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .expect("chromium (scripts/setup installs it)");
        drop(their_commands);
        drop(their_answers);
        let (sender, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if sender.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            commands,
            messages,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
        };
        let target = browser.browser_call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        browser.call("Network.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser
    }

    fn send(&mut self, method: &str, params: Value, session: Option<String>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) if message["id"] == json!(id) => {
                    assert!(message.get("error").is_none(), "{method} failed: {message}");
                    return message["result"].clone();
                }
                Ok(event) => self.events.push(event),
                Err(RecvTimeoutError::Timeout) => panic!("{method}: no answer in {LIMIT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("{method}: the browser went away"),
            }
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// One command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(session))
    }

    /// Waits for the page's next load to finish (events seen before the
    /// call are not counted).
    fn wait_loaded(&mut self, seen: usize) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if self
                .events
                .iter()
                .skip(seen)
                .any(|e| e["method"] == "Page.loadEventFired")
            {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(event) => self.events.push(event),
                Err(error) => panic!("no page load: {error:?}"),
            }
        }
    }

    /// Opens `url` and waits for it to load.
    pub fn open(&mut self, url: &str) {
        let seen = self.events.len();
        let navigated = self.call("Page.navigate", json!({ "url": url }));
        assert!(navigated.get("errorText").is_none(), "{url}: {navigated}");
        self.wait_loaded(seen);
    }

    /// The value of a JavaScript expression in the page (DevTools'
    /// evaluation: it runs even where the page allows no script).
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(
            answer.get("exceptionDetails").is_none(),
            "{expression}: {answer}"
        );
        answer["result"]["value"].clone()
    }

    /// Clicks what `selector` finds (as a person would: a link is
    /// followed, a form submitted) and waits for the page it leads to.
    pub fn click(&mut self, selector: &str) {
        let seen = self.events.len();
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            json!(selector)
        ));
        assert_eq!(found, json!(true), "nothing matches {selector}");
        self.wait_loaded(seen);
    }

    /// The page's visible text.
    pub fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every URL the page has requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_owned))
            .collect()
    }

    /// Every response status the page got, with its URL.
    pub fn responses(&self) -> Vec<(String, u64)> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.responseReceived")
            .filter_map(|e| {
                let response = &e["params"]["response"];
                Some((
                    response["url"].as_str()?.to_owned(),
                    response["status"].as_u64()?,
                ))
            })
            .collect()
    }

    /// Saves the page as a PNG at `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// A pipe (close-on-exec): its read end and its write end.
fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which become ours.
    let done = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(done, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: each descriptor is new and owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
