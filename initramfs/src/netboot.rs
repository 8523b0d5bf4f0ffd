//! A netboot bundle for a TFTP or HTTP server: the kernel, the initramfs,
//! the UKI (for UEFI PXE/HTTP boot, which loads one EFI file) and iPXE
//! scripts. `boot.ipxe` serves every machine; a machine whose MAC address
//! `[netboot] hosts` lists gets `mac-52-54-00-12-34-01.ipxe`, the same
//! boot with `spore.hostname=NAME` on its command line (the name a node
//! takes first: see spore's hostname order). Point DHCP's filename (or
//! QEMU's `bootfile=`) at `boot.ipxe`.

use std::collections::BTreeMap;

/// Why a bundle cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetbootError {
    /// A `[netboot] hosts` key that is not a MAC address.
    #[error("[netboot] hosts: `{0}` is not a MAC address (aa:bb:cc:dd:ee:ff)")]
    Mac(String),
    /// A hostname that is not an RFC 1123 name.
    #[error("[netboot] hosts: `{name}` for {mac} is not a hostname: {why}")]
    Hostname {
        /// The MAC address.
        mac: String,
        /// The name given.
        name: String,
        /// Why it is not a hostname.
        why: String,
    },
    /// The command line would let a word of it run as iPXE commands.
    #[error("the kernel command line holds a newline or a `$`: it cannot go into an iPXE script")]
    Cmdline,
}

/// `52:54:00:12:34:01` as iPXE's `${net0/mac:hexhyp}` spells it.
fn hexhyp(mac: &str) -> Result<String, NetbootError> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !valid {
        return Err(NetbootError::Mac(mac.to_owned()));
    }
    Ok(parts.join("-").to_ascii_lowercase())
}

fn script(cmdline: &str) -> String {
    format!("kernel vmlinuz initrd=initrd.img {cmdline}\ninitrd initrd.img\nboot\n")
}

/// The bundle's files, `(name, bytes)`, sorted by name.
pub fn bundle(
    kernel: &[u8],
    initrd: &[u8],
    uki: &[u8],
    cmdline: &str,
    hosts: &BTreeMap<String, String>,
) -> Result<Vec<(String, Vec<u8>)>, NetbootError> {
    if cmdline.contains(['\n', '\r', '$']) {
        return Err(NetbootError::Cmdline);
    }
    let mut files = vec![
        (
            "boot.ipxe".to_owned(),
            format!(
                "#!ipxe\n# spore netboot: a machine listed by MAC address gets its own script\n# (its hostname on the command line); every other one boots as it is.\nchain --autofree mac-${{net0/mac:hexhyp}}.ipxe || goto plain\n:plain\n{}",
                script(cmdline)
            )
            .into_bytes(),
        ),
        ("initrd.img".to_owned(), initrd.to_vec()),
        ("spore.efi".to_owned(), uki.to_vec()),
        ("vmlinuz".to_owned(), kernel.to_vec()),
    ];
    for (mac, name) in hosts {
        rpc::hostname::check(name).map_err(|why| NetbootError::Hostname {
            mac: mac.clone(),
            name: name.clone(),
            why: why.to_string(),
        })?;
        files.push((
            format!("mac-{}.ipxe", hexhyp(mac)?),
            format!(
                "#!ipxe\n{}",
                script(&format!("{cmdline} spore.hostname={name}"))
            )
            .into_bytes(),
        ));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_machine_boots_and_listed_ones_get_their_names() {
        let hosts = BTreeMap::from([
            ("52:54:00:12:34:01".to_owned(), "edge1".to_owned()),
            ("52-54-00-AB-CD-EF".to_owned(), "edge2".to_owned()),
        ]);
        let files = bundle(b"k", b"i", b"u", "console=ttyS0 quiet", &hosts).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "boot.ipxe",
                "initrd.img",
                "mac-52-54-00-12-34-01.ipxe",
                "mac-52-54-00-ab-cd-ef.ipxe",
                "spore.efi",
                "vmlinuz"
            ]
        );
        let text = |name: &str| {
            String::from_utf8(files.iter().find(|(n, _)| n == name).unwrap().1.clone()).unwrap()
        };
        let boot = text("boot.ipxe");
        assert!(boot.starts_with("#!ipxe\n"));
        assert!(
            boot.contains("chain --autofree mac-${net0/mac:hexhyp}.ipxe || goto plain\n:plain\n")
        );
        assert!(boot.contains("kernel vmlinuz initrd=initrd.img console=ttyS0 quiet\n"));
        assert!(text("mac-52-54-00-12-34-01.ipxe").contains(
            "kernel vmlinuz initrd=initrd.img console=ttyS0 quiet spore.hostname=edge1\n"
        ));
        assert_eq!(
            files,
            bundle(b"k", b"i", b"u", "console=ttyS0 quiet", &hosts).unwrap()
        );
    }

    #[test]
    fn bad_hosts_and_command_lines_are_refused() {
        let one = |mac: &str, name: &str| BTreeMap::from([(mac.to_owned(), name.to_owned())]);
        assert_eq!(
            bundle(b"", b"", b"", "q", &one("52:54:00:12:34", "a")),
            Err(NetbootError::Mac("52:54:00:12:34".into()))
        );
        assert!(matches!(
            bundle(b"", b"", b"", "q", &one("52:54:00:12:34:01", "Bad Name")),
            Err(NetbootError::Hostname { .. })
        ));
        assert_eq!(
            bundle(b"", b"", b"", "q\nshell", &BTreeMap::new()),
            Err(NetbootError::Cmdline)
        );
    }
}
