//! Kernel modules for the image: find each named module in an unpacked
//! kernel package's module tree, add what it depends on (the `depends=`
//! field of its `.modinfo`, so no modules.dep is needed), and order them so
//! every module comes after its dependencies — the order spore loads them in.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Why the module list cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// No file for this module under the tree.
    #[error("module `{name}` not found under {root}")]
    NotFound {
        /// The module.
        name: String,
        /// The tree searched.
        root: String,
    },
    /// A module file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Modules that depend on each other in a circle.
    #[error("module dependency cycle involving {0}")]
    Cycle(String),
}

/// A module to put in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name with `-` as `_`.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// The path relative to the module root (where it goes in the image,
    /// under lib/modules/RELEASE/).
    pub relative: PathBuf,
}

fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// Every module file under `root`, by canonical name.
fn index(root: &Path) -> BTreeMap<String, PathBuf> {
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
            } else if let Some((stem, _)) = entry.file_name().to_string_lossy().split_once(".ko") {
                found.entry(canonical(stem)).or_insert(path);
            }
        }
    }
    found
}

/// The `depends=` list in a module file's `.modinfo` strings.
pub fn depends(bytes: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"depends=";
    bytes
        .windows(KEY.len())
        .position(|w| w == KEY)
        .and_then(|at| bytes.get(at + KEY.len()..))
        .map(|rest| {
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(rest.get(..end).unwrap_or_default())
                .split(',')
                .filter(|d| !d.is_empty())
                .map(canonical)
                .collect()
        })
        .unwrap_or_default()
}

/// `wanted` and everything they depend on, dependencies first. Modules
/// compressed by the package (.ko.xz, .ko.zst) are found like plain ones.
pub fn resolve(root: &Path, wanted: &[String]) -> Result<Vec<Module>, ModuleError> {
    let files = index(root);
    let mut order = Vec::new();
    let mut done = HashSet::new();
    for name in wanted {
        visit(
            &canonical(name),
            root,
            &files,
            &mut Vec::new(),
            &mut done,
            &mut order,
        )?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    root: &Path,
    files: &BTreeMap<String, PathBuf>,
    path: &mut Vec<String>,
    done: &mut HashSet<String>,
    order: &mut Vec<Module>,
) -> Result<(), ModuleError> {
    if done.contains(name) {
        return Ok(());
    }
    if path.iter().any(|p| p == name) {
        return Err(ModuleError::Cycle(name.to_owned()));
    }
    let file = files.get(name).ok_or_else(|| ModuleError::NotFound {
        name: name.to_owned(),
        root: root.display().to_string(),
    })?;
    let bytes = std::fs::read(file).map_err(|e| ModuleError::Read {
        path: file.display().to_string(),
        reason: e.to_string(),
    })?;
    path.push(name.to_owned());
    for dependency in depends(&bytes) {
        visit(&dependency, root, files, path, done, order)?;
    }
    path.pop();
    done.insert(name.to_owned());
    order.push(Module {
        name: name.to_owned(),
        relative: file.strip_prefix(root).unwrap_or(file).to_path_buf(),
        path: file.clone(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(root: &Path, relative: &str, depends: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = b"\x7fELF....license=GPL\0".to_vec();
        bytes.extend_from_slice(format!("depends={depends}\0vermagic=6.1.0\0").as_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn dependencies_come_first_as_debians_virtio_net_needs() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        module(r, "kernel/drivers/virtio/virtio_ring.ko", "");
        module(r, "kernel/drivers/virtio/virtio.ko", "virtio_ring");
        module(r, "kernel/net/core/failover.ko", "");
        module(r, "kernel/drivers/net/net_failover.ko", "failover");
        module(
            r,
            "kernel/drivers/net/virtio_net.ko",
            "virtio_ring,virtio,net_failover",
        );
        module(r, "kernel/drivers/net/tun.ko", "");
        let order: Vec<String> = resolve(r, &["virtio-net".into(), "tun".into()])
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            order,
            [
                "virtio_ring",
                "virtio",
                "failover",
                "net_failover",
                "virtio_net",
                "tun"
            ]
        );
    }

    #[test]
    fn missing_modules_and_cycles_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        module(r, "a.ko", "b");
        module(r, "b.ko", "a");
        assert!(matches!(
            resolve(r, &["nope".into()]),
            Err(ModuleError::NotFound { .. })
        ));
        assert!(matches!(
            resolve(r, &["a".into()]),
            Err(ModuleError::Cycle(_))
        ));
    }

    #[test]
    fn depends_field_is_read_from_modinfo_strings() {
        assert_eq!(depends(b"x\0depends=a,b-c\0y"), ["a", "b_c"]);
        assert!(depends(b"x\0depends=\0").is_empty());
        assert!(depends(b"no field").is_empty());
    }
}
