//! `minilm-l6-v2` as an [`Embedder`]: the model of [`super::neural`] on the blocking pool.
//!
//! A loaded model is kept for the life of the process and shared by every registry that names
//! the same directory (tests build many apps; a server builds one), so its ~90 MB of weights
//! are read once.
//!
//! The model needs the `neural` cargo feature (on by default). A build without it lists
//! `minilm-l6-v2` as unavailable and says why.
use std::path::Path;
#[cfg(feature = "neural")]
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
};

#[cfg(feature = "neural")]
use crate::embedder::{embed_blocking, EmbedError, EmbedFuture, Embedder};
use crate::embedder::{EmbedderKind, Unavailable};
#[cfg(feature = "neural")]
use crate::neural::MiniLm;
#[cfg(not(feature = "neural"))]
use std::sync::Arc;

pub use crate::minilm::{DIMENSION, INSTALL_HINT, NAME};

fn unavailable(reason: String) -> Unavailable {
    Unavailable {
        name: NAME.to_string(),
        kind: EmbedderKind::Neural,
        dimension: DIMENSION,
        reason,
    }
}

/// Without the `neural` feature there is no model to load: the embedder is listed as
/// unavailable, with the reason.
#[cfg(not(feature = "neural"))]
pub async fn load_from(
    _models_dir: &Path,
) -> Result<Arc<dyn crate::embedder::Embedder>, Unavailable> {
    Err(unavailable(
        "this memspace was built without the `neural` cargo feature; rebuild it with default \
         features to use the model"
            .to_string(),
    ))
}

#[cfg(feature = "neural")]
pub struct NeuralEmbedder {
    model: Arc<MiniLm>,
}

#[cfg(feature = "neural")]
impl Embedder for NeuralEmbedder {
    fn name(&self) -> &str {
        NAME
    }
    fn dimension(&self) -> usize {
        DIMENSION
    }
    fn kind(&self) -> EmbedderKind {
        EmbedderKind::Neural
    }
    fn embed(self: Arc<Self>, texts: Vec<String>) -> EmbedFuture {
        embed_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.model
                .embed(&refs)
                .map_err(|e| EmbedError(format!("{e:#}")))
        })
    }
}

/// Models loaded by this process, by directory.
#[cfg(feature = "neural")]
fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<MiniLm>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<MiniLm>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

#[cfg(feature = "neural")]
async fn load(dir: PathBuf) -> anyhow::Result<Arc<MiniLm>> {
    let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    if let Some(model) = loaded().lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(model);
    }
    let model = tokio::task::spawn_blocking(move || MiniLm::load(&dir)).await??;
    let model = Arc::new(model);
    if let Ok(mut m) = loaded().lock() {
        m.insert(key, model.clone());
    }
    Ok(model)
}

/// Adds `minilm-l6-v2` from `<models_dir>/all-MiniLM-L6-v2`, or lists it as unavailable with
/// the reason and the command that installs it.
#[cfg(feature = "neural")]
pub async fn load_from(models_dir: &Path) -> Result<Arc<dyn Embedder>, Unavailable> {
    let dir = models_dir.join("all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").is_file() {
        return Err(unavailable(format!(
            "model files not found in {}; install them with `{}`",
            dir.display(),
            INSTALL_HINT
        )));
    }
    match load(dir.clone()).await {
        Ok(model) => Ok(Arc::new(NeuralEmbedder { model })),
        Err(e) => {
            tracing::warn!(error = ?e, dir = %dir.display(), "neural model failed to load");
            Err(unavailable(format!(
                "model in {} failed to load ({e:#}); reinstall it with `{}`",
                dir.display(),
                INSTALL_HINT
            )))
        }
    }
}
