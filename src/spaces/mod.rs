//! Spaces: containers of memories with an owner, labels, tags, an access mode and an embedder.
pub mod graphql;
pub mod links;
pub mod loaders;
pub mod service;
pub mod sharing;
pub mod tokens;

use crate::access::{ACCESS_ORGANIZATION, ACCESS_PRIVATE, ACCESS_PUBLIC};
