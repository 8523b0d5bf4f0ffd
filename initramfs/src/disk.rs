//! A disk image for USB sticks and disks: `dd if=node.img of=/dev/sdX` is
//! the whole install.
//!
//! ```text
//! LBA 0      protective MBR
//! LBA 1..33  GPT header and partition entries
//! 1 MiB      EFI system partition, FAT32: \EFI\BOOT\BOOTX64.EFI and
//!            \EFI\spore\a.efi (the UKI; slot B is written by an update)
//! …          spore-state, ext4, labelled spore-state: mounted on /var/lib
//! end        backup GPT
//! ```
//!
//! GPT and FAT are written here (the `fatfs` crate for FAT32), in memory:
//! no loop device, no root, no mount. The state partition is formatted at
//! build time with `mkfs.ext4` on a plain file (no root either), so PID 1
//! carries no mkfs and never formats anything; every node starts with an
//! empty filesystem and makes its own node key on it at first boot. All
//! GUIDs come from a hash of the inputs (or the manifest's `disk_guid`),
//! FAT times are 1980-01-01 and ext4's clock is fixed: the same inputs give
//! the same image, byte for byte.

// This runs on the operator's machine, never in PID 1: the GPT structures
// are fixed-size arrays written at constant offsets, and the disk buffer is
// sized from the same numbers that index it.
#![allow(clippy::indexing_slicing)]

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Bytes per sector.
const SECTOR: u64 = 512;
/// Partitions start on 1 MiB boundaries.
const ALIGN: u64 = 2048;
/// GPT partition entries (the usual 128 of 128 bytes: 32 sectors).
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// The EFI system partition's type GUID.
const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// Linux filesystem data.
const LINUX_TYPE: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";

/// The label spore mounts its state partition by.
pub const STATE_LABEL: &str = "spore-state";

/// Why a disk image cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The contents do not fit the partitions asked for.
    #[error("{what} needs {need} MiB but the manifest gives {have} MiB ({field})")]
    TooSmall {
        /// What did not fit.
        what: &'static str,
        /// The manifest field that sets the size.
        field: &'static str,
        /// MiB needed.
        need: u64,
        /// MiB given.
        have: u64,
    },
    /// Writing the FAT filesystem failed.
    #[error("EFI system partition: {0}")]
    Fat(String),
    /// mkfs.ext4 failed or is missing.
    #[error("state partition: {0}")]
    Ext4(String),
    /// A GUID in the manifest is not one.
    #[error("disk_guid `{0}` is not a GUID (8-4-4-4-12 hex digits)")]
    Guid(String),
}

/// What goes on the disk.
pub struct Layout<'a> {
    /// The UKI, as `\EFI\BOOT\BOOTX64.EFI`.
    pub uki: &'a [u8],
    /// Other files for the ESP: `(path with / separators, bytes)`.
    pub esp_files: &'a [(&'a str, &'a [u8])],
    /// Size of the ESP in MiB (FAT32 needs at least 33).
    pub esp_mib: u64,
    /// Size of the state partition in MiB.
    pub state_mib: u64,
    /// The disk's GUID, when the manifest fixes it; else one derived from
    /// the contents.
    pub disk_guid: Option<&'a str>,
}

/// A GUID as GPT stores it: the first three fields little-endian.
fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut plain = [0u8; 16];
    for (i, byte) in plain.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    let mut out = plain;
    out.get_mut(0..4)?.reverse();
    out.get_mut(4..6)?.reverse();
    out.get_mut(6..8)?.reverse();
    Some(out)
}

/// Text form of GPT-order GUID bytes.
fn guid_text(bytes: &[u8; 16]) -> String {
    let mut plain = *bytes;
    plain[0..4].reverse();
    plain[4..6].reverse();
    plain[6..8].reverse();
    let hex: Vec<String> = plain.iter().map(|b| format!("{b:02x}")).collect();
    let hex = hex.concat();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A version-4-shaped GUID from `seed` and `purpose`, in GPT order.
fn derived_guid(seed: &[u8], purpose: &str) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(seed)
        .chain_update(purpose.as_bytes())
        .finalize();
    let mut plain = [0u8; 16];
    plain.copy_from_slice(&digest[..16]);
    plain[6] = (plain[6] & 0x0f) | 0x40;
    plain[8] = (plain[8] & 0x3f) | 0x80;
    let mut gpt = plain;
    gpt[0..4].reverse();
    gpt[4..6].reverse();
    gpt[6..8].reverse();
    gpt
}

/// One GPT partition.
struct Partition {
    kind: [u8; 16],
    unique: [u8; 16],
    first: u64,
    last: u64,
    name: &'static str,
}

fn entry(p: &Partition) -> [u8; ENTRY_SIZE as usize] {
    let mut e = [0u8; ENTRY_SIZE as usize];
    e[0..16].copy_from_slice(&p.kind);
    e[16..32].copy_from_slice(&p.unique);
    e[32..40].copy_from_slice(&p.first.to_le_bytes());
    e[40..48].copy_from_slice(&p.last.to_le_bytes());
    for (i, unit) in p.name.encode_utf16().take(36).enumerate() {
        e[56 + i * 2..58 + i * 2].copy_from_slice(&unit.to_le_bytes());
    }
    e
}

fn header(
    disk_guid: &[u8; 16],
    mine: u64,
    other: u64,
    entries_at: u64,
    total: u64,
    entries_crc: u32,
) -> [u8; SECTOR as usize] {
    let mut h = [0u8; SECTOR as usize];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&mine.to_le_bytes());
    h[32..40].copy_from_slice(&other.to_le_bytes());
    h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
    h[48..56].copy_from_slice(&(total - 2 - ENTRY_SECTORS).to_le_bytes());
    h[56..72].copy_from_slice(disk_guid);
    h[72..80].copy_from_slice(&entries_at.to_le_bytes());
    h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
    h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

fn protective_mbr(total: u64) -> [u8; SECTOR as usize] {
    let mut m = [0u8; SECTOR as usize];
    let p = 446;
    m[p + 1..p + 4].copy_from_slice(&[0x00, 0x02, 0x00]);
    m[p + 4] = 0xee;
    m[p + 5..p + 8].copy_from_slice(&[0xff, 0xff, 0xff]);
    m[p + 8..p + 12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(total - 1).unwrap_or(u32::MAX);
    m[p + 12..p + 16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

/// The ESP's FAT32 filesystem, `mib` MiB, holding `files`.
fn fat(files: &[(&str, &[u8])], mib: u64, volume_id: u32) -> Result<Vec<u8>, DiskError> {
    use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};
    let fail = |e: std::io::Error| DiskError::Fat(e.to_string());
    let mut storage = Cursor::new(vec![0u8; (mib * 1024 * 1024) as usize]);
    fatfs::format_volume(
        &mut storage,
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .volume_id(volume_id)
            .volume_label(*b"SPORE-ESP  "),
    )
    .map_err(fail)?;
    storage.seek(SeekFrom::Start(0)).map_err(fail)?;
    {
        // Without the chrono feature, fatfs stamps every entry 1980-01-01.
        let fs = FileSystem::new(&mut storage, FsOptions::new()).map_err(fail)?;
        let mut sorted: Vec<&(&str, &[u8])> = files.iter().collect();
        sorted.sort_by_key(|(path, _)| *path);
        for (path, bytes) in sorted {
            let mut dir = fs.root_dir();
            let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let name = parts
                .pop()
                .ok_or_else(|| DiskError::Fat(format!("bad path {path}")))?;
            for part in parts {
                dir = match dir.open_dir(part) {
                    Ok(existing) => existing,
                    Err(_) => dir.create_dir(part).map_err(fail)?,
                };
            }
            let mut file = dir.create_file(name).map_err(|e| {
                DiskError::Fat(
                    if e.kind() == std::io::ErrorKind::WriteZero || e.to_string().contains("space")
                    {
                        format!("{path} does not fit")
                    } else {
                        e.to_string()
                    },
                )
            })?;
            file.truncate().map_err(fail)?;
            file.write_all(bytes).map_err(|_| DiskError::TooSmall {
                what: "the EFI system partition",
                field: "esp_mib",
                need: files.iter().map(|(_, b)| b.len() as u64).sum::<u64>() / (1024 * 1024) + 2,
                have: mib,
            })?;
        }
        fs.unmount().map_err(fail)?;
    }
    Ok(storage.into_inner())
}

/// The state partition: an empty ext4 labelled [`STATE_LABEL`], made by
/// mkfs.ext4 in a temporary file with a fixed UUID, hash seed and clock.
fn ext4(mib: u64, uuid: &str) -> Result<Vec<u8>, DiskError> {
    let fail = |e: String| DiskError::Ext4(e);
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let path = dir.path().join("state.img");
    let file = std::fs::File::create(&path).map_err(|e| fail(e.to_string()))?;
    file.set_len(mib * 1024 * 1024)
        .map_err(|e| fail(e.to_string()))?;
    drop(file);
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", STATE_LABEL, "-U", uuid, "-E"])
        .arg(format!(
            "root_owner=0:0,hash_seed={uuid},lazy_itable_init=0,lazy_journal_init=0,nodiscard"
        ))
        .arg(&path)
        .env("E2FSPROGS_FAKE_TIME", "315532800")
        .output()
        .map_err(|e| fail(format!("cannot run mkfs.ext4 ({e}); install e2fsprogs")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "mkfs.ext4: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::read(&path).map_err(|e| fail(e.to_string()))
}

/// Builds the whole disk image in memory.
pub fn build(layout: &Layout<'_>) -> Result<Vec<u8>, DiskError> {
    let seed = Sha256::new()
        .chain_update(layout.uki)
        .chain_update(layout.esp_mib.to_le_bytes())
        .chain_update(layout.state_mib.to_le_bytes())
        .finalize();
    let disk_guid = match layout.disk_guid {
        Some(text) => guid_bytes(text).ok_or_else(|| DiskError::Guid(text.to_owned()))?,
        None => derived_guid(&seed, "disk"),
    };
    // The UKI three times (slot A, the fallback path, and room for slot
    // B) and a fourth for the temporary a confirmation copies through.
    let need = (4 * layout.uki.len() as u64
        + layout
            .esp_files
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum::<u64>())
        / (1024 * 1024)
        + 2;
    if layout.esp_mib < 33 || layout.esp_mib < need {
        return Err(DiskError::TooSmall {
            what: "the EFI system partition (FAT32 takes 33 MiB at least, and the boot slots four times the UKI)",
            field: "esp_mib",
            need: need.max(33),
            have: layout.esp_mib,
        });
    }
    if layout.state_mib < 16 {
        return Err(DiskError::TooSmall {
            what: "the state partition (ext4 with its journal)",
            field: "state_mib",
            need: 16,
            have: layout.state_mib,
        });
    }
    let mib = 1024 * 1024 / SECTOR;
    let esp = Partition {
        kind: guid_bytes(ESP_TYPE).unwrap_or_default(),
        unique: derived_guid(&disk_guid, "esp"),
        first: ALIGN,
        last: ALIGN + layout.esp_mib * mib - 1,
        name: "EFI system partition",
    };
    let state = Partition {
        kind: guid_bytes(LINUX_TYPE).unwrap_or_default(),
        unique: derived_guid(&disk_guid, "state"),
        first: esp.last + 1,
        last: esp.last + layout.state_mib * mib,
        name: STATE_LABEL,
    };
    let total = state.last + 1 + ALIGN;
    // Slot A and the fallback path hold the same UKI; an update writes
    // slot B (bootslots).
    let mut files: Vec<(&str, &[u8])> = vec![
        ("EFI/BOOT/BOOTX64.EFI", layout.uki),
        ("EFI/spore/a.efi", layout.uki),
    ];
    files.extend_from_slice(layout.esp_files);
    let volume_id = u32::from_le_bytes([disk_guid[0], disk_guid[1], disk_guid[2], disk_guid[3]]);
    let fat = fat(&files, layout.esp_mib, volume_id)?;
    let ext4 = ext4(
        layout.state_mib,
        &guid_text(&derived_guid(&disk_guid, "state-fs")),
    )?;

    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    entries[..ENTRY_SIZE as usize].copy_from_slice(&entry(&esp));
    entries[ENTRY_SIZE as usize..2 * ENTRY_SIZE as usize].copy_from_slice(&entry(&state));
    let entries_crc = crc32fast::hash(&entries);
    let mut disk = vec![0u8; (total * SECTOR) as usize];
    let put = |disk: &mut Vec<u8>, lba: u64, bytes: &[u8]| {
        let at = (lba * SECTOR) as usize;
        disk[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut disk, 0, &protective_mbr(total));
    put(
        &mut disk,
        1,
        &header(&disk_guid, 1, total - 1, 2, total, entries_crc),
    );
    put(&mut disk, 2, &entries);
    put(&mut disk, esp.first, &fat);
    put(&mut disk, state.first, &ext4);
    put(&mut disk, total - 1 - ENTRY_SECTORS, &entries);
    put(
        &mut disk,
        total - 1,
        &header(
            &disk_guid,
            total - 1,
            1,
            total - 1 - ENTRY_SECTORS,
            total,
            entries_crc,
        ),
    );
    Ok(disk)
}

/// The GUID of the disk in `image` (for messages), when it has a GPT.
pub fn disk_guid(image: &[u8]) -> Option<String> {
    let header = image.get(SECTOR as usize..2 * SECTOR as usize)?;
    if header.get(..8)? != b"EFI PART" {
        return None;
    }
    let bytes: [u8; 16] = header.get(56..72)?.try_into().ok()?;
    Some(guid_text(&bytes))
}

/// Writes `image` to `path` atomically.
pub fn write(path: &Path, image: &[u8]) -> std::io::Result<()> {
    durable::atomic::write_atomically(path, image, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(uki: &[u8]) -> Layout<'_> {
        Layout {
            uki,
            esp_files: &[],
            esp_mib: 34,
            state_mib: 16,
            disk_guid: None,
        }
    }

    #[test]
    fn guids_round_trip_in_gpt_order() {
        let text = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
        let bytes = guid_bytes(text).unwrap();
        assert_eq!(bytes[..4], [0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(guid_text(&bytes), text);
        assert!(guid_bytes("not-a-guid").is_none());
    }

    #[test]
    fn the_image_is_a_valid_gpt_with_the_uki_on_fat32_and_an_ext4_state_partition() {
        let uki = vec![0x5au8; 300_000];
        let image = build(&layout(&uki)).unwrap();
        assert_eq!(image, build(&layout(&uki)).unwrap(), "reproducible");
        assert_eq!(&image[510..512], &[0x55, 0xaa]);
        assert_eq!(image[446 + 4], 0xee);
        let total = image.len() as u64 / SECTOR;
        for (lba, entries_at) in [(1, 2), (total - 1, total - 1 - ENTRY_SECTORS)] {
            let h = &image[(lba * SECTOR) as usize..(lba * SECTOR) as usize + 92];
            assert_eq!(&h[..8], b"EFI PART");
            let mut zeroed = h.to_vec();
            zeroed[16..20].fill(0);
            assert_eq!(
                u32::from_le_bytes(h[16..20].try_into().unwrap()),
                crc32fast::hash(&zeroed)
            );
            assert_eq!(
                u64::from_le_bytes(h[72..80].try_into().unwrap()),
                entries_at
            );
            let at = (entries_at * SECTOR) as usize;
            let entries = &image[at..at + (ENTRIES * ENTRY_SIZE) as usize];
            assert_eq!(
                u32::from_le_bytes(h[88..92].try_into().unwrap()),
                crc32fast::hash(entries)
            );
        }
        let entry = |i: usize| &image[1024 + i * 128..1024 + (i + 1) * 128];
        assert_eq!(guid_text(entry(0)[..16].try_into().unwrap()), ESP_TYPE);
        assert_eq!(guid_text(entry(1)[..16].try_into().unwrap()), LINUX_TYPE);
        let first = |i: usize| u64::from_le_bytes(entry(i)[32..40].try_into().unwrap());
        assert_eq!(first(0), ALIGN);
        // The ESP reads back with the UKI where firmware looks for it.
        let esp = &image[(first(0) * SECTOR) as usize..(first(1) * SECTOR) as usize];
        let fs =
            fatfs::FileSystem::new(Cursor::new(esp.to_vec()), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
        let mut read = Vec::new();
        std::io::Read::read_to_end(
            &mut fs.root_dir().open_file("EFI/BOOT/BOOTX64.EFI").unwrap(),
            &mut read,
        )
        .unwrap();
        assert_eq!(read, uki);
        // The state partition is ext4 with spore's label (superblock at 1024).
        let state = &image[(first(1) * SECTOR) as usize..];
        assert_eq!(&state[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef]);
        assert_eq!(
            &state[1024 + 0x78..1024 + 0x78 + STATE_LABEL.len()],
            STATE_LABEL.as_bytes()
        );
        // Another UKI, another disk GUID; a fixed one is kept.
        let other = build(&layout(&[1u8; 10])).unwrap();
        assert_ne!(disk_guid(&other), disk_guid(&image));
        let fixed = Layout {
            disk_guid: Some("0b3f2f7e-1111-4222-8333-444455556666"),
            ..layout(&uki)
        };
        assert_eq!(
            disk_guid(&build(&fixed).unwrap()).as_deref(),
            Some("0b3f2f7e-1111-4222-8333-444455556666")
        );
    }

    #[test]
    fn partitions_too_small_for_their_contents_are_refused() {
        let big = vec![0u8; 40 * 1024 * 1024];
        let error = build(&layout(&big)).unwrap_err().to_string();
        assert!(error.contains("esp_mib"), "{error}");
        let tiny = Layout {
            state_mib: 4,
            ..layout(b"x")
        };
        assert!(build(&tiny).unwrap_err().to_string().contains("state_mib"));
        let bad = Layout {
            disk_guid: Some("nope"),
            ..layout(b"x")
        };
        assert!(matches!(build(&bad), Err(DiskError::Guid(_))));
    }
}
