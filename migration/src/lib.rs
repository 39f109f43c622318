//! Database migrations. One file per change; a landed migration is never edited.
pub use sea_orm_migration::prelude::*;

mod m20261127_000001_foundation;
mod m20261127_000002_sharing;
mod m20261127_000003_memories;
mod m20261127_000004_workspaces;
mod m20261127_000005_index_versions;
mod m20261127_000006_memory_quality;
mod m20261127_000007_space_counters;
mod m20261202_000008_credentials;
mod m20261202_000009_nfc_names;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_foundation::Migration),
            Box::new(m20261127_000002_sharing::Migration),
            Box::new(m20261127_000003_memories::Migration),
            Box::new(m20261127_000004_workspaces::Migration),
            Box::new(m20261127_000005_index_versions::Migration),
            Box::new(m20261127_000006_memory_quality::Migration),
            Box::new(m20261127_000007_space_counters::Migration),
            Box::new(m20261202_000008_credentials::Migration),
            Box::new(m20261202_000009_nfc_names::Migration),
        ]
    }
}
