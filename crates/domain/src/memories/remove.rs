//! Memories leaving: a delete by id, and the sweep of expired ones.
use std::collections::HashMap;

use chrono::Utc;
use sea_orm::sea_query::Condition;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::read::load;
use super::store::{
    bump_space, count_memories, delete_returning, event, writable, Counted, INSERT_BATCH,
};
use crate::audit;
use crate::db::Db;
use entity::{memory, space};
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;
use memspace_core::vocab::MemoryEventKind;
use memspace_engine::vector_index::VectorIndex;

pub async fn delete(
    db: &Db,
    index: &VectorIndex,
    principal: &Principal,
    id: Uuid,
) -> AppResult<memory::Model> {
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
    Ok(m)
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
