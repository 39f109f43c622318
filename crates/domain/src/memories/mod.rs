//! Memories: text in a space, embedded on write, listed, updated, deleted, expired.
pub mod batch;
mod create;
mod draft;
pub mod duplicates;
mod plan;
mod read;
mod remove;
pub mod service;
mod store;
mod update;
