//! Credentials (issue 17, items 9, 10, 15).
//!
//! - `space_tokens.created_by_kind` (USER | AGENT): with `created_by`, the principal that minted
//!   the token, whose OWNER right the token depends on. Backfilled: AGENT where `created_by` is
//!   an agent; a token whose creator is neither a user nor an agent is attributed to its space's
//!   owner (who always holds OWNER, so such a token keeps working as before).
//! - `api_keys.origin` (API | CLI | BOOTSTRAP): BOOTSTRAP marks the admin key that
//!   `MEMSPACE_ADMIN_KEY` manages (the first start's key, and every rotation since). Backfilled:
//!   the earliest key of organization `default` is BOOTSTRAP; keys named `admin (cli)` are CLI.
//! - The stored prefix of the BOOTSTRAP key held the first 12 characters of an operator-chosen
//!   secret in clear: it is cut to `msk_` (a generated key) or emptied (a chosen one). Not undone
//!   by `down`.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SpaceTokens::Table)
                    .add_column(string_len(SpaceTokens::CreatedByKind, 16).default("USER"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .add_column(string_len(ApiKeys::Origin, 16).default("API"))
                    .to_owned(),
            )
            .await?;
        // Plain SQL that SQLite and PostgreSQL both run.
        let db = manager.get_connection();
        for sql in [
            // A creator that no longer exists (or never did): the space's owner.
            "UPDATE space_tokens SET \
               created_by = (SELECT s.owner_id FROM spaces s WHERE s.id = space_tokens.space_id), \
               created_by_kind = (SELECT s.owner_kind FROM spaces s WHERE s.id = space_tokens.space_id) \
             WHERE created_by NOT IN (SELECT id FROM users) \
               AND created_by NOT IN (SELECT id FROM agents)",
            "UPDATE space_tokens SET created_by_kind = 'AGENT' \
             WHERE created_by IN (SELECT id FROM agents)",
            "UPDATE api_keys SET origin = 'CLI' WHERE name = 'admin (cli)'",
            "UPDATE api_keys SET origin = 'BOOTSTRAP' WHERE id = ( \
               SELECT k.id FROM api_keys k JOIN organizations o ON o.id = k.organization_id \
               WHERE o.handle = 'default' ORDER BY k.created_at, k.id LIMIT 1)",
            "UPDATE api_keys SET prefix = \
               CASE WHEN substr(prefix, 1, 4) = 'msk_' THEN 'msk_' ELSE '' END \
             WHERE origin = 'BOOTSTRAP'",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .drop_column(ApiKeys::Origin)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SpaceTokens::Table)
                    .drop_column(SpaceTokens::CreatedByKind)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum SpaceTokens {
    Table,
    CreatedByKind,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Origin,
}
