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

use crate::embedder::{dot, from_bytes};
use entity::{chunk, memory};
use memspace_core::error::AppResult;

/// The chunk vectors of one memory: (chunk ordinal, vector).
type MemoryVectors = Vec<(i32, Vec<f32>)>;

/// One space's chunk vectors in one flat, cache-friendly array (row-major), with the
/// (memory, ordinal) of each row and the rows of each memory for replacement and removal.
#[derive(Default)]
struct SpaceVectors {
    loaded: bool,
    /// The space's `vector_version` this index is known to be complete up to.
    version: i64,
    dim: usize,
    data: Vec<f32>,
    rows: Vec<(Uuid, i32)>,
    by_memory: HashMap<Uuid, Vec<usize>>,
}

impl SpaceVectors {
    fn clear(&mut self) {
        self.data.clear();
        self.rows.clear();
        self.by_memory.clear();
    }

    fn remove_memory(&mut self, id: &Uuid) {
        let Some(mut rows) = self.by_memory.remove(id) else {
            return;
        };
        rows.sort_unstable_by(|a, b| b.cmp(a));
        for row in rows {
            let last = self.rows.len() - 1;
            if row != last {
                let (moved, _) = self.rows[last];
                self.rows.swap(row, last);
                let (head, tail) = self.data.split_at_mut(last * self.dim);
                head[row * self.dim..(row + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
                if let Some(list) = self.by_memory.get_mut(&moved) {
                    for r in list.iter_mut() {
                        if *r == last {
                            *r = row;
                        }
                    }
                }
            }
            self.rows.pop();
            self.data.truncate(last * self.dim);
        }
    }

    /// Replaces a memory's vectors (vectors of another dimension than the space's are ignored).
    fn put(&mut self, id: Uuid, chunks: MemoryVectors) {
        self.remove_memory(&id);
        for (ord, v) in chunks {
            if self.dim == 0 {
                self.dim = v.len();
            }
            if v.len() != self.dim || v.is_empty() {
                continue;
            }
            let row = self.rows.len();
            self.rows.push((id, ord));
            self.data.extend_from_slice(&v);
            self.by_memory.entry(id).or_default().push(row);
        }
    }

    /// The best chunk of each of the `top` best memories.
    fn top(&self, query: &[f32], top: usize) -> Vec<VectorHit> {
        if self.dim == 0 || query.len() != self.dim || top == 0 {
            return Vec::new();
        }
        let mut scored: Vec<(f32, usize)> = self
            .data
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(row, v)| (dot(query, v), row))
            .collect();
        // Enough rows that `top` distinct memories survive the per-memory dedup in practice.
        let keep = (top * 4 + 16).min(scored.len());
        if keep < scored.len() {
            scored.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(keep);
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut seen = std::collections::HashSet::new();
        let mut hits = Vec::with_capacity(top);
        for (score, row) in scored {
            let (memory_id, ord) = self.rows[row];
            if seen.insert(memory_id) {
                hits.push(VectorHit {
                    memory_id,
                    ord,
                    score,
                });
                if hits.len() == top {
                    break;
                }
            }
        }
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.memory_id.cmp(&b.memory_id))
        });
        hits
    }
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
            guard.clear();
            let mut grouped: HashMap<Uuid, MemoryVectors> = HashMap::new();
            for (memory_id, ord, bytes) in rows {
                grouped
                    .entry(memory_id)
                    .or_default()
                    .push((ord, from_bytes(&bytes)));
            }
            for (id, chunks) in grouped {
                guard.put(id, chunks);
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
            for (id, chunks) in fresh {
                guard.put(id, chunks);
            }
            guard.version = db_version;
        }
        drop(guard);
        Ok(entry)
    }

    /// The `top` memories of a space closest to `query` (a unit vector), best first. The
    /// scan runs on the blocking pool so a large space never stalls the async runtime.
    pub async fn search(
        &self,
        db: &impl ConnectionTrait,
        space_id: Uuid,
        db_version: i64,
        query: &[f32],
        top: usize,
    ) -> AppResult<Vec<VectorHit>> {
        let entry = self.ensure_current(db, space_id, db_version).await?;
        let guard = entry.read_owned().await;
        if guard.rows.len() < 4096 {
            return Ok(guard.top(query, top));
        }
        let query = query.to_vec();
        tokio::task::spawn_blocking(move || guard.top(&query, top))
            .await
            .map_err(|e| {
                memspace_core::error::AppError::Internal(anyhow::anyhow!("vector scan: {e}"))
            })
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
            guard.put(memory_id, chunks);
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
            guard.remove_memory(id);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; 4];
        v[i % 4] = 1.0;
        v
    }

    #[test]
    fn replacing_and_removing_memories_keeps_rows_consistent() {
        let mut s = SpaceVectors::default();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        s.put(a, vec![(0, unit(0)), (1, unit(1))]);
        s.put(b, vec![(0, unit(2))]);
        s.put(c, vec![(0, unit(3)), (1, unit(0))]);
        s.remove_memory(&a);
        assert_eq!(s.rows.len(), 3);
        assert_eq!(s.data.len(), 12);
        for (id, rows) in &s.by_memory {
            for r in rows {
                assert_eq!(s.rows[*r].0, *id);
            }
        }
        let hits = s.top(&unit(0), 3);
        assert_eq!(hits[0].memory_id, c, "c's second chunk matches unit(0)");
        assert_eq!(hits[0].ord, 1);
        s.put(c, vec![(0, unit(2))]);
        assert_eq!(s.rows.len(), 2);
        let hits = s.top(&unit(2), 2);
        assert_eq!(hits.len(), 2);
        assert!((hits[0].score - 1.0).abs() < 1e-6 && (hits[1].score - 1.0).abs() < 1e-6);
    }

    #[test]
    fn each_memory_appears_once_with_its_best_chunk() {
        let mut s = SpaceVectors::default();
        let a = Uuid::now_v7();
        s.put(a, vec![(0, unit(1)), (1, unit(0)), (2, unit(0))]);
        let hits = s.top(&unit(0), 5);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].ord, 1);
    }
}
