//! `spore-mkinitramfs MANIFEST -o IMAGE`: builds a bootable initramfs with
//! spore as `/init` from a manifest (see the `manifest` module).

use std::path::PathBuf;
use std::process::ExitCode;

/// Builds a reproducible initramfs (newc cpio, gzip/zstd) with spore as
/// /init, spore.toml, validated service files, keys, kernel modules with
/// their dependencies (in load order) and extra binaries, as MANIFEST lists
/// them.
#[derive(clap::Parser)]
#[command(name = "spore-mkinitramfs", version)]
struct Options {
    /// The manifest (TOML) that lists what goes in
    manifest: PathBuf,
    /// Where to write the initramfs (atomically)
    #[arg(short = 'o', long, value_name = "IMAGE", required_unless_present_any = ["uki", "disk", "netboot"])]
    output: Option<PathBuf>,
    /// Also write a unified kernel image (systemd's EFI stub + kernel +
    /// initramfs + command line, from [disk]): one PE file that UEFI boots
    #[arg(long, value_name = "FILE")]
    uki: Option<PathBuf>,
    /// Also write a disk image (GPT: an EFI system partition with the UKI
    /// as \EFI\BOOT\BOOTX64.EFI, and the state partition); dd it to a stick
    #[arg(long, value_name = "FILE")]
    disk: Option<PathBuf>,
    /// Also write a netboot bundle into DIR: vmlinuz, initrd.img, the UKI
    /// (spore.efi) and iPXE scripts (boot.ipxe; one per [netboot] host)
    #[arg(long, value_name = "DIR")]
    netboot: Option<PathBuf>,
    /// Accept dynamically linked binaries (their libraries are not copied)
    #[arg(long)]
    allow_dynamic: bool,
}

fn main() -> ExitCode {
    // clap prints help and versions (exit 0) and usage errors (exit 2).
    let options = <Options as clap::Parser>::parse();
    let mut manifest = match initramfs::Manifest::load(&options.manifest) {
        Ok(manifest) => manifest,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    manifest.allow_dynamic |= options.allow_dynamic;
    let image = match initramfs::build(&manifest) {
        Ok(image) => image,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    for warning in &image.warnings {
        eprintln!("warning: {warning}");
    }
    // Everything is built before anything is written: an error leaves
    // no file behind.
    let uki = match (&options.uki, &options.disk, &options.netboot) {
        (None, None, None) => None,
        _ => match initramfs::install::uki(&manifest, &image.bytes) {
            Ok(uki) => Some(uki),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(1);
            }
        },
    };
    let disk = match (&options.disk, &uki) {
        (Some(_), Some(uki)) => match initramfs::install::disk_image(&manifest, uki, &[]) {
            Ok(disk) => Some(disk),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(1);
            }
        },
        _ => None,
    };
    let bundle = match (&options.netboot, &uki) {
        (Some(_), Some(uki)) => match initramfs::install::netboot(&manifest, &image.bytes, uki) {
            Ok(files) => files,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(1);
            }
        },
        _ => Vec::new(),
    };
    if let Some(dir) = &options.netboot {
        if let Err(error) = std::fs::create_dir_all(dir) {
            eprintln!("error: {}: {error}", dir.display());
            return ExitCode::from(1);
        }
        for (name, bytes) in &bundle {
            let path = dir.join(name);
            if let Err(error) = durable::atomic::write_atomically(&path, bytes, 0o644) {
                eprintln!("error: {}: {error}", path.display());
                return ExitCode::from(1);
            }
        }
        eprintln!("{}: netboot bundle, {} files", dir.display(), bundle.len());
    }
    // Atomically (temp file, fsync, rename): a half-written image never boots.
    let outputs = [
        (options.output.as_ref(), Some(&image.bytes), "initramfs"),
        (options.uki.as_ref(), uki.as_ref(), "unified kernel image"),
        (options.disk.as_ref(), disk.as_ref(), "disk image"),
    ];
    for (path, bytes, what) in outputs {
        let (Some(path), Some(bytes)) = (path, bytes) else {
            continue;
        };
        if let Err(error) = durable::atomic::write_atomically(path, bytes, 0o644) {
            eprintln!("error: {}: {error}", path.display());
            return ExitCode::from(1);
        }
        eprintln!("{}: {what}, {} bytes", path.display(), bytes.len());
    }
    eprintln!(
        "initramfs: {} bytes, {} module(s){}",
        image.bytes.len(),
        image.modules.len(),
        image
            .release
            .map(|r| format!(" for {r}"))
            .unwrap_or_default()
    );
    ExitCode::SUCCESS
}
