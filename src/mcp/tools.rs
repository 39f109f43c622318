//! The tools: each parses its arguments, calls one domain use case and renders the result as
//! `structuredContent` plus a short text. Arguments are JSON-Schema'd from the `…Args` types;
//! a bad argument is a VALIDATION_ERROR tool error naming its path (not a protocol error), so
//! the model can correct itself.
use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rmcp::handler::server::common::schema_for_type;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;
use uuid::Uuid;

use super::errors::{new_trace_id, tool_error};
use super::{caller, observe, views, Caller, Memspace};
use memspace_core::error::{AppError, AppResult};
use memspace_core::vocab::{AccessMode, DuplicatePolicy, SearchMode};
use memspace_domain::memories::service::{
    self as memories, MemoryDraft, MemoryFilter, MemoryPatch,
};
use memspace_domain::search::{self, SearchRequest};
use memspace_domain::spaces::service::{self as spaces, ListFilter, ListQuery, NewSpace};

/// What a tool hands back: the structured result and its text rendering.
struct Done {
    structured: Value,
    text: String,
}

/// An id the caller names: malformed → NOT_FOUND, as GraphQL answers for `ID` arguments.
fn resource_id(resource: &'static str, raw: &str) -> AppResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| AppError::not_found(resource, raw))
}

/// An id inside an input: malformed → VALIDATION_ERROR on `field`.
fn input_id(field: &str, raw: &str) -> AppResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| AppError::validation(field, "is not a valid ID"))
}

/// Deserialises a tool's arguments; a mismatch names the offending path.
fn parse_args<T: DeserializeOwned>(args: JsonObject) -> AppResult<T> {
    serde_path_to_error::deserialize(Value::Object(args)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A missing field has no path of its own: take its name from the message.
        let field = match (path.as_str(), inner.split('`').nth(1)) {
            (".", Some(name)) if inner.starts_with("missing field") => name.to_string(),
            (".", _) => "arguments".to_string(),
            (p, _) => p.to_string(),
        };
        AppError::validation(field, inner)
    })
}

impl Memspace {
    /// Runs a tool: arguments parsed, the caller taken from the request, the request timeout
    /// applied, errors turned into tool errors with their codes, the call measured.
    async fn run<A, F, Fut>(
        &self,
        name: &'static str,
        args: JsonObject,
        ctx: &RequestContext<RoleServer>,
        body: F,
    ) -> CallToolResult
    where
        A: DeserializeOwned,
        F: FnOnce(Caller, A) -> Fut,
        Fut: Future<Output = AppResult<Done>>,
    {
        let started = Instant::now();
        let trace_id = new_trace_id();
        let span = tracing::info_span!("mcp", trace_id = %trace_id, tool = name);
        let timeout = self.shared.limits.request_timeout;
        let outcome = async {
            let who = caller(ctx)?;
            let parsed = parse_args::<A>(args)?;
            match tokio::time::timeout(timeout, body(who, parsed)).await {
                Ok(r) => r,
                Err(_) => Err(AppError::Internal(anyhow::anyhow!(
                    "tool call exceeded the request timeout of {} s",
                    timeout.as_secs_f64()
                ))),
            }
        }
        .instrument(span)
        .await;
        match outcome {
            Ok(done) => {
                observe(&self.shared.metrics, name, "ok", started);
                let mut result = CallToolResult::success(vec![ContentBlock::text(done.text)]);
                result.structured_content = Some(done.structured);
                result
            }
            Err(e) => {
                observe(&self.shared.metrics, name, e.code(), started);
                tool_error(&e, &trace_id)
            }
        }
    }
}

#[derive(Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Reciprocal rank fusion of keyword and semantic rankings (default).
    #[default]
    Hybrid,
    /// By meaning: cosine similarity of embeddings.
    Semantic,
    /// By words: full-text match of any stemmed query term.
    Keyword,
}

impl From<Mode> for SearchMode {
    fn from(m: Mode) -> SearchMode {
        match m {
            Mode::Hybrid => SearchMode::Hybrid,
            Mode::Semantic => SearchMode::Semantic,
            Mode::Keyword => SearchMode::Keyword,
        }
    }
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum OnDuplicate {
    /// Store it anyway.
    Allow,
    /// Refuse with DUPLICATE (the error's existingId names the stored memory).
    Reject,
    /// Store it; the old memory is marked superseded and hidden from lists and searches.
    Supersede,
    /// Fold it into the existing memory (tags united, metadata merged), which is returned.
    Merge,
}

impl From<OnDuplicate> for DuplicatePolicy {
    fn from(p: OnDuplicate) -> DuplicatePolicy {
        match p {
            OnDuplicate::Allow => DuplicatePolicy::Allow,
            OnDuplicate::Reject => DuplicatePolicy::Reject,
            OnDuplicate::Supersede => DuplicatePolicy::Supersede,
            OnDuplicate::Merge => DuplicatePolicy::Merge,
        }
    }
}

#[derive(Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum Visibility {
    /// Only the owner, org admins and explicit grantees (default).
    #[default]
    Private,
    /// Everyone in the organization can read it.
    Organization,
    /// Every authenticated principal of any organization can read it.
    Public,
}

impl From<Visibility> for AccessMode {
    fn from(v: Visibility) -> AccessMode {
        match v {
            Visibility::Private => AccessMode::Private,
            Visibility::Organization => AccessMode::Organization,
            Visibility::Public => AccessMode::Public,
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// What to look for (1–4096 characters).
    query: String,
    /// Spaces to search (plus their readable linked spaces); default: every space you can read.
    space_ids: Option<Vec<String>>,
    mode: Option<Mode>,
    /// 1–100, default 10.
    limit: Option<i32>,
    /// Only memories with any of these tags.
    tags: Option<Vec<String>>,
    /// Only memories written for this agent id.
    agent_id: Option<String>,
    /// Only memories of this conversation thread.
    thread_id: Option<String>,
    /// Drop hits scoring below this (in the mode's own scale).
    min_score: Option<f64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMemory {
    /// 1–32,768 characters.
    content: String,
    /// Up to 50 tags of 1–64 characters.
    #[serde(default)]
    tags: Vec<String>,
    /// A JSON object of at most 16 KiB.
    metadata: Option<JsonObject>,
    /// 1–10, default 5.
    importance: Option<i32>,
    /// 0.0–1.0, default 1.0.
    confidence: Option<f64>,
    /// The conversation thread it belongs to.
    thread_id: Option<String>,
    /// An agent of the space's organization it is about or for.
    agent_id: Option<String>,
    /// When it expires (RFC 3339, in the future).
    expires_at: Option<DateTime<Utc>>,
    /// Its id in the system it comes from: writing an external_id that exists in the space
    /// returns the existing memory, so a retry is safe.
    external_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddArgs {
    /// The space to write to (EDIT permission needed).
    space_id: String,
    /// 1–1000 memories, written in one transaction (all or none).
    memories: Vec<NewMemory>,
    /// What to do when a memory duplicates one already in the space; default: the space's policy.
    on_duplicate: Option<OnDuplicate>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryIdArgs {
    memory_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    memory_id: String,
    /// Fail with CONFLICT unless the memory is still at this version (from get_memory).
    expected_version: Option<i32>,
    /// New content; omitted fields stay unchanged.
    content: Option<String>,
    /// Replaces the tags.
    tags: Option<Vec<String>>,
    /// Replaces the metadata (a JSON object).
    metadata: Option<JsonObject>,
    importance: Option<i32>,
    confidence: Option<f64>,
    thread_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSpacesArgs {
    /// A glob on the name: `Research*`, `*kb?`.
    name: Option<String>,
    /// Page size, 1–1000 (default 50).
    first: Option<i32>,
    /// The next_cursor of the previous page.
    cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpaceIdArgs {
    space_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelArg {
    key: String,
    value: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSpaceArgs {
    /// 1–255 characters, unique among the owner's spaces.
    name: String,
    /// At most 500 characters.
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    labels: Vec<LabelArg>,
    visibility: Option<Visibility>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecentArgs {
    space_id: String,
    /// How many, newest first: 1–1000 (default 20).
    limit: Option<i32>,
    /// The next_cursor of the previous page.
    cursor: Option<String>,
}

fn list_text(header: String, lines: Vec<String>) -> String {
    if lines.is_empty() {
        header
    } else {
        format!("{header}\n{}", lines.join("\n"))
    }
}

#[tool_router(router = tools, vis = "pub(super)")]
impl Memspace {
    /// Search memories by meaning and keywords in the spaces you can read. Counts as a recall of
    /// each hit (its recall_count goes up); changes nothing else.
    #[tool(
        input_schema = schema_for_type::<SearchArgs>(),
        annotations(
            title = "Search memories",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn search_memories(
        &self,
        args: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(
            "search_memories",
            args,
            &ctx,
            |who, a: SearchArgs| async move {
                let space_ids = a
                    .space_ids
                    .map(|ids| ids.iter().map(|id| resource_id("space", id)).collect())
                    .transpose()?;
                let filter = MemoryFilter {
                    tags: a.tags.unwrap_or_default(),
                    agent_id: a
                        .agent_id
                        .as_deref()
                        .map(|x| input_id("agent_id", x))
                        .transpose()?,
                    thread_id: a.thread_id,
                    ..Default::default()
                };
                let req = SearchRequest {
                    query: a.query,
                    space_ids,
                    mode: a.mode.unwrap_or_default().into(),
                    filter,
                    limit: a.limit.unwrap_or(10),
                    min_score: a.min_score,
                };
                let db = self.db();
                let hits = search::search(
                    db,
                    &self.shared.index,
                    &self.shared.recall,
                    &who.principal,
                    req,
                )
                .await?;
                let models: Vec<entity::memory::Model> =
                    hits.iter().map(|h| h.memory.clone()).collect();
                let views = views::memories(&db.read, &models).await?;
                let lines: Vec<String> = views.iter().map(views::memory_line).collect();
                let hits: Vec<Value> = hits
                    .iter()
                    .zip(views)
                    .map(|(h, m)| json!({ "memory": m, "score": h.score, "chunk": h.chunk }))
                    .collect();
                Ok(Done {
                    text: list_text(format!("{} memories found", hits.len()), lines),
                    structured: json!({ "hits": hits }),
                })
            },
        )
        .await
    }

    /// Remember one or many things in a space: content with optional tags, importance (1–10),
    /// metadata, thread and duplicate policy. All are written in one transaction, or none.
    #[tool(
        input_schema = schema_for_type::<AddArgs>(),
        annotations(
            title = "Add memories",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn add_memories(
        &self,
        args: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run("add_memories", args, &ctx, |who, a: AddArgs| async move {
            let space_id = resource_id("space", &a.space_id)?;
            let policy = a.on_duplicate.map(DuplicatePolicy::from);
            let batch = a.memories.len() != 1;
            let drafts: Vec<MemoryDraft> = a
                .memories
                .into_iter()
                .map(|m| MemoryDraft {
                    content: m.content,
                    tags: m.tags,
                    metadata: m.metadata.map(Value::Object),
                    importance: m.importance,
                    confidence: m.confidence,
                    agent_id: m.agent_id,
                    thread_id: m.thread_id,
                    expires_at: m.expires_at,
                    external_id: m.external_id,
                    on_duplicate: policy,
                })
                .collect();
            let db = self.db();
            let rows = memories::create_many(
                db,
                &self.shared.index,
                &who.principal,
                space_id,
                drafts,
                batch,
            )
            .await?;
            let views = views::memories(&db.read, &rows).await?;
            let lines: Vec<String> = views.iter().map(views::memory_line).collect();
            Ok(Done {
                text: list_text(format!("{} memories stored", views.len()), lines),
                structured: json!({ "memories": views }),
            })
        })
        .await
    }

    /// One memory by id, with its version (for update_memory's expected_version).
    #[tool(
        input_schema = schema_for_type::<MemoryIdArgs>(),
        annotations(
            title = "Get a memory",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn get_memory(
        &self,
        args: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(
            "get_memory",
            args,
            &ctx,
            |who, a: MemoryIdArgs| async move {
                let id = resource_id("memory", &a.memory_id)?;
                let db = self.db();
                let m = memories::get(db, &who.principal, id).await?;
                let view = views::memory(&db.read, &m).await?;
                Ok(Done {
                    text: views::memory_line(&view),
                    structured: json!({ "memory": view }),
                })
            },
        )
        .await
    }

    /// Change a memory: only the fields given change. Pass expected_version to fail with
    /// CONFLICT instead of overwriting someone else's change.
    #[tool(
        input_schema = schema_for_type::<UpdateArgs>(),
        annotations(
            title = "Update a memory",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn update_memory(
        &self,
        args: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(
            "update_memory",
            args,
            &ctx,
            |who, a: UpdateArgs| async move {
                let id = resource_id("memory", &a.memory_id)?;
                let patch = MemoryPatch {
                    expected_version: a.expected_version,
                    content: a.content,
                    tags: a.tags,
                    metadata: a.metadata.map(|m| Some(Value::Object(m))),
                    importance: a.importance,
                    confidence: a.confidence,
                    thread_id: a.thread_id.map(Some),
                    expires_at: None,
                };
                let db = self.db();
                let m = memories::update(db, &self.shared.index, &who.principal, id, patch).await?;
                let view = views::memory(&db.read, &m).await?;
                Ok(Done {
                    text: format!(
                        "updated (now version {})\n{}",
                        m.version,
                        views::memory_line(&view)
                    ),
                    structured: json!({ "memory": view }),
                })
            },
        )
        .await
    }

    /// Delete a memory permanently.
    #[tool(
        input_schema = schema_for_type::<MemoryIdArgs>(),
        annotations(
            title = "Delete a memory",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_memory(
        &self,
        args: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(
            "delete_memory",
            args,
            &ctx,
            |who, a: MemoryIdArgs| async move {
                let id = resource_id("memory", &a.memory_id)?;
                let gone = memories::delete(self.db(), &self.shared.index, &who.principal, id)
                    .await?
                    .id;
                Ok(Done {
                    text: format!("memory {gone} deleted"),
                    structured: json!({ "deleted_id": gone.to_string() }),
                })
            },
        )
        .await
    }

    /// The spaces you can read, newest first, with your permission on each; filter by a name
    /// glob; page with next_cursor.
    #[tool(
        input_schema = schema_for_type::<ListSpacesArgs>(),
        annotations(
            title = "List spaces",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_spaces(
        &self,
        args: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(
            "list_spaces",
            args,
            &ctx,
            |who, a: ListSpacesArgs| async move {
                let db = self.db();
                let query = ListQuery {
                    first: a.first,
                    after: a.cursor,
                    filter: ListFilter {
                        name_glob: a.name,
                        ..Default::default()
                    },
                    descending: true,
                    with_grants: true,
                    ..Default::default()
                };
                let page = spaces::list(db, &who.principal, query).await?.page;
                let next = if page.has_next_page {
                    page.items
                        .last()
                        .map(|a| spaces::cursor_of(&a.space, Default::default()))
                } else {
                    None
                };
                let views = views::spaces(&db.read, &page.items).await?;
                let lines: Vec<String> = views.iter().map(views::space_line).collect();
                Ok(Done {
                    text: list_text(format!("{} spaces", views.len()), lines),
                    structured: json!({ "spaces": views, "next_cursor": next }),
                })
            },
        )
        .await
    }

    /// One space by id: its description, tags, labels and your permission on it.
    #[tool(
        input_schema = schema_for_type::<SpaceIdArgs>(),
        annotations(
            title = "Get a space",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn get_space(&self, args: JsonObject, ctx: RequestContext<RoleServer>) -> CallToolResult {
        self.run("get_space", args, &ctx, |who, a: SpaceIdArgs| async move {
            let id = resource_id("space", &a.space_id)?;
            let db = self.db();
            let access = spaces::get(db, &who.principal, id).await?;
            let view = views::space(&db.read, &access).await?;
            Ok(Done {
                text: views::space_line(&view),
                structured: json!({ "space": view }),
            })
        })
        .await
    }

    /// Create a space you own (private by default).
    #[tool(
        input_schema = schema_for_type::<CreateSpaceArgs>(),
        annotations(
            title = "Create a space",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_space(
        &self,
        args: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(
            "create_space",
            args,
            &ctx,
            |who, a: CreateSpaceArgs| async move {
                let db = self.db();
                let input = NewSpace {
                    name: a.name,
                    description: a.description,
                    tags: a.tags,
                    labels: a.labels.into_iter().map(|l| (l.key, l.value)).collect(),
                    access_mode: a.visibility.unwrap_or_default().into(),
                    ..Default::default()
                };
                let access = spaces::create(db, &db.embedders, &who.principal, input).await?;
                let view = views::space(&db.read, &access).await?;
                Ok(Done {
                    text: format!("created {}", views::space_line(&view)),
                    structured: json!({ "space": view }),
                })
            },
        )
        .await
    }

    /// The newest memories of a space: "what do we know so far". Page with next_cursor.
    #[tool(
        input_schema = schema_for_type::<RecentArgs>(),
        annotations(
            title = "Recent memories",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn recent_memories(
        &self,
        args: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(
            "recent_memories",
            args,
            &ctx,
            |who, a: RecentArgs| async move {
                let id = resource_id("space", &a.space_id)?;
                let db = self.db();
                let (space, rows, next) = super::resources::recent(
                    db,
                    &who,
                    id,
                    Some(a.limit.unwrap_or(20)),
                    a.cursor.as_deref(),
                )
                .await?;
                let views = views::memories(&db.read, &rows).await?;
                let lines: Vec<String> = views.iter().map(views::memory_line).collect();
                Ok(Done {
                    text: list_text(
                        format!("{} newest memories of {}", views.len(), space.space.name),
                        lines,
                    ),
                    structured: json!({ "memories": views, "next_cursor": next }),
                })
            },
        )
        .await
    }
}
