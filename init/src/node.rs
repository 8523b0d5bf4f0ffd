//! What the event loop and the control channels share: the runtime, how the
//! node should end, and the facts `node.info` reports.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::Instant;

use nodeapi::api::Power;
use nodeapi::NodeApi;
use runtime::Input;
use serde_json::{json, Value};
use smol::LocalExecutor;
use svc::supervisor::Event;

/// How the node ends once every service has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// reboot(2) with RB_AUTOBOOT.
    Reboot,
    /// reboot(2) with RB_POWER_OFF.
    Poweroff,
    /// reboot(2) with RB_HALT_SYSTEM.
    Halt,
}

impl Ending {
    /// The last line `spore run` writes: outside PID 1 every ending is an
    /// exit, and a reboot or halt that was asked for is said not to happen.
    pub fn outside_pid1(self) -> &'static str {
        match self {
            Ending::Poweroff => "exiting",
            Ending::Reboot => {
                "exiting (a reboot was asked: only spore as PID 1 reboots the machine)"
            }
            Ending::Halt => "exiting (a halt was asked: only spore as PID 1 halts the machine)",
        }
    }
}

/// Shared by the event loop and every control connection (one thread).
pub struct Node {
    /// The supervisor and its processes.
    pub runtime: RefCell<NodeApi>,
    /// Set once a shutdown was asked for.
    pub ending: Cell<Option<Ending>>,
    /// The executor every task runs on.
    pub executor: &'static LocalExecutor<'static>,
    /// When spore started.
    pub started: Instant,
    /// True when running as PID 1.
    pub pid1: bool,
    /// The control socket's path.
    pub socket: PathBuf,
    /// The directories spore runs with (a live re-exec hands them on).
    pub paths: crate::config::Paths,
    /// Where this start keeps output, when it does.
    pub kept_logs: Option<PathBuf>,
    /// Live re-execs (see [`crate::reexec`]).
    pub reexec: crate::reexec::Reexec,
    /// The signed RPC server once it runs, for its refusal counts.
    pub rpc_server: RefCell<std::rc::Weak<noderpc::server::Server>>,
    /// Errors met while loading services, for node.info.
    pub config_errors: usize,
    /// The RPC API's state for node.info (auth, listeners, key checks).
    pub posture: RefCell<Value>,
    /// Where deploys go and whether they survive a reboot, for node.info
    /// (fixed at start: node.info is answered while the runtime is busy).
    pub deploys: Value,
    /// Where artifacts are kept, their quota, and whether they survive a
    /// reboot, for node.info.
    pub artifacts: Value,
    /// The boot slots and in-place updates.
    pub updates: crate::update::Updates,
    /// spore's own steps of this boot ([`crate::timeline`]), for node.info.
    pub startup: RefCell<Value>,
    /// The activated services' sockets ([`crate::activation`]).
    pub activation: crate::activation::Activation,
}

impl Node {
    /// Runs `f` on the runtime. Nothing holds the runtime across an await,
    /// so it is always free here; were it not, the call is logged and
    /// skipped (None) rather than letting a RefCell panic end PID 1.
    pub fn with_runtime<T>(&self, f: impl FnOnce(&mut NodeApi) -> T) -> Option<T> {
        match self.runtime.try_borrow_mut() {
            Ok(mut runtime) => Some(f(&mut runtime)),
            Err(_) => {
                runtime::journal::note("internal error: the runtime is busy; call skipped");
                None
            }
        }
    }

    /// What follows the last service's stop, in words: the machine's end
    /// as PID 1, spore's own exit otherwise.
    fn after_stop(&self, ending: Ending) -> &'static str {
        match (self.pid1, ending) {
            (false, _) => "spore exits",
            (true, Ending::Reboot) => "the machine reboots",
            (true, Ending::Poweroff) => "the machine powers off",
            (true, Ending::Halt) => "the machine halts",
        }
    }

    /// Starts an orderly shutdown ending in `ending`; later requests keep the
    /// first one.
    pub fn shut_down(&self, ending: Ending) {
        if self.ending.get().is_none() {
            self.ending.set(Some(ending));
            runtime::journal::note(format_args!(
                "shutting down: services stop in order, then {}",
                self.after_stop(ending)
            ));
            if let Some(sender) = self.with_runtime(|runtime| runtime.sender()) {
                // The event loop feeds it; it cannot be closed while we run.
                let _ = sender.try_send(Input::Event(Event::Shutdown));
            }
        }
    }

    /// A power method from a control channel.
    pub fn request_power(&self, power: Power) {
        self.shut_down(match power {
            Power::Reboot => Ending::Reboot,
            Power::Poweroff => Ending::Poweroff,
        });
    }

    /// The `node.info` document.
    pub fn info(&self) -> Value {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        json!({
            "hostname": hostname,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "time": nodeapi::api::unix_time(),
            "pid1": self.pid1,
            "clock": crate::sntp::status_json(),
            "pid": std::process::id(),
            "control_socket": self.socket.display().to_string(),
            "service_file_errors": self.config_errors,
            "deploys": self.deploys.clone(),
            "artifacts": self.artifacts.clone(),
            "boot": self.updates.facts(),
            "startup": self.startup.borrow().clone(),
            "reexec": self.reexec.last.try_borrow().map(|v| v.clone()).unwrap_or(Value::Null),
            "rpc": self.rpc_facts(),
        })
    }

    /// The RPC API's state, with the connections it refused since spore
    /// started, by reason (`refusals`).
    fn rpc_facts(&self) -> Value {
        let mut facts = self
            .posture
            .try_borrow()
            .map(|p| p.clone())
            .unwrap_or(Value::Null);
        let server = self.rpc_server.try_borrow().ok().and_then(|s| s.upgrade());
        if let (Some(server), Value::Object(map)) = (server, &mut facts) {
            map.insert("refusals".into(), json!(server.refusals()));
        }
        facts
    }

    /// Adds a listener bound later (the mycelium address) to the posture.
    pub fn add_listen_address(&self, address: String) {
        let Ok(mut posture) = self.posture.try_borrow_mut() else {
            return;
        };
        if let Some(list) = posture.get_mut("listen").and_then(Value::as_array_mut) {
            list.push(Value::String(address));
        }
        if let Some(open) = posture.get_mut("open") {
            *open = Value::Bool(true);
        }
        // The overlay listener is bound now: no longer pending.
        if let Some(pending) = posture.get_mut("pending").and_then(Value::as_array_mut) {
            pending.retain(|p| !p.as_str().is_some_and(|p| p.starts_with("mycelium:")));
        }
    }

    /// Records the RPC API's state.
    pub fn set_posture(&self, posture: Value) {
        if let Ok(mut current) = self.posture.try_borrow_mut() {
            *current = posture;
        }
    }
}

impl noderpc::server::Dispatcher for Node {
    fn call(
        &self,
        operator: &rpc::authorized::Operator,
        method: &str,
        params: &Value,
        chunk: Option<Vec<u8>>,
    ) -> Result<nodeapi::api::Reply, nodeapi::api::ApiError> {
        match self.runtime.try_borrow_mut() {
            Ok(mut runtime) => {
                nodeapi::api::call_with(&mut runtime, operator.role, method, params, chunk, self)
            }
            Err(_) => Err(nodeapi::api::ApiError {
                code: nodeapi::api::code::INVALID_REQUEST,
                message: "busy; try again".into(),
            }),
        }
    }

    fn power(&self, power: Power) {
        self.request_power(power);
    }

    fn log(&self, line: String) {
        runtime::journal::note(line);
    }

    fn record(&self, line: String) {
        runtime::journal::record(line);
    }
}

impl nodeapi::api::NodeMethods for Node {
    fn info(&self) -> Value {
        Node::info(self)
    }

    fn update(
        &self,
        runtime: &mut NodeApi,
        params: &serde_json::Map<String, Value>,
    ) -> Result<nodeapi::api::Reply, nodeapi::api::ApiError> {
        crate::update::stage(self, runtime, params)
    }

    fn reexec(
        &self,
        runtime: &mut NodeApi,
        params: &serde_json::Map<String, Value>,
    ) -> Result<nodeapi::api::Reply, nodeapi::api::ApiError> {
        crate::reexec::stage(self, runtime, params)
    }
}

impl crate::activation::Host for Node {
    fn api(&self) -> Option<std::cell::RefMut<'_, NodeApi>> {
        match self.runtime.try_borrow_mut() {
            Ok(api) => Some(api),
            Err(_) => {
                runtime::journal::note("internal error: the runtime is busy; call skipped");
                None
            }
        }
    }

    fn executor(&self) -> &'static LocalExecutor<'static> {
        self.executor
    }

    fn activation(&self) -> &crate::activation::Activation {
        &self.activation
    }
}

impl crate::reexec::Host for Node {
    fn with_api<T>(&self, f: impl FnOnce(&mut NodeApi) -> T) -> Option<T> {
        self.with_runtime(f)
    }

    fn reexec(&self) -> &crate::reexec::Reexec {
        &self.reexec
    }

    fn executor(&self) -> &'static LocalExecutor<'static> {
        self.executor
    }

    fn on_trial(&self) -> bool {
        self.updates.on_trial()
    }

    fn build_id(&self) -> String {
        self.updates.build_id()
    }

    fn update_keys(&self) -> Vec<String> {
        self.updates.keys().to_vec()
    }

    fn whereabouts(&self) -> crate::reexec::Whereabouts {
        crate::reexec::Whereabouts {
            pid1: self.pid1,
            paths: self.paths.clone(),
            kept_logs: self.kept_logs.clone(),
            uptime: self.started.elapsed(),
            sockets: self.activation.carried(),
            startup: self
                .startup
                .try_borrow()
                .map(|v| v.clone())
                .unwrap_or(Value::Null),
        }
    }
}

impl crate::update::Host for Node {
    fn with_api<T>(&self, f: impl FnOnce(&mut NodeApi) -> T) -> Option<T> {
        self.with_runtime(f)
    }

    fn reboot(&self) {
        self.shut_down(Ending::Reboot);
    }

    fn updates(&self) -> &crate::update::Updates {
        &self.updates
    }
}
