//! Global object identification (Relay's `node(id)` / `nodes(ids)`): which table holds an id,
//! and the object behind it if the principal may see it, by the same rule as the field that
//! reaches that object elsewhere in the schema. Ids are the rows' UUIDs, unique across tables.
//!
//! | kind | visible when |
//! |---|---|
//! | space, memory, workspace | the typed lookup (`space(id)`, `memory(id)`, `workspace(id)`) succeeds |
//! | organization | it is the principal's own |
//! | user, agent, role, department | same organization, and the caller is not a space token |
//! | API key | an admin of its organization, or the key's own user or agent |
//! | space token, space grant | the caller holds OWNER on its space (as `Space.tokens`, `Space.grants`) |
//! | audit event | an admin of its organization (as `auditEvents`) |
//!
//! Anything else (missing, invisible, another tenant's) is simply absent: the caller cannot tell
//! a hidden object from a missing one.
use std::collections::HashMap;

use sea_orm::sea_query::{Alias, Expr, Query, SelectStatement, UnionType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, StatementBuilder,
};
use uuid::Uuid;

use crate::db::Db;
use crate::spaces::service::{self as spaces, SpaceAccess};
use entity::{
    agent, api_key, audit_event, department, memory, organization, role, space_grant, space_token,
    user, workspace,
};
use memspace_core::access::Permission;
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;
use memspace_core::vocab::WorkspaceRole;

/// Most ids one `nodes(ids:)` call may ask for.
pub const MAX_NODE_IDS: usize = 100;

/// The object behind an id.
#[derive(Clone)]
pub enum Node {
    Space(SpaceAccess),
    Memory(memory::Model),
    Workspace(workspace::Model, Option<WorkspaceRole>),
    Organization(organization::Model),
    User(user::Model),
    Agent(agent::Model),
    Role(role::Model),
    Department(department::Model),
    ApiKey(api_key::Model),
    SpaceToken(space_token::Model),
    SpaceGrant(space_grant::Model),
    AuditEvent(audit_event::Model),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Space,
    Memory,
    Workspace,
    Organization,
    User,
    Agent,
    Role,
    Department,
    ApiKey,
    SpaceToken,
    SpaceGrant,
    AuditEvent,
}

const TABLES: [(Kind, &str); 12] = [
    (Kind::Space, "spaces"),
    (Kind::Memory, "memories"),
    (Kind::Workspace, "workspaces"),
    (Kind::Organization, "organizations"),
    (Kind::User, "users"),
    (Kind::Agent, "agents"),
    (Kind::Role, "roles"),
    (Kind::Department, "departments"),
    (Kind::ApiKey, "api_keys"),
    (Kind::SpaceToken, "space_tokens"),
    (Kind::SpaceGrant, "space_grants"),
    (Kind::AuditEvent, "audit_events"),
];

#[derive(FromQueryResult)]
struct Hit {
    id: Uuid,
    kind: i32,
}

/// The objects behind `ids`, in order; `None` where an id is malformed, missing or hidden.
/// More than [`MAX_NODE_IDS`] ids is VALIDATION_ERROR on `field`.
pub async fn resolve(
    db: &Db,
    principal: &Principal,
    field: &str,
    ids: &[String],
) -> AppResult<Vec<Option<Node>>> {
    if ids.len() > MAX_NODE_IDS {
        return Err(AppError::validation(
            field,
            format!("at most {MAX_NODE_IDS} ids per request"),
        ));
    }
    let parsed: Vec<Option<Uuid>> = ids.iter().map(|s| Uuid::parse_str(s.trim()).ok()).collect();
    let mut wanted: Vec<Uuid> = parsed.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let kinds = kinds_of(&db.read, &wanted).await?;
    let mut by_kind: HashMap<Kind, Vec<Uuid>> = HashMap::new();
    for (id, kind) in &kinds {
        by_kind.entry(*kind).or_default().push(*id);
    }
    let mut found: HashMap<Uuid, Node> = HashMap::new();
    for (kind, ids) in by_kind {
        load_kind(db, principal, kind, &ids, &mut found).await?;
    }
    Ok(parsed
        .into_iter()
        .map(|id| id.and_then(|id| found.get(&id).cloned()))
        .collect())
}

/// Which table holds each id: one `UNION ALL` of primary-key lookups.
async fn kinds_of(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<HashMap<Uuid, Kind>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let select = |(n, table): (usize, &str)| -> SelectStatement {
        Query::select()
            .column(Alias::new("id"))
            .expr_as(Expr::val(n as i32), Alias::new("kind"))
            .from(Alias::new(table))
            .and_where(Expr::col(Alias::new("id")).is_in(ids.iter().copied()))
            .to_owned()
    };
    let mut tables = TABLES.iter().enumerate().map(|(n, (_, t))| select((n, t)));
    let mut union = tables.next().expect("TABLES is not empty");
    for other in tables {
        union.union(UnionType::All, other);
    }
    let statement = StatementBuilder::build(&union, &db.get_database_backend());
    let hits = Hit::find_by_statement(statement).all(db).await?;
    Ok(hits
        .into_iter()
        .filter_map(|h| TABLES.get(h.kind as usize).map(|(k, _)| (h.id, *k)))
        .collect())
}

async fn load_kind(
    db: &Db,
    p: &Principal,
    kind: Kind,
    ids: &[Uuid],
    found: &mut HashMap<Uuid, Node>,
) -> AppResult<()> {
    let r = &db.read;
    let member = p.token.is_none();
    match kind {
        // The typed lookups, one by one (at most MAX_NODE_IDS): they carry the whole rule,
        // deleted spaces and expired memories included, and audit cross-tenant reads.
        Kind::Space => {
            for id in ids {
                if let Some(a) = hidden_is_none(spaces::get(db, p, *id).await)? {
                    found.insert(*id, Node::Space(a));
                }
            }
        }
        Kind::Memory => {
            for id in ids {
                if let Some(m) = hidden_is_none(crate::memories::service::get(db, p, *id).await)? {
                    found.insert(*id, Node::Memory(m));
                }
            }
        }
        Kind::Workspace => {
            for id in ids {
                let got = crate::workspaces::service::load(r, p, *id).await;
                if let Some((m, _)) = hidden_is_none(got)? {
                    let role = memspace_core::access::workspace_role(p, m.id);
                    found.insert(*id, Node::Workspace(m, role));
                }
            }
        }
        Kind::Organization => {
            for m in organization::Entity::find()
                .filter(organization::Column::Id.is_in(ids.iter().copied()))
                .filter(organization::Column::Id.eq(p.organization_id))
                .all(r)
                .await?
            {
                found.insert(m.id, Node::Organization(m));
            }
        }
        Kind::User if member => {
            for m in
                in_org::<user::Entity>(r, ids, user::Column::Id, user::Column::OrganizationId, p)
                    .await?
            {
                found.insert(m.id, Node::User(m));
            }
        }
        Kind::Agent if member => {
            for m in
                in_org::<agent::Entity>(r, ids, agent::Column::Id, agent::Column::OrganizationId, p)
                    .await?
            {
                found.insert(m.id, Node::Agent(m));
            }
        }
        Kind::Role if member => {
            for m in
                in_org::<role::Entity>(r, ids, role::Column::Id, role::Column::OrganizationId, p)
                    .await?
            {
                found.insert(m.id, Node::Role(m));
            }
        }
        Kind::Department if member => {
            let (id_col, org_col) = (department::Column::Id, department::Column::OrganizationId);
            for m in in_org::<department::Entity>(r, ids, id_col, org_col, p).await? {
                found.insert(m.id, Node::Department(m));
            }
        }
        Kind::ApiKey if member => {
            let (id_col, org_col) = (api_key::Column::Id, api_key::Column::OrganizationId);
            for m in in_org::<api_key::Entity>(r, ids, id_col, org_col, p).await? {
                let own = m.user_id == Some(p.id) || m.agent_id == Some(p.id);
                if own || p.is_admin_of(m.organization_id) {
                    found.insert(m.id, Node::ApiKey(m));
                }
            }
        }
        Kind::AuditEvent if p.is_admin && member => {
            let (id_col, org_col) = (audit_event::Column::Id, audit_event::Column::OrganizationId);
            for m in in_org::<audit_event::Entity>(r, ids, id_col, org_col, p).await? {
                found.insert(m.id, Node::AuditEvent(m));
            }
        }
        Kind::SpaceToken => {
            let rows = space_token::Entity::find()
                .filter(space_token::Column::Id.is_in(ids.iter().copied()))
                .all(r)
                .await?;
            let owned = owned_spaces(db, p, rows.iter().map(|t| t.space_id)).await?;
            for m in rows.into_iter().filter(|t| owned.contains(&t.space_id)) {
                found.insert(m.id, Node::SpaceToken(m));
            }
        }
        Kind::SpaceGrant => {
            let rows = space_grant::Entity::find()
                .filter(space_grant::Column::Id.is_in(ids.iter().copied()))
                .all(r)
                .await?;
            let owned = owned_spaces(db, p, rows.iter().map(|g| g.space_id)).await?;
            for m in rows.into_iter().filter(|g| owned.contains(&g.space_id)) {
                found.insert(m.id, Node::SpaceGrant(m));
            }
        }
        // Directory objects, API keys and audit events are not a space token's to see.
        _ => {}
    }
    Ok(())
}

/// NOT_FOUND (missing or hidden) becomes `None`; any other error stays one.
fn hidden_is_none<T>(r: AppResult<T>) -> AppResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(AppError::NotFound { .. }) | Err(AppError::Forbidden(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Rows of `E` among `ids` in the principal's organization.
async fn in_org<E>(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    id: impl ColumnTrait,
    organization: impl ColumnTrait,
    p: &Principal,
) -> AppResult<Vec<E::Model>>
where
    E: EntityTrait,
{
    Ok(E::find()
        .filter(id.is_in(ids.iter().copied()))
        .filter(organization.eq(p.organization_id))
        .all(db)
        .await?)
}

/// The spaces among `ids` on which the principal holds OWNER (one batched access read).
async fn owned_spaces(
    db: &Db,
    p: &Principal,
    ids: impl Iterator<Item = Uuid>,
) -> AppResult<Vec<Uuid>> {
    let mut ids: Vec<Uuid> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let access = crate::spaces::batch::access_by_id(&db.read, Some(p), &ids).await?;
    Ok(access
        .into_iter()
        .filter(|(_, a)| a.permission >= Permission::Owner)
        .map(|(id, _)| id)
        .collect())
}
