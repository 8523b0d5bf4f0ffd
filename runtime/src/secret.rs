//! What spore reads of secrets: a stored secret read only from a regular
//! file, into a buffer wiped when dropped (`durable::wipe`).

pub use durable::wipe::{wipe, SecretBytes};

/// A stored secret holds at most this many bytes (one frame carries it in).
pub const MAX_SECRET_BYTES: u64 = 1 << 20;

/// Reads the secret at `path`, which must be a regular file (not a link, a
/// FIFO, a device or a directory) of at most [`MAX_SECRET_BYTES`]: a FIFO
/// planted in the store would otherwise hold the reader (PID 1) forever,
/// and a device would never end. Opened `O_NOFOLLOW | O_NONBLOCK`, checked
/// with `fstat` on the open descriptor (no window between check and read).
pub fn read_regular(path: &std::path::Path) -> std::io::Result<SecretBytes> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| {
            if error.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::other("a symbolic link, not a file")
            } else {
                error
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{}, not a file",
            svc::load::file_kind(meta.file_type())
        )));
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {MAX_SECRET_BYTES} a secret may hold",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_SECRET_BYTES + 1).read_to_end(&mut bytes)?;
    let bytes = SecretBytes::new(bytes);
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(std::io::Error::other(
            "grew past the size a secret may hold",
        ));
    }
    Ok(bytes)
}
