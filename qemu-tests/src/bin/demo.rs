//! `spore-demo`: builds everything, boots five nodes under QEMU and a beacon
//! on the host, shows the nodes registering, runs a signed command on each
//! and powers them off, with progress on the terminal. Consoles and inputs
//! stay under `target/demo/`. `spore-demo --usb` boots the five from copies
//! of one USB disk image under UEFI firmware instead, as five servers
//! installed from one file.

use std::process::{ExitCode, Output};
use std::time::{Duration, Instant};

use qemu_tests::console::boot_figures;
use qemu_tests::Fleet;

const NODES: u8 = 5;

fn step(text: &str) {
    eprintln!("\n== {text}");
}

fn show(output: &Output) -> Result<(), String> {
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "sporectl failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn demo(usb: bool) -> Result<(), String> {
    step("building spore (static musl), the mycelium stand-in and sporectl; fetching the Debian kernel");
    let artifacts = qemu_tests::artifacts()?;
    eprintln!(
        "spore {} bytes, kernel {}",
        std::fs::metadata(&artifacts.spore)
            .map(|m| m.len())
            .unwrap_or(0),
        artifacts.vmlinuz.display()
    );
    let dir = artifacts.root.join("target/demo");
    let _ = std::fs::remove_dir_all(&dir);

    let mut fleet = if usb {
        step(&format!(
            "booting {NODES} machines under QEMU (TCG) with UEFI firmware (OVMF), each from a copy of one USB disk image; beacon on the host"
        ));
        Fleet::boot(&dir, NODES, false, false, |spec| {
            spec.usb_image = true;
            spec.named_by_key = true;
        })?
    } else {
        step(&format!(
            "booting {NODES} nodes under QEMU (TCG) on a shared segment, beacon on the host"
        ));
        Fleet::boot(&dir, NODES, true, false, |_| {})?
    };
    let started = fleet
        .nodes
        .first()
        .map(|n| n.vm.started)
        .unwrap_or_else(Instant::now);
    eprintln!(
        "beacon at {}; consoles in {}",
        fleet.beacon.url(),
        dir.display()
    );
    let mut done = vec![false; fleet.nodes.len()];
    while done.iter().any(|d| !d) {
        for (node, done) in fleet.nodes.iter().zip(done.iter_mut()) {
            if !*done
                && node
                    .vm
                    .console_text()
                    .contains("spore: call-home: succeeded")
            {
                *done = true;
                let console = node.vm.console_text();
                let name = qemu_tests::hostname_on(&console).unwrap_or(&node.spec.hostname);
                let address = fleet
                    .beacon
                    .node(name)
                    .and_then(|n| {
                        n.pointer("/registration/mycelium_address")
                            .and_then(|a| a.as_str())
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "?".into());
                eprintln!(
                    "  {name:<13} registered {:5.1} s after {} started, overlay {address}",
                    started.elapsed().as_secs_f64(),
                    if usb { "the firmware" } else { "QEMU" }
                );
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            let late = fleet
                .nodes
                .iter()
                .zip(&done)
                .find(|(_, d)| !**d)
                .map(|(n, _)| {
                    n.vm.failure(&format!("{} did not register", n.spec.hostname))
                });
            return Err(late.unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    fleet.wait_registered(Duration::from_secs(60))?;
    fleet.learn_names()?;

    step("the beacon's view: sporectl nodes --beacon URL");
    show(
        &fleet
            .operator
            .sporectl(&["nodes", "--beacon", &fleet.beacon.url()]),
    )?;

    step("a signed command on every node: sporectl --beacon URL --all list");
    // --yes: a fleet poweroff asks first, and the demo has no one to answer.
    let mut args = vec![
        "--beacon".to_owned(),
        fleet.beacon.url(),
        "--all".into(),
        "--yes".into(),
    ];
    args.extend(fleet.address_overrides());
    let on_every_node = |command: &str| {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.push(command);
        show(&fleet.operator.sporectl(&all))
    };
    on_every_node("list")?;
    on_every_node("info")?;

    step("boot figures, read off each console");
    for node in &fleet.nodes {
        if let Some(f) = boot_figures(&node.vm.console_text(), &["mycelium", "call-home"]) {
            eprintln!(
                "  {:<13} kernel start -> spore {:.2} s, spore -> all services ready {:.2} s ({:.0}% of the boot)",
                node.spec.hostname,
                f.kernel_to_spore,
                f.spore_to_ready,
                f.spore_share() * 100.0
            );
        }
    }

    step("powering off: sporectl --all --yes poweroff");
    on_every_node("poweroff")?;
    for node in &mut fleet.nodes {
        let status = node.vm.wait_exit(Duration::from_secs(120))?;
        let console = node.vm.console_text();
        let stopped: Vec<&str> = console
            .lines()
            .filter_map(|l| l.split("spore: ").nth(1))
            .filter(|l| l.ends_with(": stopped"))
            .map(|l| l.trim_end_matches(": stopped"))
            .collect();
        eprintln!(
            "  {:<13} QEMU {status}; stopped in order: {}",
            node.spec.hostname,
            stopped.join(" -> ")
        );
    }
    eprintln!(
        "\ndemo done in {:.1} s; consoles in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let usb = std::env::args().skip(1).any(|a| a == "--usb");
    match demo(usb) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}
