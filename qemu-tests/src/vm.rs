//! One QEMU guest under TCG: the Debian kernel, a node's initramfs, user
//! networking with the RPC port forwarded to the host, optionally a second
//! NIC on a segment shared by every node (a `-netdev socket` multicast
//! hub), and the serial console captured to a file.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::artifacts::Artifacts;
use crate::console;

/// How to boot a guest.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// The node's image.
    pub initrd: PathBuf,
    /// Boot under UEFI (OVMF) from this disk image attached as a USB
    /// stick instead of `-kernel`/`-initrd`.
    pub usb_image: Option<PathBuf>,
    /// Boot over the network from this TFTP directory (QEMU's built-in
    /// server, `bootfile=boot.ipxe`) with no disk and no `-kernel`.
    pub netboot: Option<PathBuf>,
    /// Host port forwarded to the guest's RPC port 9999.
    pub rpc_port: u16,
    /// The shared segment's multicast port, when the node has a second NIC.
    pub segment_port: Option<u16>,
    /// The node's number (for distinct MAC addresses).
    pub index: u8,
    /// Where the serial console goes.
    pub console: PathBuf,
    /// More kernel command-line words (for `-kernel` boots).
    pub kernel_args: String,
    /// A raw disk image attached as virtio-blk (`/dev/vda`).
    pub disk: Option<PathBuf>,
    /// Let a guest reboot (QEMU resets and boots the same image again);
    /// otherwise a reboot ends QEMU like a power-off.
    pub allow_reboot: bool,
    /// The guest's hardware clock starts here (QEMU's `-rtc base=`), not
    /// at the host's time: a node whose clock is wrong at boot.
    pub rtc_base: Option<String>,
    /// The guest's memory in MiB (256 when None).
    pub memory_mb: Option<u32>,
}

/// A running guest; killed when dropped.
pub struct Vm {
    child: Child,
    /// The console file.
    pub console: PathBuf,
    /// Host port of the guest's RPC.
    pub rpc_port: u16,
    /// When QEMU was started.
    pub started: Instant,
}

impl Vm {
    /// Starts QEMU.
    pub fn boot(artifacts: &Artifacts, options: &BootOptions) -> Result<Vm, String> {
        let memory = options.memory_mb.unwrap_or(256).to_string();
        let console = std::fs::File::create(&options.console)
            .map_err(|e| format!("{}: {e}", options.console.display()))?;
        let mut command = Command::new(&artifacts.qemu);
        command
            // `-cpu max` offers RDRAND, as real nodes do: the kernel seeds its
            // random pool at once instead of making the first reader of
            // /dev/urandom (mycelium's key) wait about a second.
            .args([
                "-machine",
                "q35",
                "-cpu",
                "max",
                "-m",
                memory.as_str(),
                "-smp",
                "1",
                "-nographic",
            ]);
        match &options.usb_image {
            Some(image) => {
                // The firmware's variables are the guest's own (boot
                // entries it writes survive its reboots, as on a machine).
                let (code, template) = artifacts.ovmf()?;
                let vars = options.console.with_file_name("ovmf_vars.fd");
                std::fs::copy(template, &vars).map_err(|e| format!("{}: {e}", vars.display()))?;
                command
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={}",
                        code.display()
                    ))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=1,file={}",
                        vars.display()
                    ))
                    .args(["-device", "qemu-xhci,id=xhci"])
                    .arg("-drive")
                    .arg(format!(
                        "if=none,id=stick,format=raw,file={}",
                        image.display()
                    ))
                    .args(["-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0"])
                    // A hardware watchdog, as servers have: an update's
                    // trial arms it.
                    .args(["-device", "i6300esb"]);
            }
            // SeaBIOS boots the NIC's iPXE ROM first.
            None if options.netboot.is_some() => {
                command.args(["-boot", "n"]);
            }
            None => {
                command
                    .arg("-kernel")
                    .arg(&artifacts.vmlinuz)
                    .arg("-initrd")
                    .arg(&options.initrd)
                    .arg("-append")
                    .arg(
                        format!("console=ttyS0 panic=-1 quiet {}", options.kernel_args).trim_end(),
                    );
            }
        }
        // The NICs carry no boot ROM: the firmware boots the stick
        // instead of trying PXE first.
        let rom = if options.usb_image.is_some() {
            ",romfile="
        } else {
            ""
        };
        command.args([
            "-netdev",
            &format!(
                "user,id=wan,hostfwd=tcp:127.0.0.1:{}-:9999{}",
                options.rpc_port,
                options
                    .netboot
                    .as_ref()
                    .map(|dir| format!(",tftp={},bootfile=boot.ipxe", dir.display()))
                    .unwrap_or_default()
            ),
            "-device",
            &format!(
                "virtio-net-pci,netdev=wan,mac=52:54:00:12:34:{:02x}{rom}",
                options.index
            ),
        ]);
        if let Some(port) = options.segment_port {
            command.args([
                "-netdev",
                &format!("socket,id=seg,mcast=230.0.0.1:{port},localaddr=127.0.0.1"),
                "-device",
                &format!(
                    "virtio-net-pci,netdev=seg,mac=52:54:00:aa:00:{:02x}",
                    options.index
                ),
            ]);
        }
        if let Some(disk) = &options.disk {
            command.arg("-drive").arg(format!(
                "file={},format=raw,if=virtio,cache=writeback",
                disk.display()
            ));
        }
        if !options.allow_reboot {
            command.arg("-no-reboot");
        }
        if let Some(base) = &options.rtc_base {
            command.arg("-rtc").arg(format!("base={base}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(console.try_clone().map_err(|e| e.to_string())?)
            .stderr(console)
            .spawn()
            .map_err(|e| format!("{}: {e}", artifacts.qemu.display()))?;
        Ok(Vm {
            child,
            console: options.console.clone(),
            rpc_port: options.rpc_port,
            started: Instant::now(),
        })
    }

    /// The console so far, cleaned of terminal escapes.
    pub fn console_text(&self) -> String {
        console::clean(&std::fs::read(&self.console).unwrap_or_default())
    }

    /// Waits until the console contains `mark` at least `count` times;
    /// the error carries the last 50 console lines.
    pub fn wait_for_nth(
        &mut self,
        mark: &str,
        count: usize,
        limit: Duration,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let text = self.console_text();
            if text.matches(mark).count() >= count {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(&format!("QEMU exited ({status}) before `{mark}`")));
            }
            if start.elapsed() > limit {
                return Err(self.failure(&format!("`{mark}` (x{count}) not seen within {limit:?}")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for `mark` on the console.
    pub fn wait_for(&mut self, mark: &str, limit: Duration) -> Result<(), String> {
        self.wait_for_nth(mark, 1, limit)
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            if start.elapsed() > limit {
                return Err(self.failure(&format!("QEMU still running after {limit:?}")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A failure message with the last 50 console lines.
    pub fn failure(&self, what: &str) -> String {
        format!(
            "{what}\n--- last 50 console lines of {} ---\n{}",
            self.console.display(),
            console::tail(&self.console_text(), 50)
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
