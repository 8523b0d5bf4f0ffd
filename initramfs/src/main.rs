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
    /// Where to write the image (atomically)
    #[arg(short = 'o', long, value_name = "IMAGE")]
    output: PathBuf,
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
    // Atomically (temp file, fsync, rename): a half-written image never boots.
    if let Err(error) = runtime::atomic::write_atomically(&options.output, &image.bytes, 0o644) {
        eprintln!("error: {}: {error}", options.output.display());
        return ExitCode::from(1);
    }
    eprintln!(
        "{}: {} bytes, {} module(s){}",
        options.output.display(),
        image.bytes.len(),
        image.modules.len(),
        image
            .release
            .map(|r| format!(" for {r}"))
            .unwrap_or_default()
    );
    ExitCode::SUCCESS
}
