//! Organizations, identity (users, roles, departments, agents, API keys) and spaces.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(pk_uuid(Organizations::Id))
                    .col(string_len(Organizations::Handle, 63))
                    .col(string_len(Organizations::Name, 255))
                    .col(timestamp_with_time_zone(Organizations::CreatedAt))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "ux_organizations_handle",
            Organizations::Table,
            &[Organizations::Handle],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    .col(uuid(Users::OrganizationId))
                    .col(string_len(Users::Name, 255))
                    .col(string_len(Users::Email, 320))
                    .col(boolean(Users::IsAdmin))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .foreign_key(&mut cascade_fk(
                        "fk_users_org",
                        Users::Table,
                        Users::OrganizationId,
                        Organizations::Table,
                        Organizations::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "ux_users_org_email",
            Users::Table,
            &[Users::OrganizationId, Users::Email],
        )
        .await?;

        for (table, name, ux) in [
            (
                Roles::Table.into_iden(),
                "fk_roles_org",
                "ux_roles_org_name",
            ),
            (
                Departments::Table.into_iden(),
                "fk_departments_org",
                "ux_departments_org_name",
            ),
        ] {
            manager
                .create_table(
                    Table::create()
                        .table(table.clone())
                        .col(pk_uuid(Named::Id))
                        .col(uuid(Named::OrganizationId))
                        .col(string_len(Named::Name, 255))
                        .col(timestamp_with_time_zone(Named::CreatedAt))
                        .foreign_key(&mut cascade_fk(
                            name,
                            table.clone(),
                            Named::OrganizationId,
                            Organizations::Table,
                            Organizations::Id,
                        ))
                        .to_owned(),
                )
                .await?;
            unique_index(manager, ux, table, &[Named::OrganizationId, Named::Name]).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(UserRoles::Table)
                    .col(uuid(UserRoles::UserId))
                    .col(uuid(UserRoles::RoleId))
                    .primary_key(
                        Index::create()
                            .col(UserRoles::UserId)
                            .col(UserRoles::RoleId),
                    )
                    .foreign_key(&mut cascade_fk(
                        "fk_user_roles_user",
                        UserRoles::Table,
                        UserRoles::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .foreign_key(&mut cascade_fk(
                        "fk_user_roles_role",
                        UserRoles::Table,
                        UserRoles::RoleId,
                        Roles::Table,
                        Named::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_user_roles_role",
            UserRoles::Table,
            &[UserRoles::RoleId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserDepartments::Table)
                    .col(uuid(UserDepartments::UserId))
                    .col(uuid(UserDepartments::DepartmentId))
                    .primary_key(
                        Index::create()
                            .col(UserDepartments::UserId)
                            .col(UserDepartments::DepartmentId),
                    )
                    .foreign_key(&mut cascade_fk(
                        "fk_user_departments_user",
                        UserDepartments::Table,
                        UserDepartments::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .foreign_key(&mut cascade_fk(
                        "fk_user_departments_department",
                        UserDepartments::Table,
                        UserDepartments::DepartmentId,
                        Departments::Table,
                        Named::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_user_departments_department",
            UserDepartments::Table,
            &[UserDepartments::DepartmentId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Agents::Table)
                    .col(pk_uuid(Agents::Id))
                    .col(uuid(Agents::OrganizationId))
                    .col(string_len(Agents::Handle, 63))
                    .col(string_len(Agents::Name, 255))
                    .col(timestamp_with_time_zone(Agents::CreatedAt))
                    .foreign_key(&mut cascade_fk(
                        "fk_agents_org",
                        Agents::Table,
                        Agents::OrganizationId,
                        Organizations::Table,
                        Organizations::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "ux_agents_org_handle",
            Agents::Table,
            &[Agents::OrganizationId, Agents::Handle],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(pk_uuid(ApiKeys::Id))
                    .col(uuid(ApiKeys::OrganizationId))
                    .col(uuid_null(ApiKeys::UserId))
                    .col(uuid_null(ApiKeys::AgentId))
                    .col(string_len(ApiKeys::Name, 255))
                    .col(string_len(ApiKeys::Prefix, 32))
                    .col(string_len(ApiKeys::KeyHash, 64))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .foreign_key(&mut cascade_fk(
                        "fk_api_keys_org",
                        ApiKeys::Table,
                        ApiKeys::OrganizationId,
                        Organizations::Table,
                        Organizations::Id,
                    ))
                    .foreign_key(&mut cascade_fk(
                        "fk_api_keys_user",
                        ApiKeys::Table,
                        ApiKeys::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .foreign_key(&mut cascade_fk(
                        "fk_api_keys_agent",
                        ApiKeys::Table,
                        ApiKeys::AgentId,
                        Agents::Table,
                        Agents::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "ux_api_keys_hash",
            ApiKeys::Table,
            &[ApiKeys::KeyHash],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Spaces::Table)
                    .col(pk_uuid(Spaces::Id))
                    .col(uuid(Spaces::OrganizationId))
                    .col(uuid(Spaces::OwnerId))
                    .col(string_len(Spaces::OwnerKind, 16))
                    .col(string_len(Spaces::Name, 255))
                    .col(string_len_null(Spaces::Description, 500))
                    .col(string_len(Spaces::AccessMode, 16))
                    .col(string_len(Spaces::Embedder, 128))
                    .col(integer(Spaces::ChunkSize))
                    .col(integer(Spaces::ChunkOverlap))
                    .col(timestamp_with_time_zone_null(Spaces::LastActivityAt))
                    .col(timestamp_with_time_zone(Spaces::CreatedAt))
                    .col(timestamp_with_time_zone(Spaces::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Spaces::DeletedAt))
                    .foreign_key(&mut cascade_fk(
                        "fk_spaces_org",
                        Spaces::Table,
                        Spaces::OrganizationId,
                        Organizations::Table,
                        Organizations::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        // A soft-deleted space does not hold its name: the promise is one *live* space per {owner, name}.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_spaces_owner_name_live ON spaces (owner_id, name) WHERE deleted_at IS NULL",
            )
            .await?;
        index(
            manager,
            "ix_spaces_org_created",
            Spaces::Table,
            &[Spaces::OrganizationId, Spaces::CreatedAt],
        )
        .await?;
        index(
            manager,
            "ix_spaces_owner",
            Spaces::Table,
            &[Spaces::OwnerId],
        )
        .await?;
        index(
            manager,
            "ix_spaces_created",
            Spaces::Table,
            &[Spaces::CreatedAt, Spaces::Id],
        )
        .await?;
        index(
            manager,
            "ix_spaces_name",
            Spaces::Table,
            &[Spaces::Name, Spaces::Id],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(SpaceLabels::Table)
                    .col(uuid(SpaceLabels::SpaceId))
                    .col(string_len(SpaceLabels::Key, 63))
                    .col(string_len(SpaceLabels::Value, 255))
                    .primary_key(
                        Index::create()
                            .col(SpaceLabels::SpaceId)
                            .col(SpaceLabels::Key),
                    )
                    .foreign_key(&mut cascade_fk(
                        "fk_space_labels_space",
                        SpaceLabels::Table,
                        SpaceLabels::SpaceId,
                        Spaces::Table,
                        Spaces::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_space_labels_kv",
            SpaceLabels::Table,
            &[SpaceLabels::Key, SpaceLabels::Value],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(SpaceTags::Table)
                    .col(uuid(SpaceTags::SpaceId))
                    .col(string_len(SpaceTags::Tag, 64))
                    .primary_key(Index::create().col(SpaceTags::SpaceId).col(SpaceTags::Tag))
                    .foreign_key(&mut cascade_fk(
                        "fk_space_tags_space",
                        SpaceTags::Table,
                        SpaceTags::SpaceId,
                        Spaces::Table,
                        Spaces::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_space_tags_tag",
            SpaceTags::Table,
            &[SpaceTags::Tag],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SpaceTags::Table.into_iden(),
            SpaceLabels::Table.into_iden(),
            Spaces::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Agents::Table.into_iden(),
            UserDepartments::Table.into_iden(),
            UserRoles::Table.into_iden(),
            Departments::Table.into_iden(),
            Roles::Table.into_iden(),
            Users::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

fn cascade_fk(
    name: &str,
    from: impl IntoTableRef,
    from_col: impl IntoIden + 'static,
    to: impl IntoTableRef,
    to_col: impl IntoIden + 'static,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from, from_col)
        .to(to, to_col)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

async fn unique_index<T: IntoIden + Clone + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden + 'static,
    cols: &[T],
) -> Result<(), DbErr> {
    let mut stmt = Index::create().name(name).table(table).unique().to_owned();
    for col in cols {
        stmt.col(col.clone());
    }
    manager.create_index(stmt).await
}

async fn index<T: IntoIden + Clone + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden + 'static,
    cols: &[T],
) -> Result<(), DbErr> {
    let mut stmt = Index::create().name(name).table(table).to_owned();
    for col in cols {
        stmt.col(col.clone());
    }
    manager.create_index(stmt).await
}

#[derive(DeriveIden, Clone)]
enum Organizations {
    Table,
    Id,
    Handle,
    Name,
    CreatedAt,
}

#[derive(DeriveIden, Clone)]
enum Users {
    Table,
    Id,
    OrganizationId,
    Name,
    Email,
    IsAdmin,
    CreatedAt,
}

#[derive(DeriveIden, Clone)]
enum Roles {
    Table,
}

#[derive(DeriveIden, Clone)]
enum Departments {
    Table,
}

/// Columns shared by `roles` and `departments`.
#[derive(DeriveIden, Clone)]
enum Named {
    Id,
    OrganizationId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden, Clone)]
enum UserRoles {
    Table,
    UserId,
    RoleId,
}

#[derive(DeriveIden, Clone)]
enum UserDepartments {
    Table,
    UserId,
    DepartmentId,
}

#[derive(DeriveIden, Clone)]
enum Agents {
    Table,
    Id,
    OrganizationId,
    Handle,
    Name,
    CreatedAt,
}

#[derive(DeriveIden, Clone)]
enum ApiKeys {
    Table,
    Id,
    OrganizationId,
    UserId,
    AgentId,
    Name,
    Prefix,
    KeyHash,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden, Clone)]
enum Spaces {
    Table,
    Id,
    OrganizationId,
    OwnerId,
    OwnerKind,
    Name,
    Description,
    AccessMode,
    Embedder,
    ChunkSize,
    ChunkOverlap,
    LastActivityAt,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden, Clone)]
enum SpaceLabels {
    Table,
    SpaceId,
    Key,
    Value,
}

#[derive(DeriveIden, Clone)]
enum SpaceTags {
    Table,
    SpaceId,
    Tag,
}
