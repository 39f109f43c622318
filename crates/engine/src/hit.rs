//! What a search asks and answers, shared by the in-process indexes and the pgvector store.
use std::collections::HashSet;

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

/// The best hit of each memory, best first (ties by memory id, then chunk), at most `top`.
pub fn best_per_memory(mut hits: Vec<VectorHit>, top: usize) -> Vec<VectorHit> {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.memory_id.cmp(&b.memory_id))
            .then(a.ord.cmp(&b.ord))
    });
    let mut seen = HashSet::new();
    hits.retain(|h| seen.insert(h.memory_id));
    hits.truncate(top);
    hits
}
