//! A service's `[[artifacts]]` handed over at each start: a directory of
//! its own (`ROOT/SERVICE`, 0500), named to it by `$ARTIFACTS_DIRECTORY`,
//! holding under each artifact's name a symlink to the verified file in the
//! node's artifact store. Nothing is copied: the store's files are
//! read-only and named by their hash, so what the service runs is what was
//! pinned. Blocking file work: run off the event loop.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use svc::service::ArtifactRef;

/// The variable that names the directory to the service.
pub const VARIABLE: &str = "ARTIFACTS_DIRECTORY";

/// `$ARTIFACTS_DIRECTORY` in an argv word, replaced at each start (a line
/// without a shell has no one else to expand it).
pub const PLACEHOLDER: &str = "$ARTIFACTS_DIRECTORY";

/// Why a service's artifacts could not be handed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Some are not in the store (yet).
    #[error("waiting for {}: not on the node; put it with `sporectl artifact put`{}", describe(.0), fetch_hint(.0))]
    Missing(Vec<ArtifactRef>),
    /// The node keeps no artifact store.
    #[error("[[artifacts]]: this node keeps no artifact store")]
    NoStore,
    /// A file operation failed.
    #[error("{0}")]
    Io(String),
}

fn describe(missing: &[ArtifactRef]) -> String {
    missing
        .iter()
        .map(|a| format!("artifact {} (sha256:{})", a.name, a.sha256))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fetch_hint(missing: &[ArtifactRef]) -> &'static str {
    if missing.iter().any(|a| !a.urls.is_empty()) {
        " or let the node fetch it from its url"
    } else {
        ""
    }
}

/// Makes `root/service` afresh with a link to each of `artifacts` in
/// `store` (an artifact store's root); returns the directory. An artifact
/// not in the store is an error naming every one missing (the service does
/// not start without what it pinned). An executable one whose stored file
/// is not is made so (0555).
///
/// With `owner` (a service that runs as its own user) the directory is that
/// user's, and every directory on the way to it and to the store's files
/// is made passable for it (x for others, never r: it cannot list them).
/// The store is under the state directory, whose other entries (the node
/// key, the secrets, the deployed files, the kept logs) stay closed to it by
/// their own modes (0600 and 0700).
pub fn prepare(
    root: &Path,
    service: &str,
    store: &Path,
    artifacts: &[ArtifactRef],
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, LinkError> {
    let io = |path: &Path, e: std::io::Error| LinkError::Io(format!("{}: {e}", path.display()));
    let mut missing = Vec::new();
    for artifact in artifacts {
        let file = store.join("sha256").join(&artifact.sha256);
        match fs::metadata(&file) {
            Ok(meta) if meta.is_file() => {
                if artifact.executable && meta.permissions().mode() & 0o111 == 0 {
                    fs::set_permissions(&file, fs::Permissions::from_mode(0o555))
                        .map_err(|e| io(&file, e))?;
                }
            }
            _ => missing.push(artifact.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(LinkError::Missing(missing));
    }
    let dir = root.join(service);
    remove(&dir).map_err(|e| io(&dir, e))?;
    // Passable, never listable: which services have artifacts is not
    // shown to others, and each one's directory is its own (0500).
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .map_err(|e| io(root, e))?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io(&dir, e))?;
    for artifact in artifacts {
        let link = dir.join(&artifact.name);
        std::os::unix::fs::symlink(store.join("sha256").join(&artifact.sha256), &link)
            .map_err(|e| io(&link, e))?;
    }
    if let Some((uid, gid)) = owner {
        let hashed = store.join("sha256");
        let passes = [root.parent(), Some(root), store.parent(), Some(store)];
        for path in passes.into_iter().flatten().chain([hashed.as_path()]) {
            crate::credentials::traversable(path).map_err(|e| io(path, e))?;
        }
        std::os::unix::fs::lchown(&dir, Some(uid), Some(gid)).map_err(|e| io(&dir, e))?;
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).map_err(|e| io(&dir, e))?;
    Ok(dir)
}

/// `argv` with [`PLACEHOLDER`] replaced by `dir` in every word.
pub fn expand(argv: Vec<String>, dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    argv.into_iter()
        .map(|word| {
            if word.contains(PLACEHOLDER) {
                word.replace(PLACEHOLDER, &dir)
            } else {
                word
            }
        })
        .collect()
}

/// Removes a service's artifact directory (read-only, as a credential
/// directory is, and removed the same way); a missing one is done already.
pub use crate::credentials::remove;

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(name: &str, sha256: &str, executable: bool) -> ArtifactRef {
        ArtifactRef {
            name: name.into(),
            sha256: sha256.into(),
            urls: Vec::new(),
            executable,
        }
    }

    #[test]
    fn a_service_gets_links_to_its_pinned_files_and_missing_ones_are_named() {
        let place = tempfile::tempdir().unwrap();
        let store = place.path().join("store");
        let root = place.path().join("run");
        fs::create_dir_all(store.join("sha256")).unwrap();
        let held = "a".repeat(64);
        fs::write(store.join("sha256").join(&held), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(
            store.join("sha256").join(&held),
            fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        let absent = "b".repeat(64);
        let error = prepare(
            &root,
            "web",
            &store,
            &[pinned("tool", &held, true), pinned("data", &absent, false)],
            None,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("waiting for artifact data (sha256:{absent}): not on the node; put it with `sporectl artifact put`")
        );
        let dir = prepare(&root, "web", &store, &[pinned("tool", &held, true)], None).unwrap();
        assert_eq!(dir, root.join("web"));
        assert_eq!(fs::read(dir.join("tool")).unwrap(), b"#!/bin/sh\necho hi\n");
        let mode = fs::metadata(dir.join("tool")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o555);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o500
        );
        // Again at the next start: afresh.
        prepare(&root, "web", &store, &[pinned("tool", &held, true)], None).unwrap();
        let argv = expand(
            vec![
                "$ARTIFACTS_DIRECTORY/tool".into(),
                "--conf=$ARTIFACTS_DIRECTORY/c".into(),
            ],
            &dir,
        );
        assert_eq!(
            argv,
            [
                format!("{}/tool", dir.display()),
                format!("--conf={}/c", dir.display())
            ]
        );
        remove(&dir).unwrap();
        assert!(!dir.exists());
    }
}
