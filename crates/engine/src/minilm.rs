//! Facts about the `minilm-l6-v2` model that hold with or without the `neural` feature.

pub const NAME: &str = "minilm-l6-v2";
pub const DIMENSION: usize = 384;
/// The command that installs the model, for messages.
pub const INSTALL_HINT: &str = "scripts/fetch-model";
