//! `searchMemories`.
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};

use crate::context::{resource_id, Ctx};
use crate::memories::{Memory, MemoryFilterInput};
use memspace_core::limits;
use memspace_core::vocab::EmbedderKind;
use memspace_core::vocab::SearchMode;
use memspace_domain::search::{self as service, SearchRequest};

#[derive(InputObject)]
pub struct SearchInput {
    /// What to look for (1–4096 characters).
    query: String,
    /// Spaces to search (plus their readable linked spaces); default: every space you can read.
    /// An id you cannot read → NOT_FOUND. At most 1000 ids.
    space_ids: Option<Vec<ID>>,
    #[graphql(default)]
    mode: SearchMode,
    filter: Option<MemoryFilterInput>,
    /// 1–100, default 10.
    #[graphql(default = 10)]
    limit: i32,
    /// Drop hits scoring below this (in the mode's own scale).
    min_score: Option<f64>,
}

/// A memory found by a search.
#[derive(SimpleObject)]
pub struct MemoryHit {
    memory: Memory,
    /// KEYWORD: BM25 (SQLite) or ts_rank_cd (PostgreSQL); SEMANTIC: cosine; HYBRID: RRF.
    score: f64,
    /// The best-matching chunk of the memory.
    chunk: String,
}

/// An embedder of this server, and whether it can be used.
#[derive(SimpleObject)]
pub struct EmbedderStatus {
    name: String,
    /// Length of the vectors (0 while a remote embedder has not answered yet).
    dimension: i32,
    kind: EmbedderKind,
    /// Whether new spaces can choose it and writes can use it now.
    available: bool,
    /// Whether spaces created without `embedder` get it.
    is_default: bool,
    /// Why it is unavailable, and how to fix it.
    unavailable_reason: Option<String>,
}

#[derive(Default)]
pub struct SearchQuery;

#[Object]
impl SearchQuery {
    /// The embedders a space can choose at creation, with the ones configured but unavailable.
    async fn embedders(&self, ctx: &Context<'_>) -> Result<Vec<EmbedderStatus>> {
        ctx.principal()?;
        let registry = &ctx.db().embedders;
        let default = registry.default_name();
        let available = registry.available().iter().map(|e| EmbedderStatus {
            name: e.name().to_string(),
            dimension: e.dimension() as i32,
            kind: e.kind(),
            available: true,
            is_default: e.name() == default,
            unavailable_reason: None,
        });
        let unavailable = registry.unavailable_all().iter().map(|u| EmbedderStatus {
            name: u.name.clone(),
            dimension: u.dimension as i32,
            kind: u.kind,
            available: false,
            is_default: false,
            unavailable_reason: Some(u.reason.clone()),
        });
        Ok(available.chain(unavailable).collect())
    }

    /// Finds memories by meaning, keyword, or both, in the spaces the caller can read.
    async fn search_memories(
        &self,
        ctx: &Context<'_>,
        input: SearchInput,
    ) -> Result<Vec<MemoryHit>> {
        let p = ctx.principal()?;
        limits::chars("query", &input.query, limits::MAX_QUERY_CHARS)?;
        limits::opt_list(
            "spaceIds",
            input.space_ids.as_deref(),
            limits::MAX_SEARCH_SPACES,
        )?;
        let space_ids = input
            .space_ids
            .map(|ids| {
                ids.iter()
                    .map(|id| resource_id("space", id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let req = SearchRequest {
            query: input.query,
            space_ids,
            mode: input.mode,
            filter: input.filter.unwrap_or_default().parse()?,
            limit: input.limit,
            min_score: input.min_score,
        };
        let hits = service::search(ctx.db(), ctx.index(), ctx.recall(), p, req).await?;
        let models: Vec<entity::memory::Model> = hits.iter().map(|h| h.memory.clone()).collect();
        crate::memories::prefetch_memories(ctx, ctx.look_ahead().field("memory"), &models).await?;
        Ok(hits
            .into_iter()
            .map(|h| MemoryHit {
                memory: Memory(h.memory),
                score: h.score,
                chunk: h.chunk,
            })
            .collect())
    }
}
