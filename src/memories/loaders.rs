//! DataLoaders for memories: tags by memory, and count/bytes by space.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::service::live;
use entity::{memory, memory_tag};

/// Tags by memory id, alphabetical.
pub struct MemoryTagsLoader(pub DatabaseConnection);

impl Loader<Uuid> for MemoryTagsLoader {
    type Value = Vec<String>;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = memory_tag::Entity::find()
            .filter(memory_tag::Column::MemoryId.is_in(keys.iter().copied()))
            .order_by_asc(memory_tag::Column::Tag)
            .all(&self.0)
            .await?;
        let mut out: HashMap<Uuid, Self::Value> =
            keys.iter().map(|k| (*k, Default::default())).collect();
        for t in rows {
            out.entry(t.memory_id).or_default().push(t.tag);
        }
        Ok(out)
    }
}

/// Live memories of a space and the bytes of their content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub count: i64,
    pub bytes: i64,
}

/// `Space.memoryCount` / `Space.usedStorage`: one grouped query for a whole page of spaces.
pub struct MemoryStatsLoader(pub DatabaseConnection);

impl Loader<Uuid> for MemoryStatsLoader {
    type Value = MemoryStats;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows: Vec<(Uuid, i64, Option<i64>)> = memory::Entity::find()
            .select_only()
            .column(memory::Column::SpaceId)
            .column_as(Expr::col(memory::Column::Id).count(), "n")
            .column_as(Expr::cust("CAST(SUM(content_bytes) AS BIGINT)"), "bytes")
            .filter(memory::Column::SpaceId.is_in(keys.iter().copied()))
            .filter(live())
            .filter(memory::Column::SupersededBy.is_null())
            .group_by(memory::Column::SpaceId)
            .into_tuple()
            .all(&self.0)
            .await?;
        let mut out: HashMap<Uuid, MemoryStats> =
            keys.iter().map(|k| (*k, MemoryStats::default())).collect();
        for (space_id, count, bytes) in rows {
            out.insert(
                space_id,
                MemoryStats {
                    count,
                    bytes: bytes.unwrap_or(0),
                },
            );
        }
        Ok(out)
    }
}
