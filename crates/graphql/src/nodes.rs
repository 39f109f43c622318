//! Relay's global object identification: the `Node` interface and `node(id)` / `nodes(ids)`.
//!
//! An object's id is its row's UUID, unique across every table, so it is already a global id:
//! `node` finds the table that holds it (one statement for all ids) and then applies the same
//! access rule as the typed lookup (`memspace_domain::nodes`). Clients keep the ids they have
//! stored; nothing is re-encoded.
use async_graphql::{Context, Interface, Object, Result, ID};

use crate::audit::AuditEvent;
use crate::context::Ctx;
use crate::directory::{Agent, ApiKey, Department, Organization, Role, User};
use crate::memories::Memory;
use crate::spaces::{Space, SpaceGrant, SpaceToken};
use crate::workspaces::Workspace;
use memspace_domain::nodes::{self as service, Node as Found};

/// An object with a stable, globally unique id that `Query.node` fetches again (Relay's
/// Global Object Identification).
#[derive(Interface)]
#[graphql(field(
    name = "id",
    ty = "ID",
    desc = "The object's UUID: unique across every type, accepted by `node(id:)` and by the typed lookups."
))]
pub enum Node {
    Space(Space),
    Memory(Memory),
    Workspace(Workspace),
    Organization(Organization),
    User(User),
    Agent(Agent),
    Role(Role),
    Department(Department),
    ApiKey(ApiKey),
    SpaceToken(SpaceToken),
    SpaceGrant(SpaceGrant),
    AuditEvent(AuditEvent),
}

impl From<Found> for Node {
    fn from(f: Found) -> Node {
        match f {
            Found::Space(a) => Node::Space(a.into()),
            Found::Memory(m) => Node::Memory(Memory(m)),
            Found::Workspace(model, viewer_role) => {
                Node::Workspace(Workspace { model, viewer_role })
            }
            Found::Organization(m) => Node::Organization(Organization(m)),
            Found::User(m) => Node::User(User(m)),
            Found::Agent(m) => Node::Agent(Agent(m)),
            Found::Role(m) => Node::Role(Role(m)),
            Found::Department(m) => Node::Department(Department(m)),
            Found::ApiKey(m) => Node::ApiKey(ApiKey(m)),
            Found::SpaceToken(m) => Node::SpaceToken(SpaceToken(m)),
            Found::SpaceGrant(m) => Node::SpaceGrant(SpaceGrant(m)),
            Found::AuditEvent(m) => Node::AuditEvent(AuditEvent(m)),
        }
    }
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this id, of any type, if the caller may see it; `null` when it does not
    /// exist, is malformed, or is hidden from the caller (the same rule as the typed lookups:
    /// a hidden object and a missing one look alike).
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A UUID from any object's `id`.")] id: ID,
    ) -> Result<Option<Node>> {
        let p = ctx.principal()?;
        let mut found = service::resolve(ctx.db(), p, "id", &[id.0]).await?;
        Ok(found.pop().flatten().map(Node::from))
    }

    /// The objects with these ids, in the same order, `null` for each one `node` would answer
    /// `null`. At most 100 ids (VALIDATION_ERROR on `ids` beyond).
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "UUIDs from objects' `id`; at most 100.")] ids: Vec<ID>,
    ) -> Result<Vec<Option<Node>>> {
        let p = ctx.principal()?;
        let ids: Vec<String> = ids.into_iter().map(|id| id.0).collect();
        Ok(service::resolve(ctx.db(), p, "ids", &ids)
            .await?
            .into_iter()
            .map(|n| n.map(Node::from))
            .collect())
    }
}
