//! GraphQL types and resolvers of spaces.
use async_graphql::{
    ComplexObject, Context, Enum, InputObject, MaybeUndefined, Object, Result, SimpleObject, ID,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;

use crate::context::{input_id, loader_err, resource_id, Ctx};
use crate::directory::Agent;
use crate::directory::{load_organization, load_principal, Organization, PrincipalObject};
use crate::memories::{MemoryConnection, MemoryFilterInput};
use crate::page::{PageInfo, Window};
use entity::{space, space_grant, space_token};
use memspace_core::access::{Permission, SubjectKind};
use memspace_core::error::AppError;
use memspace_core::limits;
use memspace_core::principal::PrincipalKind;
use memspace_core::vocab::AccessMode;
use memspace_core::vocab::DuplicatePolicy;
use memspace_core::vocab::EmbedderKind;
use memspace_domain::spaces::service::{
    self, Chunking, ListFilter, ListQuery, NewSpace, OrderField, SpaceAccess, SpacePatch,
};
use memspace_domain::spaces::sharing::{self, GrantLists, GrantSpec};
use memspace_domain::spaces::stats::MemoryStats;
use memspace_domain::spaces::{links, tokens};

pub struct Space {
    pub model: space::Model,
    pub grants: Vec<space_grant::Model>,
    pub permission: Permission,
    /// Read with the space by a list; otherwise `memoryCount` goes through the loader.
    pub stats: Option<MemoryStats>,
}

impl From<SpaceAccess> for Space {
    fn from(a: SpaceAccess) -> Self {
        Space {
            model: a.space,
            grants: a.grants,
            permission: a.permission,
            stats: a.stats,
        }
    }
}

pub struct SpaceGrant(pub space_grant::Model);

/// A grant of VIEW or EDIT on a space to a subject.
#[Object]
impl SpaceGrant {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Whom the grant is for.
    async fn subject_kind(&self) -> Option<SubjectKind> {
        SubjectKind::parse(&self.0.subject_kind)
    }
    /// The user, role, department, agent or organization id; null for ALL_USERS.
    async fn subject_id(&self) -> Option<ID> {
        (self.0.subject_kind != SubjectKind::AllUsers.as_str())
            .then(|| ID(self.0.subject_id.to_string()))
    }
    /// VIEW or EDIT.
    async fn permission(&self) -> Permission {
        Permission::parse(&self.0.permission)
    }
    /// When the grant was given.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

pub struct SpaceToken(pub space_token::Model);

/// A space token's public part; the secret is shown only when it is created.
#[Object]
impl SpaceToken {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// What the token is for; null when none was given.
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// What the token may do: VIEW or EDIT.
    async fn permission(&self) -> Permission {
        Permission::parse(&self.0.permission)
    }
    /// The first characters of the token, to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    /// Who minted the token. It works only while this user or agent holds OWNER on the space
    /// (owner, org admin, workspace ADMIN/OWNER): removed from the workspace or demoted, the
    /// creator takes the token with them. Null if the creator no longer exists (the token does
    /// not work then either).
    async fn created_by(&self, ctx: &Context<'_>) -> Result<Option<PrincipalObject>> {
        let Some(kind) = PrincipalKind::parse(&self.0.created_by_kind) else {
            return Ok(None);
        };
        load_principal(ctx, kind, self.0.created_by).await
    }
    /// When the token stops working; null for never.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// When the token was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the token was revoked; null while it works.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}

/// A new space token: `token` is the secret, shown only in this response.
#[derive(SimpleObject)]
pub struct SpaceTokenSecret {
    /// Send it as `Authorization: Bearer <token>`. Store it now: it cannot be shown again.
    token: String,
    /// The stored part of the token (without the secret).
    space_token: SpaceToken,
}

/// A `key=value` label on a space.
#[derive(SimpleObject, Clone)]
pub struct Label {
    /// 1–63 characters, unique among the space's labels.
    key: String,
    /// Up to 255 characters.
    value: String,
}

/// The embedder that turns a space's memories into vectors.
#[derive(SimpleObject)]
pub struct EmbedderInfo {
    /// Embedder name, as listed by `embedders`.
    name: String,
    /// Length of the vectors (0 while a remote embedder has not answered yet).
    dimension: i32,
    /// What kind of model it is.
    kind: EmbedderKind,
}

impl EmbedderInfo {
    pub fn of(registry: &memspace_engine::registry::Registry, name: &str) -> EmbedderInfo {
        if let Some(e) = registry.get(name) {
            return EmbedderInfo {
                name: e.name().to_string(),
                dimension: e.dimension() as i32,
                kind: e.kind(),
            };
        }
        match registry.unavailable(name) {
            Some(u) => EmbedderInfo {
                name: u.name.clone(),
                dimension: u.dimension as i32,
                kind: u.kind,
            },
            // Configured on another replica, or removed since: report it by name.
            None => EmbedderInfo {
                name: name.to_string(),
                dimension: 0,
                kind: EmbedderKind::Remote,
            },
        }
    }
}

/// How memories are cut into chunks before embedding; sizes are in characters.
#[derive(SimpleObject)]
pub struct ChunkingConfig {
    /// Characters per chunk.
    chunk_size: i32,
    /// Characters shared by neighbouring chunks.
    chunk_overlap: i32,
}

/// A container of memories with an owner, labels, tags, an access mode and an embedder.
#[Object]
impl Space {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }
    /// 1–255 characters, unique among the owner's live spaces.
    async fn name(&self) -> &str {
        &self.model.name
    }
    /// Up to 500 characters.
    async fn description(&self) -> Option<&str> {
        self.model.description.as_deref()
    }
    /// The organization the space belongs to.
    async fn organization(&self, ctx: &Context<'_>) -> Result<Organization> {
        load_organization(ctx, self.model.organization_id).await
    }
    /// The workspace the space belongs to; null when none, or when the caller cannot see it.
    async fn workspace(&self, ctx: &Context<'_>) -> Result<Option<crate::workspaces::Workspace>> {
        let Some(id) = self.model.workspace_id else {
            return Ok(None);
        };
        let p = ctx.principal()?;
        match memspace_domain::workspaces::service::load(&ctx.db().read, p, id).await {
            Ok((model, _)) => Ok(Some(crate::workspaces::Workspace {
                viewer_role: memspace_core::access::workspace_role(p, model.id),
                model,
            })),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    /// The user or agent that owns the space.
    async fn owner(&self, ctx: &Context<'_>) -> Result<PrincipalObject> {
        let kind = PrincipalKind::parse(&self.model.owner_kind).unwrap_or(PrincipalKind::User);
        load_principal(ctx, kind, self.model.owner_id)
            .await?
            .ok_or_else(|| AppError::not_found("owner", self.model.owner_id).into())
    }
    /// Labels, ordered by key.
    async fn labels(&self, ctx: &Context<'_>) -> Result<Vec<Label>> {
        let labels = ctx
            .loaders()?
            .space_labels
            .load_one(self.model.id)
            .await
            .map_err(loader_err)?;
        Ok(labels
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| Label { key, value })
            .collect())
    }
    /// Tags, in alphabetical order.
    async fn tags(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Ok(ctx
            .loaders()?
            .space_tags
            .load_one(self.model.id)
            .await
            .map_err(loader_err)?
            .unwrap_or_default())
    }
    /// Who can see the space beyond its owner and grantees.
    async fn access_mode(&self) -> AccessMode {
        AccessMode::parse(&self.model.access_mode)
    }
    /// The embedder that turns its memories into vectors (fixed at creation).
    async fn embedder(&self, ctx: &Context<'_>) -> EmbedderInfo {
        EmbedderInfo::of(&ctx.db().embedders, &self.model.embedder)
    }
    /// How its memories are cut into chunks (fixed at creation).
    async fn chunking(&self) -> ChunkingConfig {
        ChunkingConfig {
            chunk_size: self.model.chunk_size,
            chunk_overlap: self.model.chunk_overlap,
        }
    }
    /// Who else may see or edit the space. Only shown to holders of OWNER permission (others
    /// get an empty list, so grantee lists do not leak).
    async fn grants(&self) -> Vec<SpaceGrant> {
        if self.permission < Permission::Owner {
            return Vec::new();
        }
        self.grants.iter().cloned().map(SpaceGrant).collect()
    }
    /// The agent assigned to work in this space (it holds EDIT).
    async fn agent(&self, ctx: &Context<'_>) -> Result<Option<Agent>> {
        let Some(id) = self.model.agent_id else {
            return Ok(None);
        };
        Ok(ctx
            .loaders()?
            .agents
            .load_one(id)
            .await
            .map_err(loader_err)?
            .map(Agent))
    }
    /// The space's tokens, newest first. OWNER permission only: for anyone else the field is
    /// `null` with an OWNER_ONLY error, and the rest of the space is still returned.
    async fn tokens(&self, ctx: &Context<'_>) -> Result<Option<Vec<SpaceToken>>> {
        memspace_core::access::check(self.permission, Permission::Owner, &self.model)?;
        Ok(Some(
            tokens::list(&ctx.db().read, self.model.id)
                .await?
                .into_iter()
                .map(SpaceToken)
                .collect(),
        ))
    }
    /// Live memories in the space (read with the page by `spaces`, DataLoader-batched elsewhere).
    async fn memory_count(&self, ctx: &Context<'_>) -> Result<i64> {
        match self.stats {
            Some(listed) => Ok(listed.count),
            None => Ok(self.loaded_stats(ctx).await?.count),
        }
    }
    /// Bytes of memory content in the space (read like `memoryCount`).
    async fn used_storage(&self, ctx: &Context<'_>) -> Result<i64> {
        match self.stats.and_then(|listed| listed.bytes) {
            Some(bytes) => Ok(bytes),
            None => Ok(self.loaded_stats(ctx).await?.bytes.unwrap_or(0)),
        }
    }
    /// The space's memories, newest first by default (`order: ASC` for oldest first).
    #[allow(clippy::too_many_arguments)]
    async fn memories(
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
        #[graphql(desc = "Only memories matching this filter.")] filter: Option<MemoryFilterInput>,
        #[graphql(
            desc = "Newest first (DESC, the default) or oldest first (ASC); ignored when `orderBy` is given.",
            default,
            deprecation = "Use `orderBy: {direction: …}` (the argument name every list uses)."
        )]
        order: OrderDirection,
        #[graphql(
            desc = "Sort order (default CREATED_AT DESC); wins over the deprecated `order`."
        )]
        order_by: Option<MemoryOrder>,
    ) -> Result<MemoryConnection> {
        let p = ctx.principal()?;
        let order = order_by.map_or(order, |o| match o.field {
            MemoryOrderField::CreatedAt => o.direction,
        });
        let filter = filter.unwrap_or_default().parse()?;
        let window = Window {
            first,
            after,
            last,
            before,
        };
        let (page, cond) = memspace_domain::memories::service::list(
            ctx.db(),
            p,
            &self.model,
            window.args()?,
            &filter,
            order == OrderDirection::Desc,
        )
        .await?;
        let node = ctx.look_ahead().field("edges").field("node");
        crate::memories::prefetch_memories(ctx, node, &page.items).await?;
        Ok(MemoryConnection::new(page, cond))
    }
    /// Linked spaces the caller can read; searching this space searches them too.
    async fn linked_spaces(&self, ctx: &Context<'_>) -> Result<Vec<Space>> {
        let p = ctx.principal()?;
        Ok(links::linked(&ctx.db().read, p, self.model.id)
            .await?
            .into_iter()
            .map(Space::from)
            .collect())
    }
    /// What a write that duplicates an existing memory does.
    async fn duplicate_policy(&self) -> DuplicatePolicy {
        DuplicatePolicy::parse(&self.model.duplicate_policy)
    }
    /// Cosine at or above which two memories count as duplicates.
    async fn duplicate_threshold(&self) -> f64 {
        self.model.duplicate_threshold
    }
    /// The caller's permission on this space.
    async fn viewer_permission(&self) -> Permission {
        self.permission
    }
    /// When a memory was last written or searched in this space (searches record it at most
    /// once a second).
    async fn last_activity_at(&self, ctx: &Context<'_>) -> Option<DateTime<Utc>> {
        // Search activity is flushed to the database in batches; the pending one may be later.
        let pending = ctx.recall().pending_activity(self.model.id);
        self.model.last_activity_at.max(pending)
    }
    /// When the space was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }
    /// When the space itself last changed (not its memories: see `lastActivityAt`).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.model.updated_at
    }
    /// Set while the space is soft-deleted; `restoreSpace` clears it.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.model.deleted_at
    }
}

impl Space {
    /// The stats from the request's loader (spaces not loaded by a list).
    async fn loaded_stats(&self, ctx: &Context<'_>) -> Result<MemoryStats> {
        Ok(ctx
            .loaders()?
            .memory_stats
            .load_one(self.model.id)
            .await
            .map_err(loader_err)?
            .unwrap_or_default())
    }
}

/// A space with its cursor.
#[derive(SimpleObject)]
pub struct SpaceEdge {
    /// Opaque position: pass it as `after` (or `before`) for the neighbouring page.
    cursor: String,
    /// The space.
    node: Space,
}

/// A page of spaces.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct SpaceConnection {
    /// The spaces of this page, with their cursors.
    edges: Vec<SpaceEdge>,
    /// Where this page is in the whole list.
    page_info: PageInfo,
    #[graphql(skip)]
    condition: Condition,
}

#[ComplexObject]
impl SpaceConnection {
    /// The edges' nodes, for clients that need no cursors per item.
    async fn nodes(&self) -> Vec<&Space> {
        self.edges.iter().map(|e| &e.node).collect()
    }
    /// Number of spaces matching the filter that the caller can see (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(service::count(&ctx.db().read, self.condition.clone()).await? as i64)
    }
}

/// A `key=value` label to put on a space, or to match in a filter.
#[derive(InputObject, Clone)]
pub struct LabelInput {
    /// 1–63 characters.
    key: String,
    /// Up to 255 characters.
    value: String,
}

/// How to cut a new space's memories into chunks before embedding; sizes in characters.
#[derive(InputObject, Clone, Copy)]
pub struct ChunkingInput {
    /// Characters per chunk, 50–8000.
    chunk_size: i32,
    /// Characters shared by neighbouring chunks: 0 ≤ overlap ≤ chunkSize − ⌈chunkSize / 4⌉ (the
    /// step is at least a quarter of the size). A memory cut into more than 256 chunks is
    /// refused (VALIDATION_ERROR on `content`).
    #[graphql(default)]
    chunk_overlap: i32,
}

impl From<ChunkingInput> for Chunking {
    fn from(c: ChunkingInput) -> Self {
        Chunking {
            size: c.chunk_size,
            overlap: c.chunk_overlap,
        }
    }
}

/// A grant to give (shareSpace, createSpace, updateSpace) or take away (unshareSpace).
#[derive(InputObject, Clone)]
pub struct GrantInput {
    /// Whom the grant is for.
    subject_kind: SubjectKind,
    /// The user, role, department, agent or organization (TENANT) id; omitted for ALL_USERS.
    subject_id: Option<ID>,
    /// VIEW or EDIT (ignored by unshareSpace).
    #[graphql(default_with = "Permission::View")]
    permission: Permission,
}

fn grant_specs(grants: Vec<GrantInput>) -> Vec<GrantSpec> {
    grants
        .into_iter()
        .map(|g| GrantSpec {
            field: "grants",
            kind: g.subject_kind,
            subject_id: g.subject_id.map(|id| id.0),
            permission: g.permission,
        })
        .collect()
}

fn ids(list: Option<Vec<ID>>) -> Option<Vec<String>> {
    list.map(|l| l.into_iter().map(|id| id.0).collect())
}

/// The sharing fields common to CreateSpaceInput and UpdateSpaceInput.
macro_rules! grant_lists {
    ($input:expr) => {
        GrantLists {
            grants: $input.grants.map(grant_specs),
            access_users: ids($input.access_users),
            access_departments: ids($input.access_departments),
            visible_to_roles: ids($input.visible_to_roles),
            editable_by_users: ids($input.editable_by_users),
            editable_by_roles: ids($input.editable_by_roles),
            allowed_agent_ids: ids($input.allowed_agent_ids),
            allowed_tenant_ids: ids($input.allowed_tenant_ids),
        }
    };
}

fn label_pairs(labels: Vec<LabelInput>) -> Vec<(String, String)> {
    labels.into_iter().map(|l| (l.key, l.value)).collect()
}

/// A new space.
#[derive(InputObject)]
pub struct CreateSpaceInput {
    /// 1–255 characters after trimming; unique among the owner's live spaces (case-sensitive).
    name: String,
    /// Up to 500 characters.
    description: Option<String>,
    /// Up to 64 labels with distinct keys.
    #[graphql(default)]
    labels: Vec<LabelInput>,
    /// Up to 50 tags of 1–64 characters.
    #[graphql(default)]
    tags: Vec<String>,
    /// Who can see the space beyond its owner and grantees (default PRIVATE).
    #[graphql(default)]
    access_mode: AccessMode,
    /// Owner (a user or agent of the organization); only org admins may name someone else.
    owner_id: Option<ID>,
    /// Embedder name (see `embedders`); defaults to the server's default (`builtin-hash-384`
    /// unless the operator chose another).
    embedder: Option<String>,
    /// Defaults to 800 / 100 characters.
    chunking: Option<ChunkingInput>,
    /// Put the space in this workspace (you need EDITOR or more there).
    workspace_id: Option<ID>,
    /// What a write that duplicates an existing memory does (default ALLOW).
    #[graphql(default)]
    duplicate_policy: DuplicatePolicy,
    /// Cosine at or above which two memories are duplicates, 0.5–1.0 (default 0.95).
    duplicate_threshold: Option<f64>,
    /// Grants to give (VIEW or EDIT to users, roles, departments, agents, tenants, all users).
    grants: Option<Vec<GrantInput>>,
    /// Users who may view (VIEW grants).
    access_users: Option<Vec<ID>>,
    /// Departments whose users may view.
    access_departments: Option<Vec<ID>>,
    /// Roles whose holders may view.
    visible_to_roles: Option<Vec<ID>>,
    /// Users who may edit; `"*"` means every user of the organization.
    editable_by_users: Option<Vec<ID>>,
    /// Roles whose holders may edit.
    editable_by_roles: Option<Vec<ID>>,
    /// Agents that may work in the space (EDIT); at most 10.
    allowed_agent_ids: Option<Vec<ID>>,
    /// Other organizations whose principals may view (cross-tenant).
    allowed_tenant_ids: Option<Vec<ID>>,
}

/// Changes to a space; an omitted field is left unchanged.
#[derive(InputObject)]
pub struct UpdateSpaceInput {
    /// 1–255 characters after trimming; unique among the owner's live spaces.
    name: Option<String>,
    /// `null` clears the description.
    description: MaybeUndefined<String>,
    /// Replaces all labels.
    labels: Option<Vec<LabelInput>>,
    /// Replaces all tags.
    tags: Option<Vec<String>>,
    /// Who can see the space beyond its owner and grantees.
    access_mode: Option<AccessMode>,
    /// Immutable: accepted only when equal to the current owner.
    owner_id: Option<ID>,
    /// Immutable: accepted only when equal to the current embedder.
    embedder: Option<String>,
    /// Immutable: accepted only when equal to the current chunking.
    chunking: Option<ChunkingInput>,
    /// What a write that duplicates an existing memory does.
    duplicate_policy: Option<DuplicatePolicy>,
    /// 0.5–1.0.
    duplicate_threshold: Option<f64>,
    /// Replaces EVERY grant of the space: the grants become these plus those of the lists
    /// below sent with it; `[]` alone removes all sharing. At most 1000.
    grants: Option<Vec<GrantInput>>,
    /// Replaces only the users' (and all users') VIEW grants; EDIT grants and other kinds stay.
    /// A subject that also holds EDIT keeps it. At most 1000.
    access_users: Option<Vec<ID>>,
    /// Replaces only the departments' VIEW grants. At most 1000.
    access_departments: Option<Vec<ID>>,
    /// Replaces only the roles' VIEW grants. At most 1000.
    visible_to_roles: Option<Vec<ID>>,
    /// Replaces only the users' (and all users') EDIT grants; `"*"` means every user of the
    /// organization. At most 1000.
    editable_by_users: Option<Vec<ID>>,
    /// Replaces only the roles' EDIT grants. At most 1000.
    editable_by_roles: Option<Vec<ID>>,
    /// Replaces only the agents' EDIT grants (at most 10 agents per space).
    allowed_agent_ids: Option<Vec<ID>>,
    /// Replaces only the tenants' (other organizations') VIEW grants. At most 1000.
    allowed_tenant_ids: Option<Vec<ID>>,
}

/// How a filter's tags must match a space's tags.
#[derive(Enum, Copy, Clone, PartialEq, Eq, Default)]
pub enum TagsMatch {
    /// A space matches when it has at least one of the tags.
    #[default]
    Any,
    /// A space matches when it has every tag.
    All,
}

/// Filters on spaces; given fields must all match.
#[derive(InputObject, Default)]
pub struct SpaceFilter {
    /// Glob on the name: `*` any run of characters, `?` one character; case-sensitive.
    name_glob: Option<String>,
    /// The same glob as `nameGlob`; when both are given they must be equal.
    #[graphql(deprecation = "Use `nameGlob` (the name `WorkspaceFilter` uses for the same glob).")]
    name: Option<String>,
    /// Only spaces of this workspace.
    pub workspace_id: Option<ID>,
    /// Only spaces of this owner (others than yourself: org admins only).
    owner_id: Option<ID>,
    /// Every label must match.
    labels: Option<Vec<LabelInput>>,
    /// Spaces with these tags (see `tagsMatch`); up to 50.
    tags: Option<Vec<String>>,
    /// Whether a space needs ANY (default) or ALL of `tags`.
    #[graphql(default)]
    tags_match: TagsMatch,
    /// Include soft-deleted spaces.
    #[graphql(default)]
    include_deleted: bool,
}

impl SpaceFilter {
    /// The name glob, from `nameGlob` or the deprecated `name`.
    fn take_name_glob(&mut self) -> Result<Option<String>, AppError> {
        match (self.name_glob.take(), self.name.take()) {
            (Some(glob), Some(old)) if glob != old => Err(AppError::validation(
                "filter.nameGlob",
                "give `nameGlob` or the deprecated `name`, not two different globs",
            )),
            (glob, old) => Ok(glob.or(old)),
        }
    }

    /// List and string lengths, before any SQL (the glob is checked by the domain).
    fn check_lengths(&self) -> Result<(), AppError> {
        if let Some(labels) = &self.labels {
            limits::list("filter.labels", labels.len(), limits::MAX_LABELS)?;
            for (i, l) in labels.iter().enumerate() {
                let key = format!("filter.labels[{i}].key");
                limits::chars(&key, &l.key, limits::MAX_LABEL_KEY_CHARS)?;
                let value = format!("filter.labels[{i}].value");
                limits::chars(&value, &l.value, limits::MAX_LABEL_VALUE_CHARS)?;
            }
        }
        if let Some(tags) = &self.tags {
            limits::strings(
                "filter.tags",
                tags,
                limits::MAX_FILTER_TAGS,
                limits::MAX_TAG_CHARS,
            )?;
        }
        Ok(())
    }
}

/// What spaces can be sorted by.
#[derive(Enum, Copy, Clone, PartialEq, Eq, Default)]
pub enum SpaceOrderField {
    /// Creation time (the default).
    #[default]
    CreatedAt,
    /// Name, byte-wise.
    Name,
}

/// Sort direction.
#[derive(Enum, Copy, Clone, PartialEq, Eq, Default)]
pub enum OrderDirection {
    /// Ascending: oldest or smallest first.
    Asc,
    /// Descending: newest or largest first.
    #[default]
    Desc,
}

/// What memories can be sorted by.
#[derive(Enum, Copy, Clone, PartialEq, Eq, Default)]
pub enum MemoryOrderField {
    /// Creation time (the default; ties broken by id).
    #[default]
    CreatedAt,
}

/// How to sort memories (default CREATED_AT DESC).
#[derive(InputObject)]
pub struct MemoryOrder {
    /// What to sort by (default CREATED_AT).
    #[graphql(default)]
    field: MemoryOrderField,
    /// Which way (default DESC).
    #[graphql(default)]
    direction: OrderDirection,
}

/// How to sort spaces (default CREATED_AT DESC); ties are broken by id.
#[derive(InputObject)]
pub struct SpaceOrder {
    /// What to sort by (default CREATED_AT).
    #[graphql(default)]
    pub field: SpaceOrderField,
    /// Which way (default DESC).
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Default)]
pub struct SpaceQuery;

#[Object]
impl SpaceQuery {
    /// One space; NOT_FOUND when it does not exist or the caller cannot see it.
    async fn space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space's id.")] id: ID,
    ) -> Result<Option<Space>> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        Ok(Some(service::get(ctx.db(), p, id).await?.into()))
    }

    /// The spaces the caller can see, as a Relay connection (default newest first).
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
        let window = Window {
            first,
            after,
            last,
            before,
        };
        list_spaces(ctx, window, filter, order_by).await
    }
}

/// Loads, in one batch per relation, what the selection under a page of spaces will ask for,
/// so each space then resolves from the request's loader cache. (`memoryCount` and
/// `usedStorage` need nothing here: the list read them with the spaces.)
pub async fn prefetch_spaces(
    ctx: &Context<'_>,
    node: async_graphql::Lookahead<'_>,
    page: &[SpaceAccess],
) -> Result<()> {
    if page.is_empty() {
        return Ok(());
    }
    let loaders = ctx.loaders()?;
    let spaces: Vec<&space::Model> = page.iter().map(|a| &a.space).collect();
    let ids: Vec<uuid::Uuid> = spaces.iter().map(|s| s.id).collect();
    if node.field("labels").exists() {
        loaders
            .space_labels
            .load_many(ids.clone())
            .await
            .map_err(loader_err)?;
    }
    if node.field("tags").exists() {
        loaders
            .space_tags
            .load_many(ids.clone())
            .await
            .map_err(loader_err)?;
    }
    if node.field("organization").exists() {
        let orgs: std::collections::HashSet<uuid::Uuid> =
            spaces.iter().map(|s| s.organization_id).collect();
        loaders
            .organizations
            .load_many(orgs)
            .await
            .map_err(loader_err)?;
    }
    if node.field("owner").exists() {
        let users: Vec<uuid::Uuid> = spaces
            .iter()
            .filter(|s| s.owner_kind == PrincipalKind::User.as_str())
            .map(|s| s.owner_id)
            .collect();
        let agents: Vec<uuid::Uuid> = spaces
            .iter()
            .filter(|s| s.owner_kind == PrincipalKind::Agent.as_str())
            .map(|s| s.owner_id)
            .collect();
        if !users.is_empty() {
            loaders.users.load_many(users).await.map_err(loader_err)?;
        }
        if !agents.is_empty() {
            loaders.agents.load_many(agents).await.map_err(loader_err)?;
        }
    }
    if node.field("agent").exists() {
        let agents: Vec<uuid::Uuid> = spaces.iter().filter_map(|s| s.agent_id).collect();
        if !agents.is_empty() {
            loaders.agents.load_many(agents).await.map_err(loader_err)?;
        }
    }
    Ok(())
}

/// `spaces` (also behind `Workspace.spaces`).
pub async fn list_spaces(
    ctx: &Context<'_>,
    window: Window,
    filter: Option<SpaceFilter>,
    order_by: Option<SpaceOrder>,
) -> Result<SpaceConnection> {
    let p = ctx.principal()?;
    let mut filter = filter.unwrap_or_default();
    filter.check_lengths()?;
    let order = order_by.unwrap_or(SpaceOrder {
        field: SpaceOrderField::CreatedAt,
        direction: OrderDirection::Desc,
    });
    let order_field = match order.field {
        SpaceOrderField::CreatedAt => OrderField::CreatedAt,
        SpaceOrderField::Name => OrderField::Name,
    };
    let node = ctx.look_ahead().field("edges").field("node");
    let with_grants = ["viewerPermission", "grants", "tokens"]
        .iter()
        .any(|f| node.field(f).exists());
    let query = ListQuery {
        with_grants,
        with_count: node.field("memoryCount").exists(),
        with_bytes: node.field("usedStorage").exists(),
        first: window.first,
        after: window.after,
        last: window.last,
        before: window.before,
        filter: ListFilter {
            name_glob: filter.take_name_glob()?,
            owner_id: filter
                .owner_id
                .map(|id| input_id("filter.ownerId", &id))
                .transpose()?,
            labels: label_pairs(filter.labels.unwrap_or_default()),
            tags: filter.tags.unwrap_or_default(),
            tags_match_all: filter.tags_match == TagsMatch::All,
            include_deleted: filter.include_deleted,
            workspace_id: filter
                .workspace_id
                .map(|id| input_id("filter.workspaceId", &id))
                .transpose()?,
        },
        order: order_field,
        descending: order.direction == OrderDirection::Desc,
    };
    let result = service::list(ctx.db(), p, query).await?;
    let page = result.page;
    prefetch_spaces(ctx, node, &page.items).await?;
    let (edges, page_info) = page.into_edges(
        |access| service::cursor_of(&access.space, order_field),
        |cursor, access| SpaceEdge {
            cursor,
            node: access.into(),
        },
    );
    Ok(SpaceConnection {
        page_info: page_info.into(),
        edges,
        condition: result.condition,
    })
}

#[derive(Default)]
pub struct SpaceMutation;

#[Object]
impl SpaceMutation {
    /// Creates a space owned by the caller (or, for org admins, by `ownerId`).
    async fn create_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new space.")] input: CreateSpaceInput,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        limits::opt_chars(
            "embedder",
            input.embedder.as_deref(),
            limits::MAX_EMBEDDER_NAME_CHARS,
        )?;
        let new = NewSpace {
            name: input.name,
            description: input.description,
            labels: label_pairs(input.labels),
            tags: input.tags,
            access_mode: input.access_mode,
            owner_id: input
                .owner_id
                .map(|id| input_id("ownerId", &id))
                .transpose()?,
            embedder: input.embedder,
            chunking: input.chunking.map(Into::into),
            workspace_id: input
                .workspace_id
                .map(|id| input_id("workspaceId", &id))
                .transpose()?,
            duplicate_policy: input.duplicate_policy,
            duplicate_threshold: input.duplicate_threshold,
            grants: grant_lists!(input),
        };
        Ok(service::create(ctx.db(), &ctx.db().embedders, p, new)
            .await?
            .into())
    }

    /// Changes a space (OWNER permission). Owner, embedder and chunking are immutable.
    async fn update_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space.")] id: ID,
        #[graphql(desc = "The changes; omitted fields stay.")] input: UpdateSpaceInput,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        limits::opt_chars(
            "embedder",
            input.embedder.as_deref(),
            limits::MAX_EMBEDDER_NAME_CHARS,
        )?;
        let id = resource_id("space", &id)?;
        let patch = SpacePatch {
            name: input.name,
            description: match input.description {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(d) => Some(Some(d)),
            },
            labels: input.labels.map(label_pairs),
            tags: input.tags,
            access_mode: input.access_mode,
            owner_id: input
                .owner_id
                .map(|id| input_id("ownerId", &id))
                .transpose()?,
            embedder: input.embedder,
            chunking: input.chunking.map(Into::into),
            duplicate_policy: input.duplicate_policy,
            duplicate_threshold: input.duplicate_threshold,
            grants: grant_lists!(input),
        };
        Ok(service::update(ctx.db(), p, id, patch).await?.into())
    }

    /// Soft-deletes a space (OWNER permission): hidden from lists, memories kept.
    async fn delete_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space.")] id: ID,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        Ok(service::delete(ctx.db(), p, id).await?.into())
    }

    /// Undoes `deleteSpace` (OWNER permission).
    async fn restore_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deleted space.")] id: ID,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        Ok(service::restore(ctx.db(), p, id).await?.into())
    }

    /// Deletes a space and everything in it, permanently (OWNER permission). Returns its id.
    #[graphql(
        deprecation = "Use `purgeSpaceV2`: it answers with the purged id and the workspace it was in."
    )]
    async fn purge_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space.")] id: ID,
    ) -> Result<ID> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        let id = service::purge(ctx.db(), p, id).await?.id;
        // Its vectors are gone from the database; drop them from this process's index too.
        ctx.index().forget_space(id);
        Ok(ID(id.to_string()))
    }

    /// Gives grants on a space (OWNER permission); a subject already granted gets the new
    /// permission. All unknown ids are reported together (`extensions.invalidIds`).
    async fn share_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space.")] id: ID,
        #[graphql(desc = "The grants to give (at most 1000).")] grants: Vec<GrantInput>,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        Ok(sharing::share(ctx.db(), p, id, grant_specs(grants))
            .await?
            .into())
    }

    /// Takes grants away from the given subjects (OWNER permission).
    async fn unshare_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space.")] id: ID,
        #[graphql(desc = "The subjects whose grants go (their `permission` is ignored).")]
        grants: Vec<GrantInput>,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        Ok(sharing::unshare(ctx.db(), p, id, grant_specs(grants))
            .await?
            .into())
    }

    /// Assigns the agent that works in the space (it holds EDIT); null unassigns. OWNER only.
    async fn assign_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space.")] space_id: ID,
        #[graphql(desc = "An agent of the space's organization; null unassigns.")] agent_id: Option<
            ID,
        >,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        let space_id = resource_id("space", &space_id)?;
        let agent_id = agent_id.map(|a| input_id("agentId", &a)).transpose()?;
        Ok(sharing::assign_agent(ctx.db(), p, space_id, agent_id)
            .await?
            .into())
    }

    /// Creates a bearer token for one space (OWNER permission). The secret is shown only here.
    /// The token works only while its creator (`SpaceToken.createdBy`) holds OWNER on the space.
    async fn create_space_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space the token opens.")] space_id: ID,
        #[graphql(desc = "VIEW or EDIT.")] permission: Permission,
        #[graphql(desc = "When the token stops working; must be in the future.")]
        expires_at: Option<DateTime<Utc>>,
        #[graphql(desc = "What the token is for (up to 255 characters).")] name: Option<String>,
    ) -> Result<SpaceTokenSecret> {
        let p = ctx.principal()?;
        let space_id = resource_id("space", &space_id)?;
        let (row, token) =
            tokens::create(ctx.db(), p, space_id, permission, expires_at, name).await?;
        Ok(SpaceTokenSecret {
            token,
            space_token: SpaceToken(row),
        })
    }

    /// Links another space to this one (OWNER here, VIEW there): searching this space also
    /// searches the linked one, for callers who can read it.
    async fn link_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space that gets the link.")] id: ID,
        #[graphql(desc = "The space to link (VIEW permission).")] linked_space_id: ID,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        let linked = resource_id("space", &linked_space_id)?;
        Ok(links::link(ctx.db(), p, id, linked).await?.into())
    }

    /// Removes a link (OWNER permission).
    async fn unlink_space(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space that has the link.")] id: ID,
        #[graphql(desc = "The linked space.")] linked_space_id: ID,
    ) -> Result<Space> {
        let p = ctx.principal()?;
        let id = resource_id("space", &id)?;
        let linked = resource_id("space", &linked_space_id)?;
        Ok(links::unlink(ctx.db(), p, id, linked).await?.into())
    }

    /// Revokes a space token (OWNER permission on its space). Returns its id.
    #[graphql(
        deprecation = "Use `revokeSpaceTokenV2`: it answers with the revoked token and its space."
    )]
    async fn revoke_space_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space token.")] id: ID,
    ) -> Result<ID> {
        let p = ctx.principal()?;
        let id = resource_id("space token", &id)?;
        Ok(ID(tokens::revoke(ctx.db(), p, id).await?.to_string()))
    }
}
