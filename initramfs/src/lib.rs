//! Builds a bootable initramfs with spore as `/init`, service files, keys,
//! kernel modules and helper binaries. So far: the reproducible newc cpio
//! writer the builder will use ([`cpio`]); the manifest, module resolution
//! and compression come next (issue 6).

pub mod cpio;
