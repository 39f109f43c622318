//! Workspace counts: spaces, memories and bytes per workspace, for a whole page
//! of workspaces in one grouped query that never scans the live memories themselves.
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr};
use std::collections::HashMap;
use uuid::Uuid;

use crate::spaces::stats::expired_columns;
use entity::space;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceStats {
    pub spaces: i64,
    pub memories: i64,
    pub bytes: i64,
}

pub async fn stats_by_workspace(
    db: &impl ConnectionTrait,
    keys: &[Uuid],
) -> Result<HashMap<Uuid, WorkspaceStats>, DbErr> {
    let mut out: HashMap<Uuid, WorkspaceStats> = keys
        .iter()
        .map(|k| (*k, WorkspaceStats::default()))
        .collect();
    // Per live space: its memory counters (kept by every memory write) minus its expired
    // memories not swept yet, as `Space.memoryCount` computes them; summed per workspace.
    let [(expired, _), (expired_bytes, _)] = expired_columns(db.get_database_backend(), true);
    let per_space = Query::select()
        .column(space::Column::WorkspaceId)
        .expr_as(
            Expr::col(space::Column::MemoryCount).sub(expired),
            Alias::new("memories"),
        )
        .expr_as(
            Expr::col(space::Column::MemoryBytes).sub(expired_bytes),
            Alias::new("bytes"),
        )
        .from(space::Entity)
        .and_where(space::Column::WorkspaceId.is_in(keys.iter().copied()))
        .and_where(space::Column::DeletedAt.is_null())
        .to_owned();
    let per_workspace = Query::select()
        .column(space::Column::WorkspaceId)
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .expr_as(
            Expr::cust("CAST(SUM(memories) AS BIGINT)"),
            Alias::new("memories"),
        )
        .expr_as(
            Expr::cust("CAST(SUM(bytes) AS BIGINT)"),
            Alias::new("bytes"),
        )
        .from_subquery(per_space, Alias::new("live_spaces"))
        .group_by_col(space::Column::WorkspaceId)
        .to_owned();
    let backend = db.get_database_backend();
    for row in db.query_all(backend.build(&per_workspace)).await? {
        let ws: Uuid = row.try_get_by_index(0)?;
        let memories: Option<i64> = row.try_get_by_index(2)?;
        let bytes: Option<i64> = row.try_get_by_index(3)?;
        let e = out.entry(ws).or_default();
        e.spaces = row.try_get_by_index(1)?;
        e.memories = memories.unwrap_or(0).max(0);
        e.bytes = bytes.unwrap_or(0).max(0);
    }
    Ok(out)
}
