//! Changing one memory: validated patch, re-embedding when the content changes, a guarded
//! (optimistic) update in one transaction.
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::create::chunk_rows_of;
use super::draft::{confidence, content, expires_at, importance, metadata, tags, thread_id};
use super::duplicates::content_hash;
use super::read::load;
use super::store::{
    active, bump_space, conflict, embed_chunks, event, insert_chunks, writable, Counted,
};
use crate::audit;
use crate::db::Db;
use entity::{chunk as chunk_entity, memory, memory_tag};
use memspace_core::clock::now;
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;
use memspace_core::vocab::MemoryEventKind;
use memspace_engine::vector_index::VectorIndex;

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

/// A patch with every given field validated (the outer `Option`: given or not).
struct Checked {
    content: Option<String>,
    tags: Option<Vec<String>>,
    metadata: Option<Option<String>>,
    importance: Option<i32>,
    confidence: Option<f64>,
    thread_id: Option<Option<String>>,
    expires_at: Option<Option<DateTime<Utc>>>,
}

fn check(patch: MemoryPatch) -> AppResult<Checked> {
    Ok(Checked {
        content: patch.content.as_deref().map(content).transpose()?,
        tags: patch.tags.map(tags).transpose()?,
        metadata: patch.metadata.map(metadata).transpose()?,
        importance: patch.importance.map(|i| importance(Some(i))).transpose()?,
        confidence: patch.confidence.map(|c| confidence(Some(c))).transpose()?,
        thread_id: patch.thread_id.map(thread_id).transpose()?,
        expires_at: patch.expires_at.map(expires_at).transpose()?,
    })
}

/// The memory with the patch's scalar fields applied (tags and chunks are rows of their own).
fn patched(current: &memory::Model, c: &Checked) -> memory::Model {
    let mut m = current.clone();
    if let Some(text) = &c.content {
        m.content_bytes = text.len() as i32;
        m.content_hash = content_hash(text);
        m.content = text.clone();
    }
    if let Some(v) = &c.metadata {
        m.metadata = v.clone();
    }
    if let Some(v) = c.importance {
        m.importance = v;
    }
    if let Some(v) = c.confidence {
        m.confidence = v;
    }
    if let Some(v) = &c.thread_id {
        m.thread_id = v.clone();
    }
    if let Some(v) = c.expires_at {
        m.expires_at = v;
    }
    m
}

/// Replaces the memory's tags when the set differs; true when it did.
async fn replace_tags(db: &impl ConnectionTrait, id: Uuid, wanted: Vec<String>) -> AppResult<bool> {
    let mut old: Vec<String> = memory_tag::Entity::find()
        .filter(memory_tag::Column::MemoryId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.tag)
        .collect();
    let mut sorted = wanted.clone();
    old.sort();
    sorted.sort();
    if old == sorted {
        return Ok(false);
    }
    memory_tag::Entity::delete_many()
        .filter(memory_tag::Column::MemoryId.eq(id))
        .exec(db)
        .await?;
    if !wanted.is_empty() {
        memory_tag::Entity::insert_many(wanted.into_iter().map(|tag| memory_tag::ActiveModel {
            memory_id: Set(id),
            tag: Set(tag),
        }))
        .exec_without_returning(db)
        .await?;
    }
    Ok(true)
}

/// Changes one memory: validate -> embed a changed content (outside the transaction) -> in one
/// transaction re-check access and the expected version, apply, guard by version -> publish.
pub async fn update(
    db: &Db,
    index: &VectorIndex,
    principal: &Principal,
    id: Uuid,
    patch: MemoryPatch,
) -> AppResult<memory::Model> {
    let (current, access) = load(&db.read, principal, id).await?;
    writable(&access)?;
    let expected_version = patch.expected_version;
    let mut checked = check(patch)?;
    let embedded = match &checked.content {
        Some(text) if *text != current.content => {
            embed_chunks(db, &access.space, vec![text.clone()], false)
                .await?
                .pop()
        }
        _ => None,
    };

    let mut txn = db.begin_write().await?;
    let (current, access) = load(&txn, principal, id).await?;
    writable(&access)?;
    if expected_version.is_some_and(|v| v != current.version) {
        return Err(AppError::Conflict {
            current_version: current.version,
        });
    }
    let mut m = patched(&current, &checked);
    let mut changed = m != current;
    if let Some(t) = checked.tags.take() {
        changed |= replace_tags(&txn, id, t).await?;
    }
    let vectors = match embedded {
        Some(chunks) => {
            chunk_entity::Entity::delete_many()
                .filter(chunk_entity::Column::MemoryId.eq(id))
                .exec(&txn)
                .await?;
            let (rows, vectors) = chunk_rows_of(&m, &chunks);
            insert_chunks(&txn, index, &rows).await?;
            Some(vectors)
        }
        None => None,
    };
    if !changed && vectors.is_none() {
        txn.commit().await?;
        return Ok(m);
    }
    // `current` is what the guarded update below overwrites (or the write fails and rolls
    // back), so the difference is exact.
    let delta = Counted::of_model(&m) - Counted::of_model(&current);
    let version = bump_space(&txn, m.space_id, delta).await?;
    if vectors.is_some() {
        m.index_seq = version;
    }
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
    txn.stage(vec![event(
        principal,
        &db.bus,
        MemoryEventKind::Updated,
        &m,
    )])
    .await?;
    txn.commit().await?;
    if let Some(v) = vectors {
        index.upsert(m.space_id, version, vec![(id, v)]).await;
        index
            .upsert_text(m.space_id, version, vec![(id, m.content.clone())])
            .await;
    }
    Ok(m)
}
