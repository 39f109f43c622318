//! The memory domain: validation, access (EDIT to write, VIEW to read), chunking and embedding
//! outside the transaction, one transaction per write, the vector index kept current. One
//! file per phase or use case; this module is the slice's public face.
pub use super::create::create_many;
pub use super::draft::{MemoryDraft, MAX_BATCH, MAX_CONTENT_CHARS, MAX_METADATA_BYTES, MAX_TAGS};
pub use super::read::{
    author_kind, count, cursor_of, filter_condition, find_live, get, list, live, matching,
    MemoryFilter,
};
pub use super::remove::{delete, sweep_expired};
pub use super::update::{update, MemoryPatch};
