//! Memory counters on `spaces`: `memory_count` and `memory_bytes` hold every memory of the space
//! that is not superseded (expired ones still count until the sweep deletes them), kept by every
//! memory write in its own transaction. `Space.memoryCount` then reads the counters and subtracts
//! the few expired-but-unswept memories, found through `ix_memories_space_expires`, instead of
//! aggregating every memory of a page of spaces.
use sea_orm_migration::sea_query::{Alias, Func, Query, SimpleExpr};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite cannot add two in one statement.
        for col in [Spaces::MemoryCount, Spaces::MemoryBytes] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Spaces::Table)
                        .add_column(big_integer(col).default(0))
                        .to_owned(),
                )
                .await?;
        }

        // Backfill from the memories already stored: one correlated UPDATE, plain SQL that
        // SQLite and PostgreSQL both run.
        let m = Alias::new("m");
        let counted = |value: SimpleExpr| {
            SimpleExpr::SubQuery(
                None,
                Box::new(
                    Query::select()
                        .expr(value)
                        .from_as(Memories::Table, m.clone())
                        .and_where(
                            Expr::col((m.clone(), Memories::SpaceId))
                                .equals((Spaces::Table, Spaces::Id)),
                        )
                        .and_where(Expr::col((m.clone(), Memories::SupersededBy)).is_null())
                        .to_owned()
                        .into_sub_query_statement(),
                ),
            )
        };
        let backfill = Query::update()
            .table(Spaces::Table)
            .value(
                Spaces::MemoryCount,
                counted(Expr::col((m.clone(), Memories::Id)).count()),
            )
            .value(
                Spaces::MemoryBytes,
                counted(
                    Func::coalesce([
                        Expr::col((m.clone(), Memories::ContentBytes)).sum(),
                        Expr::val(0).into(),
                    ])
                    .into(),
                ),
            )
            .to_owned();
        manager.exec_stmt(backfill).await?;

        // Only memories that can expire are indexed: most never do, so the index stays small
        // and writes of ordinary memories do not pay for it.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_memories_space_expires ON memories (space_id, expires_at) \
                 WHERE expires_at IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_memories_space_expires")
            .await?;
        for col in [Spaces::MemoryBytes, Spaces::MemoryCount] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Spaces::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Spaces {
    Table,
    Id,
    MemoryCount,
    MemoryBytes,
}

#[derive(DeriveIden)]
enum Memories {
    Table,
    Id,
    SpaceId,
    ContentBytes,
    SupersededBy,
}
