//! The per-request DataLoaders: each a thin wrapper over one batch read of the domain, keyed by
//! `Uuid`, with `Arc<DbErr>` errors (loader values must be `Clone`).
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use entity::{agent, department, organization, role, user};
use memspace_core::principal::Principal;
use memspace_domain::spaces::service::SpaceAccess;
use memspace_domain::spaces::stats::MemoryStats;
use memspace_domain::workspaces::stats::WorkspaceStats;
use memspace_domain::{directory, memories, spaces, workspaces};

macro_rules! loader {
    ($(#[$doc:meta])* $name:ident, $value:ty, $read:path) => {
        $(#[$doc])*
        pub struct $name(pub DatabaseConnection);

        impl Loader<Uuid> for $name {
            type Value = $value;
            type Error = Arc<DbErr>;

            async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, $value>, Arc<DbErr>> {
                $read(&self.0, keys).await.map_err(Arc::new)
            }
        }
    };
}

loader!(
    OrganizationLoader,
    organization::Model,
    directory::batch::organizations_by_id
);
loader!(UserLoader, user::Model, directory::batch::users_by_id);
loader!(AgentLoader, agent::Model, directory::batch::agents_by_id);
loader!(
    /// A user's roles, ordered by name.
    UserRolesLoader,
    Vec<role::Model>,
    directory::batch::roles_by_user
);
loader!(
    /// A user's departments, ordered by name.
    UserDepartmentsLoader,
    Vec<department::Model>,
    directory::batch::departments_by_user
);
loader!(
    /// A space's labels, ordered by key.
    SpaceLabelsLoader,
    Vec<(String, String)>,
    spaces::batch::labels_by_space
);
loader!(
    /// A space's tags, alphabetical.
    SpaceTagsLoader,
    Vec<String>,
    spaces::batch::tags_by_space
);
loader!(
    /// `Space.memoryCount` / `Space.usedStorage` for spaces not loaded by a list.
    MemoryStatsLoader,
    MemoryStats,
    spaces::stats::memory_stats_by_space
);
loader!(
    /// A memory's tags, alphabetical.
    MemoryTagsLoader,
    Vec<String>,
    memories::batch::tags_by_memory
);
loader!(
    /// Spaces, memories and bytes per workspace.
    WorkspaceStatsLoader,
    WorkspaceStats,
    workspaces::stats::stats_by_workspace
);

/// Spaces with their grants and the request principal's permission (for `Memory.space`);
/// invisible spaces are absent.
pub struct SpaceAccessLoader(pub DatabaseConnection, pub Option<Principal>);

impl Loader<Uuid> for SpaceAccessLoader {
    type Value = SpaceAccess;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, SpaceAccess>, Arc<DbErr>> {
        spaces::batch::access_by_id(&self.0, self.1.as_ref(), keys)
            .await
            .map_err(Arc::new)
    }
}
