//! What the runtime's own tasks (timers, probes, pipe readers, the
//! spawner's helpers) hand back to the event loop.

use svc::supervisor::Event;

use crate::logbook::Stream;
use crate::spawn::SpawnError;

/// Something for the runtime to handle, sent by its own tasks.
#[derive(Debug)]
pub enum Input {
    /// A fact for the supervisor (timer fired, probe done).
    Event(Event),
    /// A line of a service's output.
    Line {
        /// The service.
        service: String,
        /// Its stream.
        stream: Stream,
        /// The text.
        text: String,
    },
    /// An exec health check ran out of time.
    CheckTimedOut {
        /// The check's process.
        pid: i32,
    },
    /// A service's secrets were read off the loop: start it now.
    Prepared {
        /// The service.
        service: String,
        /// The run it is for.
        run: u64,
        /// What was read, or why it could not be.
        prepared: Box<Result<Prepared, SpawnError>>,
    },
    /// A timer of the layer above fired (see
    /// [`Runtime::arm_caller_timer`]); the runtime hands it on
    /// ([`Runtime::take_notices`]).
    CallerTimer(u64),
}

/// A service's secrets, read off the loop before it starts: the
/// `[secrets]` variables (wiped when dropped) and its credential directory.
#[derive(Default)]
pub struct Prepared {
    /// `[secrets]` as environment variables.
    pub(crate) env: Vec<(String, String)>,
    /// Its credential directory, made with the current values.
    pub(crate) credentials: Option<std::path::PathBuf>,
    /// Its `$ARTIFACTS_DIRECTORY`, made with links to its pinned files.
    pub(crate) artifacts: Option<std::path::PathBuf>,
    /// Who it runs as (`[sandbox]`, resolved in the node's account files).
    pub(crate) identity: Option<crate::accounts::Identity>,
    /// Its mount namespace (`[sandbox]`), planned.
    pub(crate) mounts: Option<crate::mounts::MountPlan>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("env", &format_args!("<{} variables>", self.env.len()))
            .field("credentials", &self.credentials)
            .field("artifacts", &self.artifacts)
            .field("identity", &self.identity)
            .field("mounts", &self.mounts)
            .finish()
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for (_, value) in &mut self.env {
            zeroize::Zeroize::zeroize(value);
        }
    }
}
