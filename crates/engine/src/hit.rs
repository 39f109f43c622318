//! What a vector search answers, shared by the in-process index and the pgvector store.
use uuid::Uuid;

/// One scored memory: its best chunk's ordinal and cosine similarity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VectorHit {
    pub memory_id: Uuid,
    pub ord: i32,
    pub score: f32,
}
