//! A peer's words echoed in an error are capped here; they are escaped
//! where they are written (a log, a terminal).

/// At most `max` bytes of `text` (cut at a character boundary, `…` after
/// a cut).
pub fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(capped("short", 256), "short");
        let long = "é".repeat(200);
        let cut = capped(&long, 255);
        assert_eq!(cut, format!("{}…", "é".repeat(127)));
    }
}
