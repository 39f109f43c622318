//! The workspace domain: CRUD, members with roles, moving spaces in and out.
use crate::db::Db;
use chrono::SecondsFormat;
use sea_orm::sea_query::{Condition, Expr, Order};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use crate::audit::{self as audit, Event};
pub use crate::membership::{check_space_creation, effective_role, load, load_for};
use crate::spaces::service::{self as spaces, SpaceAccess};
use entity::{space, user, workspace, workspace_member};
use memspace_core::access::{Permission, WorkspaceRole};
use memspace_core::error::{AppError, AppResult};
use memspace_core::page::{decode_time_cursor, fetch_limited, keyset, Cursor, Page, PageArgs};
use memspace_core::principal::{Principal, PrincipalKind};
pub use memspace_core::vocab::{DocumentUploadMethod, WorkspaceType, WORKSPACE_TYPE_CUSTOM};
use memspace_core::{clock::now, limits, validate};

#[derive(Clone, Debug, Default)]
pub struct NewWorkspace {
    pub name: String,
    pub description: Option<String>,
    pub workspace_type: WorkspaceType,
    pub document_upload_method: DocumentUploadMethod,
}

#[derive(Clone, Debug, Default)]
pub struct WorkspacePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub workspace_type: Option<WorkspaceType>,
    pub document_upload_method: Option<DocumentUploadMethod>,
}

fn name(v: &str) -> AppResult<String> {
    validate::name("name", v, limits::MAX_WORKSPACE_NAME_CHARS)
}

fn description(v: &str) -> AppResult<String> {
    validate::no_nul("description", v)?;
    let len = v.chars().count();
    if len > limits::MAX_WORKSPACE_DESCRIPTION_CHARS {
        return Err(AppError::validation(
            "description",
            format!(
                "must be at most {} characters (got {len})",
                limits::MAX_WORKSPACE_DESCRIPTION_CHARS
            ),
        ));
    }
    Ok(v.to_string())
}

fn duplicate(name: &str) -> String {
    format!("a workspace named {name:?} already exists in this organization")
}

pub async fn create(
    db: &Db,
    principal: &Principal,
    input: NewWorkspace,
) -> AppResult<workspace::Model> {
    if principal.kind != PrincipalKind::User {
        return Err(AppError::forbidden("only users can create workspaces"));
    }
    let name = name(&input.name)?;
    let description = description(input.description.as_deref().unwrap_or(""))?;
    let mut txn = db.begin_write().await?;
    let at = now();
    let ws = workspace::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(principal.organization_id),
        name: Set(name.clone()),
        description: Set(description),
        workspace_type: Set(WORKSPACE_TYPE_CUSTOM.to_string()),
        document_upload_method: Set(input.document_upload_method.as_str().to_string()),
        created_at: Set(at),
        updated_at: Set(at),
    }
    .insert(&txn)
    .await
    .map_err(AppError::unique(duplicate(&name)))?;
    let _ = input.workspace_type;
    workspace_member::Entity::insert(workspace_member::ActiveModel {
        workspace_id: Set(ws.id),
        user_id: Set(principal.id),
        role: Set(WorkspaceRole::Owner.as_str().to_string()),
        created_at: Set(at),
    })
    .exec_without_returning(&txn)
    .await?;
    // The creator's memberships changed: cached principals must be reloaded.
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(ws)
}

pub async fn update(
    db: &Db,
    principal: &Principal,
    id: Uuid,
    patch: WorkspacePatch,
) -> AppResult<workspace::Model> {
    let new_name = patch.name.as_deref().map(name).transpose()?;
    let new_description = patch.description.as_deref().map(description).transpose()?;
    let txn = db.begin_write().await?;
    let (ws, _) = load_for(&txn, principal, id, WorkspaceRole::Admin).await?;
    let mut active: workspace::ActiveModel = ws.clone().into();
    let mut changed = false;
    if let Some(n) = new_name.filter(|n| *n != ws.name) {
        active.name = Set(n);
        changed = true;
    }
    if let Some(d) = new_description.filter(|d| *d != ws.description) {
        active.description = Set(d);
        changed = true;
    }
    if let Some(m) = patch
        .document_upload_method
        .filter(|m| m.as_str() != ws.document_upload_method)
    {
        active.document_upload_method = Set(m.as_str().to_string());
        changed = true;
    }
    let ws = if changed {
        let display = new_name_or(&active, &ws.name);
        active.updated_at = Set(now());
        active
            .update(&txn)
            .await
            .map_err(AppError::unique(duplicate(&display)))?
    } else {
        ws
    };
    txn.commit().await?;
    Ok(ws)
}

fn new_name_or(active: &workspace::ActiveModel, current: &str) -> String {
    match &active.name {
        sea_orm::ActiveValue::Set(n) | sea_orm::ActiveValue::Unchanged(n) => n.clone(),
        sea_orm::ActiveValue::NotSet => current.to_string(),
    }
}

/// Deletes a workspace (its OWNER or an org admin). Live spaces block it unless `force`, which
/// soft-deletes them in the same transaction. Spaces leave the workspace either way.
pub async fn delete(db: &Db, principal: &Principal, id: Uuid, force: bool) -> AppResult<Uuid> {
    let mut txn = db.begin_write().await?;
    let (ws, _) = load_for(&txn, principal, id, WorkspaceRole::Owner).await?;
    let live = space::Entity::find()
        .filter(space::Column::WorkspaceId.eq(id))
        .filter(space::Column::DeletedAt.is_null())
        .count(&txn)
        .await?;
    if live > 0 && !force {
        return Err(AppError::validation(
            "force",
            format!(
                "the workspace holds {live} live spaces; move or delete them, or pass force: true"
            ),
        ));
    }
    let at = now();
    space::Entity::update_many()
        .col_expr(space::Column::DeletedAt, Expr::value(at))
        .col_expr(space::Column::UpdatedAt, Expr::value(at))
        .filter(space::Column::WorkspaceId.eq(id))
        .filter(space::Column::DeletedAt.is_null())
        .exec(&txn)
        .await?;
    space::Entity::update_many()
        .col_expr(
            space::Column::WorkspaceId,
            Expr::value(Option::<Uuid>::None),
        )
        .filter(space::Column::WorkspaceId.eq(id))
        .exec(&txn)
        .await?;
    workspace::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        principal,
        Event {
            action: "workspace.delete",
            resource_type: "workspace",
            resource_id: id,
            organization_id: ws.organization_id,
        },
    )
    .await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(id)
}

const CURSOR_KIND: &str = "workspace:created";

pub fn cursor_of(ws: &workspace::Model) -> String {
    Cursor::new(
        CURSOR_KIND,
        vec![
            ws.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            ws.id.to_string(),
        ],
    )
    .encode()
}

fn visible(principal: &Principal) -> Condition {
    if principal.token.is_some() {
        return Condition::all().add(Expr::val(1).eq(0));
    }
    let mut any = Condition::any()
        .add(workspace::Column::Id.is_in(principal.workspaces.iter().map(|(id, _)| *id)));
    if principal.is_admin {
        any = any.add(workspace::Column::OrganizationId.eq(principal.organization_id));
    }
    any
}

/// The workspaces the principal can see, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    principal: &Principal,
    args: PageArgs<'_>,
    name_glob: Option<&str>,
) -> AppResult<(Page<(workspace::Model, WorkspaceRole)>, Condition)> {
    let (limit, descending) = (args.limit, args.query_descending(false));
    let mut cond = Condition::all().add(visible(principal));
    if let Some(g) = name_glob {
        validate::no_nul("filter.nameGlob", g)?;
        limits::chars("filter.nameGlob", g, limits::MAX_GLOB_CHARS)?;
        cond = cond.add(memspace_core::glob::condition(
            db.get_database_backend(),
            workspace::Column::Name,
            &validate::nfc(g),
        ));
    }
    let mut select = workspace::Entity::find().filter(cond.clone());
    if let Some(raw) = args.cursor {
        let (at, id) = decode_time_cursor(args.cursor_field(), raw, CURSOR_KIND)?;
        let (time, id_col) = (workspace::Column::CreatedAt, workspace::Column::Id);
        select = select.filter(keyset(time, at, id_col, id, descending));
    }
    let order = if descending { Order::Desc } else { Order::Asc };
    let select = select
        .order_by(workspace::Column::CreatedAt, order.clone())
        .order_by(workspace::Column::Id, order);
    let rows: Vec<workspace::Model> = fetch_limited(select, limit + 1, db).await?;
    let page = Page::from_args(rows, &args);
    Ok((
        Page {
            items: page
                .items
                .into_iter()
                .filter_map(|ws| effective_role(principal, &ws).map(|r| (ws, r)))
                .collect(),
            has_next_page: page.has_next_page,
            has_previous_page: page.has_previous_page,
        },
        cond,
    ))
}

pub async fn count(db: &impl ConnectionTrait, cond: Condition) -> AppResult<u64> {
    Ok(workspace::Entity::find().filter(cond).count(db).await?)
}

/// Changing who holds OWNER needs OWNER (or org admin); ADMINs manage the other roles.
fn may_touch(
    actor: WorkspaceRole,
    target_old: Option<WorkspaceRole>,
    target_new: Option<WorkspaceRole>,
) -> AppResult<()> {
    let touches_owner =
        target_old == Some(WorkspaceRole::Owner) || target_new == Some(WorkspaceRole::Owner);
    if touches_owner && actor < WorkspaceRole::Owner {
        return Err(AppError::forbidden(
            "only a workspace OWNER (or an org admin) may grant or change the OWNER role",
        ));
    }
    Ok(())
}

/// Serialises membership changes of one workspace (PostgreSQL row lock; SQLite writes are
/// already serial), so two owners demoting each other at once cannot both succeed.
async fn lock_workspace(db: &impl ConnectionTrait, workspace_id: Uuid) -> AppResult<()> {
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        workspace::Entity::find_by_id(workspace_id)
            .lock_exclusive()
            .one(db)
            .await?;
    }
    Ok(())
}

async fn owner_count(db: &impl ConnectionTrait, workspace_id: Uuid) -> AppResult<u64> {
    Ok(workspace_member::Entity::find()
        .filter(workspace_member::Column::WorkspaceId.eq(workspace_id))
        .filter(workspace_member::Column::Role.eq(WorkspaceRole::Owner.as_str()))
        .count(db)
        .await?)
}

async fn member(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    user_id: Uuid,
) -> AppResult<Option<workspace_member::Model>> {
    Ok(
        workspace_member::Entity::find_by_id((workspace_id, user_id))
            .one(db)
            .await?,
    )
}

pub async fn add_member(
    db: &Db,
    principal: &Principal,
    workspace_id: Uuid,
    user_id: Uuid,
    role: WorkspaceRole,
) -> AppResult<workspace_member::Model> {
    let mut txn = db.begin_write().await?;
    let (ws, actor) = load_for(&txn, principal, workspace_id, WorkspaceRole::Admin).await?;
    may_touch(actor, None, Some(role))?;
    let found = user::Entity::find_by_id(user_id)
        .filter(user::Column::OrganizationId.eq(ws.organization_id))
        .count(&txn)
        .await?;
    if found == 0 {
        return Err(AppError::validation(
            "userId",
            format!("no user {user_id} in the workspace's organization"),
        ));
    }
    if member(&txn, workspace_id, user_id).await?.is_some() {
        return Err(AppError::AlreadyExists(format!(
            "user {user_id} is already a member of workspace {workspace_id}; use updateWorkspaceMember"
        )));
    }
    let row = workspace_member::ActiveModel {
        workspace_id: Set(workspace_id),
        user_id: Set(user_id),
        role: Set(role.as_str().to_string()),
        created_at: Set(now()),
    }
    .insert(&txn)
    .await
    .map_err(AppError::unique("this user is already a member"))?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(row)
}

pub async fn update_member(
    db: &Db,
    principal: &Principal,
    workspace_id: Uuid,
    user_id: Uuid,
    role: WorkspaceRole,
) -> AppResult<workspace_member::Model> {
    let mut txn = db.begin_write().await?;
    lock_workspace(&txn, workspace_id).await?;
    let (_, actor) = load_for(&txn, principal, workspace_id, WorkspaceRole::Admin).await?;
    let current = member(&txn, workspace_id, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("workspace member", user_id))?;
    let old = WorkspaceRole::parse(&current.role);
    may_touch(actor, old, Some(role))?;
    if old == Some(WorkspaceRole::Owner)
        && role != WorkspaceRole::Owner
        && owner_count(&txn, workspace_id).await? <= 1
    {
        return Err(AppError::validation(
            "role",
            "the last OWNER of a workspace cannot be demoted; make someone else OWNER first",
        ));
    }
    let mut active: workspace_member::ActiveModel = current.into();
    active.role = Set(role.as_str().to_string());
    let row = active.update(&txn).await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(row)
}

pub async fn remove_member(
    db: &Db,
    principal: &Principal,
    workspace_id: Uuid,
    user_id: Uuid,
) -> AppResult<Uuid> {
    let mut txn = db.begin_write().await?;
    lock_workspace(&txn, workspace_id).await?;
    let (_, actor) = load_for(&txn, principal, workspace_id, WorkspaceRole::Admin).await?;
    let current = member(&txn, workspace_id, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("workspace member", user_id))?;
    let old = WorkspaceRole::parse(&current.role);
    may_touch(actor, old, None)?;
    if old == Some(WorkspaceRole::Owner) && owner_count(&txn, workspace_id).await? <= 1 {
        return Err(AppError::validation(
            "userId",
            "the last OWNER of a workspace cannot be removed",
        ));
    }
    workspace_member::Entity::delete_by_id((workspace_id, user_id))
        .exec(&txn)
        .await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(user_id)
}

const MEMBER_CURSOR: &str = "member";

pub fn member_cursor(m: &workspace_member::Model) -> String {
    Cursor::new(
        MEMBER_CURSOR,
        vec![
            m.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            m.user_id.to_string(),
        ],
    )
    .encode()
}

/// Members of a workspace the caller can see, in the order they joined.
pub async fn members(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    args: PageArgs<'_>,
) -> AppResult<(Page<workspace_member::Model>, Condition)> {
    let (limit, descending) = (args.limit, args.query_descending(false));
    let cond = Condition::all().add(workspace_member::Column::WorkspaceId.eq(workspace_id));
    let mut select = workspace_member::Entity::find().filter(cond.clone());
    if let Some(raw) = args.cursor {
        let (at, id) = decode_time_cursor(args.cursor_field(), raw, MEMBER_CURSOR)?;
        let (time, id_col) = (
            workspace_member::Column::CreatedAt,
            workspace_member::Column::UserId,
        );
        select = select.filter(keyset(time, at, id_col, id, descending));
    }
    let order = if descending { Order::Desc } else { Order::Asc };
    let select = select
        .order_by(workspace_member::Column::CreatedAt, order.clone())
        .order_by(workspace_member::Column::UserId, order);
    let rows: Vec<workspace_member::Model> = fetch_limited(select, limit + 1, db).await?;
    Ok((Page::from_args(rows, &args), cond))
}

pub async fn member_count(db: &impl ConnectionTrait, cond: Condition) -> AppResult<u64> {
    Ok(workspace_member::Entity::find()
        .filter(cond)
        .count(db)
        .await?)
}

/// `moveSpace`: OWNER on the space, and ADMIN or more in the target workspace (null detaches).
pub async fn move_space(
    db: &Db,
    principal: &Principal,
    space_id: Uuid,
    workspace_id: Option<Uuid>,
) -> AppResult<SpaceAccess> {
    let mut txn = db.begin_write().await?;
    let current = spaces::load_for(&txn, principal, space_id, Permission::Owner).await?;
    if let Some(w) = workspace_id {
        let (ws, _) = load_for(&txn, principal, w, WorkspaceRole::Admin).await?;
        if ws.organization_id != current.space.organization_id {
            return Err(AppError::validation(
                "workspaceId",
                "a space can only move to a workspace of its own organization",
            ));
        }
    }
    if current.space.workspace_id != workspace_id {
        space::Entity::update_many()
            .col_expr(space::Column::WorkspaceId, Expr::value(workspace_id))
            .col_expr(space::Column::UpdatedAt, Expr::value(now()))
            .filter(space::Column::Id.eq(space_id))
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            principal,
            Event {
                action: "space.move",
                resource_type: "space",
                resource_id: space_id,
                organization_id: current.space.organization_id,
            },
        )
        .await?;
    }
    let access = spaces::load(&txn, principal, space_id).await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(access)
}
