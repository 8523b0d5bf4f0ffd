//! Loading a directory of service files: each file alone, then the checks
//! that need them all (dependencies exist, no cycles).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ErrorKind};
use crate::graph::{Graph, Plan};
use crate::parse::parse_service;
use crate::service::Service;

/// The result of loading a directory: the services that are valid, and one
/// error list for everything that was rejected. A bad file never takes the
/// good ones down with it.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Valid services, sorted by name; their dependencies exist and form no cycle.
    pub services: Vec<Service>,
    /// Every error, sorted by file, line and column.
    pub errors: Vec<ConfigError>,
}

impl LoadReport {
    /// The start plan of the valid services.
    pub fn plan(&self) -> Plan {
        Graph::new(&self.services).plan()
    }
}

/// The directory itself could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read service directory {}: {source}", dir.display())]
pub struct LoadError {
    /// The directory.
    pub dir: PathBuf,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

/// The file name that hides an image service named `name` (written by a
/// removal into the deployed layer).
pub fn mask_name(name: &str) -> String {
    format!("{name}.masked")
}

/// Every `*.toml` entry of `dir` and the names masked there, sorted; a
/// missing `dir` is empty when `optional`.
fn list(dir: &Path, optional: bool) -> Result<(Vec<PathBuf>, HashSet<String>), LoadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) if optional && source.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), HashSet::new()))
        }
        Err(source) => {
            return Err(LoadError {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    // Every `*.toml` entry, whatever it is: one that is not a regular file
    // is an error naming it, never silently skipped.
    let mut files = Vec::new();
    let mut masked = HashSet::new();
    for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => files.push(path),
            Some("masked") => {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    masked.insert(stem.to_owned());
                }
            }
            _ => {}
        }
    }
    files.sort();
    Ok((files, masked))
}

/// Loads every `*.toml` file in `dir` (not recursing), sorted by file name.
pub fn load_dir(dir: &Path) -> Result<LoadReport, LoadError> {
    let (files, _) = list(dir, false)?;
    Ok(load_files(files))
}

/// Loads the image's services in `base` with the deployed layer `layer`
/// over them (a missing `layer` is empty): `layer/NAME.toml` replaces
/// `base/NAME.toml`, and `layer/NAME.masked` hides the name in both (a
/// removed service). Each service's `file` says which layer it came from.
pub fn load_layers(base: &Path, layer: &Path) -> Result<LoadReport, LoadError> {
    let (base_files, _) = list(base, false)?;
    let (layer_files, masked) = list(layer, true)?;
    let stem = |p: &PathBuf| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned);
    let replaced: HashSet<String> = layer_files.iter().filter_map(stem).collect();
    let mut files: Vec<PathBuf> = base_files
        .into_iter()
        .filter(|p| stem(p).is_some_and(|n| !replaced.contains(&n) && !masked.contains(&n)))
        .chain(
            layer_files
                .into_iter()
                .filter(|p| stem(p).is_some_and(|n| !masked.contains(&n))),
        )
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(load_files(files))
}

fn load_files(files: Vec<PathBuf>) -> LoadReport {
    let mut services = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    let mut rejected = HashSet::new();
    for file in files {
        let parsed = match read_service_file(&file) {
            Ok(text) => parse_service(&file, &text),
            Err(message) => Err(vec![ConfigError {
                file: file.clone(),
                line: 1,
                column: 1,
                kind: ErrorKind::Read(message),
            }]),
        };
        match parsed {
            Ok(service) => services.push(service),
            Err(file_errors) => {
                if let Some(stem) = file.file_stem().and_then(|s| s.to_str()) {
                    rejected.insert(stem.to_owned());
                }
                errors.extend(file_errors);
            }
        }
    }
    check_together(services, errors, rejected)
}

/// The text of a service file, or why it cannot be one. The type is checked
/// before the file is opened: reading a FIFO would wait for a writer
/// forever, and a device (a link to /dev/zero) would never end.
fn read_service_file(file: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(file).map_err(|error| {
        if std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink()) {
            format!("a symlink that leads nowhere ({error})")
        } else {
            error.to_string()
        }
    })?;
    if !meta.is_file() {
        return Err(format!(
            "{}, not a regular file",
            file_kind(meta.file_type())
        ));
    }
    std::fs::read_to_string(file).map_err(|error| error.to_string())
}

/// Checks what no single file can: every `requires`, `after` and `conflicts`
/// names a valid service, nothing depends on itself through a cycle, and no
/// two services listen on one address (`[[sockets]]`).
/// Services failing either check are rejected, and so, in turn, are those
/// that depend on them. `rejected` holds names already rejected.
pub fn check_together(
    services: Vec<Service>,
    mut errors: Vec<ConfigError>,
    mut rejected: HashSet<String>,
) -> LoadReport {
    let mut accepted: BTreeMap<String, Service> =
        services.into_iter().map(|s| (s.name.clone(), s)).collect();
    // Who points at whom, so a rejection re-checks just those services.
    let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
    for service in accepted.values() {
        let deps = &service.dependencies;
        for dep in deps
            .requires
            .iter()
            .chain(&deps.after)
            .chain(&deps.conflicts)
        {
            dependents
                .entry(dep.name.clone())
                .or_default()
                .push(service.name.clone());
        }
    }

    let mut queue: Vec<String> = accepted.keys().cloned().collect();
    for name in taken_addresses(&accepted, &mut errors) {
        accepted.remove(&name);
        rejected.insert(name.clone());
        queue.extend(dependents.get(&name).into_iter().flatten().cloned());
    }
    cascade(
        &mut queue,
        &mut accepted,
        &mut rejected,
        &dependents,
        &mut errors,
    );

    let remaining: Vec<Service> = accepted.values().cloned().collect();
    for cycle in Graph::new(&remaining).cycles() {
        let (first, second) = match cycle.path.as_slice() {
            [first, second, ..] => (first, second),
            _ => continue,
        };
        if let Some(service) = accepted.get(first) {
            let at = service.dependencies.ordering().find(|d| &d.name == second);
            errors.push(ConfigError {
                file: service.file.clone(),
                line: at.map_or(1, |d| d.line),
                column: at.map_or(1, |d| d.column),
                kind: ErrorKind::Cycle {
                    cycle: cycle.path.clone(),
                },
            });
        }
        for member in cycle.members {
            accepted.remove(&member);
            rejected.insert(member.clone());
            queue.extend(dependents.get(&member).into_iter().flatten().cloned());
        }
    }
    cascade(
        &mut queue,
        &mut accepted,
        &mut rejected,
        &dependents,
        &mut errors,
    );

    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    LoadReport {
        services: accepted.into_values().collect(),
        errors,
    }
}

/// The services (after the first, by name) that listen on an address of a
/// `[[sockets]]` another service listens on already: each is said in
/// `errors`, at its `listen`.
fn taken_addresses(
    services: &BTreeMap<String, Service>,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let mut first: HashMap<&crate::service::Endpoint, &str> = HashMap::new();
    let mut second = Vec::new();
    for service in services.values() {
        let clash = service
            .sockets
            .iter()
            .find_map(|socket| first.get(&socket.listen).map(|by| (socket, *by)));
        match clash {
            Some((socket, by)) => {
                errors.push(taken_error(service, socket, by));
                second.push(service.name.clone());
            }
            None => {
                for socket in &service.sockets {
                    first.insert(&socket.listen, &service.name);
                }
            }
        }
    }
    second
}

/// The error for `service` (a deploy) when one of its `[[sockets]]`
/// listens where a service among `others` listens already, at its
/// `listen`; None when none does.
pub fn listen_taken(others: &HashMap<&str, &Service>, service: &Service) -> Option<ConfigError> {
    service.sockets.iter().find_map(|ours| {
        let by = others.values().find(|other| {
            other.name != service.name
                && other
                    .sockets
                    .iter()
                    .any(|theirs| theirs.listen == ours.listen)
        })?;
        Some(taken_error(service, ours, &by.name))
    })
}

/// `socket` of `service` listens where service `by` does already, said at
/// its `listen`.
fn taken_error(service: &Service, socket: &crate::service::Socket, by: &str) -> ConfigError {
    ConfigError {
        file: service.file.clone(),
        line: socket.line,
        column: socket.column,
        kind: ErrorKind::ListenTaken {
            endpoint: socket.listen.to_string(),
            by: by.to_owned(),
        },
    }
}

/// What a file that is not a regular file is, for an error message: `a
/// directory`, `a FIFO`, `a device`, `a socket`, or `not a regular file`.
pub fn file_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// True when `service` certainly fits among `others` (valid together
/// already, `service` not among them): every service it `requires`,
/// orders `after` or `conflicts` with exists, no ordering path leads
/// from it back to itself, and no other listens where it does. Adding or replacing one service can break
/// nothing else (the others' names all stay), so this is all a deploy
/// must check; it costs what `service` reaches, not the whole set. When
/// false, [`check_together`] says exactly what is wrong.
pub fn fits_with(others: &HashMap<&str, &Service>, service: &Service) -> bool {
    let deps = &service.dependencies;
    let named = deps
        .requires
        .iter()
        .chain(&deps.after)
        .chain(&deps.conflicts);
    if named
        .clone()
        .any(|d| d.name == service.name || !others.contains_key(d.name.as_str()))
    {
        return false;
    }
    // An address another service listens on.
    if listen_taken(others, service).is_some() {
        return false;
    }
    // Does any ordering path from `service` come back to it?
    let mut stack: Vec<&str> = deps.ordering().map(|d| d.name.as_str()).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    while let Some(name) = stack.pop() {
        if name == service.name {
            return false;
        }
        if !seen.insert(name) {
            continue;
        }
        if let Some(next) = others.get(name) {
            stack.extend(next.dependencies.ordering().map(|d| d.name.as_str()));
        }
    }
    true
}

/// Rejects every queued service that names a missing service, then re-checks
/// whoever named it, until nothing changes.
fn cascade(
    queue: &mut Vec<String>,
    accepted: &mut BTreeMap<String, Service>,
    rejected: &mut HashSet<String>,
    dependents: &HashMap<String, Vec<String>>,
    errors: &mut Vec<ConfigError>,
) {
    while let Some(name) = queue.pop() {
        let Some(service) = accepted.get(&name) else {
            continue;
        };
        let deps = &service.dependencies;
        let relations = [
            ("requires", &deps.requires),
            ("after", &deps.after),
            ("conflicts", &deps.conflicts),
        ];
        let missing = relations.iter().find_map(|(relation, refs)| {
            refs.iter()
                .find(|d| !accepted.contains_key(&d.name))
                .map(|d| (*relation, d))
        });
        let Some((relation, dep)) = missing else {
            continue;
        };
        errors.push(ConfigError {
            file: service.file.clone(),
            line: dep.line,
            column: dep.column,
            kind: ErrorKind::MissingDependency {
                dependency: dep.name.clone(),
                relation,
                rejected: rejected.contains(&dep.name),
            },
        });
        accepted.remove(&name);
        queue.extend(dependents.get(&name).into_iter().flatten().cloned());
        rejected.insert(name);
    }
}
