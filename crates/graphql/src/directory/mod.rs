//! GraphQL types and resolvers of the directory: viewer, users, roles, departments, agents, keys.
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, Union, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::context::{input_id, loader_err, resource_id, Ctx};
use entity::{agent, api_key, department, organization, role, user};
use memspace_core::access::reads_personal_data;
use memspace_core::error::AppError;
use memspace_core::principal::PrincipalKind;
use memspace_domain::directory::{self as service, KeyHolder};

pub struct Organization(pub organization::Model);

/// An organization (tenant): the unit that owns users, agents, keys and spaces.
#[Object]
impl Organization {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique short name of the organization.
    async fn handle(&self) -> &str {
        &self.0.handle
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// When the organization was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Loads an organization by id through the request's DataLoader.
pub async fn load_organization(ctx: &Context<'_>, id: Uuid) -> Result<Organization> {
    ctx.loaders()?
        .organizations
        .load_one(id)
        .await
        .map_err(loader_err)?
        .map(Organization)
        .ok_or_else(|| AppError::not_found("organization", id).into())
}

pub struct User(pub user::Model);

impl User {
    /// Whether the caller may see this user's personal fields (same organization, not a space
    /// token: see `access::reads_personal_data`).
    fn personal_data_visible(&self, ctx: &Context<'_>) -> bool {
        ctx.principal()
            .is_ok_and(|p| reads_personal_data(p, self.0.organization_id))
    }
}

/// A person in an organization.
#[Object]
impl User {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name, 1–255 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The user's e-mail; null when the viewer belongs to another organization or is a space
    /// token.
    async fn email(&self, ctx: &Context<'_>) -> Option<&str> {
        self.personal_data_visible(ctx)
            .then_some(self.0.email.as_str())
    }
    /// Org admins hold full control over every space of their organization.
    async fn is_admin(&self) -> bool {
        self.0.is_admin
    }
    /// The organization the user belongs to.
    async fn organization(&self, ctx: &Context<'_>) -> Result<Organization> {
        load_organization(ctx, self.0.organization_id).await
    }
    /// The user's roles (empty when the viewer belongs to another organization or is a space
    /// token).
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<Role>> {
        if !self.personal_data_visible(ctx) {
            return Ok(vec![]);
        }
        let roles = ctx
            .loaders()?
            .user_roles
            .load_one(self.0.id)
            .await
            .map_err(loader_err)?;
        Ok(roles.unwrap_or_default().into_iter().map(Role).collect())
    }
    /// The user's departments (empty when the viewer belongs to another organization or is a
    /// space token).
    async fn departments(&self, ctx: &Context<'_>) -> Result<Vec<Department>> {
        if !self.personal_data_visible(ctx) {
            return Ok(vec![]);
        }
        let departments = ctx
            .loaders()?
            .user_departments
            .load_one(self.0.id)
            .await
            .map_err(loader_err)?;
        Ok(departments
            .unwrap_or_default()
            .into_iter()
            .map(Department)
            .collect())
    }
    /// When the user was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

pub struct Role(pub role::Model);

/// A role users can hold; spaces can be shared with a role.
#[Object]
impl Role {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique within the organization.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// When the role was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

pub struct Department(pub department::Model);

/// A department users can belong to; spaces can be shared with a department.
#[Object]
impl Department {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique within the organization.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// When the department was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

pub struct Agent(pub agent::Model);

/// An AI agent identity of an organization; it authenticates with its own API keys.
#[Object]
impl Agent {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique within the organization.
    async fn handle(&self) -> &str {
        &self.0.handle
    }
    /// Display name, 1–255 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The organization the agent belongs to.
    async fn organization(&self, ctx: &Context<'_>) -> Result<Organization> {
        load_organization(ctx, self.0.organization_id).await
    }
    /// When the agent was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Who acts: a user or an agent.
#[derive(Union)]
#[graphql(name = "Principal")]
pub enum PrincipalObject {
    User(User),
    Agent(Agent),
}

/// Loads a user or agent by id through the request's DataLoaders.
pub async fn load_principal(
    ctx: &Context<'_>,
    kind: PrincipalKind,
    id: Uuid,
) -> Result<Option<PrincipalObject>> {
    let loaders = ctx.loaders()?;
    Ok(match kind {
        PrincipalKind::User => loaders
            .users
            .load_one(id)
            .await
            .map_err(loader_err)?
            .map(|u| PrincipalObject::User(User(u))),
        PrincipalKind::Agent => loaders
            .agents
            .load_one(id)
            .await
            .map_err(loader_err)?
            .map(|a| PrincipalObject::Agent(Agent(a))),
        PrincipalKind::SpaceToken => None,
    })
}

pub struct ApiKey(pub api_key::Model);

/// An API key's public part; the secret itself is never stored or shown again.
#[Object]
impl ApiKey {
    /// The object's id (a UUID v7): unique across every type, accepted by `node(id:)`.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// What the key is for.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The first characters of a generated key (`msk_` and 8 more), to recognise it; empty for
    /// an operator-chosen key (`MEMSPACE_ADMIN_KEY`), none of whose characters are stored.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    /// When the key was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the key was revoked; null while it works.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}

/// A new API key: `key` is the secret, shown only in this response.
#[derive(SimpleObject)]
pub struct ApiKeySecret {
    /// The secret. Store it now: it cannot be shown again.
    key: String,
    /// The stored part of the key (without the secret).
    api_key: ApiKey,
}

pub struct Viewer;

/// The caller: its identity, organization, roles and departments.
#[Object]
impl Viewer {
    /// `viewer:<principal id>`: a cache key of its own, so a client's normalised store keeps
    /// the viewer apart from the `User` or `Agent` it is (not a `Node`: refetch it with `viewer`).
    pub(crate) async fn id(&self, ctx: &Context<'_>) -> Result<ID> {
        Ok(ID(format!("viewer:{}", ctx.principal()?.id)))
    }
    /// The user or agent whose key made the request.
    async fn principal(&self, ctx: &Context<'_>) -> Result<PrincipalObject> {
        let p = ctx.principal()?;
        load_principal(ctx, p.kind, p.id)
            .await?
            .ok_or_else(|| AppError::Unauthenticated.into())
    }
    /// The caller's organization.
    async fn organization(&self, ctx: &Context<'_>) -> Result<Organization> {
        load_organization(ctx, ctx.principal()?.organization_id).await
    }
    /// The caller's roles (empty for an agent).
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<Role>> {
        let p = ctx.principal()?;
        Ok(service::roles_of(&ctx.db().read, &p.role_ids)
            .await?
            .into_iter()
            .map(Role)
            .collect())
    }
    /// The caller's departments (empty for an agent).
    async fn departments(&self, ctx: &Context<'_>) -> Result<Vec<Department>> {
        let p = ctx.principal()?;
        Ok(service::departments_of(&ctx.db().read, &p.department_ids)
            .await?
            .into_iter()
            .map(Department)
            .collect())
    }
}

#[derive(Default)]
pub struct DirectoryQuery;

#[Object]
impl DirectoryQuery {
    /// Who is calling. Space tokens have no viewer (their space is their whole world): `null`
    /// with a FORBIDDEN error, beside whatever else the request asked for.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<Option<Viewer>> {
        if ctx.principal()?.token.is_some() {
            return Err(AppError::forbidden(
                "a space token has no viewer; it reaches only its space",
            )
            .into());
        }
        Ok(Some(Viewer))
    }

    /// The agents of the caller's organization, by handle (`handle` picks one).
    async fn agents(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the agent with this handle.")] handle: Option<String>,
    ) -> Result<Vec<Agent>> {
        let p = ctx.principal()?;
        memspace_core::limits::opt_chars(
            "handle",
            handle.as_deref(),
            memspace_core::limits::MAX_HANDLE_CHARS,
        )?;
        Ok(service::agents(&ctx.db().read, p, handle.as_deref())
            .await?
            .into_iter()
            .map(Agent)
            .collect())
    }
}

/// A new user of the caller's organization.
#[derive(InputObject)]
pub struct CreateUserInput {
    /// 1–255 characters.
    name: String,
    /// Unique within the organization.
    email: String,
    /// Org admins hold full control over every space of the organization.
    #[graphql(default)]
    is_admin: bool,
}

/// A new role of the caller's organization.
#[derive(InputObject)]
pub struct CreateRoleInput {
    /// 1–255 characters, unique within the organization.
    name: String,
}

/// A new department of the caller's organization.
#[derive(InputObject)]
pub struct CreateDepartmentInput {
    /// 1–255 characters, unique within the organization.
    name: String,
}

/// A new agent identity of the caller's organization.
#[derive(InputObject)]
pub struct CreateAgentInput {
    /// 1–63 letters, digits, '-', '_' or '.', unique within the organization.
    handle: String,
    /// 1–255 characters.
    name: String,
}

/// A new API key for exactly one of a user or an agent.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// The user the key is for (give this or `agentId`).
    user_id: Option<ID>,
    /// The agent the key is for (give this or `userId`).
    agent_id: Option<ID>,
    /// What the key is for, 1–255 characters.
    name: String,
}

#[derive(Default)]
pub struct DirectoryMutation;

#[Object]
impl DirectoryMutation {
    /// Creates a user in the caller's organization (org admins only).
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new user.")] input: CreateUserInput,
    ) -> Result<User> {
        let p = ctx.principal()?;
        let u =
            service::create_user(ctx.db(), p, &input.name, &input.email, input.is_admin).await?;
        Ok(User(u))
    }

    /// Creates a role (org admins only).
    async fn create_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new role.")] input: CreateRoleInput,
    ) -> Result<Role> {
        let p = ctx.principal()?;
        Ok(Role(service::create_role(ctx.db(), p, &input.name).await?))
    }

    /// Creates a department (org admins only).
    async fn create_department(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new department.")] input: CreateDepartmentInput,
    ) -> Result<Department> {
        let p = ctx.principal()?;
        Ok(Department(
            service::create_department(ctx.db(), p, &input.name).await?,
        ))
    }

    /// Gives a user a role (org admins only); assigning twice is a no-op.
    async fn assign_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user.")] user_id: ID,
        #[graphql(desc = "The role to give.")] role_id: ID,
    ) -> Result<User> {
        let p = ctx.principal()?;
        let user_id = resource_id("user", &user_id)?;
        let role_id = resource_id("role", &role_id)?;
        Ok(User(
            service::assign_role(ctx.db(), p, user_id, role_id).await?,
        ))
    }

    /// Puts a user in a department (org admins only); assigning twice is a no-op.
    async fn assign_department(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user.")] user_id: ID,
        #[graphql(desc = "The department.")] department_id: ID,
    ) -> Result<User> {
        let p = ctx.principal()?;
        let user_id = resource_id("user", &user_id)?;
        let department_id = resource_id("department", &department_id)?;
        Ok(User(
            service::assign_department(ctx.db(), p, user_id, department_id).await?,
        ))
    }

    /// Creates an agent identity (org admins only).
    async fn create_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new agent.")] input: CreateAgentInput,
    ) -> Result<Agent> {
        let p = ctx.principal()?;
        Ok(Agent(
            service::create_agent(ctx.db(), p, &input.handle, &input.name).await?,
        ))
    }

    /// Creates an API key for a user or an agent. Org admins may create keys for anyone in their
    /// organization; a user may create keys for themselves. The secret is shown only here.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Whom the key is for, and its name.")] input: CreateApiKeyInput,
    ) -> Result<ApiKeySecret> {
        let p = ctx.principal()?;
        let holder = match (&input.user_id, &input.agent_id) {
            (Some(u), None) => KeyHolder::User(input_id("userId", u)?),
            (None, Some(a)) => KeyHolder::Agent(input_id("agentId", a)?),
            _ => {
                return Err(AppError::validation(
                    "userId",
                    "give exactly one of userId and agentId",
                )
                .into())
            }
        };
        let (row, key) = service::create_api_key(ctx.db(), p, holder, &input.name).await?;
        Ok(ApiKeySecret {
            key,
            api_key: ApiKey(row),
        })
    }

    /// Revokes an API key: requests with it are refused from now on. Returns its id.
    #[graphql(deprecation = "Use `revokeApiKeyV2`: it answers with the revoked key.")]
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The API key.")] id: ID,
    ) -> Result<ID> {
        let p = ctx.principal()?;
        let id = resource_id("API key", &id)?;
        let id = service::revoke_api_key(ctx.db(), p, id).await?;
        Ok(ID(id.to_string()))
    }
}
