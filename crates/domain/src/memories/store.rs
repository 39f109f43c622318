//! What every memory write shares: the access check for writing, embedding outside the
//! transaction, the space row (counters, activity, vector version), the row builder, events.
use sea_orm::sea_query::{Condition, Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, IdenStatic, QuerySelect, Set,
};
use uuid::Uuid;

use crate::db::Db;
use crate::events::BusMessage;
use crate::spaces::service::SpaceAccess;
use entity::{chunk as chunk_row, memory, space};
use memspace_core::access::Permission;
use memspace_core::clock::now;
use memspace_core::error::{AppError, AppResult};
use memspace_core::limits::MAX_CHUNKS_PER_MEMORY;
use memspace_core::principal::Principal;
use memspace_core::vocab::MemoryEventKind;
use memspace_engine::chunking::chunk;
use memspace_engine::vector_index::VectorIndex;

use super::draft::at_index;

pub(super) const INSERT_BATCH: usize = 400;

/// Inserts chunk rows in batches: with pgvector, each with its half-precision vector beside
/// the blob (the database then decodes nothing).
pub(super) async fn insert_chunks(
    txn: &impl ConnectionTrait,
    index: &VectorIndex,
    rows: &[chunk_row::Model],
) -> AppResult<()> {
    for part in rows.chunks(INSERT_BATCH) {
        match index.pgvector() {
            Some(pg) => pg.insert_chunks(txn, part).await?,
            None => {
                chunk_row::Entity::insert_many(
                    part.iter().cloned().map(chunk_row::ActiveModel::from),
                )
                .exec_without_returning(txn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Refuses writes the principal may not make: needs EDIT; a soft-deleted space takes none.
pub(super) fn writable(access: &SpaceAccess) -> AppResult<()> {
    memspace_core::access::check(access.permission, Permission::Edit, &access.space)?;
    if access.space.deleted_at.is_some() {
        return Err(AppError::forbidden(format!(
            "space {} is deleted; restore it before writing",
            access.space.id
        )));
    }
    Ok(())
}

/// Chunks texts and embeds every chunk of the batch in one call to the space's embedder
/// (outside any transaction: a slow embedder never holds a lock). A failing embedder fails the
/// write with EMBEDDER_UNAVAILABLE before anything is stored; a memory that would be cut into
/// more than [`MAX_CHUNKS_PER_MEMORY`] chunks fails it with VALIDATION_ERROR on `content`
/// (with `extensions.index` in a batch) before anything is embedded.
pub(super) async fn embed_chunks(
    db: &Db,
    space: &space::Model,
    contents: Vec<String>,
    batch: bool,
) -> AppResult<Vec<Vec<(String, Vec<f32>)>>> {
    let size = space.chunk_size.max(1) as usize;
    let overlap = space.chunk_overlap.max(0) as usize;
    let mut pieces: Vec<Vec<String>> = Vec::with_capacity(contents.len());
    for (i, c) in contents.iter().enumerate() {
        let mut cut = chunk(c, size, overlap);
        if cut.is_empty() {
            cut.push(c.trim().to_string());
        }
        if cut.len() > MAX_CHUNKS_PER_MEMORY {
            let err = too_many_chunks(cut.len(), size, overlap);
            return Err(if batch { at_index(err, i) } else { err });
        }
        pieces.push(cut);
    }
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

fn too_many_chunks(chunks: usize, size: usize, overlap: usize) -> AppError {
    AppError::Validation {
        field: "content".into(),
        message: format!(
            "would be cut into {chunks} chunks with this space's chunking ({size} / {overlap}); \
             at most {MAX_CHUNKS_PER_MEMORY} chunks per memory: shorten the memory or split it"
        ),
        details: Some(serde_json::json!({
            "limit": MAX_CHUNKS_PER_MEMORY,
            "measured": chunks,
        })),
    }
}

/// CONFLICT for a guarded update that matched no row: the memory's version moved past `read`.
pub(super) async fn conflict(db: &impl ConnectionTrait, id: Uuid, read: i32) -> AppError {
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

pub(super) fn author(principal: &Principal) -> (String, Uuid) {
    (principal.kind.as_str().to_string(), principal.id)
}

/// What a write adds to a space's memory counters (`spaces.memory_count`/`memory_bytes`):
/// the memories that are not superseded, expired ones included until the sweep deletes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counted {
    pub(super) count: i64,
    pub(super) bytes: i64,
}

impl Counted {
    /// What one stored memory contributes to the counters.
    pub(super) fn of(superseded_by: Option<Uuid>, content_bytes: i32) -> Counted {
        match superseded_by {
            Some(_) => Counted::default(),
            None => Counted {
                count: 1,
                bytes: i64::from(content_bytes),
            },
        }
    }

    pub(super) fn of_model(m: &memory::Model) -> Counted {
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
pub(super) fn add_counts(update: &mut sea_orm::sea_query::UpdateStatement, d: Counted) {
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
pub(super) async fn bump_space(
    db: &impl ConnectionTrait,
    space_id: Uuid,
    delta: Counted,
) -> AppResult<i64> {
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
pub(super) async fn count_memories(
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
pub(super) struct Removed {
    pub(super) id: Uuid,
    pub(super) space_id: Uuid,
    pub(super) content_bytes: i32,
    pub(super) superseded_by: Option<Uuid>,
}

/// Deletes the memories matching `cond` and returns them (one statement, so what the counters
/// lose is what the database really removed, even when another writer changed a row meanwhile).
pub(super) async fn delete_returning(
    db: &impl ConnectionTrait,
    cond: Condition,
) -> AppResult<Vec<Removed>> {
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

pub(super) fn event(
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

pub(super) fn active(m: memory::Model) -> memory::ActiveModel {
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
