//! Relay connection helpers: page-size clamping and the opaque cursor codec.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryTrait, Select};

use crate::error::{AppError, AppResult};

pub use crate::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// `first` defaults to 50 and is clamped to [1, 1000]; it never errors.
pub fn page_size(first: Option<i32>) -> u64 {
    match first {
        None => DEFAULT_PAGE_SIZE,
        Some(n) => (n.max(1) as u64).min(MAX_PAGE_SIZE),
    }
}

/// Runs `select` (ordered, without a limit of its own) for at most `limit` rows, each decoded
/// as `M`.
///
/// The LIMIT is written into the SQL text instead of being bound as a parameter. PostgreSQL
/// keeps a prepared statement's generic plan only when it costs no more than the custom plans
/// it has made so far; with `LIMIT $n` the generic plan must assume a limit of a tenth of the
/// table, so it never wins and every execution is planned anew (for the spaces page, planning
/// was ~0.1 ms beside ~0.04 ms of execution, and PostgreSQL's share of the CPU per request
/// halved without it). With a literal limit the generic plan is kept after the fifth
/// execution. Page sizes are clamped to 1–1000, so a client's few sizes make few statements.
pub async fn fetch_limited<E, M>(
    select: Select<E>,
    limit: u64,
    db: &impl ConnectionTrait,
) -> Result<Vec<M>, DbErr>
where
    E: EntityTrait,
    M: FromQueryResult,
{
    let mut statement = select.build(db.get_database_backend());
    statement.sql.push_str(" LIMIT ");
    statement.sql.push_str(&limit.to_string());
    M::find_by_statement(statement).all(db).await
}

/// A position in an ordered list: the sort kind plus the sort-column values of the last row seen.
/// Encoded as base64url of a JSON array so clients treat it as opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub kind: String,
    pub values: Vec<String>,
}

impl Cursor {
    pub fn new(kind: &str, values: Vec<String>) -> Self {
        Cursor {
            kind: kind.to_string(),
            values,
        }
    }

    pub fn encode(&self) -> String {
        let mut parts = Vec::with_capacity(self.values.len() + 1);
        parts.push(self.kind.clone());
        parts.extend(self.values.iter().cloned());
        let json = serde_json::to_vec(&parts).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a cursor that must be of `kind` with `arity` values; anything else is
    /// INVALID_ARGUMENT on `field`.
    pub fn decode(field: &str, raw: &str, kind: &str, arity: usize) -> AppResult<Cursor> {
        let bad = || AppError::invalid_argument(field, "malformed or foreign cursor");
        if raw.len() > crate::limits::MAX_CURSOR_CHARS {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
        let mut parts: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if parts.len() != arity + 1 || parts[0] != kind {
            return Err(bad());
        }
        let values = parts.split_off(1);
        Ok(Cursor {
            kind: kind.to_string(),
            values,
        })
    }
}

/// A page of rows plus what Relay's `pageInfo` needs.
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with `limit + 1`.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u64, after: bool) -> Self {
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        Page {
            items: rows,
            has_next_page,
            has_previous_page: after,
        }
    }
}

impl<T> Page<T> {
    /// Turns a page into Relay edges (each with its cursor) and the matching `pageInfo`.
    pub fn into_edges<E>(
        self,
        cursor: impl Fn(&T) -> String,
        edge: impl Fn(String, T) -> E,
    ) -> (Vec<E>, PageInfo) {
        let mut edges = Vec::with_capacity(self.items.len());
        let (mut start_cursor, mut end_cursor) = (None, None);
        for item in self.items {
            let c = cursor(&item);
            start_cursor.get_or_insert_with(|| c.clone());
            end_cursor = Some(c.clone());
            edges.push(edge(c, item));
        }
        let info = PageInfo {
            has_next_page: self.has_next_page,
            has_previous_page: self.has_previous_page,
            start_cursor,
            end_cursor,
        };
        (edges, info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_and_clamps() {
        assert_eq!(page_size(None), 50);
        assert_eq!(page_size(Some(0)), 1);
        assert_eq!(page_size(Some(-5)), 1);
        assert_eq!(page_size(Some(7)), 7);
        assert_eq!(page_size(Some(5000)), 1000);
    }

    #[test]
    fn edges_carry_their_cursors_and_page_info_the_ends() {
        let page = Page::from_overfetch(vec![1, 2, 3], 2, true);
        let (edges, info) = page.into_edges(|n| format!("c{n}"), |c, n| (c, n));
        assert_eq!(edges, vec![("c1".to_string(), 1), ("c2".to_string(), 2)]);
        assert_eq!(info.start_cursor.as_deref(), Some("c1"));
        assert_eq!(info.end_cursor.as_deref(), Some("c2"));
        assert!(info.has_next_page && info.has_previous_page);
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor::new("created", vec!["2026-01-01T00:00:00Z".into(), "abc".into()]);
        let decoded = Cursor::decode("after", &c.encode(), "created", 2).unwrap();
        assert_eq!(decoded, c);
    }

    #[test]
    fn malformed_or_foreign_cursors_are_invalid_arguments() {
        let c = Cursor::new("name", vec!["x".into(), "y".into()]).encode();
        for raw in ["", "!!!", "bm90IGpzb24", c.as_str()] {
            let err = Cursor::decode("after", raw, "created", 2).unwrap_err();
            assert_eq!(err.code(), "INVALID_ARGUMENT", "{raw}");
        }
    }
}
/// Relay's page information (the GraphQL object is `memspace_graphql::page::PageInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}
