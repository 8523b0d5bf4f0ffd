//! The store on disk: uploads in `partial/`, verified artifacts in
//! `sha256/`, a quota over both.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::{ArtifactError, Digest};

/// A content-addressed store under one directory (see the crate's doc).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    quota: u64,
    hashing: Hashing,
}

/// Uploads hashed as they are written, by name and size: the hasher and
/// the bytes it was given. An upload whose chunks all came through this
/// store, in order, is verified from it; one resumed after a restart (or
/// past [`MAX_HASHING`]) is read back from disk instead.
#[derive(Clone, Default)]
struct Hashing(Arc<Mutex<Hashers>>);

/// Each upload's hasher and the bytes it was given, by name and size.
type Hashers = HashMap<(Digest, u64), (Sha256, u64)>;

impl std::fmt::Debug for Hashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hashing")
    }
}

/// Uploads hashed as they are written at once, at most.
const MAX_HASHING: usize = 64;

impl Hashing {
    /// Starts hashing a new upload.
    fn start(&self, key: (Digest, u64)) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() < MAX_HASHING {
                map.insert(key, (Sha256::new(), 0));
            }
        }
    }

    /// Adds `data`, written at `offset`; an upload not hashed up to there
    /// is dropped (it is read back at the end).
    fn add(&self, key: (Digest, u64), offset: u64, data: &[u8]) {
        if let Ok(mut map) = self.0.lock() {
            match map.get_mut(&key) {
                Some((hasher, hashed)) if *hashed == offset => {
                    hasher.update(data);
                    *hashed += data.len() as u64;
                }
                Some(_) => {
                    map.remove(&key);
                }
                None => {}
            }
        }
    }

    /// The digest of the whole upload, when it was hashed whole.
    fn finish(&self, key: (Digest, u64)) -> Option<Digest> {
        let (hasher, hashed) = self.0.lock().ok()?.remove(&key)?;
        (hashed == key.1).then(|| Digest::of_hasher(hasher))
    }

    /// Forgets an upload.
    fn drop_upload(&self, key: (Digest, u64)) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&key);
        }
    }
}

/// How much of an artifact the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// None of it.
    Nothing,
    /// This many bytes of an upload under way.
    Partial(u64),
    /// All of it, verified.
    Complete,
}

impl Held {
    /// Bytes held of an artifact of `size` bytes.
    pub fn bytes(self, size: u64) -> u64 {
        match self {
            Held::Nothing => 0,
            Held::Partial(bytes) => bytes,
            Held::Complete => size,
        }
    }
}

/// One chunk of an upload.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// The artifact's name.
    pub digest: Digest,
    /// Its whole size in bytes.
    pub size: u64,
    /// Where this chunk starts: the bytes held so far.
    pub offset: u64,
    /// The chunk.
    pub data: &'a [u8],
    /// Make the artifact executable (0555 instead of 0444).
    pub executable: bool,
}

/// An artifact the store holds, whole or in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub digest: Digest,
    /// Its size in bytes (declared, for an upload under way).
    pub size: u64,
    /// Bytes held.
    pub held: u64,
    /// Verified and visible.
    pub complete: bool,
    /// Mode 0555 rather than 0444.
    pub executable: bool,
}

/// The share of the store's filesystem the quota is by default: half.
const DEFAULT_SHARE_DIVISOR: u64 = 2;

impl Store {
    /// The store under `root` (made 0700 if missing), holding at most
    /// `quota` bytes, or by default half of its filesystem's size (a
    /// quarter of the memory on a filesystem without a size, ramfs).
    pub fn open(root: &Path, quota: Option<u64>) -> Result<Store, ArtifactError> {
        for dir in [root.to_owned(), root.join("sha256"), root.join("partial")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| ArtifactError::io(format!("create {}", dir.display()), e, 0))?;
        }
        let quota = match quota {
            Some(quota) => quota,
            None => match filesystem(root)? {
                // ramfs (an initramfs's rootfs without tmpfs) has no size:
                // a quarter of the memory, as a tmpfs's half would be.
                (0, _) => nix::sys::sysinfo::sysinfo()
                    .map(|info| info.ram_total() / 4)
                    .unwrap_or(0),
                (size, _) => size / DEFAULT_SHARE_DIVISOR,
            },
        };
        Ok(Store {
            root: root.to_owned(),
            quota,
            hashing: Hashing::default(),
        })
    }

    /// The directory it lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The most bytes it holds (verified and under way).
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Where the verified artifact `digest` is (whether or not it is held).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    fn partial_path(&self, digest: &Digest, size: u64) -> PathBuf {
        self.root.join("partial").join(format!("{digest}-{size}"))
    }

    /// How much of `digest` (of `size` bytes) is held.
    pub fn held(&self, digest: &Digest, size: u64) -> Result<Held, ArtifactError> {
        if let Some(len) = file_len(&self.path(digest))? {
            return match len == size {
                true => Ok(Held::Complete),
                false => Err(ArtifactError::OtherSize {
                    digest: digest.hex(),
                    held: len,
                    size,
                }),
            };
        }
        Ok(match file_len(&self.partial_path(digest, size))? {
            Some(len) => Held::Partial(len),
            None => Held::Nothing,
        })
    }

    /// Stores one chunk. The last one (ending at `size`) verifies the whole
    /// upload and makes it visible; any refusal after the first byte (the
    /// quota, a full disk, a digest that does not match) leaves nothing of
    /// it behind. A chunk for an artifact already complete changes nothing
    /// (but may make it executable).
    pub fn put(&self, upload: &Upload<'_>) -> Result<Held, ArtifactError> {
        let Upload {
            digest,
            size,
            offset,
            data,
            executable,
        } = *upload;
        let complete = self.path(&digest);
        if self.held(&digest, size)? == Held::Complete {
            if executable {
                set_mode(&complete, 0o555)?;
            }
            return Ok(Held::Complete);
        }
        let partial = self.partial_path(&digest, size);
        let held = file_len(&partial)?;
        if held.is_none() {
            // A new upload replaces one of another size (read only here,
            // not at every chunk).
            self.drop_other_uploads(&digest, size)?;
        }
        let start = held.unwrap_or(0);
        if offset != start {
            return Err(ArtifactError::Offset {
                offset,
                held: start,
            });
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > size {
            return Err(ArtifactError::PastEnd { end, size });
        }
        if held.is_none() {
            self.admit(size)?;
            self.hashing.start((digest, size));
        }
        let written = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&partial)
            .and_then(|mut file| file.write_all(data));
        if let Err(error) = written {
            let _ = fs::remove_file(&partial);
            self.hashing.drop_upload((digest, size));
            return Err(ArtifactError::io(
                format!("write {}", partial.display()),
                error,
                size.saturating_sub(offset),
            ));
        }
        self.hashing.add((digest, size), offset, data);
        if end < size {
            return Ok(Held::Partial(end));
        }
        let hashed = self.hashing.finish((digest, size));
        self.publish(&digest, &partial, hashed, executable)
    }

    /// Checks that a new upload of `size` bytes fits the quota and the
    /// filesystem (as the first chunk of an upload does).
    pub fn admit(&self, size: u64) -> Result<(), ArtifactError> {
        let used = self.used()?;
        if used.saturating_add(size) > self.quota {
            return Err(ArtifactError::Quota {
                size,
                used,
                quota: self.quota,
            });
        }
        let (_, free) = filesystem(&self.root)?;
        if size > free {
            return Err(ArtifactError::Full { needed: size, free });
        }
        Ok(())
    }

    /// Checks what was written against its name (`hashed` as it was
    /// written, else read back from disk), then makes it visible read-only
    /// under its name (fsync, chmod, rename, fsync the directory), or
    /// removes it.
    fn publish(
        &self,
        digest: &Digest,
        partial: &Path,
        hashed: Option<Digest>,
        executable: bool,
    ) -> Result<Held, ArtifactError> {
        let failed = |what: &str, error| {
            let _ = fs::remove_file(partial);
            ArtifactError::io(format!("{what} {}", partial.display()), error, 0)
        };
        let got = match hashed {
            Some(got) => got,
            None => Digest::of_file(partial).map_err(|e| failed("read back", e))?,
        };
        if got != *digest {
            let _ = fs::remove_file(partial);
            return Err(ArtifactError::Mismatch {
                expected: digest.hex(),
                got: got.hex(),
            });
        }
        fs::File::open(partial)
            .and_then(|f| f.sync_all())
            .map_err(|e| failed("fsync", e))?;
        let mode = if executable { 0o555 } else { 0o444 };
        fs::set_permissions(partial, fs::Permissions::from_mode(mode))
            .map_err(|e| failed("chmod", e))?;
        let complete = self.path(digest);
        fs::rename(partial, &complete).map_err(|e| failed("rename", e))?;
        let dir = self.root.join("sha256");
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ArtifactError::io(format!("fsync {}", dir.display()), e, 0))?;
        Ok(Held::Complete)
    }

    /// Removes uploads of `digest` declared with another size than `size`.
    fn drop_other_uploads(&self, digest: &Digest, size: u64) -> Result<(), ArtifactError> {
        for entry in self.entries()? {
            if entry.digest == *digest && !entry.complete && entry.size != size {
                let path = self.partial_path(digest, entry.size);
                let _ = fs::remove_file(path);
            }
        }
        Ok(())
    }

    /// Bytes held or reserved: every verified artifact's size, and every
    /// upload's declared size.
    pub fn used(&self) -> Result<u64, ArtifactError> {
        Ok(self
            .entries()?
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.size)))
    }

    /// Every artifact held, verified ones and uploads under way, by name.
    pub fn entries(&self) -> Result<Vec<Entry>, ArtifactError> {
        let mut entries = Vec::new();
        for (dir, complete) in [("sha256", true), ("partial", false)] {
            let dir = self.root.join(dir);
            let listing = fs::read_dir(&dir)
                .map_err(|e| ArtifactError::io(format!("read {}", dir.display()), e, 0))?;
            for item in listing.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                let Ok(meta) = item.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let parsed = if complete {
                    Digest::parse(&name).ok().map(|d| (d, meta.len()))
                } else {
                    name.split_once('-').and_then(|(hex, size)| {
                        Some((Digest::parse(hex).ok()?, size.parse::<u64>().ok()?))
                    })
                };
                // Anything else is not the store's (a temporary of another
                // tool, say): left alone, not counted.
                let Some((digest, size)) = parsed else {
                    continue;
                };
                entries.push(Entry {
                    digest,
                    size,
                    held: meta.len(),
                    complete,
                    executable: meta.permissions().mode() & 0o111 != 0,
                });
            }
        }
        entries.sort_by_key(|e| (e.digest, !e.complete));
        Ok(entries)
    }

    /// Removes what no service needs: verified artifacts not in `keep`
    /// last changed before `older_than` (one just put, for a service file
    /// not yet deployed, stays), and uploads nobody has added to since
    /// `stale_before`. Returns how many went and their bytes.
    pub fn collect(
        &self,
        keep: &std::collections::HashSet<Digest>,
        older_than: std::time::SystemTime,
        stale_before: std::time::SystemTime,
    ) -> Result<(usize, u64), ArtifactError> {
        let mut removed = (0, 0u64);
        for entry in self.entries()? {
            let path = match entry.complete {
                true => self.path(&entry.digest),
                false => self.partial_path(&entry.digest, entry.size),
            };
            let changed = fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            let unused = match entry.complete {
                true => !keep.contains(&entry.digest) && changed < older_than,
                false => changed < stale_before,
            };
            if unused {
                durable::atomic::remove_durably(&path)
                    .map_err(|e| ArtifactError::io(format!("remove {}", path.display()), e, 0))?;
                removed.0 += 1;
                removed.1 = removed.1.saturating_add(entry.held);
            }
        }
        Ok(removed)
    }

    /// Removes the upload under way of `digest` (of `size` bytes), if any;
    /// a verified artifact stays.
    pub fn drop_upload(&self, digest: &Digest, size: u64) -> Result<(), ArtifactError> {
        self.hashing.drop_upload((*digest, size));
        let path = self.partial_path(digest, size);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(ArtifactError::io(
                format!("remove {}", path.display()),
                error,
                0,
            )),
        }
    }

    /// Removes `digest`, verified or under way; false when nothing was held.
    pub fn remove(&self, digest: &Digest) -> Result<bool, ArtifactError> {
        let mut removed = false;
        for entry in self.entries()? {
            if entry.digest != *digest {
                continue;
            }
            let path = match entry.complete {
                true => self.path(digest),
                false => {
                    self.hashing.drop_upload((*digest, entry.size));
                    self.partial_path(digest, entry.size)
                }
            };
            durable::atomic::remove_durably(&path)
                .map_err(|e| ArtifactError::io(format!("remove {}", path.display()), e, 0))?;
            removed = true;
        }
        Ok(removed)
    }
}

/// The length of the file at `path`, None when there is none.
fn file_len(path: &Path) -> Result<Option<u64>, ArtifactError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(ArtifactError::io(
            format!("stat {}", path.display()),
            error,
            0,
        )),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ArtifactError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| ArtifactError::io(format!("chmod {}", path.display()), e, 0))
}

/// The filesystem holding `path`: its size, and the bytes free to an
/// unprivileged writer.
fn filesystem(path: &Path) -> Result<(u64, u64), ArtifactError> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(|errno| {
        ArtifactError::io(
            format!("statvfs {}", path.display()),
            std::io::Error::from(errno),
            0,
        )
    })?;
    let unit = stat.fragment_size();
    Ok((
        stat.blocks().saturating_mul(unit),
        stat.blocks_available().saturating_mul(unit),
    ))
}

#[cfg(test)]
mod tests;
