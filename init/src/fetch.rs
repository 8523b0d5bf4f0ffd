//! The node fetches the artifacts its services pin (`[[artifacts]] url`),
//! each on a thread of its own, at most [`MAX_FETCHES`] at once and one per
//! artifact: the body goes into the store through its queue, piece by
//! piece, and the store verifies the whole against the pin before anything
//! is visible. A service waiting for it starts once it arrives (see
//! `nodeapi::NodeApi::artifact_arrived`); a fetch that fails is tried again
//! at the service's next start, after its backoff. The event loop never
//! waits on a server.
//!
//! The source `"beacon"` is the artifact cache of each beacon in
//! `[beacon] url`, in order, trusted as call-home trusts it (`[beacon]
//! ca_file`); plain http to it is fine here, for the pin is checked.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use artifacts::{Digest, Held};
use nodeapi::artifacts::Writer;
use runtime::journal;
use svc::service::ArtifactRef;

/// Why a download stopped at once: the store has the artifact already.
const ALREADY_HELD: &str = "already held";

/// Fetches under way at most; a service asking beyond them waits for its
/// next start.
const MAX_FETCHES: usize = 4;

/// Where a fetch may get an artifact: its URL, and the CA to trust for it.
type Source = (String, Option<PathBuf>);

/// The fetcher the node API calls, set up from `[artifacts]` and the
/// beacons of `[beacon]`.
pub fn fetcher(
    settings: &crate::config::Artifacts,
    beacon: &crate::config::Beacon,
) -> nodeapi::Fetcher {
    let ca_file = settings.ca_file.clone();
    let beacons = beacon.url.clone();
    let beacon_ca = beacon.ca_file.clone();
    let timeout = Duration::from_millis(settings.fetch_timeout_ms.max(1));
    let under_way: Arc<Mutex<HashSet<String>>> = Arc::default();
    Box::new(move |artifact: ArtifactRef, writer: Writer| {
        {
            let Ok(mut busy) = under_way.lock() else {
                return;
            };
            if busy.contains(&artifact.sha256) {
                return;
            }
            if busy.len() >= MAX_FETCHES {
                journal::note(format_args!(
                    "artifact {}: {MAX_FETCHES} fetches under way; tried again at the next start",
                    artifact.name
                ));
                return;
            }
            busy.insert(artifact.sha256.clone());
        }
        let done = under_way.clone();
        let sources = sources(
            &artifact,
            ca_file.as_deref(),
            &beacons,
            beacon_ca.as_deref(),
        );
        let name = artifact.sha256.clone();
        let spawned = std::thread::Builder::new()
            .name("spore-fetch".into())
            .spawn(move || {
                fetch(&artifact, &sources, &writer, timeout);
                if let Ok(mut busy) = done.lock() {
                    busy.remove(&artifact.sha256);
                }
            });
        if let Err(error) = spawned {
            journal::note(format_args!(
                "artifact fetch: cannot start a thread: {error}"
            ));
            if let Ok(mut busy) = under_way.lock() {
                busy.remove(&name);
            }
        }
    })
}

/// The sources of `artifact`, in order: its URLs (trusting `ca_file`),
/// with `"beacon"` standing for each beacon's cache (trusting
/// `beacon_ca`).
fn sources(
    artifact: &ArtifactRef,
    ca_file: Option<&Path>,
    beacons: &[String],
    beacon_ca: Option<&Path>,
) -> Vec<Source> {
    let mut out = Vec::new();
    for url in &artifact.urls {
        if url == svc::parse::BEACON {
            for beacon in beacons {
                match rpc::callhome::artifact_url(beacon, &artifact.sha256) {
                    Ok(url) => out.push((url, beacon_ca.map(Path::to_owned))),
                    Err(error) => journal::note(format_args!(
                        "artifact {}: beacon {}: {}",
                        artifact.name,
                        runtime::escape::field(beacon),
                        runtime::escape::field(&error)
                    )),
                }
            }
            if beacons.is_empty() {
                journal::note(format_args!(
                    "artifact {}: url \"beacon\", but spore.toml names no beacon ([beacon] url)",
                    artifact.name
                ));
            }
        } else {
            out.push((url.clone(), ca_file.map(Path::to_owned)));
        }
    }
    out
}

/// Tries each source of `artifact` in order until one gives it whole.
fn fetch(artifact: &ArtifactRef, sources: &[Source], writer: &Writer, timeout: Duration) {
    let Ok(digest) = Digest::parse(&artifact.sha256) else {
        return;
    };
    let mut reasons = Vec::new();
    for (url, ca_file) in sources {
        let shown = runtime::escape::field(url);
        journal::note(format_args!(
            "artifact {}: fetching from {shown}",
            artifact.name
        ));
        match from(url, digest, writer, ca_file.as_deref(), timeout) {
            Ok(size) => {
                journal::note(format_args!(
                    "artifact {}: fetched from {shown} and verified (sha256:{}, {size} bytes)",
                    artifact.name, artifact.sha256
                ));
                return;
            }
            // Put (or fetched) meanwhile: the services waiting for it start.
            Err(reason) if reason == ALREADY_HELD => {
                writer.held_already(digest);
                return;
            }
            Err(reason) => {
                // Nothing half-fetched stays behind.
                let _ = writer.remove(digest);
                reasons.push(format!("{shown}: {}", runtime::escape::field(&reason)));
            }
        }
    }
    journal::note(format_args!(
        "artifact {}: not fetched ({}); tried again at the service's next start",
        artifact.name,
        reasons.join("; ")
    ));
    writer.gave_up(digest);
}

/// One source, streamed into the store.
fn from(
    url: &str,
    digest: Digest,
    writer: &Writer,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<u64, String> {
    let mut began = false;
    rpc::fetch::download(url, ca_file, timeout, &mut |size, offset, piece| {
        if !began {
            began = true;
            match writer.held(digest, size).map_err(|e| e.message)? {
                Held::Complete => return Err(ALREADY_HELD.into()),
                // An earlier attempt's part: this download starts afresh.
                Held::Partial(_) => writer.remove(digest).map_err(|e| e.message)?,
                Held::Nothing => {}
            }
        }
        writer
            .put(digest, size, offset, piece)
            .map(|_| ())
            .map_err(|e| e.message)
    })
}
