//! `/proc/self/mountinfo` read once into its mounts (proc(5)): where each
//! is, what of its filesystem it shows, and its type, with the octal
//! escapes (`\040` for a space) undone.

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The directory of the filesystem shown here (field 4; `/` for the
    /// whole of it, a subtree for a bind mount or a cgroup namespace).
    pub root: String,
    /// Where it is mounted (field 5).
    pub point: String,
    /// The filesystem's type (the first field after ` - `).
    pub fstype: String,
}

/// The mounts of this process's namespace, in mount order; none when proc
/// is not there.
pub fn read() -> Vec<Mount> {
    parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The mounts of a mountinfo text; lines that are not well formed are
/// skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (mount, filesystem) = line.split_once(" - ")?;
            let mut fields = mount.split(' ').skip(3);
            let (root, point) = (fields.next()?, fields.next()?);
            Some(Mount {
                root: unescape(root),
                point: unescape(point),
                fstype: filesystem.split(' ').next()?.to_owned(),
            })
        })
        .collect()
}

/// A mountinfo field: spaces, tabs, newlines and backslashes come as
/// `\040`-style octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| byte == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(value) => {
                out.push(value);
                i += 4;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_read_with_their_escapes_undone() {
        let text = "24 30 0:22 / /proc rw,nosuid - proc proc rw\n\
            50 40 0:30 /machine/c1 /sys/fs/cgroup\\040x rw shared:9 - cgroup2 cgroup2 rw\n\
            not a mountinfo line\n";
        assert_eq!(
            parse(text),
            [
                Mount {
                    root: "/".into(),
                    point: "/proc".into(),
                    fstype: "proc".into()
                },
                Mount {
                    root: "/machine/c1".into(),
                    point: "/sys/fs/cgroup x".into(),
                    fstype: "cgroup2".into()
                },
            ]
        );
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
    }
}
