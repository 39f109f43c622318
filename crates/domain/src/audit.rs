//! Writing and reading audit events.
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use entity::{audit_event, space};
use memspace_core::clock::now;
use memspace_core::error::{AppError, AppResult};
use memspace_core::page::{fetch_limited, page_size, Cursor, Page};
use memspace_core::principal::Principal;

/// One thing to record: `action` on a resource of `organization_id`.
pub struct Event<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Uuid,
    pub organization_id: Uuid,
}

fn row(principal: &Principal, e: &Event<'_>) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(e.organization_id),
        actor_kind: Set(principal.kind.as_str().to_string()),
        actor_id: Set(principal.id),
        actor_organization_id: Set(principal.organization_id),
        action: Set(e.action.to_string()),
        resource_type: Set(e.resource_type.to_string()),
        resource_id: Set(e.resource_id),
        at: Set(now()),
    }
}

/// The row of `action` by `principal` on space `space_id` of `organization_id`.
pub fn space_row(
    principal: &Principal,
    action: &str,
    space_id: Uuid,
    organization_id: Uuid,
) -> audit_event::ActiveModel {
    row(
        principal,
        &Event {
            action,
            resource_type: "space",
            resource_id: space_id,
            organization_id,
        },
    )
}

pub async fn record(
    db: &impl ConnectionTrait,
    principal: &Principal,
    event: Event<'_>,
) -> AppResult<()> {
    audit_event::Entity::insert(row(principal, &event))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Records `action` for every space of another organization than the principal's: cross-tenant
/// reads and writes are always audited. Same-organization access records nothing.
pub async fn cross_tenant<'a>(
    db: &impl ConnectionTrait,
    principal: &Principal,
    action: &str,
    spaces: impl IntoIterator<Item = &'a space::Model>,
) -> AppResult<()> {
    let rows: Vec<_> = spaces
        .into_iter()
        .filter(|s| s.organization_id != principal.organization_id)
        .map(|s| {
            row(
                principal,
                &Event {
                    action,
                    resource_type: "space",
                    resource_id: s.id,
                    organization_id: s.organization_id,
                },
            )
        })
        .collect();
    if !rows.is_empty() {
        audit_event::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

#[derive(Default, Clone, Debug)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor_id: Option<Uuid>,
    pub resource_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
}

const CURSOR_KIND: &str = "audit";

pub fn cursor_of(e: &audit_event::Model) -> String {
    Cursor::new(
        CURSOR_KIND,
        vec![
            e.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            e.id.to_string(),
        ],
    )
    .encode()
}

/// The events of the principal's organization, newest first (org admins only).
pub async fn list(
    db: &impl ConnectionTrait,
    principal: &Principal,
    first: Option<i32>,
    after: Option<&str>,
    filter: AuditFilter,
) -> AppResult<(Page<audit_event::Model>, Condition)> {
    if !principal.is_admin || principal.token.is_some() {
        return Err(AppError::forbidden(
            "only organization admins may read the audit log",
        ));
    }
    let mut cond =
        Condition::all().add(audit_event::Column::OrganizationId.eq(principal.organization_id));
    if let Some(a) = filter.action {
        cond = cond.add(audit_event::Column::Action.eq(a));
    }
    if let Some(a) = filter.actor_id {
        cond = cond.add(audit_event::Column::ActorId.eq(a));
    }
    if let Some(r) = filter.resource_id {
        cond = cond.add(audit_event::Column::ResourceId.eq(r));
    }
    if let Some(s) = filter.since {
        cond = cond.add(audit_event::Column::At.gte(s));
    }
    let limit = page_size(first);
    let mut select = audit_event::Entity::find().filter(cond.clone());
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
        select = select.filter(
            Condition::any().add(audit_event::Column::At.lt(at)).add(
                Condition::all()
                    .add(audit_event::Column::At.eq(at))
                    .add(audit_event::Column::Id.lt(id)),
            ),
        );
    }
    let select = select
        .order_by_desc(audit_event::Column::At)
        .order_by_desc(audit_event::Column::Id);
    let rows: Vec<audit_event::Model> = fetch_limited(select, limit + 1, db).await?;
    Ok((Page::from_overfetch(rows, limit, after.is_some()), cond))
}

pub async fn count(db: &impl ConnectionTrait, cond: Condition) -> AppResult<u64> {
    use sea_orm::PaginatorTrait;
    Ok(audit_event::Entity::find().filter(cond).count(db).await?)
}
