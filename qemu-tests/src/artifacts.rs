//! What a boot needs from the host: the static spore and mycelium stand-in
//! (built here for x86_64 musl), sporectl, busybox, QEMU and the Debian
//! kernel (fetched and unpacked by `scripts/kernel`, cached under target/).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths to everything a boot uses.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The repository root.
    pub root: PathBuf,
    /// Static spore (becomes /init).
    pub spore: PathBuf,
    /// Static mycelium stand-in.
    pub mycelium: PathBuf,
    /// sporectl for the host.
    pub sporectl: PathBuf,
    /// Static busybox for a shell and applets in the image.
    pub busybox: PathBuf,
    /// qemu-system-x86_64.
    pub qemu: PathBuf,
    /// The unpacked kernel package.
    pub kernel_tree: PathBuf,
    /// Its vmlinuz.
    pub vmlinuz: PathBuf,
    /// systemd's EFI stub, for unified kernel images (Debian's
    /// systemd-boot-efi), when installed.
    pub efi_stub: Option<PathBuf>,
    /// UEFI firmware for QEMU (Debian's ovmf): code and a variable store
    /// to copy per guest, when installed.
    pub ovmf: Option<(PathBuf, PathBuf)>,
}

impl Artifacts {
    /// The EFI stub, or what to install.
    pub fn efi_stub(&self) -> Result<&Path, String> {
        self.efi_stub.as_deref().ok_or_else(|| {
            "no systemd EFI stub: run scripts/setup (apt-get install systemd-boot-efi)".into()
        })
    }

    /// OVMF's code and variable-store template, or what to install.
    pub fn ovmf(&self) -> Result<(&Path, &Path), String> {
        self.ovmf
            .as_ref()
            .map(|(code, vars)| (code.as_path(), vars.as_path()))
            .ok_or_else(|| "no OVMF: run scripts/setup (apt-get install ovmf)".into())
    }
}

/// Runs `command`; its trimmed stdout, or an error with its stderr.
pub(crate) fn run(what: &str, command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn build() -> Result<Artifacts, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let qemu = find_program("qemu-system-x86_64").ok_or(
        "qemu-system-x86_64 is not installed: run scripts/setup (apt-get install qemu-system-x86)",
    )?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("busybox is not installed: run scripts/setup (apt-get install busybox-static)")?;
    run(
        "building static spore and the mycelium stand-in",
        Command::new(&cargo)
            .current_dir(&root)
            .args([
                "build",
                "-q",
                "--release",
                "--target",
                "x86_64-unknown-linux-musl",
            ])
            .args(["-p", "spore", "-p", "mycelium-standin"]),
    )?;
    run(
        "building sporectl",
        Command::new(&cargo)
            .current_dir(&root)
            .args(["build", "-q", "-p", "sporectl", "--bin", "sporectl"]),
    )?;
    let kernel_tree = PathBuf::from(run(
        "fetching the Debian kernel",
        &mut Command::new(root.join("scripts/kernel")),
    )?);
    let vmlinuz = std::fs::read_dir(kernel_tree.join("boot"))
        .map_err(|e| format!("{}: {e}", kernel_tree.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("no vmlinuz in {}/boot", kernel_tree.display()))?;
    let musl = root.join("target/x86_64-unknown-linux-musl/release");
    Ok(Artifacts {
        spore: musl.join("spore"),
        mycelium: musl.join("mycelium"),
        sporectl: root.join("target/debug/sporectl"),
        busybox,
        qemu,
        kernel_tree,
        vmlinuz,
        root,
        efi_stub: Some(PathBuf::from("/usr/lib/systemd/boot/efi/linuxx64.efi.stub"))
            .filter(|p| p.is_file()),
        ovmf: Some((
            PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd"),
            PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.fd"),
        ))
        .filter(|(code, vars)| code.is_file() && vars.is_file()),
    })
}

/// Builds or finds everything once per process; the error says what is
/// missing and how to get it.
pub fn artifacts() -> Result<&'static Artifacts, String> {
    static ONCE: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    ONCE.get_or_init(build).as_ref().map_err(Clone::clone)
}

/// The SHA-256 of the mycelium stand-in (as `sha256sum` prints it): the pin
/// of the nodes' mycelium service files.
pub fn mycelium_pin() -> Result<String, String> {
    static ONCE: OnceLock<Result<String, String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let path = &artifacts()?.mycelium;
        let out = std::process::Command::new("sha256sum")
            .arg(path)
            .output()
            .map_err(|e| format!("sha256sum: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .get(..64)
            .map(str::to_owned)
            .ok_or_else(|| format!("sha256sum {}: no digest", path.display()))
    })
    .clone()
}
