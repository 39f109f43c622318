//! Listing spaces: the filter and visibility condition, keyset cursors, one statement per page
//! with the memory stats as correlated columns, and the total count.
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Condition, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::input::{labels, tags};
use super::load::SpaceAccess;
use super::stats::{expired_columns, MemoryStats};
use crate::audit::{self as audit};
use crate::db::Db;
use entity::{space, space_grant, space_label, space_tag};
use memspace_core::access::{self};
use memspace_core::error::{AppError, AppResult};
use memspace_core::page::{fetch_limited, Cursor, Page, PageArgs};
use memspace_core::principal::Principal;
use memspace_core::validate;

/// `space::Model` from the first [`SPACE_COLUMNS`] columns of `$row`, each read by `$get`.
macro_rules! space_model {
    ($get:ident, $row:expr) => {
        space::Model {
            id: $get($row, 0)?,
            organization_id: $get($row, 1)?,
            owner_id: $get($row, 2)?,
            owner_kind: $get($row, 3)?,
            name: $get($row, 4)?,
            description: $get($row, 5)?,
            access_mode: $get($row, 6)?,
            embedder: $get($row, 7)?,
            chunk_size: $get($row, 8)?,
            chunk_overlap: $get($row, 9)?,
            agent_id: $get($row, 10)?,
            workspace_id: $get($row, 11)?,
            vector_version: $get($row, 12)?,
            memory_count: $get($row, 13)?,
            memory_bytes: $get($row, 14)?,
            duplicate_policy: $get($row, 15)?,
            duplicate_threshold: $get($row, 16)?,
            last_activity_at: $get($row, 17)?,
            created_at: $get($row, 18)?,
            updated_at: $get($row, 19)?,
            deleted_at: $get($row, 20)?,
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OrderField {
    #[default]
    CreatedAt,
    Name,
}

#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub name_glob: Option<String>,
    pub owner_id: Option<Uuid>,
    pub labels: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub tags_match_all: bool,
    pub include_deleted: bool,
    pub workspace_id: Option<Uuid>,
}

#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub first: Option<i32>,
    pub after: Option<String>,
    /// Backward pagination (Relay): the last `last` rows before `before`.
    pub last: Option<i32>,
    pub before: Option<String>,
    pub filter: ListFilter,
    pub order: OrderField,
    pub descending: bool,
    /// Load each space's grants (needed for the caller's permission and the grant list; a
    /// page that asks for neither skips the query).
    pub with_grants: bool,
    /// Read each space's memory count in the list's own statement...
    pub with_count: bool,
    /// ...and the bytes of its memories.
    pub with_bytes: bool,
}

/// A page of spaces plus the condition that selected them (for `totalCount`).
pub struct SpacePage {
    pub page: Page<SpaceAccess>,
    pub condition: Condition,
}

fn filter_condition(
    backend: DatabaseBackend,
    principal: &Principal,
    filter: &ListFilter,
) -> AppResult<Condition> {
    let mut cond = Condition::all().add(access::visible_spaces(principal));
    if !filter.include_deleted {
        cond = cond.add(space::Column::DeletedAt.is_null());
    }
    if let Some(glob) = &filter.name_glob {
        validate::no_nul("filter.name", glob)?;
        memspace_core::limits::chars("filter.name", glob, memspace_core::limits::MAX_GLOB_CHARS)?;
        cond = cond.add(memspace_core::glob::condition(
            backend,
            space::Column::Name,
            &validate::nfc(glob),
        ));
    }
    if let Some(w) = filter.workspace_id {
        cond = cond.add(space::Column::WorkspaceId.eq(w));
    }
    if let Some(owner) = filter.owner_id {
        if owner != principal.id && !principal.is_admin {
            return Err(AppError::forbidden(
                "only organization admins may list the spaces of another owner",
            ));
        }
        cond = cond.add(space::Column::OwnerId.eq(owner));
    }
    let wanted_labels = labels("filter.labels", filter.labels.clone())?;
    for (k, v) in wanted_labels {
        cond = cond.add(
            space::Column::Id.in_subquery(
                Query::select()
                    .column(space_label::Column::SpaceId)
                    .from(space_label::Entity)
                    .and_where(space_label::Column::Key.eq(k))
                    .and_where(space_label::Column::Value.eq(v))
                    .to_owned(),
            ),
        );
    }
    let wanted_tags = tags("filter.tags", filter.tags.clone())?;
    if !wanted_tags.is_empty() {
        if filter.tags_match_all {
            for t in wanted_tags {
                cond = cond.add(
                    space::Column::Id.in_subquery(
                        Query::select()
                            .column(space_tag::Column::SpaceId)
                            .from(space_tag::Entity)
                            .and_where(space_tag::Column::Tag.eq(t))
                            .to_owned(),
                    ),
                );
            }
        } else {
            cond = cond.add(
                space::Column::Id.in_subquery(
                    Query::select()
                        .column(space_tag::Column::SpaceId)
                        .from(space_tag::Entity)
                        .and_where(space_tag::Column::Tag.is_in(wanted_tags))
                        .to_owned(),
                ),
            );
        }
    }
    Ok(cond)
}

const CURSOR_CREATED: &str = "space:created";

const CURSOR_NAME: &str = "space:name";

fn time_key(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The cursor of `space` in the given order.
pub fn cursor_of(space: &space::Model, order: OrderField) -> String {
    match order {
        OrderField::CreatedAt => Cursor::new(
            CURSOR_CREATED,
            vec![time_key(&space.created_at), space.id.to_string()],
        ),
        OrderField::Name => {
            Cursor::new(CURSOR_NAME, vec![space.name.clone(), space.id.to_string()])
        }
    }
    .encode()
}

/// Rows strictly after the cursor in the list's order (keyset pagination on (sort key, id)).
fn after_condition(
    field: &str,
    order: OrderField,
    descending: bool,
    raw: &str,
) -> AppResult<Condition> {
    let bad = || AppError::invalid_argument(field, "malformed or foreign cursor");
    let (kind, col) = match order {
        OrderField::CreatedAt => (CURSOR_CREATED, space::Column::CreatedAt),
        OrderField::Name => (CURSOR_NAME, space::Column::Name),
    };
    let c = Cursor::decode(field, raw, kind, 2)?;
    let id = Uuid::parse_str(&c.values[1]).map_err(|_| bad())?;
    let value: sea_orm::Value = match order {
        OrderField::CreatedAt => DateTime::parse_from_rfc3339(&c.values[0])
            .map_err(|_| bad())?
            .with_timezone(&Utc)
            .into(),
        OrderField::Name => c.values[0].clone().into(),
    };
    Ok(keyset(col, value, id, descending))
}

fn keyset(col: space::Column, value: sea_orm::Value, id: Uuid, descending: bool) -> Condition {
    if descending {
        Condition::any().add(col.lt(value.clone())).add(
            Condition::all()
                .add(col.eq(value))
                .add(space::Column::Id.lt(id)),
        )
    } else {
        Condition::any().add(col.gt(value.clone())).add(
            Condition::all()
                .add(col.eq(value))
                .add(space::Column::Id.gt(id)),
        )
    }
}

/// `spaces`: a page of the spaces the principal can see. Cross-tenant appearances are audited.
pub async fn list(db: &Db, principal: &Principal, query: ListQuery) -> AppResult<SpacePage> {
    let args = PageArgs::new(
        query.first,
        query.after.as_deref(),
        query.last,
        query.before.as_deref(),
    )?;
    let (limit, descending) = (args.limit, args.query_descending(query.descending));
    let condition = filter_condition(db.read.get_database_backend(), principal, &query.filter)?;
    let mut select = space::Entity::find().filter(condition.clone());
    if let Some(cursor) = args.cursor {
        let field = args.cursor_field();
        select = select.filter(after_condition(field, query.order, descending, cursor)?);
    }
    let sort_col = match query.order {
        OrderField::CreatedAt => space::Column::CreatedAt,
        OrderField::Name => space::Column::Name,
    };
    select = if descending {
        select
            .order_by_desc(sort_col)
            .order_by_desc(space::Column::Id)
    } else {
        select
            .order_by_asc(sort_col)
            .order_by_asc(space::Column::Id)
    };
    let rows: Vec<(space::Model, Option<MemoryStats>)> = if query.with_count || query.with_bytes {
        let backend = db.read.get_database_backend();
        for (expr, alias) in expired_columns(backend, query.with_bytes) {
            select = select.expr_as(expr, alias);
        }
        let rows: Vec<SpaceStatsRow> = fetch_limited(select, limit + 1, &db.read).await?;
        rows.into_iter()
            .map(|SpaceStatsRow(space, stats)| (space, Some(stats)))
            .collect()
    } else {
        let rows: Vec<SpaceRow> = fetch_limited(select, limit + 1, &db.read).await?;
        rows.into_iter()
            .map(|SpaceRow(space)| (space, None))
            .collect()
    };
    let page = Page::from_args(rows, &args);
    let ids: Vec<Uuid> = page.items.iter().map(|(s, _)| s.id).collect();
    let mut grants: std::collections::HashMap<Uuid, Vec<space_grant::Model>> =
        std::collections::HashMap::new();
    if query.with_grants && !ids.is_empty() {
        for g in space_grant::Entity::find()
            .filter(space_grant::Column::SpaceId.is_in(ids))
            .order_by_asc(space_grant::Column::CreatedAt)
            .all(&db.read)
            .await?
        {
            grants.entry(g.space_id).or_default().push(g);
        }
    }
    audit::cross_tenant(
        &db.write,
        principal,
        "space.list",
        page.items.iter().map(|(s, _)| s),
    )
    .await?;
    let items = page
        .items
        .into_iter()
        .map(|(space, stats)| {
            let mine = grants.remove(&space.id).unwrap_or_default();
            let permission = access::permission(principal, &space, &mine);
            SpaceAccess {
                space,
                grants: mine,
                permission,
                stats,
            }
        })
        .collect();
    Ok(SpacePage {
        page: Page {
            items,
            has_next_page: page.has_next_page,
            has_previous_page: page.has_previous_page,
        },
        condition,
    })
}

/// A space row of a list, decoded by column position: `Entity::find()` selects the columns in
/// `space::Column` order, which is the order of `space::Model`'s fields.
///
/// The derived decoder looks every column up by a name it formats for each row, and sea-orm
/// formats an error message for every NULL it meets; on PostgreSQL this reads the row through
/// sqlx directly instead. Decoding a page of 51 rows of 21 columns was ~20% of the server's
/// CPU for the spaces query.
pub(crate) struct SpaceRow(space::Model);

/// The number of columns [`SpaceRow`] reads (a test checks it against `space::Column`).
pub(crate) const SPACE_COLUMNS: usize = 21;

/// Column `index` of a PostgreSQL row.
fn pg_column<'r, T>(
    row: &'r sea_orm::sqlx::postgres::PgRow,
    index: usize,
) -> Result<T, sea_orm::DbErr>
where
    T: sea_orm::sqlx::Decode<'r, sea_orm::sqlx::Postgres>
        + sea_orm::sqlx::Type<sea_orm::sqlx::Postgres>,
{
    sea_orm::sqlx::Row::try_get(row, index)
        .map_err(|e| sea_orm::DbErr::Type(format!("spaces column {index}: {e}")))
}

/// Column `index` of a row of any backend.
fn any_column<T: sea_orm::TryGetable>(
    row: &sea_orm::QueryResult,
    index: usize,
) -> Result<T, sea_orm::DbErr> {
    row.try_get_by_index(index)
}

impl FromQueryResult for SpaceRow {
    fn from_query_result(row: &sea_orm::QueryResult, _pre: &str) -> Result<Self, sea_orm::DbErr> {
        Ok(SpaceRow(match row.try_as_pg_row() {
            Some(pg) => space_model!(pg_column, pg),
            None => space_model!(any_column, row),
        }))
    }
}

/// A [`SpaceRow`] followed by the [`expired_columns`]: the space and its memory stats.
struct SpaceStatsRow(space::Model, MemoryStats);

impl FromQueryResult for SpaceStatsRow {
    fn from_query_result(row: &sea_orm::QueryResult, pre: &str) -> Result<Self, sea_orm::DbErr> {
        let SpaceRow(space) = SpaceRow::from_query_result(row, pre)?;
        let (expired, expired_bytes) = match row.try_as_pg_row() {
            Some(pg) => (
                pg_column(pg, SPACE_COLUMNS)?,
                pg_column(pg, SPACE_COLUMNS + 1)?,
            ),
            None => (
                any_column(row, SPACE_COLUMNS)?,
                any_column(row, SPACE_COLUMNS + 1)?,
            ),
        };
        let stats = MemoryStats::from_counters(
            space.id,
            space.memory_count,
            space.memory_bytes,
            expired,
            expired_bytes,
        );
        Ok(SpaceStatsRow(space, stats))
    }
}

pub async fn count(db: &impl ConnectionTrait, condition: Condition) -> AppResult<u64> {
    Ok(space::Entity::find().filter(condition).count(db).await?)
}
