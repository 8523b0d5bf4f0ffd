//! What `node.update` checks before a byte reaches a slot, against real
//! `ssh-keygen -Y sign` signatures made with keys from `ssh-keygen`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

use bootslots::image::{pe_sections, sha256_hex, verify, NAMESPACE};

/// A PE file with the sections named (no code: only the headers a check
/// reads), as a UKI's section table looks.
fn pe(sections: &[&str]) -> Vec<u8> {
    let mut bytes = vec![0u8; 0x40];
    bytes[0..2].copy_from_slice(b"MZ");
    bytes[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    bytes.extend_from_slice(b"PE\0\0");
    let mut coff = [0u8; 20];
    coff[0..2].copy_from_slice(&0x8664u16.to_le_bytes());
    coff[2..4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&coff);
    for name in sections {
        let mut header = [0u8; 40];
        header[..name.len()].copy_from_slice(name.as_bytes());
        bytes.extend_from_slice(&header);
    }
    bytes.extend_from_slice(b"kernel and initramfs would be here");
    bytes
}

fn keygen(dir: &Path, name: &str) -> String {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    std::fs::read_to_string(key.with_extension("pub")).unwrap()
}

fn sign(dir: &Path, key: &str, image: &[u8]) -> String {
    let file = dir.join("image.efi");
    std::fs::write(&file, image).unwrap();
    let _ = std::fs::remove_file(dir.join("image.efi.sig"));
    let status = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", NAMESPACE, "-f"])
        .arg(dir.join(key))
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(dir.join("image.efi.sig")).unwrap()
}

#[test]
fn sections_are_read_from_the_pe_header() {
    assert_eq!(
        pe_sections(&pe(&[".text", ".linux", ".initrd"])).unwrap(),
        [".text", ".linux", ".initrd"]
    );
    assert_eq!(pe_sections(b"MZ"), None);
    assert_eq!(pe_sections(b"\x7fELF"), None);
}

#[test]
fn an_unsigned_uki_passes_on_a_node_without_keys_and_its_hash_must_match() {
    let image = pe(&[".linux", ".initrd"]);
    let sha = sha256_hex(&image);
    verify(&image, &sha, None, &[]).unwrap();
    let wrong = sha256_hex(b"other");
    let error = verify(&image, &wrong, None, &[]).unwrap_err().to_string();
    assert!(error.contains(&format!("its SHA-256 is {sha}")), "{error}");
}

#[test]
fn what_is_not_a_uki_is_refused() {
    let kernel_only = pe(&[".linux"]);
    let error = verify(&kernel_only, &sha256_hex(&kernel_only), None, &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("no .initrd section"), "{error}");
    let text = b"#!/bin/sh\necho not an image\n";
    let error = verify(text, &sha256_hex(text), None, &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a PE file"), "{error}");
}

#[test]
fn a_node_with_keys_takes_only_images_signed_by_one_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let fleet_key = keygen(dir.path(), "update_key");
    let other_key = keygen(dir.path(), "someone_else");
    let keys = vec![fleet_key.trim().to_owned()];
    let image = pe(&[".linux", ".initrd", ".cmdline"]);
    let sha = sha256_hex(&image);

    let signed = sign(dir.path(), "update_key", &image);
    verify(&image, &sha, Some(&signed), &keys).unwrap();

    let error = verify(&image, &sha, None, &keys).unwrap_err().to_string();
    assert!(error.contains("it is not signed"), "{error}");

    let by_other = sign(dir.path(), "someone_else", &image);
    let error = verify(&image, &sha, Some(&by_other), &keys)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not by one of this node's [update] keys"),
        "{error}"
    );
    // The other key is fine once the node lists it.
    verify(
        &image,
        &sha,
        Some(&by_other),
        &[other_key.trim().to_owned()],
    )
    .unwrap();

    // A signature over other bytes does not cover these.
    let mut changed = image.clone();
    changed.push(0);
    let error = verify(&changed, &sha256_hex(&changed), Some(&signed), &keys)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not by one of this node's [update] keys"),
        "{error}"
    );

    // Signed in another namespace (a git commit signature, say): refused.
    let file = dir.path().join("image.efi");
    std::fs::write(&file, &image).unwrap();
    let _ = std::fs::remove_file(dir.path().join("image.efi.sig"));
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "git", "-f"])
        .arg(dir.path().join("update_key"))
        .arg(&file)
        .status()
        .unwrap()
        .success());
    let git = std::fs::read_to_string(dir.path().join("image.efi.sig")).unwrap();
    assert!(verify(&image, &sha, Some(&git), &keys).is_err());

    let error = verify(&image, &sha, Some("garbage"), &keys)
        .unwrap_err()
        .to_string();
    assert!(error.contains("signature is unreadable"), "{error}");
}
