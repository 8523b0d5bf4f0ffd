//! A beacon, an operator and some nodes booted under QEMU: what every boot
//! test and the demo start from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::artifacts::{artifacts, Artifacts};
use crate::beacon::Beacon;
use crate::node::NodeSpec;
use crate::operator::Operator;
use crate::overlay::Overlay;
use crate::vm::{BootOptions, Vm};

/// One booted node.
pub struct Node {
    /// What it is.
    pub spec: NodeSpec,
    /// Its QEMU.
    pub vm: Vm,
    /// Its node key (`ssh-ed25519 …`), made by ssh-keygen and baked in;
    /// for a node with a state disk, empty until read from the beacon
    /// ([`Fleet::learn_keys`]).
    pub key: String,
}

impl Node {
    /// sporectl against this node, its key pinned.
    pub fn sporectl(&self, operator: &Operator, args: &[&str]) -> std::process::Output {
        operator.on_node(self.vm.rpc_port, &self.key, args)
    }
}

/// Everything a boot test drives.
pub struct Fleet {
    /// Builds, kernel, QEMU.
    pub artifacts: &'static Artifacts,
    /// The nodes, in order.
    pub nodes: Vec<Node>,
    /// The beacon on the host.
    pub beacon: Beacon,
    /// The operator.
    pub operator: Operator,
    /// Where inputs, images and consoles live.
    pub dir: PathBuf,
    /// The operator's overlay, for a fleet booted on it.
    pub overlay: Option<Arc<Overlay>>,
}

impl Fleet {
    /// Starts a beacon and boots `count` nodes; `customize` adjusts each
    /// node's spec. With `segment`, the nodes share a second network and
    /// their mycelium stand-ins peer over it.
    pub fn boot(
        dir: &Path,
        count: u8,
        segment: bool,
        allow_reboot: bool,
        customize: impl Fn(&mut NodeSpec),
    ) -> Result<Fleet, String> {
        Fleet::boot_with(dir, count, segment, allow_reboot, false, customize)
    }

    /// Boots `count` nodes on a shared segment, all on the overlay with
    /// the operator ([`Overlay`]): each node's mycelium peers with the
    /// others and with the operator's, nodes call home to the beacon over
    /// the overlay, and the operator's sporectl reaches them there.
    pub fn boot_on_overlay(
        dir: &Path,
        count: u8,
        customize: impl Fn(&mut NodeSpec),
    ) -> Result<Fleet, String> {
        Fleet::boot_with(dir, count, true, false, true, customize)
    }

    fn boot_with(
        dir: &Path,
        count: u8,
        segment: bool,
        allow_reboot: bool,
        on_overlay: bool,
        customize: impl Fn(&mut NodeSpec),
    ) -> Result<Fleet, String> {
        let artifacts = artifacts()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut operator = Operator::new(dir, &artifacts.sporectl)?;
        let overlay = if on_overlay {
            Some(Arc::new(Overlay::start(&artifacts.mycelium, dir)?))
        } else {
            None
        };
        operator.overlay = overlay.clone();
        // Every image carries the fleet's enrollment credential and the
        // beacon lists only nodes that prove it: no manual step at boot.
        let enrollment = crate::Enrollment::new(dir)?;
        // The beacon keeps an artifact cache and takes the operator's
        // orders: the nodes fetch mycelium from it at first boot.
        let operator_keys = operator.public();
        let cache = dir.join("beacon-artifacts");
        let beacon = Beacon::start(
            &artifacts.sporectl,
            crate::free_port(),
            &dir.join("beacon-data"),
            &dir.join("beacon.log"),
            &enrollment.ca_public,
            overlay.clone(),
            &[
                "--authorized-keys".as_ref(),
                operator_keys.as_os_str(),
                "--artifacts".as_ref(),
                cache.as_os_str(),
            ],
        )?;
        let published = operator.sporectl(&[
            "--beacon",
            &beacon.url(),
            "artifact",
            "publish",
            &artifacts.mycelium.display().to_string(),
        ]);
        if !published.status.success() {
            return Err(format!(
                "publishing mycelium to the beacon: {}",
                String::from_utf8_lossy(&published.stderr)
            ));
        }
        let segment_port = segment.then(crate::free_port);
        // Every image first, then every boot: the nodes start together.
        let mut built: Vec<(NodeSpec, PathBuf, PathBuf, String, Option<PathBuf>)> = Vec::new();
        for index in 1..=count {
            let mut spec = NodeSpec::new(index, beacon.guest_url());
            spec.operator_peer = overlay.as_ref().map(|o| o.port);
            // A beacon reached only over the overlay cannot hand out the
            // overlay's daemon: those images carry it.
            spec.mycelium_in_image = overlay.is_some();
            if segment {
                spec.segment_peers = Some((1..=count).filter(|i| *i != index).collect());
            }
            customize(&mut spec);
            let node_dir = dir.join(&spec.hostname);
            // Nodes named by their keys boot copies of one image, as five
            // sticks written from one file.
            let shared = built
                .first()
                .filter(|_| spec.named_by_key)
                .map(|(_, _, image, key, _)| (image.clone(), key.clone()));
            let (initrd, key) = match shared {
                Some((image, key)) => {
                    std::fs::create_dir_all(&node_dir)
                        .map_err(|e| format!("{}: {e}", node_dir.display()))?;
                    let copy = node_dir.join(image.file_name().unwrap_or_default());
                    std::fs::copy(&image, &copy).map_err(|e| format!("{}: {e}", copy.display()))?;
                    (copy, key)
                }
                None => spec.build(
                    artifacts,
                    &node_dir,
                    &operator.public(),
                    &enrollment.image_key,
                )?,
            };
            let disk = spec
                .state_disk
                .then(|| spec.make_state_disk(&node_dir))
                .transpose()?;
            built.push((spec, node_dir, initrd, key, disk));
        }
        let mut nodes = Vec::new();
        for (spec, node_dir, initrd, key, disk) in built {
            let usb_image = spec.usb_image.then(|| initrd.clone());
            let netboot = spec.netboot.then(|| initrd.clone());
            let vm = Vm::boot(
                artifacts,
                &BootOptions {
                    initrd,
                    usb_image,
                    netboot,
                    rpc_port: crate::free_port(),
                    segment_port,
                    index: spec.index,
                    console: node_dir.join("console.log"),
                    kernel_args: spec.kernel_args.clone(),
                    allow_reboot,
                    disk,
                    rtc_base: spec.rtc_base.clone(),
                    memory_mb: spec.memory_mb,
                },
            )?;
            nodes.push(Node { spec, vm, key });
        }
        Ok(Fleet {
            artifacts,
            nodes,
            beacon,
            operator,
            dir: dir.to_path_buf(),
            overlay,
        })
    }

    /// Builds another image for node `index` (1-based) as its spec says
    /// after `change`, under `name` in the fleet's directory, and returns
    /// its unified kernel image: what `sporectl update` sends.
    pub fn build_update(
        &self,
        index: usize,
        name: &str,
        change: impl FnOnce(&mut NodeSpec),
    ) -> Result<PathBuf, String> {
        let mut spec = self
            .nodes
            .get(index.wrapping_sub(1))
            .ok_or_else(|| format!("no node {index}"))?
            .spec
            .clone();
        change(&mut spec);
        let dir = self.dir.join(name);
        spec.build(
            self.artifacts,
            &dir,
            &self.operator.public(),
            &self.dir.join("image_key"),
        )?;
        Ok(dir.join("node.efi"))
    }

    /// Waits until every node finished call-home and the beacon lists them
    /// all.
    pub fn wait_registered(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        for node in &mut self.nodes {
            let left = limit.saturating_sub(start.elapsed());
            node.vm.wait_for("spore: call-home: succeeded", left)?;
        }
        loop {
            let listed = self.beacon.nodes().map(|n| n.len()).unwrap_or(0);
            if listed >= self.nodes.len() {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "the beacon lists {listed} of {} nodes",
                    self.nodes.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Takes each node's name from its console (`spore: hostname NAME`),
    /// for nodes that named themselves after their keys.
    pub fn learn_names(&mut self) -> Result<(), String> {
        for node in &mut self.nodes {
            let console = node.vm.console_text();
            let name = crate::hostname_on(&console)
                .ok_or_else(|| format!("no hostname line on {}", node.vm.console.display()))?;
            node.spec.hostname = name.to_owned();
        }
        Ok(())
    }

    /// Takes each node's key from its registration with the beacon, as an
    /// operator does for nodes that made their own keys.
    pub fn learn_keys(&mut self) -> Result<(), String> {
        for node in &mut self.nodes {
            let record = self
                .beacon
                .node(&node.spec.hostname)
                .ok_or_else(|| format!("{} is not registered", node.spec.hostname))?;
            node.key = record
                .pointer("/registration/hero_proc_auth_pubkey")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("{}: no key in {record}", node.spec.hostname))?
                .to_owned();
        }
        Ok(())
    }

    /// `--address NAME=127.0.0.1:PORT` for every node, for a fleet not on
    /// the overlay: the host reaches nodes through their forwarded ports.
    pub fn address_overrides(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| {
                [
                    "--address".to_owned(),
                    format!("{}=127.0.0.1:{}", n.spec.hostname, n.vm.rpc_port),
                ]
            })
            .collect()
    }
}
