//! The operator's vocabulary, shared by `sporectl` (signed RPC) and
//! `spore`'s local client (the control socket): the same verbs make the
//! same calls and print the same answers, whichever socket carries them.

use std::time::Duration;

use proto::method::Method;
use serde_json::{json, Value};

use crate::display;

mod render;

pub use render::render;

/// The name `logs` takes for the node's own journal.
pub const JOURNAL: &str = "spore";

/// One verb of the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `info`: the node.
    Info,
    /// `metrics`: the node's figures in Prometheus' text format.
    Metrics,
    /// `list`: every service.
    List,
    /// `status NAME…`: services in detail.
    Status,
    /// `is-active NAME…`: each service's state word; exit 0 when all are up.
    IsActive,
    /// `is-failed NAME…`: each service's state word; exit 0 when one failed.
    IsFailed,
    /// `start NAME…`.
    Start,
    /// `stop NAME…`.
    Stop,
    /// `restart NAME…`.
    Restart,
    /// `logs NAME` (`spore`: the node's journal).
    Logs,
    /// `why NAME`: why it is not running.
    Why,
    /// `tree [NAME]`: the dependency graph.
    Tree,
    /// `cat NAME…`: each service's file as the node holds it.
    Cat,
    /// `deploy FILE…`.
    Deploy,
    /// `remove NAME…`.
    Remove,
    /// `reload`.
    Reload,
    /// `secret set NAME`.
    SecretSet,
    /// `secret list`.
    SecretList,
    /// `secret rm NAME`.
    SecretRm,
    /// `reboot`.
    Reboot,
    /// `poweroff`.
    Poweroff,
    /// `discover`: the OpenRPC document.
    Discover,
    /// `artifact put FILE…`: each file stored on the node, in chunks.
    ArtifactPut,
    /// `artifact list`.
    ArtifactList,
    /// `artifact rm SHA256…`.
    ArtifactRm,
    /// `update --image FILE`: the image sent as an artifact, then staged
    /// in the boot slot not in use.
    Update,
    /// `update --spore FILE`: a spore binary sent as an artifact, then
    /// exec'd in place of the running one (a live re-exec).
    Reexec,
}

impl Verb {
    /// The verb spelled `word` (`secret` takes its action: `set`, `list`,
    /// `rm`).
    pub fn parse(word: &str, action: Option<&str>) -> Option<Verb> {
        Some(match (word, action) {
            ("info", _) => Verb::Info,
            ("metrics", _) => Verb::Metrics,
            ("list", _) => Verb::List,
            ("status", _) => Verb::Status,
            ("is-active", _) => Verb::IsActive,
            ("is-failed", _) => Verb::IsFailed,
            ("start", _) => Verb::Start,
            ("stop", _) => Verb::Stop,
            ("restart", _) => Verb::Restart,
            ("logs", _) => Verb::Logs,
            ("why", _) => Verb::Why,
            ("tree", _) => Verb::Tree,
            ("cat", _) => Verb::Cat,
            ("deploy", _) => Verb::Deploy,
            ("remove", _) => Verb::Remove,
            ("reload", _) => Verb::Reload,
            ("reexec", _) => Verb::Reexec,
            ("secret", Some("set")) => Verb::SecretSet,
            ("secret", Some("list")) => Verb::SecretList,
            ("secret", Some("rm")) => Verb::SecretRm,
            ("artifact", Some("put")) => Verb::ArtifactPut,
            ("artifact", Some("list")) => Verb::ArtifactList,
            ("artifact", Some("rm")) => Verb::ArtifactRm,
            ("reboot", _) => Verb::Reboot,
            ("update", _) => Verb::Update,
            ("poweroff", _) => Verb::Poweroff,
            ("discover", _) => Verb::Discover,
            _ => return None,
        })
    }

    /// Whether the verb takes one or more operands (services or files).
    pub fn takes_operands(self) -> bool {
        matches!(
            self,
            Verb::Status
                | Verb::IsActive
                | Verb::IsFailed
                | Verb::Start
                | Verb::Stop
                | Verb::Restart
                | Verb::Logs
                | Verb::Why
                | Verb::Tree
                | Verb::Cat
                | Verb::Deploy
                | Verb::Remove
                | Verb::SecretSet
                | Verb::SecretRm
                | Verb::ArtifactPut
                | Verb::ArtifactRm
                | Verb::Update
                | Verb::Reexec
        )
    }

    /// The method it calls on `operand`.
    pub fn method(self, operand: &str) -> Method {
        match self {
            Verb::Info => Method::NodeInfo,
            Verb::Metrics => Method::NodeMetrics,
            Verb::List => Method::ServiceList,
            Verb::Status | Verb::IsActive | Verb::IsFailed => Method::ServiceStatus,
            Verb::Start => Method::ServiceStart,
            Verb::Stop => Method::ServiceStop,
            Verb::Restart => Method::ServiceRestart,
            Verb::Logs if operand == JOURNAL => Method::NodeJournal,
            Verb::Logs if operand.is_empty() => Method::NodeLogs,
            Verb::Logs => Method::ServiceLogs,
            Verb::Why => Method::ServiceWhy,
            Verb::Tree => Method::ServiceTree,
            Verb::Cat => Method::ServiceDefinition,
            Verb::Deploy => Method::ServiceDeploy,
            Verb::Remove => Method::ServiceRemove,
            Verb::Reload => Method::NodeReload,
            Verb::SecretSet => Method::SecretSet,
            Verb::SecretList => Method::SecretList,
            Verb::SecretRm => Method::SecretRemove,
            Verb::Reboot => Method::NodeReboot,
            Verb::Poweroff => Method::NodePoweroff,
            Verb::Discover => Method::Discover,
            Verb::ArtifactPut => Method::ArtifactPut,
            Verb::ArtifactList => Method::ArtifactList,
            Verb::ArtifactRm => Method::ArtifactRemove,
            Verb::Update => Method::NodeUpdate,
            Verb::Reexec => Method::NodeReexec,
        }
    }
}

/// How a call is made, beyond its verb and operand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// Lines of backlog for `logs`.
    pub lines: u64,
    /// `logs -f`.
    pub follow: bool,
    /// `deploy --start`.
    pub start: bool,
    /// How long start, restart and deploy wait for the outcome (None:
    /// `--no-wait`).
    pub wait: Option<Duration>,
    /// `logs --since`: lines at or after this (Unix milliseconds).
    pub since: Option<u64>,
    /// `logs --until`: lines at or before this (Unix milliseconds).
    pub until: Option<u64>,
    /// `logs --boot -N`: the lines an earlier start of spore kept, N starts ago.
    pub boot: Option<u64>,
    /// `logs -p LEVEL`: only lines this urgent or more (0 emerg … 7 debug).
    pub priority: Option<u64>,
}

/// `-p` as journalctl takes it: a syslog level's name or number.
pub fn parse_priority(text: &str) -> Result<u64, String> {
    const NAMES: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    if let Some(level) = NAMES.iter().position(|n| *n == text) {
        return Ok(level as u64);
    }
    match text.parse::<u64>() {
        Ok(level) if level <= 7 => Ok(level),
        _ => Err(format!(
            "`{text}`: a priority is 0-7 or one of {}",
            NAMES.join(", ")
        )),
    }
}

/// `--boot` as journalctl takes it: `-1` (or `1`) is the start before this
/// one, `0` this one.
pub fn parse_boot(text: &str) -> Result<u64, String> {
    text.trim_start_matches('-').parse::<u64>().map_err(|_| {
        format!("`{text}`: expected a start of spore, as -1 (the one before this), -2, …")
    })
}

/// `--since`/`--until` as a call carries them: the moment `text` names
/// (`10m ago`, `today`, `2026-12-07T03:00:00Z`: [`timespan::moment`]), in
/// Unix milliseconds.
pub fn parse_moment(text: &str) -> Result<u64, String> {
    timespan::moment(text, std::time::SystemTime::now())
        .map(timespan::unix_millis)
        .map_err(|e| e.to_string())
}

/// A problem found before anything was sent.
#[derive(Debug, thiserror::Error)]
pub enum VerbError {
    /// A file to deploy (or a secret's file, or stdin) could not be read.
    #[error("cannot read {file}: {error}")]
    Read {
        /// The file as given.
        file: String,
        /// Why.
        error: std::io::Error,
    },
    /// The secret's value is empty.
    #[error("the secret is empty (nothing came on stdin or in --file); nothing was stored")]
    EmptySecret,
}

/// A secret's value: from `file`, else asked on the terminal with echo off
/// (one line), else all of stdin; without a trailing newline, never empty.
pub fn read_secret(
    name: &str,
    file: Option<&std::path::Path>,
) -> Result<zeroize::Zeroizing<String>, VerbError> {
    use std::io::Read;
    let mut value = zeroize::Zeroizing::new(String::new());
    let failed = |file: &str| {
        let file = file.to_owned();
        move |error| VerbError::Read { file, error }
    };
    match file {
        Some(path) => {
            *value = std::fs::read_to_string(path).map_err(failed(&path.display().to_string()))?;
        }
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            let typed =
                crate::identity::read_hidden(&format!("Value for secret {name} (not shown): "))
                    .map_err(failed("the terminal"))?;
            value.push_str(&typed);
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(failed("stdin"))?;
        }
    }
    if value.ends_with('\n') {
        value.pop();
    }
    if value.is_empty() {
        return Err(VerbError::EmptySecret);
    }
    Ok(value)
}

/// `90`, `90s`, `1500ms`, `2m` as a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a duration like 90, 30s, 1500ms or 2m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("`{text}`: the unit is ms, s or m")),
    }
}

/// The method and params for `verb` on `operand`; `secret` is the value
/// of `secret set` (read by the caller from a file, a prompt or stdin).
pub fn request(
    verb: Verb,
    operand: &str,
    shape: &Shape,
    secret: Option<&str>,
) -> Result<(Method, Value), VerbError> {
    let method = verb.method(operand);
    let mut params = match method {
        Method::ServiceLogs => {
            json!({ "name": operand, "lines": shape.lines, "follow": shape.follow })
        }
        Method::NodeJournal => json!({ "lines": shape.lines, "follow": shape.follow }),
        Method::NodeLogs => json!({ "lines": shape.lines }),
        Method::ServiceDeploy => {
            let text = std::fs::read_to_string(operand).map_err(|error| VerbError::Read {
                file: operand.to_owned(),
                error,
            })?;
            json!({ "toml": text, "start": shape.start, "file": operand })
        }
        Method::SecretSet => json!({ "name": operand, "value": secret.unwrap_or_default() }),
        Method::ArtifactRemove => json!({ "sha256": operand }),
        // With no name: the whole graph.
        Method::ServiceTree if operand.is_empty() => json!({}),
        // The image, or the spore binary, sent first as an artifact (see
        // crate::upload); the signature's text, when there is one, comes as
        // `secret`.
        Method::NodeUpdate | Method::NodeReexec => {
            let source = crate::upload::Source::read(operand).map_err(|e| VerbError::Read {
                file: e.file,
                error: e.error,
            })?;
            let mut params = json!({ "sha256": source.digest.hex() });
            if let (Some(signature), Value::Object(map)) = (secret, &mut params) {
                map.insert("signature".into(), json!(signature));
            }
            params
        }
        // Streamed in chunks by the caller (see crate::upload); this is the
        // first call, which asks how much of it the node holds.
        Method::ArtifactPut => crate::upload::Source::read(operand)
            .map_err(|e| VerbError::Read {
                file: e.file,
                error: e.error,
            })?
            .held_params(),
        _ if verb.takes_operands() => json!({ "name": operand }),
        _ => json!({}),
    };
    if let (true, Value::Object(map)) = (
        matches!(
            method,
            Method::ServiceLogs | Method::NodeJournal | Method::NodeLogs
        ),
        &mut params,
    ) {
        for (key, at) in [
            ("since", shape.since),
            ("until", shape.until),
            ("boot", shape.boot),
            ("priority", shape.priority),
        ] {
            if let Some(at) = at {
                map.insert(key.into(), json!(at));
            }
        }
    }
    let waits = matches!(
        method,
        Method::ServiceStart | Method::ServiceRestart | Method::ServiceDeploy
    );
    if let (Some(timeout), true, Value::Object(map)) = (shape.wait, waits, &mut params) {
        map.insert("wait".into(), json!(true));
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        map.insert("timeout_ms".into(), json!(ms));
    }
    Ok((method, params))
}

/// Services per page when `list` asks a node for them (`service.list` with
/// `limit`; a node answers a page of at most this many, and fewer when
/// they would not fit in one frame).
pub const LIST_PAGE: u64 = 500;

/// Whether `method` is asked in pages (`service.list`, `node.metrics`).
pub fn is_paged(method: &str) -> bool {
    method == Method::ServiceList.name() || method == Method::NodeMetrics.name()
}

/// The params of the first call of `method`: a paged one is asked a page
/// at a time, everything else whole.
pub fn first_page(method: &str, params: Value) -> Value {
    if !is_paged(method) {
        return params;
    }
    json!({ "limit": LIST_PAGE })
}

/// Folds one page of a paged answer into `whole` (Null before the first):
/// `service.list`'s pages into one array of services, `node.metrics`'s
/// into its first page's figures with every page's services. The params
/// of the next call, or None when `answer` was the last page (or not
/// paged: an older node answers whole, kept as it is).
pub fn next_page(answer: Value, whole: &mut Value) -> Option<Value> {
    let mut answer = answer;
    let page = match answer
        .as_object_mut()
        .and_then(|map| map.remove("services"))
    {
        Some(Value::Array(page)) => page,
        other => {
            // Not a page: the whole answer (its services put back).
            if let (Some(services), Value::Object(map)) = (other, &mut answer) {
                map.insert("services".into(), services);
            }
            *whole = answer;
            return None;
        }
    };
    let next = answer
        .as_object_mut()
        .and_then(|map| map.remove("next"))
        .filter(Value::is_string);
    // service.list's page has nothing else; node.metrics' has its figures.
    let figures = answer.as_object().is_some_and(|map| !map.is_empty());
    match whole {
        Value::Array(services) => services.extend(page),
        Value::Object(map) => {
            if let Some(Value::Array(services)) = map.get_mut("services") {
                services.extend(page);
            }
        }
        _ if figures => {
            if let Value::Object(map) = &mut answer {
                map.insert("services".into(), Value::Array(page));
            }
            *whole = answer;
        }
        _ => *whole = Value::Array(page),
    }
    Some(json!({ "limit": LIST_PAGE, "after": next? }))
}

/// True unless `result` says a service it waited for did not come up.
pub fn came_up(result: &Value) -> bool {
    result
        .get("outcome")
        .is_none_or(|outcome| outcome == "ready")
}

/// How a command's answers make its exit status, as systemctl's do where
/// it has the command: `status` 0 when every service runs (or its oneshot
/// succeeded), 3 when one does not, 4 when one is unknown; `is-active` 0
/// when all are up, else 3; `is-failed` 0 when one has failed, else 1;
/// `start`/`restart`/`deploy` 1 when a service did not come up; `reload` 1
/// when it rejected a file; any other error answer 1.
#[derive(Debug, Clone)]
pub struct Tally {
    verb: Verb,
    codes: Vec<u8>,
}

impl Tally {
    /// No answers yet.
    pub fn new(verb: Verb) -> Self {
        Self {
            verb,
            codes: Vec::new(),
        }
    }

    /// Counts one answer.
    pub fn answer(&mut self, result: &Value) {
        let code = match self.verb {
            Verb::Status | Verb::IsActive => {
                if is_active(result) {
                    0
                } else {
                    3
                }
            }
            Verb::IsFailed => u8::from(!is_failed(result)),
            Verb::Reload => u8::from(!display::strings(result, "errors").is_empty()),
            _ => u8::from(!came_up(result)),
        };
        self.codes.push(code);
    }

    /// Counts one error answer (its JSON-RPC `code`).
    pub fn error(&mut self, code: i64) {
        let unknown = code == proto::rpc::code::NO_SUCH_SERVICE;
        self.codes.push(match self.verb {
            Verb::Status if unknown => 4,
            Verb::IsActive => 3,
            _ => 1,
        });
    }

    /// The exit status for every answer counted.
    pub fn code(&self) -> u8 {
        if self.verb == Verb::IsFailed {
            return u8::from(!self.codes.contains(&0));
        }
        self.codes.iter().copied().max().unwrap_or(0)
    }
}

/// A service answer (`service.status`) whose process runs, or whose oneshot
/// succeeded.
pub fn is_active(result: &Value) -> bool {
    matches!(
        result.get("state").and_then(Value::as_str),
        Some("running" | "ready" | "unhealthy" | "succeeded")
    )
}

/// A service answer that gave up, or whose process ended with a failure and
/// will not be restarted.
pub fn is_failed(result: &Value) -> bool {
    match result.get("state").and_then(Value::as_str) {
        Some("failed") => true,
        Some("exited") => result
            .get("detail")
            .and_then(Value::as_str)
            .is_some_and(|detail| detail != "exited: exited with code 0"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn logs_of_spore_read_the_journal() {
        let shape = Shape {
            lines: 5,
            ..Shape::default()
        };
        let (method, params) = request(Verb::Logs, JOURNAL, &shape, None).unwrap();
        assert_eq!(method, Method::NodeJournal);
        assert_eq!(params, json!({ "lines": 5, "follow": false }));
        let (method, _) = request(Verb::Logs, "web", &shape, None).unwrap();
        assert_eq!(method, Method::ServiceLogs);
    }

    #[test]
    fn logs_without_a_name_merge_every_service_and_carry_their_window() {
        let shape = Shape {
            lines: 20,
            since: Some(1_000),
            until: Some(2_000),
            ..Shape::default()
        };
        let (method, params) = request(Verb::Logs, "", &shape, None).unwrap();
        assert_eq!(method, Method::NodeLogs);
        assert_eq!(
            params,
            json!({ "lines": 20, "since": 1_000, "until": 2_000 })
        );
        let (_, params) = request(Verb::Logs, "web", &shape, None).unwrap();
        assert_eq!(params["since"], 1_000);
        assert!(parse_moment("10m ago").is_ok() && parse_moment("soon").is_err());
    }

    #[test]
    fn starts_wait_unless_told_not_to() {
        let waiting = Shape {
            wait: Some(Duration::from_secs(30)),
            ..Shape::default()
        };
        let (_, params) = request(Verb::Start, "web", &waiting, None).unwrap();
        assert_eq!(
            params,
            json!({ "name": "web", "wait": true, "timeout_ms": 30000 })
        );
        let (_, params) = request(Verb::Stop, "web", &waiting, None).unwrap();
        assert_eq!(params, json!({ "name": "web" }));
        let (_, params) = request(Verb::Start, "web", &Shape::default(), None).unwrap();
        assert_eq!(params, json!({ "name": "web" }));
    }

    #[test]
    fn exit_statuses_are_systemctls() {
        let up = json!({ "name": "web", "state": "ready", "detail": "ready" });
        let failed = json!({ "name": "flaky", "state": "failed", "detail": "failed: gave up" });
        let exited_ok = json!({ "state": "exited", "detail": "exited: exited with code 0" });
        let exited_bad = json!({ "state": "exited", "detail": "exited: exited with code 3" });
        let tally = |verb, answers: &[&Value], errors: &[i64]| {
            let mut tally = Tally::new(verb);
            answers.iter().for_each(|a| tally.answer(a));
            errors.iter().for_each(|&e| tally.error(e));
            tally.code()
        };
        assert_eq!(tally(Verb::Status, &[&up], &[]), 0);
        assert_eq!(tally(Verb::Status, &[&up, &failed], &[]), 3);
        assert_eq!(
            tally(Verb::Status, &[&up], &[proto::rpc::code::NO_SUCH_SERVICE]),
            4
        );
        assert_eq!(tally(Verb::IsActive, &[&up], &[]), 0);
        assert_eq!(tally(Verb::IsActive, &[&exited_ok], &[]), 3);
        assert_eq!(tally(Verb::IsFailed, &[&up, &exited_bad], &[]), 0);
        assert_eq!(tally(Verb::IsFailed, &[&up, &exited_ok], &[]), 1);
        assert_eq!(
            tally(Verb::IsFailed, &[], &[proto::rpc::code::NO_SUCH_SERVICE]),
            1
        );
        let rejected = json!({ "added": [], "errors": ["web.toml:3: bad"] });
        assert_eq!(tally(Verb::Reload, &[&rejected], &[]), 1);
        assert_eq!(tally(Verb::Reload, &[&json!({ "added": ["web"] })], &[]), 0);
        assert_eq!(
            tally(Verb::Start, &[&json!({ "outcome": "failed" })], &[]),
            1
        );
    }

    #[test]
    fn a_failed_outcome_shows_its_last_lines() {
        let result = json!({ "name": "flaky", "detail": "backoff: restart in 900 ms", "outcome": "failed",
            "last_exit": "exited with code 3", "lines": [{ "time": "t", "stream": "stderr", "text": "bad config" }] });
        assert!(!came_up(&result));
        let text = render(Verb::Deploy, &result).join("\n");
        assert!(text.contains("flaky: FAILED"), "{text}");
        assert!(
            text.contains("exited with code 3") && text.contains("bad config"),
            "{text}"
        );
        assert!(came_up(&json!({ "name": "x", "outcome": "ready" })));
    }
}

#[cfg(test)]
mod paging_tests {
    use super::*;

    #[test]
    fn pages_of_a_list_make_one_array_and_pages_of_figures_one_object() {
        let mut whole = Value::Null;
        let next = next_page(
            json!({ "services": [{ "name": "a" }], "next": "a" }),
            &mut whole,
        );
        assert_eq!(next, Some(json!({ "limit": LIST_PAGE, "after": "a" })));
        assert_eq!(
            next_page(
                json!({ "services": [{ "name": "b" }], "next": null }),
                &mut whole
            ),
            None
        );
        assert_eq!(whole, json!([{ "name": "a" }, { "name": "b" }]));
        let mut whole = Value::Null;
        let page = |name: &str, next: Value| json!({ "version": "1", "services": [{ "name": name }], "next": next });
        assert!(next_page(page("a", json!("a")), &mut whole).is_some());
        assert!(next_page(page("b", Value::Null), &mut whole).is_none());
        assert_eq!(
            whole,
            json!({ "version": "1", "services": [{ "name": "a" }, { "name": "b" }] })
        );
        // An older node answers whole.
        let mut whole = Value::Null;
        assert!(next_page(json!([{ "name": "a" }]), &mut whole).is_none());
        assert_eq!(whole, json!([{ "name": "a" }]));
        let mut whole = Value::Null;
        assert!(next_page(json!({ "version": "1", "services": [] }), &mut whole).is_none());
        assert_eq!(whole, json!({ "version": "1", "services": [] }));
    }
}
