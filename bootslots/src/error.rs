//! What can go wrong with the boot slots, each with what a person needs to
//! act on it.

use std::path::Path;

/// Why a slot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// A file or firmware variable could not be read or written.
    #[error("{doing} {path}: {error}")]
    Io {
        /// What was being done ("writing").
        doing: &'static str,
        /// The file.
        path: String,
        /// The system's error.
        error: std::io::Error,
    },
    /// The node has no boot slots (not booted under UEFI, no efivarfs, or
    /// an ESP without `\EFI\spore\`).
    #[error("this node has no boot slots: {0}")]
    NoSlots(String),
    /// The image is not what it was said to be, or not an image at all.
    #[error("the image is refused: {0}")]
    Refused(String),
    /// What was written did not read back the same.
    #[error("the {slot} slot did not read back as written (SHA-256 {found}, expected {expected}); the slot is not booted")]
    ReadBack {
        /// The slot written.
        slot: &'static str,
        /// What was read.
        found: String,
        /// What was written.
        expected: String,
    },
    /// Something the kernel or firmware gave was not as expected.
    #[error("{0}")]
    Unexpected(String),
}

impl SlotError {
    /// An I/O error on `path`.
    pub fn io(doing: &'static str, path: &Path, error: std::io::Error) -> SlotError {
        SlotError::Io {
            doing,
            path: path.display().to_string(),
            error,
        }
    }
}
