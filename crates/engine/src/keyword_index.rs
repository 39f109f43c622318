//! The keyword index: memories' content in a tantivy index (English stemming, BM25), searched
//! for the top k with block-max WAND, so a conversational query of fifteen terms costs about
//! what its best matches cost, not every memory holding one of its words (what the database's
//! own full-text engines do: FTS5 `bm25()` and `ts_rank_cd` rank every match).
//!
//! Kept in step like the vector index: the database is the source of truth, and each space's
//! entry records the space's `vector_version` it is complete up to. A write made by this process
//! is added after it commits (a space's first write starts its entry); a search first catches
//! each space of its scope up from the rows newer than that version (`index_seq`), so writes of
//! other replicas, or ones this process missed, are found. Deletions are applied as they
//! happen (this process's, and other replicas' through the event bus); one missed (a crash
//! between the database's commit and the index's) leaves a document that the search's filter
//! SQL drops, since every candidate is checked against the database.
//!
//! Durability: with a data directory the index lives in `<dir>/keyword` and every commit
//! carries the versions it covers as its payload; at start the index reopens at that state and
//! catches up. A missing or damaged index starts empty; spaces then load from the database, a
//! large one in the background while its searches run in the database's full-text engine.
//!
//! Visibility: additions and deletions become searchable at a commit. A search whose scope has
//! uncommitted changes commits first (a write is always found by the next search); otherwise a
//! background task commits at most every second.
//!
//! Scope: a search covering every space held is one unfiltered WAND query. A scope that holds
//! most of the documents filters inside the WAND loop (a rejected document never raises the
//! threshold); a selective scope intersects the query with its spaces' posting lists.
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, EnableScoring, Occur, Query, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STRING,
};
use tantivy::{DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, TantivyDocument, Term};
use tokio::sync::Mutex as AsyncMutex;
use uuid::Uuid;

use entity::memory;
use memspace_core::error::{AppError, AppResult};

use crate::coverage::{Coverage, Missing};
use crate::hit::ScopeEntry;

/// A space of at most this many memories that the index does not hold yet is loaded inside the
/// search that needs it; a larger one in the background.
pub const INLINE_LOAD_MAX: u64 = 20_000;
/// A scope holding less than this share of the index's documents is searched by intersecting
/// its spaces' posting lists with the query; a larger one by filtering inside the WAND loop.
const SELECTIVE_SHARE: f64 = 0.1;
/// The writer's indexing memory (one thread): a segment is flushed when it fills.
const WRITER_MEMORY: usize = 50_000_000;
/// Rows read from the database per statement when a space loads.
const LOAD_BATCH: u64 = 5_000;
/// Space ids per statement (well under SQLite's 32,766 variables).
const ID_BATCH: usize = 500;
const PAYLOAD_FORMAT: u32 = 1;
/// In an index of at least [`COMMON_MIN_DOCS`] documents, a query term found in more than this
/// share of them is common: as in Lucene's CommonTermsQuery, the top-k walk runs over the
/// query's rarer terms and the common ones only add their BM25 share to its candidates (a
/// conversational query's common words otherwise make the walk visit most of the index).
const COMMON_SHARE: f64 = 0.2;
pub const COMMON_MIN_DOCS: u64 = 50_000;
/// Candidates of the rare-terms walk per hit asked for, rescored with the common terms.
const COMMON_CANDIDATES: usize = 20;

#[derive(Clone, Copy)]
struct Fields {
    memory: Field,
    space: Field,
    memory_hi: Field,
    memory_lo: Field,
    space_hi: Field,
    space_lo: Field,
    content: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let memory = b.add_text_field("memory", STRING);
    let space = b.add_text_field("space", STRING);
    let memory_hi = b.add_u64_field("memory_hi", FAST);
    let memory_lo = b.add_u64_field("memory_lo", FAST);
    let space_hi = b.add_u64_field("space_hi", FAST);
    let space_lo = b.add_u64_field("space_lo", FAST);
    let content = b.add_text_field(
        "content",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqs),
        ),
    );
    let fields = Fields {
        memory,
        space,
        memory_hi,
        memory_lo,
        space_hi,
        space_lo,
        content,
    };
    (b.build(), fields)
}

fn split(id: Uuid) -> (u64, u64) {
    let v = id.as_u128();
    ((v >> 64) as u64, v as u64)
}

fn join(hi: u64, lo: u64) -> Uuid {
    Uuid::from_u128((u128::from(hi) << 64) | u128::from(lo))
}

/// The commit payload: the versions the committed documents cover.
#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    format: u32,
    spaces: HashMap<Uuid, i64>,
}

/// What the index holds of one space.
#[derive(Default)]
struct SpaceEntry {
    /// The `vector_version`s held (None: not loaded).
    cov: Option<Coverage>,
    /// A background load is running.
    loading: bool,
}

/// The writer and the versions its documents cover (committed or not), changed together.
struct Writer {
    writer: IndexWriter<TantivyDocument>,
    versions: HashMap<Uuid, i64>,
    /// Spaces with changes not yet committed.
    dirty: HashSet<Uuid>,
}

pub struct KeywordIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<Writer>,
    spaces: Mutex<HashMap<Uuid, Arc<AsyncMutex<SpaceEntry>>>>,
    /// Any uncommitted change (a fast check for searches).
    dirty: AtomicBool,
    dir: Option<PathBuf>,
    /// [`KeywordIndex::present`] of the last searcher generation.
    present: Mutex<Option<(u64, Present)>>,
    /// Spaces reopened from the directory at start.
    reopened: usize,
    /// Spaces of at most this many memories load inside the search that needs them.
    inline_load_max: u64,
    /// Common query terms are set apart from this many documents on ([`COMMON_MIN_DOCS`]).
    common_min_docs: u64,
}

/// Documents per space in one searcher generation.
type Present = Arc<HashMap<Uuid, u64>>;
/// Half of a memory id, per document of a segment.
type IdColumn = tantivy::columnar::Column<u64>;

fn is_lock_busy(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<tantivy::TantivyError>(),
        Some(tantivy::TantivyError::LockFailure(..))
    )
}

fn internal(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("keyword index {what}: {e}"))
}

impl KeywordIndex {
    /// An index in RAM (nothing persisted: spaces load from the database on first search).
    pub fn in_memory() -> Self {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields, HashMap::new(), None)
            .expect("a RAM index with a fresh schema always opens")
    }

    /// The index persisted in `dir`: reopened at its last commit, or started empty when
    /// missing, damaged, of another schema or locked by another process (then in RAM).
    pub fn open(dir: &Path) -> Self {
        match Self::try_open(dir) {
            Ok(index) => index,
            Err(e) if is_lock_busy(&e) => {
                // Another server uses this directory: never touch its files.
                tracing::warn!(dir = %dir.display(), "keyword index directory in use by another process: kept in RAM");
                Self::in_memory()
            }
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "keyword index not reopened: starting empty");
                let fresh = std::fs::remove_dir_all(dir)
                    .ok()
                    .and_then(|_| Self::try_open(dir).ok());
                fresh.unwrap_or_else(|| {
                    tracing::warn!(dir = %dir.display(), "keyword index kept in RAM");
                    Self::in_memory()
                })
            }
        }
    }

    fn try_open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let index = Index::open_or_create(MmapDirectory::open(dir)?, schema)?;
        let versions = match index.load_metas()?.payload {
            Some(p) => {
                let p: Payload = serde_json::from_str(&p)?;
                anyhow::ensure!(
                    p.format == PAYLOAD_FORMAT,
                    "unknown payload format {}",
                    p.format
                );
                p.spaces
            }
            None => HashMap::new(),
        };
        if !versions.is_empty() {
            tracing::info!(spaces = versions.len(), dir = %dir.display(), "keyword index reopened");
        }
        Self::with_index(index, fields, versions, Some(dir.to_path_buf()))
    }

    fn with_index(
        index: Index,
        fields: Fields,
        versions: HashMap<Uuid, i64>,
        dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let versions_len = versions.len();
        let spaces = versions
            .iter()
            .map(|(id, v)| {
                let entry = SpaceEntry {
                    cov: Some(Coverage::new(*v)),
                    loading: false,
                };
                (*id, Arc::new(AsyncMutex::new(entry)))
            })
            .collect();
        Ok(KeywordIndex {
            index,
            fields,
            reader,
            writer: Mutex::new(Writer {
                writer,
                versions,
                dirty: HashSet::new(),
            }),
            spaces: Mutex::new(spaces),
            dirty: AtomicBool::new(false),
            dir,
            present: Mutex::new(None),
            reopened: versions_len,
            inline_load_max: INLINE_LOAD_MAX,
            common_min_docs: COMMON_MIN_DOCS,
        })
    }

    /// Spaces of more than `max` memories not held yet load in the background (tests lower
    /// it from [`INLINE_LOAD_MAX`]).
    pub fn with_inline_load_max(mut self, max: u64) -> Self {
        self.inline_load_max = max;
        self
    }

    /// Common query terms are set apart in indexes of at least `n` documents (tests lower it
    /// from [`COMMON_MIN_DOCS`]).
    pub fn with_common_min_docs(mut self, n: u64) -> Self {
        self.common_min_docs = n;
        self
    }

    /// How many spaces were reopened from the directory at start.
    pub fn reopened_spaces(&self) -> usize {
        self.reopened
    }

    /// Where the index is persisted (None: in RAM).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(&self, space_id: Uuid) -> Arc<AsyncMutex<SpaceEntry>> {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        spaces.entry(space_id).or_default().clone()
    }

    fn doc(&self, space_id: Uuid, memory_id: Uuid, content: &str) -> TantivyDocument {
        let f = self.fields;
        let (mh, ml) = split(memory_id);
        let (sh, sl) = split(space_id);
        let mut d = TantivyDocument::new();
        d.add_text(f.memory, memory_id.to_string());
        d.add_text(f.space, space_id.to_string());
        d.add_u64(f.memory_hi, mh);
        d.add_u64(f.memory_lo, ml);
        d.add_u64(f.space_hi, sh);
        d.add_u64(f.space_lo, sl);
        d.add_text(f.content, content);
        d
    }

    /// Replaces (or adds) memories' documents; `version` is recorded when it follows the one
    /// held, or when `full` says the documents are the whole space at that version.
    fn put(&self, space_id: Uuid, docs: &[(Uuid, String)], version: Option<i64>, full: bool) {
        let mut w = self.writer();
        if full {
            w.writer.delete_term(Term::from_field_text(
                self.fields.space,
                &space_id.to_string(),
            ));
        }
        for (id, content) in docs {
            w.writer
                .delete_term(Term::from_field_text(self.fields.memory, &id.to_string()));
            if let Err(e) = w.writer.add_document(self.doc(space_id, *id, content)) {
                tracing::warn!(error = %e, "keyword index: document not added");
            }
        }
        if let Some(v) = version {
            let held = w.versions.get(&space_id).copied();
            if full || held.is_some_and(|h| v >= h) {
                w.versions.insert(space_id, v);
            }
        }
        w.dirty.insert(space_id);
        self.dirty.store(true, Ordering::Release);
    }

    /// Records memories written by this process in the write that took the space to
    /// `version` (after it committed). A space the index does not hold is started by its first
    /// write (version 1: the database has nothing else of it) and otherwise left to the load
    /// of its next search; a version arriving out of order is recorded, so the next search
    /// reads only the versions still missing.
    pub async fn upsert(&self, space_id: Uuid, version: i64, docs: Vec<(Uuid, String)>) {
        let entry = self.entry(space_id);
        let mut e = entry.lock().await;
        let loading = e.loading;
        match e.cov.as_mut() {
            Some(c) => {
                c.add(version);
                let through = c.through;
                self.put(space_id, &docs, Some(through), false);
            }
            None if version == 1 && !loading => {
                self.put(space_id, &docs, Some(version), true);
                e.cov = Some(Coverage::new(version));
            }
            None => {}
        }
    }

    /// Forgets deleted memories.
    pub async fn remove(&self, space_id: Uuid, memory_ids: &[Uuid]) {
        let entry = self.entry(space_id);
        let e = entry.lock().await;
        if e.cov.is_none() && !e.loading {
            return;
        }
        let mut w = self.writer();
        for id in memory_ids {
            w.writer
                .delete_term(Term::from_field_text(self.fields.memory, &id.to_string()));
        }
        w.dirty.insert(space_id);
        self.dirty.store(true, Ordering::Release);
    }

    /// Drops a space (purged, or possibly stale): it loads again on its next search.
    pub fn forget_space(&self, space_id: Uuid) {
        let removed = self
            .spaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&space_id);
        let mut w = self.writer();
        w.writer.delete_term(Term::from_field_text(
            self.fields.space,
            &space_id.to_string(),
        ));
        w.versions.remove(&space_id);
        w.dirty.insert(space_id);
        self.dirty.store(true, Ordering::Release);
        drop(w);
        if let Some(entry) = removed {
            if let Ok(mut e) = entry.try_lock() {
                e.cov = None;
            }
        }
    }

    /// Drops every space: each loads again on its next search.
    pub fn forget_all(&self) {
        let ids: Vec<Uuid> = self
            .spaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for id in ids {
            self.forget_space(id);
        }
    }

    /// Makes pending changes searchable and durable (with the versions they cover). Blocking:
    /// call it off the async runtime.
    pub fn commit(&self) -> anyhow::Result<()> {
        let mut w = self.writer();
        if w.dirty.is_empty() && !self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        let payload = serde_json::to_string(&Payload {
            format: PAYLOAD_FORMAT,
            spaces: w.versions.clone(),
        })?;
        let mut prepared = w.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        // Searchable before anyone can see the changes as committed: a search that finds
        // nothing pending (it checks under this lock, or reads `dirty`) must get a searcher
        // that holds them.
        self.reader.reload()?;
        w.dirty.clear();
        self.dirty.store(false, Ordering::Release);
        Ok(())
    }

    /// [`KeywordIndex::commit`] on the blocking pool.
    pub async fn commit_async(self: &Arc<Self>) -> anyhow::Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.commit())
            .await
            .map_err(|e| anyhow::anyhow!("keyword commit: {e}"))?
    }

    /// Commits every `interval` while changes are pending (the bound on how long a write takes
    /// to reach a search that did not ask for it, and on what a crash makes the next start
    /// catch up from the database).
    pub fn spawn_committer(self: &Arc<Self>, interval: std::time::Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { break };
                if me.dirty.load(Ordering::Acquire) {
                    if let Err(e) = me.commit_async().await {
                        tracing::warn!(error = %e, "keyword index not committed");
                    }
                }
            }
        });
    }

    /// Brings every space of `scope` up to its database version. Returns false when a space
    /// is not ready (loading in the background): the caller searches the database instead.
    /// Spaces not held yet are counted in one statement and the small ones read together (a
    /// replica's first search over 1,000 spaces is a few statements, not 2,000).
    async fn ensure_current<C: ConnectionTrait>(
        self: &Arc<Self>,
        db: &C,
        scope: &[ScopeEntry],
        background: impl Fn(Uuid, i64) + Clone,
    ) -> AppResult<bool> {
        // Entries locked in space order: two searches never wait on each other in a cycle.
        let mut ordered: Vec<&ScopeEntry> = scope.iter().collect();
        ordered.sort_by_key(|s| s.space_id);
        ordered.dedup_by_key(|s| s.space_id);
        let mut ready = true;
        let mut missing = Vec::new();
        for s in ordered {
            let entry = self.entry(s.space_id);
            let mut e = entry.lock_owned().await;
            if e.loading {
                ready = false;
                continue;
            }
            match &e.cov {
                Some(c) if c.covers(s.version) => {}
                Some(c) => {
                    let docs = rows(db, &[s.space_id], Some(c.missing())).await?;
                    let docs: Vec<(Uuid, String)> =
                        docs.into_iter().map(|(id, _, c)| (id, c)).collect();
                    if let Some(c) = e.cov.as_mut() {
                        c.complete_to(s.version);
                        self.put(s.space_id, &docs, Some(c.through), false);
                    }
                }
                None => missing.push((e, *s)),
            }
        }
        if missing.is_empty() {
            return Ok(ready);
        }
        let ids: Vec<Uuid> = missing.iter().map(|(_, s)| s.space_id).collect();
        let mut counts: HashMap<Uuid, u64> = HashMap::new();
        for part in ids.chunks(ID_BATCH) {
            let rows: Vec<(Uuid, i64)> = memory::Entity::find()
                .select_only()
                .column(memory::Column::SpaceId)
                .column_as(memory::Column::Id.count(), "n")
                .filter(memory::Column::SpaceId.is_in(part.iter().copied()))
                .group_by(memory::Column::SpaceId)
                .into_tuple()
                .all(db)
                .await?;
            counts.extend(rows.into_iter().map(|(id, n)| (id, n.max(0) as u64)));
        }
        // Small spaces in groups of about LOAD_BATCH memories per statement.
        let mut group: Vec<(tokio::sync::OwnedMutexGuard<SpaceEntry>, ScopeEntry)> = Vec::new();
        let mut group_rows = 0u64;
        for (mut e, s) in missing {
            let n = counts.get(&s.space_id).copied().unwrap_or(0);
            if n > self.inline_load_max {
                e.loading = true;
                ready = false;
                background(s.space_id, s.version);
                continue;
            }
            if group_rows + n > LOAD_BATCH && !group.is_empty() {
                self.load_group(db, std::mem::take(&mut group)).await?;
                group_rows = 0;
            }
            group_rows += n;
            group.push((e, s));
        }
        if !group.is_empty() {
            self.load_group(db, group).await?;
        }
        Ok(ready)
    }

    /// Loads whole spaces (small ones, inside a search) at their scope versions.
    async fn load_group<C: ConnectionTrait>(
        &self,
        db: &C,
        group: Vec<(tokio::sync::OwnedMutexGuard<SpaceEntry>, ScopeEntry)>,
    ) -> AppResult<()> {
        let ids: Vec<Uuid> = group.iter().map(|(_, s)| s.space_id).collect();
        let mut by_space: HashMap<Uuid, Vec<(Uuid, String)>> = HashMap::new();
        for part in ids.chunks(ID_BATCH) {
            for (id, space, content) in rows(db, part, None).await? {
                by_space.entry(space).or_default().push((id, content));
            }
        }
        for (mut e, s) in group {
            let docs = by_space.remove(&s.space_id).unwrap_or_default();
            self.put(s.space_id, &docs, Some(s.version), true);
            e.cov = Some(Coverage::new(s.version));
        }
        Ok(())
    }

    /// Loads a whole space (from a background task): documents in batches, then the version.
    pub async fn load_space<C: ConnectionTrait>(
        self: &Arc<Self>,
        db: &C,
        space_id: Uuid,
        version: i64,
    ) -> AppResult<()> {
        let started = std::time::Instant::now();
        let entry = self.entry(space_id);
        let result = async {
            {
                let w = self.writer();
                w.writer.delete_term(Term::from_field_text(
                    self.fields.space,
                    &space_id.to_string(),
                ));
            }
            let mut after: Option<Uuid> = None;
            let mut loaded = 0usize;
            loop {
                let mut q = memory::Entity::find()
                    .select_only()
                    .column(memory::Column::Id)
                    .column(memory::Column::Content)
                    .filter(memory::Column::SpaceId.eq(space_id));
                if let Some(a) = after {
                    q = q.filter(memory::Column::Id.gt(a));
                }
                let batch: Vec<(Uuid, String)> =
                    sea_orm::QueryOrder::order_by_asc(q, memory::Column::Id)
                        .limit(LOAD_BATCH)
                        .into_tuple()
                        .all(db)
                        .await?;
                let Some(last) = batch.last() else { break };
                after = Some(last.0);
                loaded += batch.len();
                self.put(space_id, &batch, None, false);
            }
            AppResult::Ok(loaded)
        }
        .await;
        let mut e = entry.lock().await;
        e.loading = false;
        let loaded = result?;
        // Rows written during the load are caught up by the next search (the version is the
        // one the load started from).
        self.writer().versions.insert(space_id, version);
        e.cov = Some(Coverage::new(version));
        drop(e);
        self.commit_async()
            .await
            .map_err(|e| internal("commit", e))?;
        tracing::info!(space = %space_id, memories = loaded, ms = started.elapsed().as_millis() as u64, "keyword index loaded a space");
        Ok(())
    }

    /// The `limit` best memories of `scope` for `query` (id, BM25 score), best first; None
    /// when a space of the scope is still loading (search the database instead).
    /// `background` starts the load of a large space not held yet.
    pub async fn search<C: ConnectionTrait>(
        self: &Arc<Self>,
        db: &C,
        scope: &[ScopeEntry],
        query: &str,
        limit: usize,
        background: impl Fn(Uuid, i64) + Clone,
    ) -> AppResult<Option<Vec<(Uuid, f64)>>> {
        if !self.ensure_current(db, scope, background).await? {
            return Ok(None);
        }
        let pending = self.dirty.load(Ordering::Acquire) && {
            let w = self.writer();
            scope.iter().any(|s| w.dirty.contains(&s.space_id))
        };
        if pending {
            self.commit_async()
                .await
                .map_err(|e| internal("commit", e))?;
        }
        let me = self.clone();
        let spaces: HashSet<Uuid> = scope.iter().map(|s| s.space_id).collect();
        let query = query.to_string();
        tokio::task::spawn_blocking(move || me.top(&spaces, &query, limit))
            .await
            .map_err(|e| internal("search", e))?
            .map(Some)
            .map_err(|e| internal("search", e))
    }

    /// The query's distinct terms, analysed as the content is.
    fn terms(&self, query: &str) -> tantivy::Result<Vec<Term>> {
        let mut analyzer = self.index.tokenizer_for_field(self.fields.content)?;
        let mut stream = analyzer.token_stream(query);
        let mut seen = HashSet::new();
        let mut terms = Vec::new();
        while stream.advance() {
            let text = stream.token().text.clone();
            if seen.insert(text.clone()) {
                terms.push(Term::from_field_text(self.fields.content, &text));
            }
        }
        Ok(terms)
    }

    /// Top-k over the committed index, restricted to `spaces`. In a large index the query's
    /// common terms are set apart: the walk ranks `limit × COMMON_CANDIDATES` candidates by
    /// the rarer terms, and each candidate's score is completed with the common terms' BM25
    /// (the sum the whole query would give it).
    fn top(
        &self,
        spaces: &HashSet<Uuid>,
        query: &str,
        limit: usize,
    ) -> tantivy::Result<Vec<(Uuid, f64)>> {
        let terms = self.terms(query)?;
        if terms.is_empty() || spaces.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let docs = searcher.num_docs();
        let (mut rare, mut common) = (Vec::new(), Vec::new());
        for t in terms {
            let common_term = docs >= self.common_min_docs
                && searcher.doc_freq(&t)? as f64 > COMMON_SHARE * docs as f64;
            if common_term {
                common.push(t);
            } else {
                rare.push(t);
            }
        }
        if rare.is_empty() {
            // Only common words: the plain walk over all of them.
            rare = std::mem::take(&mut common);
        }
        let walked = if common.is_empty() {
            limit
        } else {
            limit * COMMON_CANDIDATES
        };
        let mut hits = self.walk(&searcher, spaces, rare, walked)?;
        if !common.is_empty() {
            self.add_common(&searcher, common, &mut hits)?;
            hits.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            hits.truncate(limit);
        }
        let mut columns: HashMap<u32, (IdColumn, IdColumn)> = HashMap::new();
        let mut out = Vec::with_capacity(hits.len());
        for (score, ord, doc) in hits {
            let (hi, lo) = match columns.entry(ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let ff = searcher.segment_reader(ord).fast_fields();
                    e.insert((ff.u64("memory_hi")?, ff.u64("memory_lo")?))
                }
            };
            if let (Some(h), Some(l)) = (hi.first(doc), lo.first(doc)) {
                out.push((join(h, l), f64::from(score.0)));
            }
        }
        Ok(out)
    }

    /// Adds each common term's BM25 share to the candidates that hold it (per segment, the
    /// candidates in document order, so each term's postings are read forward once).
    fn add_common(
        &self,
        searcher: &tantivy::Searcher,
        common: Vec<Term>,
        hits: &mut [(Ranked, u32, DocId)],
    ) -> tantivy::Result<()> {
        let mut order: Vec<usize> = (0..hits.len()).collect();
        order.sort_by_key(|i| (hits[*i].1, hits[*i].2));
        for t in common {
            let weight = TermQuery::new(t, IndexRecordOption::WithFreqs)
                .weight(EnableScoring::enabled_from_searcher(searcher))?;
            let mut current: Option<(u32, Box<dyn tantivy::query::Scorer>)> = None;
            for &i in &order {
                let (_, ord, doc) = hits[i];
                if current.as_ref().is_none_or(|(o, _)| *o != ord) {
                    let scorer = weight.scorer(searcher.segment_reader(ord), 1.0)?;
                    current = Some((ord, scorer));
                }
                let Some((_, scorer)) = current.as_mut() else {
                    continue;
                };
                if scorer.doc() < doc {
                    scorer.seek(doc);
                }
                if scorer.doc() == doc {
                    hits[i].0 = Ranked(hits[i].0 .0 + scorer.score());
                }
            }
        }
        Ok(())
    }

    /// The block-max WAND walk: the best `limit` (score, segment, document) of `spaces` for
    /// the union of `terms`.
    fn walk(
        &self,
        searcher: &tantivy::Searcher,
        spaces: &HashSet<Uuid>,
        terms: Vec<Term>,
        limit: usize,
    ) -> tantivy::Result<Vec<(Ranked, u32, DocId)>> {
        let union: Box<dyn Query> = Box::new(BooleanQuery::new(
            terms
                .into_iter()
                .map(|t| {
                    let q: Box<dyn Query> =
                        Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs));
                    (Occur::Should, q)
                })
                .collect(),
        ));
        // Which spaces the searched index holds, and how much of it the scope is, decide the
        // plan (from the committed segments themselves, so a document of a space being loaded
        // or forgotten is never taken for one of the scope's).
        let present = self.present(searcher)?;
        let total: u64 = present.values().sum::<u64>().max(1);
        let covers_all = present.keys().all(|id| spaces.contains(id));
        let in_scope: u64 = spaces.iter().filter_map(|id| present.get(id)).sum();
        let selective = !covers_all && (in_scope as f64) < SELECTIVE_SHARE * total as f64;
        let query: Box<dyn Query> = if selective {
            let scope_terms = spaces
                .iter()
                .map(|id| Term::from_field_text(self.fields.space, &id.to_string()));
            let scope: Box<dyn Query> = Box::new(ConstScoreQuery::new(
                Box::new(TermSetQuery::new(scope_terms)),
                0.0,
            ));
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, scope),
                (Occur::Must, union),
            ]))
        } else {
            union
        };
        let filter = !covers_all && !selective;
        let weight = query.weight(EnableScoring::enabled_from_searcher(searcher))?;
        // Min-heap of the best `limit` (score, segment, doc).
        let mut heap: BinaryHeap<std::cmp::Reverse<(Ranked, u32, DocId)>> = BinaryHeap::new();
        let mut threshold = Score::MIN;
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let alive = segment.alive_bitset();
            let space = if filter {
                let ff = segment.fast_fields();
                Some((ff.u64("space_hi")?, ff.u64("space_lo")?))
            } else {
                None
            };
            weight.for_each_pruning(threshold, segment, &mut |doc, score| {
                if alive.is_some_and(|a| a.is_deleted(doc)) {
                    return threshold;
                }
                if let Some((hi, lo)) = &space {
                    let (Some(h), Some(l)) = (hi.first(doc), lo.first(doc)) else {
                        return threshold;
                    };
                    if !spaces.contains(&join(h, l)) {
                        return threshold;
                    }
                }
                heap.push(std::cmp::Reverse((Ranked(score), ord as u32, doc)));
                if heap.len() > limit {
                    heap.pop();
                }
                if heap.len() == limit {
                    threshold = heap.peek().map_or(Score::MIN, |r| r.0 .0 .0);
                }
                threshold
            })?;
        }
        let mut hits: Vec<(Ranked, u32, DocId)> = heap.into_iter().map(|r| r.0).collect();
        hits.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        Ok(hits)
    }

    /// The spaces with documents in `searcher`'s segments and how many each (deleted ones
    /// included until merged away), cached per searcher generation.
    fn present(&self, searcher: &tantivy::Searcher) -> tantivy::Result<Present> {
        let generation = searcher.generation().generation_id();
        if let Some((g, p)) = &*self.present.lock().unwrap_or_else(|e| e.into_inner()) {
            if *g == generation {
                return Ok(p.clone());
            }
        }
        let mut counts: HashMap<Uuid, u64> = HashMap::new();
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(self.fields.space)?;
            let mut terms = inverted.terms().stream()?;
            while terms.advance() {
                let id = std::str::from_utf8(terms.key())
                    .ok()
                    .and_then(|k| Uuid::parse_str(k).ok());
                if let Some(id) = id {
                    *counts.entry(id).or_default() += u64::from(terms.value().doc_freq);
                }
            }
        }
        let counts = Arc::new(counts);
        *self.present.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((generation, counts.clone()));
        Ok(counts)
    }

    /// Documents the index holds (committed, not deleted).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// A score with a total order (BM25 scores are finite).
#[derive(Clone, Copy, PartialEq)]
struct Ranked(Score);
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The memories of `spaces` of the versions `since` lacks (all with None): (id, space,
/// content).
async fn rows<C: ConnectionTrait>(
    db: &C,
    spaces: &[Uuid],
    since: Option<Missing>,
) -> AppResult<Vec<(Uuid, Uuid, String)>> {
    let mut q = memory::Entity::find()
        .select_only()
        .column(memory::Column::Id)
        .column(memory::Column::SpaceId)
        .column(memory::Column::Content)
        .filter(memory::Column::SpaceId.is_in(spaces.iter().copied()));
    if let Some(m) = since {
        q = q.filter(m.condition());
    }
    Ok(q.into_tuple().all(db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` documents of a space: every one holds "common", one in three "rare", and each a
    /// word of its own, so BM25 scores differ.
    fn docs(n: usize, tag: &str) -> Vec<(Uuid, String)> {
        (0..n)
            .map(|i| {
                let rare = if i % 3 == 0 { " rare" } else { "" };
                let repeat = " common".repeat(1 + i % 4);
                (
                    Uuid::now_v7(),
                    format!("{tag}{i} notes{repeat}{rare} filler words"),
                )
            })
            .collect()
    }

    fn space_of(all: &[(Uuid, Vec<(Uuid, String)>)], memory: Uuid) -> Uuid {
        all.iter()
            .find(|(_, d)| d.iter().any(|(id, _)| *id == memory))
            .map(|(s, _)| *s)
            .expect("a known memory")
    }

    #[test]
    fn every_plan_returns_the_scopes_best_matches_and_nothing_outside_it() {
        let index = KeywordIndex::in_memory();
        let (big, mid, small) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let all = vec![
            (big, docs(600, "big")),
            (mid, docs(90, "mid")),
            (small, docs(12, "small")),
        ];
        for (space, d) in &all {
            index.put(*space, d, Some(1), true);
        }
        index.commit().unwrap();
        assert_eq!(index.num_docs(), 702);

        let everything: HashSet<Uuid> = [big, mid, small].into();
        for query in [
            "common rare",
            "rare",
            "notes common filler",
            "Commons RARELY",
        ] {
            let full = index.top(&everything, query, 1000).unwrap();
            for scope in [
                everything.clone(),        // covers all: unfiltered WAND
                HashSet::from([big, mid]), // most documents: filtered inside WAND
                HashSet::from([small]),    // selective: posting-list intersection
                HashSet::from([mid, small]),
            ] {
                let got = index.top(&scope, query, 10).unwrap();
                let want: Vec<(Uuid, f64)> = full
                    .iter()
                    .filter(|(id, _)| scope.contains(&space_of(&all, *id)))
                    .take(10)
                    .copied()
                    .collect();
                assert!(
                    got.iter()
                        .all(|(id, _)| scope.contains(&space_of(&all, *id))),
                    "{query}: a hit outside the scope"
                );
                let scores = |v: &[(Uuid, f64)]| {
                    v.iter().map(|(_, s)| (s * 1e4).round()).collect::<Vec<_>>()
                };
                assert_eq!(scores(&got), scores(&want), "{query}: not the scope's best");
                assert_eq!(got.len(), want.len().min(10));
            }
        }
        assert!(index.top(&everything, "absent", 10).unwrap().is_empty());
        assert!(index.top(&everything, "  !? ", 10).unwrap().is_empty());
        assert!(index
            .top(&HashSet::from([Uuid::now_v7()]), "common", 10)
            .unwrap()
            .is_empty());
    }

    /// `n` documents of 15 words each from a 200-word vocabulary, skewed so that a few words
    /// are in most documents (as in conversational text).
    fn skewed_docs(n: usize) -> Vec<(Uuid, String)> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        (0..n)
            .map(|_| {
                let words: Vec<String> = (0..15)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let u = (x % 10_000) as f64 / 10_000.0;
                        format!("w{}", (200.0 * u * u * u) as usize)
                    })
                    .collect();
                (Uuid::now_v7(), words.join(" "))
            })
            .collect()
    }

    #[test]
    fn common_terms_only_complete_the_scores_of_the_rare_terms_candidates() {
        let split = KeywordIndex::in_memory().with_common_min_docs(0);
        let whole = KeywordIndex::in_memory().with_common_min_docs(u64::MAX);
        let space = Uuid::now_v7();
        let docs = skewed_docs(3000);
        for index in [&split, &whole] {
            index.put(space, &docs, Some(1), true);
            index.commit().unwrap();
        }
        let scope = HashSet::from([space]);
        let (mut same, mut total) = (0, 0);
        for (source, text) in docs.iter().step_by(97) {
            // The document's words but two, as a user half-remembers them.
            let words: Vec<&str> = text.split(' ').collect();
            let query = words[2..].join(" ");
            // The query has terms on both sides of the cut, so the split path runs.
            let searcher = split.reader.searcher();
            let shares: Vec<f64> = split
                .terms(&query)
                .unwrap()
                .iter()
                .map(|t| searcher.doc_freq(t).unwrap() as f64 / docs.len() as f64)
                .collect();
            if !(shares.iter().any(|s| *s > COMMON_SHARE)
                && shares.iter().any(|s| *s <= COMMON_SHARE))
            {
                continue;
            }
            let full: HashMap<Uuid, f64> = whole
                .top(&scope, &query, docs.len())
                .unwrap()
                .into_iter()
                .collect();
            let want = whole.top(&scope, &query, 10).unwrap();
            let got = split.top(&scope, &query, 10).unwrap();
            assert_eq!(got.len(), 10);
            for (id, score) in &got {
                assert!(
                    (full[id] - score).abs() < 1e-3,
                    "{query}: a candidate's score is the whole query's BM25"
                );
            }
            assert_eq!(got[0].0, want[0].0, "{query}: the same best match");
            assert!(
                got.iter().any(|(id, _)| id == source),
                "{query}: its source"
            );
            let want_ids: HashSet<Uuid> = want.iter().map(|(id, _)| *id).collect();
            same += got.iter().filter(|(id, _)| want_ids.contains(id)).count();
            total += 10;
        }
        assert!(total >= 150, "most queries mix common and rare terms");
        let overlap = same as f64 / total as f64;
        assert!(
            overlap >= 0.9,
            "top-10 overlap with the whole query {overlap}"
        );
    }

    #[test]
    fn stemming_matches_word_forms_and_scores_rarer_terms_higher() {
        let index = KeywordIndex::in_memory();
        let space = Uuid::now_v7();
        let (brew, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut d = vec![
            (brew, "Brewing coffee with an AeroPress".to_string()),
            (other, "Coffee beans are stored in the pantry".to_string()),
        ];
        d.extend((0..20).map(|i| (Uuid::now_v7(), format!("coffee note {i}"))));
        index.put(space, &d, Some(1), true);
        index.commit().unwrap();
        let got = index
            .top(&HashSet::from([space]), "brewed coffees", 10)
            .unwrap();
        assert_eq!(
            got.first().map(|h| h.0),
            Some(brew),
            "the rare stem ranks first"
        );
        assert_eq!(got.len(), 10);
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
    }

    #[tokio::test]
    async fn writes_replace_and_deletes_remove_documents_and_versions_follow_in_order() {
        let index = Arc::new(KeywordIndex::in_memory());
        let space = Uuid::now_v7();
        let scope = HashSet::from([space]);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        index
            .upsert(
                space,
                1,
                vec![(a, "red apples".into()), (b, "green pears".into())],
            )
            .await;
        index
            .upsert(space, 2, vec![(a, "yellow bananas".into())])
            .await;
        // Version 4 before 3: held back, so the next search catches up from the database.
        index.upsert(space, 4, vec![(b, "ripe plums".into())]).await;
        index.commit().unwrap();
        assert!(
            index.top(&scope, "apples", 10).unwrap().is_empty(),
            "replaced"
        );
        assert_eq!(index.top(&scope, "bananas", 10).unwrap()[0].0, a);
        assert_eq!(index.top(&scope, "plums", 10).unwrap()[0].0, b);
        assert_eq!(index.writer().versions[&space], 2);
        index.remove(space, &[a]).await;
        index.commit().unwrap();
        assert!(
            index.top(&scope, "bananas", 10).unwrap().is_empty(),
            "deleted"
        );
        assert_eq!(index.num_docs(), 1);
        // A space the index does not hold ignores writes past its first (it loads instead).
        let other = Uuid::now_v7();
        index
            .upsert(other, 7, vec![(Uuid::now_v7(), "late".into())])
            .await;
        index.commit().unwrap();
        assert!(index
            .top(&HashSet::from([other]), "late", 10)
            .unwrap()
            .is_empty());
        index.forget_space(space);
        index.commit().unwrap();
        assert_eq!(index.num_docs(), 0);
    }

    #[tokio::test]
    async fn writes_arriving_out_of_order_leave_nothing_to_catch_up_once_all_arrived() {
        let index = Arc::new(KeywordIndex::in_memory());
        let space = Uuid::now_v7();
        for v in [1, 3, 4, 2] {
            index
                .upsert(space, v, vec![(Uuid::now_v7(), format!("harbour {v}"))])
                .await;
        }
        // A disconnected database: any catch-up statement would fail the search.
        let db = sea_orm::DatabaseConnection::default();
        let scope = [ScopeEntry {
            space_id: space,
            version: 4,
        }];
        let hits = index
            .search(&db, &scope, "harbour", 10, |_, _| {})
            .await
            .unwrap();
        assert_eq!(hits.map(|h| h.len()), Some(4));
        assert_eq!(index.writer().versions[&space], 4);
        index
            .upsert(space, 6, vec![(Uuid::now_v7(), "harbour 6".into())])
            .await;
        let entry = index.entry(space);
        let missing = entry.lock().await.cov.as_ref().map(|c| c.missing());
        assert_eq!(
            missing,
            Some(Missing {
                after: 6,
                gaps: vec![5]
            }),
            "only 5 to read"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_is_found_by_the_next_search_while_the_committer_runs() {
        let index = Arc::new(KeywordIndex::in_memory());
        // A committer racing every search (the server's runs every second).
        index.spawn_committer(std::time::Duration::from_millis(1));
        let db = sea_orm::DatabaseConnection::default();
        let space = Uuid::now_v7();
        for v in 1..=250i64 {
            let id = Uuid::now_v7();
            index
                .upsert(space, v, vec![(id, format!("token{v} note"))])
                .await;
            let scope = [ScopeEntry {
                space_id: space,
                version: v,
            }];
            let hits = index
                .search(&db, &scope, &format!("token{v}"), 10, |_, _| {})
                .await
                .unwrap()
                .unwrap();
            assert_eq!(hits.first().map(|h| h.0), Some(id), "write {v} not found");
        }
    }

    #[test]
    fn a_reopened_index_keeps_its_documents_and_versions_and_a_damaged_one_starts_empty() {
        let dir = std::env::temp_dir().join(format!("memspace-keyword-{}", Uuid::now_v7()));
        let space = Uuid::now_v7();
        let kept = Uuid::now_v7();
        {
            let index = KeywordIndex::open(&dir);
            index.put(space, &[(kept, "lighthouse keeper".into())], Some(3), true);
            index.commit().unwrap();
            // Another process on the same directory gets an index in RAM and leaves the
            // files alone.
            let second = KeywordIndex::open(&dir);
            assert!(second.dir().is_none());
            assert_eq!(index.num_docs(), 1);
        }
        let index = KeywordIndex::open(&dir);
        assert_eq!(index.reopened_spaces(), 1);
        assert_eq!(index.writer().versions[&space], 3);
        assert_eq!(
            index
                .top(&HashSet::from([space]), "lighthouses", 10)
                .unwrap()[0]
                .0,
            kept
        );
        drop(index);

        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "meta.json") {
                std::fs::write(&path, b"{ not json").unwrap();
            }
        }
        let index = KeywordIndex::open(&dir);
        assert_eq!(index.reopened_spaces(), 0);
        assert_eq!(index.num_docs(), 0);
        assert!(index.dir().is_some(), "recreated on disk");
        drop(index);
        std::fs::remove_dir_all(&dir).ok();
    }
}
