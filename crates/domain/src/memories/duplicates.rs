//! Duplicate detection and handling: what counts as the same memory, and what each policy does.
use sha2::{Digest, Sha256};

/// Normalised content: lower case, runs of whitespace as one space, trimmed.
pub fn normalise(content: &str) -> String {
    content
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The content hash that finds exact duplicates cheaply, whatever the embedder.
pub fn content_hash(content: &str) -> String {
    hex::encode(Sha256::digest(normalise(content).as_bytes()))
}

/// Metadata merged key by key (the newer value wins on a shared key).
pub fn merge_metadata(old: Option<&str>, new: Option<&str>) -> Option<String> {
    let parse = |s: Option<&str>| {
        s.and_then(|s| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s).ok())
    };
    match (parse(old), parse(new)) {
        (None, None) => None,
        (Some(o), None) => Some(serde_json::Value::Object(o).to_string()),
        (None, Some(n)) => Some(serde_json::Value::Object(n).to_string()),
        (Some(mut o), Some(n)) => {
            o.extend(n);
            Some(serde_json::Value::Object(o).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_ignore_case_and_spacing() {
        assert_eq!(content_hash("The  cat\tsat"), content_hash("the cat sat "));
        assert_ne!(
            content_hash("the cat sat"),
            content_hash("the cat sat down")
        );
    }

    #[test]
    fn metadata_merges_key_by_key_with_the_newer_value_winning() {
        let m = merge_metadata(Some(r#"{"a":1,"b":2}"#), Some(r#"{"b":3,"c":4}"#)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert_eq!(v, serde_json::json!({"a":1,"b":3,"c":4}));
        assert_eq!(merge_metadata(None, None), None);
    }
}
