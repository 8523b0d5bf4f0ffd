//! A disk that does not answer must not stall PID 1: deploy, remove and
//! secret.set write and fsync off the event loop. The deployed layer
//! (`STATE_DIR/services`) is an ext4 filesystem on a loop device, frozen
//! with fsfreeze(8) (every write to it blocks until it thaws), while spore
//! must keep answering and supervising. Needs root (mount, fsfreeze), as spore itself does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

/// An ext4 filesystem mounted at `mount`; thawed and unmounted on drop, so
/// a failing test never leaves a frozen filesystem behind.
struct FrozenDisk {
    mount: PathBuf,
    frozen: bool,
}

impl FrozenDisk {
    fn mount(image: &Path, mount: &Path) -> FrozenDisk {
        let run = |program: &str, args: &[&std::ffi::OsStr]| {
            let output = Command::new(program).args(args).output().unwrap();
            assert!(
                output.status.success(),
                "{program} {args:?}: {} (this test needs root and loop devices)",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let file = std::fs::File::create(image).unwrap();
        file.set_len(64 << 20).unwrap();
        run("mkfs.ext4", &["-q".as_ref(), image.as_os_str()]);
        std::fs::create_dir_all(mount).unwrap();
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                mount.as_os_str(),
            ],
        );
        FrozenDisk {
            mount: mount.to_owned(),
            frozen: false,
        }
    }

    fn freeze(&mut self, frozen: bool) {
        let flag = if frozen { "-f" } else { "-u" };
        let status = Command::new("fsfreeze")
            .arg(flag)
            .arg(&self.mount)
            .status()
            .unwrap();
        assert!(status.success(), "fsfreeze {flag}");
        self.frozen = frozen;
    }
}

impl Drop for FrozenDisk {
    fn drop(&mut self) {
        if self.frozen {
            let _ = Command::new("fsfreeze").arg("-u").arg(&self.mount).status();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn call(socket: &Path, method: &str, params: Value, limit: Duration) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(limit)).unwrap();
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("no answer within {limit:?}: {e}"))?;
    serde_json::from_str(&line).map_err(|e| e.to_string())
}

#[test]
fn deploy_to_a_frozen_disk_does_not_stall_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    // The deployed layer (where deploys are written) is the disk that
    // freezes; the image's services are elsewhere.
    let layer = dir.path().join("state/services");
    let disk = FrozenDisk::mount(&dir.path().join("disk.img"), &layer);
    std::fs::create_dir_all(etc.join("services")).unwrap();
    std::fs::write(
        etc.join("services/worker.toml"),
        "[service]\nname = \"worker\"\nexec = \"sleep 0.2\"\n[lifecycle]\nrestart = \"always\"\nrestart_delay_ms = 50\n",
    )
    .unwrap();
    let spore = common::Spore::start_in(dir);
    // Declared after spore, so it is thawed and unmounted before spore's
    // temporary directory is removed.
    let mut disk = disk;
    spore.wait_state("worker", "ready");
    disk.freeze(true);
    // The deploy's write blocks on the frozen disk, on a thread of its own.
    let socket = spore.socket.clone();
    let deploy = std::thread::spawn(move || {
        call(
            &socket,
            "service.deploy",
            json!({ "toml": "[service]\nname = \"web\"\nexec = \"sleep 1000\"\n" }),
            Duration::from_secs(60),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !deploy.is_finished(),
        "the deploy finished on a frozen disk"
    );
    // Meanwhile the node answers and keeps supervising: the worker exits
    // every 200 ms and is reaped and restarted.
    let restarts = |s: &common::Spore| {
        s.call("service.status", json!({ "name": "worker" }))
            .unwrap()["pid"]
            .as_i64()
            .unwrap_or(0)
    };
    let first = restarts(&spore);
    for attempt in 0..5 {
        let answer = call(
            &spore.socket,
            "service.list",
            json!({}),
            Duration::from_secs(1),
        )
        .unwrap_or_else(|e| panic!("status {attempt} while the disk is frozen: {e}"));
        assert!(answer["result"].is_array(), "{answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
    spore.wait_for("the worker to be restarted", Duration::from_secs(5), |s| {
        restarts(s) != first
    });
    assert!(
        call(
            &spore.socket,
            "service.status",
            json!({ "name": "web" }),
            Duration::from_secs(1)
        )
        .unwrap()
        .get("error")
        .is_some(),
        "web is not deployed before its file is on disk"
    );
    disk.freeze(false);
    let answer = deploy.join().unwrap().unwrap();
    assert!(answer.get("result").is_some(), "{answer}");
    assert!(layer.join("web.toml").exists());
    spore.wait_state("web", "ready");
}
