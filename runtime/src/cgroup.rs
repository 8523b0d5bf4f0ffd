//! Services' cgroups (v2): one directory a service under the tree spore
//! owns (`ROOT/services/NAME`), its first process put there between fork
//! and exec (it writes `0` to the cgroup's `cgroup.procs`), so everything
//! it starts, however it detaches (setsid, double fork), stays there; all
//! of it killed at once (`cgroup.kill`), and asked whether any process is
//! left (`cgroup.events`). Limits and accounting come on top of this.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::limits::Setting;

pub mod delegation;

/// A limit a service's cgroup could not be given.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The controller the limit needs is not in this cgroup.
    #[error("{key} needs {file}, and this kernel gives the service's cgroup no such controller (it has: {controllers})")]
    NoController {
        /// The service file's key.
        key: &'static str,
        /// The cgroup file.
        file: &'static str,
        /// `cgroup.controllers` of the service's cgroup.
        controllers: String,
    },
    /// The kernel refused the value.
    #[error("{key}: the kernel refused {file} = {value}: {error}")]
    Refused {
        /// The service file's key.
        key: &'static str,
        /// The cgroup file.
        file: &'static str,
        /// What was written.
        value: String,
        /// What the kernel said.
        error: io::Error,
    },
}

/// The number after `key` in a flat-keyed cgroup file (`oom_kill 2`).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

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

/// The controllers spore hands down to services, when the kernel has them.
pub const CONTROLLERS: [&str; 4] = ["cpu", "memory", "io", "pids"];

/// Enables each of [`CONTROLLERS`] that `available` (a cgroup's
/// `cgroup.controllers`) lists, in the `cgroup.subtree_control` of each of
/// `dirs` in turn (a parent before its child); the names enabled, and
/// those that could not be, each with why.
pub fn hand_down(
    available: &str,
    dirs: &[&Path],
) -> (Vec<&'static str>, Vec<(&'static str, io::Error)>) {
    let mut enabled = Vec::new();
    let mut refused = Vec::new();
    for controller in CONTROLLERS {
        if !available.split_whitespace().any(|c| c == controller) {
            continue;
        }
        let on = format!("+{controller}");
        match dirs
            .iter()
            .try_for_each(|dir| fs::write(dir.join("cgroup.subtree_control"), &on))
        {
            Ok(()) => enabled.push(controller),
            Err(error) => refused.push((controller, error)),
        }
    }
    (enabled, refused)
}

/// The controllers of [`hand_down`] as a journal line says them.
pub fn listed(enabled: &[&str]) -> String {
    if enabled.is_empty() {
        "none".to_owned()
    } else {
        enabled.join(", ")
    }
}

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
    /// file its first process writes itself into, and whether the cgroup
    /// was made just now (so it holds the kernel's defaults and no OOM
    /// kill yet).
    pub fn prepare(&self, service: &str) -> io::Result<(PathBuf, bool)> {
        let dir = self.path(service);
        let fresh = match fs::create_dir(&dir) {
            Ok(()) => true,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => false,
            Err(error) => return Err(error),
        };
        Ok((dir.join(PROCS), fresh))
    }

    /// Hands the cgroup of `service` over to it (see [`delegation`]),
    /// owned by `owner` (uid, gid) when it runs as a user.
    pub fn delegate(&self, service: &str, owner: Option<(u32, u32)>) -> io::Result<()> {
        delegation::hand_over(&self.path(service), owner)
    }

    /// Writes `settings` (see [`crate::limits`]) into the cgroup of
    /// `service`. A setting its service file asked for that this cgroup
    /// lacks (its controller is not there) or the kernel refuses fails,
    /// named; a default is skipped there.
    pub fn apply(&self, service: &str, settings: &[Setting]) -> Result<(), LimitError> {
        let dir = self.path(service);
        for setting in settings {
            let file = dir.join(setting.file);
            // Never created: a file the kernel does not give is missing
            // (ENOENT), which names the controller that is not there
            // (cgroupfs refuses a create with EACCES instead).
            let written = fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .and_then(|mut f| std::io::Write::write_all(&mut f, setting.value.as_bytes()));
            match written {
                Ok(()) => {}
                Err(_) if !setting.asked => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    let controllers = fs::read_to_string(dir.join("cgroup.controllers"))
                        .unwrap_or_default()
                        .trim()
                        .to_owned();
                    return Err(LimitError::NoController {
                        key: setting.key,
                        file: setting.file,
                        controllers,
                    });
                }
                Err(error) => {
                    return Err(LimitError::Refused {
                        key: setting.key,
                        file: setting.file,
                        value: setting.value.clone(),
                        error,
                    })
                }
            }
        }
        Ok(())
    }

    /// How many times the OOM killer has killed in the cgroup of `service`
    /// (`memory.events` `oom_kill`); None without the memory controller.
    pub fn oom_kills(&self, service: &str) -> Option<u64> {
        let events = fs::read_to_string(self.path(service).join("memory.events")).ok()?;
        keyed(&events, "oom_kill")
    }

    /// The `memory.max` of `service`'s cgroup in bytes; None when it has
    /// none (`max`) or no memory controller.
    pub fn memory_max(&self, service: &str) -> Option<u64> {
        fs::read_to_string(self.path(service).join("memory.max"))
            .ok()?
            .trim()
            .parse()
            .ok()
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
                oom_score_adj: None,
                rlimits: &[],
                identity: None,
                mounts: None,
                passed: &[],
            })
            .err()
            .unwrap();
        assert!(error.message.contains("cgroup"), "{error}");
    }
}
