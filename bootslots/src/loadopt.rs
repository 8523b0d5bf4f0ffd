//! `Boot####` contents: an EFI_LOAD_OPTION (UEFI 2.10 §3.1.3) whose device
//! path is the short form firmware expands by itself — a hard-drive node
//! naming the EFI system partition by its GPT GUID, then the file — as
//! `efibootmgr` writes them:
//!
//! ```text
//! u32 attributes (LOAD_OPTION_ACTIVE)   u16 length of the device path
//! UCS-2 description, NUL-terminated
//! HD(partition, start, size, GUID)      04 01 2a00 …      (§10.3.5.1)
//! File(\EFI\spore\a.efi)                04 04 len  UCS-2  (§10.3.5.4)
//! End                                   7f ff 0400
//! ```

/// LOAD_OPTION_ACTIVE.
const ACTIVE: u32 = 0x1;

/// The partition a load option's file is on, as GPT describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Its 1-based number in the partition table.
    pub number: u32,
    /// Its first block (in the disk's logical blocks).
    pub start: u64,
    /// Its length in logical blocks.
    pub size: u64,
    /// Its unique partition GUID, in the byte order GPT stores it.
    pub guid: [u8; 16],
}

/// One boot entry: a description and a file on a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOption {
    /// What a boot menu shows ("spore A").
    pub description: String,
    /// Where the file is.
    pub partition: Partition,
    /// The file, with backslashes (`\EFI\spore\a.efi`).
    pub path: String,
}

fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

impl LoadOption {
    /// The variable's data.
    pub fn encode(&self) -> Vec<u8> {
        let mut path = Vec::new();
        // Hard drive media device path: type 4, subtype 1, 42 bytes.
        path.extend_from_slice(&[0x04, 0x01]);
        path.extend_from_slice(&42u16.to_le_bytes());
        path.extend_from_slice(&self.partition.number.to_le_bytes());
        path.extend_from_slice(&self.partition.start.to_le_bytes());
        path.extend_from_slice(&self.partition.size.to_le_bytes());
        path.extend_from_slice(&self.partition.guid);
        // Partition format 2: GPT; signature type 2: GUID.
        path.extend_from_slice(&[0x02, 0x02]);
        // File path media device path: type 4, subtype 4.
        let file = ucs2(&self.path);
        path.extend_from_slice(&[0x04, 0x04]);
        path.extend_from_slice(
            &u16::try_from(4 + file.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        path.extend_from_slice(&file);
        // End of the whole device path.
        path.extend_from_slice(&[0x7f, 0xff, 0x04, 0x00]);

        let mut data = Vec::new();
        data.extend_from_slice(&ACTIVE.to_le_bytes());
        data.extend_from_slice(&u16::try_from(path.len()).unwrap_or(u16::MAX).to_le_bytes());
        data.extend_from_slice(&ucs2(&self.description));
        data.extend_from_slice(&path);
        data
    }

    /// Reads a load option this module could have written: None for any
    /// other shape (firmware's own entries, other device paths), which
    /// spore leaves alone.
    pub fn decode(data: &[u8]) -> Option<LoadOption> {
        let path_len = usize::from(u16::from_le_bytes(data.get(4..6)?.try_into().ok()?));
        let mut units = Vec::new();
        let mut at = 6;
        loop {
            let unit = u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?);
            at += 2;
            if unit == 0 {
                break;
            }
            units.push(unit);
        }
        let description = String::from_utf16(&units).ok()?;
        let path = data.get(at..at + path_len)?;
        if path.get(0..4)? != [0x04, 0x01, 42, 0] || path.get(40..42)? != [0x02, 0x02] {
            return None;
        }
        let number = u32::from_le_bytes(path.get(4..8)?.try_into().ok()?);
        let start = u64::from_le_bytes(path.get(8..16)?.try_into().ok()?);
        let size = u64::from_le_bytes(path.get(16..24)?.try_into().ok()?);
        let guid: [u8; 16] = path.get(24..40)?.try_into().ok()?;
        let file = path.get(42..)?;
        if file.get(0..2)? != [0x04, 0x04] {
            return None;
        }
        let file_len = usize::from(u16::from_le_bytes(file.get(2..4)?.try_into().ok()?));
        let name: Vec<u16> = file
            .get(4..file_len)?
            .chunks_exact(2)
            .filter_map(|pair| pair.try_into().ok().map(u16::from_le_bytes))
            .take_while(|unit| *unit != 0)
            .collect();
        if file.get(file_len..file_len + 4)? != [0x7f, 0xff, 0x04, 0x00] {
            return None;
        }
        Some(LoadOption {
            description,
            partition: Partition {
                number,
                start,
                size,
                guid,
            },
            path: String::from_utf16(&name).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn option() -> LoadOption {
        LoadOption {
            description: "spore A".into(),
            partition: Partition {
                number: 1,
                start: 2048,
                size: 81920,
                guid: [
                    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9,
                    0x3e, 0xc9, 0x3b,
                ],
            },
            path: "\\EFI\\spore\\a.efi".into(),
        }
    }

    /// The bytes, laid out by hand from the UEFI specification's tables
    /// (not by the encoder), for `HD(1,GPT,c12a7328-…,0x800,0x14000)/
    /// \EFI\spore\a.efi`.
    #[test]
    fn a_load_option_is_laid_out_as_the_specification_says() {
        let mut expected: Vec<u8> = vec![1, 0, 0, 0];
        let file_node = 4 + 2 * ("\\EFI\\spore\\a.efi".len() + 1);
        let path_len = 42 + file_node + 4;
        expected.extend_from_slice(&(path_len as u16).to_le_bytes());
        for c in "spore A\0".chars() {
            expected.extend_from_slice(&[c as u8, 0]);
        }
        expected.extend_from_slice(&[4, 1, 42, 0, 1, 0, 0, 0]);
        expected.extend_from_slice(&[0x00, 0x08, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0x00, 0x40, 0x01, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&option().partition.guid);
        expected.extend_from_slice(&[2, 2, 4, 4, file_node as u8, 0]);
        for c in "\\EFI\\spore\\a.efi\0".chars() {
            expected.extend_from_slice(&[c as u8, 0]);
        }
        expected.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        assert_eq!(option().encode(), expected);
    }

    #[test]
    fn a_written_option_reads_back_and_foreign_ones_are_left_alone() {
        assert_eq!(LoadOption::decode(&option().encode()), Some(option()));
        // OVMF's own entry for a USB disk: a PCI/USB path, not HD(…).
        let mut foreign = vec![1, 0, 0, 0, 10, 0, b'U', 0, 0, 0];
        foreign.extend_from_slice(&[2, 1, 12, 0, 0xd0, 0x41, 3, 10, 0, 0, 0, 0, 0x7f, 0xff, 4, 0]);
        assert_eq!(LoadOption::decode(&foreign), None);
        assert_eq!(LoadOption::decode(&[1, 0]), None);
    }
}
