//! Just enough ELF to tell a static executable from a dynamic one: a
//! dynamic executable has a `PT_INTERP` program header naming its loader
//! (elf(5)), which an initramfs without that loader cannot run.

/// What a file is, as far as the image cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linkage {
    /// Not an ELF file (a script, a config file).
    NotElf,
    /// An ELF file without an interpreter: runs on its own.
    Static,
    /// An ELF file that needs this program interpreter (e.g.
    /// `/lib64/ld-linux-x86-64.so.2`).
    Dynamic(String),
}

const PT_INTERP: u32 = 3;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the program headers of a 64-bit little-endian ELF file. A
/// truncated or malformed ELF file counts as dynamic with an empty
/// interpreter: better refused than booted and found broken.
pub fn linkage(bytes: &[u8]) -> Linkage {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Linkage::NotElf;
    }
    let broken = || Linkage::Dynamic(String::new());
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian: the only kind here.
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return broken();
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (
        u64_at(bytes, 0x20),
        u16_at(bytes, 0x36),
        u16_at(bytes, 0x38),
    ) else {
        return broken();
    };
    for index in 0..usize::from(phnum) {
        let Some(header) = usize::try_from(phoff)
            .ok()
            .and_then(|off| off.checked_add(index * usize::from(phentsize)))
        else {
            return broken();
        };
        let Some(kind) = u32_at(bytes, header) else {
            return broken();
        };
        if kind != PT_INTERP {
            continue;
        }
        let (Some(offset), Some(size)) = (u64_at(bytes, header + 8), u64_at(bytes, header + 32))
        else {
            return broken();
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(size).unwrap_or(0));
        let text = bytes.get(start..end).unwrap_or_default();
        let text = text.split(|b| *b == 0).next().unwrap_or_default();
        return Linkage::Dynamic(String::from_utf8_lossy(text).into_owned());
    }
    Linkage::Static
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_binaries_are_told_apart() {
        // /bin/ls on Debian is dynamic; busybox-static is static.
        let ls = std::fs::read("/bin/ls").unwrap();
        assert!(
            matches!(linkage(&ls), Linkage::Dynamic(ref i) if i.contains("ld-linux")),
            "{:?}",
            linkage(&ls)
        );
        assert_eq!(linkage(b"#!/bin/sh\necho hi\n"), Linkage::NotElf);
        assert_eq!(
            linkage(b"\x7fELF\x02\x01 truncated"),
            Linkage::Dynamic(String::new())
        );
    }

    #[test]
    fn static_busybox_is_static() {
        let busybox = std::fs::read("/bin/busybox").unwrap();
        assert_eq!(linkage(&busybox), Linkage::Static);
    }
}
