//! `[[artifacts]]`: files a service needs that are not in the image, each
//! pinned by its SHA-256, handed to it in `$ARTIFACTS_DIRECTORY` under a
//! name of its own.

use crate::section::Section;
use crate::service::ArtifactRef;

use super::values::is_valid_name;

/// Reads every `[[artifacts]]` table; a bad one is reported and left out.
pub(super) fn read_artifacts(top: &mut Section<'_, '_, '_>) -> Vec<ArtifactRef> {
    let mut out: Vec<ArtifactRef> = Vec::new();
    for mut table in top.tables("artifacts") {
        if let Some(artifact) = read_one(&mut table) {
            if out.iter().any(|a| a.name == artifact.name) {
                let span = table.span();
                table.out_of_range("name", &span, "is given to two artifacts");
            } else {
                out.push(artifact);
            }
        }
        table.finish();
    }
    out
}

fn read_one(table: &mut Section<'_, '_, '_>) -> Option<ArtifactRef> {
    let name = table.string("name");
    if name.is_none() {
        table.missing("name");
    }
    let pin = table.string("sha256");
    if pin.is_none() {
        table.missing("sha256");
    }
    let urls = read_urls(table);
    let mode = match table.string("mode") {
        Some(mode) => match u32::from_str_radix(&mode.value, 8) {
            Ok(bits) if bits <= 0o777 && !mode.value.is_empty() => bits,
            _ => {
                table.out_of_range(
                    "mode",
                    &mode.span,
                    "must be an octal mode such as \"0755\" or \"0644\"",
                );
                return None;
            }
        },
        None => 0o444,
    };
    let name = name?;
    if !is_valid_name(&name.value) {
        table.out_of_range(
            "name",
            &name.span,
            "must be a file name (letters, digits, `-`, `_`, `.`; not starting with `.`)",
        );
        return None;
    }
    let pin = pin?;
    let Some(sha256) = sha256_hex(&pin.value) else {
        table.out_of_range(
            "sha256",
            &pin.span,
            "must be the file's SHA-256: 64 hex digits, as sha256sum prints it",
        );
        return None;
    };
    Some(ArtifactRef {
        name: name.value,
        sha256,
        urls: urls?,
        executable: mode & 0o111 != 0,
    })
}

/// The source that stands for the artifact cache of the node's beacon
/// (`[beacon] url` in spore.toml).
pub const BEACON: &str = "beacon";

/// `url`: one source or a list of them, tried in order: `http://…`,
/// `https://…`, or [`BEACON`].
fn read_urls(table: &mut Section<'_, '_, '_>) -> Option<Vec<String>> {
    let one = table
        .value("url")
        .is_some_and(|v| matches!(v.get_ref(), toml::de::DeValue::String(_)));
    let listed = if one {
        table.string("url").into_iter().collect()
    } else {
        table.strings("url")
    };
    let mut good = true;
    let mut out = Vec::with_capacity(listed.len());
    for url in listed {
        let known = url.value.starts_with("http://") || url.value.starts_with("https://");
        if (known && !url.value.chars().any(char::is_whitespace)) || url.value == BEACON {
            out.push(url.value);
        } else {
            table.out_of_range(
                "url",
                &url.span,
                "must be http://…, https://… or \"beacon\" (the artifact cache of the beacon in spore.toml)",
            );
            good = false;
        }
    }
    good.then_some(out)
}

/// 64 hex digits (a `sha256:` prefix allowed), lowercased.
fn sha256_hex(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}
