//! The two slots on a node: their files on the EFI system partition, their
//! UEFI boot entries, and the record on the state disk. Every method does
//! blocking I/O (the ESP, efivarfs, fsync): call them off the event loop.
//!
//! ```text
//! \EFI\spore\a.efi      slot A (the image as built)
//! \EFI\spore\b.efi      slot B (written by the first update)
//! \EFI\BOOT\BOOTX64.EFI a copy of the confirmed slot: what a firmware
//!                       without spore's entries (or with them lost) boots
//! Boot#### "spore A"/"spore B"; BootOrder puts the confirmed one first;
//! BootNext names the slot on trial, for one boot only
//! ```

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::efivar::{boot_name, Efivars};
use crate::error::SlotError;
use crate::image::sha256_hex;
use crate::loadopt::LoadOption;
use crate::record::{Record, Slot, Trial};

/// The fallback path firmware boots from removable media.
pub const FALLBACK: &str = "EFI/BOOT/BOOTX64.EFI";

/// A node's slots.
#[derive(Debug, Clone)]
pub struct Slots {
    esp: PathBuf,
    vars: Efivars,
    record: PathBuf,
    sys: PathBuf,
    dev: PathBuf,
}

/// Where an image was staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// The slot written.
    pub slot: Slot,
    /// Its boot entry, set as BootNext.
    pub entry: u16,
}

impl Slots {
    /// The slots of a node whose ESP is mounted at `esp`, whose firmware
    /// variables are at `vars` (an efivarfs mount), and which keeps its
    /// record at `record`. Refused, saying why, when the node has no slots:
    /// no `\EFI\spore\a.efi` on the ESP, or no firmware variables.
    pub fn open(esp: &Path, vars: &Path, record: &Path) -> Result<Slots, SlotError> {
        if !esp.join(Slot::A.file()).is_file() {
            return Err(SlotError::NoSlots(format!(
                "no {} on the EFI system partition at {} (an image from spore-mkinitramfs --disk has it)",
                Slot::A.efi_path(),
                esp.display()
            )));
        }
        if std::fs::read_dir(vars).map_or(true, |mut d| d.next().is_none()) {
            return Err(SlotError::NoSlots(format!(
                "no UEFI variables at {} (not booted under UEFI, or efivarfs not mounted)",
                vars.display()
            )));
        }
        Ok(Slots {
            esp: esp.to_path_buf(),
            vars: Efivars::at(vars),
            record: record.to_path_buf(),
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        })
    }

    /// The firmware variables.
    pub fn vars(&self) -> &Efivars {
        &self.vars
    }

    /// The record; a node that never updated has the default one.
    pub fn read_record(&self) -> Result<Record, SlotError> {
        match std::fs::read(&self.record) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| SlotError::Unexpected(format!("{}: {e}", self.record.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
            Err(error) => Err(SlotError::io("reading", &self.record, error)),
        }
    }

    /// Writes the record atomically (temp file, fsync, rename).
    pub fn write_record(&self, record: &Record) -> Result<(), SlotError> {
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|e| SlotError::Unexpected(e.to_string()))?;
        durable::atomic::write_atomically(&self.record, &bytes, 0o600)
            .map_err(|e| SlotError::io("writing", &self.record, e))
    }

    /// The slot this boot came from: the entry the firmware says it
    /// started (`BootCurrent`) when it is one of spore's, else the
    /// confirmed slot (the fallback path holds a copy of it).
    pub fn booted(&self, record: &Record) -> Result<Slot, SlotError> {
        let Some(current) = self.vars.read_u16("BootCurrent")? else {
            return Ok(record.confirmed);
        };
        let option = self
            .vars
            .read(&boot_name(current))?
            .and_then(|data| LoadOption::decode(&data));
        Ok(match option {
            Some(o) if o.path.eq_ignore_ascii_case(Slot::A.efi_path()) => Slot::A,
            Some(o) if o.path.eq_ignore_ascii_case(Slot::B.efi_path()) => Slot::B,
            _ => record.confirmed,
        })
    }

    /// The boot entries of slots A and B, written (or rewritten) when
    /// missing or pointing elsewhere.
    pub fn ensure_entries(&self) -> Result<[u16; 2], SlotError> {
        let located = crate::gpt::locate(&self.esp, &self.sys, &self.dev)?;
        let existing = self.vars.boot_entries()?;
        let mut taken = existing.clone();
        let mut numbers = [0u16; 2];
        for (slot, number) in [Slot::A, Slot::B].into_iter().zip(numbers.iter_mut()) {
            let wanted = LoadOption {
                description: slot.description().to_owned(),
                partition: located.partition,
                path: slot.efi_path().to_owned(),
            };
            let mut found = None;
            for n in &existing {
                let data = self.vars.read(&boot_name(*n))?;
                let option = data.as_deref().and_then(LoadOption::decode);
                if option.as_ref().map(|o| o.description.as_str()) == Some(slot.description()) {
                    found = Some((*n, option == Some(wanted.clone())));
                    break;
                }
            }
            *number = match found {
                Some((n, true)) => n,
                Some((n, false)) => {
                    self.vars.write(&boot_name(n), &wanted.encode())?;
                    n
                }
                None => {
                    let n = (0x0100..=u16::MAX)
                        .find(|n| !taken.contains(n))
                        .ok_or_else(|| SlotError::Unexpected("no free Boot#### number".into()))?;
                    self.vars.write(&boot_name(n), &wanted.encode())?;
                    taken.push(n);
                    n
                }
            };
        }
        Ok(numbers)
    }

    /// Puts `first`'s entry at the head of BootOrder, the other slot's
    /// next, and the firmware's own entries after them, as they were.
    pub fn order_first(&self, first: Slot) -> Result<(), SlotError> {
        let entries = self.ensure_entries()?;
        let (mine, other) = match first {
            Slot::A => (entries[0], entries[1]),
            Slot::B => (entries[1], entries[0]),
        };
        let current = self.vars.read_order("BootOrder")?;
        let mut order = vec![mine, other];
        order.extend(current.iter().filter(|n| !entries.contains(n)));
        if order != current {
            self.vars.write_order("BootOrder", &order)?;
        }
        Ok(())
    }

    /// Writes `image` (already verified as `sha256`) to the slot that is not
    /// confirmed, reads it back from the disk, records the trial and sets
    /// BootNext to it: the next boot, and only that one, tries it.
    pub fn stage(
        &self,
        image: &[u8],
        sha256: &str,
        version: &str,
        now: u64,
    ) -> Result<Staged, SlotError> {
        let mut record = self.read_record()?;
        let slot = record.confirmed.other();
        let path = self.esp.join(slot.file());
        // A trial staged before and not yet booted is replaced by this one.
        if record.trial.take().is_some() {
            self.write_record(&record)?;
        }
        self.writable(|| {
            // The slot not in use goes first: the ESP then needs room for
            // the confirmed image, its fallback copy and this one (plus a
            // temporary while a confirmation copies), not a fourth.
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(SlotError::io("removing", &path, e))
                }
                _ => {}
            }
            durable::atomic::write_atomically(&path, image, 0o644)
                .map_err(|e| SlotError::io("writing", &path, e))
        })?;
        let found = read_from_disk(&path)?;
        if found != sha256 {
            return Err(SlotError::ReadBack {
                slot: slot.letter(),
                found,
                expected: sha256.to_owned(),
            });
        }
        let entries = self.ensure_entries()?;
        let entry = match slot {
            Slot::A => entries[0],
            Slot::B => entries[1],
        };
        record.trial = Some(Trial {
            slot,
            sha256: sha256.to_owned(),
            from_version: version.to_owned(),
            from_sha256: record.confirmed_sha256.clone(),
            staged_at: now,
            booted: false,
        });
        self.write_record(&record)?;
        if let Err(error) = self.vars.write("BootNext", &entry.to_le_bytes()) {
            record.trial = None;
            let _ = self.write_record(&record);
            return Err(error);
        }
        Ok(Staged { slot, entry })
    }

    /// Finishes a confirmation (or redoes it after a crash): BootOrder puts
    /// the confirmed slot first, the fallback path holds a copy of it, and
    /// the record says so.
    pub fn settle(&self, record: &mut Record) -> Result<(), SlotError> {
        self.order_first(record.confirmed)?;
        let source = self.esp.join(record.confirmed.file());
        let fallback = self.esp.join(FALLBACK);
        let image = std::fs::read(&source).map_err(|e| SlotError::io("reading", &source, e))?;
        let same = std::fs::read(&fallback).is_ok_and(|old| old == image);
        if !same {
            self.writable(|| {
                durable::atomic::write_atomically(&fallback, &image, 0o644)
                    .map_err(|e| SlotError::io("writing", &fallback, e))
            })?;
        }
        if record.confirmed_sha256.is_none() {
            record.confirmed_sha256 = Some(sha256_hex(&image));
        }
        record.settling = false;
        self.write_record(record)
    }

    /// The SHA-256 of a slot's image as it is on the ESP.
    pub fn image_sha256(&self, slot: Slot) -> Result<String, SlotError> {
        let path = self.esp.join(slot.file());
        artifacts::Digest::of_file(&path)
            .map(|d| d.hex())
            .map_err(|e| SlotError::io("reading", &path, e))
    }

    /// Runs `write` with the ESP mounted read-write (it is read-only the
    /// rest of the time), and mounts it read-only again whatever happened.
    fn writable<T>(&self, write: impl FnOnce() -> Result<T, SlotError>) -> Result<T, SlotError> {
        let was_read_only = remount(&self.esp, false)?;
        let result = write();
        if was_read_only {
            remount(&self.esp, true)?;
        }
        result
    }
}

/// Remounts `dir` read-only or read-write; says whether it was read-only.
fn remount(dir: &Path, read_only: bool) -> Result<bool, SlotError> {
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| SlotError::Unexpected("a NUL in the ESP's path".into()))?;
    // SAFETY: statvfs writes into the zeroed struct it is given.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_dir is a valid NUL-terminated string.
    if unsafe { libc::statvfs(c_dir.as_ptr(), &mut stat) } != 0 {
        return Err(SlotError::io(
            "inspecting",
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    let was_read_only = stat.f_flag & libc::ST_RDONLY != 0;
    if was_read_only == read_only {
        return Ok(was_read_only);
    }
    let mut flags = libc::MS_REMOUNT;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
    ] {
        if stat.f_flag & st != 0 {
            flags |= ms;
        }
    }
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    // SAFETY: the strings are valid; a remount reads no source or type.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c_dir.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(SlotError::io(
            if read_only {
                "remounting read-only"
            } else {
                "remounting read-write"
            },
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(was_read_only)
}

/// The SHA-256 of `path` as the disk holds it: its cached pages are
/// dropped first (they were just written and synced), so the read goes
/// to the device.
fn read_from_disk(path: &Path) -> Result<String, SlotError> {
    let file = std::fs::File::open(path).map_err(|e| SlotError::io("opening", path, e))?;
    // SAFETY: a plain advice call on an open descriptor. The pages are
    // dropped for the file, whoever opens it next.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
    artifacts::Digest::of_file(path)
        .map(|d| d.hex())
        .map_err(|e| SlotError::io("reading back", path, e))
}
