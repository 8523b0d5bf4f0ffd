//! A service's own view of the filesystem (`[sandbox]` `private_tmp`,
//! `protect_system`, `read_only_paths`, `inaccessible_paths`): a mount
//! namespace made between fork and exec, before it leaves root. Planned in
//! spore (paths checked, so a missing one is named), carried out in the
//! child with system calls only; a step the kernel refuses fails the start
//! and says which step.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use svc::service::{ProtectSystem, Sandbox};

/// What the child does, as bytes (the spawner's request carries it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountPlan {
    /// A fresh tmpfs on /tmp, and on /var/tmp where there is one.
    pub private_tmp: bool,
    /// Everything read-only first (`protect_system = "strict"`).
    pub read_only_root: bool,
    /// Made read-only (bind-mounted onto themselves).
    pub read_only: Vec<Vec<u8>>,
    /// Made writable again under a read-only root: /dev, /proc, /sys and
    /// the service's state directories.
    pub writable: Vec<Vec<u8>>,
    /// Directories hidden under an empty, mode 000, read-only tmpfs.
    pub inaccessible: Vec<Vec<u8>>,
    /// The directory the service starts in, entered again inside the
    /// namespace (the one inherited still points at the old mounts).
    pub cwd: Vec<u8>,
}

/// Plans `sandbox`'s mounts for a service with `state_dirs` starting in
/// `dir` (spore's own when None). None when it asks for none. A path that
/// does not exist (or an inaccessible one that is not a directory) is an
/// error naming it and its key.
pub fn plan(
    sandbox: &Sandbox,
    state_dirs: &[PathBuf],
    dir: Option<&Path>,
) -> Result<Option<MountPlan>, String> {
    if !sandbox.needs_mounts() {
        return Ok(None);
    }
    let bytes = |p: &Path| p.as_os_str().as_bytes().to_vec();
    let existing = |paths: &[&str]| -> Vec<Vec<u8>> {
        paths
            .iter()
            .map(Path::new)
            .filter(|p| p.exists())
            .map(bytes)
            .collect()
    };
    let mut plan = MountPlan {
        private_tmp: sandbox.private_tmp,
        read_only_root: sandbox.protect_system == ProtectSystem::Strict,
        ..MountPlan::default()
    };
    plan.read_only = match sandbox.protect_system {
        ProtectSystem::Yes => existing(&["/usr", "/boot", "/efi"]),
        ProtectSystem::Full => existing(&["/usr", "/boot", "/efi", "/etc"]),
        ProtectSystem::No | ProtectSystem::Strict => Vec::new(),
    };
    for path in &sandbox.read_only_paths {
        if !path.exists() {
            return Err(format!(
                "read_only_paths: {} does not exist",
                path.display()
            ));
        }
        plan.read_only.push(bytes(path));
    }
    for path in &sandbox.inaccessible_paths {
        if !path.is_dir() {
            return Err(format!(
                "inaccessible_paths: {} is not a directory (only directories can be hidden)",
                path.display()
            ));
        }
        plan.inaccessible.push(bytes(path));
    }
    if plan.read_only_root {
        plan.writable = existing(&["/dev", "/proc", "/sys"]);
        if plan.private_tmp {
            plan.writable.extend(existing(&["/tmp", "/var/tmp"]));
        }
        plan.writable.extend(state_dirs.iter().map(|d| bytes(d)));
    }
    let cwd = match dir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    };
    plan.cwd = bytes(&cwd);
    Ok(Some(plan))
}

/// A plan with its paths as C strings, made before the fork.
pub(crate) struct Mounts {
    private_tmp: bool,
    read_only_root: bool,
    read_only: Vec<CString>,
    writable: Vec<CString>,
    inaccessible: Vec<CString>,
    cwd: CString,
}

impl Mounts {
    /// `plan`'s paths as C strings; None if one holds a NUL byte.
    pub(crate) fn of(plan: &MountPlan) -> Option<Mounts> {
        let c = |list: &[Vec<u8>]| -> Option<Vec<CString>> {
            list.iter().map(|p| CString::new(p.clone()).ok()).collect()
        };
        Some(Mounts {
            private_tmp: plan.private_tmp,
            read_only_root: plan.read_only_root,
            read_only: c(&plan.read_only)?,
            writable: c(&plan.writable)?,
            inaccessible: c(&plan.inaccessible)?,
            cwd: CString::new(plan.cwd.clone()).ok()?,
        })
    }
}

/// The steps, numbered for the error a failing one returns.
const STEPS: &[&str] = &[
    "",
    "making a mount namespace (unshare)",
    "keeping its mounts to itself (MS_SLAVE)",
    "making / read-only (protect_system = \"strict\")",
    "making a path read-only (read_only_paths, protect_system)",
    "hiding a directory (inaccessible_paths)",
    "keeping /dev, /proc, /sys, /tmp and its state_dirs writable",
    "mounting its private /tmp and /var/tmp",
    "entering its directory again",
];

/// Errors from [`enter`] carry their step: `step * STEP + errno`.
const STEP: i32 = 10_000;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Sets (or clears) read-only on the mount at `path` and every mount
/// under it.
unsafe fn read_only(path: &CStr, on: bool) -> libc::c_long {
    let attr = MountAttr {
        attr_set: if on { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: if on { 0 } else { MOUNT_ATTR_RDONLY },
        propagation: 0,
        userns_fd: 0,
    };
    libc::syscall(
        libc::SYS_mount_setattr,
        libc::AT_FDCWD,
        path.as_ptr(),
        AT_RECURSIVE,
        &attr,
        std::mem::size_of::<MountAttr>(),
    )
}

/// Binds `path` onto itself (so it is a mount of its own).
unsafe fn bind(path: &CStr) -> libc::c_int {
    libc::mount(
        path.as_ptr(),
        path.as_ptr(),
        std::ptr::null(),
        libc::MS_BIND | libc::MS_REC,
        std::ptr::null(),
    )
}

/// Carries out `m` in a child between fork and exec (root still).
///
/// # Safety
/// Called in a child between fork and exec; system calls only.
pub(crate) unsafe fn enter(m: &Mounts) -> io::Result<()> {
    let fail = |step: i32| {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        Err(io::Error::from_raw_os_error(step * STEP + errno))
    };
    if libc::unshare(libc::CLONE_NEWNS) < 0 {
        return fail(1);
    }
    if libc::mount(
        std::ptr::null(),
        c"/".as_ptr(),
        std::ptr::null(),
        libc::MS_REC | libc::MS_SLAVE,
        std::ptr::null(),
    ) < 0
    {
        return fail(2);
    }
    // Its /tmp first, so the paths below (a state_dir under /tmp, say)
    // are looked up in the /tmp it will see, as systemd orders them.
    if m.private_tmp {
        for dir in [c"/tmp", c"/var/tmp"] {
            let mounted = libc::mount(
                c"tmpfs".as_ptr(),
                dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=1777".as_ptr().cast(),
            );
            // A node without /var/tmp has nothing there to hide.
            let missing = io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
            if mounted < 0 && !(missing && dir == c"/var/tmp") {
                return fail(7);
            }
        }
    }
    if m.read_only_root && read_only(c"/", true) < 0 {
        return fail(3);
    }
    for path in &m.read_only {
        if bind(path) < 0 || read_only(path, true) < 0 {
            return fail(4);
        }
    }
    for path in &m.inaccessible {
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            c"tmpfs".as_ptr(),
            path.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            c"mode=000,size=4k".as_ptr().cast(),
        ) < 0
        {
            return fail(5);
        }
    }
    for path in &m.writable {
        if bind(path) < 0 || read_only(path, false) < 0 {
            return fail(6);
        }
    }
    if libc::chdir(m.cwd.as_ptr()) < 0 {
        return fail(8);
    }
    Ok(())
}

/// What an error from a child's start says, when [`enter`] made it: the
/// step that failed and why; None for any other error.
pub fn describe(error: &io::Error) -> Option<String> {
    let code = error.raw_os_error()?;
    let step = STEPS
        .get(usize::try_from(code / STEP).ok()?)
        .filter(|s| !s.is_empty())?;
    Some(format!(
        "its sandbox: {step}: {}",
        io::Error::from_raw_os_error(code % STEP)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_step_is_named() {
        let error = io::Error::from_raw_os_error(3 * STEP + libc::EPERM);
        assert_eq!(
            describe(&error).unwrap(),
            format!(
                "its sandbox: making / read-only (protect_system = \"strict\"): {}",
                io::Error::from_raw_os_error(libc::EPERM)
            )
        );
        assert_eq!(describe(&io::Error::from_raw_os_error(libc::ENOENT)), None);
    }

    #[test]
    fn plans_check_their_paths_and_name_the_key() {
        let sandbox = Sandbox {
            read_only_paths: vec![PathBuf::from("/no/such/dir")],
            ..Sandbox::default()
        };
        let error = plan(&sandbox, &[], None).unwrap_err();
        assert_eq!(error, "read_only_paths: /no/such/dir does not exist");
        let strict = Sandbox {
            protect_system: ProtectSystem::Strict,
            private_tmp: true,
            ..Sandbox::default()
        };
        let p = plan(
            &strict,
            &[PathBuf::from("/var/lib/x")],
            Some(Path::new("/srv")),
        )
        .unwrap()
        .unwrap();
        assert!(p.read_only_root && p.private_tmp);
        assert!(p.writable.contains(&b"/proc".to_vec()));
        assert!(p.writable.contains(&b"/var/lib/x".to_vec()));
        assert_eq!(p.cwd, b"/srv");
        assert_eq!(plan(&Sandbox::default(), &[], None).unwrap(), None);
    }
}
