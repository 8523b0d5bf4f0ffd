//! The node README's install section shows, `examples/node/`, built as it
//! is written and booted as a real machine: its disk image attached as a
//! USB stick to a guest with UEFI firmware (OVMF). Only what is each
//! operator's own is put in: their key in authorized_keys, their fleet's
//! enrollment key, their beacon's port, and the pin of the mycelium they
//! publish to the beacon. The node fetches mycelium from the beacon (it is
//! not in the image), mounts its state partition by label, makes its key
//! there, registers, answers sporectl,
//! runs a program its image never had after one `sporectl deploy
//! --artifact`, and another it fetches from the beacon's artifact cache
//! (published there once with `sporectl artifact publish`), and after a
//! reboot comes back with the same key and runs both programs again from
//! its state disk, with nothing sent or fetched.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::{Duration, Instant};

use qemu_tests::beacon::Beacon;
use qemu_tests::vm::{BootOptions, Vm};
use qemu_tests::{artifacts, free_port, Enrollment, Operator};

/// `sha256sum`'s digest of `path`.
fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// The beacon address examples/node/spore.toml calls home to (the QEMU
/// host's port 8080); the test's beacon listens on a free port instead.
const EXAMPLE_BEACON: &str = "url = \"http://10.0.2.2:8080\"";

#[test]
fn the_example_node_builds_as_written_boots_under_uefi_and_keeps_its_key() {
    let artifacts = artifacts().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node");
    let mut manifest = initramfs::Manifest::load(&example.join("image.toml")).unwrap();
    // The example's inputs are the ones scripts/test builds.
    let same = |a: &Path, b: &Path| a.canonicalize().unwrap() == b.canonicalize().unwrap();
    assert!(same(&manifest.spore, &artifacts.spore));
    assert!(same(
        &manifest.kernel.as_ref().unwrap().tree,
        &artifacts.kernel_tree
    ));
    // What each operator puts in.
    let operator = Operator::new(dir.path(), &artifacts.sporectl).unwrap();
    let enrollment = Enrollment::new(dir.path()).unwrap();
    let port = free_port();
    let operator_keys = operator.public();
    let cache = dir.path().join("beacon-artifacts");
    let beacon = Beacon::start(
        &artifacts.sporectl,
        port,
        &dir.path().join("beacon-data"),
        &dir.path().join("beacon.log"),
        &enrollment.ca_public,
        None,
        &[
            "--authorized-keys".as_ref(),
            operator_keys.as_os_str(),
            "--artifacts".as_ref(),
            cache.as_os_str(),
        ],
    )
    .unwrap();
    let config = std::fs::read_to_string(example.join("spore.toml")).unwrap();
    assert!(config.contains(EXAMPLE_BEACON), "{config}");
    let config_file = dir.path().join("spore.toml");
    std::fs::write(
        &config_file,
        config.replace(EXAMPLE_BEACON, &format!("url = \"http://10.0.2.2:{port}\"")),
    )
    .unwrap();
    manifest.config = Some(config_file);
    // mycelium is pinned, not baked in: the pin of the stand-in, which is
    // published to the beacon for the node to fetch at first boot.
    let mycelium_file = example.join("services/mycelium.toml");
    let mycelium = std::fs::read_to_string(&mycelium_file).unwrap();
    let placeholder = format!("sha256 = \"{}\"", "0".repeat(64));
    assert!(mycelium.contains(&placeholder), "{mycelium}");
    let standin_pin = sha256sum(&artifacts.mycelium);
    let pinned = dir.path().join("mycelium.toml");
    std::fs::write(
        &pinned,
        mycelium.replace(&placeholder, &format!("sha256 = \"{standin_pin}\"")),
    )
    .unwrap();
    for service in manifest.services.iter_mut() {
        if same(service, &mycelium_file) {
            *service = pinned.clone();
        }
    }
    assert!(manifest
        .binaries
        .iter()
        .all(|b| !b.path.ends_with("mycelium")));
    let out = operator.sporectl(&[
        "--beacon",
        &beacon.url(),
        "artifact",
        "publish",
        artifacts.mycelium.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    manifest.authorized_keys = Some(operator.public());
    manifest.enrollment_key = Some(enrollment.image_key.clone());
    // What `spore-mkinitramfs image.toml --disk node.img` does.
    let image = initramfs::build(&manifest).unwrap_or_else(|e| panic!("{e}"));
    let uki = initramfs::install::uki(&manifest, &image.bytes).unwrap();
    let disk = initramfs::install::disk_image(&manifest, &uki, &[]).unwrap();
    let stick = dir.path().join("node.img");
    std::fs::write(&stick, disk).unwrap();

    let mut vm = Vm::boot(
        artifacts,
        &BootOptions {
            initrd: stick.clone(),
            usb_image: Some(stick),
            netboot: None,
            rpc_port: free_port(),
            segment_port: None,
            index: 1,
            console: dir.path().join("console.log"),
            kernel_args: String::new(),
            disk: None,
            allow_reboot: true,
            rtc_base: None,
            memory_mb: None,
        },
    )
    .unwrap();
    // Named by its key: the one node the beacon lists.
    let started = Instant::now();
    let record = loop {
        if let Some(record) = beacon.nodes().ok().and_then(|n| n.into_iter().next()) {
            break record;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{}",
            vm.failure("no registration within 300 s")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let hostname = record["registration"]["hostname"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = record["registration"]["hero_proc_auth_pubkey"]
        .as_str()
        .unwrap()
        .to_owned();
    let console = vm.console_text();
    for mark in [
        "spore: mounted LABEL=spore-state (ext4) on /var/lib",
        &format!("artifact mycelium: fetched from http://10.0.2.2:{port}/api/v1/artifacts/{standin_pin} and verified"),
        "spore: generated node key /var/lib/spore/node_key",
        "spore: console: writing to ",
    ] {
        assert!(
            console.contains(mark),
            "`{mark}` not on the console:\n{console}"
        );
    }
    let out = operator.on_node(vm.rpc_port, &key, &["--json", "info"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["deploys"]["persistent"], true, "{info}");
    assert_eq!(info["hostname"], hostname.as_str(), "{info}");

    // A program the image never had, sent with the service file that pins
    // it: one deploy, and it runs.
    let program = dir.path().join("greeter");
    std::fs::write(
        &program,
        "#!/bin/sh\necho \"greeter runs as $0\"\nexec /bin/busybox sleep 1000000\n",
    )
    .unwrap();
    let digest = {
        let out = std::process::Command::new("sha256sum")
            .arg(&program)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_owned()
    };
    let service = dir.path().join("greeter.toml");
    std::fs::write(
        &service,
        format!("[service]\nname = \"greeter\"\nexec = \"$ARTIFACTS_DIRECTORY/greeter\"\n\n[[artifacts]]\nname = \"greeter\"\nsha256 = \"{digest}\"\nmode = \"0755\"\n"),
    )
    .unwrap();
    let out = operator.on_node(
        vm.rpc_port,
        &key,
        &[
            "deploy",
            service.to_str().unwrap(),
            "--artifact",
            &format!("greeter={}", program.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("greeter: ready"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    vm.wait_for_nth(
        "greeter runs as /run/spore/service-artifacts/greeter/greeter",
        1,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // Another program the image never had, published once to the beacon
    // and fetched from there by the node (url = "beacon").
    let tool = dir.path().join("fetched");
    std::fs::write(
        &tool,
        "#!/bin/sh\necho \"fetched from the beacon, runs as $0\"\nexec /bin/busybox sleep 1000000\n",
    )
    .unwrap();
    let tool_digest = {
        let out = std::process::Command::new("sha256sum")
            .arg(&tool)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_owned()
    };
    let out = operator.sporectl(&[
        "--beacon",
        &beacon.url(),
        "artifact",
        "publish",
        tool.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fetched = dir.path().join("fetched.toml");
    std::fs::write(
        &fetched,
        format!("[service]\nname = \"fetched\"\nexec = \"$ARTIFACTS_DIRECTORY/fetched\"\n\n[[artifacts]]\nname = \"fetched\"\nsha256 = \"{tool_digest}\"\nurl = \"beacon\"\nmode = \"0755\"\n"),
    )
    .unwrap();
    let out = operator.on_node(vm.rpc_port, &key, &["deploy", fetched.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    vm.wait_for_nth(
        "fetched from the beacon, runs as /run/spore/service-artifacts/fetched/fetched",
        1,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        vm.console_text().contains(&format!(
            "artifact fetched: fetched from http://10.0.2.2:{port}/api/v1/artifacts/{tool_digest} and verified"
        )),
        "{}",
        vm.console_text()
    );

    // Rebooted, it comes back through the firmware with the same key.
    let first = record["registration"]["timestamp"].as_u64().unwrap();
    let out = operator.on_node(vm.rpc_port, &key, &["reboot"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    vm.wait_for_nth("starting (pid 1, ", 2, Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_nth("spore: call-home: succeeded", 2, Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}"));
    let again = beacon
        .registered_after(&hostname, first)
        .unwrap_or_else(|| panic!("{}", vm.failure("no second registration")));
    assert_eq!(again["registration"]["hero_proc_auth_pubkey"], key.as_str());
    assert!(
        vm.console_text().contains("spore: node key SHA256:"),
        "the key was read again"
    );
    // And the programs run again from the state disk, with nothing sent
    // or fetched.
    vm.wait_for_nth(
        "greeter runs as /run/spore/service-artifacts/greeter/greeter",
        2,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_nth(
        "fetched from the beacon, runs as /run/spore/service-artifacts/fetched/fetched",
        2,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = operator.on_node(vm.rpc_port, &key, &["artifact", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&format!("sha256:{digest}")) && listed.contains("verified, executable"),
        "{listed}"
    );
    let console = vm.console_text();
    assert!(!console.contains("artifact greeter: fetching"), "{console}");
    assert_eq!(
        console.matches("artifact mycelium: fetching").count(),
        1,
        "mycelium fetched at first boot only: {console}"
    );
    assert_eq!(
        console.matches("artifact fetched: fetching").count(),
        1,
        "fetched once, before the reboot: {console}"
    );
    assert!(
        !console.contains("waiting for artifact greeter"),
        "{console}"
    );
}
