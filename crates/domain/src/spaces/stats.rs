//! A space's memory count and bytes: its counters minus its expired memories not swept yet,
//! as columns for the spaces list and as a batch read for the DataLoader.
use sea_orm::sea_query::{
    Alias, Expr, Func, Query, SelectStatement, SimpleExpr, SubQueryStatement,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
};
use std::collections::HashMap;
use uuid::Uuid;

use entity::{memory, space};

/// Live memories of a space and the bytes of their content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub count: i64,
    /// `None` when the statement did not read them (a list not asked for `usedStorage`); the
    /// loader always does.
    pub bytes: Option<i64>,
}

impl MemoryStats {
    /// The stats of a space from its counters (`memory_count`, `memory_bytes`) and the
    /// expired-but-unswept memories they still include, read by one statement (see
    /// [`expired_columns`]).
    pub fn from_counters(
        space_id: Uuid,
        count: i64,
        bytes: i64,
        expired: i64,
        expired_bytes: Option<i64>,
    ) -> MemoryStats {
        let stats = MemoryStats {
            count: count - expired,
            bytes: expired_bytes.map(|e| bytes - e),
        };
        if stats.count < 0 || stats.bytes.is_some_and(|b| b < 0) {
            // Only a write path that forgot the counters can get here; say so, and never
            // show a negative count.
            tracing::warn!(%space_id, ?stats, "space memory counters are below zero");
        }
        MemoryStats {
            count: stats.count.max(0),
            bytes: stats.bytes.map(|b| b.max(0)),
        }
    }
}

/// Two columns for a select from `spaces`: the number (`expired`) and, when `bytes`, the
/// content bytes (`expired_bytes`, else NULL) of the space's memories that have expired but
/// are still stored, as
/// correlated subqueries that `ix_memories_space_expires` answers without touching live
/// memories. With the row's own counters they give [`MemoryStats::from_counters`], in the same
/// statement, hence from one snapshot: a delete or a sweep committing in between cannot make a
/// count wrong.
///
/// On PostgreSQL "expired" means before the database's `now()` rather than a bound
/// timestamp. Against a parameter, PostgreSQL's generic plan has to guess the share of expired
/// rows, picks the global expiry index over the per-space one, and so costs more than a custom
/// plan: every execution of the list was planned anew (~0.17 ms, more than it took to run).
/// `now()` is estimated at planning time, so the cached generic plan is kept and is the right
/// one. The server's clock and the database's agree to NTP precision, which is all this count
/// needs. SQLite has no such planner and gets the server's clock as a value.
pub fn expired_columns(backend: DatabaseBackend, bytes: bool) -> [(SimpleExpr, &'static str); 2] {
    let now: SimpleExpr = match backend {
        DatabaseBackend::Postgres => Expr::current_timestamp().into(),
        _ => Expr::val(memspace_core::clock::now()).into(),
    };
    let of_space = |value: SimpleExpr| {
        Query::select()
            .expr(value)
            .from(memory::Entity)
            .and_where(
                Expr::col((memory::Entity, memory::Column::SpaceId))
                    .equals((space::Entity, space::Column::Id)),
            )
            .and_where(Expr::col((memory::Entity, memory::Column::ExpiresAt)).is_not_null())
            .and_where(Expr::col((memory::Entity, memory::Column::ExpiresAt)).lte(now.clone()))
            .and_where(Expr::col((memory::Entity, memory::Column::SupersededBy)).is_null())
            .to_owned()
    };
    let subquery = |select: SelectStatement| {
        SimpleExpr::SubQuery(None, Box::new(SubQueryStatement::SelectStatement(select)))
    };
    let count = of_space(Expr::col((memory::Entity, memory::Column::Id)).count());
    let big_int = || Alias::new("BIGINT");
    if !bytes {
        return [
            (subquery(count), "expired"),
            (
                Func::cast_as(Expr::val(None::<i64>), big_int()).into(),
                "expired_bytes",
            ),
        ];
    }
    let bytes = of_space(SimpleExpr::from(Func::cast_as(
        Func::coalesce([
            SimpleExpr::from(Func::sum(Expr::col((
                memory::Entity,
                memory::Column::ContentBytes,
            )))),
            Expr::val(0i64).into(),
        ]),
        big_int(),
    )));
    [
        (subquery(count), "expired"),
        (subquery(bytes), "expired_bytes"),
    ]
}

/// `Space.memoryCount` / `Space.usedStorage` by space id, for spaces not loaded by a list
/// (which reads the same columns itself and feeds this loader): the counters every memory
/// write keeps on the space row (`memory_count`, `memory_bytes`: memories not superseded,
/// expired ones included until the sweep deletes them) minus the expired ones still stored.
pub async fn memory_stats_by_space(
    db: &impl ConnectionTrait,
    keys: &[Uuid],
) -> Result<HashMap<Uuid, MemoryStats>, DbErr> {
    let [(expired, expired_as), (expired_bytes, expired_bytes_as)] =
        expired_columns(db.get_database_backend(), true);
    let rows: Vec<(Uuid, i64, i64, i64, Option<i64>)> = space::Entity::find()
        .select_only()
        .column(space::Column::Id)
        .column(space::Column::MemoryCount)
        .column(space::Column::MemoryBytes)
        .expr_as(expired, expired_as)
        .expr_as(expired_bytes, expired_bytes_as)
        .filter(space::Column::Id.is_in(keys.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, MemoryStats> =
        keys.iter().map(|k| (*k, MemoryStats::default())).collect();
    for (space_id, count, bytes, expired, expired_bytes) in rows {
        out.insert(
            space_id,
            MemoryStats::from_counters(space_id, count, bytes, expired, expired_bytes),
        );
    }
    Ok(out)
}
