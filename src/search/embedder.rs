//! The embedders a space can be created with.

/// What kind of model turns text into vectors.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum EmbedderKind {
    /// Feature hashing over words and character n-grams: matches shared word forms, not meaning.
    Lexical,
    /// A neural sentence encoder run in-process.
    Neural,
    /// An external embeddings API.
    Remote,
}

/// The description of an embedder: its name, vector dimension and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedderSpec {
    pub name: &'static str,
    pub dimension: usize,
    pub kind: EmbedderKind,
}

/// The zero-set-up default: offline, deterministic, no download.
pub const DEFAULT_EMBEDDER: &str = "builtin-hash-384";

const BUILTIN: &[EmbedderSpec] = &[EmbedderSpec {
    name: DEFAULT_EMBEDDER,
    dimension: 384,
    kind: EmbedderKind::Lexical,
}];

pub fn available() -> &'static [EmbedderSpec] {
    BUILTIN
}

pub fn find(name: &str) -> Option<&'static EmbedderSpec> {
    BUILTIN.iter().find(|e| e.name == name)
}
