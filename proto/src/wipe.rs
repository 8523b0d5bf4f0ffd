//! Requests that carried a secret are wiped once handled.

use zeroize::Zeroize;

/// Zeroes every string in `value` (a request that carried a secret, once
/// it has been handled). serde_json keeps no other copy of a string it
/// parsed without escapes.
pub fn wipe_strings(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe_strings),
        Value::Object(map) => map.values_mut().for_each(wipe_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiping_a_request_empties_every_string() {
        let mut value =
            serde_json::json!({ "name": "db", "value": "hunter2", "list": ["a", { "x": "y" }] });
        wipe_strings(&mut value);
        assert_eq!(
            value,
            serde_json::json!({ "name": "", "value": "", "list": ["", { "x": "" }] })
        );
    }
}
