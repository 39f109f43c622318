//! A memory as sent and as validated: every field checked, with its documented maximum.
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::duplicates::content_hash;
use memspace_core::error::{AppError, AppResult};
use memspace_core::validate;
use memspace_core::vocab::DuplicatePolicy;

pub use memspace_core::limits::{
    MAX_BATCH, MAX_CONTENT_CHARS, MAX_MEMORY_TAGS as MAX_TAGS, MAX_METADATA_BYTES,
};

/// A memory as a client sent it, before validation.
#[derive(Clone, Debug, Default)]
pub struct MemoryDraft {
    pub content: String,
    pub tags: Vec<String>,
    pub metadata: Option<serde_json::Value>,
    pub importance: Option<i32>,
    pub confidence: Option<f64>,
    /// As sent by the client; parsed (and checked to exist) in input order with the rest.
    pub agent_id: Option<String>,
    pub thread_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The id in the system it came from; a second write with the same one returns the first.
    pub external_id: Option<String>,
    /// Overrides the space's duplicate policy for this write.
    pub on_duplicate: Option<DuplicatePolicy>,
}

pub(super) fn agent_id(raw: Option<&str>) -> AppResult<Option<Uuid>> {
    raw.map(|a| {
        Uuid::parse_str(a.trim()).map_err(|_| AppError::validation("agentId", "is not a valid ID"))
    })
    .transpose()
}

/// A validated memory, ready to embed and store.
pub(super) struct Valid {
    pub(super) content: String,
    pub(super) tags: Vec<String>,
    pub(super) metadata: Option<String>,
    pub(super) importance: i32,
    pub(super) confidence: f64,
    pub(super) agent_id: Option<Uuid>,
    pub(super) thread_id: Option<String>,
    pub(super) expires_at: Option<DateTime<Utc>>,
    pub(super) external_id: Option<String>,
    pub(super) on_duplicate: Option<DuplicatePolicy>,
    pub(super) hash: String,
}

pub(super) fn content(value: &str) -> AppResult<String> {
    validate::no_nul("content", value)?;
    let len = value.chars().count();
    if value.trim().is_empty() {
        return Err(AppError::validation("content", "must not be blank"));
    }
    if len > MAX_CONTENT_CHARS {
        return Err(AppError::validation(
            "content",
            format!("must be at most {MAX_CONTENT_CHARS} characters (got {len})"),
        ));
    }
    Ok(value.to_string())
}

pub(super) fn tags(tags: Vec<String>) -> AppResult<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(AppError::validation(
            "tags",
            format!("at most {MAX_TAGS} tags (got {})", tags.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.into_iter().enumerate() {
        let t = validate::text(&format!("tags[{i}]"), &t, 1, 64)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

pub(super) fn metadata(value: Option<serde_json::Value>) -> AppResult<Option<String>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => {
            let text = v.to_string();
            // Serialised JSON escapes NUL as \u0000, which PostgreSQL's text cannot hold either.
            if text.contains("\\u0000") {
                return Err(AppError::validation(
                    "metadata",
                    "must not contain NUL characters",
                ));
            }
            if text.len() > MAX_METADATA_BYTES {
                return Err(AppError::validation(
                    "metadata",
                    format!(
                        "must be at most {MAX_METADATA_BYTES} bytes as JSON (got {})",
                        text.len()
                    ),
                ));
            }
            Ok(Some(text))
        }
        Some(_) => Err(AppError::validation("metadata", "must be a JSON object")),
    }
}

pub(super) fn importance(v: Option<i32>) -> AppResult<i32> {
    let v = v.unwrap_or(5);
    if !(1..=10).contains(&v) {
        return Err(AppError::validation(
            "importance",
            "must be between 1 and 10",
        ));
    }
    Ok(v)
}

pub(super) fn confidence(v: Option<f64>) -> AppResult<f64> {
    let v = v.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&v) {
        return Err(AppError::validation(
            "confidence",
            "must be between 0.0 and 1.0",
        ));
    }
    Ok(v)
}

pub(super) fn thread_id(v: Option<String>) -> AppResult<Option<String>> {
    v.map(|t| validate::text("threadId", &t, 1, 255))
        .transpose()
}

pub(super) fn expires_at(v: Option<DateTime<Utc>>) -> AppResult<Option<DateTime<Utc>>> {
    match v {
        Some(at) if at <= Utc::now() => {
            Err(AppError::validation("expiresAt", "must be in the future"))
        }
        other => Ok(other.map(|t| t.trunc_subsecs_micros())),
    }
}

trait TruncMicros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl TruncMicros for DateTime<Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        use chrono::SubsecRound;
        self.trunc_subsecs(6)
    }
}

pub(super) fn validate_draft(d: MemoryDraft) -> AppResult<Valid> {
    Ok(Valid {
        content: content(&d.content)?,
        tags: tags(d.tags)?,
        metadata: metadata(d.metadata)?,
        importance: importance(d.importance)?,
        confidence: confidence(d.confidence)?,
        agent_id: agent_id(d.agent_id.as_deref())?,
        thread_id: thread_id(d.thread_id)?,
        expires_at: expires_at(d.expires_at)?,
        external_id: d
            .external_id
            .map(|e| validate::text("externalId", &e, 1, 255))
            .transpose()?,
        on_duplicate: d.on_duplicate,
        hash: content_hash(&d.content),
    })
}

/// Adds the 0-based batch position to an error (`extensions.index`).
pub(super) fn at_index(err: AppError, index: usize) -> AppError {
    match err {
        AppError::Validation {
            field,
            message,
            details,
        } => {
            let mut map = match details {
                Some(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            map.insert("index".into(), serde_json::json!(index));
            AppError::Validation {
                field,
                message: format!("item {index}: {message}"),
                details: Some(serde_json::Value::Object(map)),
            }
        }
        other => other,
    }
}
