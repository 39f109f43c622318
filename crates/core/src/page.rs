//! Relay connection helpers: page-size clamping and the opaque cursor codec.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryTrait, Select,
};

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

/// Which page of an ordered list to read: Relay's `first`/`after` (forward) or `last`/`before`
/// (backward, the end of the list first: a thread's or the audit log's newest entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageArgs<'a> {
    /// Rows wanted, clamped like `first`.
    pub limit: u64,
    /// The cursor to start from, exclusive (`after` forward, `before` backward).
    pub cursor: Option<&'a str>,
    /// Read from the end: the query runs in the opposite order and the page is turned back.
    pub backward: bool,
}

impl<'a> PageArgs<'a> {
    /// `first`/`after` or `last`/`before`; mixing the two directions is INVALID_ARGUMENT (the
    /// Relay specification discourages it and no client needs it).
    pub fn new(
        first: Option<i32>,
        after: Option<&'a str>,
        last: Option<i32>,
        before: Option<&'a str>,
    ) -> AppResult<PageArgs<'a>> {
        let backward = last.is_some() || before.is_some();
        if backward && (first.is_some() || after.is_some()) {
            let field = if last.is_some() { "last" } else { "before" };
            return Err(AppError::invalid_argument(
                field,
                "page forward with first/after or backward with last/before, not both",
            ));
        }
        Ok(if backward {
            PageArgs {
                limit: page_size(last),
                cursor: before,
                backward,
            }
        } else {
            PageArgs::forward(first, after)
        })
    }

    pub fn forward(first: Option<i32>, after: Option<&'a str>) -> PageArgs<'a> {
        PageArgs {
            limit: page_size(first),
            cursor: after,
            backward: false,
        }
    }

    /// The argument the cursor came in, for error messages.
    pub fn cursor_field(&self) -> &'static str {
        if self.backward {
            "before"
        } else {
            "after"
        }
    }

    /// Whether the SQL runs descending, for a list shown `descending`.
    pub fn query_descending(&self, descending: bool) -> bool {
        descending != self.backward
    }
}

/// Rows strictly past `(value, id)` in a list ordered by `(col, id_col)` (keyset pagination):
/// below it when the SQL runs `descending`, above it otherwise.
pub fn keyset<C: ColumnTrait>(
    col: C,
    value: impl Into<sea_orm::Value>,
    id_col: C,
    id: uuid::Uuid,
    descending: bool,
) -> Condition {
    let value = value.into();
    let (past, past_id) = if descending {
        (col.lt(value.clone()), id_col.lt(id))
    } else {
        (col.gt(value.clone()), id_col.gt(id))
    };
    Condition::any()
        .add(past)
        .add(Condition::all().add(col.eq(value)).add(past_id))
}

/// A `(time, id)` cursor of `kind` given in `field`; anything else is INVALID_ARGUMENT there.
pub fn decode_time_cursor(
    field: &str,
    raw: &str,
    kind: &str,
) -> AppResult<(chrono::DateTime<chrono::Utc>, uuid::Uuid)> {
    let bad = || AppError::invalid_argument(field, "malformed or foreign cursor");
    let c = Cursor::decode(field, raw, kind, 2)?;
    let at = chrono::DateTime::parse_from_rfc3339(&c.values[0])
        .map_err(|_| bad())?
        .with_timezone(&chrono::Utc);
    let id = uuid::Uuid::parse_str(&c.values[1]).map_err(|_| bad())?;
    Ok((at, id))
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
    /// Builds a page from rows fetched with `limit + 1` in the direction of `args` (for a
    /// backward page, in reverse order: they are turned back here).
    pub fn from_args(mut rows: Vec<T>, args: &PageArgs<'_>) -> Self {
        if !args.backward {
            return Page::from_overfetch(rows, args.limit, args.cursor.is_some());
        }
        let has_previous_page = rows.len() as u64 > args.limit;
        rows.truncate(args.limit as usize);
        rows.reverse();
        Page {
            items: rows,
            has_next_page: args.cursor.is_some(),
            has_previous_page,
        }
    }

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
    fn a_backward_page_is_turned_back_and_knows_what_precedes_it() {
        let args = PageArgs::new(None, None, Some(2), Some("c9")).unwrap();
        assert!(args.backward && args.limit == 2 && args.cursor_field() == "before");
        // Fetched newest first: 9 is excluded by the cursor, 8 and 7 are the page, 6 proves more.
        let page = Page::from_args(vec![8, 7, 6], &args);
        assert_eq!(page.items, vec![7, 8]);
        assert!(page.has_previous_page && page.has_next_page);
        let last_page = Page::from_args(
            vec![2, 1],
            &PageArgs::new(None, None, Some(2), None).unwrap(),
        );
        assert_eq!(last_page.items, vec![1, 2]);
        assert!(!last_page.has_previous_page && !last_page.has_next_page);
        assert!(args.query_descending(false) && !args.query_descending(true));
    }

    #[test]
    fn mixing_directions_is_an_invalid_argument() {
        for (first, after, last, before) in [
            (Some(1), None, Some(1), None),
            (None, Some("a"), Some(1), None),
            (Some(1), None, None, Some("b")),
        ] {
            let err = PageArgs::new(first, after, last, before).unwrap_err();
            assert_eq!(err.code(), "INVALID_ARGUMENT");
        }
        assert!(
            !PageArgs::new(Some(3), Some("a"), None, None)
                .unwrap()
                .backward
        );
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
