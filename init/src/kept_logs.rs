//! What services and spore said, kept across restarts: under
//! `STATE_DIR/logs`, `0/` holds this start of spore, `1/` the one before,
//! `2/` the one before that (older ones are removed at each start); in each,
//! a service's output in `NAME.log` (its older half in `NAME.log.1`, each
//! at most 1 MiB) and spore's own lines in `spore.log`. Only on a state
//! directory that survives a reboot: in RAM it would only cost memory.

use std::path::{Path, PathBuf};

use runtime::journal;

/// Starts of spore whose logs are kept, this one included.
pub const STARTS_KEPT: u32 = 3;

/// The directory of the start `ago` starts before this one (0: this one).
pub fn start_dir(root: &Path, ago: u32) -> PathBuf {
    root.join(ago.to_string())
}

/// Shifts the kept starts one back (the oldest goes) and makes this
/// start's directory (0700); None, said in the journal, when that fails.
pub fn begin(root: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let oldest = start_dir(root, STARTS_KEPT - 1);
    if oldest.exists() {
        if let Err(error) = std::fs::remove_dir_all(&oldest) {
            journal::note(format_args!(
                "kept logs: cannot remove {}: {error}",
                oldest.display()
            ));
        }
    }
    for ago in (0..STARTS_KEPT - 1).rev() {
        let from = start_dir(root, ago);
        if from.exists() {
            if let Err(error) = std::fs::rename(&from, start_dir(root, ago + 1)) {
                journal::note(format_args!(
                    "kept logs: cannot move {}: {error}",
                    from.display()
                ));
            }
        }
    }
    let now = start_dir(root, 0);
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&now)
    {
        Ok(()) => Some(now),
        Err(error) => {
            journal::note(format_args!(
                "kept logs: cannot make {}: {error}; output is kept in memory only",
                now.display()
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_shifts_the_kept_ones_back_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("logs");
        for start in 0..4 {
            let now = begin(&root).unwrap();
            std::fs::write(now.join("spore.log"), format!("start {start}\n")).unwrap();
        }
        let said = |ago| std::fs::read_to_string(start_dir(&root, ago).join("spore.log")).unwrap();
        assert_eq!(said(0), "start 3\n");
        assert_eq!(said(1), "start 2\n");
        assert_eq!(said(2), "start 1\n");
        assert!(!start_dir(&root, 3).exists());
    }
}
