//! What a search asks and answers, shared by the in-process indexes and the pgvector store.
use uuid::Uuid;

/// One scored memory: its best chunk's ordinal and cosine similarity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VectorHit {
    pub memory_id: Uuid,
    pub ord: i32,
    pub score: f32,
}

/// A space of a search's scope and the `vector_version` the database holds for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScopeEntry {
    pub space_id: Uuid,
    pub version: i64,
}
