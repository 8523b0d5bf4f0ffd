//! Writing files so that a crash leaves the old content or the new, never a
//! mix: temp file in the same directory, fsync, rename, fsync the directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Temporary files of this process get a serial number each, so two
/// writes never share one.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` with permission `mode`, atomically. Missing
/// parent directories are created 0700. The temporary file is
/// `.NAME.tmp-PID-SERIAL` beside it, made with O_EXCL, removed on failure;
/// one left by a crash (PID 1 has the same pid every boot) is replaced, and
/// [`remove_stale_temporaries`] clears them at start.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = parent_dir(path);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let temp = temp_path(path, SERIAL.fetch_add(1, Ordering::Relaxed));
    let result = (|| {
        let mut file = match create_exclusive(&temp, mode) {
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                // A leftover of a crashed write under the same name.
                fs::remove_file(&temp)?;
                create_exclusive(&temp, mode)?
            }
            other => other?,
        };
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn create_exclusive(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// `.NAME.tmp-PID-SERIAL` beside `path`.
fn temp_path(path: &Path, serial: u64) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.tmp-{}-{serial}", std::process::id()))
}

/// True for the names [`write_atomically`] gives its temporary files.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Removes the temporary files a crash left in `dir` (no writer runs yet
/// when spore starts); returns how many. A missing directory has none.
pub fn remove_stale_temporaries(dir: &Path) -> std::io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if is_temporary(&name.to_string_lossy()) && entry.file_type().is_ok_and(|t| t.is_file()) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Deletes `path` and makes the deletion durable.
pub fn remove_durably(path: &Path) -> std::io::Result<()> {
    fs::remove_file(path)?;
    fs::File::open(parent_dir(path))?.sync_all()
}

/// The directory holding `path`: `.` for a bare file name, whose parent
/// Rust gives as the empty path, which cannot be opened.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_whole_files_with_the_mode_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.toml");
        write_atomically(&path, b"one", 0o600).unwrap();
        write_atomically(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
        remove_durably(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_leftover_under_the_next_temporary_name_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.toml");
        // What a crash mid-write left, under the names the next writes use.
        let next = SERIAL.load(Ordering::Relaxed);
        for serial in next..next + 64 {
            fs::write(temp_path(&path, serial), b"half").unwrap();
        }
        write_atomically(&path, b"whole", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 63);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only web.toml is left");
    }

    #[test]
    fn only_temporary_files_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            ".web.toml.tmp-1",
            ".db-password.tmp-77-3",
            "keep.toml",
            ".hidden",
        ] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 2);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".hidden", "keep.toml"]);
        assert_eq!(
            remove_stale_temporaries(&dir.path().join("missing")).unwrap(),
            0
        );
    }

    #[test]
    fn a_bare_name_writes_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("initrd.img")), Path::new("."));
        assert_eq!(parent_dir(Path::new("out/initrd.img")), Path::new("out"));
        assert_eq!(parent_dir(Path::new("/initrd.img")), Path::new("/"));
    }
}
