//! Builds a bootable initramfs with spore as `/init`, service files, keys,
//! kernel modules and helper binaries. Nothing is implemented here yet.
