//! A newc ("070701") cpio writer for initramfs images (the kernel's
//! Documentation/driver-api/early-userspace/buffer-format.rst). Entries are
//! sorted and stamped with fixed owners and times, so the same inputs give
//! a byte-identical archive.

use std::collections::BTreeMap;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDevice(u32, u32),
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpioError {
    /// Paths are relative, without `.` or `..` parts.
    #[error("bad path `{0}` (relative, no `.` or `..` parts, no NUL)")]
    BadPath(String),
    /// The same path twice.
    #[error("`{0}` is in the archive twice")]
    Duplicate(String),
    /// More than the 32-bit size field can hold.
    #[error("`{0}` is larger than 4 GiB")]
    TooLarge(String),
}

/// An archive being assembled; written out by [`Archive::finish`].
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, (u32, Body)>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, path: &str, mode: u32, body: Body) -> Result<(), CpioError> {
        let clean = path.trim_start_matches('/');
        let bad = clean.is_empty()
            || clean.contains('\0')
            || clean
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..");
        if bad {
            return Err(CpioError::BadPath(path.to_owned()));
        }
        if self.entries.contains_key(clean) {
            return Err(CpioError::Duplicate(clean.to_owned()));
        }
        self.entries.insert(clean.to_owned(), (mode, body));
        Ok(())
    }

    /// A directory with permission bits `mode` (e.g. 0o755).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        self.insert(path, mode, Body::Dir)
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<(), CpioError> {
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge(path.to_owned()));
        }
        self.insert(path, mode, Body::File(data))
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.insert(path, 0o777, Body::Symlink(target.to_owned()))
    }

    /// A character device node (e.g. `dev/console`, 5:1: the kernel opens
    /// it for init's stdio before init runs).
    pub fn char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.insert(path, mode, Body::CharDevice(major, minor))
    }

    /// Adds every missing parent directory of `path` (mode 0755).
    pub fn parents(&mut self, path: &str) -> Result<(), CpioError> {
        let clean = path.trim_start_matches('/');
        let mut prefix = String::new();
        let parts: Vec<&str> = clean.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !self.entries.contains_key(&prefix) {
                self.dir(&prefix, 0o755)?;
            }
        }
        Ok(())
    }

    /// The archive bytes: entries in path order (parents before children),
    /// inode numbers from 1, owner 0:0, mtime 0, then the trailer.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, (path, (mode, body))) in self.entries.iter().enumerate() {
            let (kind, data, rdev): (u32, &[u8], (u32, u32)) = match body {
                Body::Dir => (0o040000, &[], (0, 0)),
                Body::File(data) => (0o100000, data, (0, 0)),
                Body::Symlink(target) => (0o120000, target.as_bytes(), (0, 0)),
                Body::CharDevice(major, minor) => (0o020000, &[], (*major, *minor)),
            };
            let links = if matches!(body, Body::Dir) { 2 } else { 1 };
            write_entry(
                &mut out,
                u32::try_from(n + 1).unwrap_or(u32::MAX),
                kind | (mode & 0o7777),
                links,
                rdev,
                path,
                data,
            );
        }
        write_entry(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
        // The kernel reads archives in 512-byte blocks; pad like cpio does.
        while out.len() % 512 != 0 {
            out.push(0);
        }
        out
    }
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn write_entry(
    out: &mut Vec<u8>,
    inode: u32,
    mode: u32,
    links: u32,
    (rdev_major, rdev_minor): (u32, u32),
    name: &str,
    data: &[u8],
) {
    let name_len = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
    // devminor, rdevmajor, rdevminor, namesize, check
    let header = format!(
        "070701{inode:08x}{mode:08x}{:08x}{:08x}{links:08x}{:08x}{size:08x}{:08x}{:08x}{rdev_major:08x}{rdev_minor:08x}{name_len:08x}{:08x}",
        0, 0, 0, 0, 0, 0
    );
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.file("init", 0o755, b"#!/bin/sh\necho hi\n".to_vec())
            .unwrap();
        a.dir("etc", 0o755).unwrap();
        a.dir("etc/spore", 0o755).unwrap();
        a.file(
            "etc/spore/spore.toml",
            0o644,
            b"hostname = \"n1\"\n".to_vec(),
        )
        .unwrap();
        a.dir("bin", 0o755).unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a
    }

    #[test]
    fn same_inputs_give_the_same_bytes_whatever_the_order() {
        let mut reversed = Archive::new();
        reversed.symlink("bin/sh", "busybox").unwrap();
        reversed.dir("bin", 0o755).unwrap();
        reversed
            .file(
                "etc/spore/spore.toml",
                0o644,
                b"hostname = \"n1\"\n".to_vec(),
            )
            .unwrap();
        reversed.dir("etc/spore", 0o755).unwrap();
        reversed.dir("etc", 0o755).unwrap();
        reversed
            .file("init", 0o755, b"#!/bin/sh\necho hi\n".to_vec())
            .unwrap();
        assert_eq!(sample().finish(), reversed.finish());
        assert_eq!(sample().finish().len() % 512, 0);
    }

    #[test]
    fn gnu_cpio_extracts_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("cpio")
            .args(["-i", "-d", "--quiet"])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &sample().finish()).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/spore/spore.toml")).unwrap(),
            "hostname = \"n1\"\n"
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("bin/sh"))
                .unwrap()
                .to_str(),
            Some("busybox")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.path().join("init"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
    }

    #[test]
    fn bad_paths_and_duplicates_are_refused() {
        let mut a = Archive::new();
        for path in ["", "../etc", "a/./b", "a//b", "x\0y"] {
            assert!(
                matches!(a.file(path, 0o644, Vec::new()), Err(CpioError::BadPath(_))),
                "{path:?}"
            );
        }
        a.dir("etc", 0o755).unwrap();
        assert_eq!(
            a.dir("/etc", 0o755),
            Err(CpioError::Duplicate("etc".into()))
        );
    }
}
