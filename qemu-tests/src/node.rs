//! One node's image: spore.toml, the service chain (mycelium stand-in, then
//! call-home), the operator's key, a node key made by ssh-keygen, kernel
//! modules, busybox. Built with `spore-mkinitramfs`'s library.

use std::path::{Path, PathBuf};

use crate::artifacts::Artifacts;

/// The shared segment between nodes: 192.168.100.0/24, node `i` at .10+i.
pub const SEGMENT_PREFIX: &str = "192.168.100";

/// What one node is.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Its hostname.
    pub hostname: String,
    /// Its number (1..), for its segment address.
    pub index: u8,
    /// The beacon's base URL as the guest reaches it.
    pub beacon: String,
    /// The operator's overlay port on the host: the node's mycelium peers
    /// with `tcp://10.0.2.2:PORT` too.
    pub operator_peer: Option<u16>,
    /// Give it a second NIC on the shared segment, peering with these
    /// node numbers.
    pub segment_peers: Option<Vec<u8>>,
    /// Extra service files (name, TOML).
    pub extra_services: Vec<(String, String)>,
    /// Give it a disk (ext4, made by mkfs.ext4) mounted on /var/lib by a
    /// `[[mount]]` table, instead of baking a node key into the image: the
    /// node makes its key on first boot and keeps it, and mycelium's key,
    /// across reboots.
    pub state_disk: bool,
    /// Boot it as a real machine would: UEFI firmware (OVMF) starting the
    /// UKI from a USB stick that holds spore's disk image (its state
    /// partition mounted on /var/lib by label), no `-kernel`/`-initrd`.
    pub usb_image: bool,
    /// Leave the hostname out of the image: the node names itself after
    /// its key (`node-XXXXXXXX`), so copies of one image make distinct
    /// nodes. Such nodes share one image (built once, copied).
    pub named_by_key: bool,
    /// Boot it over the network with no disk: QEMU's TFTP serves the
    /// `--netboot` bundle, iPXE runs `boot.ipxe`, and the node's MAC
    /// address gives it its name on the kernel command line.
    pub netboot: bool,
    /// More kernel command-line words (`KEY=VALUE` ones reach spore's
    /// environment): given with `-append` to `-kernel` boots, and built
    /// into the UKI's command line of USB and netboot images.
    pub kernel_args: String,
    /// Its memory in MiB (256 when None).
    pub memory_mb: Option<u32>,
    /// Its hardware clock's start (QEMU `-rtc base=`), when not now.
    pub rtc_base: Option<String>,
    /// NTP servers for spore.toml's `[time] servers`.
    pub time_servers: Vec<String>,
    /// Carry mycelium in the image (`/usr/local/bin/mycelium`) instead of
    /// fetching it from the beacon: for a beacon reached only over the
    /// overlay, which needs mycelium first.
    pub mycelium_in_image: bool,
    /// Appended to its spore.toml (e.g. an `[update]` table).
    pub extra_config: String,
}

impl NodeSpec {
    /// Node `index` named `node{index}`, calling home to `beacon` (a base
    /// URL as the guest reaches it).
    pub fn new(index: u8, beacon: String) -> NodeSpec {
        NodeSpec {
            hostname: format!("node{index}"),
            index,
            beacon,
            operator_peer: None,
            segment_peers: None,
            extra_services: Vec::new(),
            state_disk: false,
            usb_image: false,
            named_by_key: false,
            netboot: false,
            kernel_args: String::new(),
            memory_mb: None,
            rtc_base: None,
            time_servers: Vec::new(),
            mycelium_in_image: false,
            extra_config: String::new(),
        }
    }

    /// Its first NIC's MAC address (QEMU's `mac=`).
    pub fn mac(&self) -> String {
        format!("52:54:00:12:34:{:02x}", self.index)
    }

    /// Its address on the shared segment.
    pub fn segment_address(&self) -> String {
        format!("{SEGMENT_PREFIX}.{}", 10 + u32::from(self.index))
    }

    fn spore_toml(&self) -> String {
        let mut text = if self.named_by_key || self.netboot || self.usb_image {
            String::new()
        } else {
            format!("hostname = \"{}\"\n\n", self.hostname)
        };
        text.push_str(
            "[[network]]\ninterface = \"eth0\"\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n",
        );
        if self.segment_peers.is_some() {
            text.push_str(&format!(
                "\n[[network]]\ninterface = \"eth1\"\naddress = \"{}/24\"\n",
                self.segment_address()
            ));
        }
        if self.keeps_state() {
            // A USB stick shows up after the controller and the bus are
            // probed: under TCG that takes seconds.
            text.push_str(
                "\n[[mount]]\nsource = \"LABEL=spore-state\"\ntarget = \"/var/lib\"\ntype = \"ext4\"\noptions = \"noatime,errors=remount-ro\"\nwait_ms = 30000\n",
            );
        }
        if self.usb_image {
            // The stick's ESP, where a machine's spore-node.toml is read.
            text.push_str(
                "\n[[mount]]\nsource = \"LABEL=SPORE-ESP\"\ntarget = \"/boot/efi\"\ntype = \"vfat\"\noptions = \"ro\"\nwait_ms = 30000\n",
            );
        }
        if !self.time_servers.is_empty() {
            let servers: Vec<String> = self
                .time_servers
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect();
            text.push_str(&format!("\n[time]\nservers = [{}]\n", servers.join(", ")));
        }
        text.push_str(&format!(
            "\n[rpc]\nlisten = [\"0.0.0.0:9999\", \"mycelium:9999\"]\n\n[beacon]\nurl = \"{}/api/v1/nodes/register\"\nallow_insecure_http = true\nretry_first_ms = 500\nretry_max_ms = 4000\n",
            self.beacon
        ));
        text.push_str(&self.extra_config);
        text
    }

    /// mycelium's service file: the daemon pinned by `pin` (the SHA-256
    /// of the stand-in), fetched from the beacon's cache at first boot, as
    /// the example node's is; or, with [`NodeSpec::mycelium_in_image`], the
    /// image's `/usr/local/bin/mycelium`.
    fn mycelium_toml(&self, pin: &str) -> String {
        let peers: Vec<String> = self
            .segment_peers
            .iter()
            .flatten()
            .map(|i| format!("tcp://{SEGMENT_PREFIX}.{}:9651", 10 + u32::from(*i)))
            .chain(
                self.operator_peer
                    .map(|port| format!("tcp://10.0.2.2:{port}")),
            )
            .collect();
        let peers = if peers.is_empty() {
            String::new()
        } else {
            format!("--peers {} ", peers.join(" "))
        };
        let (program, artifact) = if self.mycelium_in_image {
            ("/usr/local/bin/mycelium", String::new())
        } else {
            (
                "$ARTIFACTS_DIRECTORY/mycelium",
                format!("[[artifacts]]\nname = \"mycelium\"\nsha256 = \"{pin}\"\nurl = \"beacon\"\nmode = \"0755\"\n\n"),
            )
        };
        format!(
            "[service]\nname = \"mycelium\"\ndescription = \"Mycelium IPv6 overlay network daemon\"\nexec = \"{program} {peers}--key-file /var/lib/mycelium/key --tun-name mycelium --api-addr 127.0.0.1:8989 --disable-peer-discovery --log-format plain\"\nstate_dir = \"/var/lib/mycelium\"\n\n{artifact}[resources]\nmemory_min = \"16M\"\noom_score_adj = -900\n\n[health]\ntype = \"http\"\ntarget = \"http://127.0.0.1:8989/api/v1/admin\"\ninterval_ms = 10000\n"
        )
    }

    /// Whether the node keeps its state on a disk (its own key, made at
    /// first boot, survives reboots).
    pub fn keeps_state(&self) -> bool {
        self.state_disk || self.usb_image
    }

    /// The kernel modules its image carries (dependencies are added).
    fn modules(&self) -> Vec<String> {
        let mut modules = vec!["virtio_pci", "virtio_net", "tun"];
        if self.usb_image {
            // The stick: the xHCI controller, USB mass storage, SCSI disks.
            modules.extend(["xhci_pci", "usb_storage", "sd_mod"]);
            // The ESP: FAT with the kernel's default code page and charset;
            // the firmware's variables, for the boot slots.
            modules.extend(["vfat", "nls_cp437", "nls_ascii", "nls_utf8", "efivarfs"]);
            // The machine's watchdog (QEMU's i6300esb), armed during an
            // update's trial.
            modules.push("i6300esb");
        }
        if self.keeps_state() {
            // ext4 checksums its metadata with crc32c, which the kernel
            // would ask modprobe for; there is none, so load it first.
            modules.extend(["virtio_blk", "crc32c_generic", "ext4"]);
        }
        modules.into_iter().map(str::to_owned).collect()
    }

    /// The state disk's image: 64 MiB, ext4 labelled `spore-state` (the
    /// node mounts it by label), made once.
    pub fn make_state_disk(&self, dir: &Path) -> Result<PathBuf, String> {
        let disk = dir.join("state.ext4");
        if disk.exists() {
            return Ok(disk);
        }
        let file = std::fs::File::create(&disk).map_err(|e| format!("{}: {e}", disk.display()))?;
        file.set_len(64 << 20)
            .map_err(|e| format!("{}: {e}", disk.display()))?;
        crate::artifacts::run(
            "mkfs.ext4 (e2fsprogs)",
            std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", "spore-state"])
                .arg(&disk),
        )?;
        Ok(disk)
    }

    /// Writes the node's inputs under `dir` and builds its image (the
    /// initramfs, or for a USB node the disk image); returns the image and
    /// the node's public key (`ssh-ed25519 …`) to pin, which
    /// is empty for a node with a state disk: it makes its own key, which
    /// the beacon then publishes.
    pub fn build(
        &self,
        artifacts: &Artifacts,
        dir: &Path,
        operator_pub: &Path,
        enrollment_key: &Path,
    ) -> Result<(PathBuf, String), String> {
        let io = |e: std::io::Error| format!("{}: {e}", dir.display());
        let services = dir.join("services");
        std::fs::create_dir_all(&services).map_err(io)?;
        std::fs::write(dir.join("spore.toml"), self.spore_toml()).map_err(io)?;
        let mut service_files = vec![
            (
                "mycelium".to_owned(),
                self.mycelium_toml(&crate::artifacts::mycelium_pin()?),
            ),
            (
                "call-home".to_owned(),
                "[service]\nname = \"call-home\"\ndescription = \"Register node with beacon server\"\nexec = \"spore call-home\"\noneshot = true\n\n[resources]\noom_score_adj = -900\n\n[dependencies]\nrequires = [\"mycelium\"]\n".to_owned(),
            ),
        ];
        // An extra service named as one of these replaces it.
        for (name, text) in &self.extra_services {
            match service_files.iter_mut().find(|(n, _)| n == name) {
                Some(existing) => existing.1 = text.clone(),
                None => service_files.push((name.clone(), text.clone())),
            }
        }
        let mut listed = Vec::new();
        for (name, text) in &service_files {
            let path = services.join(format!("{name}.toml"));
            std::fs::write(&path, text).map_err(io)?;
            listed.push(path);
        }
        let (node_key, public) = if self.keeps_state() {
            (None, String::new())
        } else {
            let node_key = dir.join("node_key");
            if !node_key.exists() {
                crate::keygen(&node_key, &self.hostname)?;
            }
            let public = std::fs::read_to_string(node_key.with_extension("pub")).map_err(io)?;
            (Some(node_key), public)
        };
        let manifest = initramfs::Manifest {
            spore: artifacts.spore.clone(),
            config: Some(dir.join("spore.toml")),
            services: listed,
            authorized_keys: Some(operator_pub.to_path_buf()),
            passwd: None,
            group: None,
            node_key,
            enrollment_key: Some(enrollment_key.to_path_buf()),
            kernel: Some(initramfs::manifest::Kernel {
                tree: artifacts.kernel_tree.clone(),
                modules: self.modules(),
            }),
            disk: (self.usb_image || self.netboot)
                .then(|| -> Result<initramfs::manifest::Disk, String> {
                    Ok(initramfs::manifest::Disk {
                        kernel: Some(artifacts.vmlinuz.clone()),
                        cmdline: format!("console=ttyS0 panic=-1 quiet {}", self.kernel_args)
                            .trim_end()
                            .to_owned(),
                        stub: artifacts.efi_stub()?.to_path_buf(),
                        esp_mib: 64,
                        state_mib: 96,
                        disk_guid: None,
                    })
                })
                .transpose()?,
            netboot: self.netboot.then(|| initramfs::manifest::Netboot {
                hosts: [(self.mac(), self.hostname.clone())].into_iter().collect(),
            }),
            // mycelium is fetched from the beacon unless it is in the
            // image (see `mycelium_toml`).
            binaries: self
                .mycelium_in_image
                .then(|| initramfs::manifest::Binary {
                    source: artifacts.mycelium.clone(),
                    path: "/usr/local/bin/mycelium".into(),
                    links: Vec::new(),
                    mode: None,
                })
                .into_iter()
                .chain([initramfs::manifest::Binary {
                    source: artifacts.busybox.clone(),
                    path: "/bin/busybox".into(),
                    links: ["sh", "sleep", "echo", "cat", "ls", "ps", "date", "wc"]
                        .iter()
                        .map(|a| format!("/bin/{a}"))
                        .collect(),
                    mode: None,
                }])
                .collect(),
            compression: initramfs::manifest::Compression::Gzip,
            allow_dynamic: false,
        };
        let image = initramfs::build(&manifest).map_err(|e| e.to_string())?;
        if self.netboot {
            // What an operator puts on a TFTP server: the same code as
            // `spore-mkinitramfs --netboot`.
            let uki =
                initramfs::install::uki(&manifest, &image.bytes).map_err(|e| e.to_string())?;
            let files = initramfs::install::netboot(&manifest, &image.bytes, &uki)
                .map_err(|e| e.to_string())?;
            let tftp = dir.join("tftp");
            std::fs::create_dir_all(&tftp).map_err(io)?;
            for (name, bytes) in files {
                std::fs::write(tftp.join(name), bytes).map_err(io)?;
            }
            return Ok((tftp, public.trim().to_owned()));
        }
        if self.usb_image {
            // What an operator dd's to a stick: the same code as
            // `spore-mkinitramfs --disk`.
            let uki =
                initramfs::install::uki(&manifest, &image.bytes).map_err(|e| e.to_string())?;
            // The UKI alone too: what an update sends.
            std::fs::write(dir.join("node.efi"), &uki).map_err(io)?;
            // A machine of its own (not one of many copies) gets its name
            // the way an operator gives it: spore-node.toml dropped on the
            // stick's ESP.
            let node_file = format!("hostname = \"{}\"\n", self.hostname);
            let esp: Vec<(&str, &[u8])> = if self.named_by_key {
                Vec::new()
            } else {
                vec![("spore-node.toml", node_file.as_bytes())]
            };
            let disk =
                initramfs::install::disk_image(&manifest, &uki, &esp).map_err(|e| e.to_string())?;
            let path = dir.join("node.img");
            std::fs::write(&path, &disk).map_err(io)?;
            return Ok((path, public.trim().to_owned()));
        }
        let path = dir.join("initrd.gz");
        std::fs::write(&path, &image.bytes).map_err(io)?;
        Ok((path, public.trim().to_owned()))
    }
}
