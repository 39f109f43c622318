//! Every documented maximum of the API's inputs, in one place (README "Limits" lists them).
//! The slices validate against these constants; the GraphQL layer checks list lengths and
//! string lengths with [`list`] and [`chars`] before any SQL runs, so an oversized input is a
//! VALIDATION_ERROR naming its field, never a database error.
use crate::error::{AppError, AppResult};

// --- pages -----------------------------------------------------------------------------------

/// `first` when omitted.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// `first` is clamped to 1..=this (it never errors).
pub const MAX_PAGE_SIZE: u64 = 1000;
/// Characters of a pagination cursor (`after`); longer is INVALID_ARGUMENT like any bad cursor.
pub const MAX_CURSOR_CHARS: usize = 1024;

// --- names and text --------------------------------------------------------------------------

/// Names of spaces, roles, departments, agents, users, API keys and space tokens.
pub const MAX_NAME_CHARS: usize = 255;
/// Workspace names (unique per organization).
pub const MAX_WORKSPACE_NAME_CHARS: usize = 100;
/// Space descriptions.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Workspace descriptions.
pub const MAX_WORKSPACE_DESCRIPTION_CHARS: usize = 2000;
/// Agent handles.
pub const MAX_HANDLE_CHARS: usize = 63;
/// E-mail addresses.
pub const MAX_EMAIL_CHARS: usize = 320;
/// Label keys.
pub const MAX_LABEL_KEY_CHARS: usize = 63;
/// Label values.
pub const MAX_LABEL_VALUE_CHARS: usize = 255;
/// One tag (of a space, a memory, or a filter).
pub const MAX_TAG_CHARS: usize = 64;
/// Globs: `SpaceFilter.name`, `WorkspaceFilter.nameGlob`.
pub const MAX_GLOB_CHARS: usize = 255;
/// An embedder name.
pub const MAX_EMBEDDER_NAME_CHARS: usize = 128;
/// `AuditFilter.action`.
pub const MAX_AUDIT_ACTION_CHARS: usize = 64;
/// `ThreadMessageInput.role`.
pub const MAX_THREAD_ROLE_CHARS: usize = 64;
/// Thread ids and external ids of memories.
pub const MAX_THREAD_ID_CHARS: usize = 255;
pub const MAX_EXTERNAL_ID_CHARS: usize = 255;
/// A memory's content.
pub const MAX_CONTENT_CHARS: usize = 32_768;
/// A memory's metadata, serialised as JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// A search query.
pub const MAX_QUERY_CHARS: usize = 4096;

/// An id (a UUID has 36); longer ids are refused, never echoed back.
pub const MAX_ID_CHARS: usize = 64;

// --- lists -----------------------------------------------------------------------------------

/// Labels of a space, and of a `SpaceFilter`.
pub const MAX_LABELS: usize = 64;
/// Tags of a space.
pub const MAX_SPACE_TAGS: usize = 50;
/// Tags of a memory.
pub const MAX_MEMORY_TAGS: usize = 50;
/// Tags of a `SpaceFilter` or a `MemoryFilterInput`.
pub const MAX_FILTER_TAGS: usize = 50;
/// Items of each sharing list (`grants`, `accessUsers`, …, and shareSpace/unshareSpace's
/// `grants`).
pub const MAX_GRANTS_PER_LIST: usize = 1000;
/// Agent grants a space may hold.
pub const MAX_AGENT_GRANTS: usize = 10;
/// `SearchInput.spaceIds`.
pub const MAX_SEARCH_SPACES: usize = 1000;
/// `SearchInput.limit` is 1..=this.
pub const MAX_SEARCH_LIMIT: i32 = 100;
/// Memories of one `createMemories` call, and messages of one `addThreadMessages` call.
pub const MAX_BATCH: usize = 1000;

// --- chunking --------------------------------------------------------------------------------

/// Default chunk size and overlap of a new space.
pub const DEFAULT_CHUNK_SIZE: i32 = 800;
pub const DEFAULT_CHUNK_OVERLAP: i32 = 100;
/// `chunking.chunkSize` is MIN..=MAX characters.
pub const MIN_CHUNK_SIZE: i32 = 50;
pub const MAX_CHUNK_SIZE: i32 = 8000;
/// The step (chunkSize − chunkOverlap) must be at least chunkSize / this, rounded up: the
/// overlap is at most three quarters of the size, so a memory cannot be cut into
/// thousands of nearly identical chunks.
pub const MIN_STEP_DIVISOR: i32 = 4;
/// Chunks one memory may be cut into. A memory that would need more is refused
/// (VALIDATION_ERROR on `content`, with `chunks` and `limit`): content is never dropped from
/// search silently. With the default chunking no memory comes near it.
pub const MAX_CHUNKS_PER_MEMORY: usize = 256;

/// The largest overlap allowed for `size` (see [`MIN_STEP_DIVISOR`]).
pub fn max_chunk_overlap(size: i32) -> i32 {
    let min_step = (size + MIN_STEP_DIVISOR - 1) / MIN_STEP_DIVISOR;
    size - min_step
}

// --- checks ----------------------------------------------------------------------------------

/// VALIDATION_ERROR on `field` when `len` items exceed `max`.
pub fn list(field: &str, len: usize, max: usize) -> AppResult<()> {
    if len > max {
        return Err(AppError::Validation {
            field: field.to_string(),
            message: format!("at most {max} items (got {len})"),
            details: Some(serde_json::json!({ "limit": max, "measured": len })),
        });
    }
    Ok(())
}

/// VALIDATION_ERROR on `field` when `value` has more than `max` characters. Counts bytes first,
/// so a huge string is refused without walking it.
pub fn chars(field: &str, value: &str, max: usize) -> AppResult<()> {
    if value.len() <= max {
        return Ok(());
    }
    // A char is at most 4 bytes: beyond 4 × max bytes it is too long whatever it holds.
    let len = if value.len() > 4 * max {
        None
    } else {
        Some(value.chars().count())
    };
    match len {
        Some(n) if n <= max => Ok(()),
        n => Err(AppError::Validation {
            field: field.to_string(),
            message: match n {
                Some(n) => format!("must be at most {max} characters (got {n})"),
                None => format!("must be at most {max} characters"),
            },
            details: Some(serde_json::json!({ "limit": max })),
        }),
    }
}

/// [`chars`] for an optional value.
pub fn opt_chars(field: &str, value: Option<&str>, max: usize) -> AppResult<()> {
    value.map_or(Ok(()), |v| chars(field, v, max))
}

/// A list of strings: at most `max_items`, each at most `max_chars` (`field[i]` named).
pub fn strings(field: &str, items: &[String], max_items: usize, max_chars: usize) -> AppResult<()> {
    list(field, items.len(), max_items)?;
    for (i, s) in items.iter().enumerate() {
        chars(&format!("{field}[{i}]"), s, max_chars)?;
    }
    Ok(())
}

/// [`list`] for an optional list.
pub fn opt_list<T>(field: &str, value: Option<&[T]>, max: usize) -> AppResult<()> {
    value.map_or(Ok(()), |v| list(field, v.len(), max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_strings_at_the_maximum_pass_and_above_it_name_the_field() {
        assert!(list("spaceIds", 3, 3).is_ok());
        let err = list("spaceIds", 4, 3).unwrap_err();
        assert_eq!(err.code(), "VALIDATION_ERROR");
        assert!(err.message().starts_with("spaceIds:"));
        assert!(chars("name", "äöü", 3).is_ok(), "characters, not bytes");
        assert!(chars("name", "abcd", 3).is_err());
        assert!(chars("name", &"x".repeat(1_000_000), 3).is_err());
    }

    #[test]
    fn the_overlap_leaves_at_least_a_quarter_of_the_size() {
        assert_eq!(max_chunk_overlap(50), 37);
        assert_eq!(max_chunk_overlap(100), 75);
        assert_eq!(max_chunk_overlap(800), 600);
    }
}
