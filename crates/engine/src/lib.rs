//! Memspace's search engine: text in, vectors out, ranked ids back. Embedders (built-in,
//! neural behind the `neural` feature, remote) and their registry, chunking, the in-process
//! vector index, keyword ranking and rank fusion. It knows no principal, no space rule and no
//! GraphQL: the domain's search use case decides what is in scope and calls in here.
pub mod ann;
pub mod chunking;
pub mod config;
pub mod coverage;
pub mod embedder;
pub mod fusion;
pub mod hit;
pub mod index_file;
pub mod keyword;
pub mod keyword_index;
pub mod minilm;
#[cfg(feature = "neural")]
pub mod neural;
pub mod neural_embedder;
pub mod pgvector;
pub mod registry;
pub mod remote;
pub mod vector_index;
