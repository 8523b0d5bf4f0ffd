//! The filesystems every node needs, mounted only where nothing is yet.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use runtime::journal;

/// (source, target, type, flags, data)
const EARLY: &[(&str, &str, &str, MsFlags, Option<&str>)] = &[
    (
        "proc",
        "/proc",
        "proc",
        MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        None,
    ),
    (
        "sysfs",
        "/sys",
        "sysfs",
        MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        None,
    ),
    (
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    ),
    (
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        Some("gid=5,mode=0620,ptmxmode=0666"),
    ),
    (
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        Some("mode=0755"),
    ),
    (
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        Some("mode=1777"),
    ),
];

/// Mounts proc, sysfs, devtmpfs, devpts, /run and /tmp unless mounted.
pub fn mount_early() {
    for (source, target, fstype, flags, data) in EARLY {
        if is_mount_point(target) {
            continue;
        }
        if let Err(error) = std::fs::create_dir_all(target) {
            journal::note(format_args!("mkdir {target}: {error}"));
            continue;
        }
        match mount(Some(*source), *target, Some(*fstype), *flags, *data) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(error) => journal::note(format_args!("mount {fstype} on {target}: {error}")),
        }
    }
}

/// True when `path` is already a mount point, read from /proc/self/mountinfo
/// once proc is there (before that only /proc itself is asked about).
fn is_mount_point(path: &str) -> bool {
    crate::mountinfo::read()
        .iter()
        .any(|mount| Path::new(&mount.point) == Path::new(path))
}

/// Every mount point except the root, deepest first (for unmounting).
pub fn mount_points() -> Vec<String> {
    let mut points: Vec<String> = crate::mountinfo::read()
        .into_iter()
        .map(|mount| mount.point)
        .filter(|p| p != "/")
        .collect();
    points.reverse();
    points
}
