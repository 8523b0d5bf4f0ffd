//! The one table of methods: every name, summary, parameter and role comes
//! from [`Method`]'s exhaustive matches, so a method cannot exist in one
//! place and be missing in another (the compiler refuses a new variant
//! until each match names it). `rpc.discover` and the role check are
//! derived from it.

use serde_json::{json, Map, Value};

use crate::cap::capped;
use crate::rpc::{code, ApiError, Role};

/// A parameter's JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON string.
    String,
    /// A non-negative JSON integer.
    Integer,
    /// `true` or `false`.
    Boolean,
}

impl Kind {
    /// The JSON Schema type name.
    pub fn word(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
        }
    }

    fn admits(self, value: &Value) -> bool {
        match self {
            Kind::String => value.is_string(),
            Kind::Integer => value.is_u64(),
            Kind::Boolean => value.is_boolean(),
        }
    }
}

/// One parameter of a method.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its key in the params object.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether a call must carry it.
    pub required: bool,
}

const fn param(name: &'static str, kind: Kind, required: bool) -> Param {
    Param {
        name,
        kind,
        required,
    }
}

const NAME: Param = param("name", Kind::String, true);
/// A service to start from, or none.
const ANY_NAME: Param = param("name", Kind::String, false);
const WAIT: Param = param("wait", Kind::Boolean, false);
const TIMEOUT: Param = param("timeout_ms", Kind::Integer, false);
const LINES: Param = param("lines", Kind::Integer, false);
const FOLLOW: Param = param("follow", Kind::Boolean, false);
/// Lines at or after this time (Unix milliseconds).
const SINCE: Param = param("since", Kind::Integer, false);
/// Lines at or before this time (Unix milliseconds).
const UNTIL: Param = param("until", Kind::Integer, false);
/// Lines of the start of spore this many starts ago (0: this one).
const BOOT: Param = param("boot", Kind::Integer, false);
/// Only lines of this syslog priority or more urgent (0 emerg … 7 debug).
const PRIORITY: Param = param("priority", Kind::Integer, false);

const DEPLOY: [Param; 5] = [
    param("toml", Kind::String, true),
    param("start", Kind::Boolean, false),
    param("file", Kind::String, false),
    WAIT,
    TIMEOUT,
];
const PAGE: [Param; 2] = [
    param("after", Kind::String, false),
    param("limit", Kind::Integer, false),
];
const SECRET: [Param; 2] = [NAME, param("value", Kind::String, true)];
/// The largest chunk one `artifact.put` carries, decoded: in base64 with
/// its envelope it stays well inside a signed frame (1 MiB) and a control
/// socket line (1 MiB).
pub const MAX_ARTIFACT_CHUNK: usize = 512 * 1024;

/// An artifact's name: the SHA-256 of its bytes, 64 hex digits.
const SHA256: Param = param("sha256", Kind::String, true);
const ARTIFACT_PUT: [Param; 6] = [
    SHA256,
    param("size", Kind::Integer, true),
    param("offset", Kind::Integer, false),
    param("data", Kind::String, false),
    param("bytes", Kind::Integer, false),
    param("executable", Kind::Boolean, false),
];

const UPDATE: [Param; 2] = [SHA256, param("signature", Kind::String, false)];
/// The new spore binary: an artifact held (sha256), a file on the node
/// (path), or the binary the node ran before its last re-exec (previous).
const REEXEC: [Param; 4] = [
    param("sha256", Kind::String, false),
    param("path", Kind::String, false),
    param("previous", Kind::Boolean, false),
    param("signature", Kind::String, false),
];

/// The length of the raw chunk that follows a request as a frame of its
/// own: `artifact.put` with `bytes` (the signed session carries the chunk
/// raw, sealed, in the next frame, not base64 in the JSON); None for any
/// other request.
pub fn raw_chunk(method: &str, params: &serde_json::Value) -> Option<u64> {
    (method == Method::ArtifactPut.name())
        .then(|| params.get("bytes").and_then(serde_json::Value::as_u64))
        .flatten()
}

/// Every method a control channel serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `node.info`
    NodeInfo,
    /// `node.journal`
    NodeJournal,
    /// `node.logs`
    NodeLogs,
    /// `node.metrics`
    NodeMetrics,
    /// `service.list`
    ServiceList,
    /// `service.status`
    ServiceStatus,
    /// `service.start`
    ServiceStart,
    /// `service.stop`
    ServiceStop,
    /// `service.restart`
    ServiceRestart,
    /// `service.logs`
    ServiceLogs,
    /// `service.why`
    ServiceWhy,
    /// `service.tree`
    ServiceTree,
    /// `service.definition`
    ServiceDefinition,
    /// `service.deploy`
    ServiceDeploy,
    /// `service.remove`
    ServiceRemove,
    /// `secret.set`
    SecretSet,
    /// `secret.list`
    SecretList,
    /// `secret.remove`
    SecretRemove,
    /// `node.reload`
    NodeReload,
    /// `artifact.put`
    ArtifactPut,
    /// `artifact.list`
    ArtifactList,
    /// `artifact.remove`
    ArtifactRemove,
    /// `node.reboot`
    NodeReboot,
    /// `node.poweroff`
    NodePoweroff,
    /// `node.update`
    NodeUpdate,
    /// `node.reexec`
    NodeReexec,
    /// `rpc.discover`
    Discover,
}

impl Method {
    /// Every method, in the order `rpc.discover` lists them.
    pub const ALL: [Method; 27] = [
        Method::NodeInfo,
        Method::NodeJournal,
        Method::NodeLogs,
        Method::NodeMetrics,
        Method::ServiceList,
        Method::ServiceStatus,
        Method::ServiceStart,
        Method::ServiceStop,
        Method::ServiceRestart,
        Method::ServiceLogs,
        Method::ServiceWhy,
        Method::ServiceTree,
        Method::ServiceDefinition,
        Method::ServiceDeploy,
        Method::ServiceRemove,
        Method::SecretSet,
        Method::SecretList,
        Method::SecretRemove,
        Method::NodeReload,
        Method::ArtifactPut,
        Method::ArtifactList,
        Method::ArtifactRemove,
        Method::NodeReboot,
        Method::NodePoweroff,
        Method::NodeUpdate,
        Method::NodeReexec,
        Method::Discover,
    ];

    /// The method called `name`, if there is one.
    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Its dot name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Method::NodeInfo => "node.info",
            Method::NodeJournal => "node.journal",
            Method::NodeLogs => "node.logs",
            Method::NodeMetrics => "node.metrics",
            Method::ServiceList => "service.list",
            Method::ServiceStatus => "service.status",
            Method::ServiceStart => "service.start",
            Method::ServiceStop => "service.stop",
            Method::ServiceRestart => "service.restart",
            Method::ServiceLogs => "service.logs",
            Method::ServiceWhy => "service.why",
            Method::ServiceTree => "service.tree",
            Method::ServiceDefinition => "service.definition",
            Method::ServiceDeploy => "service.deploy",
            Method::ServiceRemove => "service.remove",
            Method::SecretSet => "secret.set",
            Method::SecretList => "secret.list",
            Method::SecretRemove => "secret.remove",
            Method::NodeReload => "node.reload",
            Method::ArtifactPut => "artifact.put",
            Method::ArtifactList => "artifact.list",
            Method::ArtifactRemove => "artifact.remove",
            Method::NodeReboot => "node.reboot",
            Method::NodePoweroff => "node.poweroff",
            Method::NodeUpdate => "node.update",
            Method::NodeReexec => "node.reexec",
            Method::Discover => "rpc.discover",
        }
    }

    /// One line for people.
    pub fn summary(self) -> &'static str {
        match self {
            Method::NodeInfo => "Hostname, version, uptime and the node's posture",
            Method::NodeJournal => "spore's own lines (state changes, audit, errors); with follow, every new one after them",
            Method::NodeLogs => "The last lines of every service and of spore itself, merged by time, each with its service's name",

            Method::NodeMetrics => "The node's figures for a metrics system: its start time, version and build id, and per service its state, readiness, restarts, last exit code and, with a cgroup, CPU time, memory and OOM kills (sporectl metrics prints them in Prometheus' text format); with limit or after, one page of the services, by name, and the name to ask the next page after",
            Method::ServiceList => "Every service with its state, by name; with limit or after, one page of them and the name to ask the next page after",
            Method::ServiceStatus => "One service in detail",
            Method::ServiceStart => "Start a service and what it requires; with wait, answer once it is ready or has failed",
            Method::ServiceStop => "Stop a service (stop signal, grace, SIGKILL)",
            Method::ServiceRestart => "Stop a service if it runs, then start it; with wait, answer once it is ready or has failed",
            Method::ServiceLogs => "The last lines of a service's output; with follow, every new line and state change after them",
            Method::ServiceWhy => "Why a service is not running, link by link: the service that holds it back (blocked: waiting for X), and so on down to one held back by nothing, each with its state, last exit, restarts and last lines; and the chain in one sentence (summary)",
            Method::ServiceTree => "The dependency graph as it stands: each service with its state and, under it, what it requires, wants and is ordered after; from NAME, or from the services nothing depends on",
            Method::ServiceDefinition => "The service file as the node holds it (text), where it lives (file) and whether it came with the image or was deployed (source): what `sporectl cat` prints and what a rollout restores when it reverts (admin: a file may hold settings a reader should not see)",
            Method::ServiceDeploy => "Add or replace a service from its TOML text: validated whole against the others, written atomically, started when its status is start (or `start` is true); an identical definition changes nothing",
            Method::ServiceRemove => "Stop a service, then delete its file",
            Method::SecretSet => "Store a secret (0600 under the state directory; never echoed or logged)",
            Method::SecretList => "The names of stored secrets",
            Method::SecretRemove => "Delete a stored secret (services that loaded it keep their copy until they stop)",
            Method::NodeReload => "Read the image's service files and the deployed layer again and apply what changed",
            Method::ArtifactPut => "Store a file named by its SHA-256, in chunks (data: base64, or on the signed session bytes: N and the chunk raw in the next frame; at most 512 KiB each, at offset: the bytes held): verified when the last arrives, then visible read-only; without either, how many bytes of it the node holds (to resume)",
            Method::ArtifactList => "The artifacts held, verified or under way, with the store's use and quota",
            Method::ArtifactRemove => "Delete an artifact, verified or under way",
            Method::NodeReboot => "Stop every service in order, then reboot",
            Method::NodePoweroff => "Stop every service in order, then power off",
            Method::NodeUpdate => "Write a unified kernel image held as an artifact (sha256; signature: an ssh-keygen -Y sign signature in namespace spore-update, required when the node has [update] keys) to the boot slot not in use, read it back, and set UEFI BootNext to it: the next boot tries it once, and spore there confirms it or the old slot comes back",
            Method::NodeReexec => "Replace the running spore with another binary without stopping a service: an artifact held (sha256), a file on the node (path) or, with previous, the binary it ran before its last re-exec (a rollout's revert), with its spore-update signature when the node has [update] keys (not for previous: it ran here already), checked first by running it; it execs in place as the same process, takes up every service's process, output pipes, restart counts and timers, and answers again on the same addresses (sessions drop: reconnect). A new binary that cannot take the state up within seconds hands it back to the old one",
            Method::Discover => "This list, as an OpenRPC document",
        }
    }

    /// Its parameters.
    pub fn params(self) -> &'static [Param] {
        match self {
            Method::ServiceList | Method::NodeMetrics => &PAGE,
            Method::NodeInfo
            | Method::SecretList
            | Method::NodeReload
            | Method::NodeReboot
            | Method::NodePoweroff
            | Method::Discover => &[],
            Method::NodeJournal => &[LINES, FOLLOW, SINCE, UNTIL, BOOT, PRIORITY],
            Method::NodeLogs => &[LINES, SINCE, UNTIL, BOOT, PRIORITY],
            Method::ServiceStatus
            | Method::ServiceStop
            | Method::ServiceRemove
            | Method::ServiceWhy
            | Method::ServiceDefinition => &[NAME],
            Method::ServiceTree => &[ANY_NAME],
            Method::SecretRemove => &[NAME],
            Method::ArtifactPut => &ARTIFACT_PUT,
            Method::ArtifactList => &[],
            Method::ArtifactRemove => &[SHA256],
            Method::ServiceStart | Method::ServiceRestart => &[NAME, WAIT, TIMEOUT],
            Method::ServiceLogs => &[NAME, LINES, FOLLOW, SINCE, UNTIL, BOOT, PRIORITY],
            Method::ServiceDeploy => &DEPLOY,
            Method::SecretSet => &SECRET,
            Method::NodeUpdate => &UPDATE,
            Method::NodeReexec => &REEXEC,
        }
    }

    /// The least role allowed to call it.
    pub fn role(self) -> Role {
        match self {
            Method::NodeInfo
            | Method::NodeJournal
            | Method::NodeLogs
            | Method::NodeMetrics
            | Method::ServiceList
            | Method::ServiceStatus
            | Method::ServiceLogs
            | Method::ServiceWhy
            | Method::ServiceTree
            | Method::ArtifactList
            | Method::Discover => Role::Reader,
            Method::ServiceStart
            | Method::ServiceStop
            | Method::ServiceRestart
            | Method::ServiceDefinition
            | Method::ServiceDeploy
            | Method::ServiceRemove
            | Method::SecretSet
            | Method::SecretList
            | Method::SecretRemove
            | Method::NodeReload
            | Method::ArtifactPut
            | Method::ArtifactRemove
            | Method::NodeReboot
            | Method::NodePoweroff
            | Method::NodeUpdate
            | Method::NodeReexec => Role::Admin,
        }
    }

    /// Whether it changes anything on the node (what a fleet command may
    /// not send to nodes whose keys came from an unauthenticated beacon).
    pub fn changes_state(self) -> bool {
        !matches!(
            self,
            Method::NodeInfo
                | Method::NodeJournal
                | Method::NodeLogs
                | Method::NodeMetrics
                | Method::ServiceList
                | Method::ServiceStatus
                | Method::ServiceLogs
                | Method::ServiceWhy
                | Method::ServiceTree
                | Method::ServiceDefinition
                | Method::SecretList
                | Method::ArtifactList
                | Method::Discover
        )
    }

    /// Whether a fleet command asks before sending it to many nodes: it
    /// ends the node or deletes something.
    pub fn asks_first(self) -> bool {
        matches!(
            self,
            Method::NodeReboot
                | Method::NodePoweroff
                | Method::NodeUpdate
                | Method::NodeReexec
                | Method::ServiceRemove
                | Method::SecretSet
                | Method::SecretRemove
                | Method::ArtifactRemove
        )
    }

    /// Checks `params` against the table: an object (or absent), no
    /// unknown key, every required one, each of its type.
    ///
    /// Checked on the caller's map, and copied only once it passes, into
    /// [`Params`], which wipes its strings when dropped: a refused
    /// `secret.set` leaves no copy of the value, an accepted one none
    /// beyond the call.
    pub fn check(self, params: &Value) -> Result<Params, ApiError> {
        let empty = Map::new();
        let object = match params {
            Value::Null => &empty,
            Value::Object(map) => map,
            _ => {
                return Err(ApiError::new(
                    code::INVALID_PARAMS,
                    "params must be an object",
                ))
            }
        };
        for key in object.keys() {
            if !self.params().iter().any(|p| p.name == key) {
                return Err(ApiError::new(
                    code::INVALID_PARAMS,
                    format!(
                        "unknown parameter `{}` for {}",
                        capped(key, 256),
                        self.name()
                    ),
                ));
            }
        }
        for p in self.params() {
            match object.get(p.name) {
                None if p.required => {
                    return Err(ApiError::new(
                        code::INVALID_PARAMS,
                        format!("{} needs `{}` ({})", self.name(), p.name, p.kind.word()),
                    ))
                }
                Some(value) if !p.kind.admits(value) => {
                    return Err(ApiError::new(
                        code::INVALID_PARAMS,
                        format!("`{}` must be a {}", p.name, p.kind.word()),
                    ))
                }
                _ => {}
            }
        }
        Ok(Params(object.clone()))
    }
}

/// Checked params: a map whose strings are wiped when it is dropped (it
/// may hold a secret's value).
#[derive(Debug, Default)]
pub struct Params(Map<String, Value>);

impl std::ops::Deref for Params {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl Drop for Params {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            crate::wipe::wipe_strings(value);
        }
    }
}

/// The OpenRPC document for every [`Method`].
pub fn discover() -> Value {
    let methods: Vec<Value> = Method::ALL
        .iter()
        .map(|m| {
            let params: Vec<Value> = m
                .params()
                .iter()
                .map(|p| json!({ "name": p.name, "required": p.required, "schema": { "type": p.kind.word() } }))
                .collect();
            json!({
                "name": m.name(),
                "summary": m.summary(),
                "params": params,
                "result": { "name": "result", "schema": {} },
                "x-spore-role": if m.role() == Role::Admin { "admin" } else { "reader" },
            })
        })
        .collect();
    json!({
        "openrpc": "1.2.6",
        "info": { "title": "spore", "version": env!("CARGO_PKG_VERSION") },
        "methods": methods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_parses_back_from_its_name() {
        for method in Method::ALL {
            assert_eq!(Method::parse(method.name()), Some(method));
        }
        assert_eq!(Method::parse("service.lst"), None);
    }

    #[test]
    fn discover_lists_every_method_with_its_role() {
        let doc = discover();
        let listed: Vec<&str> = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(listed, names);
        assert_eq!(doc["methods"][0]["x-spore-role"], "reader");
    }

    #[test]
    fn params_are_checked_against_the_table() {
        let start = Method::ServiceStart;
        assert!(start.check(&json!({"name": "a", "wait": true})).is_ok());
        let unknown = start
            .check(&json!({"name": "a", "wiat": true}))
            .unwrap_err();
        assert!(unknown.message.contains("unknown parameter `wiat`"));
        let missing = start.check(&json!({})).unwrap_err();
        assert_eq!(missing.code, code::INVALID_PARAMS);
        let typed = start.check(&json!({"name": 3})).unwrap_err();
        assert!(typed.message.contains("must be a string"));
        assert!(start.check(&json!([1])).is_err());
    }
}
