//! Keyword search in the database's own full-text engine: SQLite FTS5 (porter tokenizer, BM25)
//! or PostgreSQL (`english` tsvector, `ts_rank_cd`). A document matches when it holds **any** of
//! the query's stemmed terms.
use sea_orm::sea_query::{Alias, Expr, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseBackend};
use uuid::Uuid;

use crate::embedder::words;
use entity::memory;
use memspace_core::error::AppResult;

/// The FTS5 query: every word as a quoted phrase, OR-ed.
pub fn fts5_query(query: &str) -> Option<String> {
    let terms: Vec<String> = words(query).map(|w| format!("\"{w}\"")).collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

/// The tsquery: every word OR-ed (words hold only alphanumerics, so nothing needs escaping).
pub fn tsquery(query: &str) -> Option<String> {
    let terms: Vec<String> = words(query).collect();
    (!terms.is_empty()).then(|| terms.join(" | "))
}

/// The spaces a keyword search covers: a list of ids, or a statement selecting them (the
/// caller's scope condition, evaluated by the database inside the search).
pub enum Spaces<'a> {
    Ids(&'a [Uuid]),
    Select(Box<SelectStatement>),
}

/// Up to `limit` memories of `spaces` matching `query`, best first, with a score where
/// higher is better.
pub async fn search(
    db: &impl ConnectionTrait,
    query: &str,
    spaces: Spaces<'_>,
    limit: u64,
) -> AppResult<Vec<(Uuid, f64)>> {
    let backend = db.get_database_backend();
    let memories = Alias::new("memories");
    let id_col = Expr::col((memories.clone(), memory::Column::Id));
    let space_col = Expr::col((memories.clone(), memory::Column::SpaceId));
    let in_spaces = match spaces {
        Spaces::Ids([]) => return Ok(Vec::new()),
        Spaces::Ids(ids) => space_col.is_in(ids.iter().copied()),
        Spaces::Select(q) => space_col.in_subquery(*q),
    };
    let stmt = match backend {
        DatabaseBackend::Sqlite => {
            let Some(q) = fts5_query(query) else {
                return Ok(Vec::new());
            };
            Query::select()
                .expr_as(id_col.clone(), Alias::new("id"))
                .expr_as(Expr::cust("-bm25(memories_fts)"), Alias::new("score"))
                .from(Alias::new("memories_fts"))
                .inner_join(
                    memories.clone(),
                    Expr::col((memories.clone(), memory::Column::Id))
                        .equals((Alias::new("memories_fts"), Alias::new("memory_id"))),
                )
                .and_where(Expr::cust_with_values("memories_fts MATCH ?", [q]))
                .and_where(in_spaces)
                .order_by(Alias::new("score"), Order::Desc)
                .limit(limit)
                .to_owned()
        }
        _ => {
            let Some(q) = tsquery(query) else {
                return Ok(Vec::new());
            };
            Query::select()
                .expr_as(id_col.clone(), Alias::new("id"))
                .expr_as(
                    Expr::cust_with_values(
                        "ts_rank_cd(memories.content_tsv, to_tsquery('english', $1))::float8",
                        [q.clone()],
                    ),
                    Alias::new("score"),
                )
                .from(memories.clone())
                .and_where(Expr::cust_with_values(
                    "memories.content_tsv @@ to_tsquery('english', $1)",
                    [q],
                ))
                .and_where(in_spaces)
                .order_by(Alias::new("score"), Order::Desc)
                .limit(limit)
                .to_owned()
        }
    };
    let rows = db.query_all(backend.build(&stmt)).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get("", "id")?;
        let score: f64 = row.try_get("", "score")?;
        out.push((id, score));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_or_of_terms_with_nothing_injectable() {
        assert_eq!(
            fts5_query("Coffee, \"brewing\" NEAR(x) -tips").unwrap(),
            "\"coffee\" OR \"brewing\" OR \"near\" OR \"x\" OR \"tips\""
        );
        assert_eq!(tsquery("it's a test!").unwrap(), "it | s | a | test");
        assert!(fts5_query("  ?!  ").is_none());
    }
}
