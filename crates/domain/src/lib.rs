//! Memspace's use cases: the database and its event bus, the audit log, keys and tokens, the
//! directory (organizations, users, roles, departments, agents), workspace membership, spaces,
//! workspaces, memories and search. Validation, access checks through
//! `memspace_core::access`, one transaction per write; no GraphQL.
//!
//! Slices use only slices before them in this order (DESIGN.md §2):
//! db, events -> audit -> auth -> directory -> membership -> spaces -> workspaces -> memories
//! -> search -> nodes.
pub mod db;
pub mod events;

pub mod audit;
pub mod auth;
pub mod directory;
pub mod membership;
pub mod memories;
pub mod nodes;
pub mod search;
pub mod spaces;
pub mod workspaces;

pub use db::Db;
