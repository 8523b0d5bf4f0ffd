//! `secret.set`, `secret.remove`, `secret.list`: the node's secrets, each
//! a 0600 file written off the loop like every change.

use serde_json::{json, Value};

use super::store;
use crate::reply::{code, ApiError, Reply};
use crate::store::{Then, Work};
use crate::NodeApi;

/// Longest secret accepted.
const MAX_SECRET: usize = 64 * 1024;

/// `secret.set`: stores the value 0600 off the loop; services that load it
/// are restarted (or told) once it is written.
pub fn set_secret(runtime: &mut NodeApi, name: &str, value: &str) -> Result<Reply, ApiError> {
    let files = store(runtime)?;
    if !svc::parse::is_valid_name(name) {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("invalid secret name `{}`", runtime::escape::field(name)),
        ));
    }
    if value.len() > MAX_SECRET {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("a secret holds at most {MAX_SECRET} bytes"),
        ));
    }
    // Running services told of a new value by a signal get their
    // credential file rewritten by the same job, off the loop, once the
    // store holds the value.
    let dirs: Vec<(i32, std::path::PathBuf)> = runtime
        .supervisor()
        .services()
        .into_iter()
        .filter(|s| s.reload_signal.is_some() && s.credentials.iter().any(|c| c == name))
        .filter_map(|s| runtime.credential_dir(&s.name))
        .collect();
    let refreshed = crate::store::RefreshSlot::default();
    let write = Work::Write {
        path: files.secrets.join(name),
        bytes: value.as_bytes().to_vec().into(),
        mode: 0o600,
    };
    let work = if dirs.is_empty() {
        write
    } else {
        Work::Steps(vec![
            write,
            Work::Credentials {
                name: name.to_owned(),
                bytes: value.as_bytes().to_vec().into(),
                dirs,
                into: refreshed.clone(),
            },
        ])
    };
    let then = Then::Secret {
        name: name.to_owned(),
        refreshed,
    };
    Ok(Reply::Pending(runtime.store(work, then)))
}

/// `secret.remove`: deletes a stored secret off the loop.
pub fn remove_secret(runtime: &mut NodeApi, name: &str) -> Result<Reply, ApiError> {
    let files = store(runtime)?;
    if !svc::parse::is_valid_name(name) {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("invalid secret name `{}`", runtime::escape::field(name)),
        ));
    }
    let path = files.secrets.join(name);
    if !path.exists() {
        return Err(ApiError::new(
            code::INVALID_PARAMS,
            format!("no secret named {name}"),
        ));
    }
    let then = Then::SecretRemoved {
        name: name.to_owned(),
    };
    Ok(Reply::Pending(runtime.store(Work::Remove { path }, then)))
}

/// `secret.list`: the names of stored secrets, sorted.
pub fn list_secrets(runtime: &NodeApi) -> Result<Value, ApiError> {
    let files = store(runtime)?;
    let mut names: Vec<String> = std::fs::read_dir(&files.secrets)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Ok(json!(names))
}
