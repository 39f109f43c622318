//! The space domain: validation, access checks (through `access.rs`), transactions.
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Condition, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    ModelTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use uuid::Uuid;

use super::sharing::{self, GrantLists};
use super::stats::{expired_columns, MemoryStats};
use crate::audit::{self as audit, Event};
use crate::db::Db;
use entity::{agent, space, space_grant, space_label, space_tag, user};
use memspace_core::access::{self, Permission};
use memspace_core::error::{AppError, AppResult};
use memspace_core::page::{fetch_limited, page_size, Cursor, Page};
use memspace_core::principal::{Principal, PrincipalKind};
use memspace_core::vocab::AccessMode;
use memspace_core::vocab::{DuplicatePolicy, DEFAULT_THRESHOLD};
use memspace_core::{clock::now, validate};

pub const MAX_LABELS: usize = 64;
pub const MAX_TAGS: usize = 50;
pub const DEFAULT_CHUNK_SIZE: i32 = 800;
pub const DEFAULT_CHUNK_OVERLAP: i32 = 100;
pub const MIN_CHUNK_SIZE: i32 = 50;
pub const MAX_CHUNK_SIZE: i32 = 8000;

/// How memories of a space are cut into chunks before embedding (sizes in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    pub size: i32,
    pub overlap: i32,
}

#[derive(Clone, Debug, Default)]
pub struct NewSpace {
    pub name: String,
    pub description: Option<String>,
    pub labels: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub access_mode: AccessMode,
    pub owner_id: Option<Uuid>,
    pub embedder: Option<String>,
    pub chunking: Option<Chunking>,
    pub workspace_id: Option<Uuid>,
    pub duplicate_policy: DuplicatePolicy,
    pub duplicate_threshold: Option<f64>,
    pub grants: GrantLists,
}

/// A space with its grants and the caller's permission on it.
#[derive(Clone, Debug)]
pub struct SpaceAccess {
    pub space: space::Model,
    pub grants: Vec<space_grant::Model>,
    pub permission: Permission,
    /// The space's memory stats, when the statement that loaded it read them too.
    pub stats: Option<MemoryStats>,
}

/// A change to a space; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct SpacePatch {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub labels: Option<Vec<(String, String)>>,
    pub tags: Option<Vec<String>>,
    pub access_mode: Option<AccessMode>,
    /// Immutable: accepted only when equal to the current value.
    pub owner_id: Option<Uuid>,
    pub embedder: Option<String>,
    pub chunking: Option<Chunking>,
    pub duplicate_policy: Option<DuplicatePolicy>,
    pub duplicate_threshold: Option<f64>,
    /// When any list is given, the space's grants become exactly the ones given.
    pub grants: GrantLists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OrderField {
    #[default]
    CreatedAt,
    Name,
}

#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub name_glob: Option<String>,
    pub owner_id: Option<Uuid>,
    pub labels: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub tags_match_all: bool,
    pub include_deleted: bool,
    pub workspace_id: Option<Uuid>,
}

#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub filter: ListFilter,
    pub order: OrderField,
    pub descending: bool,
    /// Load each space's grants (needed for the caller's permission and the grant list; a
    /// page that asks for neither skips the query).
    pub with_grants: bool,
    /// Read each space's memory count in the list's own statement...
    pub with_count: bool,
    /// ...and the bytes of its memories.
    pub with_bytes: bool,
}

/// A page of spaces plus the condition that selected them (for `totalCount`).
pub struct SpacePage {
    pub page: Page<SpaceAccess>,
    pub condition: Condition,
}

fn name(field: &str, value: &str) -> AppResult<String> {
    validate::text(field, value, 1, 255)
}

fn description(value: Option<String>) -> AppResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(d) => {
            validate::no_nul("description", &d)?;
            let len = d.chars().count();
            if len > 500 {
                return Err(AppError::validation(
                    "description",
                    format!("must be at most 500 characters (got {len})"),
                ));
            }
            Ok(Some(d))
        }
    }
}

fn labels(field: &str, labels: Vec<(String, String)>) -> AppResult<Vec<(String, String)>> {
    if labels.len() > MAX_LABELS {
        return Err(AppError::validation(
            field,
            format!("at most {MAX_LABELS} labels (got {})", labels.len()),
        ));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(labels.len());
    for (i, (k, v)) in labels.into_iter().enumerate() {
        let key = validate::text(&format!("{field}[{i}].key"), &k, 1, 63)?;
        let value = validate::text(&format!("{field}[{i}].value"), &v, 0, 255)?;
        if out.iter().any(|(existing, _)| *existing == key) {
            return Err(AppError::validation(
                format!("{field}[{i}].key"),
                format!("duplicate label key {key:?}"),
            ));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn tags(field: &str, tags: Vec<String>) -> AppResult<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(AppError::validation(
            field,
            format!("at most {MAX_TAGS} tags (got {})", tags.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.into_iter().enumerate() {
        let tag = validate::text(&format!("{field}[{i}]"), &t, 1, 64)?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

fn chunking(c: Chunking) -> AppResult<Chunking> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&c.size) {
        return Err(AppError::validation(
            "chunking.chunkSize",
            format!("must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"),
        ));
    }
    if c.overlap < 0 || c.overlap >= c.size {
        return Err(AppError::validation(
            "chunking.chunkOverlap",
            "must be at least 0 and smaller than chunkSize",
        ));
    }
    Ok(c)
}

fn duplicate_threshold(t: f64) -> AppResult<f64> {
    if !(0.5..=1.0).contains(&t) {
        return Err(AppError::validation(
            "duplicateThreshold",
            "must be between 0.5 and 1.0",
        ));
    }
    Ok(t)
}

fn embedder_name(
    registry: &memspace_engine::registry::Registry,
    name: Option<String>,
) -> AppResult<String> {
    let Some(name) = name.map(|n| n.trim().to_string()) else {
        return Ok(registry.default_name().to_string());
    };
    if let Some(e) = registry.get(&name) {
        return Ok(e.name().to_string());
    }
    let available = registry.names().join(", ");
    Err(AppError::validation(
        "embedder",
        match registry.unavailable(&name) {
            Some(u) => format!(
                "embedder {name:?} is not available here ({}); available: {available}",
                u.reason
            ),
            None => format!("unknown embedder {name:?}; available: {available}"),
        },
    ))
}

/// Resolves the owner of a new space: the caller, or (org admins only) a user or agent of the org.
async fn owner(
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

fn duplicate_name(name: &str) -> String {
    format!("a space named {name:?} already exists for this owner")
}

pub async fn create<C>(
    db: &C,
    embedders: &memspace_engine::registry::Registry,
    principal: &Principal,
    input: NewSpace,
) -> AppResult<SpaceAccess>
where
    C: ConnectionTrait + TransactionTrait,
{
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
    if principal.token.is_some() {
        return Err(AppError::forbidden("a space token cannot create spaces"));
    }

    let txn = crate::db::begin(db).await?;
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

async fn record(
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

pub async fn update<C>(
    db: &C,
    bus: &crate::events::Bus,
    principal: &Principal,
    id: Uuid,
    patch: SpacePatch,
) -> AppResult<SpaceAccess>
where
    C: ConnectionTrait + TransactionTrait,
{
    let new_name = patch.name.map(|n| name("name", &n)).transpose()?;
    let new_description = match patch.description {
        None => None,
        Some(d) => Some(description(d)?),
    };
    let new_labels = patch.labels.map(|l| labels("labels", l)).transpose()?;
    let new_tags = patch.tags.map(|t| tags("tags", t)).transpose()?;
    let new_threshold = patch
        .duplicate_threshold
        .map(duplicate_threshold)
        .transpose()?;

    let txn = crate::db::begin(db).await?;
    let current = load_for(&txn, principal, id, Permission::Owner)
        .await?
        .space;
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
        let mut old: Vec<(String, String)> = space_label::Entity::find()
            .filter(space_label::Column::SpaceId.eq(id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|l| (l.key, l.value))
            .collect();
        let mut sorted = labels.clone();
        old.sort();
        sorted.sort();
        if old != sorted {
            replace_labels(&txn, id, &labels).await?;
            changed = true;
        }
    }
    if let Some(tags) = new_tags {
        let mut old: Vec<String> = space_tag::Entity::find()
            .filter(space_tag::Column::SpaceId.eq(id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|t| t.tag)
            .collect();
        let mut sorted = tags.clone();
        old.sort();
        sorted.sort();
        if old != sorted {
            replace_tags(&txn, id, &tags).await?;
            changed = true;
        }
    }
    if patch.grants.is_given() {
        let grants =
            sharing::resolve(&txn, current.organization_id, patch.grants.specs(), true).await?;
        sharing::clear(&txn, id).await?;
        sharing::upsert(&txn, id, &grants).await?;
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
    let events = if access_changed {
        bus.access_in(&txn).await?
    } else {
        Vec::new()
    };
    txn.commit().await?;
    bus.committed(events);
    Ok(access)
}

fn cross_org(principal: &Principal, space: &space::Model) -> bool {
    principal.organization_id != space.organization_id
}

/// Soft delete: the space is hidden from lists (unless asked for) and keeps its memories.
pub async fn delete<C>(
    db: &C,
    bus: &crate::events::Bus,
    principal: &Principal,
    id: Uuid,
) -> AppResult<SpaceAccess>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = crate::db::begin(db).await?;
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
    let events = bus.access_in(&txn).await?;
    txn.commit().await?;
    bus.committed(events);
    Ok(access)
}

pub async fn restore<C>(
    db: &C,
    bus: &crate::events::Bus,
    principal: &Principal,
    id: Uuid,
) -> AppResult<SpaceAccess>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = crate::db::begin(db).await?;
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
    let events = bus.access_in(&txn).await?;
    txn.commit().await?;
    bus.committed(events);
    Ok(access)
}

/// Permanent delete; labels, tags (and later memories, grants, tokens) go with it by cascade.
pub async fn purge<C>(
    db: &C,
    bus: &crate::events::Bus,
    principal: &Principal,
    id: Uuid,
) -> AppResult<Uuid>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = crate::db::begin(db).await?;
    let space = load_for(&txn, principal, id, Permission::Owner)
        .await?
        .space;
    record(&txn, principal, &space, "space.purge").await?;
    space.delete(&txn).await?;
    let events = bus.access_in(&txn).await?;
    txn.commit().await?;
    bus.committed(events);
    Ok(id)
}

fn filter_condition(
    backend: DatabaseBackend,
    principal: &Principal,
    filter: &ListFilter,
) -> AppResult<Condition> {
    let mut cond = Condition::all().add(access::visible_spaces(principal));
    if !filter.include_deleted {
        cond = cond.add(space::Column::DeletedAt.is_null());
    }
    if let Some(glob) = &filter.name_glob {
        validate::no_nul("filter.name", glob)?;
        if glob.chars().count() > 255 {
            return Err(AppError::validation(
                "filter.name",
                "must be at most 255 characters",
            ));
        }
        cond = cond.add(memspace_core::glob::condition(
            backend,
            space::Column::Name,
            glob,
        ));
    }
    if let Some(w) = filter.workspace_id {
        cond = cond.add(space::Column::WorkspaceId.eq(w));
    }
    if let Some(owner) = filter.owner_id {
        if owner != principal.id && !principal.is_admin {
            return Err(AppError::forbidden(
                "only organization admins may list the spaces of another owner",
            ));
        }
        cond = cond.add(space::Column::OwnerId.eq(owner));
    }
    let wanted_labels = labels("filter.labels", filter.labels.clone())?;
    for (k, v) in wanted_labels {
        cond = cond.add(
            space::Column::Id.in_subquery(
                Query::select()
                    .column(space_label::Column::SpaceId)
                    .from(space_label::Entity)
                    .and_where(space_label::Column::Key.eq(k))
                    .and_where(space_label::Column::Value.eq(v))
                    .to_owned(),
            ),
        );
    }
    let wanted_tags = tags("filter.tags", filter.tags.clone())?;
    if !wanted_tags.is_empty() {
        if filter.tags_match_all {
            for t in wanted_tags {
                cond = cond.add(
                    space::Column::Id.in_subquery(
                        Query::select()
                            .column(space_tag::Column::SpaceId)
                            .from(space_tag::Entity)
                            .and_where(space_tag::Column::Tag.eq(t))
                            .to_owned(),
                    ),
                );
            }
        } else {
            cond = cond.add(
                space::Column::Id.in_subquery(
                    Query::select()
                        .column(space_tag::Column::SpaceId)
                        .from(space_tag::Entity)
                        .and_where(space_tag::Column::Tag.is_in(wanted_tags))
                        .to_owned(),
                ),
            );
        }
    }
    Ok(cond)
}

const CURSOR_CREATED: &str = "space:created";
const CURSOR_NAME: &str = "space:name";

fn time_key(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The cursor of `space` in the given order.
pub fn cursor_of(space: &space::Model, order: OrderField) -> String {
    match order {
        OrderField::CreatedAt => Cursor::new(
            CURSOR_CREATED,
            vec![time_key(&space.created_at), space.id.to_string()],
        ),
        OrderField::Name => {
            Cursor::new(CURSOR_NAME, vec![space.name.clone(), space.id.to_string()])
        }
    }
    .encode()
}

/// Rows strictly after the cursor in the list's order (keyset pagination on (sort key, id)).
fn after_condition(order: OrderField, descending: bool, raw: &str) -> AppResult<Condition> {
    let bad = || AppError::invalid_argument("after", "malformed or foreign cursor");
    let (kind, col) = match order {
        OrderField::CreatedAt => (CURSOR_CREATED, space::Column::CreatedAt),
        OrderField::Name => (CURSOR_NAME, space::Column::Name),
    };
    let c = Cursor::decode("after", raw, kind, 2)?;
    let id = Uuid::parse_str(&c.values[1]).map_err(|_| bad())?;
    let value: sea_orm::Value = match order {
        OrderField::CreatedAt => DateTime::parse_from_rfc3339(&c.values[0])
            .map_err(|_| bad())?
            .with_timezone(&Utc)
            .into(),
        OrderField::Name => c.values[0].clone().into(),
    };
    Ok(keyset(col, value, id, descending))
}

fn keyset(col: space::Column, value: sea_orm::Value, id: Uuid, descending: bool) -> Condition {
    if descending {
        Condition::any().add(col.lt(value.clone())).add(
            Condition::all()
                .add(col.eq(value))
                .add(space::Column::Id.lt(id)),
        )
    } else {
        Condition::any().add(col.gt(value.clone())).add(
            Condition::all()
                .add(col.eq(value))
                .add(space::Column::Id.gt(id)),
        )
    }
}

/// `spaces`: a page of the spaces the principal can see. Cross-tenant appearances are audited.
pub async fn list(db: &Db, principal: &Principal, query: ListQuery) -> AppResult<SpacePage> {
    let limit = page_size(query.first);
    let condition = filter_condition(db.read.get_database_backend(), principal, &query.filter)?;
    let mut select = space::Entity::find().filter(condition.clone());
    if let Some(after) = &query.after {
        select = select.filter(after_condition(query.order, query.descending, after)?);
    }
    let sort_col = match query.order {
        OrderField::CreatedAt => space::Column::CreatedAt,
        OrderField::Name => space::Column::Name,
    };
    select = if query.descending {
        select
            .order_by_desc(sort_col)
            .order_by_desc(space::Column::Id)
    } else {
        select
            .order_by_asc(sort_col)
            .order_by_asc(space::Column::Id)
    };
    let rows: Vec<(space::Model, Option<MemoryStats>)> = if query.with_count || query.with_bytes {
        let backend = db.read.get_database_backend();
        for (expr, alias) in expired_columns(backend, query.with_bytes) {
            select = select.expr_as(expr, alias);
        }
        let rows: Vec<SpaceStatsRow> = fetch_limited(select, limit + 1, &db.read).await?;
        rows.into_iter()
            .map(|SpaceStatsRow(space, stats)| (space, Some(stats)))
            .collect()
    } else {
        let rows: Vec<SpaceRow> = fetch_limited(select, limit + 1, &db.read).await?;
        rows.into_iter()
            .map(|SpaceRow(space)| (space, None))
            .collect()
    };
    let page = Page::from_overfetch(rows, limit, query.after.is_some());
    let ids: Vec<Uuid> = page.items.iter().map(|(s, _)| s.id).collect();
    let mut grants: std::collections::HashMap<Uuid, Vec<space_grant::Model>> =
        std::collections::HashMap::new();
    if query.with_grants && !ids.is_empty() {
        for g in space_grant::Entity::find()
            .filter(space_grant::Column::SpaceId.is_in(ids))
            .order_by_asc(space_grant::Column::CreatedAt)
            .all(&db.read)
            .await?
        {
            grants.entry(g.space_id).or_default().push(g);
        }
    }
    audit::cross_tenant(
        &db.write,
        principal,
        "space.list",
        page.items.iter().map(|(s, _)| s),
    )
    .await?;
    let items = page
        .items
        .into_iter()
        .map(|(space, stats)| {
            let mine = grants.remove(&space.id).unwrap_or_default();
            let permission = access::permission(principal, &space, &mine);
            SpaceAccess {
                space,
                grants: mine,
                permission,
                stats,
            }
        })
        .collect();
    Ok(SpacePage {
        page: Page {
            items,
            has_next_page: page.has_next_page,
            has_previous_page: page.has_previous_page,
        },
        condition,
    })
}

/// A space row of a list, decoded by column position: `Entity::find()` selects the columns in
/// `space::Column` order, which is the order of `space::Model`'s fields.
///
/// The derived decoder looks every column up by a name it formats for each row, and sea-orm
/// formats an error message for every NULL it meets; on PostgreSQL this reads the row through
/// sqlx directly instead. Decoding a page of 51 rows of 21 columns was ~20% of the server's
/// CPU for the spaces query.
struct SpaceRow(space::Model);

/// The number of columns [`SpaceRow`] reads (a test checks it against `space::Column`).
const SPACE_COLUMNS: usize = 21;

/// Column `index` of a PostgreSQL row.
fn pg_column<'r, T>(
    row: &'r sea_orm::sqlx::postgres::PgRow,
    index: usize,
) -> Result<T, sea_orm::DbErr>
where
    T: sea_orm::sqlx::Decode<'r, sea_orm::sqlx::Postgres>
        + sea_orm::sqlx::Type<sea_orm::sqlx::Postgres>,
{
    sea_orm::sqlx::Row::try_get(row, index)
        .map_err(|e| sea_orm::DbErr::Type(format!("spaces column {index}: {e}")))
}

/// Column `index` of a row of any backend.
fn any_column<T: sea_orm::TryGetable>(
    row: &sea_orm::QueryResult,
    index: usize,
) -> Result<T, sea_orm::DbErr> {
    row.try_get_by_index(index)
}

/// `space::Model` from the first [`SPACE_COLUMNS`] columns of `$row`, each read by `$get`.
macro_rules! space_model {
    ($get:ident, $row:expr) => {
        space::Model {
            id: $get($row, 0)?,
            organization_id: $get($row, 1)?,
            owner_id: $get($row, 2)?,
            owner_kind: $get($row, 3)?,
            name: $get($row, 4)?,
            description: $get($row, 5)?,
            access_mode: $get($row, 6)?,
            embedder: $get($row, 7)?,
            chunk_size: $get($row, 8)?,
            chunk_overlap: $get($row, 9)?,
            agent_id: $get($row, 10)?,
            workspace_id: $get($row, 11)?,
            vector_version: $get($row, 12)?,
            memory_count: $get($row, 13)?,
            memory_bytes: $get($row, 14)?,
            duplicate_policy: $get($row, 15)?,
            duplicate_threshold: $get($row, 16)?,
            last_activity_at: $get($row, 17)?,
            created_at: $get($row, 18)?,
            updated_at: $get($row, 19)?,
            deleted_at: $get($row, 20)?,
        }
    };
}

impl FromQueryResult for SpaceRow {
    fn from_query_result(row: &sea_orm::QueryResult, _pre: &str) -> Result<Self, sea_orm::DbErr> {
        Ok(SpaceRow(match row.try_as_pg_row() {
            Some(pg) => space_model!(pg_column, pg),
            None => space_model!(any_column, row),
        }))
    }
}

/// A [`SpaceRow`] followed by the [`expired_columns`]: the space and its memory stats.
struct SpaceStatsRow(space::Model, MemoryStats);

impl FromQueryResult for SpaceStatsRow {
    fn from_query_result(row: &sea_orm::QueryResult, pre: &str) -> Result<Self, sea_orm::DbErr> {
        let SpaceRow(space) = SpaceRow::from_query_result(row, pre)?;
        let (expired, expired_bytes) = match row.try_as_pg_row() {
            Some(pg) => (
                pg_column(pg, SPACE_COLUMNS)?,
                pg_column(pg, SPACE_COLUMNS + 1)?,
            ),
            None => (
                any_column(row, SPACE_COLUMNS)?,
                any_column(row, SPACE_COLUMNS + 1)?,
            ),
        };
        let stats = MemoryStats::from_counters(
            space.id,
            space.memory_count,
            space.memory_bytes,
            expired,
            expired_bytes,
        );
        Ok(SpaceStatsRow(space, stats))
    }
}

pub async fn count(db: &impl ConnectionTrait, condition: Condition) -> AppResult<u64> {
    Ok(space::Entity::find().filter(condition).count(db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SpaceRow` reads columns by position: the entity's columns must be these, in this
    /// order (the order of the `space_model!` fields).
    #[test]
    fn space_rows_read_every_column_of_the_entity_in_order() {
        use sea_orm::{IdenStatic, Iterable};
        let columns: Vec<String> = space::Column::iter()
            .map(|c| c.as_str().to_string())
            .collect();
        assert_eq!(
            columns,
            [
                "id",
                "organization_id",
                "owner_id",
                "owner_kind",
                "name",
                "description",
                "access_mode",
                "embedder",
                "chunk_size",
                "chunk_overlap",
                "agent_id",
                "workspace_id",
                "vector_version",
                "memory_count",
                "memory_bytes",
                "duplicate_policy",
                "duplicate_threshold",
                "last_activity_at",
                "created_at",
                "updated_at",
                "deleted_at",
            ],
            "space::Model changed: update space_model! to its fields, in order"
        );
        assert_eq!(columns.len(), SPACE_COLUMNS);
    }

    #[test]
    fn chunking_overlap_must_be_below_size() {
        assert!(chunking(Chunking {
            size: 800,
            overlap: 100
        })
        .is_ok());
        assert!(chunking(Chunking {
            size: 800,
            overlap: 800
        })
        .is_err());
        assert!(chunking(Chunking {
            size: 10,
            overlap: 0
        })
        .is_err());
        assert!(chunking(Chunking {
            size: 800,
            overlap: -1
        })
        .is_err());
    }

    #[test]
    fn labels_reject_duplicates_and_bad_keys() {
        let ok = labels("labels", vec![("team".into(), "ml".into())]).unwrap();
        assert_eq!(ok, vec![("team".to_string(), "ml".to_string())]);
        let dup = labels(
            "labels",
            vec![("a".into(), "1".into()), ("a".into(), "2".into())],
        );
        assert!(dup.is_err());
        assert!(labels("labels", vec![("".into(), "x".into())]).is_err());
        assert!(labels("labels", vec![("k".repeat(64), "x".into())]).is_err());
    }

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        assert_eq!(
            tags("tags", vec![" a ".into(), "a".into(), "b".into()]).unwrap(),
            vec!["a", "b"]
        );
        assert!(tags("tags", vec!["x".repeat(65)]).is_err());
        assert!(tags("tags", (0..51).map(|i| i.to_string()).collect()).is_err());
    }
}
