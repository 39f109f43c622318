//! Memories: text in a space, embedded on write, listed, updated, deleted, expired.
pub mod batch;
pub mod duplicates;
pub mod service;
