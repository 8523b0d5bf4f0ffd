//! Node hostnames as the beacon keys them and operators see them: RFC 1123
//! names, lowercase. Checked by call-home before it registers and by the
//! beacon before it looks at anything else, so a name can never carry a
//! newline or a terminal escape into a log or a table.

/// Why a name is not a hostname.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    /// Empty, or longer than 253 characters.
    #[error("a hostname has 1 to 253 characters")]
    Length,
    /// A label (between dots) is empty or longer than 63 characters.
    #[error("each dot-separated label has 1 to 63 characters")]
    LabelLength,
    /// A character outside `a-z`, `0-9`, `-` and the dots.
    #[error("only a-z, 0-9, '-' and '.' are allowed")]
    Character,
    /// A label starts or ends with `-`.
    #[error("a label may not start or end with '-'")]
    Hyphen,
}

/// Checks `name` against RFC 1123 (lowercase letters only).
pub fn check(name: &str) -> Result<(), HostnameError> {
    if name.is_empty() || name.len() > 253 {
        return Err(HostnameError::Length);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(HostnameError::LabelLength);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(HostnameError::Character);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostnameError::Hyphen);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1123_names_pass_and_everything_else_is_named() {
        for good in [
            "node1",
            "node-01",
            "a",
            "dc1.fleet.example",
            &"a".repeat(63),
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        assert_eq!(check(""), Err(HostnameError::Length));
        assert_eq!(check(&"a.".repeat(127)), Err(HostnameError::Length));
        assert_eq!(check(&"a".repeat(64)), Err(HostnameError::LabelLength));
        assert_eq!(check("a..b"), Err(HostnameError::LabelLength));
        assert_eq!(check("Node1"), Err(HostnameError::Character));
        assert_eq!(
            check("evil\nbeacon: accepted"),
            Err(HostnameError::Character)
        );
        assert_eq!(check("x\u{1b}[2J"), Err(HostnameError::Character));
        assert_eq!(check("-node"), Err(HostnameError::Hyphen));
        assert_eq!(check("node-"), Err(HostnameError::Hyphen));
    }
}
