//! Builds a bootable initramfs with spore as `/init`, service files, keys,
//! kernel modules and helper binaries, from a [`manifest::Manifest`]. The
//! same inputs give a byte-identical image: entries sorted, owners 0:0,
//! times 0, compression without timestamps.

pub mod cpio;
pub mod disk;
pub mod elf;
pub mod image;
pub mod install;
pub mod manifest;
pub mod modules;
pub mod needs;
pub mod netboot;
pub mod uki;

pub use image::{build, BuildError, Image};
pub use manifest::Manifest;
