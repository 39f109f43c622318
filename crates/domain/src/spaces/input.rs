//! A space's inputs and their validation: names, descriptions, labels, tags, chunking, the
//! duplicate threshold, the embedder. Pure functions; nothing here touches the database.

use uuid::Uuid;

use super::sharing::GrantLists;
use memspace_core::error::{AppError, AppResult};
use memspace_core::validate;
use memspace_core::vocab::AccessMode;
use memspace_core::vocab::DuplicatePolicy;

use memspace_core::limits::{self as limit, max_chunk_overlap};
pub use memspace_core::limits::{
    DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_LABELS,
    MAX_SPACE_TAGS as MAX_TAGS, MIN_CHUNK_SIZE,
};

/// How memories of a space are cut into chunks before embedding (sizes in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    pub size: i32,
    pub overlap: i32,
}

#[derive(Clone, Debug, Default)]
pub struct NewSpace {
    pub name: String,
    pub description: Option<String>,
    pub labels: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub access_mode: AccessMode,
    pub owner_id: Option<Uuid>,
    pub embedder: Option<String>,
    pub chunking: Option<Chunking>,
    pub workspace_id: Option<Uuid>,
    pub duplicate_policy: DuplicatePolicy,
    pub duplicate_threshold: Option<f64>,
    pub grants: GrantLists,
}

/// A change to a space; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct SpacePatch {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub labels: Option<Vec<(String, String)>>,
    pub tags: Option<Vec<String>>,
    pub access_mode: Option<AccessMode>,
    /// Immutable: accepted only when equal to the current value.
    pub owner_id: Option<Uuid>,
    pub embedder: Option<String>,
    pub chunking: Option<Chunking>,
    pub duplicate_policy: Option<DuplicatePolicy>,
    pub duplicate_threshold: Option<f64>,
    /// `grants` replaces every grant; each flat list replaces only its own slot (see
    /// [`GrantLists::replaced_slots`]).
    pub grants: GrantLists,
}

pub(crate) fn name(field: &str, value: &str) -> AppResult<String> {
    validate::name(field, value, limit::MAX_NAME_CHARS)
}

pub(crate) fn description(value: Option<String>) -> AppResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(d) => {
            validate::no_nul("description", &d)?;
            let len = d.chars().count();
            if len > limit::MAX_DESCRIPTION_CHARS {
                return Err(AppError::validation(
                    "description",
                    format!(
                        "must be at most {} characters (got {len})",
                        limit::MAX_DESCRIPTION_CHARS
                    ),
                ));
            }
            Ok(Some(d))
        }
    }
}

pub(crate) fn labels(
    field: &str,
    labels: Vec<(String, String)>,
) -> AppResult<Vec<(String, String)>> {
    if labels.len() > MAX_LABELS {
        return Err(AppError::validation(
            field,
            format!("at most {MAX_LABELS} labels (got {})", labels.len()),
        ));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(labels.len());
    for (i, (k, v)) in labels.into_iter().enumerate() {
        let key = validate::text(&format!("{field}[{i}].key"), &k, 1, 63)?;
        let value = validate::text(&format!("{field}[{i}].value"), &v, 0, 255)?;
        if out.iter().any(|(existing, _)| *existing == key) {
            return Err(AppError::validation(
                format!("{field}[{i}].key"),
                format!("duplicate label key {key:?}"),
            ));
        }
        out.push((key, value));
    }
    Ok(out)
}

pub(crate) fn tags(field: &str, tags: Vec<String>) -> AppResult<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(AppError::validation(
            field,
            format!("at most {MAX_TAGS} tags (got {})", tags.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.into_iter().enumerate() {
        let tag = validate::text(&format!("{field}[{i}]"), &t, 1, 64)?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

pub(crate) fn chunking(c: Chunking) -> AppResult<Chunking> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&c.size) {
        return Err(AppError::validation(
            "chunking.chunkSize",
            format!("must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"),
        ));
    }
    let max_overlap = max_chunk_overlap(c.size);
    if c.overlap < 0 || c.overlap > max_overlap {
        return Err(AppError::Validation {
            field: "chunking.chunkOverlap".into(),
            message: format!(
                "must be between 0 and {max_overlap}: chunkSize - chunkOverlap must be at least a quarter of chunkSize"
            ),
            details: Some(serde_json::json!({ "limit": max_overlap })),
        });
    }
    Ok(c)
}

pub(crate) fn duplicate_threshold(t: f64) -> AppResult<f64> {
    if !(0.5..=1.0).contains(&t) {
        return Err(AppError::validation(
            "duplicateThreshold",
            "must be between 0.5 and 1.0",
        ));
    }
    Ok(t)
}

pub(crate) fn embedder_name(
    registry: &memspace_engine::registry::Registry,
    name: Option<String>,
) -> AppResult<String> {
    let Some(name) = name.map(|n| n.trim().to_string()) else {
        return Ok(registry.default_name().to_string());
    };
    if let Some(e) = registry.get(&name) {
        return Ok(e.name().to_string());
    }
    let available = registry.names().join(", ");
    Err(AppError::validation(
        "embedder",
        match registry.unavailable(&name) {
            Some(u) => format!(
                "embedder {name:?} is not available here ({}); available: {available}",
                u.reason
            ),
            None => format!("unknown embedder {name:?}; available: {available}"),
        },
    ))
}

pub(crate) fn duplicate_name(name: &str) -> String {
    format!("a space named {name:?} already exists for this owner")
}
