//! Builds a bootable initramfs with spore as `/init`, service files, keys,
//! kernel modules and helper binaries. So far: the reproducible newc cpio
//! writer ([`cpio`]) and module resolution with dependency order from an
//! unpacked kernel package ([`modules`]); the manifest, compression and the
//! `spore-mkinitramfs` command come next (issue 6).

pub mod cpio;
pub mod modules;
