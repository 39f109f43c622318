//! Sharing: grants, the assigned agent, space tokens and the audit log.
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
                    .add_column(uuid_null(Spaces::AgentId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_spaces_agent")
                    .table(Spaces::Table)
                    .col(Spaces::AgentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SpaceGrants::Table)
                    .col(pk_uuid(SpaceGrants::Id))
                    .col(uuid(SpaceGrants::SpaceId))
                    .col(string_len(SpaceGrants::SubjectKind, 16))
                    // For ALL_USERS the subject is the space's own organization.
                    .col(uuid(SpaceGrants::SubjectId))
                    .col(string_len(SpaceGrants::Permission, 8))
                    .col(timestamp_with_time_zone(SpaceGrants::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_space_grants_space")
                            .from(SpaceGrants::Table, SpaceGrants::SpaceId)
                            .to(Spaces::Table, Spaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_space_grants_subject")
                    .table(SpaceGrants::Table)
                    .col(SpaceGrants::SpaceId)
                    .col(SpaceGrants::SubjectKind)
                    .col(SpaceGrants::SubjectId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The visibility condition looks grants up by subject.
        manager
            .create_index(
                Index::create()
                    .name("ix_space_grants_by_subject")
                    .table(SpaceGrants::Table)
                    .col(SpaceGrants::SubjectKind)
                    .col(SpaceGrants::SubjectId)
                    .col(SpaceGrants::SpaceId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SpaceTokens::Table)
                    .col(pk_uuid(SpaceTokens::Id))
                    .col(uuid(SpaceTokens::SpaceId))
                    .col(string_len_null(SpaceTokens::Name, 255))
                    .col(string_len(SpaceTokens::Permission, 8))
                    .col(string_len(SpaceTokens::Prefix, 32))
                    .col(string_len(SpaceTokens::TokenHash, 64))
                    .col(uuid(SpaceTokens::CreatedBy))
                    .col(timestamp_with_time_zone_null(SpaceTokens::ExpiresAt))
                    .col(timestamp_with_time_zone(SpaceTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(SpaceTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_space_tokens_space")
                            .from(SpaceTokens::Table, SpaceTokens::SpaceId)
                            .to(Spaces::Table, Spaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_space_tokens_hash")
                    .table(SpaceTokens::Table)
                    .col(SpaceTokens::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_space_tokens_space")
                    .table(SpaceTokens::Table)
                    .col(SpaceTokens::SpaceId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(pk_uuid(AuditEvents::Id))
                    // The organization that owns the resource (whose admins read the event).
                    .col(uuid(AuditEvents::OrganizationId))
                    .col(string_len(AuditEvents::ActorKind, 16))
                    .col(uuid(AuditEvents::ActorId))
                    .col(uuid(AuditEvents::ActorOrganizationId))
                    .col(string_len(AuditEvents::Action, 64))
                    .col(string_len(AuditEvents::ResourceType, 32))
                    .col(uuid(AuditEvents::ResourceId))
                    .col(timestamp_with_time_zone(AuditEvents::At))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_org_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OrganizationId)
                    .col(AuditEvents::At)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_resource")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::ResourceId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            AuditEvents::Table.into_iden(),
            SpaceTokens::Table.into_iden(),
            SpaceGrants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("ix_spaces_agent")
                    .table(Spaces::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Spaces::Table)
                    .drop_column(Spaces::AgentId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Spaces {
    Table,
    Id,
    AgentId,
}

#[derive(DeriveIden)]
enum SpaceGrants {
    Table,
    Id,
    SpaceId,
    SubjectKind,
    SubjectId,
    Permission,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SpaceTokens {
    Table,
    Id,
    SpaceId,
    Name,
    Permission,
    Prefix,
    TokenHash,
    CreatedBy,
    ExpiresAt,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OrganizationId,
    ActorKind,
    ActorId,
    ActorOrganizationId,
    Action,
    ResourceType,
    ResourceId,
    At,
}
