//! Readers of single values several sections share: a choice among
//! words, a path, a service name.

use std::path::PathBuf;

use crate::error::ErrorKind;
use crate::section::Section;
use crate::suggest::nearest;

/// True when `name` can be a file name and a word in a plan.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads `key` as one of `options`, reporting an unknown value with the
/// nearest option.
pub(super) fn choice<T: Copy>(
    section: &mut Section<'_, '_, '_>,
    key: &'static str,
    options: &[(&'static str, T)],
) -> Option<T> {
    let value = section.string(key)?;
    if let Some((_, chosen)) = options.iter().find(|(word, _)| *word == value.value) {
        return Some(*chosen);
    }
    let words: Vec<&'static str> = options.iter().map(|(word, _)| *word).collect();
    section.ctx().error(
        &value.span,
        ErrorKind::UnknownValue {
            field: key.to_owned(),
            suggestion: nearest(&value.value, &words).map(str::to_owned),
            value: value.value,
            expected: words,
        },
    );
    None
}

pub(super) fn read_path(section: &mut Section<'_, '_, '_>, key: &'static str) -> Option<PathBuf> {
    let value = section.string(key)?;
    if value.value.is_empty() {
        section.out_of_range(key, &value.span, "must not be empty");
        return None;
    }
    Some(PathBuf::from(value.value))
}
