//! The `[[mount]]` tables of spore.toml: wait for each device to appear,
//! create the target, mount. A failed mount is logged and the boot goes on.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use runtime::journal;

use super::block_id::{self, DeviceSpec, FsId};
use crate::config::Mount;

/// Mounts every table in order; a later one may sit inside an earlier one.
pub fn mount_all(mounts: &[Mount]) {
    for table in mounts {
        if let Err(error) = mount_one(table) {
            journal::note(format_args!(
                "mount {} on {}: {error}",
                table.source,
                table.target.display()
            ));
        }
    }
}

fn mount_one(table: &Mount) -> Result<(), String> {
    if let Some(problem) = table.problem() {
        return Err(problem);
    }
    let wait = Duration::from_millis(table.wait_ms.unwrap_or(Mount::DEFAULT_WAIT_MS));
    let mut fstype = table.fstype.clone();
    let source = if let Some(spec) = DeviceSpec::parse(&table.source) {
        let (device, id) = wait_for_device(&spec, wait)
            .ok_or_else(|| format!("no disk with {} appeared within {wait:?}", table.source))?;
        if fstype == "auto" {
            fstype = id.fstype.to_owned();
        }
        journal::note(format_args!(
            "{} is {} ({})",
            table.source,
            device.display(),
            id.fstype
        ));
        device.display().to_string()
    } else {
        if table.source.starts_with("/dev/") && !wait_for(Path::new(&table.source), wait) {
            return Err(format!("{} did not appear within {wait:?}", table.source));
        }
        table.source.clone()
    };
    std::fs::create_dir_all(&table.target)
        .map_err(|e| format!("mkdir {}: {e}", table.target.display()))?;
    let (flags, data) = options(table.options.as_deref().unwrap_or_default());
    mount(
        Some(source.as_str()),
        &table.target,
        Some(fstype.as_str()),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| format!("{fstype} {e}"))?;
    journal::note(format_args!(
        "mounted {} ({fstype}) on {}",
        table.source,
        table.target.display()
    ));
    Ok(())
}

/// mount(8)-style options split into flags and the filesystem's own data.
fn options(text: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let flag = match option {
            "defaults" | "rw" => Some(MsFlags::empty()),
            "ro" => Some(MsFlags::MS_RDONLY),
            "nosuid" => Some(MsFlags::MS_NOSUID),
            "nodev" => Some(MsFlags::MS_NODEV),
            "noexec" => Some(MsFlags::MS_NOEXEC),
            "noatime" => Some(MsFlags::MS_NOATIME),
            "nodiratime" => Some(MsFlags::MS_NODIRATIME),
            "relatime" => Some(MsFlags::MS_RELATIME),
            "sync" => Some(MsFlags::MS_SYNCHRONOUS),
            "dirsync" => Some(MsFlags::MS_DIRSYNC),
            _ => None,
        };
        match flag {
            Some(flag) => flags |= flag,
            None => data.push(option),
        }
    }
    (flags, data.join(","))
}

/// The disk `spec` names, waiting up to `timeout` for it: every block
/// device is looked at now and again whenever /dev changes (inotify, no
/// polling), as a USB stick or a slow controller brings its disks late.
fn wait_for_device(spec: &DeviceSpec, timeout: Duration) -> Option<(std::path::PathBuf, FsId)> {
    let look = || block_id::find(spec, Path::new("/sys/class/block"), Path::new("/dev"));
    let mut found = None;
    wait_until(Path::new("/dev"), timeout, &format!("{spec:?}"), || {
        found = look();
        found.is_some()
    });
    found
}

/// True once `path` exists, waiting up to `timeout` for it to be created
/// (inotify on its directory: no polling).
fn wait_for(path: &Path, timeout: Duration) -> bool {
    if path.exists() {
        return true;
    }
    let Some(dir) = path.parent() else {
        return false;
    };
    wait_until(dir, timeout, &path.display().to_string(), || path.exists())
}

/// True once `done()` holds, asking it again whenever an entry is created
/// in `dir`, for up to `timeout`.
fn wait_until(dir: &Path, timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> bool {
    if done() {
        return true;
    }
    let watch = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).and_then(|i| {
        i.add_watch(dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
            .map(|_| i)
    });
    let inotify = match watch {
        Ok(inotify) => inotify,
        Err(error) => {
            journal::note(format_args!("inotify on {}: {error}", dir.display()));
            return done();
        }
    };
    journal::note(format_args!("waiting for {what}"));
    let deadline = Instant::now() + timeout;
    loop {
        // Checked after the watch exists, so a creation in between is seen.
        if done() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {
                // Drain; what was created is checked at the top.
                let _ = inotify.read_events();
            }
            Err(error) => {
                journal::note(format_args!("poll inotify: {error}"));
                return done();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_flags_and_the_rest_is_data() {
        let (flags, data) = options("noatime, ro,errors=remount-ro,nodev,defaults,mode=0700");
        assert_eq!(
            flags,
            MsFlags::MS_NOATIME | MsFlags::MS_RDONLY | MsFlags::MS_NODEV
        );
        assert_eq!(data, "errors=remount-ro,mode=0700");
        assert_eq!(options(""), (MsFlags::empty(), String::new()));
    }

    #[test]
    fn waiting_sees_a_file_created_later_and_gives_up_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vda");
        let later = path.clone();
        let maker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(later, b"").unwrap();
        });
        assert!(wait_for(&path, Duration::from_secs(30)));
        maker.join().unwrap();
        let started = Instant::now();
        assert!(!wait_for(
            &dir.path().join("never"),
            Duration::from_millis(200)
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
