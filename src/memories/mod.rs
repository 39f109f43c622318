//! Memories: text in a space, embedded on write, listed, updated, deleted, expired.
pub mod duplicates;
pub mod graphql;
pub mod loaders;
pub mod service;
pub mod subscription;
