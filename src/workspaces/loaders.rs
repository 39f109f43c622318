//! DataLoaders for workspace counts: spaces, memories and bytes per workspace, for a whole page
//! of workspaces in two grouped queries that never scan the memories themselves.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use entity::{memory, space};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceStats {
    pub spaces: i64,
    pub memories: i64,
    pub bytes: i64,
}

pub struct WorkspaceStatsLoader(pub DatabaseConnection);

impl Loader<Uuid> for WorkspaceStatsLoader {
    type Value = WorkspaceStats;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let mut out: HashMap<Uuid, WorkspaceStats> = keys
            .iter()
            .map(|k| (*k, WorkspaceStats::default()))
            .collect();
        // The spaces' memory counters (kept by every memory write), then the expired memories
        // not swept yet, which still count there (found through `ix_memories_space_expires`).
        let spaces: Vec<(Uuid, i64, Option<i64>, Option<i64>)> = space::Entity::find()
            .select_only()
            .column(space::Column::WorkspaceId)
            .column_as(Expr::col(space::Column::Id).count(), "n")
            .column_as(Expr::cust("CAST(SUM(memory_count) AS BIGINT)"), "memories")
            .column_as(Expr::cust("CAST(SUM(memory_bytes) AS BIGINT)"), "bytes")
            .filter(space::Column::WorkspaceId.is_in(keys.iter().copied()))
            .filter(space::Column::DeletedAt.is_null())
            .group_by(space::Column::WorkspaceId)
            .into_tuple()
            .all(&self.0)
            .await?;
        for (ws, n, memories, bytes) in spaces {
            let e = out.entry(ws).or_default();
            e.spaces = n;
            e.memories = memories.unwrap_or(0);
            e.bytes = bytes.unwrap_or(0);
        }
        let expired: Vec<(Uuid, i64, Option<i64>)> = memory::Entity::find()
            .select_only()
            .column(space::Column::WorkspaceId)
            .column_as(Expr::col((memory::Entity, memory::Column::Id)).count(), "n")
            .column_as(
                Expr::cust("CAST(SUM(memories.content_bytes) AS BIGINT)"),
                "bytes",
            )
            .inner_join(space::Entity)
            .filter(space::Column::WorkspaceId.is_in(keys.iter().copied()))
            .filter(space::Column::DeletedAt.is_null())
            .filter(memory::Column::ExpiresAt.is_not_null())
            .filter(memory::Column::ExpiresAt.lte(crate::now()))
            .filter(memory::Column::SupersededBy.is_null())
            .group_by(space::Column::WorkspaceId)
            .into_tuple()
            .all(&self.0)
            .await?;
        for (ws, n, bytes) in expired {
            let e = out.entry(ws).or_default();
            e.memories = (e.memories - n).max(0);
            e.bytes = (e.bytes - bytes.unwrap_or(0)).max(0);
        }
        Ok(out)
    }
}
