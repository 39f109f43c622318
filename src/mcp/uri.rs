//! Resource URIs of spaces: `memspace://spaces/{id}`.
use uuid::Uuid;

use memspace_core::error::{AppError, AppResult};

const PREFIX: &str = "memspace://spaces/";

pub fn uri_of(space_id: Uuid) -> String {
    format!("{PREFIX}{space_id}")
}

/// The space a resource URI names; anything else is NOT_FOUND (no such resource).
pub fn space_of(uri: &str) -> AppResult<Uuid> {
    uri.strip_prefix(PREFIX)
        .and_then(|id| Uuid::parse_str(id.trim_end_matches('/')).ok())
        .ok_or_else(|| AppError::not_found("resource", uri))
}
