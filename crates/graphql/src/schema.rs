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

/// Reads: the caller, spaces, memories, searches, workspaces, the audit log and Relay's `node`.
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

/// Writes. Each one checks the caller's permission and runs in one transaction.
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

/// The SDL that `memspace export-schema` prints and `schema.graphql` holds: the live schema
/// exactly, `@specifiedBy` on the scalars that have one, and no definition of a directive the
/// GraphQL spec builds in (graphql-js's `buildSchema`/`extendSchema` refuse a redefinition).
pub fn sdl() -> String {
    let options = async_graphql::SDLExportOptions::new().include_specified_by();
    without_built_in_directives(&build(None).sdl_with_options(options))
}

/// The directives every GraphQL schema has; async-graphql prints their definitions.
const BUILT_IN_DIRECTIVES: &[&str] = &["include", "skip", "deprecated", "specifiedBy", "oneOf"];

/// `sdl` without the definitions (and their descriptions) of the built-in directives.
fn without_built_in_directives(sdl: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    // A description block seen but not yet written: it belongs to the next definition.
    let mut pending: Vec<&str> = Vec::new();
    let mut in_description = false;
    for line in sdl.lines() {
        let top_level = !line.starts_with(char::is_whitespace);
        if top_level && line.starts_with("\"\"\"") && !in_description && pending.is_empty() {
            in_description = !(line.len() > 6 && line.ends_with("\"\"\""));
            pending.push(line);
            continue;
        }
        if in_description {
            pending.push(line);
            if top_level && line.ends_with("\"\"\"") {
                in_description = false;
            }
            continue;
        }
        let built_in = BUILT_IN_DIRECTIVES.iter().any(|name| {
            line.strip_prefix("directive @")
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with(['(', ' ']))
        });
        if !built_in {
            out.append(&mut pending);
            out.push(line);
        }
        pending.clear();
    }
    out.append(&mut pending);
    let mut sdl = out.join("\n");
    sdl.push('\n');
    sdl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdl_defines_no_built_in_directive_and_marks_specified_scalars() {
        let sdl = sdl();
        for name in BUILT_IN_DIRECTIVES {
            assert!(
                !sdl.contains(&format!("directive @{name}")),
                "@{name} is redefined"
            );
        }
        assert!(sdl.contains(
            "scalar DateTime @specifiedBy(url: \"https://datatracker.ietf.org/doc/html/rfc3339\")"
        ));
        assert!(sdl.contains("schema {"));
    }

    #[test]
    fn a_description_before_a_kept_definition_stays() {
        let sdl = "\"\"\"\nKept.\n\"\"\"\nscalar X\n\"\"\"\nGone.\n\"\"\"\ndirective @skip(if: Boolean!) on FIELD\n\"\"\"\nMine.\n\"\"\"\ndirective @mine on FIELD\n";
        assert_eq!(
            without_built_in_directives(sdl),
            "\"\"\"\nKept.\n\"\"\"\nscalar X\n\"\"\"\nMine.\n\"\"\"\ndirective @mine on FIELD\n"
        );
    }
}
