//! `[sandbox]`: the user and groups a service runs as and the privileges
//! it keeps, named as systemd's settings are (`user` is `User=`,
//! `capabilities` is `AmbientCapabilities=` with the bounding set cut to
//! match).

use toml::de::DeValue;

use crate::section::Section;
use std::path::PathBuf;

use crate::service::{Principal, ProtectSystem, Sandbox};

/// Supplementary groups a service may have: the kernel's NGROUPS_MAX is
/// far more, but spore hands them to a process between fork and exec in
/// a fixed array.
pub const MAX_GROUPS: usize = 32;

/// The capabilities by name, as `capabilities(7)` numbers them.
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Reads `[sandbox]`; absent, the service runs as spore does.
pub(super) fn read_sandbox(top: &mut Section<'_, '_, '_>) -> Sandbox {
    let Some(mut table) = top.table("sandbox") else {
        return Sandbox::default();
    };
    let user = principal(&mut table, "user");
    let group = principal(&mut table, "group");
    let supplementary_groups = groups(&mut table);
    let no_new_privileges = table
        .value("no_new_privileges")
        .map(|v| matches!(v.get_ref(), DeValue::Boolean(true)));
    if no_new_privileges.is_some() {
        // Checked for its type (a non-boolean is reported there).
        table.flag("no_new_privileges");
    }
    let capabilities = capabilities(&mut table);
    let private_tmp = table.flag("private_tmp");
    let protect_system = protect_system(&mut table);
    let read_only_paths = paths(&mut table, "read_only_paths");
    let inaccessible_paths = paths(&mut table, "inaccessible_paths");
    table.finish();
    Sandbox {
        user,
        group,
        supplementary_groups,
        no_new_privileges,
        capabilities,
        private_tmp,
        protect_system,
        read_only_paths,
        inaccessible_paths,
    }
}

/// A user or group: a name (letters, digits, `_`, `-`, `.`; not starting
/// with `-`) or a number below 2^32 - 1.
fn principal(table: &mut Section<'_, '_, '_>, key: &'static str) -> Option<Principal> {
    let value = table.value(key)?;
    let span = value.span();
    let parsed = principal_of(value.get_ref());
    if parsed.is_none() {
        table.out_of_range(
            key,
            &span,
            "must be a name (letters, digits, _ - .) or a number below 4294967295",
        );
    }
    parsed
}

/// A TOML value as a user or group: a name, or a number (not -1, which
/// means "no change" to the kernel).
fn principal_of(value: &DeValue<'_>) -> Option<Principal> {
    match value {
        DeValue::Integer(i) => u32::from_str_radix(i.as_str(), i.radix())
            .ok()
            .filter(|&id| id != u32::MAX)
            .map(Principal::Id),
        DeValue::String(text) => name(text).map(|n| Principal::Name(n.to_owned())),
        _ => None,
    }
}

/// `text` when it is a plausible account name.
fn name(text: &str) -> Option<&str> {
    let ok = !text.is_empty()
        && text.len() <= 32
        && !text.starts_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    ok.then_some(text)
}

/// `supplementary_groups`: an array of names or numbers.
fn groups(table: &mut Section<'_, '_, '_>) -> Vec<Principal> {
    let key = "supplementary_groups";
    let Some(value) = table.value(key) else {
        return Vec::new();
    };
    let span = value.span();
    let bad = "must be an array of group names or numbers";
    let DeValue::Array(items) = value.get_ref() else {
        table.out_of_range(key, &span, bad);
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        match principal_of(item.get_ref()) {
            Some(p) if !out.contains(&p) => out.push(p),
            Some(_) => {}
            None => table.out_of_range(key, &item.span(), bad),
        }
    }
    if out.len() > MAX_GROUPS {
        table.out_of_range(key, &span, "may list at most 32 groups");
        out.truncate(MAX_GROUPS);
    }
    out
}

/// `capabilities`: names from `capabilities(7)` (`CAP_NET_BIND_SERVICE`,
/// or `NET_BIND_SERVICE`), as their numbers; `[]` keeps none.
fn capabilities(table: &mut Section<'_, '_, '_>) -> Option<Vec<u8>> {
    let key = "capabilities";
    let value = table.value(key)?;
    if !matches!(value.get_ref(), DeValue::Array(_)) {
        let span = value.span();
        table.out_of_range(key, &span, "must be an array of capability names");
        return None;
    }
    let mut out = Vec::new();
    for name in table.strings(key) {
        let upper = name.value.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        match CAPABILITIES.iter().position(|&c| c == full) {
            Some(number) => {
                let number = u8::try_from(number).unwrap_or(u8::MAX);
                if !out.contains(&number) {
                    out.push(number);
                }
            }
            None => table.out_of_range(
                key,
                &name.span,
                &format!(
                    "`{}` is not a capability (capabilities(7): CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, …)",
                    name.value
                ),
            ),
        }
    }
    out.sort_unstable();
    Some(out)
}

/// `protect_system`: `true`, `false`, `"full"` or `"strict"`.
fn protect_system(table: &mut Section<'_, '_, '_>) -> ProtectSystem {
    let key = "protect_system";
    let Some(value) = table.value(key) else {
        return ProtectSystem::No;
    };
    match value.get_ref() {
        DeValue::Boolean(true) => ProtectSystem::Yes,
        DeValue::Boolean(false) => ProtectSystem::No,
        DeValue::String(text) if text.as_ref() == "full" => ProtectSystem::Full,
        DeValue::String(text) if text.as_ref() == "strict" => ProtectSystem::Strict,
        _ => {
            let span = value.span();
            table.out_of_range(
                key,
                &span,
                "must be true (/usr, /boot read-only), \"full\" (/etc too), \"strict\" (all but /dev, /proc, /sys and its state_dirs) or false",
            );
            ProtectSystem::No
        }
    }
}

/// An array of absolute paths without `..` (each read as written).
fn paths(table: &mut Section<'_, '_, '_>, key: &'static str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in table.strings(key) {
        let p = PathBuf::from(&path.value);
        let clean = p.is_absolute()
            && p != std::path::Path::new("/")
            && !p
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
        if !clean {
            table.out_of_range(
                key,
                &path.span,
                &format!(
                    "`{}` must be an absolute path other than /, without ..",
                    path.value
                ),
            );
        } else if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}
