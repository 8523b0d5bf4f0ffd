//! Services' cgroups (v2): one directory a service under the tree spore
//! owns (`ROOT/services/NAME`), its first process put there between fork
//! and exec (it writes `0` to the cgroup's `cgroup.procs`), so everything
//! it starts, however it detaches (setsid, double fork), stays there; all
//! of it killed at once (`cgroup.kill`), and asked whether any process is
//! left (`cgroup.events`). Limits and accounting come on top of this.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The cgroups spore makes for its services, under one directory of a
/// cgroup2 hierarchy spore may write (as PID 1 its own; under `spore run`,
/// one delegated to it).
#[derive(Debug, Clone)]
pub struct Tree {
    services: PathBuf,
}

/// The file a process writes its pid (or `0`, itself) to, to move into a
/// cgroup.
pub const PROCS: &str = "cgroup.procs";

impl Tree {
    /// The tree under `root`, a cgroup2 directory: makes `root/services`.
    /// Refused when `root` is not in a cgroup2 hierarchy.
    pub fn at(root: &Path) -> io::Result<Tree> {
        if !root.join("cgroup.controllers").exists() {
            return Err(io::Error::other(format!(
                "{} is not a cgroup2 directory (no cgroup.controllers)",
                root.display()
            )));
        }
        let services = root.join("services");
        match fs::create_dir(&services) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        // The controllers handed to `root`'s children, handed on to each
        // service's cgroup (their limits need them).
        let handed = fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
        for controller in handed.split_whitespace() {
            let _ = fs::write(
                services.join("cgroup.subtree_control"),
                format!("+{controller}"),
            );
        }
        Ok(Tree { services })
    }

    /// The cgroup of `service`.
    pub fn path(&self, service: &str) -> PathBuf {
        self.services.join(service)
    }

    /// Makes the cgroup of `service` (kept when it is there); returns the
    /// file its first process writes itself into.
    pub fn prepare(&self, service: &str) -> io::Result<PathBuf> {
        let dir = self.path(service);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        Ok(dir.join(PROCS))
    }

    /// Kills every process in the cgroup of `service` (SIGKILL, by the
    /// kernel, all at once: none can fork away meanwhile).
    pub fn kill(&self, service: &str) -> io::Result<()> {
        fs::write(self.path(service).join("cgroup.kill"), b"1")
    }

    /// The processes in the cgroup of `service`.
    pub fn pids(&self, service: &str) -> io::Result<Vec<i32>> {
        Ok(fs::read_to_string(self.path(service).join(PROCS))?
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect())
    }

    /// Whether any process is left in the cgroup of `service`.
    pub fn populated(&self, service: &str) -> io::Result<bool> {
        let events = fs::read_to_string(self.path(service).join("cgroup.events"))?;
        Ok(events
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["populated", "1"]))
    }

    /// Removes the cgroup of `service` once it is empty (`EBUSY` before).
    pub fn remove(&self, service: &str) -> io::Result<()> {
        match fs::remove_dir(self.path(service)) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::{base_environment, SpawnSpec, Spawning};

    // What a cgroup does with a service's processes (placement before exec,
    // cgroup.kill, cgroup.events) is tested with spore as PID 1 under QEMU
    // (qemu-tests/tests/cgroups.rs), where the hierarchy is spore's own.

    #[test]
    fn a_directory_outside_cgroup2_is_refused_and_a_missing_cgroup_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let error = Tree::at(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a cgroup2 directory"), "{error}");
        let argv = vec!["/bin/true".to_string()];
        let base_env = base_environment();
        let missing = dir.path().join("gone/cgroup.procs");
        let error = Spawning::new(Default::default())
            .spawn(&SpawnSpec {
                argv: &argv,
                env: &[],
                base_env: &base_env,
                dir: None,
                state_dirs: &[],
                capture: false,
                cgroup: Some(&missing),
            })
            .err()
            .unwrap();
        assert!(error.message.contains("cgroup"), "{error}");
    }
}
