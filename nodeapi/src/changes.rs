//! Changes that touch files: deploy, remove, secrets, reload. Each is
//! validated here on the loop, handed to the storage task as [`Work`]
//! (written off the loop: temp file, fsync, rename), and applied to the
//! supervisor by [`after_store`] only once the disk says it is done, so a
//! change is applied whole or not at all.

use std::time::Duration;

use serde_json::{json, Value};
use svc::supervisor::Event;

use crate::api::views::summary;
use crate::reply::{code, ApiError, Reply};
use crate::store::{LoadSlot, Then, Work};
use crate::wait::Answer;
use crate::NodeApi;

mod secrets;

pub use secrets::{list_secrets, remove_secret, set_secret};

fn store(runtime: &NodeApi) -> Result<runtime::Files, ApiError> {
    runtime.files().cloned().ok_or_else(|| {
        ApiError::new(
            code::NO_STORE,
            "this node keeps no service files or secrets",
        )
    })
}

/// The `name` of a service or target file, read loosely before validation.
fn declared_name(text: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let head = table.get("service").or_else(|| table.get("target"))?;
    head.get("name")?.as_str().map(str::to_owned)
}

/// What `service.deploy` was asked.
pub struct DeployRequest<'a> {
    /// The file's TOML text.
    pub text: &'a str,
    /// The operator's name for the file (errors name it, and its name must
    /// match the service's, as `spore check` requires).
    pub file: Option<&'a str>,
    /// Start it even if its status is not `start`.
    pub start: bool,
    /// Answer once it is ready or has failed, waiting at most this long.
    pub wait: Option<Duration>,
}

/// Validates a deploy like `spore check` does (the operator's file name in
/// every error, one per line), then hands the write to the storage task.
/// A definition identical to the running one changes nothing.
pub fn deploy(runtime: &mut NodeApi, request: &DeployRequest<'_>) -> Result<Reply, ApiError> {
    let files = store(runtime)?;
    let invalid = |message: String| ApiError::new(code::INVALID_SERVICE, message);
    // Only the last part of the operator's path: the node has no business
    // with the operator's directories, and errors read as `spore check`'s.
    let shown = request
        .file
        .and_then(|f| std::path::Path::new(f).file_name())
        // The operator's words, echoed in every error: capped and escaped.
        .map(|f| std::path::PathBuf::from(runtime::escape::field(&f.to_string_lossy())));
    let declared = declared_name(request.text);
    let shown = shown
        .or_else(|| declared.as_ref().map(|n| format!("{n}.toml").into()))
        .unwrap_or_else(|| "service.toml".into());
    let mut service = svc::parse::parse_service(&shown, request.text)
        .map_err(|errors| invalid(join_errors(&errors)))?;
    let name = service.name.clone();
    let path = files.deployed.join(format!("{name}.toml"));
    let mask = files.deployed.join(svc::load::mask_name(&name));
    service.file = path.clone();
    if let Some(current) = runtime.get(&name) {
        let mut same = current.service.clone();
        same.file = path.clone();
        if same == service {
            return Ok(unchanged(runtime, &name, request));
        }
    }
    // Valid alone; now valid among the others (dependencies exist, no
    // cycle)? What the new file reaches is checked first; only a file that
    // may not fit is checked with all the others, for the exact errors (a
    // deploy on a node of 10,000 services must not cost a full check).
    let others: std::collections::HashMap<&str, &svc::service::Service> = runtime
        .supervisor()
        .services()
        .into_iter()
        .filter(|s| s.name != name)
        .map(|s| (s.name.as_str(), s))
        .collect();
    // An address another service listens on is this file's error (the
    // whole check would name whichever sorts second).
    let taken = svc::load::listen_taken(&others, &service);
    let fits = taken.is_none() && svc::load::fits_with(&others, &service);
    let report = if let Some(error) = taken {
        svc::LoadReport {
            services: Vec::new(),
            errors: vec![error],
        }
    } else if fits {
        svc::LoadReport::default()
    } else {
        let mut all: Vec<svc::service::Service> = others.into_values().cloned().collect();
        all.push(service.clone());
        svc::load::check_together(all, Vec::new(), std::collections::HashSet::new())
    };
    if !report.errors.is_empty() {
        let shown_errors: Vec<svc::error::ConfigError> = report
            .errors
            .into_iter()
            .map(|mut e| {
                if e.file == path {
                    e.file = shown.clone();
                }
                e
            })
            .collect();
        return Err(invalid(join_errors(&shown_errors)));
    }
    // Written off the loop; the supervisor gets the service only once the
    // file is durably there (applied whole or not at all).
    // Into the deployed layer, then any mask of the name goes (a service
    // removed earlier and deployed again).
    let work = Work::Steps(vec![
        Work::Write {
            path,
            bytes: request.text.as_bytes().to_vec().into(),
            mode: 0o644,
        },
        Work::Remove { path: mask },
    ]);
    let then = Then::Deploy {
        service: Box::new(service),
        start: request.start,
        wait: request.wait,
    };
    Ok(Reply::Pending(runtime.store(work, then)))
}

/// The answer to a deploy of the definition already running: nothing is
/// written or restarted; `start` still starts it, and `wait` waits for it.
fn unchanged(runtime: &mut NodeApi, name: &str, request: &DeployRequest<'_>) -> Reply {
    if request.start {
        runtime.feed(Event::Start(name.to_owned()));
    }
    // Nothing to wait for when it is up already; one still coming up (or
    // just asked to start) is waited for.
    let waits = runtime
        .get(name)
        .is_some_and(|v| v.wanted && (request.start || !v.state.is_ready()));
    if let (Some(timeout), true) = (request.wait, waits) {
        let (answer, pending) = smol::channel::bounded(1);
        runtime.wait_for(name, timeout, answer);
        return Reply::Pending(pending);
    }
    let mut value = runtime
        .get(name)
        .map(|v| summary(&v, runtime.now()))
        .unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("unchanged".into(), json!(true));
    }
    Reply::Value(value)
}

/// Applies what follows disk work that finished off the loop, and answers
/// the caller on `answer` (at once, or once the deployed service settled
/// when the deploy waits). Nothing is applied when the work failed.
pub fn after_store(
    runtime: &mut NodeApi,
    work: &Work,
    then: Then,
    outcome: std::io::Result<()>,
    answer: Answer,
) {
    if let (
        Then::Deploy {
            service,
            start,
            wait,
        },
        Ok(()),
    ) = (&then, &outcome)
    {
        let name = service.name.clone();
        let starts = *start || service.status == svc::service::Status::Start;
        let wait = *wait;
        let was_running = runtime.get(&name).is_some_and(|v| v.pid.is_some());
        let result = applied(runtime, work, then, outcome);
        match wait {
            Some(timeout) if result.is_ok() && (starts || was_running) => {
                runtime.wait_for(&name, timeout, answer);
            }
            _ => {
                let _ = answer.try_send(result);
            }
        }
        return;
    }
    // A caller that hung up no longer needs the answer.
    let _ = answer.try_send(applied(runtime, work, then, outcome));
}

fn applied(
    runtime: &mut NodeApi,
    work: &Work,
    then: Then,
    outcome: std::io::Result<()>,
) -> Result<Value, ApiError> {
    let path = work.path().display().to_string();
    match (then, outcome) {
        (Then::Deploy { .. }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot write {path}: {e}"),
        )),
        (Then::Remove { name }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot delete {path}: {e}; {name} keeps running"),
        )),
        (Then::Secret { name, .. }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot store secret {name}: {e}"),
        )),
        (Then::Deploy { service, start, .. }, Ok(())) => {
            let name = service.name.clone();
            runtime::journal::note(format_args!("{name}: deployed to {path}"));
            runtime.runtime_mut().deploy(*service);
            runtime.keep_pinned();
            if start {
                runtime.feed(Event::Start(name.clone()));
            }
            Ok(runtime
                .get(&name)
                .map(|v| summary(&v, runtime.now()))
                .unwrap_or(Value::Null))
        }
        (Then::Remove { name }, Ok(())) => {
            runtime.feed(Event::Remove(name.clone()));
            runtime::journal::note(format_args!("{name}: removed"));
            Ok(json!({ "name": name, "removed": true }))
        }
        (Then::Secret { name, refreshed }, Ok(())) => {
            let (rewritten, failures) = refreshed
                .lock()
                .map(|slot| slot.clone())
                .unwrap_or_default();
            for failure in failures {
                runtime::journal::note(format_args!("{failure}"));
            }
            // Services that load the secret are restarted so they see the
            // new value (their credential files are made at each start).
            let users: Vec<String> = runtime
                .supervisor()
                .services()
                .into_iter()
                .filter(|s| s.credentials.contains(&name) || s.secrets.values().any(|v| *v == name))
                .map(|s| s.name.clone())
                .collect();
            let loaders: Vec<String> = users
                .iter()
                .filter(|service| runtime.get(service).is_some_and(|v| v.pid.is_some()))
                .cloned()
                .collect();
            // Those waiting to be retried (in backoff, or failed while
            // wanted: the secret was missing, say) start now with it,
            // instead of waiting out a backoff meant for the old value.
            let waiting: Vec<String> = users
                .iter()
                .filter(|service| {
                    runtime.get(service).is_some_and(|v| {
                        v.pid.is_none()
                            && v.wanted
                            && matches!(
                                v.state,
                                svc::supervisor::State::Backoff { .. }
                                    | svc::supervisor::State::Failed(_)
                            )
                    })
                })
                .cloned()
                .collect();
            let (mut restarted, mut signalled) = (Vec::new(), Vec::new());
            for service in waiting {
                runtime::journal::note(format_args!(
                    "{service}: started now with the new value of secret {name}"
                ));
                runtime.feed(Event::Restart(service.clone()));
                restarted.push(service);
            }
            for service in loaders {
                let signal = runtime
                    .get(&service)
                    .filter(|v| v.service.credentials.contains(&name))
                    .and_then(|v| v.service.reload_signal);
                let pid = runtime.get(&service).and_then(|v| v.pid);
                if let (Some(signal), Some(pid)) = (signal, pid) {
                    if rewritten.contains(&pid)
                        && runtime.runtime_mut().signal_run(&service, pid, signal)
                    {
                        runtime::journal::note(format_args!(
                            "{service}: told (signal {signal}) of the new value of secret {name}"
                        ));
                        signalled.push(service);
                        continue;
                    }
                }
                runtime::journal::note(format_args!(
                    "{service}: restarted for the new value of secret {name}"
                ));
                runtime.feed(Event::Restart(service.clone()));
                restarted.push(service);
            }
            Ok(
                json!({ "name": name, "stored": true, "restarted": restarted, "signalled": signalled }),
            )
        }
        (Then::SecretRemoved { name }, Ok(())) => Ok(json!({ "name": name, "removed": true })),
        (Then::Definition { .. }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot read {path}: {e}"),
        )),
        (Then::Definition { name, source, text }, Ok(())) => {
            match text.lock().ok().and_then(|mut slot| slot.take()) {
                Some(text) => {
                    Ok(json!({ "name": name, "source": source, "file": path, "text": text }))
                }
                None => Err(ApiError::new(code::INTERNAL, "the read left no text")),
            }
        }
        (Then::Reload { .. }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot read the service files: {e}; nothing changed"),
        )),
        (Then::Reload { from }, Ok(())) => {
            let report = from.lock().ok().and_then(|mut slot| slot.take());
            match report {
                Some(report) => Ok(apply_reload(runtime, report)),
                None => Err(ApiError::new(code::INTERNAL, "the load left no report")),
            }
        }
        (Then::SecretRemoved { name }, Err(e)) => Err(ApiError::new(
            code::STORAGE,
            format!("cannot remove secret {name}: {e}"),
        )),
    }
}

fn join_errors(errors: &[svc::error::ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `service.remove`: checks nothing depends on it, then deletes (or masks)
/// its file off the loop; the service stops once the file is gone.
pub fn remove(runtime: &mut NodeApi, name: &str) -> Result<Reply, ApiError> {
    let users: Vec<String> = runtime
        .supervisor()
        .services()
        .into_iter()
        .filter(|s| {
            let d = &s.dependencies;
            d.requires
                .iter()
                .chain(&d.after)
                .chain(&d.conflicts)
                .any(|r| r.name == name)
        })
        .map(|s| s.name.clone())
        .collect();
    if !users.is_empty() {
        return Err(ApiError::new(
            code::IN_USE,
            format!(
                "{name} is named in requires/after/conflicts of {}; change those first",
                users.join(", ")
            ),
        ));
    }
    if runtime.get(name).is_none() {
        return Err(ApiError::new(
            code::NO_SUCH_SERVICE,
            format!("no service named {name}"),
        ));
    }
    let files = store(runtime)?;
    let deployed = files.deployed.join(format!("{name}.toml"));
    let image = files.services.join(format!("{name}.toml"));
    // The files go first (off the loop); the service stops once they are
    // gone, so a failed deletion leaves it running as it was. An image
    // service cannot be deleted from the image: a mask in the deployed
    // layer hides it, and is written before the deployed copy goes.
    let mut steps = Vec::new();
    if image.exists() {
        steps.push(Work::Write {
            path: files.deployed.join(svc::load::mask_name(name)),
            bytes: Vec::new().into(),
            mode: 0o644,
        });
    }
    steps.push(Work::Remove { path: deployed });
    let then = Then::Remove {
        name: name.to_owned(),
    };
    Ok(Reply::Pending(runtime.store(Work::Steps(steps), then)))
}

/// `service.definition`: the service's file, read off the loop (behind
/// any deploy already queued, so it is the file the node now holds).
pub fn definition(runtime: &mut NodeApi, name: &str) -> Result<Reply, ApiError> {
    let files = store(runtime)?;
    let Some(view) = runtime.get(name) else {
        return Err(ApiError::new(
            code::NO_SUCH_SERVICE,
            format!("no service named {name}"),
        ));
    };
    let path = view.service.file.clone();
    let source = if path.starts_with(&files.deployed) {
        "deployed"
    } else {
        "image"
    };
    let text = crate::store::TextSlot::default();
    let work = Work::Read {
        path,
        into: text.clone(),
    };
    let then = Then::Definition {
        name: name.to_owned(),
        source,
        text,
    };
    Ok(Reply::Pending(runtime.store(work, then)))
}

/// `node.reload`: reads the image's services and the deployed layer again
/// (off the loop) and applies what changed.
pub fn reload(runtime: &mut NodeApi) -> Result<Reply, ApiError> {
    let files = store(runtime)?;
    let from = LoadSlot::default();
    let work = Work::Load {
        base: files.services.clone(),
        layer: files.deployed.clone(),
        into: from.clone(),
    };
    Ok(Reply::Pending(runtime.store(work, Then::Reload { from })))
}

/// Applies a reload: new services are added (and started when their status
/// says so), changed ones replace the old definition, vanished ones are
/// removed. A file that no longer validates changes nothing: its service
/// keeps running as it was, and the error is reported.
fn apply_reload(runtime: &mut NodeApi, report: svc::LoadReport) -> Value {
    use std::collections::HashSet;
    let rejected: HashSet<String> = report
        .errors
        .iter()
        .filter_map(|e| {
            e.file
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_owned)
        })
        .collect();
    let listed: HashSet<String> = report.services.iter().map(|s| s.name.clone()).collect();
    let current: std::collections::HashMap<String, svc::service::Service> = runtime
        .supervisor()
        .services()
        .into_iter()
        .map(|s| (s.name.clone(), s.clone()))
        .collect();
    // Removals go in the supervisor's order, as before.
    let order: Vec<String> = runtime
        .supervisor()
        .services()
        .into_iter()
        .map(|s| s.name.clone())
        .collect();
    let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    let mut deploys = Vec::new();
    let mut starts = Vec::new();
    for service in report.services {
        match current.get(&service.name) {
            Some(old) if *old == service => {}
            Some(_) => {
                changed.push(service.name.clone());
                deploys.push(service);
            }
            None => {
                if service.status == svc::service::Status::Start {
                    starts.push(service.name.clone());
                }
                added.push(service.name.clone());
                deploys.push(service);
            }
        }
    }
    // All at once: the supervisor builds its graph once, not per service.
    runtime.runtime_mut().deploy_all(deploys);
    runtime.keep_pinned();
    for name in starts {
        runtime.feed(Event::Start(name));
    }
    for name in order
        .into_iter()
        .filter(|name| !listed.contains(name) && !rejected.contains(name))
    {
        removed.push(name.clone());
        runtime.feed(Event::Remove(name.clone()));
    }
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    for error in &errors {
        runtime::journal::note(format_args!(
            "reload: rejected (the running definition stays): {error}"
        ));
    }
    runtime::journal::note(format_args!(
        "reload: {} added, {} changed, {} removed, {} rejected",
        added.len(),
        changed.len(),
        removed.len(),
        errors.len()
    ));
    json!({ "added": added, "changed": changed, "removed": removed, "errors": errors })
}
