//! A kernel's module tree (`/lib/modules/RELEASE`) as both spore and its
//! image builder read it: module names as modprobe compares them (`-` and
//! `_` alike), the name a module file or a `modules.dep` entry stands for,
//! and every module file under a tree.
//!
//! A leaf: it depends on no crate at all. `spore` finds the modules it
//! loads at boot with it, `spore-mkinitramfs` the modules it carries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A module name as modprobe compares names: `-` and `_` are one.
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The module a file or a `modules.dep` path stands for:
/// `kernel/drivers/net/virtio_net.ko.xz` → `virtio_net`; None for a file
/// that is not a module.
pub fn name_of(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    file.split_once(".ko").map(|(stem, _)| canonical(stem))
}

/// The path `modules.dep` (its text in `index`) gives for `module`,
/// relative to the tree.
pub fn in_index<'a>(index: &'a str, module: &str) -> Option<&'a str> {
    let wanted = canonical(module);
    index
        .lines()
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .find(|entry| name_of(entry).as_deref() == Some(wanted.as_str()))
}

/// Every module file under `root`, by canonical name (the first found of
/// a name, when a tree has two).
pub fn walk(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
            } else if let Some(name) = name_of(&entry.file_name().to_string_lossy()) {
                found.entry(name).or_insert(path);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_as_modprobe_compares_them() {
        assert_eq!(
            name_of("kernel/drivers/net/virtio_net.ko.xz").as_deref(),
            Some("virtio_net")
        );
        assert_eq!(
            name_of("crc32c-generic.ko").as_deref(),
            Some("crc32c_generic")
        );
        assert_eq!(name_of("modules.dep"), None);
        let index = "kernel/net/tun.ko.zst:\nkernel/lib/crc32c-generic.ko: kernel/lib/x.ko\n";
        assert_eq!(
            in_index(index, "crc32c_generic"),
            Some("kernel/lib/crc32c-generic.ko")
        );
        assert_eq!(in_index(index, "tun"), Some("kernel/net/tun.ko.zst"));
        assert_eq!(in_index(index, "tunnel"), None);
    }

    #[test]
    fn a_tree_is_walked_for_every_module_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("kernel/fs/ext4");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ext4.ko.xz"), b"").unwrap();
        std::fs::write(root.path().join("modules.dep"), b"").unwrap();
        let found = walk(root.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found.get("ext4"), Some(&dir.join("ext4.ko.xz")));
    }
}
