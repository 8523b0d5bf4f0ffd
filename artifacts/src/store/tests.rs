use std::os::unix::fs::PermissionsExt;

use super::*;

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

fn store(quota: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("artifacts"), Some(quota)).unwrap();
    (dir, store)
}

fn chunk<'a>(data: &'a [u8], digest: Digest, offset: u64, len: usize) -> Upload<'a> {
    let start = offset as usize;
    Upload {
        digest,
        size: data.len() as u64,
        offset,
        data: &data[start..start + len],
        executable: false,
    }
}

#[test]
fn chunks_resume_where_they_stopped_and_become_visible_only_when_whole() {
    let (_dir, store) = store(1 << 30);
    let data = bytes(300_000);
    let digest = Digest::of_bytes(&data);
    assert_eq!(store.held(&digest, 300_000).unwrap(), Held::Nothing);
    assert_eq!(
        store.put(&chunk(&data, digest, 0, 100_000)).unwrap(),
        Held::Partial(100_000)
    );
    assert!(!store.path(&digest).exists());
    // A dropped connection: the next one asks, and resumes there.
    assert_eq!(
        store.held(&digest, 300_000).unwrap(),
        Held::Partial(100_000)
    );
    let again = store.put(&chunk(&data, digest, 0, 100_000)).unwrap_err();
    assert!(
        matches!(
            again,
            ArtifactError::Offset {
                offset: 0,
                held: 100_000
            }
        ),
        "{again}"
    );
    assert!(again.to_string().contains("resume at 100000"), "{again}");
    store.put(&chunk(&data, digest, 100_000, 150_000)).unwrap();
    assert_eq!(
        store.put(&chunk(&data, digest, 250_000, 50_000)).unwrap(),
        Held::Complete
    );
    let path = store.path(&digest);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert!(std::fs::read_dir(store.root().join("partial"))
        .unwrap()
        .next()
        .is_none());
    // Sent again: nothing changes, and it may be made executable.
    let mut whole = chunk(&data, digest, 0, 300_000);
    whole.executable = true;
    assert_eq!(store.put(&whole).unwrap(), Held::Complete);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o555
    );
    let entries = store.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].complete && entries[0].executable && entries[0].size == 300_000);
}

#[test]
fn a_flipped_byte_is_refused_and_nothing_is_left() {
    let (_dir, store) = store(1 << 30);
    let data = bytes(200_000);
    let digest = Digest::of_bytes(&data);
    let mut flipped = data.clone();
    flipped[123_456] ^= 0x01;
    store.put(&chunk(&flipped, digest, 0, 100_000)).unwrap();
    let error = store
        .put(&chunk(&flipped, digest, 100_000, 100_000))
        .unwrap_err();
    let ArtifactError::Mismatch { expected, got } = &error else {
        panic!("{error}");
    };
    assert_eq!(expected, &digest.hex());
    assert_eq!(got, &Digest::of_bytes(&flipped).hex());
    assert!(store.entries().unwrap().is_empty());
    assert!(!store.path(&digest).exists());
}

#[test]
fn an_upload_resumed_by_another_store_is_read_back_and_a_flipped_byte_still_refused() {
    // Hashed as written in one store; resumed in another (a restarted
    // node), which has not seen the first chunks and reads them back.
    for flip in [false, true] {
        let (dir, first) = store(1 << 30);
        let data = bytes(200_000);
        let digest = Digest::of_bytes(&data);
        let mut sent = data.clone();
        if flip {
            sent[1_000] ^= 0x80;
        }
        first.put(&chunk(&sent, digest, 0, 100_000)).unwrap();
        let second = Store::open(&dir.path().join("artifacts"), Some(1 << 30)).unwrap();
        let last = second.put(&chunk(&sent, digest, 100_000, 100_000));
        if flip {
            assert!(
                matches!(last, Err(ArtifactError::Mismatch { .. })),
                "{last:?}"
            );
            assert!(second.entries().unwrap().is_empty());
        } else {
            assert_eq!(last.unwrap(), Held::Complete);
            assert_eq!(std::fs::read(second.path(&digest)).unwrap(), data);
        }
    }
}

#[test]
fn the_quota_counts_uploads_under_way_and_refuses_with_nothing_written() {
    let (_dir, store) = store(250_000);
    let first = bytes(200_000);
    let first_digest = Digest::of_bytes(&first);
    store.put(&chunk(&first, first_digest, 0, 10)).unwrap();
    let second: Vec<u8> = bytes(100_000).iter().map(|b| b ^ 0xff).collect();
    let second_digest = Digest::of_bytes(&second);
    let error = store
        .put(&chunk(&second, second_digest, 0, 1_000))
        .unwrap_err();
    assert!(
        matches!(
            error,
            ArtifactError::Quota {
                size: 100_000,
                used: 200_000,
                quota: 250_000
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("[artifacts] max_bytes"),
        "{error}"
    );
    assert_eq!(store.held(&second_digest, 100_000).unwrap(), Held::Nothing);
    // Removing the upload under way frees its share.
    assert!(store.remove(&first_digest).unwrap());
    assert!(!store.remove(&first_digest).unwrap());
    store
        .put(&chunk(&second, second_digest, 0, 100_000))
        .unwrap();
    assert_eq!(store.used().unwrap(), 100_000);
}

#[test]
fn a_chunk_past_the_end_or_a_size_that_changed_is_refused() {
    let (_dir, store) = store(1 << 30);
    let data = bytes(1_000);
    let digest = Digest::of_bytes(&data);
    let mut long = chunk(&data, digest, 0, 1_000);
    long.size = 999;
    assert!(matches!(
        store.put(&long).unwrap_err(),
        ArtifactError::PastEnd {
            end: 1_000,
            size: 999
        }
    ));
    store.put(&chunk(&data, digest, 0, 1_000)).unwrap();
    assert!(matches!(
        store.held(&digest, 5).unwrap_err(),
        ArtifactError::OtherSize {
            held: 1_000,
            size: 5,
            ..
        }
    ));
}

#[test]
fn an_empty_artifact_is_whole_at_once() {
    let (_dir, store) = store(1 << 30);
    let digest = Digest::of_bytes(b"");
    let held = store
        .put(&Upload {
            digest,
            size: 0,
            offset: 0,
            data: b"",
            executable: false,
        })
        .unwrap();
    assert_eq!(held, Held::Complete);
    assert_eq!(std::fs::read(store.path(&digest)).unwrap(), b"");
}

#[test]
fn the_default_quota_is_half_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let size: u64 = text.lines().nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(store.quota(), size / 2);
}

#[test]
fn what_no_service_needs_is_collected_but_what_was_just_put_stays() {
    use std::collections::HashSet;
    use std::time::{Duration, SystemTime};
    let (_dir, store) = store(1 << 30);
    let (used, unused, fresh) = (bytes(1_000), bytes(2_000), bytes(3_000));
    for data in [&used, &unused, &fresh] {
        store
            .put(&chunk(data, Digest::of_bytes(data), 0, data.len()))
            .unwrap();
    }
    let half = bytes(5_000);
    store
        .put(&chunk(&half, Digest::of_bytes(&half), 0, 100))
        .unwrap();
    // Age all but `fresh` by two hours (their mtime).
    let old = SystemTime::now() - Duration::from_secs(7_200);
    for data in [&used, &unused] {
        let file = std::fs::File::open(store.path(&Digest::of_bytes(data))).unwrap();
        file.set_modified(old).unwrap();
    }
    let keep: HashSet<Digest> = [Digest::of_bytes(&used)].into();
    let hour_ago = SystemTime::now() - Duration::from_secs(3_600);
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    assert_eq!(store.collect(&keep, hour_ago, day_ago).unwrap(), (1, 2_000));
    let left: Vec<Digest> = store.entries().unwrap().iter().map(|e| e.digest).collect();
    assert!(left.contains(&Digest::of_bytes(&used)));
    assert!(left.contains(&Digest::of_bytes(&fresh)));
    assert!(left.contains(&Digest::of_bytes(&half)));
    assert!(!left.contains(&Digest::of_bytes(&unused)));
    // An upload nobody added to for a day goes too.
    let partial = store
        .root()
        .join("partial")
        .join(format!("{}-5000", Digest::of_bytes(&half)));
    std::fs::File::options()
        .write(true)
        .open(&partial)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 86_400))
        .unwrap();
    assert_eq!(store.collect(&keep, hour_ago, day_ago).unwrap(), (1, 100));
}
