//! Linked spaces (the seeds' "additional vector stores"): searching a space also searches the
//! spaces linked to it that the caller can read.
use crate::db::Db;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::load::{self as service, SpaceAccess};
use entity::{space, space_grant, space_link};
use memspace_core::access::{self, Permission};
use memspace_core::clock::now;
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;

/// Links `linked_id` to `space_id`: OWNER on the space, VIEW on the linked one.
pub async fn link(
    db: &Db,
    principal: &Principal,
    space_id: Uuid,
    linked_id: Uuid,
) -> AppResult<SpaceAccess> {
    if space_id == linked_id {
        return Err(AppError::validation(
            "linkedSpaceId",
            "a space cannot be linked to itself",
        ));
    }
    let txn = db.begin_write().await?;
    service::load_for(&txn, principal, space_id, Permission::Owner).await?;
    service::load(&txn, principal, linked_id).await?;
    space_link::Entity::insert(space_link::ActiveModel {
        space_id: Set(space_id),
        linked_space_id: Set(linked_id),
        created_at: Set(now()),
    })
    .on_conflict(
        OnConflict::columns([
            space_link::Column::SpaceId,
            space_link::Column::LinkedSpaceId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .do_nothing()
    .exec(&txn)
    .await?;
    let access = service::load(&txn, principal, space_id).await?;
    txn.commit().await?;
    Ok(access)
}

pub async fn unlink(
    db: &Db,
    principal: &Principal,
    space_id: Uuid,
    linked_id: Uuid,
) -> AppResult<SpaceAccess> {
    let txn = db.begin_write().await?;
    service::load_for(&txn, principal, space_id, Permission::Owner).await?;
    space_link::Entity::delete_many()
        .filter(space_link::Column::SpaceId.eq(space_id))
        .filter(space_link::Column::LinkedSpaceId.eq(linked_id))
        .exec(&txn)
        .await?;
    let access = service::load(&txn, principal, space_id).await?;
    txn.commit().await?;
    Ok(access)
}

/// The linked spaces of `space_id` that the principal can read.
pub async fn linked(
    db: &impl ConnectionTrait,
    principal: &Principal,
    space_id: Uuid,
) -> AppResult<Vec<SpaceAccess>> {
    let ids: Vec<Uuid> = space_link::Entity::find()
        .filter(space_link::Column::SpaceId.eq(space_id))
        .all(db)
        .await?
        .into_iter()
        .map(|l| l.linked_space_id)
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let spaces = space::Entity::find()
        .filter(space::Column::Id.is_in(ids.clone()))
        .all(db)
        .await?;
    let grants = space_grant::Entity::find()
        .filter(space_grant::Column::SpaceId.is_in(ids))
        .all(db)
        .await?;
    Ok(spaces
        .into_iter()
        .filter_map(|s| {
            let mine: Vec<space_grant::Model> = grants
                .iter()
                .filter(|g| g.space_id == s.id)
                .cloned()
                .collect();
            let permission = access::permission(principal, &s, &mine);
            (permission >= Permission::View).then_some(SpaceAccess {
                space: s,
                grants: mine,
                permission,
                stats: None,
            })
        })
        .collect())
}
