//! The hardware watchdog during an update's trial: armed when spore starts
//! on a slot on trial, petted from the event loop, and disarmed (the magic
//! close, Documentation/watchdog/watchdog-api.rst) once the trial is
//! decided. A spore that hangs on the new slot, or a kernel that stops
//! running it, pets nothing: the machine resets, and the firmware boots
//! the old slot (BootNext was used up). Only during a trial: an idle node
//! keeps making no wake-ups.

use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Duration;

nix::ioctl_readwrite!(set_timeout, b'W', 6, libc::c_int);

/// An armed watchdog.
pub struct Watchdog {
    file: File,
    /// The timeout the driver took (it may round the one asked for).
    pub timeout: Duration,
}

impl Watchdog {
    /// Opens the watchdog at `path` (which arms it) and sets its timeout
    /// to `seconds`. Err says why not; the caller goes on without one.
    pub fn arm(path: &Path, seconds: u32) -> Result<Watchdog, String> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut asked = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int we own.
        let timeout = match unsafe { set_timeout(file.as_raw_fd(), &mut asked) } {
            Ok(_) => Duration::from_secs(u64::try_from(asked).unwrap_or(u64::from(seconds))),
            // A driver without a settable timeout keeps its own; pet as if
            // it were the one asked for.
            Err(_) => Duration::from_secs(u64::from(seconds)),
        };
        Ok(Watchdog { file, timeout })
    }

    /// How often to pet it: a third of its timeout, so a late wake-up or
    /// two is not a reset.
    pub fn period(&self) -> Duration {
        (self.timeout / 3).max(Duration::from_secs(1))
    }

    /// Tells it spore is alive.
    pub fn pet(&mut self) -> std::io::Result<()> {
        self.file.write_all(b"\0")
    }

    /// Stops it: the magic character, then the close.
    pub fn disarm(mut self) -> std::io::Result<()> {
        self.file.write_all(b"V")
    }
}

/// Pets `dog` every [`Watchdog::period`] until `done` says the trial is
/// decided (or is dropped), then disarms it. Says what it did.
pub async fn keep_alive(mut dog: Watchdog, done: smol::channel::Receiver<()>) -> String {
    loop {
        let decided = async {
            let _ = done.recv().await;
            true
        };
        let due = async {
            smol::Timer::after(dog.period()).await;
            false
        };
        if smol::future::or(decided, due).await {
            return match dog.disarm() {
                Ok(()) => "watchdog disarmed".to_owned(),
                Err(error) => format!(
                    "watchdog: the magic close failed ({error}); it may still reset the machine"
                ),
            };
        }
        if let Err(error) = dog.pet() {
            return format!("watchdog: petting failed ({error})");
        }
    }
}
