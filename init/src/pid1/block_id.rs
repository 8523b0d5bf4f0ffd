//! Finding a disk by `LABEL=` or `UUID=` without udev or blkid: the block
//! devices the kernel lists in /sys/class/block, each one's superblock
//! read from /dev and recognised for ext2/3/4, xfs, btrfs and vfat, with
//! the label and UUID as blkid prints them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What a `[[mount]]` source names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `LABEL=…`: the filesystem's label, exactly.
    Label(String),
    /// `UUID=…`: its UUID (case-insensitive), as blkid prints it.
    Uuid(String),
}

impl DeviceSpec {
    /// `LABEL=x` or `UUID=x`; None for anything else (a path).
    pub fn parse(source: &str) -> Option<Self> {
        if let Some(label) = source.strip_prefix("LABEL=") {
            return Some(DeviceSpec::Label(label.to_owned()));
        }
        source
            .strip_prefix("UUID=")
            .map(|uuid| DeviceSpec::Uuid(uuid.to_ascii_lowercase()))
    }

    fn matches(&self, id: &FsId) -> bool {
        match self {
            DeviceSpec::Label(label) => id.label.as_deref() == Some(label.as_str()),
            DeviceSpec::Uuid(uuid) => id.uuid.to_ascii_lowercase() == *uuid,
        }
    }
}

/// A filesystem recognised on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsId {
    /// `ext4`, `xfs`, `btrfs`, `vfat` (ext2 and ext3 are reported as ext4,
    /// which mounts them).
    pub fstype: &'static str,
    /// As blkid prints it: 8-4-4-4-12 hex, or `XXXX-XXXX` for vfat.
    pub uuid: String,
    /// The label, if set.
    pub label: Option<String>,
}

/// Reads `len` bytes at `offset`; None when the device is shorter.
fn read_at(device: &mut (impl Read + Seek), offset: u64, len: usize) -> Option<Vec<u8>> {
    device.seek(SeekFrom::Start(offset)).ok()?;
    let mut buffer = vec![0u8; len];
    device.read_exact(&mut buffer).ok()?;
    Some(buffer)
}

fn uuid_text(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let part = |range: std::ops::Range<usize>| hex.get(range).unwrap_or_default().to_owned();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

/// A NUL- (or space-, for FAT) padded label; None when empty.
fn label_text(bytes: &[u8], pad: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let text = String::from_utf8_lossy(bytes.get(..end).unwrap_or_default()).to_string();
    let text = text.trim_end_matches(|c: char| pad.contains(&(c as u8)));
    (!text.is_empty() && text != "NO NAME").then(|| text.to_owned())
}

/// Recognises the filesystem on `device`, if it is one spore can find.
pub fn identify(device: &mut (impl Read + Seek)) -> Option<FsId> {
    // ext2/3/4: the superblock at 1024; magic 0xEF53 at +56 (le16), the
    // UUID at +104, the volume name at +120 (16 bytes).
    if let Some(sb) = read_at(device, 1024, 136) {
        if sb.get(56..58) == Some(&[0x53, 0xef]) {
            return Some(FsId {
                fstype: "ext4",
                uuid: uuid_text(sb.get(104..120)?),
                label: label_text(sb.get(120..136)?, b""),
            });
        }
    }
    // xfs: "XFSB" at 0; the UUID at 32, the name at 108 (12 bytes).
    if let Some(sb) = read_at(device, 0, 120) {
        if sb.get(0..4) == Some(b"XFSB") {
            return Some(FsId {
                fstype: "xfs",
                uuid: uuid_text(sb.get(32..48)?),
                label: label_text(sb.get(108..120)?, b""),
            });
        }
    }
    // btrfs: the superblock at 64 KiB; "_BHRfS_M" at +0x40, the fsid at
    // +0x20, the label at +0x12b (256 bytes).
    if let Some(sb) = read_at(device, 0x10000, 0x12b + 256) {
        if sb.get(0x40..0x48) == Some(b"_BHRfS_M") {
            return Some(FsId {
                fstype: "btrfs",
                uuid: uuid_text(sb.get(0x20..0x30)?),
                label: label_text(sb.get(0x12b..0x12b + 256)?, b""),
            });
        }
    }
    // vfat: the boot sector ends 0x55AA; FAT32 says "FAT32   " at 82 with
    // its serial at 67 and label at 71, FAT12/16 say "FAT" at 54 with them
    // at 39 and 43. blkid prints the serial as XXXX-XXXX.
    let boot = read_at(device, 0, 512)?;
    if boot.get(510..512) != Some(&[0x55, 0xaa]) {
        return None;
    }
    let (serial_at, label_at) = if boot.get(82..87) == Some(b"FAT32") {
        (67, 71)
    } else if boot.get(54..57) == Some(b"FAT") {
        (39, 43)
    } else {
        return None;
    };
    let serial = boot.get(serial_at..serial_at + 4)?;
    let value = u32::from_le_bytes(serial.try_into().ok()?);
    Some(FsId {
        fstype: "vfat",
        uuid: format!("{:04X}-{:04X}", value >> 16, value & 0xffff),
        label: label_text(boot.get(label_at..label_at + 11)?, b" "),
    })
}

/// The device under `dev` (e.g. /dev) whose filesystem `spec` names, among
/// the block devices `sys_block` (e.g. /sys/class/block) lists.
pub fn find(spec: &DeviceSpec, sys_block: &Path, dev: &Path) -> Option<(PathBuf, FsId)> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let path = dev.join(&name);
        let id = identify(&mut File::open(&path).ok()?)?;
        spec.matches(&id).then_some((path, id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A sparse 320 MiB image file (xfs's smallest) made by `mkfs` with
    /// `args` (the real tools).
    fn image(dir: &Path, name: &str, mkfs: &str, args: &[&str]) -> Option<PathBuf> {
        let path = dir.join(name);
        let file = File::create(&path).unwrap();
        file.set_len(320 << 20).unwrap();
        let status = Command::new(mkfs).args(args).arg(&path).output().ok()?;
        status.status.success().then_some(path)
    }

    /// What blkid says of `path`, for comparison (None without blkid).
    fn blkid(path: &Path, tag: &str) -> Option<String> {
        let out = Command::new("blkid")
            .args(["-o", "value", "-s", tag])
            .arg(path)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    #[test]
    fn ext4_vfat_xfs_and_btrfs_are_recognised_as_blkid_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let ext4 = image(
            dir.path(),
            "state.img",
            "mkfs.ext4",
            &["-q", "-F", "-L", "spore-state"],
        )
        .expect("mkfs.ext4 (e2fsprogs) is installed by scripts/setup");
        let id = identify(&mut File::open(&ext4).unwrap()).unwrap();
        assert_eq!(id.fstype, "ext4");
        assert_eq!(id.label.as_deref(), Some("spore-state"));
        assert_eq!(Some(id.uuid.clone()), blkid(&ext4, "UUID"));
        let vfat = image(
            dir.path(),
            "esp.img",
            "mkfs.vfat",
            &["-F", "32", "-n", "SPORE-ESP"],
        )
        .expect("mkfs.vfat (dosfstools) is installed by scripts/setup");
        let id = identify(&mut File::open(&vfat).unwrap()).unwrap();
        assert_eq!(id.fstype, "vfat");
        assert_eq!(id.label.as_deref(), Some("SPORE-ESP"));
        assert_eq!(Some(id.uuid.clone()), blkid(&vfat, "UUID"));
        for (mkfs, fstype, args) in [
            ("mkfs.xfs", "xfs", &["-q", "-f", "-L", "spore-xfs"][..]),
            (
                "mkfs.btrfs",
                "btrfs",
                &["-q", "-f", "-L", "spore-btrfs"][..],
            ),
        ] {
            let path = image(dir.path(), fstype, mkfs, args)
                .unwrap_or_else(|| panic!("{mkfs} is installed by scripts/setup"));
            let id = identify(&mut File::open(&path).unwrap()).unwrap();
            assert_eq!(id.fstype, fstype);
            assert_eq!(id.label.as_deref(), Some(&*format!("spore-{fstype}")));
            assert_eq!(Some(id.uuid.clone()), blkid(&path, "UUID"), "{fstype}");
        }
        // Not a filesystem at all.
        let zero = dir.path().join("zero.img");
        File::create(&zero).unwrap().set_len(1 << 20).unwrap();
        assert_eq!(identify(&mut File::open(&zero).unwrap()), None);
    }

    #[test]
    fn sources_name_a_label_or_a_uuid_and_find_matches_them() {
        assert_eq!(
            DeviceSpec::parse("LABEL=spore-state"),
            Some(DeviceSpec::Label("spore-state".into()))
        );
        assert_eq!(
            DeviceSpec::parse("UUID=ABCD-1234"),
            Some(DeviceSpec::Uuid("abcd-1234".into()))
        );
        assert_eq!(DeviceSpec::parse("/dev/vda"), None);
        // A fake /sys/class/block and /dev holding one labelled image.
        let root = tempfile::tempdir().unwrap();
        let (sys, dev) = (root.path().join("sys"), root.path().join("dev"));
        std::fs::create_dir_all(sys.join("vdb")).unwrap();
        std::fs::create_dir_all(sys.join("vda")).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        File::create(dev.join("vda"))
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let made = image(&dev, "vdb", "mkfs.ext4", &["-q", "-F", "-L", "spore-state"]).unwrap();
        let (path, id) = find(&DeviceSpec::Label("spore-state".into()), &sys, &dev).unwrap();
        assert_eq!(path, made);
        let by_uuid = find(
            &DeviceSpec::Uuid(id.uuid.to_uppercase().to_ascii_lowercase()),
            &sys,
            &dev,
        );
        assert_eq!(by_uuid.map(|(p, _)| p), Some(made));
        assert!(find(&DeviceSpec::Label("other".into()), &sys, &dev).is_none());
    }
}
