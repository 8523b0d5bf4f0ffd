//! Where a beacon keeps its records (a redb file, or a PostgreSQL URL),
//! and such a URL as the log may show it: never its password.

use std::path::{Path, PathBuf};

/// Where the records are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A redb file (a single beacon).
    File(PathBuf),
    /// A PostgreSQL database (`postgres://…` or `postgresql://…`), shared
    /// by several replicas.
    Postgres {
        /// Its URL.
        url: String,
        /// A file (0600) holding the password, if the URL has none.
        password_file: Option<PathBuf>,
        /// CA certificates (PEM) for `sslmode=require`, else the system's.
        ca_file: Option<PathBuf>,
    },
}

impl Location {
    /// `--store VALUE`: a PostgreSQL URL or a redb file; without it, the
    /// file `beacon.redb` under `data_dir`.
    pub fn choose(store: Option<&str>, data_dir: &Path) -> Result<Self, String> {
        match store {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres {
                    url: url.to_owned(),
                    password_file: None,
                    ca_file: None,
                })
            }
            Some(other) if other.contains("://") => Err(format!(
                "--store {}: a postgres:// URL or a file path",
                without_password(other)
            )),
            Some(path) => Ok(Location::File(PathBuf::from(path))),
            None => Ok(Location::File(data_dir.join("beacon.redb"))),
        }
    }

    /// For the log: the file, or the database without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Postgres { url, .. } => without_password(url),
        }
    }
}

/// Whether `url` carries a password, however it is spelled: in the user
/// info (`postgres://user:secret@…`) or as a query parameter whose name,
/// percent-decoded as the driver decodes it, is `password`
/// (`?password=`, `?pass%77ord=`, `?%70assword=`). With the driver built
/// in, its own parser is asked too, so nothing it would log in with is
/// missed.
pub fn has_password(url: &str) -> bool {
    #[cfg(feature = "postgres")]
    if url
        .parse::<postgres::Config>()
        .is_ok_and(|config| config.get_password().is_some())
    {
        return true;
    }
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let (authority, _) = split_authority(rest);
    let in_user_info = authority
        .rsplit_once('@')
        .is_some_and(|(user_info, _)| user_info.contains(':'));
    let in_query = rest.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| percent_decoded(pair.split('=').next().unwrap_or_default()) == b"password")
    });
    in_user_info || in_query
}

/// For the log: `url` with no user info and no query values
/// (`postgres://host:5432/db?sslmode=…`): neither a password nor anything
/// else that may be one reaches a log line.
pub(super) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let (authority, path) = split_authority(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let mut shown = format!("{scheme}://{host}{path}");
    if let Some(query) = query {
        let names: Vec<String> = query
            .split('&')
            .map(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                format!("{}=…", String::from_utf8_lossy(&percent_decoded(name)))
            })
            .collect();
        shown.push('?');
        shown.push_str(&names.join("&"));
    }
    escape::field(&shown)
}

/// `rest` (what follows `scheme://`) split into its authority and the path
/// and query after it.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest.split_at(end)
}

/// `text` with `%XX` sequences decoded (and `+` left as it is, as the
/// driver leaves it).
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(value)) => {
                out.push(value);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
