//! cgroup v2 as PID 1 owns it: the unified hierarchy at /sys/fs/cgroup
//! (`nsdelegate`), spore itself in `spore/init` (a leaf: no process may sit
//! in a cgroup whose children use its controllers), the services under
//! `spore/services/NAME` (see `runtime::cgroup`), and the controllers the
//! kernel has (cpu, memory, io, pids) handed down to them.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use runtime::journal;

/// Where the unified hierarchy is mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// Sets the tree up; the directory the services' cgroups go under, or
/// None (said in the journal) when the kernel gives no cgroup2.
pub fn setup() -> Option<PathBuf> {
    let root = Path::new(ROOT);
    if !root.join("cgroup.controllers").exists() {
        if let Err(error) = std::fs::create_dir_all(root) {
            journal::note(format_args!("cgroups: mkdir {ROOT}: {error}"));
            return None;
        }
        let flags = MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC);
        // favordynmods (Linux 6.0+): moving a process into a cgroup (each
        // service start) no longer waits for an RCU grace period, at a
        // small cost to fork and exit. Without it where the kernel lacks it.
        let mounted = mount(
            Some("cgroup2"),
            root,
            Some("cgroup2"),
            flags,
            Some("nsdelegate,favordynmods"),
        )
        .or_else(|_| {
            mount(
                Some("cgroup2"),
                root,
                Some("cgroup2"),
                flags,
                Some("nsdelegate"),
            )
        });
        if let Err(error) = mounted {
            journal::note(format_args!(
                "cgroups: mount cgroup2 on {ROOT}: {error}; services run in spore's cgroup"
            ));
            return None;
        }
    }
    let spore = root.join("spore");
    let leaf = spore.join("init");
    for dir in [&spore, &leaf] {
        if let Err(error) = std::fs::create_dir_all(dir) {
            journal::note(format_args!("cgroups: mkdir {}: {error}", dir.display()));
            return None;
        }
    }
    if let Err(error) = std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()) {
        journal::note(format_args!(
            "cgroups: moving spore into {}: {error}; services run in spore's cgroup",
            leaf.display()
        ));
        return None;
    }
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let (enabled, refused) = runtime::cgroup::hand_down(&available, &[root, spore.as_path()]);
    for (controller, _) in refused {
        journal::note(format_args!(
            "cgroups: cannot enable the {controller} controller"
        ));
    }
    journal::note(format_args!(
        "cgroups: spore in {}, services under {}/services (controllers: {})",
        leaf.display(),
        spore.display(),
        runtime::cgroup::listed(&enabled)
    ));
    Some(spore)
}
