//! DataLoaders for workspace counts: spaces, memories and bytes per workspace, one grouped
//! query each for a whole page of workspaces.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use crate::memories::service::live;
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
        let spaces: Vec<(Uuid, i64)> = space::Entity::find()
            .select_only()
            .column(space::Column::WorkspaceId)
            .column_as(Expr::col(space::Column::Id).count(), "n")
            .filter(space::Column::WorkspaceId.is_in(keys.iter().copied()))
            .filter(space::Column::DeletedAt.is_null())
            .group_by(space::Column::WorkspaceId)
            .into_tuple()
            .all(&self.0)
            .await?;
        for (ws, n) in spaces {
            out.entry(ws).or_default().spaces = n;
        }
        let memories: Vec<(Uuid, i64, Option<i64>)> = memory::Entity::find()
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
            .filter(live())
            .filter(memory::Column::SupersededBy.is_null())
            .group_by(space::Column::WorkspaceId)
            .into_tuple()
            .all(&self.0)
            .await?;
        for (ws, n, bytes) in memories {
            let e = out.entry(ws).or_default();
            e.memories = n;
            e.bytes = bytes.unwrap_or(0);
        }
        Ok(out)
    }
}
