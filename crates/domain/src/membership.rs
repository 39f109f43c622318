//! Workspace membership as the rest of the domain sees it: a principal's role in a workspace,
//! the workspace loaded with it, and whether a space may be created in it. Spaces use this
//! before the workspace use cases (which come after spaces) exist.
use sea_orm::{ConnectionTrait, EntityTrait};
use uuid::Uuid;

use entity::workspace;
use memspace_core::access::{self, WorkspaceRole};
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;

/// The principal's role in the workspace as seen now (org admins rank as OWNER).
pub fn effective_role(principal: &Principal, ws: &workspace::Model) -> Option<WorkspaceRole> {
    if principal.is_admin_of(ws.organization_id) {
        return Some(WorkspaceRole::Owner);
    }
    access::workspace_role(principal, ws.id)
}

/// A workspace visible to the principal (members and org admins); NOT_FOUND otherwise.
pub async fn load(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
) -> AppResult<(workspace::Model, WorkspaceRole)> {
    let ws = workspace::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("workspace", id))?;
    let role =
        effective_role(principal, &ws).ok_or_else(|| AppError::not_found("workspace", id))?;
    Ok((ws, role))
}

/// Loads a workspace and requires at least `min` (FORBIDDEN when visible but lower).
pub async fn load_for(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
    min: WorkspaceRole,
) -> AppResult<(workspace::Model, WorkspaceRole)> {
    let (ws, role) = load(db, principal, id).await?;
    if role < min {
        return Err(AppError::forbidden(format!(
            "this needs the {} role in workspace {id}; you are {}",
            min.as_str(),
            role.as_str()
        )));
    }
    Ok((ws, role))
}

/// Checks that a new space may be created in `workspace_id`: EDITOR or more (org admins pass).
pub async fn check_space_creation(
    db: &impl ConnectionTrait,
    principal: &Principal,
    workspace_id: Uuid,
) -> AppResult<()> {
    match load_for(db, principal, workspace_id, WorkspaceRole::Editor).await {
        Err(AppError::NotFound { .. }) => Err(AppError::validation(
            "workspaceId",
            format!("no workspace {workspace_id} that you are a member of"),
        )),
        other => other.map(|_| ()),
    }
}
