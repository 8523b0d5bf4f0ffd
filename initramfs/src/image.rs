//! Assembles an image from a [`Manifest`]: spore as `/init`, the node's
//! configuration, validated service files, keys, kernel modules in load
//! order and extra binaries, as a reproducible compressed newc archive.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::cpio::{Archive, CpioError};
use crate::elf::{linkage, Linkage};
use crate::manifest::{Compression, Manifest};
use crate::modules::{resolve, ModuleError};

/// Why an image cannot be built. Nothing is written when any of these
/// happens.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An input file cannot be read.
    #[error("{what} {path}: {reason}")]
    Read {
        /// What the file was for.
        what: &'static str,
        /// The file.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// A dynamically linked binary, and `allow_dynamic` is off.
    #[error("{path} is dynamically linked (needs {interpreter}), which an initramfs cannot run; give a static binary or set allow_dynamic = true")]
    Dynamic {
        /// The binary.
        path: String,
        /// Its program interpreter.
        interpreter: String,
    },
    /// Service files that do not validate, one message each (file, line,
    /// column, field).
    #[error("service files do not validate:\n{}", .0.join("\n"))]
    Services(Vec<String>),
    /// spore.toml is not valid TOML.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// toml's message.
        reason: String,
    },
    /// The kernel tree has no single `lib/modules/RELEASE`.
    #[error("kernel tree {0}: expected exactly one lib/modules/RELEASE directory")]
    KernelTree(String),
    /// A module or its dependencies cannot be resolved.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The enrollment key or its certificate cannot be used.
    #[error("enrollment key {path}: {reason}")]
    Credential {
        /// The key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// spore.toml needs modules the image cannot carry or does not carry.
    #[error("{0}")]
    Needs(String),
    /// Two inputs for one path, or a bad path.
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

/// A built image and what the builder noticed.
#[derive(Debug, Clone)]
pub struct Image {
    /// The compressed archive.
    pub bytes: Vec<u8>,
    /// Warnings: dynamic binaries accepted with `allow_dynamic`, modules
    /// the kernel has built in.
    pub warnings: Vec<String>,
    /// The kernel release the modules are for, if any.
    pub release: Option<String>,
    /// Modules in load order, relative to `lib/modules/RELEASE/`.
    pub modules: Vec<String>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|e| BuildError::Read {
        what,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Builds the image `manifest` describes.
pub fn build(manifest: &Manifest) -> Result<Image, BuildError> {
    let mut archive = Archive::new();
    let mut warnings = Vec::new();
    for (dir, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("bin", 0o755),
        ("etc", 0o755),
        ("etc/spore", 0o755),
        ("etc/spore/services", 0o755),
        ("var", 0o755),
        ("var/lib", 0o755),
        ("var/lib/spore", 0o700),
    ] {
        archive.dir(dir, mode)?;
    }
    // The kernel opens /dev/console for init's stdio before init runs.
    archive.char_device("dev/console", 0o600, 5, 1)?;

    let spore = read("spore binary", &manifest.spore)?;
    check_linkage(
        &manifest.spore,
        &spore,
        manifest.allow_dynamic,
        &mut warnings,
    )?;
    archive.file("init", 0o755, spore)?;
    // `spore status`, `spore call-home` in service files and on a console.
    archive.symlink("bin/spore", "/init")?;

    let node_toml = node_table(manifest.config.as_deref())?;
    let asked = crate::needs::asked_modules(&node_toml);
    let (release, modules) = match &manifest.kernel {
        Some(kernel) => {
            // The manifest's modules, then those spore.toml asks for.
            let mut wanted = kernel.modules.clone();
            for name in asked {
                if !wanted.iter().any(|w| modtree::canonical(w) == name) {
                    wanted.push(name);
                }
            }
            let (release, modules) =
                add_modules(&mut archive, &kernel.tree, &wanted, &mut warnings)?;
            check_mounts(&node_toml, &kernel.tree, &release, &modules)?;
            (Some(release), modules)
        }
        None if !asked.is_empty() => {
            return Err(BuildError::Needs(format!(
                "spore.toml asks for modules {}, but the manifest has no [kernel] tree to carry them from (add [kernel] tree = \"…\")",
                asked.join(", ")
            )));
        }
        None => {
            for need in crate::needs::mount_needs(&node_toml) {
                warnings.push(format!(
                    "mount {} needs module(s) {}; with no [kernel] tree they are not checked: the kernel must have them built in",
                    need.mount,
                    need.modules.join(", ")
                ));
            }
            (None, Vec::new())
        }
    };
    let config = node_config(manifest.config.as_deref(), &modules)?;
    archive.file("etc/spore/spore.toml", 0o644, config)?;

    let accounts = (manifest.passwd.as_deref(), manifest.group.as_deref());
    for (path, text) in validate_services(&manifest.services, accounts)? {
        archive.file(
            &format!("etc/spore/services/{}", file_name(&path)),
            0o644,
            text.into_bytes(),
        )?;
    }
    if let Some(passwd) = &manifest.passwd {
        archive.file("etc/passwd", 0o644, read("passwd", passwd)?)?;
    }
    if let Some(group) = &manifest.group {
        archive.file("etc/group", 0o644, read("group", group)?)?;
    }
    if let Some(keys) = &manifest.authorized_keys {
        archive.file(
            "etc/spore/authorized_keys",
            0o644,
            read("authorized_keys", keys)?,
        )?;
    }
    if let Some(key) = &manifest.node_key {
        archive.file("var/lib/spore/node_key", 0o600, read("node key", key)?)?;
    }
    if let Some(key) = &manifest.enrollment_key {
        // Checked whole before anything is written: a credential that
        // would fail on the node's first boot is refused here.
        rpc::enrollment::Credential::load(key).map_err(|e| BuildError::Credential {
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
        let certificate = rpc::enrollment::certificate_path(key);
        archive.file(
            "etc/spore/enrollment_key",
            0o600,
            read("enrollment key", key)?,
        )?;
        archive.file(
            "etc/spore/enrollment_key-cert.pub",
            0o644,
            read("enrollment certificate", &certificate)?,
        )?;
    }
    for binary in &manifest.binaries {
        let bytes = read("binary", &binary.source)?;
        check_linkage(
            &binary.source,
            &bytes,
            manifest.allow_dynamic,
            &mut warnings,
        )?;
        let mode = match &binary.mode {
            Some(text) => u32::from_str_radix(text, 8).map_err(|_| BuildError::Config {
                path: binary.path.clone(),
                reason: format!("mode `{text}` is not octal"),
            })?,
            None => 0o755,
        };
        archive.parents(&binary.path)?;
        archive.file(&binary.path, mode, bytes)?;
        for link in &binary.links {
            archive.parents(link)?;
            archive.symlink(link, &format!("/{}", binary.path.trim_start_matches('/')))?;
        }
    }
    let cpio = archive.finish();
    Ok(Image {
        bytes: compress(&cpio, manifest.compression),
        warnings,
        release,
        modules,
    })
}

fn check_linkage(
    path: &Path,
    bytes: &[u8],
    allow: bool,
    warnings: &mut Vec<String>,
) -> Result<(), BuildError> {
    if let Linkage::Dynamic(interpreter) = linkage(bytes) {
        if !allow {
            return Err(BuildError::Dynamic {
                path: path.display().to_string(),
                interpreter,
            });
        }
        warnings.push(format!(
            "{} is dynamically linked (needs {interpreter}); included because allow_dynamic is set",
            path.display()
        ));
    }
    Ok(())
}

/// Copies `wanted` and their dependencies under lib/modules/RELEASE/;
/// returns the release and the load order (paths relative to it).
fn add_modules(
    archive: &mut Archive,
    tree: &Path,
    wanted: &[String],
    warnings: &mut Vec<String>,
) -> Result<(String, Vec<String>), BuildError> {
    let releases: Vec<PathBuf> = std::fs::read_dir(tree.join("lib/modules"))
        .map_err(|e| BuildError::Read {
            what: "kernel tree",
            path: tree.join("lib/modules").display().to_string(),
            reason: e.to_string(),
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    let [root] = releases.as_slice() else {
        return Err(BuildError::KernelTree(tree.display().to_string()));
    };
    let release = file_name(root);
    let mut order = Vec::new();
    let resolved = resolve(root, wanted)?;
    for name in &resolved.builtin {
        warnings.push(format!(
            "module `{name}` is built into kernel {release}; nothing to carry"
        ));
    }
    for module in resolved.modules {
        let relative = module.relative.to_string_lossy().into_owned();
        let target = format!("lib/modules/{release}/{relative}");
        archive.parents(&target)?;
        archive.file(&target, 0o644, module.bytes)?;
        order.push(relative);
    }
    Ok((release, order))
}

/// spore.toml as a table (empty without a file).
fn node_table(path: Option<&Path>) -> Result<toml::Table, BuildError> {
    let Some(path) = path else {
        return Ok(toml::Table::new());
    };
    let text = String::from_utf8_lossy(&read("node config", path)?).into_owned();
    toml::from_str(&text).map_err(|e| BuildError::Config {
        path: path.display().to_string(),
        reason: e.to_string().trim().replace('\n', " "),
    })
}

/// Refuses an image whose `[[mount]]`s need a module it neither carries
/// (`carried`: paths relative to lib/modules/RELEASE/) nor has built in.
fn check_mounts(
    node_toml: &toml::Table,
    tree: &Path,
    release: &str,
    carried: &[String],
) -> Result<(), BuildError> {
    let carried: Vec<String> = carried
        .iter()
        .filter_map(|path| modtree::name_of(path))
        .collect();
    let root = tree.join("lib/modules").join(release);
    let mut problems = Vec::new();
    for need in crate::needs::mount_needs(node_toml) {
        for module in &need.modules {
            if carried.contains(module) {
                continue;
            }
            match resolve(&root, std::slice::from_ref(module)) {
                Ok(found) if found.builtin.contains(module) => {}
                Ok(_) => problems.push(format!(
                    "mount {} needs module `{module}`, which the image does not carry: add it to spore.toml's modules or [kernel] modules",
                    need.mount
                )),
                Err(_) => problems.push(format!(
                    "mount {} needs module `{module}`, which kernel {release} has neither as a module nor built in",
                    need.mount
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Needs(problems.join("\n")))
    }
}

/// spore.toml with `modules` set to the load order (when modules are
/// carried); without a file, one holding just that.
fn node_config(path: Option<&Path>, modules: &[String]) -> Result<Vec<u8>, BuildError> {
    let text = match path {
        Some(path) => String::from_utf8_lossy(&read("node config", path)?).into_owned(),
        None => String::new(),
    };
    let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| BuildError::Config {
        path: shown.clone(),
        reason: e.to_string().trim().replace('\n', " "),
    })?;
    if modules.is_empty() {
        return Ok(text.into_bytes());
    }
    table.insert(
        "modules".into(),
        toml::Value::Array(modules.iter().cloned().map(toml::Value::String).collect()),
    );
    toml::to_string(&table)
        .map(String::into_bytes)
        .map_err(|e| BuildError::Config {
            path: shown,
            reason: e.to_string(),
        })
}

/// Parses every service file and checks them together (dependencies
/// present, no cycles); any error refuses the whole image.
fn validate_services(
    files: &[PathBuf],
    (passwd, group): (Option<&Path>, Option<&Path>),
) -> Result<Vec<(PathBuf, String)>, BuildError> {
    let mut texts = Vec::new();
    let mut services = Vec::new();
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for path in files {
        let text = String::from_utf8_lossy(&read("service file", path)?).into_owned();
        if !names.insert(file_name(path)) {
            errors.push(format!(
                "{}: a service file with this name is listed twice",
                path.display()
            ));
        }
        match svc::parse_service(path, &text) {
            Ok(service) => services.push(service),
            Err(file_errors) => errors.extend(file_errors.iter().map(|e| format!("error: {e}"))),
        }
        texts.push((path.clone(), text));
    }
    let report = svc::load::check_together(services, Vec::new(), HashSet::new());
    errors.extend(report.errors.iter().map(|e| format!("error: {e}")));
    // Who each service runs as, looked up now in the image's own account
    // files: a name the node would not find fails the build, not the boot.
    let passwd = passwd.unwrap_or(Path::new(
        "the image's /etc/passwd (the manifest gives no `passwd`)",
    ));
    let group = group.unwrap_or(Path::new(
        "the image's /etc/group (the manifest gives no `group`)",
    ));
    for service in &report.services {
        if let Err(error) = svc::accounts::resolve_in(&service.sandbox, passwd, group) {
            errors.push(format!(
                "error: {}: [sandbox]: {error}",
                service.file.display()
            ));
        }
    }
    if errors.is_empty() {
        Ok(texts)
    } else {
        Err(BuildError::Services(errors))
    }
}

/// Compresses the archive; the output depends on the input alone.
pub fn compress(cpio: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => cpio.to_vec(),
        Compression::Gzip => {
            use std::io::Write;
            // mtime 0, no file name: nothing but the input shapes the bytes.
            let mut encoder = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::default());
            // Writing into a Vec cannot fail.
            let _ = encoder.write_all(cpio);
            encoder.finish().unwrap_or_default()
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(cpio, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}
