//! Boots real Debian kernels under QEMU with spore's initramfs, one node and
//! five, and drives them from the host exactly as an operator would. Nothing
//! is implemented here yet.
