//! `spore-mkinitramfs MANIFEST -o IMAGE`: builds a bootable initramfs with
//! spore as `/init` from a manifest (see the `manifest` module).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: spore-mkinitramfs MANIFEST -o IMAGE [--allow-dynamic]

Builds a reproducible initramfs (newc cpio, gzip/zstd) with spore as /init,
spore.toml, validated service files, keys, kernel modules with their
dependencies (in load order) and extra binaries, as MANIFEST lists them.";

struct Options {
    manifest: PathBuf,
    output: PathBuf,
    allow_dynamic: bool,
}

fn parse() -> Result<Option<Options>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let (mut manifest, mut output, mut allow_dynamic) = (None, None, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('o') | Long("output") => output = Some(PathBuf::from(parser.value()?)),
            Long("allow-dynamic") => allow_dynamic = true,
            Short('h') | Long("help") => return Ok(None),
            Value(path) if manifest.is_none() => manifest = Some(PathBuf::from(path)),
            _ => return Err(arg.unexpected()),
        }
    }
    let manifest = manifest.ok_or("missing MANIFEST")?;
    let output = output.ok_or("missing -o IMAGE")?;
    Ok(Some(Options {
        manifest,
        output,
        allow_dynamic,
    }))
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("error: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
