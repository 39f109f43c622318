//! Spaces: containers of memories with an owner, labels, tags, an access mode and an embedder.
pub mod batch;
pub mod input;
pub mod links;
pub mod list;
pub mod load;
pub mod service;
pub mod sharing;
pub mod stats;
pub mod tokens;
pub mod write;
