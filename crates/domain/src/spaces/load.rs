//! Loading one space with the caller's permission on it (NOT_FOUND when invisible), and
//! recording cross-tenant reads.
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::stats::MemoryStats;
use crate::audit::{self as audit, Event};
use crate::db::Db;
use entity::{space, space_grant};
use memspace_core::access::{self, Permission};
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;

/// A space with its grants and the caller's permission on it.
#[derive(Clone, Debug)]
pub struct SpaceAccess {
    pub space: space::Model,
    pub grants: Vec<space_grant::Model>,
    pub permission: Permission,
    /// The space's memory stats, when the statement that loaded it read them too.
    pub stats: Option<MemoryStats>,
}

/// A space with its grants and the principal's permission (which may be NONE).
async fn load_any(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
) -> AppResult<Option<SpaceAccess>> {
    let Some(space) = space::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let grants = space_grant::Entity::find()
        .filter(space_grant::Column::SpaceId.eq(id))
        .order_by_asc(space_grant::Column::CreatedAt)
        .all(db)
        .await?;
    let permission = access::permission(principal, &space, &grants);
    Ok(Some(SpaceAccess {
        space,
        grants,
        permission,
        stats: None,
    }))
}

/// A space the principal can read that is not deleted (NOT_FOUND otherwise); what a
/// subscription needs when it starts and whenever access may have changed.
pub async fn load_live(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
) -> AppResult<SpaceAccess> {
    let access = load(db, principal, id).await?;
    if access.space.deleted_at.is_some() {
        return Err(AppError::not_found("space", id));
    }
    Ok(access)
}

/// A space the principal can see (VIEW or more); NOT_FOUND otherwise. Records nothing.
pub async fn load(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
) -> AppResult<SpaceAccess> {
    load_for(db, principal, id, Permission::View).await
}

/// Loads a space and checks `needed` (NOT_FOUND / OWNER_ONLY / FORBIDDEN otherwise).
pub async fn load_for(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
    needed: Permission,
) -> AppResult<SpaceAccess> {
    let access = load_any(db, principal, id)
        .await?
        .ok_or_else(|| AppError::not_found("space", id))?;
    access::check(access.permission, needed, &access.space)?;
    Ok(access)
}

/// `space(id)`: loads a visible space; a cross-tenant read is audited.
pub async fn get(db: &Db, principal: &Principal, id: Uuid) -> AppResult<SpaceAccess> {
    let access = load(&db.read, principal, id).await?;
    audit::cross_tenant(&db.write, principal, "space.read", [&access.space]).await?;
    Ok(access)
}

pub(crate) async fn record(
    db: &impl ConnectionTrait,
    principal: &Principal,
    space: &space::Model,
    action: &str,
) -> AppResult<()> {
    audit::record(
        db,
        principal,
        Event {
            action,
            resource_type: "space",
            resource_id: space.id,
            organization_id: space.organization_id,
        },
    )
    .await
}

pub(crate) fn cross_org(principal: &Principal, space: &space::Model) -> bool {
    principal.organization_id != space.organization_id
}
