//! The new binary's side of a live re-exec: read the state from the memfd
//! the old one left, and take it up, or hand it back to the old binary.
//!
//! The state is read before anything else happens. If it cannot be read
//! (another format, a panic while reading it) or the event loop is not
//! taking it up within [`ADOPT_WITHIN`], the previous binary (kept in
//! `RUN/reexec/previous`) is exec'd with the same memfd, as the same
//! process: it takes the state up instead, and the node keeps its services
//! either way. Once the services are being taken up there is no way back.

use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use runtime::journal;

use super::{Carried, FALLBACK_VARIABLE, FORMAT, HANDOFF_VARIABLE, PREVIOUS_VARIABLE};

/// How long the new binary has from its start to taking the services up.
const ADOPT_WITHIN: Duration = Duration::from_secs(5);

/// Set once the services are being taken up: no way back after that.
static ADOPTING: AtomicBool = AtomicBool::new(false);

/// A handoff found at the start (see the module docs).
pub struct Incoming {
    memfd: OwnedFd,
    bytes: Vec<u8>,
    previous: Option<PathBuf>,
    /// This binary is the previous one, given the state back.
    fallback: bool,
}

impl Incoming {
    /// The handoff this process was exec'd with, if any; the variables
    /// naming it are removed so no service inherits them.
    pub fn take() -> Option<Incoming> {
        let fd = std::env::var(HANDOFF_VARIABLE).ok()?;
        let previous = std::env::var_os(PREVIOUS_VARIABLE).map(PathBuf::from);
        let fallback = std::env::var_os(FALLBACK_VARIABLE).is_some();
        // Single-threaded still: nothing else reads the environment now.
        std::env::remove_var(HANDOFF_VARIABLE);
        std::env::remove_var(PREVIOUS_VARIABLE);
        std::env::remove_var(FALLBACK_VARIABLE);
        let fd: i32 = fd.parse().ok().filter(|fd| *fd > 2)?;
        // SAFETY: the old binary made this memfd and kept it open across
        // the exec for us; nothing in this process has opened anything yet,
        // so nothing else owns this number.
        let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut file = std::fs::File::from(memfd);
        let mut bytes = Vec::new();
        let read = file
            .seek(std::io::SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes));
        if let Err(error) = read {
            journal::note(format_args!("re-exec: the handoff cannot be read: {error}"));
        }
        Some(Incoming {
            memfd: OwnedFd::from(file),
            bytes,
            previous,
            fallback,
        })
    }

    /// The state, or why it cannot be taken up here.
    fn read(&self) -> Result<Carried, String> {
        let (memfd, previous, fallback) =
            (self.memfd.as_raw_fd(), self.previous.clone(), self.fallback);
        // A panic while reading is covered (see crate::cover): back to the
        // previous binary, from the panic hook.
        let parsed = crate::cover::under(
            move || {
                go_back(memfd, previous.as_deref(), fallback, "reading it panicked");
                stranded()
            },
            || {
                crate::fault::point("handoff");
                serde_json::from_slice::<Carried>(&self.bytes)
            },
        );
        let carried = parsed.map_err(|error| format!("it cannot be read: {error}"))?;
        if carried.format != FORMAT {
            return Err(format!(
                "format {}, and this binary reads {FORMAT}",
                carried.format
            ));
        }
        Ok(carried)
    }
}

/// After a panic while reading the state, when there is no previous binary
/// to go back to: PID 1 keeps reaping what it has (a fresh boot cannot be
/// started from the panic hook); any other spore exits.
fn stranded() -> std::convert::Infallible {
    if std::process::id() == 1 {
        crate::pid1::last_resort()
    }
    journal::flush(Duration::from_secs(2));
    std::process::exit(1)
}

/// Marks the point of no return: the services are being taken up.
pub fn adopting() {
    ADOPTING.store(true, Ordering::SeqCst);
}

/// Takes the handed state up and supervises as the old binary did; falls
/// back to the previous binary when that cannot be done.
pub fn resume(incoming: Incoming) -> std::process::ExitCode {
    crate::cover::install();
    watch(&incoming);
    let carried = match incoming.read() {
        Ok(carried) => carried,
        Err(why) => {
            go_back(
                incoming.memfd.as_raw_fd(),
                incoming.previous.as_deref(),
                incoming.fallback,
                &why,
            );
            return crate::unresumed(std::process::id() == 1);
        }
    };
    journal::restore(carried.journal.iter().map(|(ns, text)| {
        (
            std::time::UNIX_EPOCH + Duration::from_nanos(*ns),
            text.clone(),
        )
    }));
    let memfd = incoming.memfd;
    crate::resumed(carried, memfd, incoming.fallback)
}

/// Goes back to the previous binary unless the services are being taken
/// up by [`ADOPT_WITHIN`].
fn watch(incoming: &Incoming) {
    if incoming.fallback {
        return;
    }
    let fd = incoming.memfd.as_raw_fd();
    let previous = incoming.previous.clone();
    let watcher = std::thread::Builder::new()
        .name("spore-adopt".into())
        .spawn(move || {
            std::thread::sleep(ADOPT_WITHIN);
            if !ADOPTING.load(Ordering::SeqCst) {
                go_back(
                    fd,
                    previous.as_deref(),
                    false,
                    &format!("not taken up within {} s", ADOPT_WITHIN.as_secs()),
                );
            }
        });
    if let Err(error) = watcher {
        journal::note(format_args!("re-exec: no watch on the takeover: {error}"));
    }
}

/// Execs the previous binary with the same state; returns if it cannot.
fn go_back(memfd: i32, previous: Option<&std::path::Path>, fallback: bool, why: &str) {
    let Some(previous) = previous.filter(|_| !fallback) else {
        journal::note(format_args!(
            "re-exec: the handed state cannot be taken up ({why}), and there is no binary to go back to"
        ));
        return;
    };
    journal::note(format_args!(
        "re-exec: the handed state cannot be taken up ({why}); going back to {}",
        previous.display()
    ));
    journal::flush(Duration::from_millis(500));
    // SAFETY: lseek(2) on the memfd this process holds open.
    unsafe { libc::lseek(memfd, 0, libc::SEEK_SET) };
    // A fault injected into this binary is not the previous one's.
    let error = super::exec_as_spore(
        previous,
        &[
            "SPORE_FAULT",
            HANDOFF_VARIABLE,
            PREVIOUS_VARIABLE,
            FALLBACK_VARIABLE,
        ],
        &[
            format!("{HANDOFF_VARIABLE}={memfd}"),
            format!("{FALLBACK_VARIABLE}=1"),
        ],
    );
    journal::note(format_args!(
        "re-exec: going back to {} failed: {error}",
        previous.display()
    ));
}
