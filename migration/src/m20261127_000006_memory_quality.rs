//! Memory quality: duplicate policies per space, memory versions (optimistic concurrency),
//! supersession links, content hashes and external ids (idempotent imports).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Spaces::Table)
                    .add_column(string_len(Spaces::DuplicatePolicy, 16).default("ALLOW"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Spaces::Table)
                    .add_column(double(Spaces::DuplicateThreshold).default(0.95))
                    .to_owned(),
            )
            .await?;
        for col in [
            ColumnDef::new(Memories::Version)
                .integer()
                .not_null()
                .default(1)
                .to_owned(),
            ColumnDef::new(Memories::ContentHash)
                .string_len(64)
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(Memories::SupersededBy)
                .uuid()
                .null()
                .to_owned(),
            ColumnDef::new(Memories::Supersedes)
                .uuid()
                .null()
                .to_owned(),
            ColumnDef::new(Memories::ExternalId)
                .string_len(255)
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Memories::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_memories_space_hash")
                    .table(Memories::Table)
                    .col(Memories::SpaceId)
                    .col(Memories::ContentHash)
                    .to_owned(),
            )
            .await?;
        // One memory per external id in a space, so re-running an import cannot duplicate.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_memories_space_external ON memories (space_id, external_id) \
                 WHERE external_id IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ux_memories_space_external")
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_memories_space_hash")
                    .table(Memories::Table)
                    .to_owned(),
            )
            .await?;
        for col in [
            Memories::ExternalId,
            Memories::Supersedes,
            Memories::SupersededBy,
            Memories::ContentHash,
            Memories::Version,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Memories::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        for col in [Spaces::DuplicateThreshold, Spaces::DuplicatePolicy] {
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
    DuplicatePolicy,
    DuplicateThreshold,
}

#[derive(DeriveIden)]
enum Memories {
    Table,
    SpaceId,
    Version,
    ContentHash,
    SupersededBy,
    Supersedes,
    ExternalId,
}
