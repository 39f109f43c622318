//! The GraphQL schema: each slice's Query/Mutation parts merged, and the SDL export. Names every
//! slice; nothing imports it but the transports.
use std::sync::Arc;

use async_graphql::{MergedObject, Schema};

use crate::audit::AuditQuery;
use crate::directory::{DirectoryMutation, DirectoryQuery};
use crate::memories::{MemoryMutation, MemoryQuery};
use crate::nodes::NodeQuery;
use crate::removals::RemovalMutation;
use crate::search::SearchQuery;
use crate::spaces::{SpaceMutation, SpaceQuery};
use crate::workspaces::{WorkspaceMutation, WorkspaceQuery};
use memspace_domain::db::Db;
use memspace_domain::search::Recall;
use memspace_engine::vector_index::VectorIndex;

#[derive(MergedObject, Default)]
pub struct Query(
    DirectoryQuery,
    SpaceQuery,
    MemoryQuery,
    SearchQuery,
    WorkspaceQuery,
    AuditQuery,
    NodeQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    DirectoryMutation,
    SpaceMutation,
    MemoryMutation,
    WorkspaceMutation,
    RemovalMutation,
);

pub type Subscription = crate::memories::subscription::MemorySubscription;

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Builds the schema. `db` is `None` for SDL export, which needs no data.
pub fn build(db: Option<(Db, Arc<VectorIndex>, Recall)>) -> AppSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .extension(crate::field_errors::FieldErrors);
    if let Some((db, index, recall)) = db {
        builder = builder.data(db).data(index).data(recall);
    }
    builder.finish()
}

/// The SDL that `memspace export-schema` prints and `schema.graphql` holds.
pub fn sdl() -> String {
    build(None).sdl()
}
