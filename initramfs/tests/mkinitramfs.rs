//! `spore-mkinitramfs` on real files: reproducible output, what lands in
//! the archive (read back by GNU cpio), and refusals that write nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn mkinitramfs(manifest: &Path, output: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spore-mkinitramfs"))
        .arg(manifest)
        .arg("-o")
        .arg(output)
        .output()
        .unwrap()
}

/// A manifest with a "spore" (static busybox stands in for the binary), a
/// node config, two valid services, keys and a module tree.
fn inputs(dir: &Path, compression: &str, extra: &str) -> PathBuf {
    let modules = dir.join("kernel/lib/modules/6.1.0-test/kernel/drivers/net");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::write(
        modules.join("virtio_net.ko"),
        b"\x7fELF..\0depends=failover\0",
    )
    .unwrap();
    std::fs::write(modules.join("failover.ko"), b"\x7fELF..\0depends=\0").unwrap();
    std::fs::write(modules.join("tun.ko"), b"\x7fELF..\0depends=\0").unwrap();
    std::fs::create_dir_all(dir.join("services")).unwrap();
    std::fs::write(
        dir.join("services/mycelium.toml"),
        "[service]\nname = \"mycelium\"\nexec = \"/usr/local/bin/mycelium --no-tun\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("services/call-home.toml"),
        "[service]\nname = \"call-home\"\nexec = \"spore call-home\"\noneshot = true\n[dependencies]\nrequires = [\"mycelium\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("spore.toml"), "hostname = \"n1\"\n").unwrap();
    std::fs::write(dir.join("authorized_keys"), "ssh-ed25519 AAAA op\n").unwrap();
    let manifest = dir.join("image.toml");
    std::fs::write(
        &manifest,
        format!(
            "spore = \"/bin/busybox\"\nconfig = \"spore.toml\"\nservices = [\"services/mycelium.toml\", \"services/call-home.toml\"]\nauthorized_keys = \"authorized_keys\"\ncompression = \"{compression}\"\n\n[kernel]\ntree = \"kernel\"\nmodules = [\"tun\", \"virtio-net\"]\n\n[[binaries]]\nsource = \"/bin/busybox\"\npath = \"/bin/busybox\"\nlinks = [\"/bin/sh\", \"/sbin/udhcpc\"]\n{extra}"
        ),
    )
    .unwrap();
    manifest
}

/// Unpacks `archive` into a new `root` folder under `dir`.
fn unpack(archive: &[u8], dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    extract(archive, &root);
    root
}

fn extract(archive: &[u8], into: &Path) {
    let mut child = Command::new("cpio")
        .args(["-i", "-d", "--quiet"])
        .current_dir(into)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), archive).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_same_inputs_give_a_byte_identical_image() {
    let dir = tempfile::tempdir().unwrap();
    for compression in ["gzip", "zstd", "none"] {
        let manifest = inputs(dir.path(), compression, "");
        let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
        assert!(mkinitramfs(&manifest, &a).status.success());
        // Touch every input: times must not reach the image.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let text = std::fs::read(dir.path().join("spore.toml")).unwrap();
        std::fs::write(dir.path().join("spore.toml"), text).unwrap();
        assert!(mkinitramfs(&manifest, &b).status.success());
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{compression} images differ"
        );
    }
}

#[test]
fn the_image_holds_init_config_services_modules_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "zstd", "");
    let image = dir.path().join("initrd.zst");
    let output = mkinitramfs(&manifest, &image);
    assert!(output.status.success(), "{output:?}");
    let mut cpio = Vec::new();
    ruzstd::decoding::StreamingDecoder::new(std::fs::File::open(&image).unwrap())
        .unwrap()
        .read_to_end(&mut cpio)
        .unwrap();
    let root = unpack(&cpio, dir.path());
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    assert_eq!(
        std::fs::read(root.join("init")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/spore")).unwrap(),
        Path::new("/init")
    );
    assert!(root.join("etc/spore/services/call-home.toml").is_file());
    assert!(root.join("etc/spore/authorized_keys").is_file());
    // Modules: dependencies first, listed for spore in load order.
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("etc/spore/spore.toml")).unwrap())
            .unwrap();
    let modules: Vec<&str> = config["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(
        modules,
        [
            "kernel/drivers/net/tun.ko",
            "kernel/drivers/net/failover.ko",
            "kernel/drivers/net/virtio_net.ko"
        ]
    );
    assert_eq!(config["hostname"].as_str(), Some("n1"));
    assert!(root
        .join("lib/modules/6.1.0-test/kernel/drivers/net/failover.ko")
        .is_file());
    let state = std::fs::metadata(root.join("var/lib/spore")).unwrap();
    assert_eq!(state.permissions().mode() & 0o777, 0o700);
    // GNU cpio as non-root may not create device nodes; the listing shows it.
    let listing = Command::new("cpio")
        .args(["-t", "-v", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), &cpio)?;
            child.wait_with_output()
        })
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("crw-------") && l.ends_with("dev/console")),
        "{listing}"
    );
    let _ = std::fs::metadata(root.join("dev/console")).map(|m| m.file_type().is_char_device());
}

#[test]
fn xz_modules_are_carried_decompressed_and_built_in_ones_are_noted() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "gzip", "");
    let release = dir.path().join("kernel/lib/modules/6.1.0-test");
    // As the kernel's modules_install compresses them (CONFIG_MODULE_COMPRESS_XZ).
    let tun = release.join("kernel/drivers/net/tun.ko");
    let plain = std::fs::read(&tun).unwrap();
    let xz = Command::new("xz")
        .args(["--check=crc32", "--lzma2=dict=1MiB", "-f"])
        .arg(&tun)
        .status()
        .unwrap();
    assert!(xz.success() && release.join("kernel/drivers/net/tun.ko.xz").is_file());
    std::fs::write(release.join("modules.builtin"), "kernel/net/unix/unix.ko\n").unwrap();
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("modules = [\"tun\"", "modules = [\"unix\", \"tun\"");
    std::fs::write(&manifest, text).unwrap();

    let image = dir.path().join("initrd.gz");
    let output = mkinitramfs(&manifest, &image);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: module `unix` is built into kernel 6.1.0-test"),
        "{stderr}"
    );
    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&image).unwrap())
        .read_to_end(&mut cpio)
        .unwrap();
    let root = unpack(&cpio, dir.path());
    assert_eq!(
        std::fs::read(root.join("lib/modules/6.1.0-test/kernel/drivers/net/tun.ko")).unwrap(),
        plain,
        "Debian 6.1 has no CONFIG_MODULE_DECOMPRESS: the image holds the plain module"
    );
    let config = std::fs::read_to_string(root.join("etc/spore/spore.toml")).unwrap();
    assert!(config.contains("\"kernel/drivers/net/tun.ko\""), "{config}");
    assert!(!config.contains("unix"), "{config}");
}

#[test]
fn a_bare_output_name_is_written_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "none", "");
    let output = Command::new(env!("CARGO_BIN_EXE_spore-mkinitramfs"))
        .arg(&manifest)
        .args(["-o", "initrd.img"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let image = std::fs::read(dir.path().join("initrd.img")).unwrap();
    assert!(image.starts_with(b"070701"), "a newc archive");
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn dynamic_binaries_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(
        dir.path(),
        "gzip",
        "\n[[binaries]]\nsource = \"/bin/ls\"\npath = \"/bin/ls\"\n",
    );
    let image = dir.path().join("initrd.gz");
    let output = mkinitramfs(&manifest, &image);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/bin/ls is dynamically linked"), "{stderr}");
    assert!(!image.exists(), "nothing is written on error");
    let allowed = Command::new(env!("CARGO_BIN_EXE_spore-mkinitramfs"))
        .arg(&manifest)
        .args(["--allow-dynamic", "-o"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(allowed.status.success());
    assert!(
        String::from_utf8_lossy(&allowed.stderr).contains("warning: /bin/ls is dynamically linked")
    );
}

#[test]
fn an_invalid_service_file_refuses_the_image_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "gzip", "");
    std::fs::write(
        dir.path().join("services/call-home.toml"),
        "[service]\nname = \"call-home\"\nexec = \"spore call-home\"\n[dependencies]\nrequire = [\"mycelium\"]\n",
    )
    .unwrap();
    let image = dir.path().join("initrd.gz");
    let output = mkinitramfs(&manifest, &image);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("call-home.toml:5:1") && stderr.contains("did you mean `requires`"),
        "{stderr}"
    );
    assert!(!image.exists());
}

#[test]
fn missing_inputs_and_missing_dependencies_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "gzip", "");
    std::fs::remove_file(dir.path().join("authorized_keys")).unwrap();
    let image = dir.path().join("initrd.gz");
    let output = mkinitramfs(&manifest, &image);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("authorized_keys") && stderr.contains("No such file"),
        "{stderr}"
    );

    // call-home requires mycelium, which the manifest no longer lists.
    let manifest = inputs(dir.path(), "gzip", "");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"services/mycelium.toml\", ", "");
    std::fs::write(&manifest, text).unwrap();
    let output = mkinitramfs(&manifest, &image);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("mycelium"), "{stderr}");
    assert!(!image.exists());
}

/// An image key and a host certificate for it, made by the real
/// ssh-keygen: `dir/name` and `dir/name-cert.pub`, signed by `dir/ca`.
fn image_credential(dir: &Path, name: &str, host: bool) -> PathBuf {
    let keygen = |path: &Path| {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    };
    let ca = dir.join("ca");
    if !ca.exists() {
        keygen(&ca);
    }
    let key = dir.join(name);
    keygen(&key);
    let mut sign = Command::new("ssh-keygen");
    sign.args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", name, "-V", "-5m:+1d"]);
    if host {
        sign.arg("-h");
    }
    assert!(sign
        .arg(key.with_extension("pub"))
        .status()
        .unwrap()
        .success());
    key
}

/// The manifest of [`inputs`] with `enrollment_key` set to `key`.
fn with_enrollment(manifest: &Path, key: &Path) {
    let text = std::fs::read_to_string(manifest).unwrap();
    std::fs::write(
        manifest,
        format!("enrollment_key = \"{}\"\n{text}", key.display()),
    )
    .unwrap();
}

#[test]
fn an_enrollment_credential_lands_0600_and_a_bad_one_refuses_the_image() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "none", "");
    let good = image_credential(dir.path(), "image", true);
    with_enrollment(&manifest, &good);
    let image = dir.path().join("image.cpio");
    let out = mkinitramfs(&manifest, &image);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = unpack(&std::fs::read(&image).unwrap(), dir.path());
    let key = root.join("etc/spore/enrollment_key");
    assert_eq!(std::fs::read(&key).unwrap(), std::fs::read(&good).unwrap());
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(root.join("etc/spore/enrollment_key-cert.pub").exists());

    let refused = |key: &Path, needle: &str| {
        let manifest = inputs(dir.path(), "none", "");
        with_enrollment(&manifest, key);
        let image = dir.path().join("refused.cpio");
        let out = mkinitramfs(&manifest, &image);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{needle}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!image.exists(), "nothing is written on error");
    };
    // A user certificate, not a host one.
    refused(
        &image_credential(dir.path(), "user", false),
        "host certificate",
    );
    // A certificate for another key.
    let other = image_credential(dir.path(), "other", true);
    std::fs::copy(
        dir.path().join("other-cert.pub"),
        dir.path().join("image-cert.pub"),
    )
    .unwrap();
    refused(&good, "another key");
    let _ = other;
    // A key others may read.
    let loose = image_credential(dir.path(), "loose", true);
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(&loose, "0600");
    // A certificate that never expires (ssh-keygen without -V).
    let forever = image_credential(dir.path(), "forever", true);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(dir.path().join("ca"))
        .args(["-h", "-I", "forever"])
        .arg(forever.with_extension("pub"))
        .status()
        .unwrap();
    assert!(status.success());
    refused(&forever, "never expires");
    // No certificate beside the key.
    let bare = image_credential(dir.path(), "bare", true);
    std::fs::remove_file(dir.path().join("bare-cert.pub")).unwrap();
    refused(&bare, "bare-cert.pub");
}

/// `[disk]` for the real Debian EFI stub and kernel of `scripts/setup`.
fn with_disk(manifest: &Path, extra: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let vmlinuz = std::fs::read_dir(root.join("target/kernel"))
        .expect("scripts/kernel unpacks the Debian kernel under target/kernel")
        .flatten()
        .flat_map(|tree| {
            std::fs::read_dir(tree.path().join("boot"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .expect("a vmlinuz");
    let mut text = std::fs::read_to_string(manifest).unwrap();
    text.push_str(&format!(
        "\n[disk]\nkernel = \"{}\"\ncmdline = \"console=ttyS0 quiet\"\nesp_mib = 48\nstate_mib = 16\n{extra}",
        vmlinuz.display()
    ));
    std::fs::write(manifest, text).unwrap();
}

/// What sfdisk says on stderr about the image's table (empty when valid).
fn table_stderr(dir: &Path) -> Vec<u8> {
    Command::new("sfdisk")
        .arg("--verify")
        .arg(dir.join("node.img"))
        .output()
        .unwrap()
        .stderr
}

fn install_media(manifest: &Path, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spore-mkinitramfs"))
        .arg(manifest)
        .arg("--uki")
        .arg(dir.join("node.efi"))
        .arg("--disk")
        .arg(dir.join("node.img"))
        .arg("--netboot")
        .arg(dir.join("tftp"))
        .output()
        .unwrap()
}

#[test]
fn install_media_are_reproducible_and_objdump_reads_the_uki() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "gzip", "");
    with_disk(
        &manifest,
        "\n[netboot.hosts]\n\"52:54:00:12:34:01\" = \"node1\"\n",
    );
    let (first, second) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&first, &second] {
        std::fs::create_dir_all(out).unwrap();
        let run = install_media(&manifest, out);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    for file in [
        "node.efi",
        "node.img",
        "tftp/boot.ipxe",
        "tftp/mac-52-54-00-12-34-01.ipxe",
        "tftp/spore.efi",
        "tftp/vmlinuz",
        "tftp/initrd.img",
    ] {
        assert!(
            std::fs::read(first.join(file)).unwrap() == std::fs::read(second.join(file)).unwrap(),
            "{file} is byte-identical across builds"
        );
    }
    // binutils reads the UKI as a PE with the stub's sections and ours.
    let headers = Command::new("objdump")
        .arg("-h")
        .arg(first.join("node.efi"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&headers.stdout);
    for section in [".sdmagic", ".osrel", ".cmdline", ".initrd", ".linux"] {
        assert!(headers.contains(section), "{section}: {headers}");
    }
    // The disk's partitions as util-linux sees them.
    let table = Command::new("sfdisk")
        .arg("--json")
        .arg(first.join("node.img"))
        .output()
        .expect("sfdisk (scripts/setup installs fdisk)");
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let table: serde_json::Value = serde_json::from_slice(&table.stdout).unwrap();
    assert_eq!(table["partitiontable"]["label"], "gpt");
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(parts[0]["start"], 2048);
    assert_eq!(parts[1]["name"], "spore-state");
    // sfdisk checks both headers and their CRCs, and warns on a mismatch.
    assert!(
        String::from_utf8_lossy(&table_stderr(&first))
            .trim()
            .is_empty(),
        "{}",
        String::from_utf8_lossy(&table_stderr(&first))
    );
    let probe = Command::new("blkid")
        .args(["-p", "-O"])
        .arg(((2048 + 48 * 2048) * 512).to_string())
        .arg(first.join("node.img"))
        .output()
        .unwrap();
    let probe = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.contains("LABEL=\"spore-state\"") && probe.contains("TYPE=\"ext4\""),
        "{probe}"
    );
}

#[test]
fn bad_install_inputs_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "gzip", "");
    // No [disk] table.
    let out = install_media(&manifest, dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [disk] table"));
    // A kernel that has no EFI stub.
    std::fs::write(dir.path().join("bzImage"), b"not a PE kernel").unwrap();
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[disk]\nkernel = \"bzImage\"\n");
    std::fs::write(&manifest, &text).unwrap();
    let out = install_media(&manifest, dir.path());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an EFI-stub kernel"),
        "{out:?}"
    );
    // An ESP too small for its contents.
    let manifest = inputs(dir.path(), "gzip", "");
    with_disk(&manifest, "");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("esp_mib = 48", "esp_mib = 8");
    std::fs::write(&manifest, text).unwrap();
    let out = install_media(&manifest, dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("esp_mib"),
        "{out:?}"
    );
    // A stub that is not systemd's (the kernel's own EFI stub).
    let manifest = inputs(dir.path(), "gzip", "");
    with_disk(&manifest, "");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let kernel = text
        .lines()
        .find(|l| l.starts_with("kernel = "))
        .unwrap()
        .trim_start_matches("kernel = ")
        .to_owned();
    std::fs::write(&manifest, format!("{text}stub = {kernel}\n")).unwrap();
    let out = install_media(&manifest, dir.path());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no .sdmagic section"),
        "{out:?}"
    );
    for file in ["node.efi", "node.img", "tftp"] {
        assert!(!dir.path().join(file).exists(), "{file} was written");
    }
}

/// The modules spore.toml of the image lists, in load order.
fn image_modules(dir: &Path, image: &Path) -> Vec<String> {
    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(image).unwrap())
        .read_to_end(&mut cpio)
        .unwrap();
    let root = dir.join("unpacked");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir(&root).unwrap();
    extract(&cpio, &root);
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("etc/spore/spore.toml")).unwrap())
            .unwrap();
    config
        .get("modules")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn modules_spore_toml_asks_for_are_carried_and_a_mount_without_its_module_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "gzip", "");
    let fs = dir.path().join("kernel/lib/modules/6.1.0-test/kernel/fs");
    std::fs::create_dir_all(fs.join("ext4")).unwrap();
    std::fs::write(fs.join("ext4/ext4.ko"), b"\x7fELF..\0depends=crc16\0").unwrap();
    std::fs::write(fs.join("crc16.ko"), b"\x7fELF..\0depends=\0").unwrap();
    std::fs::write(fs.join("xfs.ko"), b"\x7fELF..\0depends=\0").unwrap();
    std::fs::write(
        dir.path()
            .join("kernel/lib/modules/6.1.0-test/modules.builtin"),
        "kernel/drivers/block/virtio_blk.ko\n",
    )
    .unwrap();
    let mount =
        "[[mount]]\nsource = \"LABEL=spore-state\"\ntarget = \"/var/lib\"\ntype = \"ext4\"\n";
    // spore.toml's modules are merged with the manifest's, not dropped.
    std::fs::write(
        dir.path().join("spore.toml"),
        format!("hostname = \"n1\"\nmodules = [\"ext4\"]\n{mount}"),
    )
    .unwrap();
    let image = dir.path().join("initrd.img");
    let out = mkinitramfs(&manifest, &image);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        image_modules(dir.path(), &image),
        [
            "kernel/drivers/net/tun.ko",
            "kernel/drivers/net/failover.ko",
            "kernel/drivers/net/virtio_net.ko",
            "kernel/fs/crc16.ko",
            "kernel/fs/ext4/ext4.ko",
        ]
    );
    // The state disk's filesystem without its module: refused, saying what to add.
    std::fs::remove_file(&image).unwrap();
    std::fs::write(
        dir.path().join("spore.toml"),
        format!("hostname = \"n1\"\n{mount}"),
    )
    .unwrap();
    let out = mkinitramfs(&manifest, &image);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("mount LABEL=spore-state on /var/lib (ext4) needs module `ext4`, which the image does not carry"),
        "{said}"
    );
    assert!(!image.exists(), "nothing is written");
    // A bus module the kernel has built in is fine; a filesystem it has no module for is not.
    std::fs::write(
        dir.path().join("spore.toml"),
        "modules = [\"xfs\"]\n[[mount]]\nsource = \"/dev/vdb\"\ntarget = \"/data\"\ntype = \"xfs\"\n[[mount]]\nsource = \"/dev/vdc\"\ntarget = \"/more\"\ntype = \"zfs\"\n",
    )
    .unwrap();
    let out = mkinitramfs(&manifest, &image);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("needs module `zfs`, which kernel 6.1.0-test has neither"),
        "{said}"
    );
    assert!(
        !said.contains("`xfs`") && !said.contains("virtio_blk"),
        "{said}"
    );
    // Without a [kernel] tree, modules cannot be carried: refused.
    std::fs::write(dir.path().join("spore.toml"), "modules = [\"ext4\"]\n").unwrap();
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "spore = \"/bin/busybox\"\nconfig = \"spore.toml\"\n").unwrap();
    let out = mkinitramfs(&bare, &image);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("no [kernel] tree to carry them from"),
        "{said}"
    );
}

/// Who a service runs as is looked up at build time in the image's own
/// account files (`passwd`, `group`), which land in /etc: a name the node
/// would not find fails the build, naming the file and the name.
#[test]
fn service_users_are_checked_against_the_images_account_files() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inputs(dir.path(), "none", "");
    std::fs::write(
        dir.path().join("services/web.toml"),
        "[service]\nname = \"web\"\nexec = \"/bin/busybox httpd -f\"\n\n[sandbox]\nuser = \"www\"\nsupplementary_groups = [\"logs\"]\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "\"services/call-home.toml\"]",
        "\"services/call-home.toml\", \"services/web.toml\"]",
    );
    let image = dir.path().join("initrd");
    // No account files: refused, saying what to give.
    std::fs::write(&manifest, &text).unwrap();
    let output = mkinitramfs(&manifest, &image);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("web.toml: [sandbox]: user `www` is not in the image's /etc/passwd (the manifest gives no `passwd`)"),
        "{stderr}"
    );
    assert!(!image.exists());
    // A passwd without the group named: refused, naming the group file.
    std::fs::write(
        dir.path().join("passwd"),
        "root:x:0:0::/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("group"), "root:x:0:\nwww:x:33:\n").unwrap();
    let with_accounts = format!("passwd = \"passwd\"\ngroup = \"group\"\n{text}");
    std::fs::write(&manifest, &with_accounts).unwrap();
    let output = mkinitramfs(&manifest, &image);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("web.toml: [sandbox]: group `logs` is not in ")
            && stderr.contains("/group"),
        "{stderr}"
    );
    // With both: built, and the files are the image's /etc/passwd and /etc/group.
    std::fs::write(
        dir.path().join("group"),
        "root:x:0:\nwww:x:33:\nlogs:x:4:www\n",
    )
    .unwrap();
    let output = mkinitramfs(&manifest, &image);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let root = unpack(&std::fs::read(&image).unwrap(), dir.path());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/passwd")).unwrap(),
        std::fs::read_to_string(dir.path().join("passwd")).unwrap()
    );
    assert!(std::fs::read_to_string(root.join("etc/group"))
        .unwrap()
        .contains("logs:x:4:www"));
    assert!(root.join("etc/spore/services/web.toml").exists());
}
