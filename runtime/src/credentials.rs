//! Secrets handed to a service as files, by reference (systemd's
//! credentials are the model): at each start the secrets a service lists in
//! `[credentials] load` are copied from the store into a private directory
//! of its own (`ROOT/SERVICE`, 0500, each file 0400, owned by the user
//! services run as), named to it by `$CREDENTIALS_DIRECTORY`; the directory
//! is removed when the service stops. Nothing of the value goes into the
//! environment, where any process of the same user could read it from
//! /proc/PID/environ and every child inherits it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The variable that names the directory to the service.
pub const VARIABLE: &str = "CREDENTIALS_DIRECTORY";

/// Makes `root/service` afresh with each secret in `names` copied from
/// `store`; returns the directory. A missing secret is an error naming it
/// (the service does not start without what it asked for). With `owner`
/// (a service that runs as its own user) the directory and files are that
/// user's, so it alone reads them, and `root` and its parent are made
/// traversable (never listable) for it.
pub fn prepare(
    root: &Path,
    service: &str,
    store: &Path,
    names: &[String],
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, String> {
    let dir = root.join(service);
    remove(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| format!("{}: {e}", root.display()))?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for name in names {
        let value = crate::secret::read_regular(&store.join(name))
            .map_err(|e| format!("secret `{name}` is not set ({e})"))?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(dir.join(name))
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        file.write_all(value.as_slice())
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
    }
    if let Some((uid, gid)) = owner {
        for path in [root.parent(), Some(root)].into_iter().flatten() {
            traversable(path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        for name in names {
            let file = dir.join(name);
            std::os::unix::fs::lchown(&file, Some(uid), Some(gid))
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
        std::os::unix::fs::lchown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // Read-only from now on: the service reads, nobody writes.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Lets other users pass through `dir` (the x bits), without reading it.
pub(crate) fn traversable(dir: &Path) -> std::io::Result<()> {
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o011 != 0o011 {
        fs::set_permissions(dir, fs::Permissions::from_mode((mode | 0o011) & 0o7777))?;
    }
    Ok(())
}

/// Rewrites `dir/name` with `value`, a secret's new value (a running
/// service told by its reload signal reads it again). The file is replaced
/// whole: written beside, then renamed over. Called off the event loop,
/// with the store's write (`Work::Credentials`).
pub fn refresh(dir: &Path, name: &str, value: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", dir.join(name).display());
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(fail)?;
    let temp = dir.join(format!(".{name}.new"));
    let written = (|| {
        let _ = fs::remove_file(&temp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&temp)?;
        file.write_all(value)?;
        fs::rename(&temp, dir.join(name))
    })();
    let sealed = fs::set_permissions(dir, fs::Permissions::from_mode(0o500));
    written.map_err(fail)?;
    sealed.map_err(fail)
}

/// Removes a service's credential directory and what is in it; a missing
/// one is done already.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
        Ok(_) => {
            // 0500 forbids unlinking its files: open it up first.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            fs::remove_dir_all(dir)
        }
    }
}

/// Removes every service's credential directory under `root`: at start no
/// service runs, so any left there are copies of secrets a crash (spore
/// SIGKILLed, power lost with `root` on a disk) left behind. Returns how
/// many went; entries that are not directories are removed too.
pub fn sweep(root: &Path) -> std::io::Result<usize> {
    let entries = match fs::read_dir(root) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        other => other?,
    };
    let mut swept = 0;
    for entry in entries {
        let path = entry?.path();
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => remove(&path)?,
            Ok(_) => fs::remove_file(&path)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        }
        swept += 1;
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_gets_its_secrets_as_private_read_only_files_and_they_go_again() {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("secrets");
        fs::create_dir_all(&store).unwrap();
        fs::write(store.join("db-password"), "hunter2").unwrap();
        let creds = root.path().join("credentials");
        let dir = prepare(&creds, "web", &store, &["db-password".into()], None).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("db-password")).unwrap(),
            "hunter2"
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o500);
        assert_eq!(mode(&dir.join("db-password")), 0o400);
        // Made afresh at the next start, with the value of now.
        fs::write(store.join("db-password"), "changed").unwrap();
        let again = prepare(&creds, "web", &store, &["db-password".into()], None).unwrap();
        assert_eq!(
            fs::read_to_string(again.join("db-password")).unwrap(),
            "changed"
        );
        refresh(&again, "db-password", b"rotated").unwrap();
        assert_eq!(
            fs::read_to_string(again.join("db-password")).unwrap(),
            "rotated"
        );
        assert_eq!(mode(&again), 0o500);
        assert_eq!(mode(&again.join("db-password")), 0o400);
        remove(&again).unwrap();
        assert!(!again.exists());
        let missing = prepare(&creds, "web", &store, &["nope".into()], None).unwrap_err();
        assert!(missing.contains("secret `nope` is not set"), "{missing}");
    }

    #[test]
    fn only_regular_files_are_read_as_secrets() {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("secrets");
        fs::create_dir_all(&store).unwrap();
        let fifo = std::ffi::CString::new(store.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/etc/passwd", store.join("link")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", store.join("device")).unwrap();
        fs::create_dir(store.join("dir")).unwrap();
        fs::write(store.join("huge"), vec![b'x'; 2 << 20]).unwrap();
        let creds = root.path().join("credentials");
        for (name, why) in [
            ("fifo", "a FIFO"),
            ("link", "a symbolic link"),
            ("device", "a symbolic link"),
            ("dir", "a directory"),
            ("huge", "more than the"),
        ] {
            let error = prepare(&creds, "web", &store, &[name.into()], None).unwrap_err();
            assert!(error.contains(why), "{name}: {error}");
        }
    }

    #[test]
    fn credential_directories_left_by_a_crash_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("secrets");
        fs::create_dir_all(&store).unwrap();
        fs::write(store.join("token"), "t").unwrap();
        let creds = root.path().join("credentials");
        prepare(&creds, "a", &store, &["token".into()], None).unwrap();
        prepare(&creds, "b", &store, &["token".into()], None).unwrap();
        assert_eq!(sweep(&creds).unwrap(), 2);
        assert_eq!(fs::read_dir(&creds).unwrap().count(), 0);
        assert_eq!(sweep(&root.path().join("absent")).unwrap(), 0);
    }
}
