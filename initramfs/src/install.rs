//! From a manifest to install media: the UKI (`--uki`) and the disk image
//! (`--disk`), both from the initramfs [`crate::build`] makes.

use std::path::{Path, PathBuf};

use crate::disk::{self, DiskError, Layout};
use crate::manifest::{Disk, Manifest};
use crate::netboot::NetbootError;
use crate::uki::{self, UkiError};

/// Why install media cannot be made; nothing is written then.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The manifest has no `[disk]` table.
    #[error("the manifest has no [disk] table (kernel, cmdline, stub, esp_mib, state_mib)")]
    NoDiskTable,
    /// No kernel given and none found in `[kernel] tree`/boot.
    #[error("no kernel: set [disk] kernel, or [kernel] tree to an unpacked kernel package with boot/vmlinuz-*")]
    NoKernel,
    /// An input cannot be read.
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        /// Which input.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The UKI cannot be made.
    #[error(transparent)]
    Uki(#[from] UkiError),
    /// The disk cannot be made.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The netboot bundle cannot be made.
    #[error(transparent)]
    Netboot(#[from] NetbootError),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, InstallError> {
    std::fs::read(path).map_err(|e| InstallError::Read {
        what,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The kernel `[disk]` names, or the only `vmlinuz-*` in the kernel tree.
fn kernel_path(manifest: &Manifest, disk: &Disk) -> Result<PathBuf, InstallError> {
    if let Some(path) = &disk.kernel {
        return Ok(path.clone());
    }
    let tree = manifest.kernel.as_ref().ok_or(InstallError::NoKernel)?;
    let boot = tree.tree.join("boot");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
        .map_err(|_| InstallError::NoKernel)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    found.pop().ok_or(InstallError::NoKernel)
}

/// The os-release the boot menu and `/sys/firmware/efi` readers see.
fn osrel() -> String {
    format!(
        "NAME=spore\nID=spore\nVERSION_ID={}\nPRETTY_NAME=\"spore {}\"\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    )
}

/// The UKI for `manifest`, around `initrd`.
pub fn uki(manifest: &Manifest, initrd: &[u8]) -> Result<Vec<u8>, InstallError> {
    let disk = manifest.disk.as_ref().ok_or(InstallError::NoDiskTable)?;
    let stub = read("the EFI stub", &disk.stub)?;
    let kernel = read("the kernel", &kernel_path(manifest, disk)?)?;
    Ok(uki::build(&uki::Parts {
        stub: &stub,
        kernel: &kernel,
        initrd,
        cmdline: &disk.cmdline,
        osrel: &osrel(),
    })?)
}

/// The disk image for `manifest`: a GPT with the ESP holding the UKI (and
/// `esp_files`, e.g. a machine's `spore-node.toml`) and the empty state
/// partition.
pub fn disk_image(
    manifest: &Manifest,
    uki: &[u8],
    esp_files: &[(&str, &[u8])],
) -> Result<Vec<u8>, InstallError> {
    let disk = manifest.disk.as_ref().ok_or(InstallError::NoDiskTable)?;
    Ok(disk::build(&Layout {
        uki,
        esp_files,
        esp_mib: disk.esp_mib,
        state_mib: disk.state_mib,
        disk_guid: disk.disk_guid.as_deref(),
    })?)
}

/// The netboot bundle for `manifest`: its files, `(name, bytes)`.
pub fn netboot(
    manifest: &Manifest,
    initrd: &[u8],
    uki: &[u8],
) -> Result<Vec<(String, Vec<u8>)>, InstallError> {
    let disk = manifest.disk.as_ref().ok_or(InstallError::NoDiskTable)?;
    let kernel = read("the kernel", &kernel_path(manifest, disk)?)?;
    let hosts = manifest
        .netboot
        .as_ref()
        .map(|n| n.hosts.clone())
        .unwrap_or_default();
    Ok(crate::netboot::bundle(
        &kernel,
        initrd,
        uki,
        &disk.cmdline,
        &hosts,
    )?)
}
