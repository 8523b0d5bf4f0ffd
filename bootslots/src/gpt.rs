//! Which partition the EFI system partition is, in the terms a UEFI boot
//! entry needs (number, first block, length, unique GUID): the kernel
//! gives the first three in sysfs; the GUID is read from the disk's GPT
//! (the kernel exports it only through udev, which a node does not run).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::SlotError;
use crate::loadopt::Partition;

/// Where the partition behind a mounted directory is, and its numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The whole disk's device node (`/dev/sda`).
    pub disk: PathBuf,
    /// The partition, for a boot entry.
    pub partition: Partition,
}

fn read_number(path: &Path) -> Result<u64, SlotError> {
    let text = std::fs::read_to_string(path).map_err(|e| SlotError::io("reading", path, e))?;
    text.trim()
        .parse()
        .map_err(|_| SlotError::Unexpected(format!("{}: not a number", path.display())))
}

/// The partition the filesystem mounted at `dir` is on: its sysfs entry
/// (under `sys`, normally `/sys`), its disk's node under `dev` (normally
/// `/dev`), and the GUID from that disk's partition table.
pub fn locate(dir: &Path, sys: &Path, dev: &Path) -> Result<Located, SlotError> {
    let meta = std::fs::metadata(dir).map_err(|e| SlotError::io("reading", dir, e))?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let link = sys.join(format!("dev/block/{major}:{minor}"));
    let node = std::fs::canonicalize(&link).map_err(|e| SlotError::io("resolving", &link, e))?;
    if !node.join("partition").exists() {
        return Err(SlotError::Unexpected(format!(
            "{} is not on a partition ({})",
            dir.display(),
            node.display()
        )));
    }
    let number = u32::try_from(read_number(&node.join("partition"))?)
        .map_err(|_| SlotError::Unexpected("partition number out of range".into()))?;
    // sysfs counts 512-byte sectors whatever the disk's block size.
    let start_512 = read_number(&node.join("start"))?;
    let size_512 = read_number(&node.join("size"))?;
    let disk_dir = node
        .parent()
        .ok_or_else(|| SlotError::Unexpected(format!("{} has no disk", node.display())))?;
    let block = read_number(&disk_dir.join("queue/logical_block_size")).unwrap_or(512);
    if block < 512 || block % 512 != 0 {
        return Err(SlotError::Unexpected(format!("logical block size {block}")));
    }
    let disk_name = disk_dir
        .file_name()
        .ok_or_else(|| SlotError::Unexpected(format!("{} has no name", disk_dir.display())))?;
    let disk = dev.join(disk_name);
    let mut file = File::open(&disk).map_err(|e| SlotError::io("opening", &disk, e))?;
    let guid = partition_guid(&mut file, block, number)
        .map_err(|e| SlotError::io("reading the partition table of", &disk, e))?;
    Ok(Located {
        disk,
        partition: Partition {
            number,
            start: start_512 * 512 / block,
            size: size_512 * 512 / block,
            guid,
        },
    })
}

/// The unique GUID of partition `number` (1-based) in the GPT of `disk`,
/// whose logical blocks are `block` bytes, in the byte order GPT stores
/// it (which is the order a device path carries).
pub fn partition_guid(
    disk: &mut (impl Read + Seek),
    block: u64,
    number: u32,
) -> std::io::Result<[u8; 16]> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut header = [0u8; 92];
    disk.seek(SeekFrom::Start(block))?;
    disk.read_exact(&mut header)?;
    if header.get(0..8) != Some(b"EFI PART".as_slice()) {
        return Err(bad("no GPT header at block 1"));
    }
    let field = |range: std::ops::Range<usize>| -> std::io::Result<u64> {
        let bytes = header.get(range).ok_or_else(|| bad("short header"))?;
        let mut wide = [0u8; 8];
        wide.get_mut(..bytes.len())
            .ok_or_else(|| bad("short header"))?
            .copy_from_slice(bytes);
        Ok(u64::from_le_bytes(wide))
    };
    let entries_at = field(72..80)?;
    let count = field(80..84)?;
    let entry_size = field(84..88)?;
    if number == 0 || u64::from(number) > count || !(128..=4096).contains(&entry_size) {
        return Err(bad("no such partition entry"));
    }
    disk.seek(SeekFrom::Start(
        entries_at * block + (u64::from(number) - 1) * entry_size,
    ))?;
    let mut entry = [0u8; 32];
    disk.read_exact(&mut entry)?;
    let guid: [u8; 16] = entry
        .get(16..32)
        .and_then(|g| g.try_into().ok())
        .ok_or_else(|| bad("short entry"))?;
    if guid == [0; 16] {
        return Err(bad("the partition entry is empty"));
    }
    Ok(guid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    /// GPT order: the first three fields little-endian.
    fn gpt_order(text: &str) -> [u8; 16] {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        let mut b: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap())
            .collect();
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        b.try_into().unwrap()
    }

    /// A partition table written by util-linux's sfdisk, not by spore.
    #[test]
    fn the_guid_is_the_one_sfdisk_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let script = "label: gpt\n\
            start=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0D3B6E2A-7C41-4F5E-9A8B-112233445566\n\
            start=6144, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=9A8B7C6D-1111-4222-8333-AABBCCDDEEFF\n";
        let mut child = std::process::Command::new("sfdisk")
            .arg("-q")
            .arg(&image)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("sfdisk (util-linux)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let mut disk = File::open(&image).unwrap();
        assert_eq!(
            partition_guid(&mut disk, 512, 1).unwrap(),
            gpt_order("0D3B6E2A-7C41-4F5E-9A8B-112233445566")
        );
        assert_eq!(
            partition_guid(&mut disk, 512, 2).unwrap(),
            gpt_order("9A8B7C6D-1111-4222-8333-AABBCCDDEEFF")
        );
        assert!(partition_guid(&mut disk, 512, 3).is_err(), "an empty entry");
        assert!(
            partition_guid(&mut disk, 4096, 1).is_err(),
            "no header there"
        );
    }
}
