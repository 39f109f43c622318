//! The memory domain: validation, access (EDIT to write, VIEW to read), chunking and embedding
//! outside the transaction, one transaction per write, the vector index kept current.
use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Condition, Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, IdenStatic, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::duplicates::{content_hash, merge_metadata};
use crate::audit;
use crate::db::Db;
use crate::events::BusMessage;
use crate::spaces::service::{self as spaces, SpaceAccess};
use entity::{agent, chunk as chunk_entity, memory, memory_tag, space};
use memspace_core::access::Permission;
use memspace_core::error::{AppError, AppResult};
use memspace_core::page::{fetch_limited, page_size, Cursor, Page};
use memspace_core::principal::{Principal, PrincipalKind};
use memspace_core::vocab::DuplicatePolicy;
use memspace_core::vocab::MemoryEventKind;
use memspace_core::{clock::now, validate};
use memspace_engine::chunking::chunk;
use memspace_engine::embedder::to_bytes;
use memspace_engine::vector_index::VectorIndex;

pub const MAX_CONTENT_CHARS: usize = 32_768;
pub const MAX_TAGS: usize = 50;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
pub const MAX_BATCH: usize = 1000;
const INSERT_BATCH: usize = 400;

/// A memory as a client sent it, before validation.
#[derive(Clone, Debug, Default)]
pub struct MemoryDraft {
    pub content: String,
    pub tags: Vec<String>,
    pub metadata: Option<serde_json::Value>,
    pub importance: Option<i32>,
    pub confidence: Option<f64>,
    /// As sent by the client; parsed (and checked to exist) in input order with the rest.
    pub agent_id: Option<String>,
    pub thread_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The id in the system it came from; a second write with the same one returns the first.
    pub external_id: Option<String>,
    /// Overrides the space's duplicate policy for this write.
    pub on_duplicate: Option<DuplicatePolicy>,
}

fn agent_id(raw: Option<&str>) -> AppResult<Option<Uuid>> {
    raw.map(|a| {
        Uuid::parse_str(a.trim()).map_err(|_| AppError::validation("agentId", "is not a valid ID"))
    })
    .transpose()
}

/// A validated memory, ready to embed and store.
struct Valid {
    content: String,
    tags: Vec<String>,
    metadata: Option<String>,
    importance: i32,
    confidence: f64,
    agent_id: Option<Uuid>,
    thread_id: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    external_id: Option<String>,
    on_duplicate: Option<DuplicatePolicy>,
    hash: String,
}

fn content(value: &str) -> AppResult<String> {
    validate::no_nul("content", value)?;
    let len = value.chars().count();
    if value.trim().is_empty() {
        return Err(AppError::validation("content", "must not be blank"));
    }
    if len > MAX_CONTENT_CHARS {
        return Err(AppError::validation(
            "content",
            format!("must be at most {MAX_CONTENT_CHARS} characters (got {len})"),
        ));
    }
    Ok(value.to_string())
}

fn tags(tags: Vec<String>) -> AppResult<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(AppError::validation(
            "tags",
            format!("at most {MAX_TAGS} tags (got {})", tags.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.into_iter().enumerate() {
        let t = validate::text(&format!("tags[{i}]"), &t, 1, 64)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn metadata(value: Option<serde_json::Value>) -> AppResult<Option<String>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => {
            let text = v.to_string();
            // Serialised JSON escapes NUL as \u0000, which PostgreSQL's text cannot hold either.
            if text.contains("\\u0000") {
                return Err(AppError::validation(
                    "metadata",
                    "must not contain NUL characters",
                ));
            }
            if text.len() > MAX_METADATA_BYTES {
                return Err(AppError::validation(
                    "metadata",
                    format!(
                        "must be at most {MAX_METADATA_BYTES} bytes as JSON (got {})",
                        text.len()
                    ),
                ));
            }
            Ok(Some(text))
        }
        Some(_) => Err(AppError::validation("metadata", "must be a JSON object")),
    }
}

fn importance(v: Option<i32>) -> AppResult<i32> {
    let v = v.unwrap_or(5);
    if !(1..=10).contains(&v) {
        return Err(AppError::validation(
            "importance",
            "must be between 1 and 10",
        ));
    }
    Ok(v)
}

fn confidence(v: Option<f64>) -> AppResult<f64> {
    let v = v.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&v) {
        return Err(AppError::validation(
            "confidence",
            "must be between 0.0 and 1.0",
        ));
    }
    Ok(v)
}

fn thread_id(v: Option<String>) -> AppResult<Option<String>> {
    v.map(|t| validate::text("threadId", &t, 1, 255))
        .transpose()
}

fn expires_at(v: Option<DateTime<Utc>>) -> AppResult<Option<DateTime<Utc>>> {
    match v {
        Some(at) if at <= Utc::now() => {
            Err(AppError::validation("expiresAt", "must be in the future"))
        }
        other => Ok(other.map(|t| t.trunc_subsecs_micros())),
    }
}

trait TruncMicros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl TruncMicros for DateTime<Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        use chrono::SubsecRound;
        self.trunc_subsecs(6)
    }
}

fn validate_draft(d: MemoryDraft) -> AppResult<Valid> {
    Ok(Valid {
        content: content(&d.content)?,
        tags: tags(d.tags)?,
        metadata: metadata(d.metadata)?,
        importance: importance(d.importance)?,
        confidence: confidence(d.confidence)?,
        agent_id: agent_id(d.agent_id.as_deref())?,
        thread_id: thread_id(d.thread_id)?,
        expires_at: expires_at(d.expires_at)?,
        external_id: d
            .external_id
            .map(|e| validate::text("externalId", &e, 1, 255))
            .transpose()?,
        on_duplicate: d.on_duplicate,
        hash: content_hash(&d.content),
    })
}

/// Adds the 0-based batch position to an error (`extensions.index`).
fn at_index(err: AppError, index: usize) -> AppError {
    match err {
        AppError::Validation {
            field,
            message,
            details,
        } => {
            let mut map = match details {
                Some(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            map.insert("index".into(), serde_json::json!(index));
            AppError::Validation {
                field,
                message: format!("item {index}: {message}"),
                details: Some(serde_json::Value::Object(map)),
            }
        }
        other => other,
    }
}

/// Refuses writes the principal may not make: needs EDIT; a soft-deleted space takes none.
fn writable(access: &SpaceAccess) -> AppResult<()> {
    memspace_core::access::check(access.permission, Permission::Edit, &access.space)?;
    if access.space.deleted_at.is_some() {
        return Err(AppError::forbidden(format!(
            "space {} is deleted; restore it before writing",
            access.space.id
        )));
    }
    Ok(())
}

/// The agents named by the drafts that exist in the space's organization.
async fn known_agents(
    db: &impl ConnectionTrait,
    organization_id: Uuid,
    drafts: &[MemoryDraft],
) -> AppResult<Vec<Uuid>> {
    let wanted: Vec<Uuid> = drafts
        .iter()
        .filter_map(|d| agent_id(d.agent_id.as_deref()).ok().flatten())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    Ok(agent::Entity::find()
        .select_only()
        .column(agent::Column::Id)
        .filter(agent::Column::Id.is_in(wanted))
        .filter(agent::Column::OrganizationId.eq(organization_id))
        .into_tuple()
        .all(db)
        .await?)
}

/// Chunks texts and embeds every chunk of the batch in one call to the space's embedder
/// (outside any transaction: a slow embedder never holds a lock). A failing embedder fails the
/// write with EMBEDDER_UNAVAILABLE before anything is stored.
async fn embed_chunks(
    db: &Db,
    space: &space::Model,
    contents: Vec<String>,
) -> AppResult<Vec<Vec<(String, Vec<f32>)>>> {
    let size = space.chunk_size.max(1) as usize;
    let overlap = space.chunk_overlap.max(0) as usize;
    let pieces: Vec<Vec<String>> = contents
        .iter()
        .map(|c| {
            let mut pieces = chunk(c, size, overlap);
            if pieces.is_empty() {
                pieces.push(c.trim().to_string());
            }
            pieces
        })
        .collect();
    let flat: Vec<String> = pieces.iter().flatten().cloned().collect();
    let mut vectors = db
        .embedders
        .embed(&space.embedder, flat)
        .await
        .map_err(AppError::embedder(&space.embedder))?
        .into_iter();
    Ok(pieces
        .into_iter()
        .map(|ps| ps.into_iter().zip(vectors.by_ref()).collect())
        .collect())
}

/// CONFLICT for a guarded update that matched no row: the memory's version moved past `read`.
async fn conflict(db: &impl ConnectionTrait, id: Uuid, read: i32) -> AppError {
    let now_at: Result<Option<i32>, _> = memory::Entity::find_by_id(id)
        .select_only()
        .column(memory::Column::Version)
        .into_tuple()
        .one(db)
        .await;
    match now_at {
        Ok(v) => AppError::Conflict {
            current_version: v.unwrap_or(read),
        },
        Err(e) => e.into(),
    }
}

fn author(principal: &Principal) -> (String, Uuid) {
    (principal.kind.as_str().to_string(), principal.id)
}

/// What a write adds to a space's memory counters (`spaces.memory_count`/`memory_bytes`):
/// the memories that are not superseded, expired ones included until the sweep deletes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counted {
    count: i64,
    bytes: i64,
}

impl Counted {
    /// What one stored memory contributes to the counters.
    fn of(superseded_by: Option<Uuid>, content_bytes: i32) -> Counted {
        match superseded_by {
            Some(_) => Counted::default(),
            None => Counted {
                count: 1,
                bytes: i64::from(content_bytes),
            },
        }
    }

    fn of_model(m: &memory::Model) -> Counted {
        Counted::of(m.superseded_by, m.content_bytes)
    }
}

impl std::ops::Add for Counted {
    type Output = Counted;
    fn add(self, o: Counted) -> Counted {
        Counted {
            count: self.count + o.count,
            bytes: self.bytes + o.bytes,
        }
    }
}

impl std::ops::Neg for Counted {
    type Output = Counted;
    fn neg(self) -> Counted {
        Counted {
            count: -self.count,
            bytes: -self.bytes,
        }
    }
}

impl std::ops::Sub for Counted {
    type Output = Counted;
    fn sub(self, o: Counted) -> Counted {
        Counted {
            count: self.count - o.count,
            bytes: self.bytes - o.bytes,
        }
    }
}

/// `SET memory_count = memory_count + d.count, memory_bytes = memory_bytes + d.bytes`.
fn add_counts(update: &mut sea_orm::sea_query::UpdateStatement, d: Counted) {
    if d == Counted::default() {
        return;
    }
    update
        .value(
            space::Column::MemoryCount,
            Expr::col(space::Column::MemoryCount).add(d.count),
        )
        .value(
            space::Column::MemoryBytes,
            Expr::col(space::Column::MemoryBytes).add(d.bytes),
        );
}

/// Marks a write in the space: activity time, the write's change to the memory counters, and
/// the next `vector_version`, returned — one statement. On PostgreSQL the row lock this takes
/// orders concurrent writers of one space, so versions become visible in order; writers take it
/// before they change memory rows, so the counters and the rows change under one lock order.
async fn bump_space(db: &impl ConnectionTrait, space_id: Uuid, delta: Counted) -> AppResult<i64> {
    let mut update = Query::update();
    update
        .table(space::Entity)
        .value(space::Column::LastActivityAt, now())
        .value(
            space::Column::VectorVersion,
            Expr::col(space::Column::VectorVersion).add(1),
        )
        .and_where(space::Column::Id.eq(space_id))
        // RETURNING is built by hand: sea-orm only offers it on SQLite behind a feature flag,
        // and every SQLite this builds against (3.35+) has it.
        .returning_col(space::Column::VectorVersion);
    add_counts(&mut update, delta);
    let row = db
        .query_one(db.get_database_backend().build(&update))
        .await?
        .ok_or_else(|| AppError::not_found("space", space_id))?;
    Ok(row.try_get::<i64>("", space::Column::VectorVersion.as_str())?)
}

/// Changes a space's memory counters alone (writes whose change is known only after
/// `bump_space`, and the expiry sweep, which is not activity).
async fn count_memories(
    db: &impl ConnectionTrait,
    space_id: Uuid,
    delta: Counted,
) -> AppResult<()> {
    let mut update = Query::update();
    update
        .table(space::Entity)
        .and_where(space::Column::Id.eq(space_id));
    add_counts(&mut update, delta);
    if delta != Counted::default() {
        db.execute(db.get_database_backend().build(&update)).await?;
    }
    Ok(())
}

/// A memory row as a DELETE … RETURNING reports it: what it counted for.
#[derive(Debug, FromQueryResult)]
struct Removed {
    id: Uuid,
    space_id: Uuid,
    content_bytes: i32,
    superseded_by: Option<Uuid>,
}

/// Deletes the memories matching `cond` and returns them (one statement, so what the counters
/// lose is what the database really removed, even when another writer changed a row meanwhile).
async fn delete_returning(db: &impl ConnectionTrait, cond: Condition) -> AppResult<Vec<Removed>> {
    let delete = Query::delete()
        .from_table(memory::Entity)
        .cond_where(cond)
        .returning(Query::returning().columns([
            memory::Column::Id,
            memory::Column::SpaceId,
            memory::Column::ContentBytes,
            memory::Column::SupersededBy,
        ]))
        .to_owned();
    Ok(
        Removed::find_by_statement(db.get_database_backend().build(&delete))
            .all(db)
            .await?,
    )
}

fn event(
    principal: &Principal,
    bus: &crate::events::Bus,
    kind: MemoryEventKind,
    m: &memory::Model,
) -> BusMessage {
    BusMessage::Memory {
        kind,
        memory_id: m.id,
        space_id: m.space_id,
        actor_kind: principal.kind.as_str().to_string(),
        actor_id: principal.id,
        at: now(),
        origin: bus.origin(),
    }
}

/// Writes a batch of memories to one space: all or nothing; the first bad item is reported with
/// `extensions.index` when `batch` is set.
pub async fn create_many(
    db: &Db,
    index: &VectorIndex,
    principal: &Principal,
    space_id: Uuid,
    drafts: Vec<MemoryDraft>,
    batch: bool,
) -> AppResult<Vec<memory::Model>> {
    if batch && (drafts.is_empty() || drafts.len() > MAX_BATCH) {
        return Err(AppError::validation(
            "inputs",
            format!("must hold 1–{MAX_BATCH} memories (got {})", drafts.len()),
        ));
    }
    let access = spaces::load(&db.read, principal, space_id).await?;
    writable(&access)?;
    // Items are checked in input order, so the error names the first bad one.
    let agents = known_agents(&db.read, access.space.organization_id, &drafts).await?;
    let mut valid = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.into_iter().enumerate() {
        let checked = validate_draft(d).and_then(|v| match v.agent_id {
            Some(a) if !agents.contains(&a) => Err(AppError::validation(
                "agentId",
                format!("no agent {a} in the space's organization"),
            )),
            _ => Ok(v),
        });
        valid.push(checked.map_err(|e| if batch { at_index(e, i) } else { e })?);
    }
    let embedded = embed_chunks(
        db,
        &access.space,
        valid.iter().map(|v| v.content.clone()).collect(),
    )
    .await?;

    let at = now();
    let (author_kind, author_id) = author(principal);
    let mut txn = db.begin_write().await?;
    // Access may have changed while we embedded.
    let access = spaces::load(&txn, principal, space_id).await?;
    writable(&access)?;
    // What the batch does to the counters is known only once duplicates are resolved, and the
    // version is needed for that: the counters follow in `count_memories` below.
    let version = bump_space(&txn, space_id, Counted::default()).await?;
    let space_policy = DuplicatePolicy::parse(&access.space.duplicate_policy);
    let threshold = access.space.duplicate_threshold as f32;

    // What already exists, for idempotent imports and exact duplicates: two queries per batch.
    let external_ids: Vec<String> = valid.iter().filter_map(|v| v.external_id.clone()).collect();
    let mut by_external: HashMap<String, memory::Model> = HashMap::new();
    if !external_ids.is_empty() {
        for m in memory::Entity::find()
            .filter(memory::Column::SpaceId.eq(space_id))
            .filter(memory::Column::ExternalId.is_in(external_ids))
            .all(&txn)
            .await?
        {
            if let Some(e) = m.external_id.clone() {
                by_external.insert(e, m);
            }
        }
    }
    let checks_duplicates = valid
        .iter()
        .any(|v| v.on_duplicate.unwrap_or(space_policy) != DuplicatePolicy::Allow);
    let mut by_hash: HashMap<String, memory::Model> = HashMap::new();
    if checks_duplicates {
        let hashes: Vec<String> = valid.iter().map(|v| v.hash.clone()).collect();
        for m in memory::Entity::find()
            .filter(memory::Column::SpaceId.eq(space_id))
            .filter(memory::Column::ContentHash.is_in(hashes))
            .filter(memory::Column::SupersededBy.is_null())
            .filter(live())
            .order_by_asc(memory::Column::CreatedAt)
            .all(&txn)
            .await?
        {
            by_hash.entry(m.content_hash.clone()).or_insert(m);
        }
    }

    // Each item in input order: a new row, an existing memory (same external id), or a merge.
    let mut results: Vec<Slot> = Vec::with_capacity(valid.len());
    let mut rows: Vec<memory::Model> = Vec::new();
    let mut row_tags: Vec<Vec<String>> = Vec::new();
    let mut row_chunks: Vec<Vec<(String, Vec<f32>)>> = Vec::new();
    // Existing (database) memories changed by MERGE or SUPERSEDE, with tags to add.
    let mut touched: HashMap<Uuid, (memory::Model, Vec<String>)> = HashMap::new();
    // The version each touched memory had when this transaction read it.
    let mut read_versions: HashMap<Uuid, i32> = HashMap::new();
    for (i, (v, chunks)) in valid.into_iter().zip(embedded).enumerate() {
        if let Some(e) = &v.external_id {
            if let Some(existing) = by_external.get(e) {
                results.push(Slot::Existing(Box::new(existing.clone())));
                continue;
            }
            if let Some(pos) = rows.iter().position(|r| r.external_id.as_ref() == Some(e)) {
                results.push(Slot::New(pos));
                continue;
            }
        }
        let policy = v.on_duplicate.unwrap_or(space_policy);
        let first_vector = chunks
            .first()
            .map(|(_, vec)| vec.clone())
            .unwrap_or_default();
        let duplicate = if policy == DuplicatePolicy::Allow {
            None
        } else {
            find_duplicate(
                &txn,
                index,
                &access.space,
                version - 1,
                &v.hash,
                &first_vector,
                threshold,
                &by_hash,
                &rows,
                &row_chunks,
                &touched,
            )
            .await?
        };
        let new_row = |supersedes: Option<Uuid>| memory::Model {
            id: Uuid::now_v7(),
            space_id,
            content_bytes: v.content.len() as i32,
            content: v.content.clone(),
            metadata: v.metadata.clone(),
            importance: v.importance,
            confidence: v.confidence,
            recall_count: 0,
            author_kind: author_kind.clone(),
            author_id,
            agent_id: v.agent_id,
            thread_id: v.thread_id.clone(),
            created_at: at,
            updated_at: at,
            expires_at: v.expires_at,
            index_seq: version,
            version: 1,
            content_hash: v.hash.clone(),
            superseded_by: None,
            supersedes,
            external_id: v.external_id.clone(),
        };
        if let Some(Dup::Stored(m)) = &duplicate {
            read_versions.entry(m.id).or_insert(m.version);
        }
        match (policy, duplicate) {
            (DuplicatePolicy::Reject, Some(dup)) => {
                // Item positions map to batch rows only for items that became rows.
                let of_index = match &dup {
                    Dup::Batch(pos) => results
                        .iter()
                        .position(|r| matches!(r, Slot::New(p) if p == pos)),
                    Dup::Stored(_) => None,
                };
                return Err(AppError::Duplicate {
                    existing_id: match &dup {
                        Dup::Stored(m) => Some(m.id),
                        Dup::Batch(_) => None,
                    },
                    duplicate_of_index: of_index,
                    index: batch.then_some(i),
                });
            }
            (DuplicatePolicy::Merge, Some(dup)) => {
                let target: &mut memory::Model = match &dup {
                    Dup::Batch(pos) => &mut rows[*pos],
                    Dup::Stored(m) => {
                        &mut touched
                            .entry(m.id)
                            .or_insert_with(|| ((**m).clone(), Vec::new()))
                            .0
                    }
                };
                target.metadata = merge_metadata(target.metadata.as_deref(), v.metadata.as_deref());
                target.importance = target.importance.max(v.importance);
                target.confidence = target.confidence.max(v.confidence);
                target.updated_at = at;
                match &dup {
                    Dup::Batch(pos) => {
                        for t in v.tags {
                            if !row_tags[*pos].contains(&t) {
                                row_tags[*pos].push(t);
                            }
                        }
                        results.push(Slot::New(*pos));
                    }
                    Dup::Stored(m) => {
                        if let Some(entry) = touched.get_mut(&m.id) {
                            entry.0.version += 1;
                            entry.1.extend(v.tags);
                        }
                        results.push(Slot::Touched(m.id));
                    }
                }
            }
            (DuplicatePolicy::Supersede, Some(dup)) => {
                let row = new_row(Some(dup.id(&rows)));
                match &dup {
                    Dup::Batch(pos) => rows[*pos].superseded_by = Some(row.id),
                    Dup::Stored(m) => {
                        let entry = touched
                            .entry(m.id)
                            .or_insert_with(|| ((**m).clone(), Vec::new()));
                        entry.0.superseded_by = Some(row.id);
                        entry.0.version += 1;
                        entry.0.updated_at = at;
                    }
                }
                results.push(Slot::New(rows.len()));
                rows.push(row);
                row_tags.push(v.tags);
                row_chunks.push(chunks);
            }
            _ => {
                results.push(Slot::New(rows.len()));
                rows.push(new_row(None));
                row_tags.push(v.tags);
                row_chunks.push(chunks);
            }
        }
    }

    let mut tag_rows = Vec::new();
    let mut chunk_rows = Vec::new();
    let mut vectors = Vec::with_capacity(rows.len());
    for ((row, tags), chunks) in rows.iter().zip(&row_tags).zip(row_chunks) {
        for t in tags {
            tag_rows.push(memory_tag::ActiveModel {
                memory_id: Set(row.id),
                tag: Set(t.clone()),
            });
        }
        let mut mem_vectors = Vec::with_capacity(chunks.len());
        for (ord, (text, vector)) in chunks.into_iter().enumerate() {
            chunk_rows.push(chunk_entity::ActiveModel {
                id: Set(Uuid::now_v7()),
                memory_id: Set(row.id),
                space_id: Set(space_id),
                ord: Set(ord as i32),
                text: Set(text),
                embedding: Set(to_bytes(&vector)),
            });
            mem_vectors.push((ord as i32, vector));
        }
        vectors.push((row.id, mem_vectors));
    }
    for part in rows.chunks(INSERT_BATCH) {
        memory::Entity::insert_many(part.iter().cloned().map(active))
            .exec_without_returning(&txn)
            .await
            .map_err(AppError::unique(
                "a memory with this externalId already exists in the space",
            ))?;
    }
    for part in tag_rows.chunks(INSERT_BATCH) {
        memory_tag::Entity::insert_many(part.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    for part in chunk_rows.chunks(INSERT_BATCH) {
        chunk_entity::Entity::insert_many(part.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    let mut events: Vec<BusMessage> = Vec::new();
    for (m, extra_tags) in touched.values() {
        // Guarded by the version read: a concurrent change (PostgreSQL) makes this a CONFLICT
        // and the whole batch rolls back, instead of a lost update.
        let read = read_versions.get(&m.id).copied().unwrap_or(m.version);
        let updated = memory::Entity::update_many()
            .set(active(m.clone()))
            .filter(memory::Column::Id.eq(m.id))
            .filter(memory::Column::Version.eq(read))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(conflict(&txn, m.id, read).await);
        }
        if !extra_tags.is_empty() {
            memory_tag::Entity::insert_many(extra_tags.iter().map(|t| memory_tag::ActiveModel {
                memory_id: Set(m.id),
                tag: Set(t.clone()),
            }))
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    memory_tag::Column::MemoryId,
                    memory_tag::Column::Tag,
                ])
                .do_nothing()
                .to_owned(),
            )
            .do_nothing()
            .exec(&txn)
            .await?;
        }
    }
    // New rows count unless a later item of the batch superseded them; a stored memory stops
    // counting when superseded (it was not when read: duplicates are only found among memories
    // that are not, and the guarded update above proved it unchanged). MERGE keeps the stored
    // content, so it changes nothing.
    let delta = rows
        .iter()
        .map(Counted::of_model)
        .chain(
            touched
                .values()
                .filter(|(m, _)| m.superseded_by.is_some())
                .map(|(m, _)| -Counted::of(None, m.content_bytes)),
        )
        .fold(Counted::default(), |a, b| a + b);
    count_memories(&txn, space_id, delta).await?;
    audit::cross_tenant(&txn, principal, "memory.create", [&access.space]).await?;
    for m in &rows {
        events.push(event(principal, &db.bus, MemoryEventKind::Created, m));
    }
    for (m, _) in touched.values() {
        events.push(event(principal, &db.bus, MemoryEventKind::Updated, m));
    }
    txn.stage(events).await?;
    txn.commit().await?;
    index.upsert(space_id, version, vectors).await;
    // Every `Touched` id was entered in `touched` when its slot was pushed.
    Ok(results
        .into_iter()
        .filter_map(|slot| match slot {
            Slot::New(pos) => rows.get(pos).cloned(),
            Slot::Existing(m) => Some(*m),
            Slot::Touched(id) => touched.get(&id).map(|(m, _)| m.clone()),
        })
        .collect())
}

/// Where an item of a batch ended up.
enum Slot {
    New(usize),
    Existing(Box<memory::Model>),
    Touched(Uuid),
}

/// A duplicate found for a new memory: an earlier item of the same batch, or a stored memory.
enum Dup {
    Batch(usize),
    Stored(Box<memory::Model>),
}

impl Dup {
    fn id(&self, rows: &[memory::Model]) -> Uuid {
        match self {
            Dup::Batch(pos) => rows[*pos].id,
            Dup::Stored(m) => m.id,
        }
    }
}

/// The memory a new one duplicates: same normalised content, or a first chunk whose cosine to
/// the new memory's first chunk reaches the threshold. Earlier items of the batch count.
#[allow(clippy::too_many_arguments)]
async fn find_duplicate(
    txn: &impl ConnectionTrait,
    index: &VectorIndex,
    space: &space::Model,
    stored_version: i64,
    hash: &str,
    first_vector: &[f32],
    threshold: f32,
    by_hash: &HashMap<String, memory::Model>,
    rows: &[memory::Model],
    row_chunks: &[Vec<(String, Vec<f32>)>],
    touched: &HashMap<Uuid, (memory::Model, Vec<String>)>,
) -> AppResult<Option<Dup>> {
    let live_in_batch = |pos: usize| rows[pos].superseded_by.is_none();
    if let Some(pos) = (0..rows.len()).find(|p| rows[*p].content_hash == hash && live_in_batch(*p))
    {
        return Ok(Some(Dup::Batch(pos)));
    }
    let not_superseded = |m: &memory::Model| {
        touched
            .get(&m.id)
            .map(|(t, _)| t.superseded_by.is_none())
            .unwrap_or(m.superseded_by.is_none())
    };
    if let Some(m) = by_hash.get(hash).filter(|m| not_superseded(m)) {
        return Ok(Some(Dup::Stored(Box::new(
            touched
                .get(&m.id)
                .map(|(t, _)| t.clone())
                .unwrap_or_else(|| m.clone()),
        ))));
    }
    if first_vector.is_empty() || first_vector.iter().all(|x| *x == 0.0) {
        return Ok(None);
    }
    for (pos, chunks) in row_chunks.iter().enumerate() {
        if let Some((_, v)) = chunks.first() {
            if live_in_batch(pos) && memspace_engine::embedder::dot(first_vector, v) >= threshold {
                return Ok(Some(Dup::Batch(pos)));
            }
        }
    }
    let hits = index
        .search(txn, space.id, stored_version, first_vector, 8)
        .await?;
    let candidates: Vec<Uuid> = hits
        .iter()
        .filter(|h| h.ord == 0 && h.score >= threshold)
        .map(|h| h.memory_id)
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let found = memory::Entity::find()
        .filter(memory::Column::Id.is_in(candidates.clone()))
        .filter(memory::Column::SupersededBy.is_null())
        .filter(live())
        .all(txn)
        .await?;
    for id in candidates {
        if let Some(m) = found.iter().find(|m| m.id == id && not_superseded(m)) {
            let current = touched
                .get(&m.id)
                .map(|(t, _)| t.clone())
                .unwrap_or_else(|| m.clone());
            return Ok(Some(Dup::Stored(Box::new(current))));
        }
    }
    Ok(None)
}

fn active(m: memory::Model) -> memory::ActiveModel {
    memory::ActiveModel {
        id: Set(m.id),
        space_id: Set(m.space_id),
        content: Set(m.content),
        content_bytes: Set(m.content_bytes),
        metadata: Set(m.metadata),
        importance: Set(m.importance),
        confidence: Set(m.confidence),
        recall_count: Set(m.recall_count),
        author_kind: Set(m.author_kind),
        author_id: Set(m.author_id),
        agent_id: Set(m.agent_id),
        thread_id: Set(m.thread_id),
        created_at: Set(m.created_at),
        updated_at: Set(m.updated_at),
        expires_at: Set(m.expires_at),
        index_seq: Set(m.index_seq),
        version: Set(m.version),
        content_hash: Set(m.content_hash),
        superseded_by: Set(m.superseded_by),
        supersedes: Set(m.supersedes),
        external_id: Set(m.external_id),
    }
}

/// A memory by id if it is live (not expired, not superseded); what a subscriber is sent.
pub async fn find_live(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<memory::Model>, sea_orm::DbErr> {
    memory::Entity::find_by_id(id).filter(live()).one(db).await
}

/// Not expired at this moment.
pub fn live() -> Condition {
    Condition::any()
        .add(memory::Column::ExpiresAt.is_null())
        .add(memory::Column::ExpiresAt.gt(Utc::now()))
}

/// A live memory and its space, if the principal can read it; NOT_FOUND otherwise.
async fn load(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
) -> AppResult<(memory::Model, SpaceAccess)> {
    let m = memory::Entity::find_by_id(id)
        .filter(live())
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("memory", id))?;
    let access = match spaces::load(db, principal, m.space_id).await {
        Err(AppError::NotFound { .. }) => return Err(AppError::not_found("memory", id)),
        other => other?,
    };
    Ok((m, access))
}

pub async fn get(db: &Db, principal: &Principal, id: Uuid) -> AppResult<memory::Model> {
    let (m, access) = load(&db.read, principal, id).await?;
    audit::cross_tenant(&db.write, principal, "memory.read", [&access.space]).await?;
    Ok(m)
}

/// A change to a memory; `None` leaves a field unchanged (`Some(None)` clears a nullable one).
#[derive(Clone, Debug, Default)]
pub struct MemoryPatch {
    /// Optimistic concurrency: fail with CONFLICT unless the memory is at this version.
    pub expected_version: Option<i32>,
    pub content: Option<String>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<Option<serde_json::Value>>,
    pub importance: Option<i32>,
    pub confidence: Option<f64>,
    pub thread_id: Option<Option<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

pub async fn update(
    db: &Db,
    index: &VectorIndex,
    principal: &Principal,
    id: Uuid,
    patch: MemoryPatch,
) -> AppResult<memory::Model> {
    let (current, access) = load(&db.read, principal, id).await?;
    writable(&access)?;
    let new_content = patch.content.as_deref().map(content).transpose()?;
    let new_tags = patch.tags.map(tags).transpose()?;
    let new_metadata = patch.metadata.map(metadata).transpose()?;
    let new_importance = patch.importance.map(|i| importance(Some(i))).transpose()?;
    let new_confidence = patch.confidence.map(|c| confidence(Some(c))).transpose()?;
    let new_thread = patch.thread_id.map(thread_id).transpose()?;
    let new_expiry = patch.expires_at.map(expires_at).transpose()?;
    let content_changed = new_content.as_ref().is_some_and(|c| *c != current.content);
    let embedded = if content_changed {
        let text = new_content.clone().unwrap_or_default();
        embed_chunks(db, &access.space, vec![text]).await?.pop()
    } else {
        None
    };

    let mut txn = db.begin_write().await?;
    let (current, access) = load(&txn, principal, id).await?;
    writable(&access)?;
    if let Some(expected) = patch.expected_version {
        if expected != current.version {
            return Err(AppError::Conflict {
                current_version: current.version,
            });
        }
    }
    let mut m = current.clone();
    if let Some(c) = new_content {
        m.content_bytes = c.len() as i32;
        m.content_hash = content_hash(&c);
        m.content = c;
    }
    if let Some(v) = new_metadata {
        m.metadata = v;
    }
    if let Some(v) = new_importance {
        m.importance = v;
    }
    if let Some(v) = new_confidence {
        m.confidence = v;
    }
    if let Some(v) = new_thread {
        m.thread_id = v;
    }
    if let Some(v) = new_expiry {
        m.expires_at = v;
    }
    let mut changed = m != current;
    if let Some(t) = new_tags {
        let mut old: Vec<String> = memory_tag::Entity::find()
            .filter(memory_tag::Column::MemoryId.eq(id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|r| r.tag)
            .collect();
        let mut sorted = t.clone();
        old.sort();
        sorted.sort();
        if old != sorted {
            memory_tag::Entity::delete_many()
                .filter(memory_tag::Column::MemoryId.eq(id))
                .exec(&txn)
                .await?;
            if !t.is_empty() {
                memory_tag::Entity::insert_many(t.into_iter().map(|tag| memory_tag::ActiveModel {
                    memory_id: Set(id),
                    tag: Set(tag),
                }))
                .exec_without_returning(&txn)
                .await?;
            }
            changed = true;
        }
    }
    let mut vectors = None;
    if let Some(chunks) = embedded {
        chunk_entity::Entity::delete_many()
            .filter(chunk_entity::Column::MemoryId.eq(id))
            .exec(&txn)
            .await?;
        let mut mem_vectors = Vec::new();
        let rows: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(ord, (text, vector))| {
                let row = chunk_entity::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    memory_id: Set(id),
                    space_id: Set(m.space_id),
                    ord: Set(ord as i32),
                    text: Set(text),
                    embedding: Set(to_bytes(&vector)),
                };
                mem_vectors.push((ord as i32, vector));
                row
            })
            .collect();
        chunk_entity::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        vectors = Some(mem_vectors);
    }
    let mut version = None;
    let mut events = Vec::new();
    if changed || vectors.is_some() {
        // `current` is what the guarded update below overwrites (or the write fails and rolls
        // back), so the difference is exact.
        let delta = Counted::of_model(&m) - Counted::of_model(&current);
        let v = bump_space(&txn, m.space_id, delta).await?;
        if vectors.is_some() {
            m.index_seq = v;
        }
        version = Some(v);
        m.updated_at = now();
        m.version = current.version + 1;
        // Guarded by the version read above: a concurrent change makes this match nothing.
        let updated = memory::Entity::update_many()
            .set(active(m.clone()))
            .filter(memory::Column::Id.eq(id))
            .filter(memory::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(conflict(&txn, id, current.version).await);
        }
        audit::cross_tenant(&txn, principal, "memory.update", [&access.space]).await?;
        events.push(event(principal, &db.bus, MemoryEventKind::Updated, &m));
        txn.stage(events).await?;
    }
    txn.commit().await?;
    if let (Some(v), Some(version)) = (vectors, version) {
        index.upsert(m.space_id, version, vec![(id, v)]).await;
    }
    Ok(m)
}

pub async fn delete(
    db: &Db,
    index: &VectorIndex,
    principal: &Principal,
    id: Uuid,
) -> AppResult<Uuid> {
    let mut txn = db.begin_write().await?;
    let (m, access) = load(&txn, principal, id).await?;
    writable(&access)?;
    // The space row first, as every writer does (one lock order), counting the memory as read;
    // the row the DELETE really removed corrects that if another writer got in between.
    let assumed = Counted::of_model(&m);
    bump_space(&txn, m.space_id, -assumed).await?;
    let removed = delete_returning(&txn, Condition::all().add(memory::Column::Id.eq(id))).await?;
    let Some(row) = removed.first() else {
        // Deleted by a concurrent request since `load`.
        return Err(AppError::not_found("memory", id));
    };
    let actual = Counted::of(row.superseded_by, row.content_bytes);
    count_memories(&txn, m.space_id, assumed - actual).await?;
    audit::cross_tenant(&txn, principal, "memory.delete", [&access.space]).await?;
    let events = vec![event(principal, &db.bus, MemoryEventKind::Deleted, &m)];
    txn.stage(events).await?;
    txn.commit().await?;
    index.remove(m.space_id, &[id]).await;
    Ok(id)
}

/// Filters shared by `Space.memories` and `searchMemories`.
#[derive(Clone, Debug, Default)]
pub struct MemoryFilter {
    /// A memory matches when it has any of these tags.
    pub tags: Vec<String>,
    pub agent_id: Option<Uuid>,
    pub thread_id: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub include_superseded: bool,
}

/// The SQL condition of a filter (live memories only).
pub fn filter_condition(filter: &MemoryFilter) -> AppResult<Condition> {
    let mut cond = Condition::all().add(live());
    if !filter.include_superseded {
        cond = cond.add(memory::Column::SupersededBy.is_null());
    }
    let wanted = tags(filter.tags.clone()).map_err(|e| match e {
        AppError::Validation { message, .. } => AppError::validation("filter.tags", message),
        other => other,
    })?;
    if !wanted.is_empty() {
        cond = cond.add(
            memory::Column::Id.in_subquery(
                Query::select()
                    .column(memory_tag::Column::MemoryId)
                    .from(memory_tag::Entity)
                    .and_where(memory_tag::Column::Tag.is_in(wanted))
                    .to_owned(),
            ),
        );
    }
    if let Some(a) = filter.agent_id {
        cond = cond.add(memory::Column::AgentId.eq(a));
    }
    if let Some(t) = &filter.thread_id {
        validate::no_nul("filter.threadId", t)?;
        cond = cond.add(memory::Column::ThreadId.eq(t.clone()));
    }
    if let Some(t) = filter.created_after {
        cond = cond.add(memory::Column::CreatedAt.gt(t));
    }
    if let Some(t) = filter.created_before {
        cond = cond.add(memory::Column::CreatedAt.lt(t));
    }
    Ok(cond)
}

const CURSOR_KIND: &str = "memory:created";

pub fn cursor_of(m: &memory::Model) -> String {
    Cursor::new(
        CURSOR_KIND,
        vec![
            m.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            m.id.to_string(),
        ],
    )
    .encode()
}

/// A page of a space's memories (the caller has already been given the space), oldest first
/// unless `descending`.
pub async fn list(
    db: &Db,
    principal: &Principal,
    space: &space::Model,
    first: Option<i32>,
    after: Option<&str>,
    filter: &MemoryFilter,
    descending: bool,
) -> AppResult<(Page<memory::Model>, Condition)> {
    let limit = page_size(first);
    let cond = Condition::all()
        .add(memory::Column::SpaceId.eq(space.id))
        .add(filter_condition(filter)?);
    let mut select = memory::Entity::find().filter(cond.clone());
    if let Some(raw) = after {
        let bad = || AppError::invalid_argument("after", "malformed or foreign cursor");
        let c = Cursor::decode("after", raw, CURSOR_KIND, 2)?;
        let at = DateTime::parse_from_rfc3339(&c.values[0])
            .map_err(|_| bad())?
            .with_timezone(&Utc);
        let id = Uuid::parse_str(&c.values[1]).map_err(|_| bad())?;
        let (by_time, by_id) = if descending {
            (memory::Column::CreatedAt.lt(at), memory::Column::Id.lt(id))
        } else {
            (memory::Column::CreatedAt.gt(at), memory::Column::Id.gt(id))
        };
        select = select.filter(
            Condition::any().add(by_time).add(
                Condition::all()
                    .add(memory::Column::CreatedAt.eq(at))
                    .add(by_id),
            ),
        );
    }
    select = if descending {
        select
            .order_by_desc(memory::Column::CreatedAt)
            .order_by_desc(memory::Column::Id)
    } else {
        select
            .order_by_asc(memory::Column::CreatedAt)
            .order_by_asc(memory::Column::Id)
    };
    let rows: Vec<memory::Model> = fetch_limited(select, limit + 1, &db.read).await?;
    audit::cross_tenant(&db.write, principal, "memory.read", [space]).await?;
    Ok((Page::from_overfetch(rows, limit, after.is_some()), cond))
}

pub async fn count(db: &impl ConnectionTrait, cond: Condition) -> AppResult<u64> {
    Ok(memory::Entity::find().filter(cond).count(db).await?)
}

/// Deletes expired memories; returns how many went. Each part is one transaction that also
/// takes the memories out of their spaces' counters.
pub async fn sweep_expired(db: &Db, index: &VectorIndex) -> AppResult<usize> {
    let expired: Vec<(Uuid, Uuid)> = memory::Entity::find()
        .select_only()
        .column(memory::Column::Id)
        .column(memory::Column::SpaceId)
        .filter(memory::Column::ExpiresAt.lte(Utc::now()))
        .limit(10_000)
        .into_tuple()
        .all(&db.read)
        .await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let postgres = db.write.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    let mut swept = 0;
    for part in expired.chunks(INSERT_BATCH) {
        let txn = db.begin_write().await?;
        let mut space_ids: Vec<Uuid> = part.iter().map(|(_, s)| *s).collect();
        space_ids.sort();
        space_ids.dedup();
        if postgres {
            // Space rows before memory rows, in id order, as writers take them: no deadlock
            // with a writer of one of these spaces. (SQLite has one writer at a time.)
            space::Entity::find()
                .select_only()
                .column(space::Column::Id)
                .filter(space::Column::Id.is_in(space_ids.iter().copied()))
                .order_by_asc(space::Column::Id)
                .lock_exclusive()
                .into_tuple::<Uuid>()
                .all(&txn)
                .await?;
        }
        // Expiry is checked again: the rows are deleted only if still expired.
        let removed = delete_returning(
            &txn,
            Condition::all()
                .add(memory::Column::Id.is_in(part.iter().map(|(id, _)| *id)))
                .add(memory::Column::ExpiresAt.lte(Utc::now())),
        )
        .await?;
        let mut lost: HashMap<Uuid, Counted> = HashMap::new();
        for r in &removed {
            let e = lost.entry(r.space_id).or_default();
            *e = *e + Counted::of(r.superseded_by, r.content_bytes);
        }
        for space_id in &space_ids {
            if let Some(d) = lost.get(space_id) {
                count_memories(&txn, *space_id, -*d).await?;
            }
        }
        txn.commit().await?;
        swept += removed.len();
        let mut by_space: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for r in removed {
            by_space.entry(r.space_id).or_default().push(r.id);
        }
        for (space_id, ids) in by_space {
            index.remove(space_id, &ids).await;
        }
    }
    Ok(swept)
}

/// Used by search: the subset of `ids` that pass `filter` (live, tags, agent, thread, time).
pub async fn matching(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    filter: &MemoryFilter,
) -> AppResult<Vec<memory::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let cond = filter_condition(filter)?;
    let mut out = Vec::with_capacity(ids.len());
    for part in ids.chunks(INSERT_BATCH) {
        out.extend(
            memory::Entity::find()
                .filter(memory::Column::Id.is_in(part.iter().copied()))
                .filter(cond.clone())
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

/// The author of a memory as a principal kind (users and agents only).
pub fn author_kind(m: &memory::Model) -> Option<PrincipalKind> {
    PrincipalKind::parse(&m.author_kind).filter(|k| *k != PrincipalKind::SpaceToken)
}
