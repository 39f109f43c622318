//! Vector-index freshness across replicas: every memory write bumps its space's
//! `vector_version` and stamps the memories it wrote with it (`index_seq`), so a replica can
//! tell that its in-process index is behind and catch up with only the newer rows.
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
                    .add_column(big_integer(Spaces::VectorVersion).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Memories::Table)
                    .add_column(big_integer(Memories::IndexSeq).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_memories_space_seq")
                    .table(Memories::Table)
                    .col(Memories::SpaceId)
                    .col(Memories::IndexSeq)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_memories_space_seq")
                    .table(Memories::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Memories::Table)
                    .drop_column(Memories::IndexSeq)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Spaces::Table)
                    .drop_column(Spaces::VectorVersion)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Spaces {
    Table,
    VectorVersion,
}

#[derive(DeriveIden)]
enum Memories {
    Table,
    SpaceId,
    IndexSeq,
}
