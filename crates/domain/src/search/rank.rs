//! Rank: the keyword and semantic rankings of the scope, deeper than the limit so that the
//! filters and the fusion have room.
use std::collections::HashMap;

use sea_orm::sea_query::Condition;
use uuid::Uuid;

use super::scope::Scope;
use crate::db::Db;
use memspace_core::error::{AppError, AppResult};
use memspace_core::vocab::SearchMode;
use memspace_engine::embedder::EmbedError;
use memspace_engine::keyword::{self, Spaces};
use memspace_engine::vector_index::{ScopeEntry, VectorIndex};

/// Both rankings, best first: keyword (id, score) and semantic (id, cosine, best chunk ord).
pub struct Rankings {
    pub keyword: Vec<(Uuid, f64)>,
    pub semantic: Vec<(Uuid, f64, i32)>,
}

pub async fn rank(
    db: &Db,
    index: &VectorIndex,
    scope: &Scope,
    query: &str,
    mode: SearchMode,
    filter: &Condition,
    depth: usize,
) -> AppResult<Rankings> {
    // HYBRID's two rankings run side by side (each large one on a blocking thread).
    let (keyword, semantic) = tokio::try_join!(
        async {
            match mode {
                SearchMode::Semantic => Ok(Vec::new()),
                _ => keyword(db, index, scope, query, depth).await,
            }
        },
        async {
            match mode {
                SearchMode::Keyword => Ok(Vec::new()),
                _ => semantic(db, index, scope, query, mode, filter, depth).await,
            }
        },
    )?;
    Ok(Rankings { keyword, semantic })
}

/// The keyword ranking: from the keyword index when the server keeps one and every space of
/// the scope is ready in it, else from the database's full-text engine (a large space the
/// index does not hold yet loads in the background meanwhile).
async fn keyword(
    db: &Db,
    index: &VectorIndex,
    scope: &Scope,
    query: &str,
    depth: usize,
) -> AppResult<Vec<(Uuid, f64)>> {
    if let Some(k) = index.keyword() {
        let entries: Vec<ScopeEntry> = scope.spaces.iter().map(|s| s.entry()).collect();
        let load = {
            let (k, conn) = (k.clone(), db.read.clone());
            move |space_id: Uuid, version: i64| {
                let (k, conn) = (k.clone(), conn.clone());
                tokio::spawn(async move {
                    if let Err(e) = k.load_space(&conn, space_id, version).await {
                        tracing::warn!(space = %space_id, error = ?e, "keyword index: space not loaded");
                    }
                });
            }
        };
        if let Some(hits) = k.search(&db.read, &entries, query, depth, load).await? {
            return Ok(hits);
        }
    }
    let ids = scope.ids();
    let spaces = match &scope.visible {
        Some(q) => Spaces::Select(Box::new(q.clone())),
        None => Spaces::Ids(&ids),
    };
    keyword::search(&db.read, query, spaces, depth as u64).await
}

/// The query is embedded once per distinct embedder, and each embedder's spaces are searched
/// in one index query. A space whose embedder cannot answer now is left out of the semantic
/// ranking (HYBRID still has its keyword half); a SEMANTIC search fails only when no space it
/// covers could be ranked at all. `filter` (the memory filters) goes with the query, so that a
/// store searching in SQL (pgvector) ranks only memories that pass it.
async fn semantic(
    db: &Db,
    index: &VectorIndex,
    scope: &Scope,
    query: &str,
    mode: SearchMode,
    filter: &Condition,
    depth: usize,
) -> AppResult<Vec<(Uuid, f64, i32)>> {
    let mut by_embedder: HashMap<&str, Vec<ScopeEntry>> = HashMap::new();
    for s in &scope.spaces {
        by_embedder
            .entry(s.embedder.as_str())
            .or_default()
            .push(s.entry());
    }
    let mut names: Vec<&str> = by_embedder.keys().copied().collect();
    names.sort_unstable();
    let mut failed: Option<(&str, EmbedError)> = None;
    let mut ranked: Vec<(Uuid, f64, i32)> = Vec::new();
    let mut embedded = 0;
    for name in names {
        let qv = match db.embedders.embed_query(name, query).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(embedder = %name, reason = %e.0, "query not embedded");
                failed.get_or_insert((name, e));
                continue;
            }
        };
        embedded += 1;
        let hits = index
            .search_filtered(
                &db.read,
                &by_embedder[name],
                &qv,
                depth,
                Some(filter.clone()),
            )
            .await?;
        ranked.extend(
            hits.into_iter()
                .filter(|h| h.score > 0.0)
                .map(|h| (h.memory_id, f64::from(h.score), h.ord)),
        );
    }
    if embedded == 0 && mode == SearchMode::Semantic {
        if let Some((name, e)) = failed {
            return Err(AppError::embedder(name)(e));
        }
    }
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(depth);
    Ok(ranked)
}
