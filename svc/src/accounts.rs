//! Who a service runs as: its `[sandbox]` user and groups looked up in the
//! node's `/etc/passwd` and `/etc/group` (the image's own files; no NSS),
//! and the privileges it keeps, ready to hand to the process between fork
//! and exec.

use std::path::Path;

use crate::service::{Principal, Sandbox};

/// A service's resolved identity and privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Its supplementary groups: those `/etc/group` lists the user in,
    /// then the file's `supplementary_groups`.
    pub groups: Vec<u32>,
    /// The capabilities it keeps, as a mask (bit N is capability N); None:
    /// as the kernel does for the uid (root all, others none).
    pub capabilities: Option<u64>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privileges: bool,
}

/// Why a service's identity could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// A user name that `/etc/passwd` does not have.
    #[error("user `{0}` is not in {1}")]
    NoUser(String, String),
    /// A group name that `/etc/group` does not have.
    #[error("group `{0}` is not in {1}")]
    NoGroup(String, String),
    /// A numeric user without a group: there is no primary group to use.
    #[error("user {0} is not in {1}, so it has no primary group: set `group`")]
    NoPrimaryGroup(u32, String),
    /// A file that could not be read.
    #[error("{0}: {1}")]
    Unreadable(String, String),
    /// More groups than a process is handed.
    #[error("{0} supplementary groups; at most {1}")]
    TooManyGroups(usize, usize),
}

/// The most groups handed to a process (see [`crate::parse::sandbox::MAX_GROUPS`]).
pub const MAX_GROUPS: usize = crate::parse::sandbox::MAX_GROUPS;

/// Resolves `sandbox` against the node's account files under `root`
/// (`/` on a node). None when the service runs as spore does (no
/// `[sandbox]`).
pub fn resolve(sandbox: &Sandbox, root: &Path) -> Result<Option<Identity>, AccountError> {
    resolve_in(sandbox, &root.join("etc/passwd"), &root.join("etc/group"))
}

/// [`resolve`] against the account files `passwd_path` and `group_path`
/// (an image's, before it is built); a file that cannot be read counts as
/// empty where only a name would need it, and is named in the error.
pub fn resolve_in(
    sandbox: &Sandbox,
    passwd_path: &Path,
    group_path: &Path,
) -> Result<Option<Identity>, AccountError> {
    if sandbox.is_empty() {
        return Ok(None);
    }
    // Read only when a name needs them (a numeric user needs neither,
    // except for its primary group).
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| AccountError::Unreadable(path.display().to_string(), e.to_string()))
    };
    let passwd = match &sandbox.user {
        Some(_) => read(passwd_path).unwrap_or_default(),
        None => String::new(),
    };
    let needs_groups = sandbox.user.is_some()
        || matches!(sandbox.group, Some(Principal::Name(_)))
        || sandbox
            .supplementary_groups
            .iter()
            .any(|g| matches!(g, Principal::Name(_)));
    let groups_text = if needs_groups {
        match read(group_path) {
            Ok(text) => text,
            Err(error) if sandbox.user.is_none() => return Err(error),
            Err(_) => String::new(),
        }
    } else {
        String::new()
    };
    let passwd_name = passwd_path.display().to_string();
    let group_name = group_path.display().to_string();
    // The user: its uid, its primary gid, its name (for its groups).
    let (uid, primary, user_name) = match &sandbox.user {
        None => (0, Some(0), Some("root".to_owned())),
        Some(Principal::Name(name)) => match user_by_name(&passwd, name) {
            Some((uid, gid)) => (uid, Some(gid), Some(name.clone())),
            None => return Err(AccountError::NoUser(name.clone(), passwd_name)),
        },
        Some(Principal::Id(uid)) => match user_by_uid(&passwd, *uid) {
            Some((name, gid)) => (*uid, Some(gid), Some(name)),
            None => (*uid, None, None),
        },
    };
    let gid = match &sandbox.group {
        Some(Principal::Id(gid)) => *gid,
        Some(Principal::Name(name)) => group_by_name(&groups_text, name)
            .ok_or_else(|| AccountError::NoGroup(name.clone(), group_name.clone()))?,
        None => primary.ok_or(AccountError::NoPrimaryGroup(uid, passwd_name))?,
    };
    let mut groups = Vec::new();
    if sandbox.user.is_some() {
        if let Some(user) = &user_name {
            groups.extend(groups_of(&groups_text, user));
        }
    }
    for group in &sandbox.supplementary_groups {
        let id = match group {
            Principal::Id(id) => *id,
            Principal::Name(name) => group_by_name(&groups_text, name)
                .ok_or_else(|| AccountError::NoGroup(name.clone(), group_name.clone()))?,
        };
        groups.push(id);
    }
    groups.sort_unstable();
    groups.dedup();
    if groups.len() > MAX_GROUPS {
        return Err(AccountError::TooManyGroups(groups.len(), MAX_GROUPS));
    }
    let capabilities = sandbox.capabilities.as_ref().map(|caps| {
        caps.iter()
            .filter(|&&c| c < 64)
            .fold(0u64, |mask, &c| mask | (1u64 << c))
    });
    Ok(Some(Identity {
        uid,
        gid,
        groups,
        capabilities,
        no_new_privileges: sandbox.no_new_privileges.unwrap_or(uid != 0),
    }))
}

/// The fields of each well-formed line of an account file.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 4)
}

/// `/etc/passwd`: `name:x:uid:gid:…` for `name`.
fn user_by_name(passwd: &str, name: &str) -> Option<(u32, u32)> {
    records(passwd).find_map(|f| {
        (f.first() == Some(&name))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

/// `/etc/passwd`: the name and primary gid of `uid`.
fn user_by_uid(passwd: &str, uid: u32) -> Option<(String, u32)> {
    records(passwd).find_map(|f| {
        let this: u32 = f.get(2)?.parse().ok()?;
        (this == uid).then(|| Some(((*f.first()?).to_owned(), f.get(3)?.parse().ok()?)))?
    })
}

/// `/etc/group`: `name:x:gid:members` for `name`.
fn group_by_name(group: &str, name: &str) -> Option<u32> {
    records(group).find_map(|f| (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?)
}

/// `/etc/group`: the groups that list `user` as a member.
fn groups_of<'a>(group: &'a str, user: &'a str) -> impl Iterator<Item = u32> + 'a {
    records(group).filter_map(move |f| {
        let members = f.get(3)?;
        members
            .split(',')
            .any(|m| m.trim() == user)
            .then(|| f.get(2)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www-data:/var/www:/usr/sbin/nologin\n# a comment\nbroken line\nmyc:x:1001:1001::/home/myc:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\naudio:x:29:myc,www\nnet:x:500:myc\nmyc:x:1001:\n";

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn sandbox(user: Option<Principal>, group: Option<Principal>) -> Sandbox {
        Sandbox {
            user,
            group,
            ..Sandbox::default()
        }
    }

    #[test]
    fn names_are_looked_up_in_the_nodes_account_files() {
        let dir = root();
        let myc = resolve(
            &sandbox(Some(Principal::Name("myc".into())), None),
            dir.path(),
        )
        .unwrap()
        .unwrap();
        assert_eq!((myc.uid, myc.gid), (1001, 1001));
        assert_eq!(myc.groups, [29, 500], "the groups that list it");
        assert!(myc.no_new_privileges, "on by default for a non-root user");
        assert_eq!(myc.capabilities, None);
        let with = Sandbox {
            user: Some(Principal::Name("www".into())),
            group: Some(Principal::Name("net".into())),
            supplementary_groups: vec![Principal::Id(7), Principal::Name("myc".into())],
            no_new_privileges: Some(false),
            capabilities: Some(vec![10, 12]),
            ..Sandbox::default()
        };
        let www = resolve(&with, dir.path()).unwrap().unwrap();
        assert_eq!((www.uid, www.gid), (33, 500));
        assert_eq!(www.groups, [7, 29, 1001]);
        assert!(!www.no_new_privileges);
        assert_eq!(www.capabilities, Some((1 << 10) | (1 << 12)));
        // Numbers need no entry, but then a group must be given.
        let numeric = sandbox(Some(Principal::Id(4242)), Some(Principal::Id(4242)));
        let n = resolve(&numeric, dir.path()).unwrap().unwrap();
        assert_eq!((n.uid, n.gid, n.groups.len()), (4242, 4242, 0));
        assert_eq!(
            resolve(&sandbox(Some(Principal::Id(4242)), None), dir.path()).unwrap_err(),
            AccountError::NoPrimaryGroup(4242, dir.path().join("etc/passwd").display().to_string())
        );
        // A root service that only drops capabilities stays root.
        let root_caps = Sandbox {
            capabilities: Some(vec![]),
            ..Sandbox::default()
        };
        let r = resolve(&root_caps, dir.path()).unwrap().unwrap();
        assert_eq!((r.uid, r.gid, r.capabilities), (0, 0, Some(0)));
        assert!(!r.no_new_privileges);
        assert_eq!(resolve(&Sandbox::default(), dir.path()).unwrap(), None);
    }

    #[test]
    fn unknown_names_are_errors_that_name_the_file() {
        let dir = root();
        let error = resolve(
            &sandbox(Some(Principal::Name("nobody2".into())), None),
            dir.path(),
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("user `nobody2` is not in "),
            "{error}"
        );
        assert!(error.to_string().ends_with("etc/passwd"), "{error}");
        let error = resolve(
            &sandbox(
                Some(Principal::Name("www".into())),
                Some(Principal::Name("wheel".into())),
            ),
            dir.path(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("group `wheel` is not in"),
            "{error}"
        );
    }
}
