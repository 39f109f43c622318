//! Embedders, chunking, the in-process vector index, keyword search, rank fusion, and the search
//! service that puts them together.
pub mod chunking;
pub mod embedder;
pub mod fusion;
pub mod graphql;
pub mod keyword;
#[cfg(feature = "neural")]
pub mod neural;
pub mod neural_embedder;
pub mod remote;
pub mod service;
pub mod vector_index;
