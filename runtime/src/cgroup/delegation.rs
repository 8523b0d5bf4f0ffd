//! A service's cgroup handed to the service (`[resources] delegate = true`,
//! systemd's `Delegate=yes`): marked as delegated with the extended
//! attribute systemd uses (`trusted.delegate = 1`; `user.delegate` where
//! spore may not set a trusted one), and owned by the service's user, so a
//! supervisor it runs (a nested `spore run`) makes its own cgroups in it.
//! What the last run made in it is cleared before the next start: a
//! cgroup that hands controllers to children cannot take a process.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The attribute names, in the order tried.
pub const MARKS: [&str; 2] = ["trusted.delegate", "user.delegate"];

/// The files of a delegated cgroup its owner writes (as systemd hands
/// them over): besides the directory itself.
const OWNED_FILES: [&str; 3] = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"];

/// Readies `dir` (a service's cgroup, made already) for delegation: the
/// cgroups its last run made are removed (they are empty: the service's
/// cgroup is, before a start), its controllers are taken back from its
/// children, it is marked, and owned by `owner` (uid, gid) when given.
pub fn hand_over(dir: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    remove_children(dir)?;
    let handed = fs::read_to_string(dir.join("cgroup.subtree_control"))?;
    for controller in handed.split_whitespace() {
        fs::write(dir.join("cgroup.subtree_control"), format!("-{controller}"))?;
    }
    mark(dir)?;
    if let Some((uid, gid)) = owner {
        let chown = |path: &Path| {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| io::Error::new(e.kind(), format!("chown {}: {e}", path.display())))
        };
        chown(dir)?;
        for file in OWNED_FILES {
            let path = dir.join(file);
            if path.exists() {
                chown(&path)?;
            }
        }
    }
    Ok(())
}

/// Removes every cgroup below `dir`, deepest first (an empty cgroup is
/// removed with rmdir(2), its files and all).
fn remove_children(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let child = entry.path();
            remove_children(&child)?;
            fs::remove_dir(&child).map_err(|e| {
                io::Error::new(e.kind(), format!("removing {}: {e}", child.display()))
            })?;
        }
    }
    Ok(())
}

/// Sets the first of [`MARKS`] the kernel lets spore set.
fn mark(dir: &Path) -> io::Result<()> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    let mut last = io::Error::other("no attribute tried");
    for name in MARKS {
        let Ok(name) = CString::new(name) else {
            continue;
        };
        // SAFETY: setxattr(2) with NUL-terminated path and name, and a
        // one-byte value that outlives the call.
        let done =
            unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        if done == 0 {
            return Ok(());
        }
        last = io::Error::last_os_error();
    }
    Err(io::Error::new(
        last.kind(),
        format!("marking {} delegated: {last}", dir.display()),
    ))
}

/// Whether `dir` is marked delegated (by systemd's `Delegate=yes` or a
/// spore service's `delegate = true`): which mark, if any.
pub fn marked(dir: &Path) -> Option<&'static str> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    MARKS.into_iter().find(|name| {
        let Ok(cname) = CString::new(*name) else {
            return false;
        };
        let mut value = [0u8; 8];
        // SAFETY: getxattr(2) with NUL-terminated path and name, into a
        // buffer of the length given.
        let read = unsafe {
            libc::getxattr(
                path.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        usize::try_from(read).is_ok_and(|n| value.get(..n) == Some(b"1".as_slice()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_over_cgroup_is_marked_owned_and_cleared_of_the_last_runs_cgroups() {
        // A plain directory stands for the cgroup (the kernel's own files are
        // tested under QEMU, qemu-tests/tests/cgroups.rs): its files, and
        // two levels of cgroups a nested supervisor made.
        let dir = tempfile::tempdir().unwrap();
        let cgroup = dir.path().join("web");
        fs::create_dir_all(cgroup.join("services/inner")).unwrap();
        fs::create_dir_all(cgroup.join("init")).unwrap();
        for file in OWNED_FILES {
            fs::write(cgroup.join(file), "").unwrap();
        }
        assert_eq!(marked(&cgroup), None);
        hand_over(&cgroup, Some((4242, 4343))).unwrap();
        assert_eq!(marked(&cgroup), Some("trusted.delegate"));
        assert!(!cgroup.join("services").exists() && !cgroup.join("init").exists());
        use std::os::unix::fs::MetadataExt;
        for path in [
            cgroup.clone(),
            cgroup.join("cgroup.procs"),
            cgroup.join("cgroup.subtree_control"),
        ] {
            let meta = fs::metadata(&path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4242, 4343), "{}", path.display());
        }
    }
}
