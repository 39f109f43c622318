//! Batch reads of memories' relations (the GraphQL DataLoaders call these).
use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use entity::memory_tag;

/// Tags by memory id, alphabetical.
pub async fn tags_by_memory(
    db: &impl ConnectionTrait,
    keys: &[Uuid],
) -> Result<HashMap<Uuid, Vec<String>>, DbErr> {
    let rows = memory_tag::Entity::find()
        .filter(memory_tag::Column::MemoryId.is_in(keys.iter().copied()))
        .order_by_asc(memory_tag::Column::Tag)
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<String>> =
        keys.iter().map(|k| (*k, Default::default())).collect();
    for t in rows {
        out.entry(t.memory_id).or_default().push(t.tag);
    }
    Ok(out)
}
