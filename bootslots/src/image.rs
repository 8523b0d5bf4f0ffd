//! Checks on an update image before a byte of it reaches a slot: its
//! SHA-256 is the one named, it is a unified kernel image (a PE file with
//! `.linux` and `.initrd` sections, as `spore-mkinitramfs --uki` makes),
//! and, when the node's image carries update keys, an `ssh-keygen -Y sign`
//! signature (namespace [`NAMESPACE`]) by one of them covers it.

use crate::error::SlotError;

/// The SSHSIG namespace update signatures are made in:
/// `ssh-keygen -Y sign -f KEY -n spore-update IMAGE.efi`.
pub const NAMESPACE: &str = "spore-update";

/// Lower-case hex SHA-256 of `bytes`, as the artifact store names them.
pub fn sha256_hex(bytes: &[u8]) -> String {
    artifacts::Digest::of_bytes(bytes).hex()
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// The names of a PE file's sections; None when it is not a PE file.
pub fn pe_sections(bytes: &[u8]) -> Option<Vec<String>> {
    if bytes.get(0..2)? != b"MZ" {
        return None;
    }
    let pe = usize::try_from(u32::from_le_bytes(bytes.get(0x3c..0x40)?.try_into().ok()?)).ok()?;
    if bytes.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let count = usize::from(u16_at(bytes, pe + 6)?);
    let optional = usize::from(u16_at(bytes, pe + 20)?);
    let table = pe + 24 + optional;
    (0..count)
        .map(|i| {
            let name = bytes.get(table + i * 40..table + i * 40 + 8)?;
            let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            Some(String::from_utf8_lossy(name.get(..end)?).into_owned())
        })
        .collect()
}

/// Checks `bytes` against the name it came under (`sha256`), its shape,
/// and, when `keys` is not empty, `signature` (an armored SSHSIG).
pub fn verify(
    bytes: &[u8],
    sha256: &str,
    signature: Option<&str>,
    keys: &[String],
) -> Result<(), SlotError> {
    let found = sha256_hex(bytes);
    if found != sha256.to_ascii_lowercase() {
        return Err(SlotError::Refused(format!(
            "its SHA-256 is {found}, not {sha256}"
        )));
    }
    let sections = pe_sections(bytes).ok_or_else(|| {
        SlotError::Refused("it is not a PE file (a unified kernel image is one)".into())
    })?;
    for wanted in [".linux", ".initrd"] {
        if !sections.iter().any(|s| s == wanted) {
            return Err(SlotError::Refused(format!(
                "it has no {wanted} section: not a unified kernel image (spore-mkinitramfs --uki makes one)"
            )));
        }
    }
    verify_signature(bytes, signature, keys)
}

/// With `[update] keys`, `signature` (an armored `ssh-keygen -Y sign -n
/// spore-update` signature) must be by one of them over `bytes`; without
/// keys anything passes. Checks an image's and a spore binary's (a live
/// re-exec) alike.
pub fn verify_signature(
    bytes: &[u8],
    signature: Option<&str>,
    keys: &[String],
) -> Result<(), SlotError> {
    if keys.is_empty() {
        return Ok(());
    }
    let Some(armored) = signature else {
        return Err(SlotError::Refused(
            "it is not signed, and this node takes only what one of its [update] keys signed"
                .into(),
        ));
    };
    let signature = ssh_key::SshSig::from_pem(armored.as_bytes())
        .map_err(|e| SlotError::Refused(format!("its signature is unreadable ({e})")))?;
    let signed = keys.iter().any(|key| {
        ssh_key::PublicKey::from_openssh(key)
            .map(|key| key.verify(NAMESPACE, bytes, &signature).is_ok())
            .unwrap_or(false)
    });
    if signed {
        Ok(())
    } else {
        Err(SlotError::Refused(format!(
            "its signature is not by one of this node's [update] keys over these bytes in namespace {NAMESPACE}"
        )))
    }
}
