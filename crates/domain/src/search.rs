//! `searchMemories`: scope (spaces the caller can read, plus their readable linked spaces),
//! keyword and semantic rankings, fusion, filters, and the side effects of a recall.
use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{Expr, IntoIden, LockType, Order, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::audit;
use crate::db::Db;
use crate::memories::service::{self as memories, MemoryFilter};
use crate::spaces::service as spaces;
use entity::{chunk, memory, space, space_grant, space_link};
use memspace_core::access::{self, Permission};
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;
pub use memspace_core::vocab::SearchMode;
use memspace_engine::embedder::{words, EmbedError};
use memspace_engine::fusion::rrf;
use memspace_engine::keyword;
use memspace_engine::vector_index::VectorIndex;

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

pub const MAX_LIMIT: i32 = 100;
const MAX_QUERY_CHARS: usize = 4096;

/// The spaces a search runs over, each readable by the principal and not deleted.
async fn scope(
    db: &impl ConnectionTrait,
    principal: &Principal,
    space_ids: Option<&[Uuid]>,
) -> AppResult<Vec<space::Model>> {
    match space_ids {
        None => Ok(space::Entity::find()
            .filter(access::visible_spaces(principal))
            .filter(space::Column::DeletedAt.is_null())
            .all(db)
            .await?),
        Some(ids) => {
            let mut chosen: Vec<space::Model> = Vec::new();
            for id in ids {
                let a = spaces::load(db, principal, *id).await?;
                if a.space.deleted_at.is_some() {
                    return Err(AppError::not_found("space", id));
                }
                if !chosen.iter().any(|s| s.id == a.space.id) {
                    chosen.push(a.space);
                }
            }
            // Linked spaces join the search when the caller can read them.
            let links: Vec<Uuid> = space_link::Entity::find()
                .filter(space_link::Column::SpaceId.is_in(ids.iter().copied()))
                .all(db)
                .await?
                .into_iter()
                .map(|l| l.linked_space_id)
                .filter(|id| !chosen.iter().any(|s| s.id == *id))
                .collect();
            if !links.is_empty() {
                let linked = space::Entity::find()
                    .filter(space::Column::Id.is_in(links.clone()))
                    .filter(space::Column::DeletedAt.is_null())
                    .all(db)
                    .await?;
                let grants = space_grant::Entity::find()
                    .filter(space_grant::Column::SpaceId.is_in(links))
                    .all(db)
                    .await?;
                for s in linked {
                    if access::permission(principal, &s, &grants) >= Permission::View {
                        chosen.push(s);
                    }
                }
            }
            Ok(chosen)
        }
    }
}

pub async fn search(
    db: &Db,
    index: &VectorIndex,
    principal: &Principal,
    req: SearchRequest,
) -> AppResult<Vec<Hit>> {
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
    let spaces = scope(&db.read, principal, req.space_ids.as_deref()).await?;
    if spaces.is_empty() {
        return Ok(Vec::new());
    }
    let space_ids: Vec<Uuid> = spaces.iter().map(|s| s.id).collect();
    let limit = req.limit as usize;
    // Candidates per ranking: more than the limit, so filters and fusion have room.
    let depth = (limit * 5).max(50);

    let keyword_ranked = if req.mode != SearchMode::Semantic {
        keyword::search(&db.read, &query, &space_ids, depth as u64).await?
    } else {
        Vec::new()
    };
    let mut semantic_ranked: Vec<(Uuid, f64, i32)> = Vec::new();
    if req.mode != SearchMode::Keyword {
        // The query is embedded once per distinct embedder. A space whose embedder cannot
        // answer now is left out of the semantic ranking (HYBRID still has its keyword half);
        // a SEMANTIC search fails only when no space it covers could be ranked at all.
        let mut by_embedder: HashMap<&str, Vec<f32>> = HashMap::new();
        let mut failed: Vec<(&str, EmbedError)> = Vec::new();
        for s in &spaces {
            let name = s.embedder.as_str();
            if by_embedder.contains_key(name) || failed.iter().any(|f| f.0 == name) {
                continue;
            }
            match db.embedders.embed(name, vec![query.clone()]).await {
                Ok(mut v) => {
                    by_embedder.insert(name, v.pop().unwrap_or_default());
                }
                Err(e) => {
                    tracing::warn!(embedder = %name, reason = %e.0, "query not embedded");
                    failed.push((name, e));
                }
            }
        }
        if by_embedder.is_empty() && req.mode == SearchMode::Semantic {
            if let Some((name, e)) = failed.into_iter().next() {
                return Err(AppError::embedder(name)(e));
            }
        }
        for s in &spaces {
            let Some(qv) = by_embedder.get(s.embedder.as_str()) else {
                continue;
            };
            for h in index
                .search(&db.read, s.id, s.vector_version, qv, depth)
                .await?
            {
                if h.score > 0.0 {
                    semantic_ranked.push((h.memory_id, f64::from(h.score), h.ord));
                }
            }
        }
        semantic_ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        semantic_ranked.truncate(depth);
    }

    // Filters (and expiry) in SQL over the candidates, then rank what passed.
    let candidates: Vec<Uuid> = keyword_ranked
        .iter()
        .map(|(id, _)| *id)
        .chain(semantic_ranked.iter().map(|(id, _, _)| *id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let passed: HashMap<Uuid, memory::Model> =
        memories::matching(&db.read, &candidates, &req.filter)
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
    let keyword_ranked: Vec<(Uuid, f64)> = keyword_ranked
        .into_iter()
        .filter(|(id, _)| passed.contains_key(id))
        .collect();
    let semantic_ranked: Vec<(Uuid, f64, i32)> = semantic_ranked
        .into_iter()
        .filter(|(id, _, _)| passed.contains_key(id))
        .collect();
    let best_ord: HashMap<Uuid, i32> = semantic_ranked.iter().map(|(id, _, o)| (*id, *o)).collect();

    let ranked: Vec<(Uuid, f64)> = match req.mode {
        SearchMode::Keyword => keyword_ranked,
        SearchMode::Semantic => semantic_ranked.iter().map(|(id, s, _)| (*id, *s)).collect(),
        SearchMode::Hybrid => rrf(&[
            keyword_ranked.iter().map(|(id, _)| *id).collect(),
            semantic_ranked.iter().map(|(id, _, _)| *id).collect(),
        ]),
    };
    let ranked: Vec<(Uuid, f64)> = ranked
        .into_iter()
        .filter(|(_, s)| req.min_score.is_none_or(|min| *s >= min))
        .take(limit)
        .collect();
    if ranked.is_empty() {
        return Ok(Vec::new());
    }

    let hit_ids: Vec<Uuid> = ranked.iter().map(|(id, _)| *id).collect();
    let chunks = chunk::Entity::find()
        .filter(chunk::Column::MemoryId.is_in(hit_ids.clone()))
        .order_by_asc(chunk::Column::Ord)
        .all(&db.read)
        .await?;
    let terms: HashSet<String> = words(&query).collect();
    let mut hits = Vec::with_capacity(ranked.len());
    for (id, score) in ranked {
        let Some(mut m) = passed.get(&id).cloned() else {
            continue;
        };
        let mine: Vec<&chunk::Model> = chunks.iter().filter(|c| c.memory_id == id).collect();
        let chunk_text = match best_ord.get(&id) {
            Some(ord) => mine.iter().find(|c| c.ord == *ord).map(|c| c.text.clone()),
            // Keyword-only hit: the chunk sharing most query terms.
            None => mine
                .iter()
                .max_by_key(|c| (words(&c.text).filter(|w| terms.contains(w)).count(), -c.ord))
                .map(|c| c.text.clone()),
        }
        .unwrap_or_else(|| m.content.clone());
        m.recall_count += 1;
        hits.push(Hit {
            memory: m,
            score,
            chunk: chunk_text,
        });
    }

    // A recall: counters, activity, and the audit trail of cross-tenant reads. Concurrent
    // searches hit overlapping rows, so rows are locked in id order (PostgreSQL), which rules
    // out deadlocks; activity is only written when it is more than a second old, which keeps a
    // popular space's row from becoming a queue.
    let postgres = db.write.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    let ordered =
        |table: sea_orm::sea_query::DynIden, id: sea_orm::sea_query::DynIden, ids: Vec<Uuid>| {
            let mut q = Query::select()
                .column(id.clone())
                .from(table)
                .and_where(Expr::col(id.clone()).is_in(ids))
                .order_by(id, Order::Asc)
                .to_owned();
            if postgres {
                q.lock(LockType::Update);
            }
            q
        };
    let mut sorted_ids = hit_ids.clone();
    sorted_ids.sort();
    memory::Entity::update_many()
        .col_expr(
            memory::Column::RecallCount,
            Expr::col(memory::Column::RecallCount).add(1),
        )
        .filter(memory::Column::Id.in_subquery(ordered(
            memory::Entity.into_iden(),
            memory::Column::Id.into_iden(),
            sorted_ids,
        )))
        .exec(&db.write)
        .await?;
    let hit_spaces: HashSet<Uuid> = hits.iter().map(|h| h.memory.space_id).collect();
    let mut space_ids: Vec<Uuid> = hit_spaces.iter().copied().collect();
    space_ids.sort();
    let at = memspace_core::clock::now();
    space::Entity::update_many()
        .col_expr(space::Column::LastActivityAt, Expr::value(at))
        .filter(space::Column::Id.in_subquery(ordered(
            space::Entity.into_iden(),
            space::Column::Id.into_iden(),
            space_ids,
        )))
        .filter(
            sea_orm::sea_query::Condition::any()
                .add(space::Column::LastActivityAt.is_null())
                .add(space::Column::LastActivityAt.lt(at - chrono::Duration::seconds(1))),
        )
        .exec(&db.write)
        .await?;
    let searched: Vec<&space::Model> = spaces
        .iter()
        .filter(|s| hit_spaces.contains(&s.id))
        .collect();
    audit::cross_tenant(&db.write, principal, "memory.search", searched).await?;
    Ok(hits)
}
