//! GraphQL types of the audit log.
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;

use crate::context::{input_id, Ctx};
use crate::directory::{load_organization, load_principal, Organization, PrincipalObject};
use crate::page::{PageInfo, Window};
use entity::audit_event;
use memspace_core::error::AppError;
use memspace_core::principal::PrincipalKind;
use memspace_domain::audit::{self as service, AuditFilter as Filter};

pub struct AuditEvent(pub audit_event::Model);

/// Who, from which organization, did what to which resource, and when.
#[Object]
impl AuditEvent {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// For example `space.read`, `space.share`, `memory.create`, `api_key.create`.
    async fn action(&self) -> &str {
        &self.0.action
    }
    /// The user or agent that acted; null for a space token.
    async fn actor(&self, ctx: &Context<'_>) -> Result<Option<PrincipalObject>> {
        match PrincipalKind::parse(&self.0.actor_kind) {
            Some(kind @ (PrincipalKind::User | PrincipalKind::Agent)) => {
                load_principal(ctx, kind, self.0.actor_id).await
            }
            _ => Ok(None),
        }
    }
    /// USER, AGENT or SPACE_TOKEN.
    #[graphql(
        deprecation = "Use `actorPrincipalKind`: the same value as an enum (`PrincipalKind`)."
    )]
    async fn actor_kind(&self) -> &str {
        &self.0.actor_kind
    }
    /// What kind of credential acted: a user's or an agent's API key, or a space token.
    async fn actor_principal_kind(&self) -> Result<PrincipalKindValue> {
        let kind = PrincipalKind::parse(&self.0.actor_kind).ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!(
                "audit event {} has the unknown actor kind {:?}",
                self.0.id,
                self.0.actor_kind
            ))
        })?;
        Ok(kind.into())
    }
    /// The id of the user, agent or space token that acted.
    async fn actor_id(&self) -> ID {
        ID(self.0.actor_id.to_string())
    }
    /// The organization the actor belongs to (another one for cross-tenant access).
    async fn actor_organization(&self, ctx: &Context<'_>) -> Result<Organization> {
        load_organization(ctx, self.0.actor_organization_id).await
    }
    /// What kind of object was acted on, for example `space`, `memory`, `api_key`.
    async fn resource_type(&self) -> &str {
        &self.0.resource_type
    }
    /// The id of that object.
    async fn resource_id(&self) -> ID {
        ID(self.0.resource_id.to_string())
    }
    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

/// The kind of principal behind a request.
#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(name = "PrincipalKind")]
pub enum PrincipalKindValue {
    /// A user, with an API key.
    User,
    /// An agent, with an API key.
    Agent,
    /// A space token (no user or agent: `actor` is null).
    SpaceToken,
}

impl From<PrincipalKind> for PrincipalKindValue {
    fn from(kind: PrincipalKind) -> Self {
        match kind {
            PrincipalKind::User => PrincipalKindValue::User,
            PrincipalKind::Agent => PrincipalKindValue::Agent,
            PrincipalKind::SpaceToken => PrincipalKindValue::SpaceToken,
        }
    }
}

/// An audit event with its cursor.
#[derive(SimpleObject)]
pub struct AuditEventEdge {
    /// Opaque position: pass it as `after` (or `before`) for the neighbouring page.
    cursor: String,
    /// The event.
    node: AuditEvent,
}

/// A page of the audit log.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct AuditEventConnection {
    /// The events of this page, with their cursors.
    edges: Vec<AuditEventEdge>,
    /// Where this page is in the whole log.
    page_info: PageInfo,
    #[graphql(skip)]
    condition: Condition,
}

#[ComplexObject]
impl AuditEventConnection {
    /// The edges' nodes, for clients that need no cursors per item.
    async fn nodes(&self) -> Vec<&AuditEvent> {
        self.edges.iter().map(|e| &e.node).collect()
    }
    /// Number of events matching the filter (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(service::count(&ctx.db().read, self.condition.clone()).await? as i64)
    }
}

/// All fields optional; given ones must all match.
#[derive(InputObject, Default)]
pub struct AuditFilter {
    /// Up to 64 characters.
    action: Option<String>,
    /// Events of this user, agent or space token.
    actor_id: Option<ID>,
    /// Events on this object.
    resource_id: Option<ID>,
    /// Events at or after this time.
    since: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The audit log of the caller's organization, newest first (org admins only).
    #[allow(clippy::too_many_arguments)]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size: default 50, clamped to 1–1000.")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(
            desc = "Backward paging: the last edges (default 50, clamped to 1–1000); not with `first`/`after`."
        )]
        last: Option<i32>,
        #[graphql(desc = "Cursor of the first edge of the next page (backward paging).")]
        before: Option<String>,
        #[graphql(desc = "Only events matching this filter.")] filter: Option<AuditFilter>,
    ) -> Result<AuditEventConnection> {
        let p = ctx.principal()?;
        let f = filter.unwrap_or_default();
        memspace_core::limits::opt_chars(
            "filter.action",
            f.action.as_deref(),
            memspace_core::limits::MAX_AUDIT_ACTION_CHARS,
        )?;
        let filter = Filter {
            action: f.action,
            actor_id: f
                .actor_id
                .map(|id| input_id("filter.actorId", &id))
                .transpose()?,
            resource_id: f
                .resource_id
                .map(|id| input_id("filter.resourceId", &id))
                .transpose()?,
            since: f.since,
        };
        let window = Window {
            first,
            after,
            last,
            before,
        };
        let (page, condition) = service::list(&ctx.db().read, p, window.args()?, filter).await?;
        let (edges, page_info) = page.into_edges(service::cursor_of, |cursor, e| AuditEventEdge {
            cursor,
            node: AuditEvent(e),
        });
        Ok(AuditEventConnection {
            page_info: page_info.into(),
            edges,
            condition,
        })
    }
}
