//! Space tokens: bearer credentials for exactly one space, VIEW or EDIT, optionally expiring.
//! A token records who minted it and works only while that principal holds OWNER on the space
//! (checked on every authentication, see `auth::authenticate`).
use crate::db::Db;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::load as service;
use crate::audit::{self as audit, Event};
use crate::auth as keys;
use entity::space_token;
use memspace_core::access::Permission;
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;
use memspace_core::{clock::now, validate};

pub async fn create(
    db: &Db,
    principal: &Principal,
    space_id: Uuid,
    permission: Permission,
    expires_at: Option<DateTime<Utc>>,
    name: Option<String>,
) -> AppResult<(space_token::Model, String)> {
    if !matches!(permission, Permission::View | Permission::Edit) {
        return Err(AppError::validation(
            "permission",
            "a space token gives VIEW or EDIT",
        ));
    }
    if expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(AppError::validation("expiresAt", "must be in the future"));
    }
    let name = name
        .map(|n| validate::text("name", &n, 1, 255))
        .transpose()?;
    let txn = db.begin_write().await?;
    let access = service::load_for(&txn, principal, space_id, Permission::Owner).await?;
    let key = keys::generate_with(keys::SPACE_TOKEN_PREFIX);
    let secret = key.secret.clone();
    let row = space_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        space_id: Set(space_id),
        name: Set(name),
        permission: Set(permission.as_str().to_string()),
        prefix: Set(key.prefix),
        token_hash: Set(key.hash),
        created_by: Set(principal.id),
        created_by_kind: Set(principal.kind.as_str().to_string()),
        expires_at: Set(expires_at),
        created_at: Set(now()),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        principal,
        Event {
            action: "space_token.create",
            resource_type: "space_token",
            resource_id: row.id,
            organization_id: access.space.organization_id,
        },
    )
    .await?;
    txn.commit().await?;
    Ok((row, secret))
}

/// Revokes a token: requests with it get 401 from now on. OWNER of its space only.
pub async fn revoke(db: &Db, principal: &Principal, id: Uuid) -> AppResult<Uuid> {
    let mut txn = db.begin_write().await?;
    let token = space_token::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("space token", id))?;
    let access = match service::load_for(&txn, principal, token.space_id, Permission::Owner).await {
        Err(AppError::NotFound { .. }) => return Err(AppError::not_found("space token", id)),
        other => other?,
    };
    if token.revoked_at.is_none() {
        let mut active: space_token::ActiveModel = token.into();
        active.revoked_at = Set(Some(now()));
        active.update(&txn).await?;
        audit::record(
            &txn,
            principal,
            Event {
                action: "space_token.revoke",
                resource_type: "space_token",
                resource_id: id,
                organization_id: access.space.organization_id,
            },
        )
        .await?;
    }
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(id)
}

/// The tokens of a space, newest first (the caller must hold OWNER; checked by the caller).
pub async fn list(db: &impl ConnectionTrait, space_id: Uuid) -> AppResult<Vec<space_token::Model>> {
    Ok(space_token::Entity::find()
        .filter(space_token::Column::SpaceId.eq(space_id))
        .order_by_desc(space_token::Column::CreatedAt)
        .all(db)
        .await?)
}
