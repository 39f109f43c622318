//! Workspaces: groups of spaces in an organization, with members holding roles.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Workspaces::Table)
                    .col(pk_uuid(Workspaces::Id))
                    .col(uuid(Workspaces::OrganizationId))
                    .col(string_len(Workspaces::Name, 100))
                    .col(string_len(Workspaces::Description, 2000))
                    .col(string_len(Workspaces::WorkspaceType, 16))
                    .col(string_len(Workspaces::DocumentUploadMethod, 16))
                    .col(timestamp_with_time_zone(Workspaces::CreatedAt))
                    .col(timestamp_with_time_zone(Workspaces::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_workspaces_org")
                            .from(Workspaces::Table, Workspaces::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_workspaces_org_name")
                    .table(Workspaces::Table)
                    .col(Workspaces::OrganizationId)
                    .col(Workspaces::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_workspaces_created")
                    .table(Workspaces::Table)
                    .col(Workspaces::CreatedAt)
                    .col(Workspaces::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WorkspaceMembers::Table)
                    .col(uuid(WorkspaceMembers::WorkspaceId))
                    .col(uuid(WorkspaceMembers::UserId))
                    .col(string_len(WorkspaceMembers::Role, 16))
                    .col(timestamp_with_time_zone(WorkspaceMembers::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(WorkspaceMembers::WorkspaceId)
                            .col(WorkspaceMembers::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_workspace_members_workspace")
                            .from(WorkspaceMembers::Table, WorkspaceMembers::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_workspace_members_user")
                            .from(WorkspaceMembers::Table, WorkspaceMembers::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_workspace_members_user")
                    .table(WorkspaceMembers::Table)
                    .col(WorkspaceMembers::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(Spaces::Table)
                    .add_column(uuid_null(Spaces::WorkspaceId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_spaces_workspace")
                    .table(Spaces::Table)
                    .col(Spaces::WorkspaceId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_spaces_workspace")
                    .table(Spaces::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Spaces::Table)
                    .drop_column(Spaces::WorkspaceId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(WorkspaceMembers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Workspaces::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Spaces {
    Table,
    WorkspaceId,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
    OrganizationId,
    Name,
    Description,
    WorkspaceType,
    DocumentUploadMethod,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WorkspaceMembers {
    Table,
    WorkspaceId,
    UserId,
    Role,
    CreatedAt,
}
