//! The JSON-RPC methods every control channel serves — the local Unix
//! socket and the signed TCP transport — from one table ([`Method`]), which
//! also generates the `rpc.discover` document and decides who may call what.
//! Views of the state are in [`views`]; changes that touch files are in
//! [`crate::changes`], with the storage task that writes them.

mod kept;
mod logs;
mod metrics;
mod tree;
pub mod views;
mod why;

use std::time::Duration;

use serde_json::{json, Map, Value};
use svc::supervisor::Event;

pub use crate::reply::{code, settle, ApiError, Power, Reply, Role};
pub use proto::method::{self, discover, Method};
pub use views::{line_json, unix_time};

use crate::NodeApi;

/// Handles one input from [`crate::Inputs::next`]: the runtime's, or a
/// file write done off the loop (applied, then answered).
pub fn handle(api: &mut NodeApi, input: crate::Input) {
    match input {
        crate::Input::Runtime(input) => api.handle(input),
        crate::Input::Stored(done) => {
            let crate::store::Done { job, outcome } = *done;
            crate::changes::after_store(api, &job.work, job.then, outcome, job.reply);
        }
        crate::Input::Artifact(crate::artifacts::News::Arrived(digest)) => {
            api.artifact_arrived(&digest)
        }
        crate::Input::Artifact(crate::artifacts::News::NotFetched(digest)) => {
            api.artifact_not_fetched(&digest)
        }
    }
}

/// The methods only the init can answer: it knows the node's facts and
/// owns its boot slots; this crate does not.
pub trait NodeMethods {
    /// What `node.info` answers (services, resources and the time are
    /// added here). Made only for that method, not on every call.
    fn info(&self) -> Value;
    /// `node.update`, its parameters checked against the table.
    fn update(&self, runtime: &mut NodeApi, params: &Map<String, Value>)
        -> Result<Reply, ApiError>;
    /// `node.reexec`, its parameters checked against the table.
    fn reexec(&self, runtime: &mut NodeApi, params: &Map<String, Value>)
        -> Result<Reply, ApiError>;
}

/// Calls `method` with `params` as `role`; `node` answers the methods only
/// the init can.
pub fn call(
    runtime: &mut NodeApi,
    role: Role,
    method_name: &str,
    params: &Value,
    node: &dyn NodeMethods,
) -> Result<Reply, ApiError> {
    call_with(runtime, role, method_name, params, None, node)
}

/// [`call`], with the raw chunk that came in a frame of its own after an
/// `artifact.put` with `bytes` (see [`proto::method::raw_chunk`]).
pub fn call_with(
    runtime: &mut NodeApi,
    role: Role,
    method_name: &str,
    params: &Value,
    chunk: Option<Vec<u8>>,
    node: &dyn NodeMethods,
) -> Result<Reply, ApiError> {
    let method = Method::parse(method_name).ok_or_else(|| {
        ApiError::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {}", runtime::escape::field(method_name)),
        )
    })?;
    if role < method.role() {
        return Err(ApiError::new(
            code::FORBIDDEN,
            format!("{method_name} needs the admin role"),
        ));
    }
    let params = method.check(params)?;
    let shutting_down = runtime.supervisor().is_shutting_down();
    let refuse_when_stopping = || {
        if shutting_down {
            Err(ApiError::new(
                code::SHUTTING_DOWN,
                "the node is shutting down",
            ))
        } else {
            Ok(())
        }
    };
    let value = match method {
        Method::NodeInfo => {
            let mut info = node.info();
            if let Value::Object(map) = &mut info {
                map.insert("services".into(), views::census(runtime));
                map.insert("resources".into(), json!(runtime::usage::node()));
                map.insert(
                    "time_utc".into(),
                    json!(runtime::text::timestamp(std::time::SystemTime::now())),
                );
            }
            info
        }
        Method::NodeJournal | Method::NodeLogs | Method::ServiceLogs
            if params.get("boot").and_then(Value::as_u64).unwrap_or(0) > 0 =>
        {
            return earlier_start(runtime, method, &params);
        }
        Method::NodeJournal => {
            let count = line_count(&params);
            let window = logs::Window::from_params(&params);
            let journal = window.journal(count);
            let (lines, omitted) = logs::of_one(journal.iter(), &window, count, REPLY_BYTES);
            let result = json!({ "name": "spore", "lines": lines, "omitted": omitted });
            if flag(&params, "follow") {
                return Ok(Reply::Follow {
                    result,
                    lines: runtime::journal::follow(),
                });
            }
            result
        }
        Method::NodeLogs => {
            let count = line_count(&params);
            let window = logs::Window::from_params(&params);
            let (lines, omitted) = logs::merged(runtime, &window, count, REPLY_BYTES);
            json!({ "lines": lines, "omitted": omitted })
        }
        Method::ServiceList => list(runtime, &params)?,
        Method::ServiceStatus => {
            let name = service_name(runtime, &params)?;
            let deployed = runtime.files().map(|f| f.deployed.clone());
            let lines: Vec<Value> = runtime
                .logs(&name)
                .map(|book| book.tail(STATUS_LINES).map(views::line_json).collect())
                .unwrap_or_default();
            let mut value = runtime
                .get(&name)
                .map(|v| views::detail_with_usage(runtime, &v, deployed.as_deref()))
                .unwrap_or(Value::Null);
            if let Value::Object(map) = &mut value {
                map.insert("lines".into(), Value::Array(lines));
                let fetching = fetching(runtime, &name);
                if !fetching.is_empty() {
                    map.insert("fetching".into(), Value::Array(fetching));
                }
            }
            value
        }
        Method::ServiceStart | Method::ServiceRestart => {
            let name = service_name(runtime, &params)?;
            refuse_when_stopping()?;
            let event = if method == Method::ServiceStart {
                Event::Start(name.clone())
            } else {
                Event::Restart(name.clone())
            };
            runtime.feed(event);
            if let Some(timeout) = wait_for(&params) {
                let (answer, pending) = smol::channel::bounded(1);
                runtime.wait_for(&name, timeout, answer);
                return Ok(Reply::Pending(pending));
            }
            runtime
                .get(&name)
                .map(|v| views::summary(&v, runtime.now()))
                .unwrap_or(Value::Null)
        }
        Method::ServiceStop => {
            let name = service_name(runtime, &params)?;
            runtime.feed(Event::Stop(name.clone()));
            runtime
                .get(&name)
                .map(|v| views::summary(&v, runtime.now()))
                .unwrap_or(Value::Null)
        }
        Method::ServiceLogs => {
            let name = service_name(runtime, &params)?;
            let count = line_count(&params);
            let window = logs::Window::from_params(&params);
            let (lines, omitted) = runtime
                .logs(&name)
                .map(|book| logs::of_one(book.tail(usize::MAX), &window, count, REPLY_BYTES))
                .unwrap_or_default();
            let result = json!({ "name": name, "lines": lines, "omitted": omitted });
            if flag(&params, "follow") {
                if let Some(lines) = runtime.runtime_mut().follow(&name) {
                    return Ok(Reply::Follow { result, lines });
                }
            }
            result
        }
        Method::NodeMetrics => metrics::metrics(runtime, &node.info(), &params)?,
        Method::ServiceTree => match params.get("name").and_then(Value::as_str) {
            Some(_) => {
                let name = service_name(runtime, &params)?;
                tree::tree(runtime, Some(&name))
            }
            None => tree::tree(runtime, None),
        },
        Method::ServiceWhy => {
            let name = service_name(runtime, &params)?;
            why::why(runtime, &name)
        }
        Method::NodeReboot => return Ok(Reply::Power(Power::Reboot, json!({ "accepted": true }))),
        Method::NodePoweroff => {
            return Ok(Reply::Power(Power::Poweroff, json!({ "accepted": true })))
        }
        Method::Discover => method::discover(),
        Method::NodeUpdate => {
            refuse_when_stopping()?;
            return node.update(runtime, &params);
        }
        Method::NodeReexec => {
            refuse_when_stopping()?;
            return node.reexec(runtime, &params);
        }
        Method::ServiceDeploy => {
            refuse_when_stopping()?;
            let request = crate::changes::DeployRequest {
                text: text_param(&params, "toml"),
                file: params.get("file").and_then(Value::as_str),
                start: flag(&params, "start"),
                wait: wait_for(&params),
            };
            return crate::changes::deploy(runtime, &request);
        }
        Method::ServiceRemove => {
            let name = service_name(runtime, &params)?;
            return crate::changes::remove(runtime, &name);
        }
        Method::ServiceDefinition => {
            let name = service_name(runtime, &params)?;
            return crate::changes::definition(runtime, &name);
        }
        Method::SecretSet => {
            let (name, value) = (text_param(&params, "name"), text_param(&params, "value"));
            return crate::changes::set_secret(runtime, name, value);
        }
        Method::SecretList => crate::changes::list_secrets(runtime)?,
        Method::SecretRemove => {
            return crate::changes::remove_secret(runtime, text_param(&params, "name"))
        }
        Method::NodeReload => return crate::changes::reload(runtime),
        Method::ArtifactPut | Method::ArtifactList | Method::ArtifactRemove => {
            let Some(store) = runtime.artifacts() else {
                return Err(ApiError::new(
                    code::NO_STORE,
                    "this node keeps no artifacts (it has no artifact store)",
                ));
            };
            if method != Method::ArtifactList {
                refuse_when_stopping()?;
            }
            return Ok(Reply::Pending(match method {
                Method::ArtifactPut => store.put(&params, chunk),
                Method::ArtifactList => store.list(),
                _ => store.remove(&params),
            }));
        }
    };
    Ok(Reply::Value(value))
}

/// An answer's share of a frame (1 MiB on the signed transport): lists of
/// lines are cut to the newest that fit, and `service.list` is paged, so a
/// full journal or 10,000 services still answer.
pub const REPLY_BYTES: usize = 768 * 1024;

/// `service.list`: every service by name; with `limit` or `after`, one page
/// of them (`{"services": […], "next": NAME|null}`, `next` to pass as
/// `after` for the page after it). Unpaged, a list too large for one
/// answer is refused with a pointer to paging instead of being cut.
fn list(runtime: &NodeApi, params: &Map<String, Value>) -> Result<Value, ApiError> {
    let now = runtime.now();
    let mut units = runtime.supervisor().list();
    // By name: the start order moves with every deploy.
    units.sort_by(|a, b| a.service.name.cmp(&b.service.name));
    let names: Vec<&str> = units.iter().map(|v| v.service.name.as_str()).collect();
    let paging = Paging::of(params);
    let (page, next) = paging.page(&names, |i| {
        units
            .get(i)
            .map_or(Value::Null, |view| views::summary(view, now))
    });
    match (paging.paged, next) {
        (true, next) => Ok(json!({ "services": page, "next": next })),
        (false, None) => Ok(Value::Array(page)),
        (false, Some(_)) => Err(too_large(units.len())),
    }
}

/// The refusal of an unpaged answer that would not fit in one.
pub(crate) fn too_large(services: usize) -> ApiError {
    ApiError::new(
        code::TOO_LARGE,
        format!(
            "{services} services do not fit in one answer; ask for pages with `limit` and `after`"
        ),
    )
}

/// Paging as `service.list` and `node.metrics` take it: the services
/// after `after` (by name), at most `limit` of them, and no more than fit
/// in one answer ([`REPLY_BYTES`]).
pub(crate) struct Paging<'p> {
    /// Whether the caller asked for a page (`limit` or `after`).
    pub paged: bool,
    after: Option<&'p str>,
    limit: usize,
}

impl<'p> Paging<'p> {
    /// The paging `params` ask for.
    pub(crate) fn of(params: &'p Map<String, Value>) -> Self {
        let after = params.get("after").and_then(Value::as_str);
        let limit = params.get("limit").and_then(Value::as_u64);
        Paging {
            paged: after.is_some() || limit.is_some(),
            after,
            limit: limit.map_or(usize::MAX, |l| {
                usize::try_from(l.max(1)).unwrap_or(usize::MAX)
            }),
        }
    }

    /// The page of `names` (sorted), each made by `entry` from its index
    /// (only those on the page are made, each serialised once to size
    /// it); and the name to ask the page after it after, when there is one.
    pub(crate) fn page(
        &self,
        names: &[&str],
        mut entry: impl FnMut(usize) -> Value,
    ) -> (Vec<Value>, Option<Value>) {
        let start = self
            .after
            .map_or(0, |after| names.partition_point(|name| *name <= after));
        let mut page = Vec::new();
        let mut bytes = 0;
        for (i, name) in names.iter().enumerate().skip(start) {
            let made = entry(i);
            let size = made.to_string().len() + 1;
            if page.len() == self.limit || (bytes + size > REPLY_BYTES && !page.is_empty()) {
                let last = names.get(i.saturating_sub(1)).copied().unwrap_or(name);
                return (page, Some(json!(last)));
            }
            bytes += size;
            page.push(made);
        }
        (page, None)
    }
}

/// Lines of a service's output `service.status` carries.
const STATUS_LINES: usize = 10;

/// How long a call that waits for its service may wait, at most and by
/// default (`timeout_ms` picks less or more within it).
const MAX_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// The wait a call asked for (`wait: true`, `timeout_ms`), if any.
fn wait_for(params: &Map<String, Value>) -> Option<Duration> {
    if !flag(params, "wait") {
        return None;
    }
    let timeout = params
        .get("timeout_ms")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_WAIT, Duration::from_millis);
    Some(timeout.min(MAX_WAIT))
}

/// `boot`: N starts ago, read from what that start kept, off the loop.
fn earlier_start(
    runtime: &NodeApi,
    method: Method,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let ago = params.get("boot").and_then(Value::as_u64).unwrap_or(0);
    if flag(params, "follow") {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            "an earlier start's lines cannot be followed",
        ));
    }
    let Some(root) = runtime.files().and_then(|f| f.kept_logs.clone()) else {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            "this node keeps no output across starts (its state directory is in RAM)",
        ));
    };
    let source = match method {
        Method::NodeJournal => kept::Source::Journal,
        Method::NodeLogs => kept::Source::All,
        _ => {
            let name = text_param(params, "name");
            if !kept::plain_name(name) {
                return Err(ApiError::new(
                    code::INVALID_PARAMS,
                    format!("no such service name: {}", runtime::escape::field(name)),
                ));
            }
            kept::Source::Service(name.to_owned())
        }
    };
    let cut = kept::Cut {
        count: line_count(params),
        budget: REPLY_BYTES,
    };
    Ok(Reply::Pending(kept::read(
        root,
        ago,
        source,
        logs::Window::from_params(params),
        cut,
    )))
}

fn flag(params: &Map<String, Value>, key: &str) -> bool {
    params.get(key).and_then(Value::as_bool) == Some(true)
}

fn text_param<'a>(params: &'a Map<String, Value>, key: &str) -> &'a str {
    params.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn line_count(params: &Map<String, Value>) -> usize {
    let count = params.get("lines").and_then(Value::as_u64).unwrap_or(100);
    usize::try_from(count).unwrap_or(usize::MAX)
}

fn service_name(runtime: &NodeApi, params: &Map<String, Value>) -> Result<String, ApiError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if runtime.get(name).is_none() {
        return Err(ApiError::new(
            code::NO_SUCH_SERVICE,
            format!("no such service: {}", runtime::escape::field(name)),
        ));
    }
    Ok(name.to_owned())
}

/// The fetches under way of what `name` pins: each artifact's name, bytes
/// stored so far and size.
fn fetching(runtime: &crate::NodeApi, name: &str) -> Vec<Value> {
    let (Some(store), Some(view)) = (runtime.artifacts(), runtime.get(name)) else {
        return Vec::new();
    };
    view.service
        .artifacts
        .iter()
        .filter_map(|artifact| {
            let digest = artifacts::Digest::parse(&artifact.sha256).ok()?;
            let (held, size) = store.fetching(&digest)?;
            Some(json!({ "name": artifact.name, "held": held, "size": size }))
        })
        .collect()
}
