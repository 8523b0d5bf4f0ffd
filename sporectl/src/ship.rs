//! `sporectl deploy FILE --artifact NAME=PATH`: the artifacts a service
//! file pins, sent before the file when the node lacks them, so one deploy
//! puts a program the image never had on the node and runs it. Each local
//! file must hash to its pin; a pinned artifact with no local file and no
//! `url` must already be on the node.

use std::path::{Path, PathBuf};

use rpc::client::{ClientError, Session};
use rpc::upload::Source;
use serde_json::Value;

use crate::Options;

/// What a deploy of `file` must see to first: each artifact it pins, with
/// the local file given for it.
pub(crate) struct Needed {
    /// The artifact's name in the service file.
    pub name: String,
    /// Its pin.
    pub sha256: String,
    /// Whether the node may fetch it itself.
    pub fetchable: bool,
    /// Whether one of its sources is the beacon's cache.
    pub from_beacon: bool,
    /// The local file to send, checked against the pin.
    pub local: Option<Source>,
}

/// The artifacts `file` pins, matched with `given` (`--artifact`). A file
/// that does not parse pins nothing here (the node reports its errors).
pub(crate) fn needed(file: &str, given: &[(String, PathBuf)]) -> Result<Vec<Needed>, ClientError> {
    let local = |e: String| ClientError::Local(e);
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(Vec::new());
    };
    let Ok(service) = svc::parse_service(Path::new(file), &text) else {
        return Ok(Vec::new());
    };
    for (name, _) in given {
        if !service.artifacts.iter().any(|a| &a.name == name) {
            return Err(local(format!(
                "--artifact {name}=…: {file} pins no artifact named {name}"
            )));
        }
    }
    let mut out = Vec::new();
    for artifact in service.artifacts {
        let source = match given.iter().find(|(name, _)| *name == artifact.name) {
            Some((_, path)) => {
                let path = path.display().to_string();
                let source = Source::read(&path).map_err(|e| local(e.to_string()))?;
                if source.digest.hex() != artifact.sha256 {
                    return Err(local(format!(
                        "{path} hashes to sha256:{}, but {file} pins {} to sha256:{}; nothing was sent",
                        source.digest, artifact.name, artifact.sha256
                    )));
                }
                Some(source)
            }
            None => None,
        };
        out.push(Needed {
            name: artifact.name,
            sha256: artifact.sha256,
            fetchable: !artifact.urls.is_empty(),
            from_beacon: artifact.urls.iter().any(|u| u == svc::parse::BEACON),
            local: source,
        });
    }
    Ok(out)
}

/// Makes sure the node holds what `file` pins before it is deployed:
/// sends each local file it lacks; an artifact it lacks with nothing to
/// send and no url to fetch from is an error naming what to do.
pub(crate) async fn ship(
    options: &Options,
    session: &mut Session,
    file: &str,
    given: &[(String, PathBuf)],
) -> Result<(), ClientError> {
    for need in needed(file, given)? {
        match need.local {
            Some(source) => {
                let answer = crate::upload(options, session, &source.file).await?;
                crate::print_result(options, rpc::verbs::Verb::ArtifactPut, &answer);
            }
            None if need.fetchable => {}
            None => {
                let held = crate::held(options, session, &need.sha256).await?;
                if !held {
                    return Err(ClientError::Local(format!(
                        "{file}: artifact {} (sha256:{}) is not on the node and the file gives no url: send it with --artifact {}=PATH",
                        need.name, need.sha256, need.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether an `artifact.list` answer holds `sha256` verified.
pub(crate) fn listed(list: &Value, sha256: &str) -> bool {
    list.get("artifacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|a| {
            a.get("sha256").and_then(Value::as_str) == Some(sha256)
                && a.get("complete") == Some(&Value::Bool(true))
        })
}

/// `--all deploy FILE --artifact NAME=PATH`: each local file goes to the
/// beacon's cache once, and every node fetches it from there, rather than
/// N copies from the operator's uplink. So the file must list the beacon
/// among the sources of each artifact given.
pub(crate) fn publish_for_fleet(
    options: &Options,
    file: &str,
    given: &[(String, PathBuf)],
) -> Result<(), ClientError> {
    let needs = needed(file, given)?;
    for need in &needs {
        if need.local.is_some() && !need.from_beacon {
            return Err(ClientError::Local(format!(
                "{file}: with --all or --nodes, nodes fetch what the file pins from the beacon, but artifact {} has no url \"beacon\" (add url = [\"beacon\"]), or send it to each node with --node HOST:PORT",
                need.name
            )));
        }
    }
    let beacon = crate::beacon_commands::client(options)?;
    let id = crate::identity(options)?;
    for need in needs {
        if let Some(source) = need.local {
            crate::beacon_commands::publish_one(options, &beacon, &id, &source.file)?;
        }
    }
    Ok(())
}
