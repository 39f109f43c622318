//! Writing spaces: create, update, delete, restore, purge; each one transaction, its events
//! published after commit.
use crate::db::Db;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, ModelTrait, PaginatorTrait,
    QueryFilter, Set,
};
use uuid::Uuid;

use super::input::{
    chunking, description, duplicate_name, duplicate_threshold, embedder_name, labels, name, tags,
    Chunking, NewSpace, SpacePatch, DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE,
};
use super::load::{cross_org, load, load_for, record, SpaceAccess};
use super::sharing::{self};
use entity::{agent, space, space_label, space_tag, user};
use memspace_core::access::Permission;
use memspace_core::clock::now;
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::{Principal, PrincipalKind};
use memspace_core::vocab::DEFAULT_THRESHOLD;

/// Resolves the owner of a new space: the caller, or (org admins only) a user or agent of the org.
pub(crate) async fn owner(
    db: &impl ConnectionTrait,
    principal: &Principal,
    owner_id: Option<Uuid>,
) -> AppResult<(Uuid, PrincipalKind)> {
    let Some(id) = owner_id.filter(|id| *id != principal.id) else {
        return Ok((principal.id, principal.kind));
    };
    if !principal.is_admin {
        return Err(AppError::forbidden(
            "only organization admins may create spaces for another owner",
        ));
    }
    let org = principal.organization_id;
    if user::Entity::find_by_id(id)
        .filter(user::Column::OrganizationId.eq(org))
        .count(db)
        .await?
        > 0
    {
        return Ok((id, PrincipalKind::User));
    }
    if agent::Entity::find_by_id(id)
        .filter(agent::Column::OrganizationId.eq(org))
        .count(db)
        .await?
        > 0
    {
        return Ok((id, PrincipalKind::Agent));
    }
    Err(AppError::validation(
        "ownerId",
        format!("no user or agent {id} in this organization"),
    ))
}

pub async fn create(
    db: &Db,
    embedders: &memspace_engine::registry::Registry,
    principal: &Principal,
    input: NewSpace,
) -> AppResult<SpaceAccess> {
    let name = name("name", &input.name)?;
    let description = description(input.description)?;
    let labels = labels("labels", input.labels)?;
    let tags = tags("tags", input.tags)?;
    let chunking = chunking(input.chunking.unwrap_or(Chunking {
        size: DEFAULT_CHUNK_SIZE,
        overlap: DEFAULT_CHUNK_OVERLAP,
    }))?;
    let embedder = embedder_name(embedders, input.embedder)?;
    let threshold = duplicate_threshold(input.duplicate_threshold.unwrap_or(DEFAULT_THRESHOLD))?;
    input.grants.check_lengths()?;
    if principal.token.is_some() {
        return Err(AppError::forbidden("a space token cannot create spaces"));
    }

    let txn = db.begin_write().await?;
    let (owner_id, owner_kind) = owner(&txn, principal, input.owner_id).await?;
    let grants =
        sharing::resolve(&txn, principal.organization_id, input.grants.specs(), true).await?;
    let workspace_id = input.workspace_id;
    if let Some(w) = workspace_id {
        crate::membership::check_space_creation(&txn, principal, w).await?;
    }
    let at = now();
    let model = space::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(principal.organization_id),
        owner_id: Set(owner_id),
        owner_kind: Set(owner_kind.as_str().to_string()),
        name: Set(name.clone()),
        description: Set(description),
        access_mode: Set(input.access_mode.as_str().to_string()),
        embedder: Set(embedder),
        chunk_size: Set(chunking.size),
        chunk_overlap: Set(chunking.overlap),
        agent_id: Set(None),
        workspace_id: Set(workspace_id),
        vector_version: Set(0),
        memory_count: Set(0),
        memory_bytes: Set(0),
        duplicate_policy: Set(input.duplicate_policy.as_str().to_string()),
        duplicate_threshold: Set(threshold),
        last_activity_at: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
        deleted_at: Set(None),
    }
    .insert(&txn)
    .await
    .map_err(AppError::unique(duplicate_name(&name)))?;
    replace_labels(&txn, model.id, &labels).await?;
    replace_tags(&txn, model.id, &tags).await?;
    sharing::upsert(&txn, model.id, &grants).await?;
    let access = load(&txn, principal, model.id).await?;
    txn.commit().await?;
    Ok(access)
}

async fn replace_labels(
    db: &impl ConnectionTrait,
    space_id: Uuid,
    labels: &[(String, String)],
) -> AppResult<()> {
    space_label::Entity::delete_many()
        .filter(space_label::Column::SpaceId.eq(space_id))
        .exec(db)
        .await?;
    if !labels.is_empty() {
        space_label::Entity::insert_many(labels.iter().map(|(k, v)| space_label::ActiveModel {
            space_id: Set(space_id),
            key: Set(k.clone()),
            value: Set(v.clone()),
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

async fn replace_tags(db: &impl ConnectionTrait, space_id: Uuid, tags: &[String]) -> AppResult<()> {
    space_tag::Entity::delete_many()
        .filter(space_tag::Column::SpaceId.eq(space_id))
        .exec(db)
        .await?;
    if !tags.is_empty() {
        space_tag::Entity::insert_many(tags.iter().map(|t| space_tag::ActiveModel {
            space_id: Set(space_id),
            tag: Set(t.clone()),
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

/// VALIDATION_ERROR for a patch that would change what a space keeps for life: its owner,
/// its embedder and its chunking (the stored vectors depend on them).
fn unchangeable(patch: &SpacePatch, current: &space::Model) -> AppResult<()> {
    if patch.owner_id.is_some_and(|o| o != current.owner_id) {
        return Err(AppError::validation(
            "ownerId",
            "the owner of a space cannot be changed",
        ));
    }
    if let Some(e) = &patch.embedder {
        if e.trim() != current.embedder {
            return Err(AppError::validation(
                "embedder",
                "the embedder of a space cannot be changed (its vectors depend on it)",
            ));
        }
    }
    if let Some(c) = patch.chunking {
        if c.size != current.chunk_size || c.overlap != current.chunk_overlap {
            return Err(AppError::validation(
                "chunking",
                "the chunking of a space cannot be changed",
            ));
        }
    }

    Ok(())
}

/// Replaces the space's labels when the set differs; true when it did.
async fn set_labels(
    db: &impl ConnectionTrait,
    id: Uuid,
    labels: &[(String, String)],
) -> AppResult<bool> {
    let mut old: Vec<(String, String)> = space_label::Entity::find()
        .filter(space_label::Column::SpaceId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|l| (l.key, l.value))
        .collect();
    let mut sorted = labels.to_vec();
    old.sort();
    sorted.sort();
    if old == sorted {
        return Ok(false);
    }
    replace_labels(db, id, labels).await?;
    Ok(true)
}

/// Replaces the space's tags when the set differs; true when it did.
async fn set_tags(db: &impl ConnectionTrait, id: Uuid, tags: &[String]) -> AppResult<bool> {
    let mut old: Vec<String> = space_tag::Entity::find()
        .filter(space_tag::Column::SpaceId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|t| t.tag)
        .collect();
    let mut sorted = tags.to_vec();
    old.sort();
    sorted.sort();
    if old == sorted {
        return Ok(false);
    }
    replace_tags(db, id, tags).await?;
    Ok(true)
}

pub async fn update(
    db: &Db,
    principal: &Principal,
    id: Uuid,
    mut patch: SpacePatch,
) -> AppResult<SpaceAccess> {
    let new_name = patch.name.take().map(|n| name("name", &n)).transpose()?;
    let new_description = match patch.description.take() {
        None => None,
        Some(d) => Some(description(d)?),
    };
    let new_labels = patch
        .labels
        .take()
        .map(|l| labels("labels", l))
        .transpose()?;
    let new_tags = patch.tags.take().map(|t| tags("tags", t)).transpose()?;
    let new_threshold = patch
        .duplicate_threshold
        .take()
        .map(duplicate_threshold)
        .transpose()?;
    patch.grants.check_lengths()?;

    let mut txn = db.begin_write().await?;
    let current = load_for(&txn, principal, id, Permission::Owner)
        .await?
        .space;
    unchangeable(&patch, &current)?;

    let mut changed = false;
    let mut access_changed = false;
    let mut active: space::ActiveModel = current.clone().into();
    if let Some(n) = new_name.filter(|n| *n != current.name) {
        active.name = Set(n);
        changed = true;
    }
    if let Some(d) = new_description.filter(|d| *d != current.description) {
        active.description = Set(d);
        changed = true;
    }
    if let Some(mode) = patch
        .access_mode
        .filter(|m| m.as_str() != current.access_mode)
    {
        active.access_mode = Set(mode.as_str().to_string());
        changed = true;
        access_changed = true;
    }
    if let Some(p) = patch
        .duplicate_policy
        .filter(|p| p.as_str() != current.duplicate_policy)
    {
        active.duplicate_policy = Set(p.as_str().to_string());
        changed = true;
    }
    if let Some(t) = new_threshold.filter(|t| *t != current.duplicate_threshold) {
        active.duplicate_threshold = Set(t);
        changed = true;
    }
    if let Some(labels) = new_labels {
        changed |= set_labels(&txn, id, &labels).await?;
    }
    if let Some(tags) = new_tags {
        changed |= set_tags(&txn, id, &tags).await?;
    }
    if patch.grants.is_given() {
        let slots = patch.grants.replaced_slots();
        let grants =
            sharing::resolve(&txn, current.organization_id, patch.grants.specs(), true).await?;
        sharing::replace_slots(&txn, id, slots, grants).await?;
        record(&txn, principal, &current, "space.share").await?;
        changed = true;
        access_changed = true;
    }
    let model = if changed {
        let display_name = match &active.name {
            sea_orm::ActiveValue::Set(n) | sea_orm::ActiveValue::Unchanged(n) => n.clone(),
            sea_orm::ActiveValue::NotSet => current.name.clone(),
        };
        active.updated_at = Set(now());
        active
            .update(&txn)
            .await
            .map_err(AppError::unique(duplicate_name(&display_name)))?
    } else {
        current
    };
    if cross_org(principal, &model) {
        record(&txn, principal, &model, "space.update").await?;
    }
    let access = load(&txn, principal, model.id).await?;
    if access_changed {
        txn.access_changed().await?;
    }
    txn.commit().await?;
    Ok(access)
}

/// Soft delete: the space is hidden from lists (unless asked for) and keeps its memories.
pub async fn delete(db: &Db, principal: &Principal, id: Uuid) -> AppResult<SpaceAccess> {
    let mut txn = db.begin_write().await?;
    let space = load_for(&txn, principal, id, Permission::Owner)
        .await?
        .space;
    if space.deleted_at.is_none() {
        let mut active: space::ActiveModel = space.clone().into();
        let at = now();
        active.deleted_at = Set(Some(at));
        active.updated_at = Set(at);
        active.update(&txn).await?;
        record(&txn, principal, &space, "space.delete").await?;
    }
    let access = load(&txn, principal, id).await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(access)
}

pub async fn restore(db: &Db, principal: &Principal, id: Uuid) -> AppResult<SpaceAccess> {
    let mut txn = db.begin_write().await?;
    let space = load_for(&txn, principal, id, Permission::Owner)
        .await?
        .space;
    if space.deleted_at.is_some() {
        let mut active: space::ActiveModel = space.clone().into();
        active.deleted_at = Set(None);
        active.updated_at = Set(now());
        active
            .update(&txn)
            .await
            .map_err(AppError::unique(duplicate_name(&space.name)))?;
        record(&txn, principal, &space, "space.restore").await?;
    }
    let access = load(&txn, principal, id).await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(access)
}

/// Permanent delete; labels, tags (and later memories, grants, tokens) go with it by cascade.
pub async fn purge(db: &Db, principal: &Principal, id: Uuid) -> AppResult<space::Model> {
    let mut txn = db.begin_write().await?;
    let space = load_for(&txn, principal, id, Permission::Owner)
        .await?
        .space;
    record(&txn, principal, &space, "space.purge").await?;
    space.clone().delete(&txn).await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(space)
}
