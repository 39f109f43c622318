//! GraphQL types and resolvers of memories.
pub mod subscription;

use async_graphql::{
    ComplexObject, Context, InputObject, MaybeUndefined, Object, Result, SimpleObject, ID,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;

use crate::context::{input_id, loader_err, resource_id, Ctx};
use crate::directory::{load_principal, Agent, PrincipalObject};
use crate::page::PageInfo;
use crate::scalars::Json;
use crate::spaces::Space;
use entity::memory;
use memspace_core::error::AppError;
use memspace_core::limits;
use memspace_core::vocab::DuplicatePolicy;
use memspace_domain::memories::service::{self, MemoryDraft, MemoryFilter, MemoryPatch};

pub struct Memory(pub memory::Model);

/// A piece of text in a space, embedded on write and found again by meaning or keyword.
#[Object]
impl Memory {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The space the memory is in.
    async fn space(&self, ctx: &Context<'_>) -> Result<Space> {
        let access = ctx
            .loaders()?
            .space_access
            .load_one(self.0.space_id)
            .await
            .map_err(loader_err)?
            .ok_or_else(|| AppError::not_found("space", self.0.space_id))?;
        Ok(access.into())
    }
    /// The text, 1–32,768 characters.
    async fn content(&self) -> &str {
        &self.0.content
    }
    /// Tags, alphabetical.
    async fn tags(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Ok(ctx
            .loaders()?
            .memory_tags
            .load_one(self.0.id)
            .await
            .map_err(loader_err)?
            .unwrap_or_default())
    }
    /// A JSON object.
    async fn metadata(&self) -> Option<Json> {
        self.0
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .map(Json)
    }
    /// 1–10.
    async fn importance(&self) -> i32 {
        self.0.importance
    }
    /// 0.0–1.0.
    async fn confidence(&self) -> f64 {
        self.0.confidence
    }
    /// How many times a search returned this memory.
    async fn recall_count(&self, ctx: &Context<'_>) -> i32 {
        // Counts are flushed to the database in batches; add the ones still pending here.
        let pending = ctx.recall().pending_recalls(self.0.id);
        (i64::from(self.0.recall_count) + pending).min(i64::from(i32::MAX)) as i32
    }
    /// The user or agent that wrote it; null when written with a space token.
    async fn author(&self, ctx: &Context<'_>) -> Result<Option<PrincipalObject>> {
        match service::author_kind(&self.0) {
            Some(kind) => load_principal(ctx, kind, self.0.author_id).await,
            None => Ok(None),
        }
    }
    /// The agent this memory is about or from.
    async fn agent(&self, ctx: &Context<'_>) -> Result<Option<Agent>> {
        let Some(id) = self.0.agent_id else {
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
    /// The conversation thread it belongs to (`addThreadMessages`), if any.
    async fn thread_id(&self) -> Option<&str> {
        self.0.thread_id.as_deref()
    }
    /// When the memory was written.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the memory last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Goes up by one on every change; pass it as `expectedVersion` to `updateMemory` to make
    /// lost updates impossible.
    async fn version(&self) -> i32 {
        self.0.version
    }
    /// The id this memory had in the system it was imported from.
    async fn external_id(&self) -> Option<&str> {
        self.0.external_id.as_deref()
    }
    /// The older memory this one replaced (SUPERSEDE policy).
    async fn supersedes(&self, ctx: &Context<'_>) -> Result<Option<Memory>> {
        linked_memory(ctx, self.0.supersedes).await
    }
    /// The newer memory that replaced this one; superseded memories are hidden from lists and
    /// searches unless `includeSuperseded` is set.
    async fn superseded_by(&self, ctx: &Context<'_>) -> Result<Option<Memory>> {
        linked_memory(ctx, self.0.superseded_by).await
    }
    /// After this time the memory is never returned, and a periodic sweep deletes it.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
}

/// Loads, one batch per relation, what the selection under a list of memories will ask for.
pub async fn prefetch_memories(
    ctx: &Context<'_>,
    node: async_graphql::Lookahead<'_>,
    memories: &[memory::Model],
) -> Result<()> {
    if memories.is_empty() {
        return Ok(());
    }
    let loaders = ctx.loaders()?;
    if node.field("tags").exists() {
        let ids: Vec<uuid::Uuid> = memories.iter().map(|m| m.id).collect();
        loaders
            .memory_tags
            .load_many(ids)
            .await
            .map_err(loader_err)?;
    }
    if node.field("space").exists() {
        let ids: std::collections::HashSet<uuid::Uuid> =
            memories.iter().map(|m| m.space_id).collect();
        loaders
            .space_access
            .load_many(ids)
            .await
            .map_err(loader_err)?;
    }
    let mut users = Vec::new();
    let mut agents = Vec::new();
    if node.field("author").exists() {
        for m in memories {
            match service::author_kind(m) {
                Some(memspace_core::principal::PrincipalKind::User) => users.push(m.author_id),
                Some(memspace_core::principal::PrincipalKind::Agent) => agents.push(m.author_id),
                _ => {}
            }
        }
    }
    if node.field("agent").exists() {
        agents.extend(memories.iter().filter_map(|m| m.agent_id));
    }
    if !users.is_empty() {
        loaders.users.load_many(users).await.map_err(loader_err)?;
    }
    if !agents.is_empty() {
        loaders.agents.load_many(agents).await.map_err(loader_err)?;
    }
    Ok(())
}

/// A memory of the history chain, if the caller may read it.
async fn linked_memory(ctx: &Context<'_>, id: Option<uuid::Uuid>) -> Result<Option<Memory>> {
    let Some(id) = id else {
        return Ok(None);
    };
    let p = ctx.principal()?;
    match service::get(ctx.db(), p, id).await {
        Ok(m) => Ok(Some(Memory(m))),
        Err(AppError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A memory with its cursor.
#[derive(SimpleObject)]
pub struct MemoryEdge {
    /// Opaque position: pass it as `after` (or `before`) for the neighbouring page.
    cursor: String,
    /// The memory.
    node: Memory,
}

/// A page of memories.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct MemoryConnection {
    /// The memories of this page, with their cursors.
    edges: Vec<MemoryEdge>,
    /// Where this page is in the whole list.
    page_info: PageInfo,
    #[graphql(skip)]
    condition: Condition,
}

#[ComplexObject]
impl MemoryConnection {
    /// The edges' nodes, for clients that need no cursors per item.
    async fn nodes(&self) -> Vec<&Memory> {
        self.edges.iter().map(|e| &e.node).collect()
    }
    /// Number of memories matching the filter (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(service::count(&ctx.db().read, self.condition.clone()).await? as i64)
    }
}

impl MemoryConnection {
    pub fn new(page: memspace_core::page::Page<memory::Model>, condition: Condition) -> Self {
        let (edges, page_info) = page.into_edges(service::cursor_of, |cursor, m| MemoryEdge {
            cursor,
            node: Memory(m),
        });
        MemoryConnection {
            page_info: page_info.into(),
            edges,
            condition,
        }
    }
}

/// Filters on memories; given fields must all match.
#[derive(InputObject, Default, Clone)]
pub struct MemoryFilterInput {
    /// Memories with any of these tags.
    tags: Option<Vec<String>>,
    /// Memories about or from this agent.
    agent_id: Option<ID>,
    /// Memories of this conversation thread.
    thread_id: Option<String>,
    /// Memories written at or after this time.
    created_after: Option<DateTime<Utc>>,
    /// Memories written before this time.
    created_before: Option<DateTime<Utc>>,
    /// Also return memories that a newer one superseded.
    #[graphql(default)]
    include_superseded: bool,
}

impl MemoryFilterInput {
    pub fn parse(self) -> Result<MemoryFilter, AppError> {
        if let Some(tags) = &self.tags {
            limits::strings(
                "filter.tags",
                tags,
                limits::MAX_FILTER_TAGS,
                limits::MAX_TAG_CHARS,
            )?;
        }
        limits::opt_chars(
            "filter.threadId",
            self.thread_id.as_deref(),
            limits::MAX_THREAD_ID_CHARS,
        )?;
        Ok(MemoryFilter {
            tags: self.tags.unwrap_or_default(),
            agent_id: self
                .agent_id
                .map(|a| input_id("filter.agentId", &a))
                .transpose()?,
            thread_id: self.thread_id,
            created_after: self.created_after,
            created_before: self.created_before,
            include_superseded: self.include_superseded,
        })
    }
}

/// A memory to write (in `createMemories`).
#[derive(InputObject, Clone)]
pub struct MemoryInput {
    /// 1–32,768 characters.
    content: String,
    /// Up to 50 tags of 1–64 characters.
    #[graphql(default)]
    tags: Vec<String>,
    /// A JSON object of at most 16 KiB.
    metadata: Option<Json>,
    /// 1–10, default 5.
    importance: Option<i32>,
    /// 0.0–1.0, default 1.0.
    confidence: Option<f64>,
    /// An agent of the space's organization.
    agent_id: Option<ID>,
    /// The conversation thread it belongs to (up to 255 characters).
    thread_id: Option<String>,
    /// Must be in the future.
    expires_at: Option<DateTime<Utc>>,
    /// The memory's id in the system it comes from (1–255 characters). Writing an externalId
    /// that already exists in the space returns the existing memory unchanged, so an import
    /// can be re-run safely.
    external_id: Option<String>,
    /// Overrides the space's duplicate policy for this memory.
    on_duplicate: Option<DuplicatePolicy>,
}

impl MemoryInput {
    fn draft(self) -> MemoryDraft {
        MemoryDraft {
            content: self.content,
            tags: self.tags,
            metadata: self.metadata.map(|j| j.0),
            importance: self.importance,
            confidence: self.confidence,
            agent_id: self.agent_id.map(|a| a.0),
            thread_id: self.thread_id,
            expires_at: self.expires_at,
            external_id: self.external_id,
            on_duplicate: self.on_duplicate,
        }
    }
}

/// A memory to write in one space.
#[derive(InputObject)]
pub struct CreateMemoryInput {
    /// The space to write in (EDIT permission).
    space_id: ID,
    /// 1–32,768 characters.
    content: String,
    /// Up to 50 tags of 1–64 characters.
    #[graphql(default)]
    tags: Vec<String>,
    /// A JSON object of at most 16 KiB.
    metadata: Option<Json>,
    /// 1–10, default 5.
    importance: Option<i32>,
    /// 0.0–1.0, default 1.0.
    confidence: Option<f64>,
    /// An agent of the space's organization that the memory is about or from.
    agent_id: Option<ID>,
    /// The conversation thread it belongs to (up to 255 characters).
    thread_id: Option<String>,
    /// Must be in the future; the memory disappears then.
    expires_at: Option<DateTime<Utc>>,
    /// See `MemoryInput.externalId`.
    external_id: Option<String>,
    /// Overrides the space's duplicate policy for this write.
    on_duplicate: Option<DuplicatePolicy>,
}

/// Changes to a memory; an omitted field is unchanged, `null` clears a nullable one.
#[derive(InputObject)]
pub struct UpdateMemoryInput {
    /// 1–32,768 characters; re-chunked and re-embedded.
    content: Option<String>,
    /// Replaces all tags.
    tags: Option<Vec<String>>,
    /// A JSON object of at most 16 KiB; `null` clears it.
    metadata: MaybeUndefined<Json>,
    /// 1–10.
    importance: Option<i32>,
    /// 0.0–1.0.
    confidence: Option<f64>,
    /// `null` takes the memory out of its thread.
    thread_id: MaybeUndefined<String>,
    /// Must be in the future; `null` makes the memory permanent.
    expires_at: MaybeUndefined<DateTime<Utc>>,
}

/// One message of a conversation thread.
#[derive(InputObject)]
pub struct ThreadMessageInput {
    /// Who spoke: `user`, `assistant`, `system`, a tool name… (1–64 characters).
    role: String,
    /// The message text, 1–32,768 characters.
    content: String,
}

fn maybe<T>(v: MaybeUndefined<T>) -> Option<Option<T>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

#[derive(Default)]
pub struct MemoryQuery;

#[Object]
impl MemoryQuery {
    /// One memory; NOT_FOUND when it does not exist, expired, or its space is not readable.
    async fn memory(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The memory's id.")] id: ID,
    ) -> Result<Option<Memory>> {
        let p = ctx.principal()?;
        let id = resource_id("memory", &id)?;
        Ok(Some(Memory(service::get(ctx.db(), p, id).await?)))
    }
}

#[derive(Default)]
pub struct MemoryMutation;

#[Object]
impl MemoryMutation {
    /// Writes a memory (EDIT permission on the space).
    async fn create_memory(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The memory and its space.")] input: CreateMemoryInput,
    ) -> Result<Memory> {
        let p = ctx.principal()?;
        let space_id = resource_id("space", &input.space_id)?;
        let draft = MemoryInput {
            content: input.content,
            tags: input.tags,
            metadata: input.metadata,
            importance: input.importance,
            confidence: input.confidence,
            agent_id: input.agent_id,
            thread_id: input.thread_id,
            expires_at: input.expires_at,
            external_id: input.external_id,
            on_duplicate: input.on_duplicate,
        }
        .draft();
        let mut rows =
            service::create_many(ctx.db(), ctx.index(), p, space_id, vec![draft], false).await?;
        let m = rows
            .pop()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no memory written")))?;
        Ok(Memory(m))
    }

    /// Writes 1–1000 memories in one transaction: all or nothing. The first bad item is
    /// reported with its 0-based `extensions.index`.
    async fn create_memories(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space to write in (EDIT permission).")] space_id: ID,
        #[graphql(desc = "1–1000 memories.")] inputs: Vec<MemoryInput>,
    ) -> Result<Vec<Memory>> {
        let p = ctx.principal()?;
        limits::list("inputs", inputs.len(), limits::MAX_BATCH)?;
        let space_id = resource_id("space", &space_id)?;
        let drafts = inputs.into_iter().map(MemoryInput::draft).collect();
        let rows = service::create_many(ctx.db(), ctx.index(), p, space_id, drafts, true).await?;
        Ok(rows.into_iter().map(Memory).collect())
    }

    /// Changes a memory (EDIT permission); a new content is re-chunked and re-embedded.
    async fn update_memory(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The memory.")] id: ID,
        #[graphql(desc = "The changes; omitted fields stay.")] input: UpdateMemoryInput,
        #[graphql(
            desc = "The version you read; if the memory changed since, CONFLICT with `extensions.currentVersion`."
        )]
        expected_version: Option<i32>,
    ) -> Result<Memory> {
        let p = ctx.principal()?;
        let id = resource_id("memory", &id)?;
        let patch = MemoryPatch {
            expected_version,
            content: input.content,
            tags: input.tags,
            metadata: maybe(input.metadata).map(|m| m.map(|j| j.0)),
            importance: input.importance,
            confidence: input.confidence,
            thread_id: maybe(input.thread_id),
            expires_at: maybe(input.expires_at),
        };
        Ok(Memory(
            service::update(ctx.db(), ctx.index(), p, id, patch).await?,
        ))
    }

    /// Deletes a memory (EDIT permission). Returns its id.
    #[graphql(
        deprecation = "Use `deleteMemoryV2`: it answers with the deleted id and the space's new counts."
    )]
    async fn delete_memory(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The memory.")] id: ID,
    ) -> Result<ID> {
        let p = ctx.principal()?;
        let id = resource_id("memory", &id)?;
        Ok(ID(service::delete(ctx.db(), ctx.index(), p, id)
            .await?
            .id
            .to_string()))
    }

    /// Stores each message of a conversation as a memory of that thread (role in
    /// `metadata.role`), so the thread becomes shared memory of the space. One transaction.
    async fn add_thread_messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The space to write in (EDIT permission).")] space_id: ID,
        #[graphql(desc = "The thread, 1–255 characters.")] thread_id: String,
        #[graphql(desc = "1–1000 messages, in conversation order.")] messages: Vec<
            ThreadMessageInput,
        >,
    ) -> Result<Vec<Memory>> {
        let p = ctx.principal()?;
        limits::list("messages", messages.len(), limits::MAX_BATCH)?;
        limits::chars("threadId", &thread_id, limits::MAX_THREAD_ID_CHARS)?;
        let space_id = resource_id("space", &space_id)?;
        let mut drafts = Vec::with_capacity(messages.len());
        for (i, m) in messages.into_iter().enumerate() {
            let role =
                memspace_core::validate::text("role", &m.role, 1, 64).map_err(|e| match e {
                    AppError::Validation { field, message, .. } => AppError::Validation {
                        field,
                        message: format!("item {i}: {message}"),
                        details: Some(serde_json::json!({ "index": i })),
                    },
                    other => other,
                })?;
            drafts.push(MemoryDraft {
                content: m.content,
                metadata: Some(serde_json::json!({ "role": role })),
                thread_id: Some(thread_id.clone()),
                ..Default::default()
            });
        }
        let rows = service::create_many(ctx.db(), ctx.index(), p, space_id, drafts, true).await?;
        Ok(rows.into_iter().map(Memory).collect())
    }
}
