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
