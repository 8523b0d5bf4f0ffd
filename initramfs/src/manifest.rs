//! The manifest: what goes into an image. TOML; relative paths are taken
//! from the manifest's own directory.
//!
//! ```toml
//! spore = "target/x86_64-unknown-linux-musl/release/spore"   # /init
//! config = "node/spore.toml"                                  # /etc/spore/spore.toml
//! services = ["node/services/mycelium.toml"]                  # /etc/spore/services/
//! authorized_keys = "node/authorized_keys"                    # /etc/spore/authorized_keys
//! passwd = "node/passwd"                                      # /etc/passwd, /etc/group: the users
//! group = "node/group"                                        # services run as, checked at build
//! node_key = "node/node_key"                                  # optional, /var/lib/spore/node_key
//! enrollment_key = "fleet/image_key"                          # optional, /etc/spore/enrollment_key
//!                                                             # and its certificate image_key-cert.pub
//! compression = "gzip"                                        # gzip (default), zstd, none
//!
//! [kernel]
//! tree = "target/kernel/linux-image-6.1.0-56-amd64"           # an unpacked kernel package
//! modules = ["virtio_pci", "virtio_net", "tun"]
//!
//! [[binaries]]
//! source = "/bin/busybox"
//! path = "/bin/busybox"
//! links = ["/bin/sh", "/sbin/udhcpc"]
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How the archive is compressed; the Debian kernel understands all three.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (RFC 1952), with no name and mtime 0.
    #[default]
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
    /// A plain cpio archive.
    None,
}

/// Kernel modules to carry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// An unpacked kernel package (`dpkg -x`): holds `lib/modules/RELEASE/`.
    pub tree: PathBuf,
    /// Modules by name; their dependencies are added before them.
    #[serde(default)]
    pub modules: Vec<String>,
}

/// `[disk]`: how `--disk` and `--uki` boot the initramfs under UEFI.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// The kernel (an EFI-stub `vmlinuz`); default: the one `boot/` of
    /// `[kernel] tree` holds.
    pub kernel: Option<PathBuf>,
    /// The kernel command line baked into the UKI.
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
    /// systemd's EFI stub (Debian: systemd-boot-efi).
    #[serde(default = "default_stub")]
    pub stub: PathBuf,
    /// Size of the EFI system partition in MiB (at least 33: FAT32).
    #[serde(default = "default_esp")]
    pub esp_mib: u64,
    /// Size of the state partition in MiB.
    #[serde(default = "default_state")]
    pub state_mib: u64,
    /// The disk's GUID; default: derived from the inputs.
    pub disk_guid: Option<String>,
}

fn default_cmdline() -> String {
    "console=ttyS0 console=tty0 panic=-1 quiet".into()
}

fn default_stub() -> PathBuf {
    PathBuf::from("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
}

fn default_esp() -> u64 {
    64
}

fn default_state() -> u64 {
    128
}

/// `[netboot]`: the `--netboot` bundle's per-machine names (the kernel,
/// stub and command line come from `[disk]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Netboot {
    /// MAC address to hostname: that machine boots with
    /// `spore.hostname=NAME`.
    #[serde(default)]
    pub hosts: std::collections::BTreeMap<String, String>,
}

/// A binary (or any file) copied in, with symlinks to it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Binary {
    /// Where it is on the build machine.
    pub source: PathBuf,
    /// Where it goes in the image.
    pub path: String,
    /// Symbolic links to it (busybox applets: `/bin/sh`, `/sbin/udhcpc`).
    #[serde(default)]
    pub links: Vec<String>,
    /// Mode bits, octal text; default `0755`.
    pub mode: Option<String>,
}

/// The manifest file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The static spore binary; it becomes `/init`.
    pub spore: PathBuf,
    /// The node configuration, `/etc/spore/spore.toml`.
    pub config: Option<PathBuf>,
    /// Service files, each validated, into `/etc/spore/services/`.
    #[serde(default)]
    pub services: Vec<PathBuf>,
    /// Operators' keys, `/etc/spore/authorized_keys`.
    pub authorized_keys: Option<PathBuf>,
    /// The image's `/etc/passwd`: the users services run as (`[sandbox]
    /// user`), checked against it when the image is built.
    pub passwd: Option<PathBuf>,
    /// The image's `/etc/group`, likewise for `group` and
    /// `supplementary_groups`.
    pub group: Option<PathBuf>,
    /// A node key to bake in (0600); without one the node makes its own
    /// on first boot.
    pub node_key: Option<PathBuf>,
    /// The image's enrollment key (an OpenSSH ed25519 private key, 0600),
    /// with its host certificate beside it as `KEY-cert.pub`: call-home
    /// proves with it that the node belongs to the fleet. Both are checked
    /// (the certificate must certify the key) and land in `/etc/spore/`.
    pub enrollment_key: Option<PathBuf>,
    /// Kernel modules.
    pub kernel: Option<Kernel>,
    /// Install media (`--disk`, `--uki`, `--netboot`).
    pub disk: Option<Disk>,
    /// The netboot bundle's hosts.
    pub netboot: Option<Netboot>,
    /// Extra binaries and files.
    #[serde(default)]
    pub binaries: Vec<Binary>,
    /// Compression of the image.
    #[serde(default)]
    pub compression: Compression,
    /// Accept dynamically linked binaries (with a warning) instead of
    /// refusing them.
    #[serde(default)]
    pub allow_dynamic: bool,
}

/// Why a manifest cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("{path}: {reason}")]
    Read {
        /// The manifest.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// It is not a valid manifest (toml's message names line and column).
    #[error("{path}: {reason}")]
    Invalid {
        /// The manifest.
        path: String,
        /// What is wrong, and where.
        reason: String,
    },
}

impl Manifest {
    /// Reads `path` and makes every relative path in it relative to the
    /// manifest's directory.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut manifest: Manifest = toml::from_str(&text).map_err(|e| ManifestError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string().trim().replace('\n', " "),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        manifest.resolve(base);
        if let Some(kernel) = &mut manifest.kernel {
            kernel.tree = expand(&kernel.tree).map_err(|reason| ManifestError::Invalid {
                path: path.display().to_string(),
                reason,
            })?;
        }
        Ok(manifest)
    }

    /// Joins every relative source path onto `base`.
    pub fn resolve(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.spore);
        self.config.iter_mut().for_each(join);
        self.services.iter_mut().for_each(join);
        self.authorized_keys.iter_mut().for_each(join);
        self.passwd.iter_mut().for_each(join);
        self.group.iter_mut().for_each(join);
        self.node_key.iter_mut().for_each(join);
        self.enrollment_key.iter_mut().for_each(join);
        if let Some(kernel) = &mut self.kernel {
            join(&mut kernel.tree);
        }
        if let Some(disk) = &mut self.disk {
            disk.kernel.iter_mut().for_each(join);
            join(&mut disk.stub);
        }
        for binary in &mut self.binaries {
            join(&mut binary.source);
        }
    }
}

/// `path` whose last part may hold one `*` (`target/kernel/linux-image-*-amd64`,
/// so a manifest need not name the kernel's version): the one directory it
/// matches. None, or several, is an error that names what was found.
pub fn expand(path: &Path) -> Result<PathBuf, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return Ok(path.to_path_buf());
    };
    let parent = path.parent().unwrap_or(Path::new("."));
    let entries =
        std::fs::read_dir(parent).map_err(|e| format!("[kernel] tree {}: {e}", path.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let entry_name = entry.file_name().to_string_lossy().into_owned();
            entry_name.len() >= prefix.len() + suffix.len()
                && entry_name.starts_with(prefix)
                && entry_name.ends_with(suffix)
                && entry.path().is_dir()
        })
        .map(|entry| entry.path())
        .collect();
    found.sort();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "[kernel] tree {}: no directory matches (scripts/kernel unpacks the Debian kernel under target/kernel/)",
            path.display()
        )),
        several => Err(format!(
            "[kernel] tree {} matches {} directories ({}); name one",
            path.display(),
            several.len(),
            several
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_taken_from_the_manifest_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.toml");
        std::fs::write(
            &path,
            "spore = \"bin/spore\"\nservices = [\"s/a.toml\", \"/abs/b.toml\"]\ncompression = \"zstd\"\n[kernel]\ntree = \"k\"\nmodules = [\"tun\"]\n",
        )
        .unwrap();
        let manifest = Manifest::load(&path).unwrap();
        assert_eq!(manifest.spore, dir.path().join("bin/spore"));
        assert_eq!(
            manifest.services,
            [dir.path().join("s/a.toml"), PathBuf::from("/abs/b.toml")]
        );
        assert_eq!(manifest.compression, Compression::Zstd);
        assert_eq!(manifest.kernel.unwrap().tree, dir.path().join("k"));
    }

    #[test]
    fn a_kernel_tree_may_leave_its_version_out() {
        let dir = tempfile::tempdir().unwrap();
        let kernels = dir.path().join("kernel");
        std::fs::create_dir_all(kernels.join("linux-image-6.1.0-57-amd64")).unwrap();
        std::fs::write(kernels.join("linux-image-notes-amd64"), "a file").unwrap();
        let path = dir.path().join("image.toml");
        std::fs::write(
            &path,
            "spore = \"s\"\n[kernel]\ntree = \"kernel/linux-image-*-amd64\"\n",
        )
        .unwrap();
        let manifest = Manifest::load(&path).unwrap();
        assert_eq!(
            manifest.kernel.unwrap().tree,
            kernels.join("linux-image-6.1.0-57-amd64")
        );
        std::fs::create_dir_all(kernels.join("linux-image-6.1.0-58-amd64")).unwrap();
        let error = Manifest::load(&path).unwrap_err().to_string();
        assert!(error.contains("matches 2 directories"), "{error}");
        std::fs::write(
            &path,
            "spore = \"s\"\n[kernel]\ntree = \"kernel/linux-image-*-arm64\"\n",
        )
        .unwrap();
        let error = Manifest::load(&path).unwrap_err().to_string();
        assert!(error.contains("no directory matches"), "{error}");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.toml");
        std::fs::write(&path, "spore = \"s\"\nservice = [\"a.toml\"]\n").unwrap();
        let error = Manifest::load(&path).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("service"), "{error}");
    }
}
