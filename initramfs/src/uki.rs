//! A unified kernel image: systemd's EFI stub (Debian's `systemd-boot-efi`,
//! `linuxx64.efi.stub`) with the kernel, the initramfs, the command line
//! and an os-release added as PE sections (`.linux`, `.initrd`, `.cmdline`,
//! `.osrel`), as `ukify` lays them out. One PE file boots the node from any
//! UEFI firmware, from a disk (`\EFI\BOOT\BOOTX64.EFI`) or over the network,
//! and a Secure Boot signature over it later covers the kernel, the
//! initramfs and the command line together (sbsign/pesign sign the file as
//! it is). Nothing here depends on the time or the machine: the same inputs
//! give the same bytes.

/// Why a UKI cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UkiError {
    /// The stub is not a PE32+ EFI application.
    #[error("the EFI stub is not a PE32+ image: {0}")]
    NotPe(&'static str),
    /// The stub is not systemd's (no `.sdmagic` section): a kernel's own
    /// EFI stub cannot carry an initramfs and a command line this way.
    #[error("the EFI stub has no .sdmagic section: use systemd's linuxx64.efi.stub (Debian: systemd-boot-efi)")]
    NotSystemdStub,
    /// The kernel has no EFI stub of its own (it must be a PE too).
    #[error("the kernel is not an EFI-stub kernel (no MZ/PE header; CONFIG_EFI_STUB)")]
    KernelWithoutStub,
    /// The stub's headers have no room for four more section headers.
    #[error("the EFI stub's headers have no room for the UKI's sections")]
    NoRoom,
    /// The stub already carries UKI sections.
    #[error("the EFI stub already has a {0} section")]
    AlreadyUki(String),
}

/// What goes into the UKI.
pub struct Parts<'a> {
    /// The stub, as read.
    pub stub: &'a [u8],
    /// The kernel image (`vmlinuz`, an EFI-stub bzImage).
    pub kernel: &'a [u8],
    /// The initramfs.
    pub initrd: &'a [u8],
    /// The kernel command line.
    pub cmdline: &'a str,
    /// An os-release text (`NAME=spore` …) the boot menu shows.
    pub osrel: &'a str,
}

const SECTION_HEADER: usize = 40;
/// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ.
const DATA_READ: u32 = 0x4000_0040;

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, UkiError> {
    let b: [u8; 2] = bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .ok_or(UkiError::NotPe("truncated"))?;
    Ok(u16::from_le_bytes(b))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, UkiError> {
    let b: [u8; 4] = bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or(UkiError::NotPe("truncated"))?;
    Ok(u32::from_le_bytes(b))
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) -> Result<(), UkiError> {
    bytes
        .get_mut(at..at + 4)
        .ok_or(UkiError::NotPe("truncated"))?
        .copy_from_slice(&value.to_le_bytes());
    Ok(())
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) -> Result<(), UkiError> {
    bytes
        .get_mut(at..at + 2)
        .ok_or(UkiError::NotPe("truncated"))?
        .copy_from_slice(&value.to_le_bytes());
    Ok(())
}

fn align(value: usize, to: usize) -> usize {
    value.div_ceil(to.max(1)) * to.max(1)
}

/// The offset of the PE signature, when `bytes` is an MZ/PE image.
fn pe_offset(bytes: &[u8]) -> Option<usize> {
    if bytes.get(..2) != Some(b"MZ") {
        return None;
    }
    let at = u32_at(bytes, 0x3c).ok()? as usize;
    (bytes.get(at..at + 4) == Some(b"PE\0\0")).then_some(at)
}

/// Where one section's header sits and what it says.
struct Section {
    name: [u8; 8],
    virtual_size: u32,
    virtual_address: u32,
}

/// Makes the UKI.
pub fn build(parts: &Parts<'_>) -> Result<Vec<u8>, UkiError> {
    if pe_offset(parts.kernel).is_none() {
        return Err(UkiError::KernelWithoutStub);
    }
    let stub = parts.stub;
    let pe = pe_offset(stub).ok_or(UkiError::NotPe("no MZ/PE signature"))?;
    let coff = pe + 4;
    let sections = usize::from(u16_at(stub, coff + 2)?);
    let optional_size = usize::from(u16_at(stub, coff + 16)?);
    let optional = coff + 20;
    if u16_at(stub, optional)? != 0x20b {
        return Err(UkiError::NotPe("not PE32+"));
    }
    let section_alignment = u32_at(stub, optional + 32)? as usize;
    let file_alignment = u32_at(stub, optional + 36)? as usize;
    let size_of_headers = u32_at(stub, optional + 60)? as usize;
    let table = optional + optional_size;
    let mut existing = Vec::with_capacity(sections);
    for i in 0..sections {
        let at = table + i * SECTION_HEADER;
        let mut name = [0u8; 8];
        name.copy_from_slice(stub.get(at..at + 8).ok_or(UkiError::NotPe("truncated"))?);
        existing.push(Section {
            name,
            virtual_size: u32_at(stub, at + 8)?,
            virtual_address: u32_at(stub, at + 12)?,
        });
    }
    if !existing.iter().any(|s| s.name.starts_with(b".sdmagic")) {
        return Err(UkiError::NotSystemdStub);
    }
    let added: [(&[u8; 8], &[u8]); 4] = [
        (b".osrel\0\0", parts.osrel.as_bytes()),
        (b".cmdline", parts.cmdline.as_bytes()),
        (b".initrd\0", parts.initrd),
        (b".linux\0\0", parts.kernel),
    ];
    for (name, _) in &added {
        if existing.iter().any(|s| &s.name == *name) {
            let shown = String::from_utf8_lossy(name.as_slice())
                .trim_end_matches('\0')
                .to_owned();
            return Err(UkiError::AlreadyUki(shown));
        }
    }
    let table_end = table + (sections + added.len()) * SECTION_HEADER;
    if table_end > size_of_headers {
        return Err(UkiError::NoRoom);
    }
    let mut out = stub.to_vec();
    // New raw data goes after everything the stub holds; new sections go
    // after its last one in memory, in the order ukify uses.
    let mut raw = align(out.len(), file_alignment);
    let mut virtual_address = existing
        .iter()
        .map(|s| s.virtual_address as usize + s.virtual_size as usize)
        .max()
        .map_or(0, |end| align(end, section_alignment));
    for (i, (name, data)) in added.iter().enumerate() {
        let header = table + (sections + i) * SECTION_HEADER;
        let size = u32::try_from(data.len()).map_err(|_| UkiError::NotPe("part over 4 GiB"))?;
        let raw_size = align(data.len(), file_alignment);
        out.resize(raw, 0);
        out.extend_from_slice(data);
        out.resize(raw + raw_size, 0);
        let entry = out
            .get_mut(header..header + SECTION_HEADER)
            .ok_or(UkiError::NoRoom)?;
        entry.fill(0);
        entry
            .get_mut(..8)
            .ok_or(UkiError::NoRoom)?
            .copy_from_slice(name.as_slice());
        let to_u32 = |n: usize| u32::try_from(n).map_err(|_| UkiError::NotPe("image over 4 GiB"));
        put_u32(&mut out, header + 8, size)?;
        put_u32(&mut out, header + 12, to_u32(virtual_address)?)?;
        put_u32(&mut out, header + 16, to_u32(raw_size)?)?;
        put_u32(&mut out, header + 20, to_u32(raw)?)?;
        put_u32(&mut out, header + 36, DATA_READ)?;
        raw += raw_size;
        virtual_address = align(virtual_address + data.len(), section_alignment);
    }
    let count = u16::try_from(sections + added.len()).map_err(|_| UkiError::NoRoom)?;
    put_u16(&mut out, coff + 2, count)?;
    let image_size =
        u32::try_from(virtual_address).map_err(|_| UkiError::NotPe("image over 4 GiB"))?;
    put_u32(&mut out, optional + 56, image_size)?;
    // The checksum is not checked by firmware; a stale one would be wrong.
    put_u32(&mut out, optional + 64, 0)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ with a `.text` and a `.sdmagic` section and room
    /// for more headers, built here from the format's definition.
    pub fn fake_stub() -> Vec<u8> {
        let mut pe = vec![0u8; 0x600];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        pe[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        pe[coff + 2..coff + 4].copy_from_slice(&2u16.to_le_bytes());
        pe[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        pe[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        pe[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        pe[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes());
        pe[opt + 56..opt + 60].copy_from_slice(&0x3000u32.to_le_bytes());
        pe[opt + 60..opt + 64].copy_from_slice(&0x400u32.to_le_bytes());
        let table = opt + 240;
        for (i, (name, va, raw)) in [
            (b".text\0\0\0", 0x1000u32, 0x400u32),
            (b".sdmagic", 0x2000, 0x600),
        ]
        .iter()
        .enumerate()
        {
            let at = table + i * 40;
            pe[at..at + 8].copy_from_slice(*name);
            pe[at + 8..at + 12].copy_from_slice(&0x10u32.to_le_bytes());
            pe[at + 12..at + 16].copy_from_slice(&va.to_le_bytes());
            pe[at + 16..at + 20].copy_from_slice(&0x200u32.to_le_bytes());
            pe[at + 20..at + 24].copy_from_slice(&raw.to_le_bytes());
        }
        pe.resize(0x800, 0);
        pe
    }

    fn kernel() -> Vec<u8> {
        let mut k = fake_stub();
        k[0x200] = 0xAA;
        k
    }

    #[test]
    fn sections_are_added_after_the_stubs_and_the_same_inputs_give_the_same_bytes() {
        let stub = fake_stub();
        let kernel = kernel();
        let parts = Parts {
            stub: &stub,
            kernel: &kernel,
            initrd: b"initrd bytes",
            cmdline: "console=ttyS0",
            osrel: "NAME=spore\n",
        };
        let uki = build(&parts).unwrap();
        assert_eq!(uki, build(&parts).unwrap());
        let table = 0x84 + 20 + 240;
        assert_eq!(u16_at(&uki, 0x86).unwrap(), 6);
        let header = |i: usize| table + i * 40;
        assert_eq!(&uki[header(2)..header(2) + 8], b".osrel\0\0");
        assert_eq!(&uki[header(5)..header(5) + 8], b".linux\0\0");
        // .osrel follows .sdmagic in memory; each part is where its header says.
        assert_eq!(u32_at(&uki, header(2) + 12).unwrap(), 0x3000);
        for (i, data) in [
            (3usize, b"console=ttyS0".as_slice()),
            (4, b"initrd bytes"),
            (5, &kernel),
        ] {
            let size = u32_at(&uki, header(i) + 8).unwrap() as usize;
            let raw = u32_at(&uki, header(i) + 20).unwrap() as usize;
            assert_eq!(&uki[raw..raw + size], data);
            assert_eq!(raw % 0x200, 0);
        }
        let end = u32_at(&uki, header(5) + 12).unwrap() + u32_at(&uki, header(5) + 8).unwrap();
        assert!(u32_at(&uki, 0x84 + 20 + 56).unwrap() >= end);
    }

    #[test]
    fn wrong_inputs_are_refused() {
        let stub = fake_stub();
        let kernel = kernel();
        let parts = |stub: &'static [u8], kernel: &'static [u8]| Parts {
            stub,
            kernel,
            initrd: b"",
            cmdline: "",
            osrel: "",
        };
        let stub: &'static [u8] = Box::leak(stub.into_boxed_slice());
        let kernel: &'static [u8] = Box::leak(kernel.into_boxed_slice());
        assert_eq!(
            build(&parts(stub, b"not a kernel")),
            Err(UkiError::KernelWithoutStub)
        );
        assert!(matches!(
            build(&parts(b"MZ", kernel)),
            Err(UkiError::NotPe(_))
        ));
        let mut plain = stub.to_vec();
        let at = 0x84 + 20 + 240 + 40;
        plain[at..at + 8].copy_from_slice(b".data\0\0\0");
        let plain: &'static [u8] = Box::leak(plain.into_boxed_slice());
        assert_eq!(build(&parts(plain, kernel)), Err(UkiError::NotSystemdStub));
        let uki: &'static [u8] = Box::leak(build(&parts(stub, kernel)).unwrap().into_boxed_slice());
        assert!(matches!(
            build(&parts(uki, kernel)),
            Err(UkiError::AlreadyUki(_))
        ));
    }
}
