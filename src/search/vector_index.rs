//! The in-process vector index: per space, every chunk vector of its memories, loaded lazily from
//! the database on first search and kept current by the write path.
//!
//! Consistency: a space's entry is loaded and updated under its own write lock, and updates are
//! idempotent (keyed by memory id), so a write that races with a load is never lost: either the
//! load's query sees the committed row, or the update waits for the load and applies after it.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::RwLock;
use uuid::Uuid;

use super::embedder::{dot, from_bytes};
use crate::error::AppResult;
use entity::{chunk, memory};

/// The chunk vectors of one memory: (chunk ordinal, vector).
type MemoryVectors = Vec<(i32, Vec<f32>)>;

#[derive(Default)]
struct SpaceVectors {
    loaded: bool,
    /// The space's `vector_version` this index is known to be complete up to.
    version: i64,
    memories: HashMap<Uuid, MemoryVectors>,
}

/// One scored memory: its best chunk's ordinal and cosine similarity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VectorHit {
    pub memory_id: Uuid,
    pub ord: i32,
    pub score: f32,
}

#[derive(Default)]
pub struct VectorIndex {
    spaces: Mutex<HashMap<Uuid, Arc<RwLock<SpaceVectors>>>>,
}

impl VectorIndex {
    fn entry(&self, space_id: Uuid) -> Arc<RwLock<SpaceVectors>> {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        spaces.entry(space_id).or_default().clone()
    }

    /// Makes the space's vectors complete up to `db_version` (the space's `vector_version`
    /// read by the caller): a full load the first time, then only the memories written since
    /// (by this or any other replica).
    async fn ensure_current(
        &self,
        db: &impl ConnectionTrait,
        space_id: Uuid,
        db_version: i64,
    ) -> AppResult<Arc<RwLock<SpaceVectors>>> {
        let entry = self.entry(space_id);
        let current = {
            let g = entry.read().await;
            g.loaded && g.version >= db_version
        };
        if current {
            return Ok(entry);
        }
        let mut guard = entry.write().await;
        if !guard.loaded {
            let rows: Vec<(Uuid, i32, Vec<u8>)> = chunk::Entity::find()
                .select_only()
                .column(chunk::Column::MemoryId)
                .column(chunk::Column::Ord)
                .column(chunk::Column::Embedding)
                .filter(chunk::Column::SpaceId.eq(space_id))
                .into_tuple()
                .all(db)
                .await?;
            guard.memories.clear();
            for (memory_id, ord, bytes) in rows {
                guard
                    .memories
                    .entry(memory_id)
                    .or_default()
                    .push((ord, from_bytes(&bytes)));
            }
            guard.loaded = true;
            guard.version = db_version;
        } else if guard.version < db_version {
            let since = guard.version;
            let rows: Vec<(Uuid, i32, Vec<u8>)> = chunk::Entity::find()
                .select_only()
                .column(chunk::Column::MemoryId)
                .column(chunk::Column::Ord)
                .column(chunk::Column::Embedding)
                .filter(chunk::Column::SpaceId.eq(space_id))
                .filter(
                    chunk::Column::MemoryId.in_subquery(
                        Query::select()
                            .column(memory::Column::Id)
                            .from(memory::Entity)
                            .and_where(memory::Column::SpaceId.eq(space_id))
                            .and_where(memory::Column::IndexSeq.gt(since))
                            .to_owned(),
                    ),
                )
                .into_tuple()
                .all(db)
                .await?;
            let mut fresh: HashMap<Uuid, MemoryVectors> = HashMap::new();
            for (memory_id, ord, bytes) in rows {
                fresh
                    .entry(memory_id)
                    .or_default()
                    .push((ord, from_bytes(&bytes)));
            }
            guard.memories.extend(fresh);
            guard.version = db_version;
        }
        drop(guard);
        Ok(entry)
    }

    /// The `top` memories of a space closest to `query` (a unit vector), best first.
    pub async fn search(
        &self,
        db: &impl ConnectionTrait,
        space_id: Uuid,
        db_version: i64,
        query: &[f32],
        top: usize,
    ) -> AppResult<Vec<VectorHit>> {
        let entry = self.ensure_current(db, space_id, db_version).await?;
        let guard = entry.read().await;
        let mut hits: Vec<VectorHit> = guard
            .memories
            .iter()
            .filter_map(|(memory_id, chunks)| {
                chunks
                    .iter()
                    .filter(|(_, v)| v.len() == query.len())
                    .map(|(ord, v)| VectorHit {
                        memory_id: *memory_id,
                        ord: *ord,
                        score: dot(query, v),
                    })
                    .max_by(|a, b| a.score.total_cmp(&b.score))
            })
            .collect();
        drop(guard);
        let top = top.min(hits.len());
        if top == 0 {
            return Ok(Vec::new());
        }
        hits.select_nth_unstable_by(top - 1, |a, b| b.score.total_cmp(&a.score));
        hits.truncate(top);
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.memory_id.cmp(&b.memory_id))
        });
        Ok(hits)
    }

    /// Records the chunks of memories written by this process in the write that took the
    /// space to `version` (after it committed). Out-of-order or missed versions are left to the
    /// catch-up of the next search.
    pub async fn upsert(&self, space_id: Uuid, version: i64, memories: Vec<(Uuid, MemoryVectors)>) {
        let entry = self.entry(space_id);
        let mut guard = entry.write().await;
        if !guard.loaded {
            return; // the next search loads everything from the database
        }
        for (memory_id, chunks) in memories {
            guard.memories.insert(memory_id, chunks);
        }
        if version == guard.version + 1 {
            guard.version = version;
        }
    }

    /// Forgets deleted memories (after their transaction committed).
    pub async fn remove(&self, space_id: Uuid, memory_ids: &[Uuid]) {
        let entry = self.entry(space_id);
        let mut guard = entry.write().await;
        for id in memory_ids {
            guard.memories.remove(id);
        }
    }

    /// Drops a space's vectors (purged space, or a cache that may be stale).
    pub fn forget_space(&self, space_id: Uuid) {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        spaces.remove(&space_id);
    }

    /// Drops every space's vectors; they reload from the database on the next search.
    pub fn forget_all(&self) {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        spaces.clear();
    }
}
