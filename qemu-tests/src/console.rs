//! Reading a node's serial console: marks, their order, boot figures.

/// The console text with terminal escapes and carriage returns removed.
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `n` lines.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

/// Index of the first line containing `mark`.
pub fn line_of(text: &str, mark: &str) -> Option<usize> {
    text.lines().position(|line| line.contains(mark))
}

/// Seconds of the day in a spore journal line (`2026-…T06:56:12.127Z
/// spore: …`), wherever on the line the stamp starts (the first one shares
/// its line with the firmware's last words).
fn clock(line: &str) -> Option<f64> {
    let end = line.find("Z spore:")?;
    let time = line.get(end.checked_sub(12)?..end)?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Boot figures read off one boot's console.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootFigures {
    /// Kernel start to spore's first line (CLOCK_BOOTTIME in that line).
    pub kernel_to_spore: f64,
    /// spore's first line to the line saying the last of `services` is
    /// ready or succeeded.
    pub spore_to_ready: f64,
}

impl BootFigures {
    /// spore's share of kernel start to all services ready.
    pub fn spore_share(&self) -> f64 {
        self.spore_to_ready / (self.kernel_to_spore + self.spore_to_ready)
    }
}

/// Figures for the boot in `text` (the first one), once every service in
/// `services` reported `ready` or `succeeded`.
pub fn boot_figures(text: &str, services: &[&str]) -> Option<BootFigures> {
    let start_line = text
        .lines()
        .find(|l| l.contains("spore: spore ") && l.contains(" starting (pid 1, "))?;
    let kernel_to_spore: f64 = start_line
        .split(" starting (pid 1, ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let start = clock(start_line)?;
    let mut last = start;
    for service in services {
        let ready = text.lines().find(|l| {
            l.contains(&format!("spore: {service}: ready"))
                || l.contains(&format!("spore: {service}: succeeded"))
        })?;
        last = last.max(clock(ready)?);
    }
    Some(BootFigures {
        kernel_to_spore,
        spore_to_ready: last - start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_start_line_and_the_last_ready_service() {
        let console = "Booting from ROM..\u{1b}[2J2026-11-24T06:56:12.127Z spore: spore 0.1.0 starting (pid 1, 1.500 s after kernel start)\n2026-11-24T06:56:13.426Z spore: mycelium: ready (pid 80)\n2026-11-24T06:56:13.627Z spore: call-home: succeeded\n";
        let text = clean(console.as_bytes());
        assert!(!text.contains('\u{1b}'));
        let figures = boot_figures(&text, &["mycelium", "call-home"]).unwrap();
        assert!((figures.kernel_to_spore - 1.5).abs() < 1e-9);
        assert!((figures.spore_to_ready - 1.5).abs() < 1e-6);
        assert!((figures.spore_share() - 0.5).abs() < 1e-6);
        assert!(boot_figures(&text, &["absent"]).is_none());
    }
}
