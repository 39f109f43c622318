//! Creating memories, in named phases: validate -> embed (outside any transaction) -> read
//! what the plan needs -> plan (pure, see `plan.rs`) -> apply -> publish.
use std::collections::HashMap;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::draft::{agent_id, at_index, validate_draft, MemoryDraft, Valid, MAX_BATCH};
use super::plan::{plan, Chunks, Context, Item, Plan, Stored};
use super::read::live;
use super::store::{
    active, author, bump_space, conflict, count_memories, embed_chunks, event, insert_chunks,
    writable, Counted, INSERT_BATCH,
};
use crate::audit;
use crate::db::{Db, Write};
use crate::spaces::service::{self as spaces, SpaceAccess};
use entity::{agent, chunk as chunk_entity, memory, memory_tag};
use memspace_core::clock::now;
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;
use memspace_core::vocab::{DuplicatePolicy, MemoryEventKind};
use memspace_engine::embedder::to_bytes;
use memspace_engine::vector_index::VectorIndex;

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
    let valid = validate_all(db, &access, drafts, batch).await?;
    let contents = valid.iter().map(|v| v.content.clone()).collect();
    let embedded = embed_chunks(db, &access.space, contents, batch).await?;
    let items: Vec<Item> = valid
        .into_iter()
        .zip(embedded)
        .map(|(valid, chunks)| Item { valid, chunks })
        .collect();

    // Taken before the space row is marked, so the activity time is never before a new row's.
    let at = now();
    let mut txn = db.begin_write().await?;
    // Access may have changed while we embedded.
    let access = spaces::load(&txn, principal, space_id).await?;
    writable(&access)?;
    // What the batch does to the counters is known only once duplicates are resolved, and the
    // version is needed for that: the counters follow in `apply`.
    let version = bump_space(&txn, space_id, Counted::default()).await?;
    let (author_kind, author_id) = author(principal);
    let cx = Context {
        space_id,
        version,
        at,
        author_kind,
        author_id,
        space_policy: DuplicatePolicy::parse(&access.space.duplicate_policy),
        threshold: access.space.duplicate_threshold as f32,
        batch,
    };
    let stored = read_stored(&txn, index, &access, version - 1, &items, &cx).await?;
    let plan = plan(items, &stored, &cx)?;
    let vectors = apply(&txn, index, space_id, &plan).await?;
    let texts: Vec<(Uuid, String)> = plan
        .rows
        .iter()
        .map(|r| (r.id, r.content.clone()))
        .collect();
    audit::cross_tenant(&txn, principal, "memory.create", [&access.space]).await?;
    let events = plan
        .rows
        .iter()
        .map(|m| event(principal, &db.bus, MemoryEventKind::Created, m))
        .chain(
            plan.touched
                .iter()
                .map(|t| event(principal, &db.bus, MemoryEventKind::Updated, &t.memory)),
        )
        .collect();
    txn.stage(events).await?;
    txn.commit().await?;
    index.upsert(space_id, version, vectors).await;
    index.upsert_text(space_id, version, texts).await;
    Ok(plan.results())
}

/// Every draft checked in input order, so the error names the first bad one; agents must exist
/// in the space's organization.
async fn validate_all(
    db: &Db,
    access: &SpaceAccess,
    drafts: Vec<MemoryDraft>,
    batch: bool,
) -> AppResult<Vec<Valid>> {
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
    Ok(valid)
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

/// What already exists that the plan depends on, in a bounded number of queries per batch:
/// memories with the items' external ids, live memories with their content hashes, and, for
/// items checked for duplicates, the stored memories closest by meaning (index, then one query).
async fn read_stored(
    txn: &Write,
    index: &VectorIndex,
    access: &SpaceAccess,
    stored_version: i64,
    items: &[Item],
    cx: &Context,
) -> AppResult<Stored> {
    let space_id = access.space.id;
    let mut stored = Stored::default();
    let external_ids: Vec<String> = items
        .iter()
        .filter_map(|it| it.valid.external_id.clone())
        .collect();
    if !external_ids.is_empty() {
        for m in memory::Entity::find()
            .filter(memory::Column::SpaceId.eq(space_id))
            .filter(memory::Column::ExternalId.is_in(external_ids))
            .all(txn)
            .await?
        {
            if let Some(e) = m.external_id.clone() {
                stored.by_external.insert(e, m);
            }
        }
    }
    let checked: Vec<usize> = (0..items.len())
        .filter(|&i| {
            items[i].valid.on_duplicate.unwrap_or(cx.space_policy) != DuplicatePolicy::Allow
        })
        .collect();
    if checked.is_empty() {
        return Ok(stored);
    }
    let hashes: Vec<String> = checked
        .iter()
        .map(|&i| items[i].valid.hash.clone())
        .collect();
    for m in memory::Entity::find()
        .filter(memory::Column::SpaceId.eq(space_id))
        .filter(memory::Column::ContentHash.is_in(hashes))
        .filter(memory::Column::SupersededBy.is_null())
        .filter(live())
        .order_by_asc(memory::Column::CreatedAt)
        .all(txn)
        .await?
    {
        stored.by_hash.entry(m.content_hash.clone()).or_insert(m);
    }
    let mut candidates: HashMap<usize, Vec<Uuid>> = HashMap::new();
    for &i in &checked {
        let Some((_, first)) = items[i].chunks.first() else {
            continue;
        };
        if first.iter().all(|x| *x == 0.0) {
            continue;
        }
        let hits = index
            .search(txn, space_id, stored_version, first, 8)
            .await?;
        let close: Vec<Uuid> = hits
            .iter()
            .filter(|h| h.ord == 0 && h.score >= cx.threshold)
            .map(|h| h.memory_id)
            .collect();
        if !close.is_empty() {
            candidates.insert(i, close);
        }
    }
    let ids: Vec<Uuid> = candidates.values().flatten().copied().collect();
    if ids.is_empty() {
        return Ok(stored);
    }
    let found: HashMap<Uuid, memory::Model> = memory::Entity::find()
        .filter(memory::Column::Id.is_in(ids))
        .filter(memory::Column::SupersededBy.is_null())
        .filter(live())
        .all(txn)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    for (i, ids) in candidates {
        let similar: Vec<memory::Model> =
            ids.iter().filter_map(|id| found.get(id).cloned()).collect();
        stored.similar.insert(i, similar);
    }
    Ok(stored)
}

/// Writes the plan: new rows with their tags and chunks in batched inserts, changed stored
/// memories guarded by the version read (a concurrent change makes the whole batch a CONFLICT,
/// not a lost update), and the counters. Returns the vectors for the index.
async fn apply(
    txn: &Write,
    index: &VectorIndex,
    space_id: Uuid,
    plan: &Plan,
) -> AppResult<Vec<(Uuid, Vec<(i32, Vec<f32>)>)>> {
    let mut tag_rows = Vec::new();
    let mut chunk_rows = Vec::new();
    let mut vectors = Vec::with_capacity(plan.rows.len());
    for ((row, tags), chunks) in plan.rows.iter().zip(&plan.row_tags).zip(&plan.row_chunks) {
        tag_rows.extend(tags.iter().map(|t| memory_tag::ActiveModel {
            memory_id: Set(row.id),
            tag: Set(t.clone()),
        }));
        let (rows, mem_vectors) = chunk_rows_of(row, chunks);
        chunk_rows.extend(rows);
        vectors.push((row.id, mem_vectors));
    }
    for part in plan.rows.chunks(INSERT_BATCH) {
        memory::Entity::insert_many(part.iter().cloned().map(active))
            .exec_without_returning(txn)
            .await
            .map_err(AppError::unique(
                "a memory with this externalId already exists in the space",
            ))?;
    }
    for part in tag_rows.chunks(INSERT_BATCH) {
        memory_tag::Entity::insert_many(part.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    insert_chunks(txn, index, &chunk_rows).await?;
    for t in &plan.touched {
        let updated = memory::Entity::update_many()
            .set(active(t.memory.clone()))
            .filter(memory::Column::Id.eq(t.memory.id))
            .filter(memory::Column::Version.eq(t.read_version))
            .exec(txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(conflict(txn, t.memory.id, t.read_version).await);
        }
        if !t.extra_tags.is_empty() {
            memory_tag::Entity::insert_many(t.extra_tags.iter().map(|tag| {
                memory_tag::ActiveModel {
                    memory_id: Set(t.memory.id),
                    tag: Set(tag.clone()),
                }
            }))
            .on_conflict(
                OnConflict::columns([memory_tag::Column::MemoryId, memory_tag::Column::Tag])
                    .do_nothing()
                    .to_owned(),
            )
            .do_nothing()
            .exec(txn)
            .await?;
        }
    }
    count_memories(txn, space_id, plan.delta()).await?;
    Ok(vectors)
}

/// Chunk rows of a memory and the (ord, vector) pairs the index keeps.
pub(super) fn chunk_rows_of(
    row: &memory::Model,
    chunks: &Chunks,
) -> (Vec<chunk_entity::Model>, Vec<(i32, Vec<f32>)>) {
    chunks
        .iter()
        .enumerate()
        .map(|(ord, (text, vector))| {
            let chunk_row = chunk_entity::Model {
                id: Uuid::now_v7(),
                memory_id: row.id,
                space_id: row.space_id,
                ord: ord as i32,
                text: text.clone(),
                embedding: to_bytes(vector),
            };
            (chunk_row, (ord as i32, vector.clone()))
        })
        .unzip()
}
