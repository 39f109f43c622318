//! Memspace's GraphQL API: the schema assembled from one module per slice (object types,
//! inputs, resolvers that parse -> call the domain -> map), the per-request loaders, and the
//! subscription resolver. Transports (HTTP, WebSocket) live in the root crate.
pub mod audit;
pub mod context;
pub mod directory;
pub mod field_errors;
pub mod loaders;
pub mod memories;
pub mod nodes;
pub mod page;
pub mod removals;
pub mod scalars;
pub mod schema;
pub mod search;
pub mod spaces;
pub mod workspaces;

pub use schema::{build, sdl, AppSchema};
