//! `searchMemories`.
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};

use crate::context::{resource_id, Ctx};
use crate::memories::{Memory, MemoryFilterInput};
use crate::page::PageInfo;
use memspace_core::error::AppError;
use memspace_core::limits;
use memspace_core::page::Cursor;
use memspace_core::vocab::EmbedderKind;
use memspace_core::vocab::SearchMode;
use memspace_domain::search::{self as service, SearchRequest};

/// A search over memories.
#[derive(InputObject)]
pub struct SearchInput {
    /// What to look for (1–4096 characters).
    query: String,
    /// Spaces to search (plus their readable linked spaces); default: every space you can read.
    /// An id you cannot read → NOT_FOUND. At most 1000 ids.
    space_ids: Option<Vec<ID>>,
    /// How to rank: HYBRID (default), SEMANTIC or KEYWORD.
    #[graphql(default)]
    mode: SearchMode,
    /// Only memories matching this filter.
    filter: Option<MemoryFilterInput>,
    /// 1–100, default 10.
    #[graphql(default = 10)]
    limit: i32,
    /// Drop hits scoring below this (in the mode's own scale).
    min_score: Option<f64>,
}

/// A memory found by a search. Not a `Node`: a hit belongs to the search that found it, so a
/// normalising cache should embed it in its parent (Apollo: `keyFields: false`); the memory
/// inside is normalised by its own id.
#[derive(SimpleObject)]
pub struct MemoryHit {
    /// The memory found.
    memory: Memory,
    /// KEYWORD: BM25 (SQLite) or ts_rank_cd (PostgreSQL); SEMANTIC: cosine; HYBRID: RRF.
    score: f64,
    /// The best-matching chunk of the memory.
    chunk: String,
}

/// A hit with its position in the ranking.
#[derive(SimpleObject)]
pub struct MemoryHitEdge {
    /// Opaque position: pass it as `after` for the hits that follow.
    cursor: String,
    /// The hit.
    node: MemoryHit,
}

/// One page of a search's ranking, best first. There is no `totalCount`: a ranking has no
/// cheap total (every matching memory would have to be scored).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct MemoryHitConnection {
    /// The hits of this page, best first, with their cursors.
    edges: Vec<MemoryHitEdge>,
    /// Whether more hits follow (`hasNextPage`, `endCursor`).
    page_info: PageInfo,
}

#[async_graphql::ComplexObject]
impl MemoryHitConnection {
    /// The edges' nodes, for clients that need no cursors per item.
    async fn nodes(&self) -> Vec<&MemoryHit> {
        self.edges.iter().map(|e| &e.node).collect()
    }
}

const CURSOR_KIND: &str = "search";

fn search_cursor(position: usize) -> String {
    Cursor::new(CURSOR_KIND, vec![position.to_string()]).encode()
}

/// The ranking position after `cursor` (malformed → INVALID_ARGUMENT on `after`).
fn offset_after(cursor: Option<&str>) -> Result<usize, AppError> {
    let Some(raw) = cursor else { return Ok(0) };
    let c = Cursor::decode("after", raw, CURSOR_KIND, 1)?;
    c.values[0]
        .parse::<usize>()
        .map(|p| p + 1)
        .map_err(|_| AppError::invalid_argument("after", "malformed or foreign cursor"))
}

impl SearchInput {
    fn request(self, limit: i32) -> Result<SearchRequest> {
        limits::chars("query", &self.query, limits::MAX_QUERY_CHARS)?;
        limits::opt_list(
            "spaceIds",
            self.space_ids.as_deref(),
            limits::MAX_SEARCH_SPACES,
        )?;
        let space_ids = self
            .space_ids
            .map(|ids| {
                ids.iter()
                    .map(|id| resource_id("space", id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(SearchRequest {
            query: self.query,
            space_ids,
            mode: self.mode,
            filter: self.filter.unwrap_or_default().parse()?,
            limit,
            min_score: self.min_score,
        })
    }
}

/// An embedder of this server, and whether it can be used.
#[derive(SimpleObject)]
pub struct EmbedderStatus {
    /// Embedder name, to pass as `CreateSpaceInput.embedder`.
    name: String,
    /// Length of the vectors (0 while a remote embedder has not answered yet).
    dimension: i32,
    /// What kind of model it is.
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
    #[graphql(
        deprecation = "Use `memorySearch`: the same ranking as a Relay connection (cursors, `pageInfo`, `nodes`)."
    )]
    async fn search_memories(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to search, where and how.")] input: SearchInput,
    ) -> Result<Vec<MemoryHit>> {
        let p = ctx.principal()?;
        let limit = input.limit;
        let req = input.request(limit)?;
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

    /// `searchMemories` as a Relay connection: `first` hits (default `input.limit`, 1–100)
    /// after the cursor `after`, best first, through the best 1,000 hits of the ranking.
    async fn memory_search(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to search, where and how.")] input: SearchInput,
        #[graphql(desc = "Hits per page: default `input.limit`, clamped to 1–100.")] first: Option<
            i32,
        >,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
    ) -> Result<MemoryHitConnection> {
        let p = ctx.principal()?;
        // `first` is clamped like every connection's; `input.limit` is validated as in
        // `searchMemories`.
        let limit = first.map_or(input.limit, |f| f.clamp(1, service::MAX_LIMIT));
        let offset = offset_after(after.as_deref())?;
        let req = input.request(limit)?;
        let (hits, more) =
            service::search_page(ctx.db(), ctx.index(), ctx.recall(), p, req, offset).await?;
        let models: Vec<entity::memory::Model> = hits.iter().map(|h| h.memory.clone()).collect();
        let node = ctx
            .look_ahead()
            .field("edges")
            .field("node")
            .field("memory");
        crate::memories::prefetch_memories(ctx, node, &models).await?;
        let short = ctx.look_ahead().field("nodes").field("memory");
        crate::memories::prefetch_memories(ctx, short, &models).await?;
        let edges: Vec<MemoryHitEdge> = hits
            .into_iter()
            .enumerate()
            .map(|(i, h)| MemoryHitEdge {
                cursor: search_cursor(offset + i),
                node: MemoryHit {
                    memory: Memory(h.memory),
                    score: h.score,
                    chunk: h.chunk,
                },
            })
            .collect();
        let page_info = PageInfo {
            has_next_page: more,
            has_previous_page: offset > 0,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Ok(MemoryHitConnection { edges, page_info })
    }
}
