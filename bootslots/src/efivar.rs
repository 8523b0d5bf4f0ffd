//! UEFI variables through efivarfs (`/sys/firmware/efi/efivars`): each
//! variable is a file named `NAME-VENDORGUID` whose content is the 4-byte
//! attributes (little-endian) and then the data; a write replaces the
//! variable and must come in one write(2) (Documentation/filesystems/
//! efivarfs.rst). The boot manager's variables (`Boot####`, `BootOrder`,
//! `BootNext`, `BootCurrent`) are under the global vendor GUID.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::SlotError;

/// EFI_GLOBAL_VARIABLE, as efivarfs spells it in file names.
pub const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS: what the boot
/// manager's variables carry (UEFI 2.10 §3.3).
pub const BOOT_ATTRIBUTES: u32 = 0x7;

/// Where efivarfs is mounted.
pub const MOUNT_POINT: &str = "/sys/firmware/efi/efivars";

/// The firmware's variables, read and written through an efivarfs mount.
#[derive(Debug, Clone)]
pub struct Efivars {
    dir: PathBuf,
}

impl Efivars {
    /// Variables under `dir` (an efivarfs mount).
    pub fn at(dir: impl Into<PathBuf>) -> Efivars {
        Efivars { dir: dir.into() }
    }

    /// The directory read and written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{GLOBAL}"))
    }

    /// The data of global variable `name` (attributes cut off); None when
    /// it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, SlotError> {
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes.get(4..).unwrap_or_default().to_vec())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(SlotError::io("reading", &path, error)),
        }
    }

    /// Sets global variable `name` to `data` (non-volatile, boot and
    /// runtime access), creating it when missing.
    pub fn write(&self, name: &str, data: &[u8]) -> Result<(), SlotError> {
        let path = self.path(name);
        let mut bytes = Vec::with_capacity(4 + data.len());
        bytes.extend_from_slice(&BOOT_ATTRIBUTES.to_le_bytes());
        bytes.extend_from_slice(data);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            // efivarfs replaces the variable with what one write carries;
            // O_TRUNC would only reach the inode's cached size.
            .truncate(false)
            .open(&path)
            .map_err(|e| SlotError::io("opening", &path, e))?;
        // One write: efivarfs takes a short one as the whole variable.
        let written = file
            .write(&bytes)
            .map_err(|e| SlotError::io("writing", &path, e))?;
        if written != bytes.len() {
            return Err(SlotError::io(
                "writing",
                &path,
                std::io::Error::other(format!("{written} of {} bytes taken", bytes.len())),
            ));
        }
        Ok(())
    }

    /// A u16 variable (`BootCurrent`, `BootNext`).
    pub fn read_u16(&self, name: &str) -> Result<Option<u16>, SlotError> {
        Ok(self
            .read(name)?
            .and_then(|data| Some(u16::from_le_bytes(data.get(0..2)?.try_into().ok()?))))
    }

    /// A list of u16 (`BootOrder`); empty when the variable is missing.
    pub fn read_order(&self, name: &str) -> Result<Vec<u16>, SlotError> {
        Ok(self
            .read(name)?
            .map(|data| {
                data.chunks_exact(2)
                    .filter_map(|pair| pair.try_into().ok().map(u16::from_le_bytes))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Writes a list of u16 (`BootOrder`).
    pub fn write_order(&self, name: &str, order: &[u16]) -> Result<(), SlotError> {
        let data: Vec<u8> = order.iter().flat_map(|n| n.to_le_bytes()).collect();
        self.write(name, &data)
    }

    /// The numbers of the `Boot####` variables that exist.
    pub fn boot_entries(&self) -> Result<Vec<u16>, SlotError> {
        let list =
            std::fs::read_dir(&self.dir).map_err(|e| SlotError::io("listing", &self.dir, e))?;
        let suffix = format!("-{GLOBAL}");
        let mut numbers: Vec<u16> = list
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let hex = name.strip_prefix("Boot")?.strip_suffix(&suffix)?;
                (hex.len() == 4)
                    .then(|| u16::from_str_radix(hex, 16).ok())
                    .flatten()
            })
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }
}

/// `Boot####`: four upper-case hex digits, as UEFI requires.
pub fn boot_name(number: u16) -> String {
    format!("Boot{number:04X}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn variables_are_attributes_then_data_and_read_back_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let vars = Efivars::at(dir.path());
        vars.write_order("BootOrder", &[3, 0x10, 1]).unwrap();
        let raw = std::fs::read(dir.path().join(format!("BootOrder-{GLOBAL}"))).unwrap();
        assert_eq!(raw, [7, 0, 0, 0, 3, 0, 0x10, 0, 1, 0]);
        assert_eq!(vars.read_order("BootOrder").unwrap(), [3, 0x10, 1]);
        assert_eq!(vars.read_u16("BootNext").unwrap(), None);
        vars.write("BootNext", &0x0aa5u16.to_le_bytes()).unwrap();
        assert_eq!(vars.read_u16("BootNext").unwrap(), Some(0x0aa5));
    }

    #[test]
    fn boot_entries_are_listed_by_number_and_other_variables_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let vars = Efivars::at(dir.path());
        vars.write(&boot_name(0x1a), b"x").unwrap();
        vars.write(&boot_name(2), b"x").unwrap();
        vars.write_order("BootOrder", &[2]).unwrap();
        std::fs::write(
            dir.path()
                .join("Boot0003-00000000-0000-0000-0000-000000000000"),
            b"",
        )
        .unwrap();
        assert_eq!(vars.boot_entries().unwrap(), [2, 0x1a]);
        assert_eq!(boot_name(0x1a), "Boot001A");
    }
}
