//! `searchMemories`, in phases: validate -> [`scope`] (the spaces the caller can read, plus
//! their readable linked spaces) -> [`rank`] (keyword and semantic rankings) -> filter (the
//! memory filters and expiry in one SQL over the candidates, then fusion) -> chunks (each
//! hit's best chunk) -> [`recall`] (counters, activity and audit, off the request path).
pub mod rank;
pub mod recall;
pub mod scope;

use std::collections::{HashMap, HashSet};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::db::Db;
use crate::memories::service::{self as memories, MemoryFilter};
use entity::{chunk, memory};
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;
pub use memspace_core::vocab::SearchMode;
use memspace_engine::embedder::words;
use memspace_engine::fusion::rrf;
use memspace_engine::vector_index::VectorIndex;
use rank::Rankings;
pub use recall::Recall;

#[derive(Clone, Debug)]
pub struct SearchRequest {
    pub query: String,
    pub space_ids: Option<Vec<Uuid>>,
    pub mode: SearchMode,
    pub filter: MemoryFilter,
    pub limit: i32,
    pub min_score: Option<f64>,
}

pub struct Hit {
    pub memory: memory::Model,
    pub score: f64,
    pub chunk: String,
}

use memspace_core::limits::MAX_QUERY_CHARS;
pub use memspace_core::limits::MAX_SEARCH_LIMIT as MAX_LIMIT;

/// A memory that passed the filters, its score, and its best chunk's ordinal when the semantic
/// ranking found it.
struct Found {
    memory: memory::Model,
    score: f64,
    ord: Option<i32>,
}

pub async fn search(
    db: &Db,
    index: &VectorIndex,
    recall: &Recall,
    principal: &Principal,
    req: SearchRequest,
) -> AppResult<Vec<Hit>> {
    Ok(search_page(db, index, recall, principal, req, 0).await?.0)
}

/// How far `memorySearch` pages: through a search's best 1,000 hits.
pub const MAX_WINDOW: usize = 1000;

/// `req.limit` hits after the best `offset`, and whether more follow (within [`MAX_WINDOW`]).
/// Only the returned hits count as recalled.
pub async fn search_page(
    db: &Db,
    index: &VectorIndex,
    recall: &Recall,
    principal: &Principal,
    req: SearchRequest,
    offset: usize,
) -> AppResult<(Vec<Hit>, bool)> {
    let query = validate(&req)?;
    let limit = req.limit as usize;
    if offset + limit > MAX_WINDOW {
        return Err(AppError::invalid_argument(
            "after",
            format!("a search pages through its best {MAX_WINDOW} hits"),
        ));
    }
    let scope = scope::resolve(&db.read, principal, req.space_ids.as_deref()).await?;
    if scope.spaces.is_empty() {
        return Ok((Vec::new(), false));
    }
    // One more than the page, to know whether another follows.
    let window = (offset + limit + 1).min(MAX_WINDOW);
    let filter_cond = memories::filter_condition(&req.filter)?;
    let mut depth = first_depth(req.mode, window);
    let found = loop {
        let rankings = rank::rank(db, index, &scope, &query, req.mode, &filter_cond, depth).await?;
        // A ranking that came back full may hold more below its cut.
        let full = rankings.keyword.len() >= depth || rankings.semantic.len() >= depth;
        let (found, dropped) = filter(db, rankings, &req, window).await?;
        // The filters (or expiry, or a concurrent delete) took candidates, and the page is
        // short: rank deeper.
        if found.len() >= window || !dropped || !full || depth >= MAX_DEPTH {
            break found;
        }
        depth = (depth * 4).min(MAX_DEPTH);
    };
    let more = found.len() > offset + limit;
    let found: Vec<Found> = found.into_iter().skip(offset).take(limit).collect();
    if found.is_empty() {
        return Ok((Vec::new(), false));
    }
    let hits = chunks(db, &query, found).await?;

    let ids: Vec<Uuid> = hits.iter().map(|h| h.memory.id).collect();
    let hit_spaces: HashSet<Uuid> = hits.iter().map(|h| h.memory.space_id).collect();
    let spaces: Vec<(Uuid, Uuid)> = scope
        .spaces
        .iter()
        .filter(|s| hit_spaces.contains(&s.id))
        .map(|s| (s.id, s.organization_id))
        .collect();
    recall.record(principal, &ids, &spaces).await?;
    Ok((hits, more))
}

/// The deepest a ranking goes (a search whose filters reject almost everything).
const MAX_DEPTH: usize = 5 * MAX_WINDOW;

/// Candidates per ranking at first. A single ranking needs only the window (the filters
/// usually pass them all; when they do not, the search ranks deeper); the fusion of two needs
/// room below it, since a memory high in one ranking may sit low in the other.
fn first_depth(mode: SearchMode, window: usize) -> usize {
    match mode {
        SearchMode::Semantic | SearchMode::Keyword => window,
        SearchMode::Hybrid => (window * 5).max(50),
    }
}

/// The query, trimmed, once the request is known to be well-formed.
fn validate(req: &SearchRequest) -> AppResult<String> {
    memspace_core::validate::no_nul("query", &req.query)?;
    let query = req.query.trim().to_string();
    if query.is_empty() {
        return Err(AppError::validation("query", "must not be blank"));
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(AppError::validation(
            "query",
            format!("must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    if !(1..=MAX_LIMIT).contains(&req.limit) {
        return Err(AppError::invalid_argument(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if req.min_score.is_some_and(|s| !s.is_finite()) {
        return Err(AppError::validation("minScore", "must be a finite number"));
    }
    Ok(query)
}

/// Filters (and expiry) in one SQL over the candidates of both rankings, then the mode's
/// ranking of what passed, `minScore`, and the limit; and whether the filters dropped any
/// candidate.
async fn filter(
    db: &Db,
    rankings: Rankings,
    req: &SearchRequest,
    limit: usize,
) -> AppResult<(Vec<Found>, bool)> {
    let candidates: Vec<Uuid> = rankings
        .keyword
        .iter()
        .map(|(id, _)| *id)
        .chain(rankings.semantic.iter().map(|(id, _, _)| *id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut passed: HashMap<Uuid, memory::Model> =
        memories::matching(&db.read, &candidates, &req.filter)
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
    let dropped = passed.len() < candidates.len();
    let keyword: Vec<(Uuid, f64)> = rankings
        .keyword
        .into_iter()
        .filter(|(id, _)| passed.contains_key(id))
        .collect();
    let semantic: Vec<(Uuid, f64, i32)> = rankings
        .semantic
        .into_iter()
        .filter(|(id, _, _)| passed.contains_key(id))
        .collect();
    let best_ord: HashMap<Uuid, i32> = semantic.iter().map(|(id, _, o)| (*id, *o)).collect();
    let ranked: Vec<(Uuid, f64)> = match req.mode {
        SearchMode::Keyword => keyword,
        SearchMode::Semantic => semantic.iter().map(|(id, s, _)| (*id, *s)).collect(),
        SearchMode::Hybrid => rrf(&[
            keyword.iter().map(|(id, _)| *id).collect(),
            semantic.iter().map(|(id, _, _)| *id).collect(),
        ]),
    };
    let found = ranked
        .into_iter()
        .filter(|(_, s)| req.min_score.is_none_or(|min| *s >= min))
        .take(limit)
        .filter_map(|(id, score)| {
            passed.remove(&id).map(|memory| Found {
                memory,
                score,
                ord: best_ord.get(&id).copied(),
            })
        })
        .collect();
    Ok((found, dropped))
}

/// Each hit with its best chunk: the one the semantic ranking scored, or for a keyword-only
/// hit the chunk sharing most query terms.
async fn chunks(db: &Db, query: &str, found: Vec<Found>) -> AppResult<Vec<Hit>> {
    let ids: Vec<Uuid> = found.iter().map(|f| f.memory.id).collect();
    // The texts only (not the embeddings).
    let chunks: Vec<(Uuid, i32, String)> = chunk::Entity::find()
        .select_only()
        .column(chunk::Column::MemoryId)
        .column(chunk::Column::Ord)
        .column(chunk::Column::Text)
        .filter(chunk::Column::MemoryId.is_in(ids))
        .order_by_asc(chunk::Column::Ord)
        .into_tuple()
        .all(&db.read)
        .await?;
    let terms: HashSet<String> = words(query).collect();
    Ok(found
        .into_iter()
        .map(|f| {
            let mine: Vec<&(Uuid, i32, String)> = chunks
                .iter()
                .filter(|(memory_id, _, _)| *memory_id == f.memory.id)
                .collect();
            let text = match f.ord {
                Some(ord) => mine.iter().find(|c| c.1 == ord).map(|c| c.2.clone()),
                None => mine
                    .iter()
                    .max_by_key(|c| (words(&c.2).filter(|w| terms.contains(w)).count(), -c.1))
                    .map(|c| c.2.clone()),
            };
            Hit {
                chunk: text.unwrap_or_else(|| f.memory.content.clone()),
                memory: f.memory,
                score: f.score,
            }
        })
        .collect())
}
