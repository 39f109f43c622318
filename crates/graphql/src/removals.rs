//! Deletions that answer with a payload instead of a bare `ID!` (issue 18): the removed id
//! (for Relay's `@deleteRecord` and Apollo's `cache.evict`) and the parent object whose counts
//! changed, read after the write, so a client's cache is right without a refetch. The older
//! mutations returning `ID!` stay, deprecated.
use async_graphql::{Context, Object, Result, SimpleObject, ID};
use uuid::Uuid;

use crate::context::{resource_id, Ctx};
use crate::directory::ApiKey;
use crate::nodes::Node;
use crate::spaces::{Space, SpaceToken};
use crate::workspaces::Workspace;
use memspace_domain::nodes as lookup;

/// What `deleteMemoryV2` removed, and its space with the counts after the deletion.
#[derive(SimpleObject)]
pub struct DeleteMemoryPayload {
    /// The deleted memory's id.
    deleted_memory_id: ID,
    /// The space it was in, as it is now (`memoryCount`, `usedStorage`); null if the caller
    /// can no longer see it.
    space: Option<Space>,
}

/// What `purgeSpaceV2` removed, and the workspace it was in.
#[derive(SimpleObject)]
pub struct PurgeSpacePayload {
    /// The purged space's id (its memories, grants and tokens went with it).
    purged_space_id: ID,
    /// The workspace the space belonged to, as it is now (`spaceCount`, `memoryCount`); null
    /// when it was in none or the caller cannot see it.
    workspace: Option<Workspace>,
}

/// The API key `revokeApiKeyV2` revoked.
#[derive(SimpleObject)]
pub struct RevokeApiKeyPayload {
    /// The key id.
    revoked_api_key_id: ID,
    /// The key, now with `revokedAt`; null if the caller may not read it.
    api_key: Option<ApiKey>,
}

/// The space token `revokeSpaceTokenV2` revoked, and its space.
#[derive(SimpleObject)]
pub struct RevokeSpaceTokenPayload {
    /// The token id.
    revoked_space_token_id: ID,
    /// The token, now with `revokedAt`.
    space_token: Option<SpaceToken>,
    /// Its space, as it is now.
    space: Option<Space>,
}

/// What `deleteWorkspaceV2` removed.
#[derive(SimpleObject)]
pub struct DeleteWorkspacePayload {
    /// The deleted workspace's id.
    deleted_workspace_id: ID,
}

/// The membership `removeWorkspaceMemberV2` ended, and the workspace.
#[derive(SimpleObject)]
pub struct RemoveWorkspaceMemberPayload {
    /// The removed `WorkspaceMember.id` (`member:<workspace id>:<user id>`).
    removed_member_id: ID,
    /// The user who was removed.
    user_id: ID,
    /// The workspace, as it is now; null if the caller removed itself and no longer sees it.
    workspace: Option<Workspace>,
}

/// The object behind `id` as the caller sees it now, if it is of the wanted kind.
async fn now_seen(ctx: &Context<'_>, id: Uuid) -> Result<Option<Node>> {
    let p = ctx.principal()?;
    let mut found = lookup::resolve(ctx.db(), p, "id", &[id.to_string()]).await?;
    Ok(found.pop().flatten().map(Node::from))
}

async fn space_now(ctx: &Context<'_>, id: Uuid) -> Result<Option<Space>> {
    Ok(match now_seen(ctx, id).await? {
        Some(Node::Space(s)) => Some(s),
        _ => None,
    })
}

async fn workspace_now(ctx: &Context<'_>, id: Option<Uuid>) -> Result<Option<Workspace>> {
    let Some(id) = id else { return Ok(None) };
    Ok(match now_seen(ctx, id).await? {
        Some(Node::Workspace(w)) => Some(w),
        _ => None,
    })
}

#[derive(Default)]
pub struct RemovalMutation;

#[Object]
impl RemovalMutation {
    /// Deletes a memory (EDIT permission); answers with its id and its space's new counts.
    async fn delete_memory_v2(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The memory.")] id: ID,
    ) -> Result<DeleteMemoryPayload> {
        let p = ctx.principal()?;
        let id = resource_id("memory", &id)?;
        let gone = memspace_domain::memories::service::delete(ctx.db(), ctx.index(), p, id).await?;
        Ok(DeleteMemoryPayload {
            deleted_memory_id: ID(gone.id.to_string()),
            space: space_now(ctx, gone.space_id).await?,
        })
    }

    /// Deletes a space and everything in it, permanently (OWNER permission); answers with its
    /// id and the workspace it was in.
    async fn purge_space_v2(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space.")] id: ID,
    ) -> Result<PurgeSpacePayload> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        let gone = memspace_domain::spaces::service::purge(ctx.db(), p, id).await?;
        ctx.index().forget_space(gone.id);
        Ok(PurgeSpacePayload {
            purged_space_id: ID(gone.id.to_string()),
            workspace: workspace_now(ctx, gone.workspace_id).await?,
        })
    }

    /// Revokes an API key: requests with it are refused from now on.
    async fn revoke_api_key_v2(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The API key.")] id: ID,
    ) -> Result<RevokeApiKeyPayload> {
        let p = ctx.principal()?;
        let id = resource_id("API key", &id)?;
        let id = memspace_domain::directory::revoke_api_key(ctx.db(), p, id).await?;
        let api_key = match now_seen(ctx, id).await? {
            Some(Node::ApiKey(k)) => Some(k),
            _ => None,
        };
        Ok(RevokeApiKeyPayload {
            revoked_api_key_id: ID(id.to_string()),
            api_key,
        })
    }

    /// Revokes a space token (OWNER permission on its space).
    async fn revoke_space_token_v2(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space token.")] id: ID,
    ) -> Result<RevokeSpaceTokenPayload> {
        let p = ctx.principal()?;
        let id = resource_id("space token", &id)?;
        let id = memspace_domain::spaces::tokens::revoke(ctx.db(), p, id).await?;
        let token = match now_seen(ctx, id).await? {
            Some(Node::SpaceToken(t)) => Some(t),
            _ => None,
        };
        let space = match &token {
            Some(t) => space_now(ctx, t.0.space_id).await?,
            None => None,
        };
        Ok(RevokeSpaceTokenPayload {
            revoked_space_token_id: ID(id.to_string()),
            space_token: token,
            space,
        })
    }

    /// Deletes a workspace (its OWNER or an org admin). A workspace with live spaces needs
    /// `force: true`, which soft-deletes those spaces in the same transaction.
    async fn delete_workspace_v2(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace.")] id: ID,
        #[graphql(
            desc = "Also soft-delete the workspace's live spaces (otherwise refused while it has some).",
            default = false
        )]
        force: bool,
    ) -> Result<DeleteWorkspacePayload> {
        let p = ctx.principal()?;
        let id = resource_id("workspace", &id)?;
        let id = memspace_domain::workspaces::service::delete(ctx.db(), p, id, force).await?;
        Ok(DeleteWorkspacePayload {
            deleted_workspace_id: ID(id.to_string()),
        })
    }

    /// Removes a member (ADMIN or more). The last OWNER cannot be removed.
    async fn remove_workspace_member_v2(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace.")] workspace_id: ID,
        #[graphql(desc = "The member.")] user_id: ID,
    ) -> Result<RemoveWorkspaceMemberPayload> {
        let p = ctx.principal()?;
        let ws = resource_id("workspace", &workspace_id)?;
        let user = resource_id("workspace member", &user_id)?;
        let user =
            memspace_domain::workspaces::service::remove_member(ctx.db(), p, ws, user).await?;
        Ok(RemoveWorkspaceMemberPayload {
            removed_member_id: ID(format!("member:{ws}:{user}")),
            user_id: ID(user.to_string()),
            workspace: workspace_now(ctx, Some(ws)).await?,
        })
    }
}
