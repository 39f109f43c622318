//! GraphQL types and resolvers of workspaces.
use async_graphql::{ComplexObject, Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;

use crate::context::{loader_err, resource_id, Ctx};
use crate::directory::{load_organization, Organization, User};
use crate::page::{PageInfo, Window};
use crate::spaces::{Space, SpaceConnection, SpaceFilter, SpaceOrder};
use entity::{workspace, workspace_member};
use memspace_core::access::{self, WorkspaceRole};
use memspace_core::error::AppError;
use memspace_domain::workspaces::service::{
    self, DocumentUploadMethod, NewWorkspace, WorkspacePatch, WorkspaceType,
};
use memspace_domain::workspaces::stats::WorkspaceStats;

pub struct Workspace {
    pub model: workspace::Model,
    /// The caller's membership role as of this response (None for non-members, including org
    /// admins who are not members).
    pub viewer_role: Option<WorkspaceRole>,
}

impl Workspace {
    async fn stats(&self, ctx: &Context<'_>) -> Result<WorkspaceStats> {
        Ok(ctx
            .loaders()?
            .workspace_stats
            .load_one(self.model.id)
            .await
            .map_err(loader_err)?
            .unwrap_or_default())
    }
}

/// A team room: groups spaces of an organization and gives its members access to them by role.
#[Object]
impl Workspace {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }
    /// 1–100 characters, unique in the organization.
    async fn name(&self) -> &str {
        &self.model.name
    }
    /// Up to 2,000 characters.
    async fn description(&self) -> &str {
        &self.model.description
    }
    /// The kind of workspace.
    async fn workspace_type(&self) -> WorkspaceType {
        WorkspaceType::Custom
    }
    /// How documents get into the workspace.
    async fn document_upload_method(&self) -> DocumentUploadMethod {
        DocumentUploadMethod::parse(&self.model.document_upload_method)
    }
    /// The organization the workspace belongs to.
    async fn organization(&self, ctx: &Context<'_>) -> Result<Organization> {
        load_organization(ctx, self.model.organization_id).await
    }
    /// The caller's role in the workspace; null when not a member (org admins see it anyway).
    async fn viewer_role(&self) -> Option<WorkspaceRole> {
        self.viewer_role
    }
    /// Live spaces in the workspace.
    async fn space_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(self.stats(ctx).await?.spaces)
    }
    /// Live memories in the workspace's live spaces.
    async fn memory_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(self.stats(ctx).await?.memories)
    }
    /// Bytes of memory content in the workspace's live spaces.
    async fn used_storage(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(self.stats(ctx).await?.bytes)
    }
    /// Members and their roles, in the order they joined.
    #[allow(clippy::too_many_arguments)]
    async fn members(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size: default 50, clamped to 1–1000.")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(
            desc = "Backward paging: the last edges (default 50, clamped to 1–1000); not with `first`/`after`."
        )]
        last: Option<i32>,
        #[graphql(desc = "Cursor of the first edge of the next page (backward paging).")]
        before: Option<String>,
    ) -> Result<WorkspaceMemberConnection> {
        let window = Window {
            first,
            after,
            last,
            before,
        };
        let (page, condition) =
            service::members(&ctx.db().read, self.model.id, window.args()?).await?;
        let (edges, page_info) =
            page.into_edges(service::member_cursor, |cursor, m| WorkspaceMemberEdge {
                cursor,
                node: WorkspaceMember(m),
            });
        Ok(WorkspaceMemberConnection {
            page_info: page_info.into(),
            edges,
            condition,
        })
    }
    /// The workspace's spaces (that the caller can see), like `Query.spaces`.
    #[allow(clippy::too_many_arguments)]
    async fn spaces(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size: default 50, clamped to 1–1000.")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(
            desc = "Backward paging: the last edges (default 50, clamped to 1–1000); not with `first`/`after`."
        )]
        last: Option<i32>,
        #[graphql(desc = "Cursor of the first edge of the next page (backward paging).")]
        before: Option<String>,
        #[graphql(desc = "Only spaces matching this filter.")] filter: Option<SpaceFilter>,
        #[graphql(desc = "Sort order (default CREATED_AT DESC).")] order_by: Option<SpaceOrder>,
    ) -> Result<SpaceConnection> {
        let mut filter = filter.unwrap_or_default();
        filter.workspace_id = Some(ID(self.model.id.to_string()));
        let window = Window {
            first,
            after,
            last,
            before,
        };
        crate::spaces::list_spaces(ctx, window, Some(filter), order_by).await
    }
    /// When the workspace was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }
    /// When the workspace last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.model.updated_at
    }
}

pub struct WorkspaceMember(pub workspace_member::Model);

/// A user's membership in a workspace.
#[Object]
impl WorkspaceMember {
    /// `member:<workspace id>:<user id>`: stable for as long as the membership lasts.
    pub(crate) async fn id(&self) -> ID {
        ID(format!("member:{}:{}", self.0.workspace_id, self.0.user_id))
    }
    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        ctx.loaders()?
            .users
            .load_one(self.0.user_id)
            .await
            .map_err(loader_err)?
            .map(User)
            .ok_or_else(|| AppError::not_found("user", self.0.user_id).into())
    }
    /// What the membership gives on the workspace's spaces.
    async fn role(&self) -> Option<WorkspaceRole> {
        WorkspaceRole::parse(&self.0.role)
    }
    /// When the user joined.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A membership with its cursor.
#[derive(SimpleObject)]
pub struct WorkspaceMemberEdge {
    /// Opaque position: pass it as `after` (or `before`) for the neighbouring page.
    cursor: String,
    /// The membership.
    node: WorkspaceMember,
}

/// A page of a workspace's members.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct WorkspaceMemberConnection {
    /// The members of this page, with their cursors.
    edges: Vec<WorkspaceMemberEdge>,
    /// Where this page is in the whole list.
    page_info: PageInfo,
    #[graphql(skip)]
    condition: Condition,
}

#[ComplexObject]
impl WorkspaceMemberConnection {
    /// The edges' nodes, for clients that need no cursors per item.
    async fn nodes(&self) -> Vec<&WorkspaceMember> {
        self.edges.iter().map(|e| &e.node).collect()
    }
    /// Number of members of the workspace (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(service::member_count(&ctx.db().read, self.condition.clone()).await? as i64)
    }
}

/// A workspace with its cursor.
#[derive(SimpleObject)]
pub struct WorkspaceEdge {
    /// Opaque position: pass it as `after` (or `before`) for the neighbouring page.
    cursor: String,
    /// The workspace.
    node: Workspace,
}

/// A page of workspaces.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct WorkspaceConnection {
    /// The workspaces of this page, with their cursors.
    edges: Vec<WorkspaceEdge>,
    /// Where this page is in the whole list.
    page_info: PageInfo,
    #[graphql(skip)]
    condition: Condition,
}

#[ComplexObject]
impl WorkspaceConnection {
    /// The edges' nodes, for clients that need no cursors per item.
    async fn nodes(&self) -> Vec<&Workspace> {
        self.edges.iter().map(|e| &e.node).collect()
    }
    /// Workspaces matching the filter that the caller can see (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(service::count(&ctx.db().read, self.condition.clone()).await? as i64)
    }
}

/// Filters on workspaces; given fields must all match.
#[derive(InputObject, Default)]
pub struct WorkspaceFilter {
    /// Glob on the name: `*` any run, `?` one character; case-sensitive.
    name_glob: Option<String>,
}

/// A new workspace of the caller's organization.
#[derive(InputObject)]
pub struct CreateWorkspaceInput {
    /// 1–100 characters, unique in the organization.
    name: String,
    /// Up to 2,000 characters; default "".
    description: Option<String>,
    /// Default CUSTOM.
    #[graphql(default)]
    workspace_type: WorkspaceType,
    /// Default MANUAL.
    #[graphql(default)]
    document_upload_method: DocumentUploadMethod,
}

/// Changes to a workspace; an omitted field is unchanged.
#[derive(InputObject)]
pub struct UpdateWorkspaceInput {
    /// 1–100 characters, unique in the organization.
    name: Option<String>,
    /// Up to 2,000 characters.
    description: Option<String>,
    /// The kind of workspace.
    workspace_type: Option<WorkspaceType>,
    /// How documents get into the workspace.
    document_upload_method: Option<DocumentUploadMethod>,
}

#[derive(Default)]
pub struct WorkspaceQuery;

#[Object]
impl WorkspaceQuery {
    /// One workspace; NOT_FOUND unless the caller is a member or an org admin.
    async fn workspace(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace's id.")] id: ID,
    ) -> Result<Option<Workspace>> {
        let p = ctx.principal()?;
        let id = resource_id("workspace", &id)?;
        let (model, _) = service::load(&ctx.db().read, p, id).await?;
        Ok(Some(Workspace {
            viewer_role: access::workspace_role(p, model.id),
            model,
        }))
    }

    /// Workspaces the caller is a member of (org admins: all of the organization's).
    #[allow(clippy::too_many_arguments)]
    async fn workspaces(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size: default 50, clamped to 1–1000.")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(
            desc = "Backward paging: the last edges (default 50, clamped to 1–1000); not with `first`/`after`."
        )]
        last: Option<i32>,
        #[graphql(desc = "Cursor of the first edge of the next page (backward paging).")]
        before: Option<String>,
        #[graphql(desc = "Only workspaces matching this filter.")] filter: Option<WorkspaceFilter>,
    ) -> Result<WorkspaceConnection> {
        let p = ctx.principal()?;
        let glob = filter.and_then(|f| f.name_glob);
        let window = Window {
            first,
            after,
            last,
            before,
        };
        let (page, condition) =
            service::list(&ctx.db().read, p, window.args()?, glob.as_deref()).await?;
        let node = ctx.look_ahead().field("edges").field("node");
        if ["spaceCount", "memoryCount", "usedStorage"]
            .iter()
            .any(|f| node.field(f).exists())
        {
            let ids: Vec<uuid::Uuid> = page.items.iter().map(|(w, _)| w.id).collect();
            ctx.loaders()?
                .workspace_stats
                .load_many(ids)
                .await
                .map_err(loader_err)?;
        }
        let (edges, page_info) = page.into_edges(
            |(model, _)| service::cursor_of(model),
            |cursor, (model, _)| WorkspaceEdge {
                cursor,
                node: Workspace {
                    viewer_role: access::workspace_role(p, model.id),
                    model,
                },
            },
        );
        Ok(WorkspaceConnection {
            page_info: page_info.into(),
            edges,
            condition,
        })
    }
}

#[derive(Default)]
pub struct WorkspaceMutation;

#[Object]
impl WorkspaceMutation {
    /// Creates a workspace; the caller becomes its OWNER member.
    async fn create_workspace(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new workspace.")] input: CreateWorkspaceInput,
    ) -> Result<Workspace> {
        let p = ctx.principal()?;
        let model = service::create(
            ctx.db(),
            p,
            NewWorkspace {
                name: input.name,
                description: input.description,
                workspace_type: input.workspace_type,
                document_upload_method: input.document_upload_method,
            },
        )
        .await?;
        Ok(Workspace {
            model,
            viewer_role: Some(WorkspaceRole::Owner),
        })
    }

    /// Changes a workspace (its ADMIN or OWNER, or an org admin).
    async fn update_workspace(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace.")] id: ID,
        #[graphql(desc = "The changes; omitted fields stay.")] input: UpdateWorkspaceInput,
    ) -> Result<Workspace> {
        let p = ctx.principal()?;
        let id = resource_id("workspace", &id)?;
        let model = service::update(
            ctx.db(),
            p,
            id,
            WorkspacePatch {
                name: input.name,
                description: input.description,
                workspace_type: input.workspace_type,
                document_upload_method: input.document_upload_method,
            },
        )
        .await?;
        Ok(Workspace {
            viewer_role: access::workspace_role(p, id),
            model,
        })
    }

    /// Deletes a workspace (its OWNER or an org admin). A workspace with live spaces needs
    /// `force: true`, which soft-deletes those spaces in the same transaction.
    #[graphql(
        deprecation = "Use `deleteWorkspaceV2`: it answers with a payload with the deleted id."
    )]
    async fn delete_workspace(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace.")] id: ID,
        #[graphql(
            desc = "Also soft-delete the workspace's live spaces (otherwise refused while it has some).",
            default = false
        )]
        force: bool,
    ) -> Result<ID> {
        let p = ctx.principal()?;
        let id = resource_id("workspace", &id)?;
        Ok(ID(service::delete(ctx.db(), p, id, force)
            .await?
            .to_string()))
    }

    /// Adds a user of the organization to the workspace (ADMIN or more; granting OWNER needs
    /// OWNER).
    async fn add_workspace_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace.")] workspace_id: ID,
        #[graphql(desc = "A user of the workspace's organization.")] user_id: ID,
        #[graphql(desc = "The role to give.")] role: WorkspaceRole,
    ) -> Result<WorkspaceMember> {
        let p = ctx.principal()?;
        let ws = resource_id("workspace", &workspace_id)?;
        let user = crate::context::input_id("userId", &user_id)?;
        Ok(WorkspaceMember(
            service::add_member(ctx.db(), p, ws, user, role).await?,
        ))
    }

    /// Changes a member's role. The last OWNER cannot be demoted.
    async fn update_workspace_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace.")] workspace_id: ID,
        #[graphql(desc = "The member.")] user_id: ID,
        #[graphql(desc = "The new role.")] role: WorkspaceRole,
    ) -> Result<WorkspaceMember> {
        let p = ctx.principal()?;
        let ws = resource_id("workspace", &workspace_id)?;
        let user = resource_id("workspace member", &user_id)?;
        Ok(WorkspaceMember(
            service::update_member(ctx.db(), p, ws, user, role).await?,
        ))
    }

    /// Removes a member. The last OWNER cannot be removed. Returns the user id.
    #[graphql(
        deprecation = "Use `removeWorkspaceMemberV2`: it answers with the removed member's id and the workspace."
    )]
    async fn remove_workspace_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace.")] workspace_id: ID,
        #[graphql(desc = "The member.")] user_id: ID,
    ) -> Result<ID> {
        let p = ctx.principal()?;
        let ws = resource_id("workspace", &workspace_id)?;
        let user = resource_id("workspace member", &user_id)?;
        Ok(ID(service::remove_member(ctx.db(), p, ws, user)
            .await?
            .to_string()))
    }

    /// Moves a space into a workspace (OWNER on the space, ADMIN or more in the workspace), or
    /// out of any workspace with `workspaceId: null`.
    async fn move_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space.")] id: ID,
        #[graphql(desc = "The workspace to move it into; null takes it out of any.")] workspace_id: Option<ID>,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        let ws = workspace_id
            .map(|w| resource_id("workspace", &w))
            .transpose()?;
        Ok(service::move_space(ctx.db(), p, id, ws).await?.into())
    }
}
