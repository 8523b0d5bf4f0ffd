//! Operators' public keys: an OpenSSH authorized_keys file, or a directory
//! of such files. Only `ssh-ed25519` keys; the one option understood is
//! `role=admin|reader` (admin by default). A bad line is skipped and logged
//! with file:line; the others still count. Re-read when a file changes.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use proto::rpc::Role;
use ssh_key::authorized_keys::Entry;
use ssh_key::{Algorithm, HashAlg, PublicKey};

/// One authorized operator.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Their key.
    pub key: PublicKey,
    /// What they may do.
    pub role: Role,
    /// The comment on their line (usually user@host).
    pub comment: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

/// The set of operators, reloaded when its files change.
pub struct AuthorizedKeys {
    path: PathBuf,
    operators: Vec<Operator>,
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
}

impl AuthorizedKeys {
    /// Reads `path` (a file or a directory); `log` hears every skipped line.
    pub fn load(path: &Path, log: &mut dyn FnMut(String)) -> Self {
        let mut keys = Self {
            path: path.to_owned(),
            operators: Vec::new(),
            stamp: Vec::new(),
        };
        keys.reload(log);
        keys
    }

    /// Re-reads the files if any changed (one stat per file; called per
    /// connection, never on a timer).
    pub fn refresh(&mut self, log: &mut dyn FnMut(String)) {
        if stamp(&self.path) != self.stamp {
            self.reload(log);
            log(format!(
                "authorized keys reloaded: {} operator(s)",
                self.operators.len()
            ));
        }
    }

    fn reload(&mut self, log: &mut dyn FnMut(String)) {
        self.stamp = stamp(&self.path);
        self.operators = files(&self.path)
            .into_iter()
            .flat_map(|file| match std::fs::read_to_string(&file) {
                Ok(text) => parse(&text, &file, log),
                Err(error) => {
                    log(format!("{}: {error}", file.display()));
                    Vec::new()
                }
            })
            .collect();
    }

    /// The operator holding `key`, if any.
    pub fn find(&self, key: &PublicKey) -> Option<&Operator> {
        self.operators
            .iter()
            .find(|op| op.key.key_data() == key.key_data())
    }

    /// How many operators are authorized.
    pub fn len(&self) -> usize {
        self.operators.len()
    }

    /// True when nobody is authorized.
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }
}

fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    } else if path.is_file() {
        vec![path.to_owned()]
    } else {
        Vec::new()
    }
}

fn stamp(path: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out: Vec<_> = files(path)
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (f, modified, len)
        })
        .collect();
    if let Ok(meta) = std::fs::metadata(path) {
        out.push((path.to_owned(), meta.modified().ok(), meta.len()));
    }
    out
}

/// Parses one authorized_keys text; `file` names it in messages.
pub fn parse(text: &str, file: &Path, log: &mut dyn FnMut(String)) -> Vec<Operator> {
    let mut operators = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let at = format!("{}:{}", file.display(), n + 1);
        if raw.ends_with('\r') {
            log(format!("{at}: skipped: CRLF line ending"));
            continue;
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(operator) => operators.push(operator),
            Err(reason) => log(format!("{at}: skipped: {reason}")),
        }
    }
    operators
}

/// Key types an authorized_keys line may carry that spore does not take
/// (ssh-key may not even decode them: the node is built without them).
const OTHER_TYPES: &[&str] = &[
    "ecdsa-sha2-",
    "sk-ecdsa-sha2-",
    "sk-ssh-ed25519@",
    "ssh-rsa",
    "ssh-dss",
    "rsa-sha2-",
];

fn parse_line(line: &str) -> Result<Operator, String> {
    let entry = Entry::from_str(line).map_err(|e| {
        // A key of another type reads as such, whether or not this build
        // can decode it.
        let other = line
            .split_whitespace()
            .find(|word| OTHER_TYPES.iter().any(|t| word.starts_with(t)) && word.len() <= 64);
        match other {
            Some(kind) => format!(
                "{} keys are not accepted; only ssh-ed25519",
                crate::display::printable(kind)
            ),
            None => format!("not an authorized_keys line ({e})"),
        }
    })?;
    let key = entry.public_key().clone();
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!(
            "{} keys are not accepted; only ssh-ed25519",
            key.algorithm()
        ));
    }
    let mut role = Role::Admin;
    for option in entry.config_opts().iter() {
        match option {
            "role=admin" => role = Role::Admin,
            "role=reader" => role = Role::Reader,
            other => {
                return Err(format!(
                    "unsupported option `{other}` (only role=admin or role=reader)"
                ))
            }
        }
    }
    Ok(Operator {
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        comment: key.comment().to_owned(),
        key,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_other_types_are_named_as_such() {
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg= x@y";
        let reason = parse_line(ecdsa).err().unwrap();
        assert_eq!(
            reason,
            "ecdsa-sha2-nistp256 keys are not accepted; only ssh-ed25519"
        );
        let reason = parse_line(&format!("role=reader {ecdsa}")).err().unwrap();
        assert_eq!(
            reason,
            "ecdsa-sha2-nistp256 keys are not accepted; only ssh-ed25519"
        );
    }

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbdw6PwoJ3R8PCbHR2I41aK5P7SKk2w4IanAqTVpmwL alice@laptop";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ bob@desk";

    #[test]
    fn roles_default_to_admin_and_bad_lines_are_skipped_with_their_line() {
        let text = format!(
            "# operators\n{KEY_A}\nrole=reader {KEY_B}\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 old\nssh-ed25519 !!!notbase64 x\n{KEY_A}\r\ncommand=\"ls\" {KEY_B}\n"
        );
        let mut logged = Vec::new();
        let operators = parse(&text, Path::new("/etc/spore/authorized_keys"), &mut |m| {
            logged.push(m)
        });
        assert_eq!(operators.len(), 2);
        assert_eq!(operators[0].role, Role::Admin);
        assert_eq!(operators[0].comment, "alice@laptop");
        assert_eq!(operators[1].role, Role::Reader);
        assert_eq!(logged.len(), 4, "{logged:#?}");
        assert!(
            logged[0].starts_with("/etc/spore/authorized_keys:4: skipped"),
            "{}",
            logged[0]
        );
        assert!(logged[1].starts_with("/etc/spore/authorized_keys:5: skipped"));
        assert!(logged[2].contains(":6: skipped: CRLF"));
        assert!(
            logged[3].contains(":7: skipped: unsupported option `command=\"ls\"`"),
            "{}",
            logged[3]
        );
    }
}
