//! Embedders and (later) search. For now: the registry of embedders a space can choose.
pub mod embedder;
