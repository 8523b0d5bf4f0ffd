//! What a node's spore.toml needs from its image: the kernel modules it
//! names (`modules`), and for each `[[mount]]` the module of its
//! filesystem and of the bus its device is on. The builder carries the
//! first and refuses an image that lacks the others, so a node never boots
//! to wait 30 s for a disk it has no driver for.

/// A mount and the modules it cannot work without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountNeed {
    /// `LABEL=spore-state on /var/lib (ext4)`, for messages.
    pub mount: String,
    /// Module names, each needed.
    pub modules: Vec<String>,
}

/// Filesystems every kernel spore boots has built in (or that need no
/// module): nothing to check.
const BUILT_IN: &[&str] = &[
    "tmpfs",
    "ramfs",
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup2",
    "cgroup",
    "bpf",
    "debugfs",
    "tracefs",
    "securityfs",
    "efivarfs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "pstore",
];

/// The module names spore.toml's `modules` lists (names, or paths under
/// lib/modules/RELEASE/ as a built image writes them).
pub fn asked_modules(config: &toml::Table) -> Vec<String> {
    config
        .get("modules")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_str)
        .filter_map(|entry| {
            if entry.contains(".ko") {
                modtree::name_of(entry)
            } else {
                Some(modtree::canonical(entry))
            }
        })
        .collect()
}

/// The module a filesystem type lives in, when it needs one.
fn filesystem_module(fstype: &str) -> Option<String> {
    let fstype = fstype.trim();
    if fstype.is_empty() || BUILT_IN.contains(&fstype) {
        return None;
    }
    Some(
        match fstype {
            // ext4's driver serves ext2 and ext3 too.
            "ext2" | "ext3" | "ext4" => "ext4",
            "vfat" | "msdos" | "fat" => "vfat",
            other => other,
        }
        .to_owned(),
    )
}

/// The module of the bus a `/dev/` source is on, when the name says it.
fn bus_module(source: &str) -> Option<&'static str> {
    let device = source.strip_prefix("/dev/")?;
    if device.starts_with("vd") {
        Some("virtio_blk")
    } else if device.starts_with("nvme") {
        Some("nvme")
    } else if device.starts_with("sd") {
        Some("sd_mod")
    } else if device.starts_with("mmcblk") {
        Some("mmc_block")
    } else {
        None
    }
}

/// Each `[[mount]]` of spore.toml with the modules it needs (none for a
/// tmpfs and the like).
pub fn mount_needs(config: &toml::Table) -> Vec<MountNeed> {
    let mounts = config
        .get("mount")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_table);
    let text = |table: &toml::Table, key: &str| {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    mounts
        .filter_map(|mount| {
            let (source, target, fstype) = (
                text(mount, "source"),
                text(mount, "target"),
                text(mount, "type"),
            );
            let modules: Vec<String> = filesystem_module(&fstype)
                .into_iter()
                .chain(bus_module(&source).map(str::to_owned))
                .collect();
            (!modules.is_empty()).then(|| MountNeed {
                mount: format!("{source} on {target} ({fstype})"),
                modules,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn modules_are_read_as_names_whatever_their_spelling() {
        let config = table("modules = [\"xhci-pci\", \"kernel/fs/ext4/ext4.ko\", \"vfat\"]\n");
        assert_eq!(asked_modules(&config), ["xhci_pci", "ext4", "vfat"]);
        assert!(asked_modules(&table("hostname = \"n\"\n")).is_empty());
    }

    #[test]
    fn mounts_need_their_filesystem_and_bus_modules() {
        let config = table(
            "[[mount]]\nsource = \"LABEL=spore-state\"\ntarget = \"/var/lib\"\ntype = \"ext4\"\n[[mount]]\nsource = \"/dev/vdb\"\ntarget = \"/data\"\ntype = \"xfs\"\n[[mount]]\nsource = \"tmpfs\"\ntarget = \"/scratch\"\ntype = \"tmpfs\"\n[[mount]]\nsource = \"/dev/nvme0n1p1\"\ntarget = \"/boot/efi\"\ntype = \"vfat\"\n",
        );
        let needs = mount_needs(&config);
        assert_eq!(
            needs,
            [
                MountNeed {
                    mount: "LABEL=spore-state on /var/lib (ext4)".into(),
                    modules: vec!["ext4".into()],
                },
                MountNeed {
                    mount: "/dev/vdb on /data (xfs)".into(),
                    modules: vec!["xfs".into(), "virtio_blk".into()],
                },
                MountNeed {
                    mount: "/dev/nvme0n1p1 on /boot/efi (vfat)".into(),
                    modules: vec!["vfat".into(), "nvme".into()],
                },
            ]
        );
    }
}
