//! The GraphQL schema: each slice's Query/Mutation parts merged, per-request context, SDL export.
use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::{Context, MergedObject, Schema, ID};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::audit::graphql::AuditQuery;
use crate::auth::Principal;
use crate::db::Db;
use crate::directory::graphql::{DirectoryMutation, DirectoryQuery};
use crate::directory::loaders::{
    AgentLoader, OrganizationLoader, UserDepartmentsLoader, UserLoader, UserRolesLoader,
};
use crate::error::AppError;
use crate::memories::graphql::{MemoryMutation, MemoryQuery};
use crate::memories::loaders::{MemoryStatsLoader, MemoryTagsLoader};
use crate::search::graphql::SearchQuery;
use crate::search::vector_index::VectorIndex;
use crate::spaces::graphql::{SpaceMutation, SpaceQuery};
use crate::spaces::loaders::{SpaceAccessLoader, SpaceLabelsLoader, SpaceTagsLoader};
use crate::workspaces::graphql::{WorkspaceMutation, WorkspaceQuery};
use crate::workspaces::loaders::WorkspaceStatsLoader;
use std::sync::Arc;

#[derive(MergedObject, Default)]
pub struct Query(
    DirectoryQuery,
    SpaceQuery,
    MemoryQuery,
    SearchQuery,
    WorkspaceQuery,
    AuditQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    DirectoryMutation,
    SpaceMutation,
    MemoryMutation,
    WorkspaceMutation,
);

pub type Subscription = crate::memories::subscription::MemorySubscription;

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Builds the schema. `db` is `None` for SDL export, which needs no data.
pub fn build(db: Option<(Db, Arc<VectorIndex>)>) -> AppSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    );
    if let Some((db, index)) = db {
        builder = builder.data(db).data(index);
    }
    builder.finish()
}

/// The SDL that `memspace export-schema` prints and `schema.graphql` holds.
pub fn sdl() -> String {
    build(None).sdl()
}

/// Per-request DataLoaders (never shared between requests: their caches are per caller).
pub struct Loaders {
    pub organizations: DataLoader<OrganizationLoader, HashMapCache>,
    pub users: DataLoader<UserLoader, HashMapCache>,
    pub agents: DataLoader<AgentLoader, HashMapCache>,
    pub user_roles: DataLoader<UserRolesLoader, HashMapCache>,
    pub user_departments: DataLoader<UserDepartmentsLoader, HashMapCache>,
    pub space_labels: DataLoader<SpaceLabelsLoader, HashMapCache>,
    pub space_tags: DataLoader<SpaceTagsLoader, HashMapCache>,
    pub space_access: DataLoader<SpaceAccessLoader, HashMapCache>,
    pub memory_tags: DataLoader<MemoryTagsLoader, HashMapCache>,
    pub memory_stats: DataLoader<MemoryStatsLoader, HashMapCache>,
    pub workspace_stats: DataLoader<WorkspaceStatsLoader, HashMapCache>,
}

impl Loaders {
    pub fn new(db: &DatabaseConnection, principal: Option<Principal>) -> Self {
        let c = || db.clone();
        Loaders {
            organizations: cached(OrganizationLoader(c())),
            users: cached(UserLoader(c())),
            agents: cached(AgentLoader(c())),
            user_roles: cached(UserRolesLoader(c())),
            user_departments: cached(UserDepartmentsLoader(c())),
            space_labels: cached(SpaceLabelsLoader(c())),
            space_tags: cached(SpaceTagsLoader(c())),
            space_access: cached(SpaceAccessLoader { db: c(), principal }),
            memory_tags: cached(MemoryTagsLoader(c())),
            memory_stats: cached(MemoryStatsLoader(c())),
            workspace_stats: cached(WorkspaceStatsLoader(c())),
        }
    }
}

/// Per-request loaders cache what they load, so a list can load a whole page's relations in one
/// batch up front (see `prefetch` in the list resolvers) and every item then hits the cache:
/// the statement count of a page does not depend on its size or on timing.
fn cached<L: async_graphql::dataloader::Loader<Uuid>>(loader: L) -> DataLoader<L, HashMapCache> {
    DataLoader::with_cache(loader, tokio::spawn, HashMapCache::default())
}

/// Context accessors for resolvers.
pub trait Ctx {
    fn db(&self) -> &Db;
    fn index(&self) -> &VectorIndex;
    fn principal(&self) -> Result<&Principal, AppError>;
    fn loaders(&self) -> Result<&Loaders, AppError>;
}

impl Ctx for Context<'_> {
    fn db(&self) -> &Db {
        // Present in every executing schema: only the data-free SDL builder lacks it, and it
        // never executes.
        self.data_unchecked::<Db>()
    }

    fn index(&self) -> &VectorIndex {
        self.data_unchecked::<Arc<VectorIndex>>()
    }

    fn principal(&self) -> Result<&Principal, AppError> {
        self.data_opt::<Principal>()
            .ok_or(AppError::Unauthenticated)
    }

    fn loaders(&self) -> Result<&Loaders, AppError> {
        self.data_opt::<Loaders>()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request has no loaders")))
    }
}

/// Parses an id argument that names a resource; one that is not a UUID names nothing: NOT_FOUND.
pub fn resource_id(resource: &'static str, id: &ID) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.as_str()).map_err(|_| AppError::not_found(resource, id.as_str()))
}

/// Parses an id inside an input; malformed → VALIDATION_ERROR on `field`.
pub fn input_id(field: &str, id: &ID) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.as_str()).map_err(|_| AppError::validation(field, "is not a valid ID"))
}

/// Loader errors are `Arc<DbErr>`; they are internal.
pub fn loader_err(err: std::sync::Arc<sea_orm::DbErr>) -> AppError {
    AppError::Internal(anyhow::anyhow!("{err}"))
}
