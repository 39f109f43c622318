//! Memories, their tags and chunks (with embeddings), full-text search, linked spaces.
use sea_orm_migration::sea_orm::DatabaseBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Memories::Table)
                    .col(pk_uuid(Memories::Id))
                    .col(uuid(Memories::SpaceId))
                    .col(text(Memories::Content))
                    .col(integer(Memories::ContentBytes))
                    .col(text_null(Memories::Metadata))
                    .col(integer(Memories::Importance))
                    .col(double(Memories::Confidence))
                    .col(integer(Memories::RecallCount).default(0))
                    .col(string_len(Memories::AuthorKind, 16))
                    .col(uuid(Memories::AuthorId))
                    .col(uuid_null(Memories::AgentId))
                    .col(string_len_null(Memories::ThreadId, 255))
                    .col(timestamp_with_time_zone(Memories::CreatedAt))
                    .col(timestamp_with_time_zone(Memories::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Memories::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_memories_space")
                            .from(Memories::Table, Memories::SpaceId)
                            .to(Spaces::Table, Spaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "ix_memories_space_created",
                vec![Memories::SpaceId, Memories::CreatedAt, Memories::Id],
            ),
            (
                "ix_memories_space_thread",
                vec![Memories::SpaceId, Memories::ThreadId],
            ),
            ("ix_memories_agent", vec![Memories::AgentId]),
            ("ix_memories_expires", vec![Memories::ExpiresAt]),
        ] {
            let mut idx = Index::create().name(name).table(Memories::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(MemoryTags::Table)
                    .col(uuid(MemoryTags::MemoryId))
                    .col(string_len(MemoryTags::Tag, 64))
                    .primary_key(
                        Index::create()
                            .col(MemoryTags::MemoryId)
                            .col(MemoryTags::Tag),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_memory_tags_memory")
                            .from(MemoryTags::Table, MemoryTags::MemoryId)
                            .to(Memories::Table, Memories::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_memory_tags_tag")
                    .table(MemoryTags::Table)
                    .col(MemoryTags::Tag)
                    .col(MemoryTags::MemoryId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Chunks::Table)
                    .col(pk_uuid(Chunks::Id))
                    .col(uuid(Chunks::MemoryId))
                    .col(uuid(Chunks::SpaceId))
                    .col(integer(Chunks::Ord))
                    .col(text(Chunks::Text))
                    // Little-endian f32s.
                    .col(binary(Chunks::Embedding))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chunks_memory")
                            .from(Chunks::Table, Chunks::MemoryId)
                            .to(Memories::Table, Memories::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_chunks_space")
                    .table(Chunks::Table)
                    .col(Chunks::SpaceId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_chunks_memory")
                    .table(Chunks::Table)
                    .col(Chunks::MemoryId)
                    .col(Chunks::Ord)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SpaceLinks::Table)
                    .col(uuid(SpaceLinks::SpaceId))
                    .col(uuid(SpaceLinks::LinkedSpaceId))
                    .col(timestamp_with_time_zone(SpaceLinks::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(SpaceLinks::SpaceId)
                            .col(SpaceLinks::LinkedSpaceId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_space_links_space")
                            .from(SpaceLinks::Table, SpaceLinks::SpaceId)
                            .to(Spaces::Table, Spaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_space_links_linked")
                            .from(SpaceLinks::Table, SpaceLinks::LinkedSpaceId)
                            .to(Spaces::Table, Spaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // Keyword search in each database's own full-text engine.
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Sqlite => {
                db.execute_unprepared(
                    "CREATE VIRTUAL TABLE memories_fts USING fts5(\
                        memory_id UNINDEXED, content, tokenize = 'porter unicode61')",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN \
                        INSERT INTO memories_fts (memory_id, content) VALUES (new.id, new.content); \
                     END",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN \
                        DELETE FROM memories_fts WHERE memory_id = old.id; \
                     END",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER memories_fts_update AFTER UPDATE OF content ON memories BEGIN \
                        UPDATE memories_fts SET content = new.content WHERE memory_id = old.id; \
                     END",
                )
                .await?;
            }
            DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "ALTER TABLE memories ADD COLUMN content_tsv tsvector \
                     GENERATED ALWAYS AS (to_tsvector('english', content)) STORED",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE INDEX ix_memories_content_tsv ON memories USING GIN (content_tsv)",
                )
                .await?;
            }
            other => {
                return Err(DbErr::Migration(format!("unsupported backend {other:?}")));
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Sqlite {
            let db = manager.get_connection();
            for t in [
                "memories_fts_insert",
                "memories_fts_delete",
                "memories_fts_update",
            ] {
                db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {t}"))
                    .await?;
            }
            db.execute_unprepared("DROP TABLE IF EXISTS memories_fts")
                .await?;
        }
        for t in [
            SpaceLinks::Table.into_iden(),
            Chunks::Table.into_iden(),
            MemoryTags::Table.into_iden(),
            Memories::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Spaces {
    Table,
    Id,
}

#[derive(DeriveIden, Clone)]
enum Memories {
    Table,
    Id,
    SpaceId,
    Content,
    ContentBytes,
    Metadata,
    Importance,
    Confidence,
    RecallCount,
    AuthorKind,
    AuthorId,
    AgentId,
    ThreadId,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum MemoryTags {
    Table,
    MemoryId,
    Tag,
}

#[derive(DeriveIden)]
enum Chunks {
    Table,
    Id,
    MemoryId,
    SpaceId,
    Ord,
    Text,
    Embedding,
}

#[derive(DeriveIden)]
enum SpaceLinks {
    Table,
    SpaceId,
    LinkedSpaceId,
    CreatedAt,
}
