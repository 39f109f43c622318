//! Reading memories: one by id, a space's page, the filters shared with search.
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Condition, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::draft::tags;
use super::store::INSERT_BATCH;
use crate::audit;
use crate::db::Db;
use crate::spaces::service::{self as spaces, SpaceAccess};
use entity::{memory, memory_tag, space};
use memspace_core::error::{AppError, AppResult};
use memspace_core::page::{fetch_limited, page_size, Cursor, Page};
use memspace_core::principal::{Principal, PrincipalKind};
use memspace_core::validate;

/// A memory by id if it is live (not expired, not superseded); what a subscriber is sent.
pub async fn find_live(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<memory::Model>, sea_orm::DbErr> {
    memory::Entity::find_by_id(id).filter(live()).one(db).await
}

/// Not expired at this moment.
pub fn live() -> Condition {
    Condition::any()
        .add(memory::Column::ExpiresAt.is_null())
        .add(memory::Column::ExpiresAt.gt(Utc::now()))
}

/// A live memory and its space, if the principal can read it; NOT_FOUND otherwise.
pub(super) async fn load(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
) -> AppResult<(memory::Model, SpaceAccess)> {
    let m = memory::Entity::find_by_id(id)
        .filter(live())
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("memory", id))?;
    let access = match spaces::load(db, principal, m.space_id).await {
        Err(AppError::NotFound { .. }) => return Err(AppError::not_found("memory", id)),
        other => other?,
    };
    Ok((m, access))
}

pub async fn get(db: &Db, principal: &Principal, id: Uuid) -> AppResult<memory::Model> {
    let (m, access) = load(&db.read, principal, id).await?;
    audit::cross_tenant(&db.write, principal, "memory.read", [&access.space]).await?;
    Ok(m)
}

/// Filters shared by `Space.memories` and `searchMemories`.
#[derive(Clone, Debug, Default)]
pub struct MemoryFilter {
    /// A memory matches when it has any of these tags.
    pub tags: Vec<String>,
    pub agent_id: Option<Uuid>,
    pub thread_id: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub include_superseded: bool,
}

/// The SQL condition of a filter (live memories only).
pub fn filter_condition(filter: &MemoryFilter) -> AppResult<Condition> {
    let mut cond = Condition::all().add(live());
    if !filter.include_superseded {
        cond = cond.add(memory::Column::SupersededBy.is_null());
    }
    let wanted = tags(filter.tags.clone()).map_err(|e| match e {
        AppError::Validation { message, .. } => AppError::validation("filter.tags", message),
        other => other,
    })?;
    if !wanted.is_empty() {
        cond = cond.add(
            memory::Column::Id.in_subquery(
                Query::select()
                    .column(memory_tag::Column::MemoryId)
                    .from(memory_tag::Entity)
                    .and_where(memory_tag::Column::Tag.is_in(wanted))
                    .to_owned(),
            ),
        );
    }
    if let Some(a) = filter.agent_id {
        cond = cond.add(memory::Column::AgentId.eq(a));
    }
    if let Some(t) = &filter.thread_id {
        validate::no_nul("filter.threadId", t)?;
        cond = cond.add(memory::Column::ThreadId.eq(t.clone()));
    }
    if let Some(t) = filter.created_after {
        cond = cond.add(memory::Column::CreatedAt.gt(t));
    }
    if let Some(t) = filter.created_before {
        cond = cond.add(memory::Column::CreatedAt.lt(t));
    }
    Ok(cond)
}

pub(super) const CURSOR_KIND: &str = "memory:created";

pub fn cursor_of(m: &memory::Model) -> String {
    Cursor::new(
        CURSOR_KIND,
        vec![
            m.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            m.id.to_string(),
        ],
    )
    .encode()
}

/// A page of a space's memories (the caller has already been given the space), oldest first
/// unless `descending`.
pub async fn list(
    db: &Db,
    principal: &Principal,
    space: &space::Model,
    first: Option<i32>,
    after: Option<&str>,
    filter: &MemoryFilter,
    descending: bool,
) -> AppResult<(Page<memory::Model>, Condition)> {
    let limit = page_size(first);
    let cond = Condition::all()
        .add(memory::Column::SpaceId.eq(space.id))
        .add(filter_condition(filter)?);
    let mut select = memory::Entity::find().filter(cond.clone());
    if let Some(raw) = after {
        let bad = || AppError::invalid_argument("after", "malformed or foreign cursor");
        if raw.len() > memspace_core::limits::MAX_CURSOR_CHARS {
            return Err(bad());
        }
        let c = Cursor::decode("after", raw, CURSOR_KIND, 2)?;
        let at = DateTime::parse_from_rfc3339(&c.values[0])
            .map_err(|_| bad())?
            .with_timezone(&Utc);
        let id = Uuid::parse_str(&c.values[1]).map_err(|_| bad())?;
        let (by_time, by_id) = if descending {
            (memory::Column::CreatedAt.lt(at), memory::Column::Id.lt(id))
        } else {
            (memory::Column::CreatedAt.gt(at), memory::Column::Id.gt(id))
        };
        select = select.filter(
            Condition::any().add(by_time).add(
                Condition::all()
                    .add(memory::Column::CreatedAt.eq(at))
                    .add(by_id),
            ),
        );
    }
    select = if descending {
        select
            .order_by_desc(memory::Column::CreatedAt)
            .order_by_desc(memory::Column::Id)
    } else {
        select
            .order_by_asc(memory::Column::CreatedAt)
            .order_by_asc(memory::Column::Id)
    };
    let rows: Vec<memory::Model> = fetch_limited(select, limit + 1, &db.read).await?;
    audit::cross_tenant(&db.write, principal, "memory.read", [space]).await?;
    Ok((Page::from_overfetch(rows, limit, after.is_some()), cond))
}

pub async fn count(db: &impl ConnectionTrait, cond: Condition) -> AppResult<u64> {
    Ok(memory::Entity::find().filter(cond).count(db).await?)
}

/// Used by search: the subset of `ids` that pass `filter` (live, tags, agent, thread, time).
pub async fn matching(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    filter: &MemoryFilter,
) -> AppResult<Vec<memory::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let cond = filter_condition(filter)?;
    let mut out = Vec::with_capacity(ids.len());
    for part in ids.chunks(INSERT_BATCH) {
        out.extend(
            memory::Entity::find()
                .filter(memory::Column::Id.is_in(part.iter().copied()))
                .filter(cond.clone())
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

/// The author of a memory as a principal kind (users and agents only).
pub fn author_kind(m: &memory::Model) -> Option<PrincipalKind> {
    PrincipalKind::parse(&m.author_kind).filter(|k| *k != PrincipalKind::SpaceToken)
}
