//! What every resolver shares: the per-request context (database, vector index, principal,
//! loaders) and id parsing. Imports no slice's Query or Mutation.
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::{Context, ID};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::loaders::{
    AgentLoader, MemoryStatsLoader, MemoryTagsLoader, OrganizationLoader, SpaceAccessLoader,
    SpaceLabelsLoader, SpaceTagsLoader, UserDepartmentsLoader, UserLoader, UserRolesLoader,
    WorkspaceStatsLoader,
};
use memspace_core::error::AppError;
use memspace_core::principal::Principal;
use memspace_domain::db::Db;
use memspace_domain::search::Recall;
use memspace_engine::vector_index::VectorIndex;

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
            space_access: cached(SpaceAccessLoader(c(), principal)),
            memory_tags: cached(MemoryTagsLoader(c())),
            memory_stats: cached(MemoryStatsLoader(c())),
            workspace_stats: cached(WorkspaceStatsLoader(c())),
        }
    }
}

/// The loaders of one GraphQL operation, renewable: HTTP makes one per request, the WebSocket
/// transport one per operation, and a subscription renews it before every event, so nothing
/// read for an earlier operation or event is ever served again (a socket lives for hours).
#[derive(Clone)]
pub struct LoaderSlot(Arc<SlotInner>);

struct SlotInner {
    db: DatabaseConnection,
    principal: Option<Principal>,
    current: std::sync::Mutex<Arc<Loaders>>,
}

impl LoaderSlot {
    pub fn new(db: &DatabaseConnection, principal: Option<Principal>) -> LoaderSlot {
        let current = std::sync::Mutex::new(Arc::new(Loaders::new(db, principal.clone())));
        LoaderSlot(Arc::new(SlotInner {
            db: db.clone(),
            principal,
            current,
        }))
    }

    /// The loaders in use now.
    pub fn current(&self) -> Arc<Loaders> {
        self.0
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drops every cached value: what resolves next reads the database again.
    pub fn renew(&self) {
        let fresh = Arc::new(Loaders::new(&self.0.db, self.0.principal.clone()));
        *self.0.current.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
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
    fn recall(&self) -> &Recall;
    fn principal(&self) -> Result<&Principal, AppError>;
    fn loaders(&self) -> Result<Arc<Loaders>, AppError>;
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

    fn recall(&self) -> &Recall {
        self.data_unchecked::<Recall>()
    }

    fn principal(&self) -> Result<&Principal, AppError> {
        self.data_opt::<Principal>()
            .ok_or(AppError::Unauthenticated)
    }

    fn loaders(&self) -> Result<Arc<Loaders>, AppError> {
        self.data_opt::<LoaderSlot>()
            .map(LoaderSlot::current)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request has no loaders")))
    }
}

/// Parses an id argument that names a resource; one that is not a UUID names nothing: NOT_FOUND.
pub fn resource_id(resource: &'static str, id: &ID) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.as_str()).map_err(|_| {
        // Echo a short id only: a huge one would fill the error message.
        let shown: String = id
            .chars()
            .take(memspace_core::limits::MAX_ID_CHARS)
            .collect();
        AppError::not_found(resource, &shown)
    })
}

/// Parses an id inside an input; malformed → VALIDATION_ERROR on `field`.
pub fn input_id(field: &str, id: &ID) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.as_str()).map_err(|_| AppError::validation(field, "is not a valid ID"))
}

/// Loader errors are `Arc<DbErr>`; they are internal.
pub fn loader_err(err: std::sync::Arc<sea_orm::DbErr>) -> AppError {
    AppError::Internal(anyhow::anyhow!("{err}"))
}
