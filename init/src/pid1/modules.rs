//! Loading kernel modules with finit_module(2): no modprobe needed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use runtime::journal;

/// finit_module flag: the kernel decompresses the file itself (Linux 5.17+
/// built with CONFIG_MODULE_DECOMPRESS).
const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

/// Loads `modules` in order; each is a path, or a bare name looked up in
/// `modules.dep` of the running kernel. Errors are logged; the next module
/// is still tried.
pub fn load_all(modules: &[String]) {
    if modules.is_empty() {
        return;
    }
    let root = module_root();
    let index = std::fs::read_to_string(root.join("modules.dep")).unwrap_or_default();
    for module in modules {
        match resolve(&root, &index, module).or_else(|| search(&root, module)) {
            Some(path) => load(&path),
            None => journal::note(format_args!(
                "module {module}: not found under {}",
                root.display()
            )),
        }
    }
}

fn module_root() -> PathBuf {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("/lib/modules").join(release)
}

/// A module's file: a path as given (relative to the module root), or the
/// modules.dep entry whose file name is `NAME.ko[.xz|.zst|.gz]` (with `-`
/// and `_` equivalent, as modprobe treats them).
fn resolve(root: &Path, index: &str, module: &str) -> Option<PathBuf> {
    if module.contains('/') {
        let path = Path::new(module);
        return Some(if path.is_absolute() {
            path.to_path_buf()
        } else {
            root.join(path)
        });
    }
    modtree::in_index(index, module).map(|entry| root.join(entry))
}

/// Without modules.dep (a kernel package unpacked by hand has none), walks
/// the module tree for `NAME.ko[.*]`.
fn search(root: &Path, module: &str) -> Option<PathBuf> {
    if module.contains('/') {
        return None;
    }
    modtree::walk(root).remove(&modtree::canonical(module))
}

fn load(path: &Path) {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) => {
            journal::note(format_args!("module {}: {error}", path.display()));
            return;
        }
    };
    let compressed = path
        .extension()
        .is_some_and(|ext| ext == "xz" || ext == "zst" || ext == "gz");
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    // SAFETY: finit_module with an open fd and a NUL-terminated empty
    // parameter string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        journal::note(format_args!("module {} loaded", path.display()));
        return;
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EEXIST) {
        return;
    }
    journal::note(format_args!("module {}: {error}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_resolve_through_modules_dep() {
        let index = "kernel/drivers/net/tun.ko.xz:\nkernel/drivers/net/virtio_net.ko.xz: kernel/net/core/failover.ko.xz\nkernel/x/snd-hda.ko:\n";
        let root = Path::new("/lib/modules/6.1.0-40-amd64");
        assert_eq!(
            resolve(root, index, "tun"),
            Some(root.join("kernel/drivers/net/tun.ko.xz"))
        );
        assert_eq!(
            resolve(root, index, "virtio-net"),
            Some(root.join("kernel/drivers/net/virtio_net.ko.xz"))
        );
        assert_eq!(
            resolve(root, index, "snd_hda"),
            Some(root.join("kernel/x/snd-hda.ko"))
        );
        assert_eq!(resolve(root, index, "nope"), None);
        assert_eq!(
            resolve(root, index, "extra/x.ko"),
            Some(root.join("extra/x.ko"))
        );
    }

    #[test]
    fn without_modules_dep_the_tree_is_searched() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("kernel/drivers/net");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("virtio_net.ko"), b"").unwrap();
        std::fs::write(net.join("tun.ko.xz"), b"").unwrap();
        assert_eq!(
            search(dir.path(), "virtio-net"),
            Some(net.join("virtio_net.ko"))
        );
        assert_eq!(search(dir.path(), "tun"), Some(net.join("tun.ko.xz")));
        assert_eq!(search(dir.path(), "absent"), None);
    }
}
