//! The in-process vector index: per vector dimension one ANN index ([`crate::ann`]) holding
//! every chunk vector of every loaded space once (f16), keyed by the space's slot so one query
//! can be filtered to a scope; per space, the ANN key of each chunk of its memories, loaded
//! lazily from the database on first search and kept current by the write path. There is no
//! second copy of the vectors: exact scans and the rescoring read them back from the ANN index
//! (1M 384-d chunks: 768 MB of vectors, where an f32 copy beside the graph added 1.5 GB).
//!
//! Planner ([`plan`]): a scope of at most [`EXACT_MAX`] vectors is scanned exactly; so is a
//! selective one (under [`MIN_SELECTIVITY`] of the ANN index and at most
//! [`SELECTIVE_EXACT_MAX`] vectors), where a filtered graph walk would visit most of the graph
//! to find enough accepted nodes. Otherwise one filtered ANN query serves the whole scope, its
//! candidates rescored with the f32 query (the walk compares an f16 copy of it), and a result
//! short of the scope's answer falls back to exact.
//!
//! Persistence ([`VectorIndex::open`], [`VectorIndex::save`]): in a data directory, the ANN
//! graphs (usearch files, which hold the vectors) and each space's chunk keys with the
//! `vector_version` they cover ([`crate::index_file`]). The database stays the source of truth:
//! a reopened space saved at the version the database holds is used as is; one behind catches
//! up from rows newer than its version and, on its first use, is checked against the database's
//! list of its memories (drift: deletions made while the file was stale, a file from another
//! moment); a missing or damaged file, or a graph that does not hold exactly the saved keys,
//! means loading from the database, as without one.
//!
//! Consistency: a space's entry is loaded and updated under its own write lock, and updates are
//! idempotent (keyed by memory id), so a write that races with a load is never lost: either the
//! load's query sees the committed row, or the update waits for the load and applies after it.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sea_orm::sea_query::Condition;
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use uuid::Uuid;

use crate::ann::{Ann, Hnsw};
use crate::coverage::Coverage;
use crate::embedder::from_bytes;
use crate::index_file::{self, SavedSpace};
use crate::keyword_index::KeywordIndex;
use crate::pgvector::PgVector;
use entity::{chunk, memory};
use memspace_core::error::{AppError, AppResult};

/// The chunk vectors of one memory: (chunk ordinal, vector).
type MemoryVectors = Vec<(i32, Vec<f32>)>;

/// One space's share of the ANN index of its dimension: the key and ordinal of each chunk of
/// each memory. The vectors themselves are held once, as f16 in the ANN index, which serves
/// the exact scans and the rescoring too (no f32 copy in RAM: 1M 384-d chunks are 768 MB).
#[derive(Default)]
struct SpaceVectors {
    loaded: bool,
    /// Reopened from the index file and not yet checked against the database.
    unverified: bool,
    /// This load's slot: the high bits of its ANN keys (a reload takes a new one, so keys of
    /// an earlier load can never pass a scope's filter).
    slot: u32,
    /// The space's `vector_version`s this index holds (complete up to `through`).
    cov: Coverage,
    dim: usize,
    /// Each memory's chunks: (ordinal, ANN key).
    chunks: HashMap<Uuid, Vec<(i32, u64)>>,
    /// Chunks held: the sum over `chunks`.
    rows: usize,
}

impl SpaceVectors {
    /// Every chunk: (memory, ordinal, ANN key).
    fn entries(&self) -> impl Iterator<Item = (Uuid, i32, u64)> + '_ {
        self.chunks
            .iter()
            .flat_map(|(m, cs)| cs.iter().map(move |(o, k)| (*m, *o, *k)))
    }
}

use crate::hit::best_per_memory;
pub use crate::hit::{ScopeEntry, VectorHit};

/// Scopes of at most this many vectors are scanned exactly (about 2 ms at 384 dimensions).
pub const EXACT_MAX: usize = 20_000;

/// The ANN walk's default candidates (`--ann-ef-search`). recall@10 on `bench/search`'s 100k
/// corpus: 0.94 near 80, 0.95 at 128, 0.97 at 200 (2.87 vs 2.81 ms p50, 680 vs 812 req/s at c8);
/// at 1M in one space 0.90 at 200 (4.5 ms p50), 0.944 at 400.
pub const ANN_EF_SEARCH: u16 = 200;

/// A scope holding less than this share of the ANN index is selective...
pub const MIN_SELECTIVITY: f64 = 0.05;
/// ...and is scanned exactly up to this many vectors.
pub const SELECTIVE_EXACT_MAX: usize = 200_000;
const VECTORS_FILE: &str = "vectors.msvi";

fn ann_file(dim: usize) -> String {
    format!("ann-{dim}.usearch")
}

/// ANN keys: the space's slot above this bit, a sequence number below.
const SLOT_SHIFT: u32 = 40;

/// How a scope is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Exact,
    Ann,
}

/// The plan for a scope of `scope_rows` vectors when the ANN index holds `index_rows`, with
/// `exact_max` in place of [`EXACT_MAX`].
pub fn plan(scope_rows: usize, index_rows: usize, exact_max: usize) -> Plan {
    if scope_rows <= exact_max || index_rows == 0 {
        return Plan::Exact;
    }
    let selectivity = scope_rows as f64 / index_rows as f64;
    if selectivity < MIN_SELECTIVITY && scope_rows <= SELECTIVE_EXACT_MAX.max(exact_max) {
        Plan::Exact
    } else {
        Plan::Ann
    }
}

/// The ANN index of one vector dimension, and what each key stands for.
struct Shard {
    ann: Box<dyn Ann>,
    rows: Mutex<HashMap<u64, (Uuid, i32)>>,
    next_key: AtomicU64,
}

impl Shard {
    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Uuid, i32)>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct VectorIndex {
    spaces: Mutex<HashMap<Uuid, Arc<RwLock<SpaceVectors>>>>,
    shards: Mutex<HashMap<usize, Arc<Shard>>>,
    next_slot: AtomicU32,
    exact_max: usize,
    /// Rows an ANN query asks for at least ([`ANN_EF_SEARCH`] by default).
    ann_ef_search: usize,
    /// Where [`VectorIndex::save`] writes (None: not persisted).
    dir: Option<PathBuf>,
    /// Held (shared) by every change, exclusively by a save, so a saved file is one moment.
    changes: RwLock<()>,
    /// Spaces reopened from the file at start.
    reopened: usize,
    /// The pgvector store: once it serves a dimension, that dimension's searches run in SQL
    /// and nothing of it is loaded here.
    pg: Option<Arc<PgVector>>,
    /// The keyword index kept in step with the same writes (None: keyword searches run in
    /// the database's full-text engine).
    keyword: Option<Arc<KeywordIndex>>,
}

impl Default for VectorIndex {
    fn default() -> Self {
        VectorIndex::with_exact_max(EXACT_MAX)
    }
}

type Guard = OwnedRwLockReadGuard<SpaceVectors>;

impl VectorIndex {
    /// An index whose planner scans scopes of at most `exact_max` vectors exactly (tests set
    /// 0 to exercise the ANN path on small data).
    pub fn with_exact_max(exact_max: usize) -> Self {
        VectorIndex {
            spaces: Mutex::default(),
            shards: Mutex::default(),
            next_slot: AtomicU32::new(1),
            exact_max,
            ann_ef_search: usize::from(ANN_EF_SEARCH),
            dir: None,
            changes: RwLock::new(()),
            reopened: 0,
            pg: None,
            keyword: None,
        }
    }

    /// An index persisted in `dir`: reopens what was saved there (if anything), else starts
    /// empty. Never fails: a damaged file is logged and the spaces load from the database.
    pub fn open(dir: PathBuf, exact_max: usize) -> Self {
        let mut index = VectorIndex::with_exact_max(exact_max);
        match index.restore(&dir) {
            Ok(0) => {}
            Ok(n) => tracing::info!(spaces = n, dir = %dir.display(), "vector index reopened"),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "vector index not reopened: spaces load from the database");
                index = VectorIndex::with_exact_max(exact_max);
            }
        }
        index.dir = Some(dir);
        index
    }

    /// ANN queries ask for at least `n` rows (usearch's beam is then at least `n` wide), all
    /// rescored against the f32 query.
    pub fn with_ann_ef_search(mut self, n: usize) -> Self {
        self.ann_ef_search = n.clamp(16, ANN_MAX_CANDIDATES);
        self
    }

    /// Searches go to `pg` for the dimensions it serves.
    pub fn with_pgvector(mut self, pg: Arc<PgVector>) -> Self {
        self.pg = Some(pg);
        self
    }

    /// Keyword searches go to `keyword`, which follows this index's writes.
    pub fn with_keyword(mut self, keyword: Arc<KeywordIndex>) -> Self {
        self.keyword = Some(keyword);
        self
    }

    /// The keyword index, when keyword searches do not run in the database.
    pub fn keyword(&self) -> Option<&Arc<KeywordIndex>> {
        self.keyword.as_ref()
    }

    /// Records the content of memories written by this process in the write that took the
    /// space to `version` (after it committed), for the keyword index.
    pub async fn upsert_text(&self, space_id: Uuid, version: i64, docs: Vec<(Uuid, String)>) {
        if let Some(k) = &self.keyword {
            k.upsert(space_id, version, docs).await;
        }
    }

    /// The pgvector store, when the database has one.
    pub fn pgvector(&self) -> Option<&Arc<PgVector>> {
        self.pg.as_ref()
    }

    /// The memories held for a space, when it is loaded.
    pub async fn memories_of(&self, space_id: Uuid) -> Option<usize> {
        let entry = {
            let spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
            spaces.get(&space_id).cloned()?
        };
        let g = entry.read().await;
        g.loaded.then(|| g.chunks.len())
    }

    /// How many spaces were reopened from the data directory at start.
    pub fn reopened_spaces(&self) -> usize {
        self.reopened
    }

    fn restore(&mut self, dir: &Path) -> anyhow::Result<usize> {
        let path = dir.join(VECTORS_FILE);
        if !path.exists() {
            return Ok(0);
        }
        let saved = index_file::read(&path)?;
        let mut by_dim: HashMap<usize, Vec<&SavedSpace>> = HashMap::new();
        for s in &saved {
            by_dim.entry(s.dim as usize).or_default().push(s);
        }
        let mut max_slot = 0u32;
        let mut spaces = HashMap::new();
        for (dim, group) in by_dim {
            let total: usize = group.iter().map(|s| s.rows.len()).sum();
            // The vectors live in the graph: it is reused only when it holds exactly the saved
            // keys, else these spaces load from the database on first use.
            let shard = if total == 0 {
                None
            } else {
                let ann = match Hnsw::restore(&dir.join(ann_file(dim)), dim) {
                    Ok(ann) => ann,
                    Err(e) => {
                        tracing::warn!(dim, error = %e, "ANN graph not reopened: its spaces load from the database");
                        continue;
                    }
                };
                let matches = ann.len() == total
                    && group
                        .iter()
                        .all(|s| s.rows.iter().all(|(_, _, key)| ann.contains(*key)));
                if !matches {
                    tracing::warn!(dim, "ANN graph does not match the vector index file: its spaces load from the database");
                    continue;
                }
                Some(Arc::new(Shard {
                    ann: Box::new(ann),
                    rows: Mutex::default(),
                    next_key: AtomicU64::new(0),
                }))
            };
            let mut next_seq = 0u64;
            for s in group {
                let mut v = SpaceVectors {
                    loaded: true,
                    unverified: true,
                    cov: Coverage::new(s.version),
                    dim,
                    slot: s.rows.first().map_or(0, |r| (r.2 >> SLOT_SHIFT) as u32),
                    ..SpaceVectors::default()
                };
                for (memory, ord, key) in &s.rows {
                    v.chunks.entry(*memory).or_default().push((*ord, *key));
                    v.rows += 1;
                    next_seq = next_seq.max((key & ((1 << SLOT_SHIFT) - 1)) + 1);
                    if let Some(shard) = &shard {
                        shard.rows().insert(*key, (*memory, *ord));
                    }
                }
                max_slot = max_slot.max(v.slot);
                spaces.insert(s.space_id, v);
            }
            if let Some(shard) = shard {
                shard.next_key.fetch_max(next_seq, Ordering::Relaxed);
                self.shards
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(dim, shard);
            }
        }
        self.next_slot.store(max_slot + 1, Ordering::Relaxed);
        let n = spaces.len();
        let mut map = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        for (id, mut v) in spaces {
            if v.slot == 0 {
                // An empty space: a slot of its own for its next writes.
                v.slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            }
            map.insert(id, Arc::new(RwLock::new(v)));
        }
        drop(map);
        self.reopened = n;
        Ok(n)
    }

    /// Writes every loaded space and the ANN graphs to the data directory (no-op without
    /// one). Changes wait meanwhile; searches go on.
    pub async fn save(&self) -> anyhow::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let _still = self.changes.write().await;
        let entries: Vec<(Uuid, Arc<RwLock<SpaceVectors>>)> = {
            let spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
            spaces.iter().map(|(k, v)| (*k, v.clone())).collect()
        };
        let mut guards = Vec::with_capacity(entries.len());
        for (id, e) in entries {
            let g = e.read_owned().await;
            if g.loaded {
                guards.push((id, g));
            }
        }
        let shards: Vec<(usize, Arc<Shard>)> = {
            let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
            shards.iter().map(|(d, s)| (*d, s.clone())).collect()
        };
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let saved: Vec<SavedSpace> = guards
                .iter()
                .map(|(id, g)| SavedSpace {
                    space_id: *id,
                    version: g.cov.through,
                    dim: g.dim as u32,
                    rows: g.entries().collect(),
                })
                .collect();
            for (dim, shard) in &shards {
                shard.ann.save(&dir.join(ann_file(*dim)))?;
            }
            index_file::write(&dir.join(VECTORS_FILE), &saved)
        })
        .await
        .map_err(|e| anyhow::anyhow!("index save: {e}"))?
    }

    fn entry(&self, space_id: Uuid) -> Arc<RwLock<SpaceVectors>> {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        spaces.entry(space_id).or_default().clone()
    }

    fn shard(&self, dim: usize, create: bool) -> Option<Arc<Shard>> {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = shards.get(&dim) {
            return Some(s.clone());
        }
        if !create || dim == 0 {
            return None;
        }
        match Hnsw::new(dim) {
            Ok(ann) => {
                let shard = Arc::new(Shard {
                    ann: Box::new(ann),
                    rows: Mutex::default(),
                    next_key: AtomicU64::new(0),
                });
                shards.insert(dim, shard.clone());
                Some(shard)
            }
            Err(e) => {
                tracing::warn!(dim, error = %e, "no ANN index: searches scan exactly");
                None
            }
        }
    }

    /// Replaces (`Some`) or removes (`None`) memories of a space in the ANN index of its
    /// dimension (vectors of another dimension than the space's are ignored). On an error
    /// (the ANN index could not be created or grown) the caller drops the load.
    async fn apply(
        &self,
        s: &mut SpaceVectors,
        changes: Vec<(Uuid, Option<MemoryVectors>)>,
    ) -> anyhow::Result<()> {
        match self.stage(s, changes)? {
            Some(adds) => adds.run().await,
            None => Ok(()),
        }
    }

    /// [`VectorIndex::apply`] but the graph insertions, which the caller runs (under the same
    /// lock of the space).
    fn stage(
        &self,
        s: &mut SpaceVectors,
        changes: Vec<(Uuid, Option<MemoryVectors>)>,
    ) -> anyhow::Result<Option<Adds>> {
        let mut stale: Vec<u64> = Vec::new();
        let mut fresh: Vec<(Uuid, i32, Vec<f32>)> = Vec::new();
        for (id, chunks) in changes {
            if let Some(old) = s.chunks.remove(&id) {
                s.rows -= old.len();
                stale.extend(old.into_iter().map(|(_, key)| key));
            }
            for (ord, v) in chunks.into_iter().flatten() {
                if s.dim == 0 {
                    s.dim = v.len();
                }
                if v.len() == s.dim && !v.is_empty() {
                    fresh.push((id, ord, v));
                }
            }
        }
        if stale.is_empty() && fresh.is_empty() {
            return Ok(None);
        }
        let shard = match self.shard(s.dim, !fresh.is_empty()) {
            Some(shard) => shard,
            None if fresh.is_empty() => return Ok(None),
            None => anyhow::bail!("no ANN index of {} dimensions", s.dim),
        };
        if !stale.is_empty() {
            shard.ann.remove(&stale);
            let mut rows = shard.rows();
            for k in &stale {
                rows.remove(k);
            }
        }
        let slot = u64::from(s.slot) << SLOT_SHIFT;
        let mut vectors: Vec<(u64, Vec<f32>)> = Vec::with_capacity(fresh.len());
        {
            let mut rows = shard.rows();
            for (id, ord, v) in fresh {
                let key = slot | shard.next_key.fetch_add(1, Ordering::Relaxed);
                rows.insert(key, (id, ord));
                s.chunks.entry(id).or_default().push((ord, key));
                s.rows += 1;
                vectors.push((key, v));
            }
        }
        Ok(Some(Adds { shard, vectors }))
    }

    /// Drops a space's load from the ANN index (its slot is never used again) and leaves it
    /// unloaded: the next search reads it from the database.
    fn purge(&self, s: &mut SpaceVectors) {
        match self.shard(s.dim, false) {
            Some(shard) => purge_from(&shard, s),
            None => *s = SpaceVectors::default(),
        }
    }

    /// Applies `changes`; when the ANN index fails, drops the space's load (logged) so that
    /// its next search reloads it from the database.
    async fn apply_or_drop(
        &self,
        s: &mut SpaceVectors,
        changes: Vec<(Uuid, Option<MemoryVectors>)>,
    ) {
        if let Err(e) = self.apply(s, changes).await {
            tracing::warn!(error = %e, "vector index: a space's load is dropped (reloaded by its next search)");
            self.purge(s);
        }
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
            g.loaded && !g.unverified && g.cov.covers(db_version)
        };
        if current {
            return Ok(entry);
        }
        let _change = self.changes.read().await;
        let mut guard = entry.clone().write_owned().await;
        if guard.unverified {
            if guard.cov.through == db_version {
                // Every write (deletions too) takes the space to a new version: a file saved
                // at the version the database holds is this moment's, nothing to compare
                // (at 1M memories the comparison reads 1M ids, ~2 s of a first search).
                guard.unverified = false;
            } else {
                self.reconcile(db, space_id, &mut guard).await?;
            }
        }
        if guard.loaded && guard.cov.covers(db_version) {
            return Ok(entry.clone());
        }
        // Only the versions it lacks (writes of other replicas, or of this one that arrived
        // out of order and left a gap), not every row after the first gap.
        let since = guard.loaded.then(|| guard.cov.missing());
        let mut query = chunk::Entity::find()
            .select_only()
            .column(chunk::Column::MemoryId)
            .column(chunk::Column::Ord)
            .column(chunk::Column::Embedding)
            .filter(chunk::Column::SpaceId.eq(space_id));
        let full = since.is_none();
        if let Some(since) = since {
            query = query.filter(
                chunk::Column::MemoryId.in_subquery(
                    Query::select()
                        .column(memory::Column::Id)
                        .from(memory::Entity)
                        .cond_where(
                            Condition::all()
                                .add(memory::Column::SpaceId.eq(space_id))
                                .add(since.condition()),
                        )
                        .to_owned(),
                ),
            );
        }
        let rows: Vec<(Uuid, i32, Vec<u8>)> = query.into_tuple().all(db).await?;
        let mut grouped: HashMap<Uuid, MemoryVectors> = HashMap::new();
        for (memory_id, ord, bytes) in rows {
            grouped
                .entry(memory_id)
                .or_default()
                .push((ord, from_bytes(&bytes)));
        }
        let changes = grouped.into_iter().map(|(id, c)| (id, Some(c))).collect();
        if full {
            self.purge(&mut guard);
            *guard = SpaceVectors {
                slot: self.next_slot.fetch_add(1, Ordering::Relaxed),
                ..SpaceVectors::default()
            };
        }
        let adds = match self.stage(&mut guard, changes) {
            Ok(adds) => adds,
            Err(e) => {
                self.purge(&mut guard);
                return Err(AppError::Internal(
                    e.context("vector index: space not loaded"),
                ));
            }
        };
        // The graph insertions (minutes for a large space) and the completion run to the end
        // on the blocking pool even when this request is cancelled (its timeout): the next
        // search then finds the space loaded, instead of starting over.
        let finish = move || -> anyhow::Result<()> {
            let mut guard = guard;
            if let Some(adds) = adds {
                if let Err(e) = adds.insert() {
                    purge_from(&adds.shard, &mut guard);
                    return Err(e);
                }
            }
            guard.loaded = true;
            guard.cov.complete_to(db_version);
            Ok(())
        };
        tokio::task::spawn_blocking(finish)
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("vector index load: {e}")))?
            .map_err(|e| AppError::Internal(e.context("vector index: space not loaded")))?;
        Ok(entry)
    }

    /// Drift check of a reopened space: memories the database no longer has leave, memories
    /// it has that the file lacks are loaded (whatever their version).
    async fn reconcile(
        &self,
        db: &impl ConnectionTrait,
        space_id: Uuid,
        s: &mut SpaceVectors,
    ) -> AppResult<()> {
        let in_db: HashSet<Uuid> = memory::Entity::find()
            .select_only()
            .column(memory::Column::Id)
            .filter(memory::Column::SpaceId.eq(space_id))
            .into_tuple::<Uuid>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let gone: Vec<(Uuid, Option<MemoryVectors>)> = s
            .chunks
            .keys()
            .filter(|id| !in_db.contains(id))
            .map(|id| (*id, None))
            .collect();
        let missing: Vec<Uuid> = in_db
            .iter()
            .filter(|id| !s.chunks.contains_key(id))
            .copied()
            .collect();
        let mut changes = gone;
        for part in missing.chunks(500) {
            let rows: Vec<(Uuid, i32, Vec<u8>)> = chunk::Entity::find()
                .select_only()
                .column(chunk::Column::MemoryId)
                .column(chunk::Column::Ord)
                .column(chunk::Column::Embedding)
                .filter(chunk::Column::MemoryId.is_in(part.iter().copied()))
                .into_tuple()
                .all(db)
                .await?;
            let mut grouped: HashMap<Uuid, MemoryVectors> = HashMap::new();
            for (memory_id, ord, bytes) in rows {
                grouped
                    .entry(memory_id)
                    .or_default()
                    .push((ord, from_bytes(&bytes)));
            }
            changes.extend(grouped.into_iter().map(|(id, c)| (id, Some(c))));
        }
        if !changes.is_empty() {
            tracing::info!(space = %space_id, changes = changes.len(), "vector index drift repaired");
        }
        if let Err(e) = self.apply(s, changes).await {
            self.purge(s);
            return Err(AppError::Internal(
                e.context("vector index: drift not repaired"),
            ));
        }
        s.unverified = false;
        Ok(())
    }

    /// The `top` memories of a space closest to `query` (a unit vector), best first.
    pub async fn search<C: ConnectionTrait + TransactionTrait>(
        &self,
        db: &C,
        space_id: Uuid,
        db_version: i64,
        query: &[f32],
        top: usize,
    ) -> AppResult<Vec<VectorHit>> {
        let scope = [ScopeEntry {
            space_id,
            version: db_version,
        }];
        self.search_scope(db, &scope, query, top).await
    }

    /// The `top` memories of all of `scope`'s spaces (of one embedder) closest to `query`, best
    /// first: one exact scan or one filtered ANN query, as [`plan`] decides. Large scans run on
    /// the blocking pool so they never stall the async runtime.
    pub async fn search_scope<C: ConnectionTrait + TransactionTrait>(
        &self,
        db: &C,
        scope: &[ScopeEntry],
        query: &[f32],
        top: usize,
    ) -> AppResult<Vec<VectorHit>> {
        self.search_filtered(db, scope, query, top, None).await
    }

    /// [`VectorIndex::search_scope`] among the memories `filter` (a condition on `memories`)
    /// accepts, when the search runs in SQL (pgvector), so that a selective filter still
    /// returns `top` memories; the in-process index ignores it (the caller filters its
    /// candidates).
    pub async fn search_filtered<C: ConnectionTrait + TransactionTrait>(
        &self,
        db: &C,
        scope: &[ScopeEntry],
        query: &[f32],
        top: usize,
        filter: Option<Condition>,
    ) -> AppResult<Vec<VectorHit>> {
        if let Some(pg) = self.pg.as_ref().filter(|pg| pg.serves(query.len())) {
            let spaces: Vec<Uuid> = scope.iter().map(|s| s.space_id).collect();
            return pg.search(db, &spaces, query, top, filter).await;
        }
        // Read locks in space order: two searches never wait on each other in a cycle.
        let mut ordered: Vec<&ScopeEntry> = scope.iter().collect();
        ordered.sort_by_key(|s| s.space_id);
        ordered.dedup_by_key(|s| s.space_id);
        let mut guards: Vec<Guard> = Vec::with_capacity(ordered.len());
        for s in ordered {
            let entry = self.ensure_current(db, s.space_id, s.version).await?;
            guards.push(entry.read_owned().await);
        }
        let total: usize = guards.iter().map(|g| g.rows).sum();
        let shard = self.shard(query.len(), false);
        let index_rows = shard.as_ref().map_or(0, |s| s.ann.len());
        let chosen = plan(total, index_rows, self.exact_max);
        let ef_search = self.ann_ef_search;
        let query = query.to_vec();
        let run = move || match (chosen, shard) {
            (_, None) => Vec::new(), // no vector of this dimension anywhere
            (Plan::Ann, Some(shard)) => ann_top(&shard, &guards, &query, top, total, ef_search),
            (Plan::Exact, Some(shard)) => exact_top(&shard, &guards, &query, top),
        };
        if total < 4096 {
            return Ok(run());
        }
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("vector search: {e}")))
    }

    /// Records the chunks of memories written by this process in the write that took the
    /// space to `version` (after it committed). Out-of-order or missed versions are left to the
    /// catch-up of the next search.
    pub async fn upsert(&self, space_id: Uuid, version: i64, memories: Vec<(Uuid, MemoryVectors)>) {
        let _change = self.changes.read().await;
        let entry = self.entry(space_id);
        let mut guard = entry.write().await;
        if !guard.loaded {
            if version != 1 || self.pgvector().is_some() {
                // The next search loads everything from the database (with pgvector, the
                // in-process index only serves until its backfill is done: no vectors in RAM).
                return;
            }
            // The space's first write: the database holds no other vector of it, so this write
            // is the whole index. Starting here keeps a space filled by this process loaded as
            // it grows, instead of a first search that reads (and indexes) all of it at once.
            self.purge(&mut guard);
            *guard = SpaceVectors {
                slot: self.next_slot.fetch_add(1, Ordering::Relaxed),
                loaded: true,
                ..SpaceVectors::default()
            };
        }
        let changes = memories.into_iter().map(|(id, c)| (id, Some(c))).collect();
        self.apply_or_drop(&mut guard, changes).await;
        if guard.loaded {
            guard.cov.add(version);
        }
    }

    /// Forgets deleted memories (after their transaction committed).
    pub async fn remove(&self, space_id: Uuid, memory_ids: &[Uuid]) {
        let _change = self.changes.read().await;
        let entry = self.entry(space_id);
        let mut guard = entry.write().await;
        let changes = memory_ids.iter().map(|id| (*id, None)).collect();
        self.apply_or_drop(&mut guard, changes).await;
        drop(guard);
        if let Some(k) = &self.keyword {
            k.remove(space_id, memory_ids).await;
        }
    }

    /// Drops a space's vectors (purged space, or a cache that may be stale).
    pub fn forget_space(&self, space_id: Uuid) {
        if let Some(k) = &self.keyword {
            k.forget_space(space_id);
        }
        let removed = {
            let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
            spaces.remove(&space_id)
        };
        // Best effort: a load still in use keeps its ANN rows until then, but its slot is
        // never in a scope again.
        if let Some(entry) = removed {
            if let Ok(mut g) = entry.try_write() {
                self.purge(&mut g);
            }
        }
    }

    /// Drops every space's vectors and the ANN indexes; they reload from the database on the
    /// next search. The keyword index keeps its documents: new and changed memories reach it
    /// by the version check of the next search, and a deleted one it still holds is dropped by
    /// the search's filter over the database.
    pub fn forget_all(&self) {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        spaces.clear();
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Vectors to insert into the ANN graph of their dimension, under keys already recorded.
struct Adds {
    shard: Arc<Shard>,
    vectors: Vec<(u64, Vec<f32>)>,
}

/// Inserting more vectors than this runs on the blocking pool, not on the async runtime's
/// thread (an insertion into a graph of 1M costs ~0.3 ms of CPU).
const BLOCKING_ADDS: usize = 32;

impl Adds {
    fn insert(&self) -> anyhow::Result<()> {
        let rows: Vec<(u64, &[f32])> = self
            .vectors
            .iter()
            .map(|(key, v)| (*key, v.as_slice()))
            .collect();
        self.shard.ann.add(&rows)
    }

    async fn run(self) -> anyhow::Result<()> {
        if self.vectors.len() <= BLOCKING_ADDS {
            return self.insert();
        }
        tokio::task::spawn_blocking(move || self.insert())
            .await
            .map_err(|e| anyhow::anyhow!("ANN insertion: {e}"))?
    }
}

/// Removes a space's keys from `shard` and leaves the space unloaded.
fn purge_from(shard: &Shard, s: &mut SpaceVectors) {
    let keys: Vec<u64> = s.entries().map(|(_, _, key)| key).collect();
    shard.ann.remove(&keys);
    let mut rows = shard.rows();
    for k in &keys {
        rows.remove(k);
    }
    drop(rows);
    *s = SpaceVectors::default();
}

/// The exact scan: every chunk of the scope scored against the vectors the ANN index holds,
/// each memory's best chunk, the `top` best memories.
fn exact_top(shard: &Shard, guards: &[Guard], query: &[f32], top: usize) -> Vec<VectorHit> {
    let keys: Vec<u64> = guards
        .iter()
        .flat_map(|g| g.entries().map(|(_, _, key)| key))
        .collect();
    let mut scores = shard.ann.similarities(query, &keys).into_iter();
    let mut best: Vec<VectorHit> = Vec::new();
    // `entries` walks each memory's chunks together, in the order the keys were taken.
    for g in guards {
        for (memory_id, chunks) in &g.chunks {
            let mut mine: Option<VectorHit> = None;
            for (ord, _) in chunks {
                let Some(Some(score)) = scores.next() else {
                    continue;
                };
                if mine.is_none_or(|m| score > m.score || (score == m.score && *ord < m.ord)) {
                    mine = Some(VectorHit {
                        memory_id: *memory_id,
                        ord: *ord,
                        score,
                    });
                }
            }
            best.extend(mine);
        }
    }
    if top == 0 || best.is_empty() {
        return Vec::new();
    }
    let keep = top.min(best.len());
    best.select_nth_unstable_by(keep - 1, |a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.memory_id.cmp(&b.memory_id))
    });
    best.truncate(keep);
    best_per_memory(best, top)
}

/// One filtered ANN query over the scope's slots; candidates rescored with the f32 query. Falls back to
/// the exact scan when the walk came back short of what the scope holds.
fn ann_top(
    shard: &Shard,
    guards: &[Guard],
    query: &[f32],
    top: usize,
    total: usize,
    ef_search: usize,
) -> Vec<VectorHit> {
    let max_slot = guards.iter().map(|g| g.slot).max().unwrap_or(0) as usize;
    let mut allowed = vec![false; max_slot + 1];
    for g in guards {
        allowed[g.slot as usize] = true;
    }
    let accept = |key: u64| {
        allowed
            .get((key >> SLOT_SHIFT) as usize)
            .copied()
            .unwrap_or(false)
    };
    let memories: usize = guards.iter().map(|g| g.chunks.len()).sum();
    // Several chunks of one memory may come back: ask for as many rows per memory as the
    // scope holds on average, and never fewer than the walk needs for its recall.
    let per_memory = total.div_ceil(memories.max(1)).max(1);
    let mut wanted = (top * per_memory + 16).max(ef_search).min(total);
    loop {
        let found = match shard.ann.search(query, wanted, &accept) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "ANN search failed: scanning exactly");
                return exact_top(shard, guards, query, top);
            }
        };
        // Rescored as the exact scan scores (f32 query against the stored f16 vector; the
        // walk compared an f16 copy of the query), so both plans agree on every score.
        let keys: Vec<u64> = found.iter().map(|(key, _)| *key).collect();
        let scores = shard.ann.similarities(query, &keys);
        let scored: Vec<VectorHit> = {
            let rows = shard.rows();
            keys.iter()
                .zip(scores)
                .filter_map(|(key, score)| {
                    let (memory_id, ord) = *rows.get(key)?;
                    Some(VectorHit {
                        memory_id,
                        ord,
                        score: score?,
                    })
                })
                .collect()
        };
        let hits = best_per_memory(scored, top);
        if hits.len() >= top.min(memories) {
            return hits;
        }
        // Memories of many chunks filled the rows: a wider walk, then the exact scan.
        if wanted >= total || wanted >= ANN_MAX_CANDIDATES {
            return exact_top(shard, guards, query, top);
        }
        wanted = (wanted * 4).min(total).min(ANN_MAX_CANDIDATES);
    }
}

/// The widest ANN walk before the exact scan takes over.
const ANN_MAX_CANDIDATES: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; 4];
        v[i % 4] = 1.0;
        v
    }

    #[tokio::test]
    async fn replacing_and_removing_memories_keeps_chunks_and_ann_keys_consistent() {
        let index = VectorIndex::with_exact_max(usize::MAX);
        let space = Uuid::now_v7();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        install(
            &index,
            space,
            vec![
                (a, vec![(0, unit(0)), (1, unit(1))]),
                (b, vec![(0, unit(2))]),
                (c, vec![(0, unit(3)), (1, unit(0))]),
            ],
        )
        .await;
        index.remove(space, &[a]).await;
        let db = sea_orm::DatabaseConnection::default();
        let scope = scope_of(&[space]);
        let shard = index.shard(4, false).unwrap();
        {
            let entry = index.entry(space);
            let g = entry.read().await;
            assert_eq!(g.rows, 3);
            assert_eq!(shard.ann.len(), 3);
            for (memory, ord, key) in g.entries() {
                assert_eq!(shard.rows().get(&key), Some(&(memory, ord)));
            }
        }
        let hits = index.search_scope(&db, &scope, &unit(0), 3).await.unwrap();
        assert_eq!(hits[0].memory_id, c, "c's second chunk matches unit(0)");
        assert_eq!(hits[0].ord, 1);
        index.upsert(space, 0, vec![(c, vec![(0, unit(2))])]).await;
        assert_eq!(shard.ann.len(), 2);
        let hits = index.search_scope(&db, &scope, &unit(2), 2).await.unwrap();
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|h| (h.score - 1.0).abs() < 1e-3));
    }

    #[tokio::test]
    async fn each_memory_appears_once_with_its_best_chunk() {
        let index = VectorIndex::with_exact_max(usize::MAX);
        let space = Uuid::now_v7();
        let a = Uuid::now_v7();
        install(
            &index,
            space,
            vec![(a, vec![(0, unit(1)), (1, unit(0)), (2, unit(0))])],
        )
        .await;
        let db = sea_orm::DatabaseConnection::default();
        let scope = scope_of(&[space]);
        let hits = index.search_scope(&db, &scope, &unit(0), 5).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].ord, 1, "the first of the equally good chunks");
    }

    fn random_unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        crate::embedder::normalize(&mut v);
        v
    }

    /// Installs a space's memories as a load from the database would.
    async fn install(index: &VectorIndex, space: Uuid, memories: Vec<(Uuid, MemoryVectors)>) {
        let entry = index.entry(space);
        let mut g = entry.write().await;
        g.slot = index.next_slot.fetch_add(1, Ordering::Relaxed);
        g.loaded = true;
        index
            .apply(
                &mut g,
                memories.into_iter().map(|(id, c)| (id, Some(c))).collect(),
            )
            .await
            .unwrap();
    }

    /// `spaces` spaces of `per_space` memories with two chunks each, in two indexes: one
    /// that always scans exactly and one that always asks the ANN index.
    async fn corpus(
        spaces: usize,
        per_space: usize,
        dim: usize,
    ) -> (VectorIndex, VectorIndex, Vec<(Uuid, Vec<Uuid>)>) {
        let exact = VectorIndex::with_exact_max(usize::MAX);
        let ann = VectorIndex::with_exact_max(0);
        let mut layout = Vec::new();
        let mut seed = 0;
        for _ in 0..spaces {
            let space = Uuid::now_v7();
            let mut memories = Vec::new();
            for _ in 0..per_space {
                seed += 2;
                memories.push((
                    Uuid::now_v7(),
                    vec![(0, random_unit(seed, dim)), (1, random_unit(seed + 1, dim))],
                ));
            }
            install(&exact, space, memories.clone()).await;
            install(&ann, space, memories.clone()).await;
            layout.push((space, memories.into_iter().map(|(id, _)| id).collect()));
        }
        (exact, ann, layout)
    }

    fn scope_of(spaces: &[Uuid]) -> Vec<ScopeEntry> {
        spaces
            .iter()
            .map(|s| ScopeEntry {
                space_id: *s,
                version: 0,
            })
            .collect()
    }

    #[test]
    fn the_planner_scans_small_or_selective_scopes_and_asks_the_ann_index_otherwise() {
        assert_eq!(plan(500, 0, EXACT_MAX), Plan::Exact);
        assert_eq!(plan(EXACT_MAX, 1_000_000, EXACT_MAX), Plan::Exact);
        assert_eq!(plan(100_000, 120_000, EXACT_MAX), Plan::Ann);
        assert_eq!(plan(1_000_000, 1_000_000, EXACT_MAX), Plan::Ann);
        assert_eq!(
            plan(30_000, 1_000_000, EXACT_MAX),
            Plan::Exact,
            "3%: selective"
        );
        assert_eq!(
            plan(300_000, 10_000_000, EXACT_MAX),
            Plan::Ann,
            "too big to scan"
        );
        assert_eq!(plan(100_000, 0, EXACT_MAX), Plan::Exact, "no ANN index yet");
    }

    #[tokio::test]
    async fn a_spaces_first_write_starts_its_index_and_later_writes_extend_it() {
        let index = VectorIndex::with_exact_max(EXACT_MAX);
        let (fresh, old) = (Uuid::now_v7(), Uuid::now_v7());
        let first: Vec<(Uuid, MemoryVectors)> = (0..3)
            .map(|i| (Uuid::now_v7(), vec![(0, unit(i))]))
            .collect();
        index.upsert(fresh, 1, first).await;
        assert_eq!(
            index.memories_of(fresh).await,
            Some(3),
            "version 1: the whole space"
        );
        index
            .upsert(fresh, 2, vec![(Uuid::now_v7(), vec![(0, unit(7))])])
            .await;
        assert_eq!(index.memories_of(fresh).await, Some(4));
        // A later write to a space this process never loaded: the database has more of it,
        // so the next search loads it instead.
        index
            .upsert(old, 5, vec![(Uuid::now_v7(), vec![(0, unit(1))])])
            .await;
        assert_eq!(index.memories_of(old).await, None);
    }

    #[tokio::test]
    async fn writes_arriving_out_of_order_leave_nothing_to_catch_up_once_all_arrived() {
        let index = VectorIndex::with_exact_max(EXACT_MAX);
        let space = Uuid::now_v7();
        // Concurrent writers: versions 1, 3, 4, 2 reach the index in this order.
        for v in [1, 3, 4, 2] {
            index
                .upsert(
                    space,
                    v,
                    vec![(Uuid::now_v7(), vec![(0, unit(v as usize))])],
                )
                .await;
        }
        // A disconnected database: any catch-up statement would fail the search.
        let db = sea_orm::DatabaseConnection::default();
        let scope = [ScopeEntry {
            space_id: space,
            version: 4,
        }];
        let hits = index.search_scope(&db, &scope, &unit(3), 10).await.unwrap();
        assert_eq!(hits.len(), 4);
        // One version missing (5 never arrived): only it is left to read.
        index
            .upsert(space, 6, vec![(Uuid::now_v7(), vec![(0, unit(6))])])
            .await;
        let entry = index.entry(space);
        let missing = entry.read().await.cov.missing();
        let want = crate::coverage::Missing {
            after: 6,
            gaps: vec![5],
        };
        assert_eq!(missing, want, "only 5 to read");
    }

    #[tokio::test]
    async fn exact_and_ann_plans_return_the_same_top_results_on_a_small_corpus() {
        let (exact, ann, layout) = corpus(3, 1000, 32).await;
        let db = sea_orm::DatabaseConnection::default();
        let scope = scope_of(&layout.iter().map(|(s, _)| *s).collect::<Vec<_>>());
        let (mut same, mut total) = (0, 0);
        for q in 0..30 {
            let query = random_unit(1_000_000 + q, 32);
            let want = exact.search_scope(&db, &scope, &query, 10).await.unwrap();
            let got = ann.search_scope(&db, &scope, &query, 10).await.unwrap();
            assert_eq!(want.len(), 10);
            assert_eq!(
                got[0], want[0],
                "the best hit, with its f32 score and chunk"
            );
            let want_ids: HashSet<Uuid> = want.iter().map(|h| h.memory_id).collect();
            same += got
                .iter()
                .filter(|h| want_ids.contains(&h.memory_id))
                .count();
            total += want.len();
        }
        let recall = same as f64 / total as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[tokio::test]
    async fn a_filtered_ann_query_never_returns_a_memory_outside_its_scope() {
        let (_, ann, layout) = corpus(5, 600, 16).await;
        let db = sea_orm::DatabaseConnection::default();
        let inside: Vec<Uuid> = vec![layout[1].0, layout[3].0];
        let allowed: HashSet<Uuid> = layout
            .iter()
            .filter(|(s, _)| inside.contains(s))
            .flat_map(|(_, ms)| ms.iter().copied())
            .collect();
        let scope = scope_of(&inside);
        for q in 0..50 {
            let hits = ann
                .search_scope(&db, &scope, &random_unit(7_000 + q, 16), 20)
                .await
                .unwrap();
            assert_eq!(hits.len(), 20);
            assert!(hits.iter().all(|h| allowed.contains(&h.memory_id)));
        }
    }

    #[tokio::test]
    async fn removed_and_replaced_memories_leave_the_ann_index() {
        let (_, ann, layout) = corpus(1, 300, 16).await;
        let db = sea_orm::DatabaseConnection::default();
        let (space, memories) = &layout[0];
        let scope = scope_of(&[*space]);
        let target = memories[42];
        let probe = random_unit(9_999, 16);
        ann.upsert(*space, 1, vec![(target, vec![(0, probe.clone())])])
            .await;
        let hits = ann.search_scope(&db, &scope, &probe, 5).await.unwrap();
        assert_eq!(hits[0].memory_id, target);
        assert!((hits[0].score - 1.0).abs() < 1e-5);

        ann.remove(*space, &[target]).await;
        let hits = ann.search_scope(&db, &scope, &probe, 5).await.unwrap();
        assert!(hits.iter().all(|h| h.memory_id != target));
        let shard = ann.shard(16, false).unwrap();
        assert_eq!(shard.ann.len(), 299 * 2);
        assert_eq!(shard.rows().len(), 299 * 2);
    }

    #[tokio::test]
    async fn a_reopened_space_at_the_databases_version_is_searched_without_reading_it() {
        let dir = std::env::temp_dir().join(format!("msvi-reopen-{}", Uuid::now_v7()));
        let index = VectorIndex::open(dir.clone(), 0);
        let space = Uuid::now_v7();
        let memories: Vec<(Uuid, MemoryVectors)> = (0..200)
            .map(|i| (Uuid::now_v7(), vec![(0, random_unit(i, 16))]))
            .collect();
        index.upsert(space, 1, memories.clone()).await;
        index.save().await.unwrap();

        let reopened = VectorIndex::open(dir.clone(), 0);
        assert_eq!(reopened.reopened_spaces(), 1);
        // A disconnected database: any statement fails the search.
        let db = sea_orm::DatabaseConnection::default();
        let at = |version| {
            [ScopeEntry {
                space_id: space,
                version,
            }]
        };
        let hits = reopened
            .search_scope(&db, &at(1), &memories[7].1[0].1, 3)
            .await
            .unwrap();
        assert_eq!(
            hits[0].memory_id, memories[7].0,
            "served from the file's graph"
        );
        // The database moved on since the save: the space is compared and caught up (here the
        // database has no tables, so the search fails rather than serve a stale space).
        let again = VectorIndex::open(dir.clone(), 0);
        let empty = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        assert!(again
            .search_scope(&empty, &at(2), &memories[7].1[0].1, 3)
            .await
            .is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
