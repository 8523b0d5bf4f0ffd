//! Writes and deletions of deployed service files and secrets, off the
//! event loop. fsync on a slow disk takes as long as it takes; it must not
//! hold reaping, health checks or RPC meanwhile. One task takes the jobs in
//! order (so two deploys of one file land in the order they were asked),
//! runs each on smol's blocking pool, and hands the outcome back to the
//! event loop as an [`crate::Input::Stored`], which applies it and answers the
//! caller.

use std::path::PathBuf;

use serde_json::Value;
use smol::channel::{Receiver, Sender};
use svc::Service;

use crate::reply::ApiError;

/// What to do on disk. Its Debug shows no content: a write may carry a
/// secret's value.
pub enum Work {
    /// Write `bytes` to `path` with `mode`, atomically (temp, fsync, rename).
    Write {
        /// The file.
        path: PathBuf,
        /// Its new content (wiped when the job is dropped: it may be a
        /// secret's value).
        bytes: runtime::secret::SecretBytes,
        /// Its permission bits.
        mode: u32,
    },
    /// Delete `path` durably; a missing file counts as done.
    Remove {
        /// The file.
        path: PathBuf,
    },
    /// Each in order; the first failure ends it (a deploy over a masked
    /// name writes the file, then drops the mask).
    Steps(Vec<Work>),
    /// Rewrite secret `name` in each running service's credential
    /// directory (after the store's own copy was written): the directories
    /// rewritten land in `into`; one that fails is left out (its service
    /// is restarted instead), and the work still succeeds.
    Credentials {
        /// The secret's name.
        name: String,
        /// Its new value (wiped when the job is dropped).
        bytes: runtime::secret::SecretBytes,
        /// The directories, with the pid of the run each belongs to.
        dirs: Vec<(i32, PathBuf)>,
        /// Where the rewritten ones go (pid, or an error line).
        into: RefreshSlot,
    },
    /// Read a service file (at most [`MAX_DEFINITION`] bytes, UTF-8): the
    /// text lands in `into` for the event loop.
    Read {
        /// The file.
        path: PathBuf,
        /// Where its text goes.
        into: TextSlot,
    },
    /// Read the image's services and the deployed layer (a reload): the
    /// report lands in `into` for the event loop.
    Load {
        /// The image's directory.
        base: PathBuf,
        /// The deployed layer.
        layer: PathBuf,
        /// Where the report goes.
        into: LoadSlot,
    },
}

/// What a [`Work::Credentials`] did, handed to the event loop: the pids
/// whose directory holds the new value, and the errors of the others.
pub type RefreshSlot = std::sync::Arc<std::sync::Mutex<(Vec<i32>, Vec<String>)>>;

/// A file's text, handed from the blocking thread to the event loop.
pub type TextSlot = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// The largest service file `service.definition` reads.
pub const MAX_DEFINITION: u64 = 1024 * 1024;

/// A load's report, handed from the blocking thread to the event loop.
pub type LoadSlot = std::sync::Arc<std::sync::Mutex<Option<svc::LoadReport>>>;

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Write { path, bytes, mode } => f
                .debug_struct("Write")
                .field("path", path)
                .field("bytes", &format_args!("<{} bytes>", bytes.len()))
                .field("mode", &format_args!("{mode:o}"))
                .finish(),
            Work::Remove { path } => f.debug_struct("Remove").field("path", path).finish(),
            Work::Steps(steps) => f.debug_list().entries(steps).finish(),
            Work::Credentials { name, dirs, .. } => f
                .debug_struct("Credentials")
                .field("name", name)
                .field("dirs", dirs)
                .finish_non_exhaustive(),
            Work::Read { path, .. } => f.debug_struct("Read").field("path", path).finish(),
            Work::Load { base, layer, .. } => f
                .debug_struct("Load")
                .field("base", base)
                .field("layer", layer)
                .finish(),
        }
    }
}

impl Work {
    /// Runs it (on a blocking thread).
    fn run(&self) -> std::io::Result<()> {
        match self {
            Work::Write { path, bytes, mode } => {
                durable::atomic::write_atomically(path, bytes.as_slice(), *mode)
            }
            Work::Remove { path } => match durable::atomic::remove_durably(path) {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
            Work::Steps(steps) => steps.iter().try_for_each(Work::run),
            Work::Credentials {
                name,
                bytes,
                dirs,
                into,
            } => {
                for (pid, dir) in dirs {
                    let done = runtime::credentials::refresh(dir, name, bytes.as_slice());
                    if let Ok(mut slot) = into.lock() {
                        match done {
                            Ok(()) => slot.0.push(*pid),
                            Err(error) => slot.1.push(error),
                        }
                    }
                }
                Ok(())
            }
            Work::Read { path, into } => {
                let text = read_text(path)?;
                if let Ok(mut slot) = into.lock() {
                    *slot = Some(text);
                }
                Ok(())
            }
            Work::Load { base, layer, into } => {
                let report = svc::load_layers(base, layer)
                    .map_err(|e| std::io::Error::new(e.source.kind(), e.to_string()))?;
                if let Ok(mut slot) = into.lock() {
                    *slot = Some(report);
                }
                Ok(())
            }
        }
    }

    /// The (first) file it touches, for error messages.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Work::Write { path, .. } | Work::Remove { path } | Work::Read { path, .. } => path,
            Work::Load { base, .. } => base,
            Work::Credentials { dirs, .. } => dirs
                .first()
                .map_or(std::path::Path::new(""), |(_, dir)| dir.as_path()),
            Work::Steps(steps) => steps
                .first()
                .map_or(std::path::Path::new(""), |step| step.path()),
        }
    }
}

/// A service file's text: at most [`MAX_DEFINITION`] bytes, UTF-8.
fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_DEFINITION + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_DEFINITION {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_DEFINITION} bytes"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// What the event loop does once the work succeeded.
#[derive(Debug)]
pub enum Then {
    /// Hand the (validated) service to the supervisor; start it if asked.
    Deploy {
        /// The new definition.
        service: Box<Service>,
        /// Start it even if its status is not `start`.
        start: bool,
        /// Answer once it settled, waiting at most this long.
        wait: Option<std::time::Duration>,
    },
    /// Stop the service and forget it.
    Remove {
        /// Its name.
        name: String,
    },
    /// A secret was stored.
    Secret {
        /// Its name (never its value).
        name: String,
        /// The running loaders whose credential files were rewritten.
        refreshed: RefreshSlot,
    },
    /// A secret was deleted.
    SecretRemoved {
        /// Its name.
        name: String,
    },
    /// A service file was read: answer with its text.
    Definition {
        /// The service's name.
        name: String,
        /// Where it came from: "image" or "deployed".
        source: &'static str,
        /// The text read.
        text: TextSlot,
    },
    /// The service files were read again: apply the difference.
    Reload {
        /// The report the load left.
        from: LoadSlot,
    },
}

/// One job: the work, what follows it, and where the answer goes.
#[derive(Debug)]
pub struct Job {
    /// The disk work.
    pub work: Work,
    /// What the event loop applies after it.
    pub then: Then,
    /// The caller's answer.
    pub reply: Sender<Result<Value, ApiError>>,
}

/// The work done (or not), back on the event loop.
#[derive(Debug)]
pub struct Done {
    /// The job.
    pub job: Job,
    /// How the disk work went.
    pub outcome: std::io::Result<()>,
}

/// Runs jobs one at a time, in order, until the queue closes.
pub async fn serve(jobs: Receiver<Job>, done: Sender<Box<Done>>) {
    while let Ok(job) = jobs.recv().await {
        // A thread of its own, not smol's pool (see runtime::offload).
        let Some((job, outcome)) = runtime::offload::run("spore-storage", move || {
            let outcome = job.work.run();
            (job, outcome)
        })
        .await
        else {
            continue;
        };
        if done.send(Box::new(Done { job, outcome })).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_never_shows_its_content() {
        let work = Work::Write {
            path: "/var/lib/spore/secrets/db".into(),
            bytes: b"s3cr3t".to_vec().into(),
            mode: 0o600,
        };
        let shown = format!("{work:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("115, 51"),
            "{shown}"
        );
        assert!(
            shown.contains("<6 bytes>") && shown.contains("600"),
            "{shown}"
        );
    }
}
