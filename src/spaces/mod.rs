//! Spaces: containers of memories with an owner, labels, tags, an access mode and an embedder.
pub mod graphql;
pub mod links;
pub mod loaders;
pub mod service;
pub mod sharing;
pub mod tokens;

use crate::access::{ACCESS_ORGANIZATION, ACCESS_PRIVATE, ACCESS_PUBLIC};

/// Who can see a space beyond its owner and grantees.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum AccessMode {
    /// Only the owner, org admins and explicit grantees.
    #[default]
    Private,
    /// Every principal of the space's organization can read it.
    Organization,
    /// Every authenticated principal of any organization can read it.
    Public,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::Private => ACCESS_PRIVATE,
            AccessMode::Organization => ACCESS_ORGANIZATION,
            AccessMode::Public => ACCESS_PUBLIC,
        }
    }

    pub fn parse(s: &str) -> AccessMode {
        match s {
            ACCESS_ORGANIZATION => AccessMode::Organization,
            ACCESS_PUBLIC => AccessMode::Public,
            _ => AccessMode::Private,
        }
    }
}
