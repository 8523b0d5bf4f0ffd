//! `spore run` in a cgroup delegated to it: when spore is started without
//! `--cgroup` in a cgroup marked as delegated (systemd's `Delegate=yes`,
//! or an outer spore's `[resources] delegate = true`: `trusted.delegate`
//! or `user.delegate` set to 1) where it is the only process, it takes
//! that cgroup as its tree: it moves itself into `CGROUP/init` (a process
//! may not sit in a cgroup that hands controllers to children), hands the
//! controllers it has down, and starts each service in
//! `CGROUP/services/NAME`, as PID 1 does.

use std::path::{Path, PathBuf};

use runtime::cgroup::delegation;
use runtime::journal;

use crate::mountinfo::{self, Mount};

/// The delegated cgroup spore was started in, set up as its tree; None
/// when it was not started in one (nothing said: the caller says that
/// services run in spore's cgroup).
pub fn adopt() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let dir = own_cgroup(&own, &mountinfo::read())?;
    let mark = delegation::marked(&dir)?;
    // Delegated to spore means given to spore alone (a service whose
    // process it is): a shell or another spore in it would share the
    // services' cgroups.
    let own_pid = std::process::id().to_string();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    let others = procs.lines().filter(|pid| pid.trim() != own_pid).count();
    if others > 0 {
        journal::note(format_args!(
            "cgroups: {} is delegated ({mark}), but {others} other process(es) are in it; not taken (give spore one of its own with --cgroup PATH)",
            dir.display()
        ));
        return None;
    }
    let leaf = dir.join("init");
    let moved = std::fs::create_dir_all(&leaf)
        .and_then(|()| std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()));
    if let Err(error) = moved {
        journal::note(format_args!(
            "cgroups: {} is delegated to spore ({mark}), but moving spore into {}: {error}",
            dir.display(),
            leaf.display()
        ));
        return None;
    }
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let (enabled, refused) = runtime::cgroup::hand_down(&available, &[dir.as_path()]);
    for (controller, error) in refused {
        journal::note(format_args!(
            "cgroups: cannot hand the {controller} controller down in {}: {error}",
            dir.display()
        ));
    }
    journal::note(format_args!(
        "cgroups: {} is delegated to spore ({mark}): spore in {}, services under {}/services (controllers: {})",
        dir.display(),
        leaf.display(),
        dir.display(),
        runtime::cgroup::listed(&enabled)
    ));
    Some(dir)
}

/// The directory of this process's cgroup v2 (`/proc/self/cgroup`'s `0::`
/// line, under the cgroup2 mount among `mounts`); None at the hierarchy's
/// root (never delegated) or without cgroup2.
fn own_cgroup(cgroup: &str, mounts: &[Mount]) -> Option<PathBuf> {
    let own = cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?
        .trim();
    if own == "/" || own.is_empty() {
        return None;
    }
    mounts
        .iter()
        .filter(|mount| mount.fstype == "cgroup2")
        .find_map(|mount| {
            let below = Path::new(own).strip_prefix(&mount.root).ok()?;
            Some(Path::new(&mount.point).join(below))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(text: &str) -> Vec<Mount> {
        mountinfo::parse(text)
    }

    const MOUNTINFO: &str = "24 30 0:22 / /proc rw,nosuid - proc proc rw\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn the_own_cgroup_is_found_under_the_cgroup2_mount() {
        let cgroup = "9:name=systemd:/\n0::/system.slice/spore.service\n";
        assert_eq!(
            own_cgroup(cgroup, &mounts(MOUNTINFO)),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/system.slice/spore.service"
            ))
        );
        // The hierarchy's root is never taken, nor a node without cgroup2.
        assert_eq!(own_cgroup("0::/\n", &mounts(MOUNTINFO)), None);
        assert_eq!(
            own_cgroup("0::/a\n", &mounts("24 30 0:22 / /proc rw - proc proc rw\n")),
            None
        );
        assert_eq!(own_cgroup("1:cpu:/a\n", &mounts(MOUNTINFO)), None);
    }

    #[test]
    fn a_mount_of_a_subtree_and_escaped_names_are_followed() {
        // A container's cgroup namespace: the mount's root is its cgroup.
        let mountinfo = "50 40 0:30 /machine/c1 /sys/fs/cgroup\\040x rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_cgroup("0::/machine/c1/app\n", &mounts(mountinfo)),
            Some(PathBuf::from("/sys/fs/cgroup x/app"))
        );
    }
}
