//! Kernel modules for the image: find each named module in a kernel's
//! module tree, add what it depends on, and order them so every module
//! comes after its dependencies — the order spore loads them in.
//!
//! Dependencies come from `modules.dep` when the tree has one (an installed
//! kernel, where depmod ran). A kernel package unpacked with `dpkg -x` has
//! none — depmod only runs at install — so then they come from each
//! module's `.modinfo` `depends=` field, read through the package's
//! compression (.ko, .ko.gz, .ko.zst, .ko.xz). Modules named in
//! `modules.builtin` are part of the kernel image: nothing to carry.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use modtree::{canonical, name_of, walk};

/// Why the module list cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// No file for this module under the tree, and not built in.
    #[error("module `{name}` not found under {root} (nor in its modules.builtin)")]
    NotFound {
        /// The module.
        name: String,
        /// The tree searched.
        root: String,
    },
    /// A module file could not be read or decompressed.
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
    /// Where it goes in the image, relative to lib/modules/RELEASE/: its
    /// path in the tree, ending in `.ko` — it is carried decompressed, so
    /// it loads on kernels built without CONFIG_MODULE_DECOMPRESS (Debian
    /// 6.1's among them).
    pub relative: PathBuf,
    /// Its ELF bytes, decompressed: what the image carries.
    pub bytes: Vec<u8>,
}

/// The modules to carry, and the asked-for ones the kernel has built in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Dependencies first.
    pub modules: Vec<Module>,
    /// Names asked for (or depended on) that are built into the kernel.
    pub builtin: Vec<String>,
}

/// What the tree says about its modules.
struct Tree {
    root: PathBuf,
    /// Module files by canonical name.
    files: BTreeMap<String, PathBuf>,
    /// From modules.dep: each module's dependencies by name.
    index: Option<BTreeMap<String, Vec<String>>>,
    /// From modules.builtin.
    builtin: HashSet<String>,
}

impl Tree {
    fn read(root: &Path) -> Self {
        let builtin = std::fs::read_to_string(root.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(name_of)
            .collect();
        let index = std::fs::read_to_string(root.join("modules.dep"))
            .ok()
            .map(|text| parse_modules_dep(&text));
        let mut files = walk(root);
        if let Some(index) = &index {
            files.retain(|name, _| index.contains_key(name));
        }
        Self {
            root: root.to_path_buf(),
            files,
            index,
            builtin,
        }
    }

    fn dependencies(&self, name: &str, bytes: &[u8]) -> Vec<String> {
        match &self.index {
            Some(index) => index.get(name).cloned().unwrap_or_default(),
            None => depends(bytes),
        }
    }
}

/// `modules.dep`: `path: dependency-path ...`, one module a line.
fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| {
            let (module, dependencies) = line.split_once(':')?;
            Some((
                name_of(module.trim())?,
                dependencies
                    .split_whitespace()
                    .filter_map(name_of)
                    .collect(),
            ))
        })
        .collect()
}

/// `kernel/net/tun.ko.xz` → `kernel/net/tun.ko`.
fn carried_as(relative: &Path) -> PathBuf {
    match relative.extension().and_then(|e| e.to_str()) {
        Some("gz" | "zst" | "xz") => relative.with_extension(""),
        _ => relative.to_path_buf(),
    }
}

/// A module file's ELF bytes, decompressed by its extension.
fn read_module(path: &Path) -> Result<Vec<u8>, ModuleError> {
    let failed = |reason: String| ModuleError::Read {
        path: path.display().to_string(),
        reason,
    };
    let raw = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let mut plain = Vec::new();
    let decoded = match extension {
        "gz" => flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut plain)
            .map(drop),
        "zst" => ruzstd::decoding::StreamingDecoder::new(raw.as_slice())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
            .and_then(|mut decoder| decoder.read_to_end(&mut plain))
            .map(drop),
        "xz" => lzma_rs::xz_decompress(&mut raw.as_slice(), &mut plain)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
        _ => return Ok(raw),
    };
    decoded.map_err(|e| failed(format!("cannot decompress .{extension}: {e}")))?;
    Ok(plain)
}

/// The `depends=` list in a module's `.modinfo` strings (NUL-separated
/// `key=value` entries).
pub fn depends(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(canonical)
                .collect()
        })
        .unwrap_or_default()
}

/// `wanted` and everything they depend on, dependencies first; built-in
/// ones are listed apart.
pub fn resolve(root: &Path, wanted: &[String]) -> Result<Resolved, ModuleError> {
    let tree = Tree::read(root);
    let mut walk = Walk {
        tree: &tree,
        path: Vec::new(),
        done: HashSet::new(),
        resolved: Resolved::default(),
    };
    for name in wanted {
        walk.visit(&canonical(name))?;
    }
    Ok(walk.resolved)
}

/// A depth-first walk of the dependency graph.
struct Walk<'a> {
    tree: &'a Tree,
    /// The modules being visited, to find cycles.
    path: Vec<String>,
    done: HashSet<String>,
    resolved: Resolved,
}

impl Walk<'_> {
    fn visit(&mut self, name: &str) -> Result<(), ModuleError> {
        if self.done.contains(name) {
            return Ok(());
        }
        if self.path.iter().any(|p| p == name) {
            return Err(ModuleError::Cycle(name.to_owned()));
        }
        let Some(file) = self.tree.files.get(name) else {
            if self.tree.builtin.contains(name) {
                self.done.insert(name.to_owned());
                self.resolved.builtin.push(name.to_owned());
                return Ok(());
            }
            return Err(ModuleError::NotFound {
                name: name.to_owned(),
                root: self.tree.root.display().to_string(),
            });
        };
        let bytes = read_module(file)?;
        self.path.push(name.to_owned());
        for dependency in self.tree.dependencies(name, &bytes) {
            self.visit(&dependency)?;
        }
        self.path.pop();
        self.done.insert(name.to_owned());
        self.resolved.modules.push(Module {
            name: name.to_owned(),
            relative: carried_as(file.strip_prefix(&self.tree.root).unwrap_or(file)),
            path: file.clone(),
            bytes,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn modinfo(depends: &str) -> Vec<u8> {
        let mut bytes = b"\x7fELF....license=GPL\0".to_vec();
        bytes.extend_from_slice(format!("depends={depends}\0vermagic=6.1.0\0").as_bytes());
        bytes
    }

    fn module(root: &Path, relative: &str, depends: &str) {
        write(root, relative, &modinfo(depends));
    }

    fn write(root: &Path, relative: &str, bytes: &[u8]) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn names(resolved: &Resolved) -> Vec<&str> {
        resolved.modules.iter().map(|m| m.name.as_str()).collect()
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
        let resolved = resolve(r, &["virtio-net".into(), "tun".into()]).unwrap();
        assert_eq!(
            names(&resolved),
            [
                "virtio_ring",
                "virtio",
                "failover",
                "net_failover",
                "virtio_net",
                "tun"
            ]
        );
        assert!(resolved.builtin.is_empty());
    }

    #[test]
    fn modules_dep_is_used_when_the_tree_has_one() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        // The files say nothing of dependencies; modules.dep does.
        module(r, "kernel/a.ko", "");
        module(r, "kernel/b.ko", "");
        module(r, "kernel/c-d.ko", "");
        module(r, "kernel/stray.ko", "");
        std::fs::write(
            r.join("modules.dep"),
            "kernel/a.ko: kernel/c-d.ko kernel/b.ko\nkernel/b.ko:\nkernel/c-d.ko: kernel/b.ko\n",
        )
        .unwrap();
        let resolved = resolve(r, &["a".into()]).unwrap();
        assert_eq!(names(&resolved), ["b", "c_d", "a"]);
        assert!(
            matches!(
                resolve(r, &["stray".into()]),
                Err(ModuleError::NotFound { .. })
            ),
            "modules.dep is the index: a file it does not list is not a module"
        );
    }

    #[test]
    fn built_in_modules_are_reported_not_carried() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        module(r, "kernel/net/tun.ko", "");
        std::fs::write(
            r.join("modules.builtin"),
            "kernel/net/unix/unix.ko\nkernel/net/packet/af_packet.ko\n",
        )
        .unwrap();
        let resolved = resolve(r, &["unix".into(), "tun".into(), "af-packet".into()]).unwrap();
        assert_eq!(names(&resolved), ["tun"]);
        assert_eq!(resolved.builtin, ["unix", "af_packet"]);
    }

    #[test]
    fn compressed_modules_are_read_through_and_carried_as_plain_ko() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&modinfo("zstd_dep")).unwrap();
        write(r, "kernel/gz_mod.ko.gz", &gz.finish().unwrap());
        let zst = ruzstd::encoding::compress_to_vec(
            modinfo("xz_dep").as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        write(r, "kernel/zstd_dep.ko.zst", &zst);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut modinfo("").as_slice(), &mut xz).unwrap();
        write(r, "kernel/xz_dep.ko.xz", &xz);

        let resolved = resolve(r, &["gz_mod".into()]).unwrap();
        assert_eq!(names(&resolved), ["xz_dep", "zstd_dep", "gz_mod"]);
        let carried: Vec<&Path> = resolved
            .modules
            .iter()
            .map(|m| m.relative.as_path())
            .collect();
        assert_eq!(
            carried,
            [
                Path::new("kernel/xz_dep.ko"),
                Path::new("kernel/zstd_dep.ko"),
                Path::new("kernel/gz_mod.ko")
            ]
        );
        for module in &resolved.modules {
            assert!(module.bytes.starts_with(b"\x7fELF"));
        }
    }

    #[test]
    fn a_corrupt_compressed_module_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "kernel/bad.ko.xz", b"not xz at all");
        let error = resolve(dir.path(), &["bad".into()]).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("bad.ko.xz") && text.contains("cannot decompress .xz"),
            "{text}"
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
        assert!(
            depends(b"x\0softdepends=a\0").is_empty(),
            "only a whole `depends=` entry counts"
        );
    }
}
