//! DataLoaders for memories: tags by memory, and count/bytes by space.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use chrono::Utc;
use sea_orm::sea_query::{Alias, Condition, DynIden, Expr, Func, IntoCondition, SimpleExpr};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, JoinType, QueryFilter, QueryOrder,
    QuerySelect, RelationTrait,
};
use uuid::Uuid;

use entity::{memory, memory_tag, space};

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

/// `Space.memoryCount` / `Space.usedStorage` for a whole page of spaces in one statement: the
/// counters every memory write keeps on the space row (`memory_count`, `memory_bytes`: memories
/// not superseded, expired ones included until the sweep deletes them) minus the expired ones
/// still stored, which `ix_memories_space_expires` finds without touching the others.
///
/// The counters are read here, in the same statement as the expired memories, rather than from
/// the space models the list already loaded: one statement sees one snapshot, so a delete or a
/// sweep committing between the list and this query cannot make a count wrong.
pub struct MemoryStatsLoader(pub DatabaseConnection);

impl Loader<Uuid> for MemoryStatsLoader {
    type Value = MemoryStats;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let now = Utc::now();
        let expired_of_space = move |_: DynIden, memories: DynIden| {
            Condition::all()
                .add(Expr::col((memories.clone(), memory::Column::ExpiresAt)).is_not_null())
                .add(Expr::col((memories.clone(), memory::Column::ExpiresAt)).lte(now))
                .add(Expr::col((memories, memory::Column::SupersededBy)).is_null())
                .into_condition()
        };
        let rows: Vec<(Uuid, i64, i64, i64, Option<i64>)> = space::Entity::find()
            .select_only()
            .column(space::Column::Id)
            .column(space::Column::MemoryCount)
            .column(space::Column::MemoryBytes)
            .column_as(
                Expr::col((memory::Entity, memory::Column::Id)).count(),
                "expired",
            )
            .column_as(
                SimpleExpr::from(Func::cast_as(
                    Func::sum(Expr::col((memory::Entity, memory::Column::ContentBytes))),
                    Alias::new("BIGINT"),
                )),
                "expired_bytes",
            )
            .join(
                JoinType::LeftJoin,
                memory::Relation::Space
                    .def()
                    .rev()
                    .on_condition(expired_of_space),
            )
            .filter(space::Column::Id.is_in(keys.iter().copied()))
            .group_by(space::Column::Id)
            .group_by(space::Column::MemoryCount)
            .group_by(space::Column::MemoryBytes)
            .into_tuple()
            .all(&self.0)
            .await?;
        let mut out: HashMap<Uuid, MemoryStats> =
            keys.iter().map(|k| (*k, MemoryStats::default())).collect();
        for (space_id, count, bytes, expired, expired_bytes) in rows {
            let stats = MemoryStats {
                count: count - expired,
                bytes: bytes - expired_bytes.unwrap_or(0),
            };
            if stats.count < 0 || stats.bytes < 0 {
                // Only a write path that forgot the counters can get here; say so, and never
                // show a negative count.
                tracing::warn!(%space_id, ?stats, "space memory counters are below zero");
            }
            out.insert(
                space_id,
                MemoryStats {
                    count: stats.count.max(0),
                    bytes: stats.bytes.max(0),
                },
            );
        }
        Ok(out)
    }
}
